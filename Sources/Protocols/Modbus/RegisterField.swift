/// The order of the two registers of a 32-bit value (vendors differ; profiles say which).
public enum RegisterWordOrder: String, Sendable, CaseIterable {
    /// The high word in the lower register (pymodbus `word_order="big"`, "ABCD").
    case big
    /// The low word in the lower register (pymodbus `word_order="little"`, "CDAB").
    case little
}

/// How a text field's bytes are encoded.
public enum RegisterTextEncoding: String, Sendable, CaseIterable {
    /// 7-bit ASCII only.
    case ascii
    /// GB 18030 (Chinese names and window captions), through `ChineseText`.
    case gb18030
}

/// What a profile says a field's registers hold.
public enum RegisterValueType: Equatable, Sendable {
    /// One register, unsigned.
    case uint16
    /// One register, two's complement.
    case int16
    /// Two registers, unsigned.
    case uint32(RegisterWordOrder)
    /// Two registers, two's complement.
    case int32(RegisterWordOrder)
    /// Two registers, IEEE 754 single precision.
    case float32(RegisterWordOrder)
    /// One bit (0 = least significant) of one register.
    case bit(Int)
    /// Text in `registerCount` registers: two bytes each, high byte first, NUL-padded.
    case string(registerCount: Int, encoding: RegisterTextEncoding)

    /// How many registers the value occupies.
    public var registerCount: Int {
        switch self {
        case .uint16, .int16, .bit: 1
        case .uint32, .int32, .float32: 2
        case .string(let registerCount, _): registerCount
        }
    }
}

/// A value read from or written to a register field.
public enum RegisterValue: Equatable, Sendable {
    /// An unscaled integer field.
    case integer(Int64)
    /// A scaled field or a float.
    case real(Double)
    /// A bit flag.
    case flag(Bool)
    /// A text field.
    case text(String)
}

/// Why a register field could not be decoded or encoded. Never a trap.
public enum RegisterFieldError: Error, Equatable, Sendable {
    /// The field's registers are not all inside the block read or written.
    case outsideBlock(fieldStart: Int, fieldCount: Int, blockStart: Int, blockCount: Int)
    /// The field itself makes no sense: a bit above 15, an empty string, a zero or non-finite scale.
    case invalidField(String)
    /// The value does not fit the field's type once scaled.
    case valueOutOfRange(RegisterValue)
    /// The value is of the wrong kind for the field (text for a number, a number for a flag, …).
    case wrongKind(RegisterValue)
    /// The text has a character the encoding cannot represent (or a NUL, which would end it early).
    case unencodableText(String)
    /// The encoded text needs more bytes than the field's registers hold.
    case textTooLong(byteCount: Int, capacity: Int)
    /// The registers hold bytes that are not valid text in the encoding.
    case undecodableText([UInt8])
}

/// One value in a device's register map, as a profile describes it: where, what type, how scaled.
///
/// Numbers are `raw × scale + offset` (e.g. scale 0.1 for tenths); a field with scale 1 and offset 0
/// reads as `.integer` (or `.real` for float32), a scaled one as `.real`.
public struct RegisterField: Equatable, Sendable {
    /// The first register's address.
    public var address: UInt16
    /// What the registers hold.
    public var type: RegisterValueType
    /// Multiplies the raw value.
    public var scale: Double
    /// Added after scaling.
    public var offset: Double

    /// A field at `address` of `type`, read as `raw × scale + offset`.
    public init(address: UInt16, type: RegisterValueType, scale: Double = 1, offset: Double = 0) {
        self.address = address
        self.type = type
        self.scale = scale
        self.offset = offset
    }

    /// How many registers the field occupies.
    public var registerCount: Int { type.registerCount }

    /// Whether reading applies a scale or an offset.
    public var isScaled: Bool { scale != 1 || offset != 0 }

    /// The field's value in `registers`, a block read from `blockStart`.
    public func decode(from registers: [UInt16], blockStart: UInt16 = 0) throws(RegisterFieldError) -> RegisterValue {
        try validate()
        let first = try firstIndex(inBlockOf: registers.count, startingAt: blockStart)
        let words = registers[first..<(first + registerCount)]
        switch type {
        case .uint16:
            return number(Int64(words[first]))
        case .int16:
            return number(Int64(Int16(bitPattern: words[first])))
        case .uint32(let order):
            return number(Int64(Self.combine(words, order)))
        case .int32(let order):
            return number(Int64(Int32(bitPattern: Self.combine(words, order))))
        case .float32(let order):
            return .real(Double(Float(bitPattern: Self.combine(words, order))) * scale + offset)
        case .bit(let bit):
            return .flag(words[first] & (1 << UInt16(bit)) != 0)
        case .string(_, let encoding):
            let bytes = RegisterText.bytes(from: words)
            switch encoding {
            case .ascii:
                guard bytes.allSatisfy({ $0 < 0x80 }) else { throw .undecodableText(bytes) }
                return .text(String(decoding: bytes, as: UTF8.self))
            case .gb18030:
                guard let text = ChineseText.decode(bytes, as: .gb18030) else { throw .undecodableText(bytes) }
                return .text(text)
            }
        }
    }

    /// The field's registers for `value`. A bit flag gives its register with only that bit (set or clear);
    /// use `encode(_:into:blockStart:)` to change one bit and keep the others.
    public func encode(_ value: RegisterValue) throws(RegisterFieldError) -> [UInt16] {
        var registers = [UInt16](repeating: 0, count: max(registerCount, 0))
        try encode(value, into: &registers, blockStart: address)
        return registers
    }

    /// Writes `value` into its registers inside `registers`, a block starting at `blockStart`; a bit flag
    /// changes only its bit. On error `registers` is left unchanged.
    public func encode(_ value: RegisterValue, into registers: inout [UInt16], blockStart: UInt16 = 0)
        throws(RegisterFieldError) {
        try validate()
        let first = try firstIndex(inBlockOf: registers.count, startingAt: blockStart)
        switch type {
        case .uint16:
            registers[first] = UInt16(try raw(value, in: 0...Int64(UInt16.max)))
        case .int16:
            registers[first] = UInt16(bitPattern: Int16(try raw(value, in: Int64(Int16.min)...Int64(Int16.max))))
        case .uint32(let order):
            let words = Self.split(UInt32(try raw(value, in: 0...Int64(UInt32.max))), order)
            registers[first] = words.0
            registers[first + 1] = words.1
        case .int32(let order):
            let signed = Int32(try raw(value, in: Int64(Int32.min)...Int64(Int32.max)))
            let words = Self.split(UInt32(bitPattern: signed), order)
            registers[first] = words.0
            registers[first + 1] = words.1
        case .float32(let order):
            let words = Self.split(try float(value).bitPattern, order)
            registers[first] = words.0
            registers[first + 1] = words.1
        case .bit(let bit):
            guard case .flag(let on) = value else { throw .wrongKind(value) }
            let mask: UInt16 = 1 << UInt16(bit)
            registers[first] = on ? registers[first] | mask : registers[first] & ~mask
        case .string(let count, let encoding):
            guard case .text(let text) = value else { throw .wrongKind(value) }
            let bytes = try Self.bytes(of: text, encoding)
            guard bytes.count <= count * 2 else { throw .textTooLong(byteCount: bytes.count, capacity: count * 2) }
            registers.replaceSubrange(first..<(first + count), with: RegisterText.registers(from: bytes, count: count))
        }
    }

    private func validate() throws(RegisterFieldError) {
        guard scale.isFinite, scale != 0, offset.isFinite else {
            throw .invalidField("scale must be finite and non-zero, offset finite")
        }
        switch type {
        case .bit(let bit) where !(0...15).contains(bit):
            throw .invalidField("bit \(bit) is not in 0…15")
        case .string(let count, _) where count < 1:
            throw .invalidField("a string needs at least one register")
        default:
            break
        }
    }

    /// The index of the field's first register in a block of `blockCount` registers from `blockStart`.
    private func firstIndex(inBlockOf blockCount: Int, startingAt blockStart: UInt16) throws(RegisterFieldError)
        -> Int {
        let first = Int(address) - Int(blockStart)
        guard first >= 0, first <= blockCount - registerCount else {
            throw .outsideBlock(fieldStart: Int(address), fieldCount: registerCount,
                                blockStart: Int(blockStart), blockCount: blockCount)
        }
        return first
    }

    private func number(_ raw: Int64) -> RegisterValue {
        isScaled ? .real(Double(raw) * scale + offset) : .integer(raw)
    }

    /// The raw integer for `value`, undoing the scaling and rounding to the nearest step.
    private func raw(_ value: RegisterValue, in range: ClosedRange<Int64>) throws(RegisterFieldError) -> Int64 {
        let result: Int64?
        switch value {
        case .integer(let integer) where !isScaled:
            result = integer
        case .integer(let integer):
            result = Self.rounded((Double(integer) - offset) / scale)
        case .real(let real):
            // Unscaled integer fields take a real only when it is a whole number.
            result = isScaled ? Self.rounded((real - offset) / scale) : Int64(exactly: real)
        case .flag, .text:
            throw .wrongKind(value)
        }
        guard let result, range.contains(result) else { throw .valueOutOfRange(value) }
        return result
    }

    private func float(_ value: RegisterValue) throws(RegisterFieldError) -> Float {
        let real: Double
        switch value {
        case .integer(let integer): real = Double(integer)
        case .real(let value): real = value
        case .flag, .text: throw .wrongKind(value)
        }
        let result = Float((real - offset) / scale)
        guard real.isFinite, result.isFinite else { throw .valueOutOfRange(value) }
        return result
    }

    private static func rounded(_ value: Double) -> Int64? {
        let whole = value.rounded()
        // Int64(exactly:) is nil for non-finite values and values beyond Int64's range.
        return whole.isFinite ? Int64(exactly: whole) : nil
    }

    private static func combine(_ words: ArraySlice<UInt16>, _ order: RegisterWordOrder) -> UInt32 {
        let first = UInt32(words[words.startIndex])
        let second = UInt32(words[words.startIndex + 1])
        return order == .big ? first << 16 | second : second << 16 | first
    }

    private static func split(_ value: UInt32, _ order: RegisterWordOrder) -> (UInt16, UInt16) {
        let high = UInt16(value >> 16)
        let low = UInt16(value & 0xFFFF)
        return order == .big ? (high, low) : (low, high)
    }

    private static func bytes(of text: String, _ encoding: RegisterTextEncoding) throws(RegisterFieldError) -> [UInt8] {
        let bytes: [UInt8]?
        switch encoding {
        case .ascii: bytes = text.unicodeScalars.allSatisfy(\.isASCII) ? Array(text.utf8) : nil
        case .gb18030: bytes = ChineseText.encode(text, as: .gb18030)
        }
        // A NUL would end the text early when it is read back.
        guard let bytes, !bytes.contains(0) else { throw .unencodableText(text) }
        return bytes
    }
}
