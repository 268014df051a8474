public import Protocols

/// A simulated ESC/POS ticket printer on a serial line.
///
/// It answers DLE EOT n and sends automatic status back once the host turns it on, with status bytes
/// written out here from Epson's bit tables (not from the gateway's decoder), and keeps what it printed.
public final class MockEscPosPrinter: Sendable {
    /// What is wrong with the printer.
    public struct Condition: Sendable, Equatable {
        public var coverOpen = false
        public var paperNearEnd = false
        public var paperOut = false
        public var cutterError = false

        public init(coverOpen: Bool = false, paperNearEnd: Bool = false, paperOut: Bool = false, cutterError: Bool = false) {
            self.coverOpen = coverOpen
            self.paperNearEnd = paperNearEnd
            self.paperOut = paperOut
            self.cutterError = cutterError
        }

        var offline: Bool { coverOpen || paperOut || cutterError }
    }

    private struct State {
        var decoder = EscPosCommandDecoder()
        var condition = Condition()
        var automaticStatusBack = false
        var current: [EscPosCommand] = []
        var tickets: [[EscPosCommand]] = []
        var answering = true
        /// Tickets the roll still holds; nil: never runs out.
        var paperLeft: Int?
    }

    private let state: Locked<State>
    private let line: MockLine

    /// Opens the printer's line; `pacing` moves bytes at the line's wire time (see `MockLine`).
    public init(pacing: WirePacing? = nil) throws {
        let state = Locked(State())
        self.state = state
        line = try MockLine(pacing: pacing) { bytes in
            state { state in
                var answer: [UInt8] = []
                for command in state.decoder.decode(bytes) {
                    switch command {
                    case .statusRequest(let request):
                        if state.answering { answer.append(Self.realTimeStatus(state.condition, request.rawValue)) }
                    case .enableAutomaticStatusBack(let mask):
                        state.automaticStatusBack = !mask.isEmpty
                        if state.automaticStatusBack { answer += Self.automaticStatus(state.condition) }
                    case .cut:
                        state.current.append(command)
                        state.tickets.appendKeepingNewest(state.current)
                        state.current = []
                        if let left = state.paperLeft {
                            state.paperLeft = max(0, left - 1)
                            if left <= 1, !state.condition.paperOut {
                                state.condition.paperOut = true
                                if state.automaticStatusBack { answer += Self.automaticStatus(state.condition) }
                            }
                        }
                    default:
                        state.current.append(command)
                    }
                }
                return answer
            }
        }
    }

    /// The path the gateway opens.
    public var devicePath: String { line.devicePath }

    /// Changes the printer's condition; with automatic status back on, the printer says so at once.
    public func set(_ condition: Condition) {
        let report = state { state -> [UInt8] in
            state.condition = condition
            return state.automaticStatusBack ? Self.automaticStatus(condition) : []
        }
        if !report.isEmpty { line.send(report) }
    }

    /// The roll holds `tickets` more: the printer is out of paper once it has cut the last of them.
    public func setPaper(tickets: Int) { state { $0.paperLeft = tickets } }

    /// Whether the printer answers status requests (false: unplugged).
    public func setAnswering(_ answering: Bool) { state { $0.answering = answering } }

    /// The tickets printed (the newest `mockHistoryLimit`), as the commands up to and including each cut.
    public var tickets: [[EscPosCommand]] { state { $0.tickets } }

    /// Stops the printer.
    public func stop() { line.stop() }

    /// The byte DLE EOT n gets: 0xx1xx10 with the condition's bits (Epson ESC/POS reference, DLE EOT).
    static func realTimeStatus(_ condition: Condition, _ n: UInt8) -> UInt8 {
        var byte: UInt8 = 0x12
        switch n {
        case 1: if condition.offline { byte |= 0x08 }
        case 2:
            if condition.coverOpen { byte |= 0x04 }
            if condition.paperOut { byte |= 0x20 }
            if condition.cutterError { byte |= 0x40 }
        case 3: if condition.cutterError { byte |= 0x08 }
        case 4:
            if condition.paperNearEnd { byte |= 0x0C }
            if condition.paperOut { byte |= 0x60 }
        default: break
        }
        return byte
    }

    /// The four bytes of automatic status back (Epson ESC/POS reference, GS a).
    static func automaticStatus(_ condition: Condition) -> [UInt8] {
        var first: UInt8 = 0x10
        if condition.offline { first |= 0x08 }
        if condition.coverOpen { first |= 0x20 }
        let second: UInt8 = condition.cutterError ? 0x08 : 0
        var third: UInt8 = 0
        if condition.paperNearEnd { third |= 0x03 }
        if condition.paperOut { third |= 0x0C }
        return [first, second, third, 0x00]
    }
}

/// Simulated Onbon BX-5 controllers on one serial line: they answer pings and commands with ACK
/// (or a NACK with a chosen error code) and show the last text written into their dynamic area.
public final class MockOnbonBoards: Sendable {
    private struct State {
        var decoder = OnbonDecoder()
        var addresses: Set<UInt16>
        var shown: [UInt16: String] = [:]
        var rejectWith: OnbonErrorCode?
        var silent: Set<UInt16> = []
        var brightness: [UInt16: UInt8] = [:]
        var screenOff: Set<UInt16> = []
        /// The data field of each packet addressed to a controller, in order (the newest `mockHistoryLimit`).
        var received: [(address: UInt16, data: [UInt8])] = []
    }

    private let state: Locked<State>
    private let line: MockLine

    /// Opens the line with controllers at `addresses`; `pacing` moves bytes at the line's wire time (see `MockLine`).
    public init(addresses: Set<UInt16>, pacing: WirePacing? = nil) throws {
        let state = Locked(State(addresses: addresses))
        self.state = state
        line = try MockLine(pacing: pacing) { bytes in
            state { state in
                var answer: [UInt8] = []
                for packet in state.decoder.decode(bytes) {
                    let address = packet.destination
                    guard state.addresses.contains(address), !state.silent.contains(address),
                          let request = OnbonRequest(data: packet.data)
                    else { continue }
                    state.received.appendKeepingNewest((address, packet.data))
                    var reply = OnbonReply.acknowledged
                    switch request.command {
                    case .ping: break
                    case .clearScreen:
                        if let code = state.rejectWith { reply = .rejected(code) } else { state.shown[address] = "" }
                    case .updateDynamicAreas(let update):
                        if let code = state.rejectWith {
                            reply = .rejected(code)
                        } else {
                            state.shown[address] = update.areas.compactMap { $0.text?.string }.joined()
                        }
                    case .setBrightness(let brightness):
                        if let code = state.rejectWith { reply = .rejected(code) } else { state.brightness[address] = brightness.current }
                    case .setPower(let on):
                        if let code = state.rejectWith {
                            reply = .rejected(code)
                        } else if on {
                            state.screenOff.remove(address)
                        } else {
                            state.screenOff.insert(address)
                        }
                    default: reply = .rejected(.unknownCommand)
                    }
                    answer += OnbonPacket.reply(reply, from: address).encode()
                }
                return answer
            }
        }
    }

    /// The path the gateway opens.
    public var devicePath: String { line.devicePath }

    /// What the controller at `address` shows.
    public func shown(address: UInt16) -> String? { state { $0.shown[address] } }

    /// The data fields (group, command, reply flag, parameters) of the packets the controller at `address` got.
    public func received(address: UInt16) -> [[UInt8]] { state { $0.received.filter { $0.address == address }.map(\.data) } }

    /// The fixed brightness level (0…15) last set on the controller at `address`, nil before any.
    public func brightness(address: UInt16) -> UInt8? { state { $0.brightness[address] } }

    /// Whether the controller at `address` has its screen switched on (a controller starts on).
    public func isScreenOn(address: UInt16) -> Bool { state { !$0.screenOff.contains(address) } }

    /// From now on commands are refused with `code` (nil: accepted again).
    public func reject(with code: OnbonErrorCode?) { state { $0.rejectWith = code } }

    /// Whether the controller at `address` answers at all.
    public func setSilent(_ silent: Bool, address: UInt16) {
        state { if silent { $0.silent.insert(address) } else { $0.silent.remove(address) } }
    }

    /// Stops the controllers.
    public func stop() { line.stop() }
}
