public import Protocols
import Yams

/// A Modbus window LED board: text written to holding registers, status and acknowledgement read back.
/// See `devices/modbus-window-board.yaml`.
public struct ModbusBoardProfile: Sendable, Equatable {
    public var model: String
    /// The holding registers read in one request each poll.
    public var block: RegisterRange
    /// Status word: `readyBit` set means the board is in service; each named fault bit set is a fault.
    public var statusRegister: Int
    public var readyBit: Int
    public var faultBits: [FaultBit]
    /// Where the text to show is written, and how it is encoded.
    public var text: RegisterRange
    public var textEncoding: RegisterTextEncoding
    /// What the board does with the text: the value written for each display mode.
    public var modeRegister: Int
    public var modes: BoardModes
    /// The gateway writes a new value here after each command; the board copies it to `acknowledgeRegister`
    /// once the command is on the display.
    public var commandRegister: Int
    public var acknowledgeRegister: Int
    /// Where the board takes its brightness level (0…15, `HallCommand.brightestBoardLevel` brightest); nil: the board
    /// has no brightness command.
    public var brightnessRegister: Int?
    /// Where the board takes its screen's power (1 on, 0 off); nil: it has no power command.
    public var powerRegister: Int?
    /// Values read each poll (temperature, supply voltage …), with the limit that makes each a fault.
    public var readings: [Reading]

    /// A value in the board's registers, typed and scaled as the profile says.
    public struct Reading: Sendable, Equatable {
        public var name: String
        public var field: RegisterField
        public var unit: String
        /// Above this value the reading is reported as the fault `<name>-high`.
        public var faultAbove: Double?
    }

    /// A named bit of the status word.
    public struct FaultBit: Sendable, Equatable {
        public var name: String
        public var bit: Int
    }

    /// Mode values as the board's register map defines them.
    public struct BoardModes: Sendable, Equatable {
        public var clear: Int
        public var show: Int
        public var blink: Int
    }
}

/// A thermal ticket printer speaking ESC/POS. See `devices/escpos-80mm.yaml`.
public struct PrinterProfile: Sendable, Equatable {
    public var model: String
    /// Characters per line in the normal font (48 on 80 mm paper, 32 on 58 mm).
    public var columns: Int
    /// The size multiplier (1…8) of the ticket number.
    public var numberSize: Int
    /// Whether the cutter leaves a hinge (`partial`) or cuts through.
    public var partialCut: Bool
    /// Whether the printer prints native QR codes (GS ( k).
    public var qrCode: Bool
    /// DLE EOT n requests sent each poll (n = 1 printer, 2 offline cause, 3 error cause, 4 paper sensor).
    public var realTimeStatus: [Int]
    /// Whether the gateway turns on automatic status back (GS a), so changes arrive between polls.
    public var automaticStatusBack: Bool
}

/// An Onbon BX-5/BX-6 controller driving a call board. See `devices/onbon-bx5.yaml`.
public struct OnbonBoardProfile: Sendable, Equatable {
    public var model: String
    /// The screen in pixels.
    public var screenWidth: Int
    public var screenHeight: Int
    /// The dynamic area the gateway writes calls into.
    public var area: Area
    /// The text colour (`red`, `green`, `yellow`).
    public var colour: String

    /// A rectangle of the screen, in pixels.
    public struct Area: Sendable, Equatable {
        public var id: Int
        public var x: Int
        public var y: Int
        public var width: Int
        public var height: Int
    }
}

/// An evaluator pad on a raw serial bus: key codes mapped onto the national scale.
public struct KeyEvaluatorProfile: Sendable, Equatable {
    public var model: String
    public var scale: RatingScale
    /// Codes the pad sends when the citizen gave no verdict (it timed out): acknowledged, not a rating.
    public var noVerdictCodes: Set<Int>
}

/// A caller or operator box: key codes mapped onto what they ask the queue system for.
public struct CallerProfile: Sendable, Equatable {
    /// What a key may ask for; the queue system acts on these names.
    public static let actions = [
        "call-next", "recall", "start-service", "finish", "pause", "resume", "transfer", "skip", "hold", "call-back",
        "cancel", "evaluate",
    ]

    /// One key, or a digit followed by a confirming key.
    public struct Binding: Sendable, Equatable {
        public var code: Int
        /// The digit typed before `code`, for callers that confirm a numbered function.
        public var digit: Int?
        public var action: String
    }

    public var model: String
    public var keys: [Binding]

    /// The action of a key sequence (its last code, and the digit before it where the binding names one).
    public func action(forKeys keys: [UInt8]) -> String? {
        guard let last = keys.last else { return nil }
        let digit = keys.count >= 2 ? Int(keys[keys.count - 2]) : nil
        return self.keys.first { $0.code == Int(last) && ($0.digit == nil || $0.digit == digit) }?.action
    }
}

/// A number board showing a few characters (the ticket number) at a window.
public struct NumberBoardProfile: Sendable, Equatable {
    public var model: String
    /// How many characters the board shows.
    public var digits: Int
}

/// Reads the family-specific part of a profile; every problem is reported with its key path.
struct ProfileParsing {
    let model: String
    let fields: YAMLReader.Fields
    let reader: YAMLReader

    private func section(_ key: String, required: Bool = true) -> YAMLReader.Fields? {
        fields.value(key, required: required).flatMap { reader.fields($0, fields.keyPath(key)) }
    }

    func modbusBoard() -> ModbusBoardProfile? {
        guard let registers = section("registers") else { return nil }
        let address = 0...65535
        let block = ProfileLibrary.range(registers, "block", reader)
        let status = registers.int("status", in: address, required: true)
        let readyBit = registers.int("ready-bit", in: 0...15) ?? 0
        var faultBits: [ModbusBoardProfile.FaultBit] = []
        if let node = registers.value("fault-bits"), let faults = reader.fields(node, "registers.fault-bits") {
            for name in node.mapping?.keys.compactMap(\.scalar?.string) ?? [] {
                if let bit = faults.int(name, in: 0...15) { faultBits.append(.init(name: name, bit: bit)) }
            }
            faults.rejectUnknownKeys()
        }
        let text = ProfileLibrary.range(registers, "text", reader)
        let mode = registers.int("mode", in: address, required: true)
        let command = registers.int("command-counter", in: address, required: true)
        let acknowledge = registers.int("acknowledge", in: address, required: true)
        let brightness = registers.int("brightness", in: address)
        let power = registers.int("power", in: address)
        registers.rejectUnknownKeys()
        var readings: [ModbusBoardProfile.Reading] = []
        if let node = fields.value("readings"), let section = reader.fields(node, "readings") {
            for name in node.mapping?.keys.compactMap(\.scalar?.string) ?? [] {
                guard let readingNode = section.value(name), let reading = reader.fields(readingNode, "readings.\(name)") else { continue }
                if let field = registerField(reading), let unit = reading.string("unit", required: true) {
                    readings.append(.init(name: name, field: field, unit: unit, faultAbove: reading.double("fault-above")))
                }
                reading.rejectUnknownKeys()
            }
            section.rejectUnknownKeys()
        }
        let encodingName = fields.choice("text-encoding", RegisterTextEncoding.allCases.map(\.rawValue)) ?? "gb18030"
        let encoding = RegisterTextEncoding(rawValue: encodingName) ?? .gb18030
        var modes: ModbusBoardProfile.BoardModes?
        if let values = section("modes") {
            let clear = values.int("clear", in: address, required: true)
            let show = values.int("show", in: address, required: true)
            let blink = values.int("blink", in: address, required: true)
            values.rejectUnknownKeys()
            if let clear, let show, let blink { modes = .init(clear: clear, show: show, blink: blink) }
        }
        guard let block, let status, let text, let mode, let command, let acknowledge, let modes else { return nil }
        // The text goes in one write: a longer area could not be written at all.
        if text.count > ModbusLimits.writeRegisterQuantity.upperBound {
            reader.report(registers.value("text"), "registers.text",
                          "\(text.count) registers: the text is written in one Modbus write, which carries at most "
                            + "\(ModbusLimits.writeRegisterQuantity.upperBound)")
        }
        for (key, register) in [("status", status), ("acknowledge", acknowledge)]
        where !(block.start..<block.end).contains(register) {
            reader.report(registers.value(key), "registers.\(key)",
                          "register \(register) lies outside the block read each poll (\(block.start)…\(block.end - 1))")
        }
        for reading in readings {
            let start = Int(reading.field.address)
            if start < block.start || start + reading.field.registerCount > block.end {
                reader.report(fields.value("readings"), "readings.\(reading.name)",
                              "registers \(start)…\(start + reading.field.registerCount - 1) lie outside the block read each poll "
                                + "(\(block.start)…\(block.end - 1))")
            }
        }
        // Brightness or power in a register another key names would overwrite it, or be overwritten by it.
        var named: [(key: String, registers: Range<Int>)] = [
            ("registers.status", status..<(status + 1)), ("registers.mode", mode..<(mode + 1)),
            ("registers.command-counter", command..<(command + 1)),
            ("registers.acknowledge", acknowledge..<(acknowledge + 1)), ("registers.text", text.start..<text.end),
        ] + readings.map { reading in
            let start = Int(reading.field.address)
            return ("readings.\(reading.name)", start..<(start + reading.field.registerCount))
        }
        for (key, register) in [("brightness", brightness), ("power", power)] {
            guard let register else { continue }
            if let other = named.first(where: { $0.registers.contains(register) }) {
                let (first, last) = (other.registers.lowerBound, other.registers.upperBound - 1)
                let span = first == last ? "" : " (\(first)…\(last))"
                reader.report(registers.value(key), "registers.\(key)",
                              "register \(register) is taken by \(other.key)\(span): give \(key) a register of its own")
            }
            named.append(("registers.\(key)", register..<(register + 1)))
        }
        return ModbusBoardProfile(
            model: model, block: block, statusRegister: status, readyBit: readyBit, faultBits: faultBits, text: text,
            textEncoding: encoding, modeRegister: mode, modes: modes, commandRegister: command,
            acknowledgeRegister: acknowledge, brightnessRegister: brightness, powerRegister: power, readings: readings)
    }

    func printer() -> PrinterProfile? {
        let paper = section("paper")
        let columns = paper?.int("columns", in: 16...96, required: true)
        _ = paper?.int("width-mm", in: 40...112)
        paper?.rejectUnknownKeys()
        if let name = fields.string("text-encoding"), name != "gb18030" {
            reader.report(fields.value("text-encoding"), "text-encoding",
                          "ESC/POS Chinese mode (FS &) takes gb18030, not '\(name)'")
        }
        let numberSize = fields.int("number-size", in: 1...8) ?? 2
        let cut = fields.choice("cut", ["full", "partial"]) ?? "partial"
        let qrCode = fields.bool("qr-code") ?? false
        let status = section("status")
        var realTime: [Int] = []
        if let node = status?.value("real-time"), let items = reader.items(node, "status.real-time") {
            realTime = items.compactMap { reader.int($0.node, $0.path, in: 1...4) }
        }
        let automatic = status?.bool("automatic-status-back") ?? false
        status?.rejectUnknownKeys()
        guard let columns else { return nil }
        if realTime.isEmpty && !automatic {
            reader.report(fields.value("status"), "status", "the printer needs real-time requests or automatic status back")
        }
        return PrinterProfile(model: model, columns: columns, numberSize: numberSize, partialCut: cut == "partial",
                              qrCode: qrCode, realTimeStatus: realTime, automaticStatusBack: automatic)
    }

    func onbonBoard() -> OnbonBoardProfile? {
        let screen = section("screen")
        let width = screen?.int("width", in: 8...8192, required: true)
        let height = screen?.int("height", in: 8...8192, required: true)
        screen?.rejectUnknownKeys()
        let areaFields = section("area")
        let id = areaFields?.int("id", in: 0...255) ?? 0
        let x = areaFields?.int("x", in: 0...8191, required: true)
        let y = areaFields?.int("y", in: 0...8191, required: true)
        let areaWidth = areaFields?.int("width", in: 1...8192, required: true)
        let areaHeight = areaFields?.int("height", in: 1...8192, required: true)
        areaFields?.rejectUnknownKeys()
        let colour = fields.choice("colour", ["red", "green", "yellow"]) ?? "red"
        if let name = fields.string("text-encoding"), name != "gb2312" {
            reader.report(fields.value("text-encoding"), "text-encoding", "Onbon BX text is gb2312, not '\(name)'")
        }
        guard let width, let height, let x, let y, let areaWidth, let areaHeight else { return nil }
        if x + areaWidth > width || y + areaHeight > height {
            reader.report(fields.value("area"), "area", "the area reaches outside the \(width)×\(height) screen")
        }
        return OnbonBoardProfile(model: model, screenWidth: width, screenHeight: height,
                                 area: .init(id: id, x: x, y: y, width: areaWidth, height: areaHeight), colour: colour)
    }

    func keyEvaluator() -> KeyEvaluatorProfile? {
        var noVerdict: Set<Int> = []
        if let node = fields.value("no-verdict-codes"), let items = reader.items(node, "no-verdict-codes") {
            noVerdict = Set(items.compactMap { reader.int($0.node, $0.path, in: 0...255) })
        }
        guard let scale = ProfileLibrary.ratingScale(fields.value("rating", required: true), reader) else { return nil }
        for key in scale.keys where noVerdict.contains(key.code) {
            reader.report(fields.value("no-verdict-codes"), "no-verdict-codes", "code \(key.code) is also a rating key")
        }
        return KeyEvaluatorProfile(model: model, scale: scale, noVerdictCodes: noVerdict)
    }

    func caller() -> CallerProfile? {
        guard let node = fields.value("keys", required: true), let items = reader.items(node, "keys") else { return nil }
        var keys: [CallerProfile.Binding] = []
        for item in items {
            guard let key = reader.fields(item.node, item.path) else { continue }
            let code = key.int("code", in: 0...255, required: true)
            let digit = key.int("digit", in: 0...9)
            let action = key.choice("action", CallerProfile.actions, required: true)
            key.rejectUnknownKeys()
            guard let code, let action else { continue }
            if keys.contains(where: { $0.code == code && $0.digit == digit }) {
                reader.report(item.node, item.path, "key code \(code) is mapped twice")
            }
            keys.append(.init(code: code, digit: digit, action: action))
        }
        return keys.isEmpty ? nil : CallerProfile(model: model, keys: keys)
    }

    func numberBoard() -> NumberBoardProfile? {
        fields.int("digits", in: 1...3, required: true).map { NumberBoardProfile(model: model, digits: $0) }
    }

    /// A typed register field: `{register: N, type: uint16|int16|uint32|int32|float32, word-order: big|little,
    /// scale: 0.1, offset: 0}`.
    private func registerField(_ reading: YAMLReader.Fields) -> RegisterField? {
        let register = reading.int("register", in: 0...65535, required: true)
        let typeName = reading.choice("type", ["uint16", "int16", "uint32", "int32", "float32"], required: true)
        let order = reading.choice("word-order", RegisterWordOrder.allCases.map(\.rawValue))
            .flatMap(RegisterWordOrder.init(rawValue:)) ?? .big
        let scale = reading.double("scale") ?? 1
        let offset = reading.double("offset") ?? 0
        if scale == 0 { reader.report(reading.value("scale"), reading.keyPath("scale"), "a scale of 0 reads every value as 0") }
        guard let register, let typeName, scale != 0 else { return nil }
        let type: RegisterValueType = switch typeName {
        case "int16": .int16
        case "uint32": .uint32(order)
        case "int32": .int32(order)
        case "float32": .float32(order)
        default: .uint16
        }
        return RegisterField(address: UInt16(register), type: type, scale: scale, offset: offset)
    }
}
