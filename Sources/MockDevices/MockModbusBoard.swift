import Protocols
import Synchronization

/// A simulated window LED board on Modbus: the gateway writes text and a mode (or a brightness level, or the
/// screen's power), then bumps the command counter; the board takes them and copies the counter into its
/// acknowledgement register.
///
/// Its register map is the device's own, written out here: see `devices/modbus-window-board.yaml`.
public final class MockModbusBoard: MockModbusUnit {
    /// Holding register addresses of the board.
    public enum Register {
        public static let status = 0
        public static let mode = 1
        public static let commandCounter = 2
        public static let acknowledge = 3
        public static let temperature = 4
        /// The model code 0x4C42 ("LB"), what `gatewayd scan` identifies the board by.
        public static let modelCode = 5
        /// The brightness level, 0…15.
        public static let brightness = 6
        /// The screen's power: 1 on, 0 off.
        public static let power = 7
        public static let text = 16
        public static let textCount = 32
        public static let count = 48
    }

    /// Display modes as the board numbers them.
    public enum Mode: UInt16, Sendable {
        case blank = 0
        case steady = 1
        case blinking = 2
    }

    private struct State {
        var registers = [UInt16](repeating: 0, count: Register.count)
        var answering = true
        var acknowledging = true
        var shownText = ""
        /// The texts taken with a command, oldest first (the newest `mockHistoryLimit`).
        var taken: [String] = []
        var mode = Mode.blank
        var brightness: UInt16 = 15
        var isOn = true
        var requestsBeforeAcknowledging = 0
        /// A command taken and not acknowledged yet: its counter, and the requests still to come before it is.
        var unacknowledged: (counter: UInt16, requestsLeft: Int)?
    }

    private let state = Mutex(State())

    /// Creates a board in service, blank, at 35.0 °C, its screen on at full brightness.
    public init() {
        state.withLock {
            $0.registers[Register.status] = 0b01
            $0.registers[Register.modelCode] = 0x4C42
            $0.registers[Register.brightness] = $0.brightness
            $0.registers[Register.power] = 1
        }
        setTemperature(35.0)
    }

    /// The heat sink's temperature, in tenths of a degree as a signed register.
    public func setTemperature(_ celsius: Double) {
        let tenths = Int16(clamping: Int((celsius * 10).rounded()))
        state.withLock { $0.registers[Register.temperature] = UInt16(bitPattern: tenths) }
    }

    /// Whether the board answers at all.
    public var answering: Bool {
        get { state.withLock { $0.answering } }
        set { state.withLock { $0.answering = newValue } }
    }

    /// Whether the board takes commands; when not (its display controller hung behind its Modbus interface), writes
    /// are still answered but nothing is shown and nothing acknowledged.
    public var acknowledging: Bool {
        get { state.withLock { $0.acknowledging } }
        set { state.withLock { $0.acknowledging = newValue } }
    }

    /// How many requests after a command's counter the board takes and acknowledges it (0: at once). A real board
    /// redraws first, so its acknowledgement may come only at a later poll.
    public var requestsBeforeAcknowledging: Int {
        get { state.withLock { $0.requestsBeforeAcknowledging } }
        set { state.withLock { $0.requestsBeforeAcknowledging = newValue } }
    }

    public func registersForRequest() -> [UInt16] {
        state.withLock { state in
            if let (counter, left) = state.unacknowledged {
                if left <= 1 {
                    Self.take(&state)
                    state.registers[Register.acknowledge] = counter
                    state.unacknowledged = nil
                } else {
                    state.unacknowledged = (counter, left - 1)
                }
            }
            return state.registers
        }
    }

    /// Sets or clears the lamp-fault bit (bit 1 of the status word): some LEDs are dark.
    public func setLampFault(_ fault: Bool) {
        state.withLock { state in
            if fault { state.registers[Register.status] |= 0b10 } else { state.registers[Register.status] &= ~0b10 }
        }
    }

    /// What the board shows now, and how: nothing while its screen is off.
    public var display: (text: String, mode: Mode) {
        state.withLock { $0.isOn ? ($0.shownText, $0.mode) : ("", .blank) }
    }

    /// Every text the board took with a command that changed its text or mode, oldest first: what the hall has seen.
    public var takenTexts: [String] { state.withLock { $0.taken } }

    /// The brightness level (0…15) the board took last.
    public var brightness: UInt16 { state.withLock { $0.brightness } }

    /// Whether the board's screen is on; off, it still answers and keeps its text for when it is on again.
    public var isOn: Bool { state.withLock { $0.isOn } }

    public var registers: [UInt16] { state.withLock { $0.registers } }

    /// Takes the text, mode, brightness, power and command counter; status and acknowledgement stay the board's.
    public func accept(writtenRegisters: [UInt16]) {
        state.withLock { state in
            let writable = [Register.mode, Register.commandCounter, Register.brightness, Register.power]
            for address in writable + Array(Register.text..<(Register.text + Register.textCount)) {
                state.registers[address] = writtenRegisters[address]
            }
            let counter = state.registers[Register.commandCounter]
            guard counter != state.registers[Register.acknowledge], counter != state.unacknowledged?.counter,
                  state.acknowledging
            else { return }
            // A new command: take it (text and mode, brightness, power), then acknowledge it; a board that redraws
            // first takes what the registers hold when it gets to it, later writes included.
            if state.requestsBeforeAcknowledging > 0 {
                state.unacknowledged = (counter, state.requestsBeforeAcknowledging)
            } else {
                Self.take(&state)
                state.registers[Register.acknowledge] = counter
            }
        }
    }

    private static func take(_ state: inout State) {
        let (text, mode) = (state.shownText, state.mode)
        let bytes = RegisterText.bytes(from: state.registers[Register.text..<(Register.text + Register.textCount)])
        state.shownText = ChineseText.decode(bytes, as: .gb18030) ?? "?"
        state.mode = Mode(rawValue: state.registers[Register.mode]) ?? .blank
        if state.mode == .blank { state.shownText = "" }
        // A brightness or power command leaves text and mode as they are: nothing new shown.
        if !state.shownText.isEmpty, (state.shownText, state.mode) != (text, mode) { state.taken.appendKeepingNewest(state.shownText) }
        state.brightness = state.registers[Register.brightness]
        state.isOn = state.registers[Register.power] != 0
    }
}
