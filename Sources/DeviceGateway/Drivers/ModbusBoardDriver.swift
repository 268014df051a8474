public import Foundation
import Protocols

/// Turns hall commands into register writes for a Modbus window board, and its registers into events.
///
/// Pure: the bus does the I/O. A command is acknowledged when the board copies the command counter
/// into its acknowledgement register; a board that does not within a few polls is reported.
public struct ModbusBoardDriver: Sendable {
    /// One write request (function 16).
    public struct RegisterWrite: Sendable, Equatable {
        public var start: Int
        public var values: [UInt16]

        /// A write of `values` from register `start`.
        public init(start: Int, values: [UInt16]) {
            self.start = start
            self.values = values
        }
    }

    /// A command checked and turned into its writes (text and mode, or one setting); the counter is chosen when it is
    /// written.
    public struct PreparedCommand: Sendable {
        public var name: String
        public var writes: [RegisterWrite]
    }

    /// A command written and not yet acknowledged.
    struct PendingCommand: Sendable {
        var name: String
        var counter: UInt16
        var pollsWaited = 0
    }

    /// Polls a command may wait for its acknowledgement before it counts as not shown.
    public static let pollsBeforeUnacknowledged = 3

    public let device: DeviceConfig
    public let profile: ModbusBoardProfile
    public let source: String
    /// Written commands, oldest first: the board acknowledges the last counter it took, which covers the earlier ones.
    private(set) var pending: [PendingCommand] = []
    /// The last counter written or, before the first command, the board's acknowledgement; nil until the board was read.
    private(set) var lastCounter: UInt16?
    private var activeFaults: Set<String> = []
    /// Whether the screen is lit, as the last read said; nil when the profile's poll does not read its power register.
    public private(set) var screenOn: Bool?

    /// Creates the driver of one board.
    public init(device: DeviceConfig, profile: ModbusBoardProfile, hallId: String) {
        self.device = device
        self.profile = profile
        self.source = EventSource.device(hall: hallId, device: device.id)
    }

    /// Checks `command` and gives its writes (text and mode, or brightness or power); throws what the board cannot do.
    public func prepare(_ command: HallCommand) throws(GatewayError) -> PreparedCommand {
        let mode: Int
        switch command {
        case .call, .pause, .showText: mode = profile.modes.show
        case .recall: mode = profile.modes.blink
        case .clear: mode = profile.modes.clear
        case .printTicket:
            throw GatewayError(.commandRejected, "\(device.id) is a window board: it prints no tickets")
        case .brightness(let percent):
            let level = UInt16(HallCommand.boardLevel(percent: percent))
            return try setting(profile.brightnessRegister, "brightness", level, command)
        case .power(let on):
            return try setting(profile.powerRegister, "power", on ? 1 : 0, command)
        case .setStaff, .requestRating:
            throw GatewayError(.commandRejected, "\(device.id) is a window board, not an evaluator pad: no \(command.name)")
        }
        let text = command.displayText(with: device.templates) ?? ""
        let textField = RegisterField(address: UInt16(profile.text.start),
                                      type: .string(registerCount: profile.text.count, encoding: profile.textEncoding))
        let textRegisters: [UInt16]
        do {
            textRegisters = try textField.encode(.text(text))
        } catch .textTooLong(let byteCount, let capacity) {
            // The text is not repeated: free text may carry what should not reach events and logs.
            throw GatewayError(.commandRejected, "\(device.id): the text needs \(byteCount) bytes, the board holds \(capacity)")
        } catch {
            throw GatewayError(.commandRejected, "\(device.id): the text has a character \(profile.textEncoding.rawValue) "
                               + "cannot write\(Self.firstUnwritable(text, profile.textEncoding).map { " (\($0))" } ?? "")")
        }
        return PreparedCommand(name: command.name, writes: [
            RegisterWrite(start: profile.text.start, values: textRegisters),
            RegisterWrite(start: profile.modeRegister, values: [UInt16(truncatingIfNeeded: mode)]),
        ])
    }

    /// The first character `encoding` cannot write, as U+XXXX: says which without repeating the text.
    private static func firstUnwritable(_ text: String, _ encoding: RegisterTextEncoding) -> String? {
        text.unicodeScalars.first { scalar in
            scalar.value == 0 || (encoding == .ascii ? !scalar.isASCII : ChineseText.encode(String(scalar), as: .gb18030) == nil)
        }.map(\.codePoint)
    }

    /// A brightness or power command: one register, then the counter like any command. The board takes what it
    /// was written when the counter changes and acknowledges it, so a technician sees every command acknowledged (or
    /// reported as not taken) alike; text and mode stay as they are, so a screen switched on shows what it showed.
    private func setting(_ register: Int?, _ key: String, _ value: UInt16, _ command: HallCommand) throws(GatewayError)
        -> PreparedCommand
    {
        guard let register else {
            throw GatewayError(.commandRejected, "\(device.id): profile \(profile.model) names no \(key) register: "
                               + "the board has no \(command.name) command" + (key == "power" ? " (clear blanks it)" : ""))
        }
        return PreparedCommand(name: command.name, writes: [RegisterWrite(start: register, values: [value])])
    }

    /// The counter write that makes the board take a prepared command; call once the board was read, so the
    /// counter differs from what the board already acknowledged.
    public mutating func counterWrite() -> RegisterWrite {
        let counter = (lastCounter ?? 0) &+ 1
        lastCounter = counter
        return RegisterWrite(start: profile.commandRegister, values: [counter])
    }

    /// Every write of the command reached the board: its acknowledgement is awaited from now on.
    public mutating func written(_ command: PreparedCommand, counter: RegisterWrite) {
        pending.append(PendingCommand(name: command.name, counter: counter.values.first ?? 0))
    }

    /// What one read of the board's block says: whether it is in service, and events for what changed. A command's
    /// own read-back, right after its counter write, is no poll: a board that redraws first acknowledges later.
    public mutating func interpret(registers: [UInt16], at time: Date, countsAsPoll: Bool = true)
        -> (ready: Bool, events: [CloudEvent], verdicts: [CommandVerdict])
    {
        func register(_ address: Int) -> UInt16 {
            let index = address - profile.block.start
            return registers.indices.contains(index) ? registers[index] : 0
        }
        let status = register(profile.statusRegister)
        let acknowledged = register(profile.acknowledgeRegister)
        if let power = profile.powerRegister, registers.indices.contains(power - profile.block.start) {
            screenOn = register(power) != 0
        }
        // Continue counting from what the board last acknowledged, so a restarted gateway is not mistaken for old news;
        // and while nothing of ours waits, from what it acknowledged since: another master's command (a technician's
        // `display test --direct`) took the next counter, and ours with the same would be taken for done unshown.
        if lastCounter == nil || pending.isEmpty { lastCounter = acknowledged }
        var events: [CloudEvent] = []
        var verdicts: [CommandVerdict] = []
        if let taken = pending.lastIndex(where: { $0.counter == acknowledged }) {
            // The board took this command, and the ones written before it.
            for command in pending[...taken] {
                events.append(acknowledgement(command.name, accepted: true, at: time))
                verdicts.append(CommandVerdict(device: device.id, key: Int(command.counter), failure: nil))
            }
            pending.removeSubrange(...taken)
        }
        if countsAsPoll { for index in pending.indices { pending[index].pollsWaited += 1 } }
        for command in pending where command.pollsWaited >= Self.pollsBeforeUnacknowledged {
            events.append(acknowledgement(command.name, accepted: false, at: time))
            verdicts.append(CommandVerdict(device: device.id, key: Int(command.counter), failure: GatewayError(
                .deviceTimeout, "\(device.id) did not acknowledge \(command.name): it has not shown it")))
        }
        pending.removeAll { $0.pollsWaited >= Self.pollsBeforeUnacknowledged }
        for fault in profile.faultBits {
            let set = status & (1 << fault.bit) != 0
            if set, activeFaults.insert(fault.name).inserted {
                events.append(event(HallEventType.deviceFault, at: time, data: .deviceFault(DeviceFault(
                    fault: fault.name, detail: "status bit \(fault.bit) (\(fault.name)) set by the board"))))
            } else if !set {
                activeFaults.remove(fault.name)
            }
        }
        for reading in profile.readings {
            let value: Double
            switch try? reading.field.decode(from: registers, blockStart: UInt16(profile.block.start)) {
            case .integer(let integer): value = Double(integer)
            case .real(let real): value = real
            default: continue
            }
            let fault = "\(reading.name)-high"
            if let limit = reading.faultAbove, value > limit {
                if activeFaults.insert(fault).inserted {
                    let shown = (value * 10).rounded() / 10
                    events.append(event(HallEventType.deviceFault, at: time, data: .deviceFault(DeviceFault(
                        fault: fault, detail: "\(reading.name) \(shown) \(reading.unit), above the profile's limit of \(limit) \(reading.unit)"))))
                }
            } else {
                activeFaults.remove(fault)
            }
        }
        return (status & (1 << profile.readyBit) != 0, events, verdicts)
    }

    private func acknowledgement(_ command: String, accepted: Bool, at time: Date) -> CloudEvent {
        event(HallEventType.boardAcknowledged, at: time,
              data: .boardAcknowledged(BoardAcknowledged(command: command, accepted: accepted, errorCode: nil)))
    }

    private func event(_ type: String, at time: Date, data: EventData) -> CloudEvent {
        CloudEvent(id: UUID().uuidString.lowercased(), source: source, type: type, time: time,
                   subject: device.window.map(EventSource.windowSubject), data: data)
    }
}
