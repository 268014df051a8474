import Protocols
import Synchronization

/// A simulated Modbus evaluator pad with three keys (满意 1, 基本满意 2, 不满意 3).
///
/// Its register map is the device's own (written out here, not taken from the gateway's profile,
/// so that a wrong profile shows up as a failing test): see `devices/modbus-evaluator-3key.yaml`.
public final class MockModbusEvaluator: MockModbusUnit {
    /// Holding register addresses of the pad.
    public enum Register {
        public static let status = 0
        public static let counter = 1
        public static let lastKey = 2
        public static let bootIdHigh = 3
        public static let bootIdLow = 4
        public static let acknowledge = 5
        public static let scale = 6
        /// The model code 0x4856 ("HV"): with the scale, what `gatewayd scan` identifies the pad by.
        public static let modelCode = 7
        public static let staffId = 8
        public static let staffIdCount = 8
        public static let keyRing = 16
        public static let keyRingCount = 16
        public static let count = 32
    }

    /// Key codes of the pad.
    public enum Key: UInt16, Sendable, CaseIterable {
        case satisfied = 1
        case basicallySatisfied = 2
        case dissatisfied = 3
    }

    private struct State {
        var registers = [UInt16](repeating: 0, count: Register.count)
        var answering = true
        var pressedOnAcknowledgement: Key?
    }

    private let state = Mutex(State())
    /// The number of keys the pad has (its scale register): 3, or 5 for the national five levels.
    public let keyCount: UInt16

    /// Creates a powered-up pad showing `staffId`, with `keys` keys.
    public init(staffId: String, bootId: UInt32 = UInt32.random(in: 1...UInt32.max), keys: UInt16 = 3) {
        keyCount = keys
        powerUp(bootId: bootId)
        showStaff(staffId)
    }

    /// A citizen presses a key: the counter advances and the key lands in the ring.
    public func press(_ key: Key) { press(code: key.rawValue) }

    /// A citizen presses the key with this code (a pad with other keys than the three-key one); `times` presses
    /// happen at once, with no poll between them.
    public func press(code: UInt16, times: Int = 1) {
        state.withLock { state in
            for _ in 0..<times { Self.press(code: code, on: &state) }
        }
    }

    /// The counter advances and the key lands in the ring.
    private static func press(code: UInt16, on state: inout State) {
        let counter = state.registers[Register.counter] &+ 1
        state.registers[Register.counter] = counter
        state.registers[Register.lastKey] = code
        state.registers[Register.keyRing + Int((UInt32(counter) + 0xFFFF) % UInt32(Register.keyRingCount))] = code
    }

    /// Power-cycles the pad: counters and ring cleared, a new boot id.
    public func powerUp(bootId: UInt32 = UInt32.random(in: 1...UInt32.max)) {
        state.withLock { state in
            let staff = Array(state.registers[Register.staffId..<(Register.staffId + Register.staffIdCount)])
            state.registers = [UInt16](repeating: 0, count: Register.count)
            state.registers[Register.status] = 0b01
            state.registers[Register.bootIdHigh] = UInt16(bootId >> 16)
            state.registers[Register.bootIdLow] = UInt16(bootId & 0xFFFF)
            state.registers[Register.scale] = keyCount
            state.registers[Register.modelCode] = 0x4856
            state.registers.replaceSubrange(Register.staffId..<(Register.staffId + Register.staffIdCount), with: staff)
        }
    }

    /// Shows a staff member's number (ASCII, up to 16 characters).
    public func showStaff(_ staffId: String) {
        let bytes = Array(staffId.utf8.prefix(2 * Register.staffIdCount))
        state.withLock { state in
            for index in 0..<Register.staffIdCount {
                let high = 2 * index < bytes.count ? UInt16(bytes[2 * index]) : 0
                let low = 2 * index + 1 < bytes.count ? UInt16(bytes[2 * index + 1]) : 0
                state.registers[Register.staffId + index] = high << 8 | low
            }
            state.registers[Register.status] |= 0b10
        }
    }

    /// A key a citizen presses again each time the gateway acknowledged every rating (nil: none): a pad rated at
    /// every poll, each followed by its acknowledgement.
    public var pressedOnAcknowledgement: Key? {
        get { state.withLock { $0.pressedOnAcknowledgement } }
        set { state.withLock { $0.pressedOnAcknowledgement = newValue } }
    }

    /// Whether the pad answers requests at all (false: as if unplugged).
    public var answering: Bool {
        get { state.withLock { $0.answering } }
        set { state.withLock { $0.answering = newValue } }
    }

    /// The ratings since power-up (the counter register).
    public var counter: UInt16 { state.withLock { $0.registers[Register.counter] } }

    /// The last counter value the gateway acknowledged.
    public var acknowledged: UInt16 { state.withLock { $0.registers[Register.acknowledge] } }

    /// A copy of the holding registers.
    public var registers: [UInt16] { state.withLock { $0.registers } }

    /// The staff number the pad shows (the staff-id registers as ASCII).
    public var staffId: String {
        let registers = state.withLock { $0.registers[Register.staffId..<(Register.staffId + Register.staffIdCount)] }
        return String(decoding: RegisterText.bytes(from: registers), as: UTF8.self)
    }

    /// Takes what a client wrote; the acknowledgement and staff-id registers are writable.
    public func accept(writtenRegisters: [UInt16]) {
        state.withLock { state in
            state.registers[Register.acknowledge] = writtenRegisters[Register.acknowledge]
            let staff = Register.staffId..<(Register.staffId + Register.staffIdCount)
            state.registers.replaceSubrange(staff, with: writtenRegisters[staff])
            state.registers[Register.status] = state.registers[Register.status] & ~0b10
                | (state.registers[staff].contains { $0 != 0 } ? 0b10 : 0)
            if let key = state.pressedOnAcknowledgement,
               state.registers[Register.acknowledge] == state.registers[Register.counter] {
                Self.press(code: key.rawValue, on: &state)
            }
        }
    }
}
