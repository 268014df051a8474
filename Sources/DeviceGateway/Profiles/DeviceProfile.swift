public import Protocols
import Foundation
import Yams

/// A device model's description, read from `devices/<name>.yaml`.
///
/// Supporting a new model of an existing family is a new profile file, not new code.
public enum DeviceProfile: Sendable, Equatable {
    case modbusEvaluator(ModbusEvaluatorProfile)
    case modbusBoard(ModbusBoardProfile)
    case escPosPrinter(PrinterProfile)
    case onbonBoard(OnbonBoardProfile)
    case ff68Evaluator(KeyEvaluatorProfile)
    case ff68Caller(CallerProfile)
    case qsystemBox(CallerProfile)
    case qsystemBoard(NumberBoardProfile)

    /// The profile's model name.
    public var model: String {
        switch self {
        case .modbusEvaluator(let profile): profile.model
        case .modbusBoard(let profile): profile.model
        case .escPosPrinter(let profile): profile.model
        case .onbonBoard(let profile): profile.model
        case .ff68Evaluator(let profile): profile.model
        case .ff68Caller(let profile), .qsystemBox(let profile): profile.model
        case .qsystemBoard(let profile): profile.model
        }
    }

    /// Whether the device says only on a later poll whether it took a command (a Modbus board copies the command's
    /// counter into its acknowledge register); an Onbon board says so in its answer, other devices not at all.
    public var acknowledgesOnLaterPoll: Bool {
        switch self {
        case .modbusBoard: true
        case .modbusEvaluator, .escPosPrinter, .onbonBoard, .ff68Evaluator, .ff68Caller, .qsystemBox, .qsystemBoard: false
        }
    }

    /// What a device of this profile is missing without `window:`, if its events are a window's (a pad's ratings,
    /// a caller's or box's keys); nil for devices that can be the hall's (a board, a printer).
    public func withoutWindow(_ device: DeviceConfig) -> String? {
        guard device.window == nil else { return nil }
        switch self {
        case .modbusEvaluator, .ff68Evaluator:
            return "device \(device.id) has no window: its ratings carry none, and a window's satisfaction rate leaves them out"
        case .ff68Caller, .qsystemBox:
            return "device \(device.id) has no window: its keys call for no window"
        case .modbusBoard, .escPosPrinter, .onbonBoard, .qsystemBoard:
            return nil
        }
    }

    /// Whether the device is never asked and speaks only when used (an FF 68 pad or caller, a QSystem box).
    public var speaksUnasked: Bool {
        switch self {
        case .ff68Evaluator, .ff68Caller, .qsystemBox: true
        case .modbusEvaluator, .modbusBoard, .escPosPrinter, .onbonBoard, .qsystemBoard: false
        }
    }

    /// The raw serial protocol the device speaks, or nil for a Modbus device.
    public var lineProtocol: LineProtocol? {
        switch self {
        case .modbusEvaluator, .modbusBoard: nil
        case .escPosPrinter: .escPos
        case .onbonBoard: .onbon
        case .ff68Evaluator, .ff68Caller: .ff68
        case .qsystemBox, .qsystemBoard: .qsystem
        }
    }
}

/// The raw serial protocols; every device on one serial bus must speak the same one.
public enum LineProtocol: String, Sendable, Equatable, CaseIterable {
    case escPos = "ESC/POS"
    case onbon = "Onbon BX"
    case ff68 = "FF 68"
    case qsystem = "QSystem"

    /// Whether its device is wired point to point (RS-232, as a ticket printer): one device to a line.
    var deviceHasALineOfItsOwn: Bool { self == .escPos }
}

/// The `family` values a profile may declare.
enum ProfileFamily: String, CaseIterable {
    case modbusEvaluator = "modbus-evaluator"
    case modbusBoard = "modbus-board"
    case escPosPrinter = "escpos-printer"
    case onbonBoard = "onbon-bx"
    case ff68Evaluator = "ff68-evaluator"
    case ff68Caller = "ff68-caller"
    case qsystemBox = "qsystem-box"
    case qsystemBoard = "qsystem-board"
}

/// A run of consecutive registers.
public struct RegisterRange: Sendable, Equatable {
    public var start: Int
    public var count: Int

    /// Creates a range.
    public init(start: Int, count: Int) {
        self.start = start
        self.count = count
    }

    /// One past the last register.
    public var end: Int { start + count }
}

/// A Modbus evaluator pad: ratings read from holding registers, see `devices/modbus-evaluator-3key.yaml`.
public struct ModbusEvaluatorProfile: Sendable, Equatable {
    public var model: String
    /// The holding registers read in one request each poll; every field below lies inside it.
    public var block: RegisterRange
    /// Status word; `onlineBit` set means the pad is ready.
    public var statusRegister: Int
    public var onlineBit: Int
    /// Ratings since the pad powered up, 16 bits, wrapping.
    public var counterRegister: Int
    /// A 32-bit value (high word first) the pad draws anew at every power-up.
    public var bootIdRegister: Int
    /// Where the gateway writes the last counter value it has committed.
    public var acknowledgeRegister: Int
    /// The staff id the pad shows, as text in registers.
    public var staffId: RegisterRange
    /// The key of rating n is at `keyRing.start + (n - 1) % keyRing.count`.
    public var keyRing: RegisterRange
    /// How the pad's keys map onto the national scale.
    public var scale: RatingScale
}

/// A profile as read from its file: the family's description, and the settings every family shares.
public struct LoadedProfile: Sendable, Equatable {
    /// The family's description of the model.
    public var profile: DeviceProfile
    /// How often a device of this model is polled (`poll-interval-ms`); nil: the bus's poll interval.
    public var pollInterval: Duration?
    /// How `gatewayd scan` recognises the model on the wire (`identify:`); nil: it cannot.
    public var identify: IdentifyRule?
}

/// The folder of device profiles.
public struct ProfileLibrary: Sendable {
    /// The folder.
    public var directory: String

    /// Creates a library over a folder.
    public init(directory: String) { self.directory = directory }

    /// The path of a profile's file.
    public func path(of name: String) -> String { (directory as NSString).appendingPathComponent("\(name).yaml") }

    /// Reads and checks one profile.
    public func profile(named name: String) throws(ConfigError) -> DeviceProfile {
        try load(named: name).profile
    }

    /// Reads and checks one profile, with the settings every family shares.
    public func load(named name: String) throws(ConfigError) -> LoadedProfile {
        let file = path(of: name)
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ConfigError(issues: [ConfigIssue(file: file, key: "", message: "no profile '\(name)' (file missing or unreadable)")])
        }
        let reader = YAMLReader(file: file)
        guard let root = reader.compose(text), let fields = reader.fields(root, "") else {
            throw ConfigError(issues: reader.issues)
        }
        let model = fields.string("model", required: true)
        let family = fields.choice("family", ProfileFamily.allCases.map(\.rawValue), required: true)
            .flatMap(ProfileFamily.init(rawValue:))
        _ = fields.string("description")
        // How often the bus polls a device of this model; the bus's poll interval when absent.
        let pollInterval = fields.int("poll-interval-ms", in: 0...3_600_000).map { Duration.milliseconds($0) }
        let identify = IdentifyRule.parse(fields.value("identify"), reader)
        var profile: DeviceProfile?
        if let family, let model {
            let parsing = ProfileParsing(model: model, fields: fields, reader: reader)
            profile = switch family {
            case .modbusEvaluator: Self.modbusEvaluator(model: model, fields: fields, reader: reader).map { .modbusEvaluator($0) }
            case .modbusBoard: parsing.modbusBoard().map { .modbusBoard($0) }
            case .escPosPrinter: parsing.printer().map { .escPosPrinter($0) }
            case .onbonBoard: parsing.onbonBoard().map { .onbonBoard($0) }
            case .ff68Evaluator: parsing.keyEvaluator().map { .ff68Evaluator($0) }
            case .ff68Caller: parsing.caller().map { .ff68Caller($0) }
            case .qsystemBox: parsing.caller().map { .qsystemBox($0) }
            case .qsystemBoard: parsing.numberBoard().map { .qsystemBoard($0) }
            }
        }
        fields.rejectUnknownKeys()
        guard reader.issues.isEmpty, let profile else { throw ConfigError(issues: reader.issues) }
        return LoadedProfile(profile: profile, pollInterval: pollInterval, identify: identify)
    }

    private static func modbusEvaluator(model: String, fields: YAMLReader.Fields, reader: YAMLReader)
        -> ModbusEvaluatorProfile?
    {
        guard let registersNode = fields.value("registers", required: true),
            let registers = reader.fields(registersNode, "registers")
        else { return nil }
        let address = 0...65535
        let block = range(registers, "block", reader)
        let status = registers.int("status", in: address, required: true)
        let onlineBit = registers.int("online-bit", in: 0...15) ?? 0
        let counter = registers.int("event-counter", in: address, required: true)
        let bootId = registers.int("boot-id", in: address, required: true)
        let acknowledge = registers.int("acknowledge", in: address, required: true)
        let staffId = range(registers, "staff-id", reader)
        let keyRing = range(registers, "key-ring", reader)
        registers.rejectUnknownKeys()
        let scale = ratingScale(fields.value("rating", required: true), reader)

        guard let block, let status, let counter, let bootId, let acknowledge, let staffId, let keyRing, let scale
        else { return nil }
        let inside: [(String, Int, Int)] = [
            ("status", status, 1), ("event-counter", counter, 1), ("boot-id", bootId, 2), ("acknowledge", acknowledge, 1),
            ("staff-id", staffId.start, staffId.count), ("key-ring", keyRing.start, keyRing.count),
        ]
        // A rating's slot is its 16-bit counter modulo the ring: past 65,535 the pad and the gateway agree on it only
        // when the ring's size divides 65,536.
        if keyRing.count & (keyRing.count - 1) != 0 {
            reader.report(registers.value("key-ring"), "registers.key-ring",
                          "a ring of \(keyRing.count) registers: its size must be a power of two (1, 2, 4 … 64), "
                            + "or ratings after the counter wraps would be read from the wrong slots")
        }
        for (key, start, count) in inside where start < block.start || start + count > block.end {
            reader.report(registers.value(key), "registers.\(key)",
                          "registers \(start)…\(start + count - 1) lie outside the block read each poll "
                            + "(\(block.start)…\(block.end - 1))")
        }
        return ModbusEvaluatorProfile(
            model: model, block: block, statusRegister: status, onlineBit: onlineBit, counterRegister: counter,
            bootIdRegister: bootId, acknowledgeRegister: acknowledge, staffId: staffId, keyRing: keyRing, scale: scale)
    }

    static func range(_ fields: YAMLReader.Fields, _ key: String, _ reader: YAMLReader) -> RegisterRange? {
        guard let node = fields.value(key, required: true), let range = reader.fields(node, fields.keyPath(key))
        else { return nil }
        let start = range.int("start", in: 0...65535, required: true)
        let count = range.int("count", in: 1...125, required: true)
        range.rejectUnknownKeys()
        guard let start, let count else { return nil }
        return RegisterRange(start: start, count: count)
    }

    static func ratingScale(_ node: Node?, _ reader: YAMLReader) -> RatingScale? {
        guard let node, let fields = reader.fields(node, "rating") else { return nil }
        let name = fields.string("scale", required: true)
        var keys: [RatingScale.Key] = []
        for item in fields.value("keys", required: true).flatMap({ reader.items($0, "rating.keys") }) ?? [] {
            guard let key = reader.fields(item.node, item.path) else { continue }
            let code = key.int("code", in: 0...65535, required: true)
            let label = key.string("label", required: true)
            let level = key.int("level", in: 1...5, required: true).flatMap(NationalRatingLevel.init(rawValue:))
            key.rejectUnknownKeys()
            guard let code, let label, let level else { continue }
            if keys.contains(where: { $0.code == code }) {
                reader.report(item.node, item.path, "key code \(code) is mapped twice")
            }
            keys.append(.init(code: code, label: label, level: level))
        }
        if let name {
            if let standard = RatingScale.standard.first(where: { $0.name == name }) {
                if keys.count != standard.keys.count {
                    reader.report(fields.value("keys"), "rating.keys",
                                  "a \(name) scale has \(standard.keys.count) keys, this one \(keys.count)")
                }
            } else {
                let known = RatingScale.standard.map(\.name).joined(separator: ", ")
                reader.report(fields.value("scale"), "rating.scale", "unknown scale '\(name)' (\(known))")
            }
        }
        fields.rejectUnknownKeys()
        guard let name, !keys.isEmpty else { return nil }
        return RatingScale(name: name, keys: keys)
    }
}

extension DeviceRole {
    /// The role of a device of `profile`, placed at `window` or not.
    public static func of(_ profile: DeviceProfile, window: String?) -> DeviceRole {
        switch profile {
        case .modbusBoard, .onbonBoard, .qsystemBoard: window == nil ? .hallBoard : .windowBoard
        case .ff68Caller, .qsystemBox: .caller
        case .modbusEvaluator, .ff68Evaluator: .pad
        case .escPosPrinter: .printer
        }
    }
}
