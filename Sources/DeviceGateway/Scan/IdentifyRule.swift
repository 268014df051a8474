import Foundation
public import Protocols
import Yams

/// How a profile recognises its model on the wire: one read, and the values that mark the model.
///
/// In a profile: `identify: {function: read-holding, register: 6, count: 2, equals: [3, 0x4856]}`. `gatewayd scan`
/// sends the read to every device that answered and names the profile whose values came back.
public struct IdentifyRule: Sendable, Equatable {
    /// The read the rule sends.
    public enum Function: String, Sendable, Equatable, CaseIterable {
        case readHolding = "read-holding"
        case readInput = "read-input"
    }

    /// The read the rule sends.
    public var function: Function
    /// The first register, 0-based.
    public var register: Int
    /// How many registers.
    public var count: Int
    /// The values the registers must hold, in order.
    public var equals: [UInt16]

    /// Creates a rule.
    public init(function: Function, register: Int, count: Int, equals: [UInt16]) {
        self.function = function
        self.register = register
        self.count = count
        self.equals = equals
    }

    /// The request the rule sends.
    public var request: ModbusRequest {
        switch function {
        case .readHolding: .readHoldingRegisters(start: UInt16(register), count: UInt16(count))
        case .readInput: .readInputRegisters(start: UInt16(register), count: UInt16(count))
        }
    }

    /// Why holding registers read from `blockStart` show another model than this rule's, in words; nil when they show
    /// this one, or when the block does not hold the rule's registers (then a poll cannot tell).
    public func mismatch(inHoldingRegisters values: [UInt16], from blockStart: Int) -> String? {
        let offset = register - blockStart
        guard function == .readHolding, offset >= 0, offset + count <= values.count else { return nil }
        // At every poll: compared in place, an array made only for the words of a mismatch.
        guard !values[offset..<(offset + count)].elementsEqual(equals) else { return nil }
        let found = Array(values[offset..<(offset + count)])
        func words(_ values: [UInt16]) -> String { values.map { String(format: "0x%04X", $0) }.joined(separator: " ") }
        let registers = count == 1 ? "register \(register)" : "registers \(register)–\(register + count - 1)"
        return "\(registers) read \(words(found)), where this model has \(words(equals))"
    }

    /// Whether `response` to `request` marks the model.
    public func matches(_ response: ModbusResponse) -> Bool {
        switch (function, response) {
        case (.readHolding, .readHoldingRegisters(let values)), (.readInput, .readInputRegisters(let values)):
            values == equals
        default: false
        }
    }

    /// Parses `identify:` of a profile; problems are reported to `reader`.
    static func parse(_ node: Node?, _ reader: YAMLReader) -> IdentifyRule? {
        guard let node, let fields = reader.fields(node, "identify") else { return nil }
        let function = fields.choice("function", Function.allCases.map(\.rawValue), required: true)
            .flatMap(Function.init(rawValue:))
        let register = fields.int("register", in: 0...65535, required: true)
        let count = fields.int("count", in: 1...125, required: true)
        var values: [UInt16] = []
        if let list = fields.value("equals", required: true), let items = reader.items(list, "identify.equals") {
            values = items.compactMap { reader.int($0.node, $0.path, in: 0...65535).map(UInt16.init) }
        }
        fields.rejectUnknownKeys()
        guard let function, let register, let count else { return nil }
        if values.count != count {
            reader.report(fields.value("equals"), "identify.equals", "\(values.count) values for \(count) registers")
            return nil
        }
        if register + count > 65536 {
            reader.report(fields.value("register"), "identify.register", "registers beyond 65535")
            return nil
        }
        return IdentifyRule(function: function, register: register, count: count, equals: values)
    }
}

extension ProfileLibrary {
    /// Every profile in the folder that carries an identification rule, by name, sorted.
    ///
    /// A profile that does not load is left out: `config check` reports it where it is used.
    public func identifiable() -> [(name: String, profile: LoadedProfile, rule: IdentifyRule)] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.filter { $0.hasSuffix(".yaml") }.sorted().compactMap { file in
            let name = String(file.dropLast(5))
            guard let loaded = try? load(named: name), let rule = loaded.identify else { return nil }
            return (name, loaded, rule)
        }
    }
}
