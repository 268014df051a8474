/// The Modbus function codes the hall's devices use (MODBUS Application Protocol V1.1b3, §6).
public enum ModbusFunctionCode: UInt8, Sendable, CaseIterable {
    /// 0x01: read 1…2000 coils.
    case readCoils = 0x01
    /// 0x02: read 1…2000 discrete inputs.
    case readDiscreteInputs = 0x02
    /// 0x03: read 1…125 holding registers.
    case readHoldingRegisters = 0x03
    /// 0x04: read 1…125 input registers.
    case readInputRegisters = 0x04
    /// 0x05: switch one coil on or off.
    case writeSingleCoil = 0x05
    /// 0x06: write one holding register.
    case writeSingleRegister = 0x06
    /// 0x10: write 1…123 consecutive holding registers.
    case writeMultipleRegisters = 0x10
}

/// The code of a Modbus exception response (§7). Codes outside the specification's list are kept as they came.
public struct ModbusExceptionCode: RawRepresentable, Hashable, Sendable {
    /// The byte on the wire.
    public var rawValue: UInt8

    /// Wraps the byte on the wire.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// 01: the server does not support the function.
    public static let illegalFunction = ModbusExceptionCode(rawValue: 0x01)
    /// 02: the address range is not available in the server.
    public static let illegalDataAddress = ModbusExceptionCode(rawValue: 0x02)
    /// 03: a value in the request is not allowed (quantity, coil value).
    public static let illegalDataValue = ModbusExceptionCode(rawValue: 0x03)
    /// 04: the server failed while performing the action.
    public static let serverDeviceFailure = ModbusExceptionCode(rawValue: 0x04)
    /// 05: accepted, but it takes long; poll later.
    public static let acknowledge = ModbusExceptionCode(rawValue: 0x05)
    /// 06: the server is busy with a long command; retry later.
    public static let serverDeviceBusy = ModbusExceptionCode(rawValue: 0x06)
    /// 08: the server found a parity error in its memory.
    public static let memoryParityError = ModbusExceptionCode(rawValue: 0x08)
    /// 0A: a gateway could not route the request.
    public static let gatewayPathUnavailable = ModbusExceptionCode(rawValue: 0x0A)
    /// 0B: a gateway got no answer from the target device.
    public static let gatewayTargetDeviceFailedToRespond = ModbusExceptionCode(rawValue: 0x0B)
}

/// Which side of the exchange a decoder listens for.
public enum ModbusRole: Sendable {
    /// A device (server, slave): decodes the requests it receives.
    case server
    /// The gateway (client, master): decodes the responses it receives.
    case client
}

/// Why a Modbus message cannot be put on the wire.
public enum ModbusEncodingError: Error, Equatable, Sendable {
    /// A quantity (registers, coils, status bytes) outside what the function allows.
    case quantityOutOfRange(function: ModbusFunctionCode, quantity: Int, allowed: ClosedRange<Int>)
    /// An RTU address above 247 (248…255 are reserved by the serial line specification).
    case addressOutOfRange(UInt8)
}

/// A request PDU: what the gateway sends and a device receives.
public enum ModbusRequest: Equatable, Sendable {
    /// 0x01: read `count` (1…2000) coils from `start`.
    case readCoils(start: UInt16, count: UInt16)
    /// 0x02: read `count` (1…2000) discrete inputs from `start`.
    case readDiscreteInputs(start: UInt16, count: UInt16)
    /// 0x03: read `count` (1…125) holding registers from `start`.
    case readHoldingRegisters(start: UInt16, count: UInt16)
    /// 0x04: read `count` (1…125) input registers from `start`.
    case readInputRegisters(start: UInt16, count: UInt16)
    /// 0x05: switch the coil at `address` on (FF 00) or off (00 00).
    case writeSingleCoil(address: UInt16, on: Bool)
    /// 0x06: write `value` into the register at `address`.
    case writeSingleRegister(address: UInt16, value: UInt16)
    /// 0x10: write `values` (1…123 of them) from `start`.
    case writeMultipleRegisters(start: UInt16, values: [UInt16])

    /// The function code the PDU starts with.
    public var functionCode: ModbusFunctionCode {
        switch self {
        case .readCoils: .readCoils
        case .readDiscreteInputs: .readDiscreteInputs
        case .readHoldingRegisters: .readHoldingRegisters
        case .readInputRegisters: .readInputRegisters
        case .writeSingleCoil: .writeSingleCoil
        case .writeSingleRegister: .writeSingleRegister
        case .writeMultipleRegisters: .writeMultipleRegisters
        }
    }

    /// The PDU bytes: function code, then the data. Throws if a quantity is outside the function's limits.
    public func encode() throws(ModbusEncodingError) -> [UInt8] {
        let function = functionCode
        var bytes: [UInt8] = [function.rawValue]
        switch self {
        case .readCoils(let start, let count), .readDiscreteInputs(let start, let count):
            try ModbusLimits.check(Int(count), ModbusLimits.bitQuantity, function)
            bytes.appendModbusWord(start)
            bytes.appendModbusWord(count)
        case .readHoldingRegisters(let start, let count), .readInputRegisters(let start, let count):
            try ModbusLimits.check(Int(count), ModbusLimits.readRegisterQuantity, function)
            bytes.appendModbusWord(start)
            bytes.appendModbusWord(count)
        case .writeSingleCoil(let address, let on):
            bytes.appendModbusWord(address)
            bytes.appendModbusWord(on ? ModbusLimits.coilOn : 0)
        case .writeSingleRegister(let address, let value):
            bytes.appendModbusWord(address)
            bytes.appendModbusWord(value)
        case .writeMultipleRegisters(let start, let values):
            try ModbusLimits.check(values.count, ModbusLimits.writeRegisterQuantity, function)
            bytes.appendModbusWord(start)
            bytes.appendModbusWord(UInt16(values.count))
            bytes.append(UInt8(values.count * 2))
            for value in values { bytes.appendModbusWord(value) }
        }
        return bytes
    }

    /// Decodes one whole request PDU (function code first); nil if it is not exactly one valid request.
    public init?(pdu: some Collection<UInt8>) {
        guard let message = ModbusPDUParser.parse(ArraySlice(pdu), role: .server), case .request(let request) = message
        else { return nil }
        self = request
    }
}

/// A response PDU: what a device sends back and the gateway receives.
public enum ModbusResponse: Equatable, Sendable {
    /// 0x01: coil states packed eight to a byte, the first coil in bit 0 (see `ModbusBits`).
    case readCoils(status: [UInt8])
    /// 0x02: discrete input states packed like `readCoils`.
    case readDiscreteInputs(status: [UInt8])
    /// 0x03: the holding registers read (1…125).
    case readHoldingRegisters(values: [UInt16])
    /// 0x04: the input registers read (1…125).
    case readInputRegisters(values: [UInt16])
    /// 0x05: the echo of a coil write.
    case writeSingleCoil(address: UInt16, on: Bool)
    /// 0x06: the echo of a register write.
    case writeSingleRegister(address: UInt16, value: UInt16)
    /// 0x10: where the write started and how many registers it wrote.
    case writeMultipleRegisters(start: UInt16, count: UInt16)
    /// The device refused `function` (sent as function | 0x80, then the code).
    case exception(function: ModbusFunctionCode, code: ModbusExceptionCode)

    /// The function the response answers (for an exception, the function that failed).
    public var functionCode: ModbusFunctionCode {
        switch self {
        case .readCoils: .readCoils
        case .readDiscreteInputs: .readDiscreteInputs
        case .readHoldingRegisters: .readHoldingRegisters
        case .readInputRegisters: .readInputRegisters
        case .writeSingleCoil: .writeSingleCoil
        case .writeSingleRegister: .writeSingleRegister
        case .writeMultipleRegisters: .writeMultipleRegisters
        case .exception(let function, _): function
        }
    }

    /// The PDU bytes: function code, then the data. Throws if a quantity is outside the function's limits.
    public func encode() throws(ModbusEncodingError) -> [UInt8] {
        let function = functionCode
        switch self {
        case .readCoils(let status), .readDiscreteInputs(let status):
            try ModbusLimits.check(status.count, ModbusLimits.bitStatusBytes, function)
            return [function.rawValue, UInt8(status.count)] + status
        case .readHoldingRegisters(let values), .readInputRegisters(let values):
            try ModbusLimits.check(values.count, ModbusLimits.readRegisterQuantity, function)
            var bytes: [UInt8] = [function.rawValue, UInt8(values.count * 2)]
            for value in values { bytes.appendModbusWord(value) }
            return bytes
        case .writeSingleCoil(let address, let on):
            var bytes: [UInt8] = [function.rawValue]
            bytes.appendModbusWord(address)
            bytes.appendModbusWord(on ? ModbusLimits.coilOn : 0)
            return bytes
        case .writeSingleRegister(let address, let value):
            var bytes: [UInt8] = [function.rawValue]
            bytes.appendModbusWord(address)
            bytes.appendModbusWord(value)
            return bytes
        case .writeMultipleRegisters(let start, let count):
            try ModbusLimits.check(Int(count), ModbusLimits.writeRegisterQuantity, function)
            var bytes: [UInt8] = [function.rawValue]
            bytes.appendModbusWord(start)
            bytes.appendModbusWord(count)
            return bytes
        case .exception(let function, let code):
            return [function.rawValue | 0x80, code.rawValue]
        }
    }

    /// Decodes one whole response PDU (function code first); nil if it is not exactly one valid response.
    public init?(pdu: some Collection<UInt8>) {
        guard let message = ModbusPDUParser.parse(ArraySlice(pdu), role: .client),
              case .response(let response) = message
        else { return nil }
        self = response
    }
}

/// A request or a response: what a decoder of either role produces.
public enum ModbusMessage: Equatable, Sendable {
    /// Sent by the client (gateway).
    case request(ModbusRequest)
    /// Sent by the server (device).
    case response(ModbusResponse)

    /// The PDU bytes.
    public func encode() throws(ModbusEncodingError) -> [UInt8] {
        switch self {
        case .request(let request): try request.encode()
        case .response(let response): try response.encode()
        }
    }
}

/// Coil and discrete input states as the wire packs them: eight to a byte, the first one in bit 0.
public enum ModbusBits {
    /// Packs states into bytes; the last byte is padded with zeros.
    public static func pack(_ bits: [Bool]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: (bits.count + 7) / 8)
        for (index, bit) in bits.enumerated() where bit {
            bytes[index / 8] |= 1 << UInt8(index % 8)
        }
        return bytes
    }

    /// The first `count` states in `bytes` (fewer if the bytes hold fewer).
    public static func unpack(_ bytes: [UInt8], count: Int) -> [Bool] {
        let available = min(max(count, 0), bytes.count * 8)
        return (0..<available).map { index in bytes[index / 8] & (1 << UInt8(index % 8)) != 0 }
    }
}

/// The specification's quantity limits (§6.1–§6.12).
public enum ModbusLimits {
    static let bitQuantity = 1...2000
    static let bitStatusBytes = 1...250
    static let readRegisterQuantity = 1...125
    /// Registers one write of several (function 16) carries.
    public static let writeRegisterQuantity = 1...123
    static let coilOn: UInt16 = 0xFF00
    /// 253: the serial line's 256-byte ADU less the address and the CRC (§4.1).
    static let maximumPDUBytes = 253

    static func check(_ quantity: Int, _ allowed: ClosedRange<Int>, _ function: ModbusFunctionCode)
        throws(ModbusEncodingError) {
        guard allowed.contains(quantity) else {
            throw .quantityOutOfRange(function: function, quantity: quantity, allowed: allowed)
        }
    }
}

/// How long a PDU is, judged from its first bytes.
enum ModbusPDULength: Equatable {
    /// It cannot be a PDU of the role.
    case invalid
    /// At least this many PDU bytes are needed to tell.
    case needsAtLeast(Int)
    /// The whole PDU is this many bytes.
    case exactly(Int)
}

/// PDU framing shared by the RTU and TCP decoders.
enum ModbusPDUParser {
    /// The PDU length from however many of its bytes have arrived (function code first).
    static func length(of pdu: ArraySlice<UInt8>, role: ModbusRole) -> ModbusPDULength {
        guard let function = pdu.first else { return .needsAtLeast(1) }
        let base = pdu.startIndex
        switch role {
        case .server:
            switch function {
            case 0x01...0x06:
                return .exactly(5)
            case 0x10:
                // function, start (2), quantity (2), byte count: the count must match the quantity.
                guard pdu.count >= 6 else { return .needsAtLeast(6) }
                let quantity = Int(pdu[base + 3]) << 8 | Int(pdu[base + 4])
                let byteCount = Int(pdu[base + 5])
                guard ModbusLimits.writeRegisterQuantity.contains(quantity), byteCount == quantity * 2 else {
                    return .invalid
                }
                return .exactly(6 + byteCount)
            default:
                return .invalid
            }
        case .client:
            switch function {
            case 0x01, 0x02, 0x03, 0x04:
                guard pdu.count >= 2 else { return .needsAtLeast(2) }
                let byteCount = Int(pdu[base + 1])
                guard ModbusLimits.bitStatusBytes.contains(byteCount) else { return .invalid }
                if function >= 0x03, byteCount % 2 != 0 { return .invalid }
                return .exactly(2 + byteCount)
            case 0x05, 0x06, 0x10:
                return .exactly(5)
            case 0x81...0xFF where ModbusFunctionCode(rawValue: function & 0x7F) != nil:
                return .exactly(2)
            default:
                return .invalid
            }
        }
    }

    /// The message in exactly one PDU of the role; nil if the bytes are not one valid PDU.
    static func parse(_ pdu: ArraySlice<UInt8>, role: ModbusRole) -> ModbusMessage? {
        guard case .exactly(let length) = length(of: pdu, role: role), length == pdu.count else { return nil }
        let base = pdu.startIndex
        func word(_ offset: Int) -> UInt16 { UInt16(pdu[base + offset]) << 8 | UInt16(pdu[base + offset + 1]) }
        // A reply's registers, read without a bounds check per byte (the length is checked above): a poll's
        // reply is most of what a busy bus decodes.
        func words(from offset: Int) -> [UInt16] {
            let count = max(0, (pdu.count - offset) / 2)
            return pdu.withUnsafeBufferPointer { bytes in
                [UInt16](unsafeUninitializedCapacity: count) { words, initialized in
                    for index in 0..<count {
                        words[index] = UInt16(bytes[offset + 2 * index]) << 8 | UInt16(bytes[offset + 2 * index + 1])
                    }
                    initialized = count
                }
            }
        }
        let function = pdu[base]
        switch role {
        case .server:
            switch function {
            case 0x01, 0x02:
                let count = word(3)
                guard ModbusLimits.bitQuantity.contains(Int(count)) else { return nil }
                return .request(function == 0x01
                    ? .readCoils(start: word(1), count: count) : .readDiscreteInputs(start: word(1), count: count))
            case 0x03, 0x04:
                let count = word(3)
                guard ModbusLimits.readRegisterQuantity.contains(Int(count)) else { return nil }
                return .request(function == 0x03
                    ? .readHoldingRegisters(start: word(1), count: count)
                    : .readInputRegisters(start: word(1), count: count))
            case 0x05:
                guard let on = coilState(word(3)) else { return nil }
                return .request(.writeSingleCoil(address: word(1), on: on))
            case 0x06:
                return .request(.writeSingleRegister(address: word(1), value: word(3)))
            case 0x10:
                return .request(.writeMultipleRegisters(start: word(1), values: words(from: 6)))
            default:
                return nil
            }
        case .client:
            switch function {
            case 0x01:
                return .response(.readCoils(status: Array(pdu.dropFirst(2))))
            case 0x02:
                return .response(.readDiscreteInputs(status: Array(pdu.dropFirst(2))))
            case 0x03:
                return .response(.readHoldingRegisters(values: words(from: 2)))
            case 0x04:
                return .response(.readInputRegisters(values: words(from: 2)))
            case 0x05:
                guard let on = coilState(word(3)) else { return nil }
                return .response(.writeSingleCoil(address: word(1), on: on))
            case 0x06:
                return .response(.writeSingleRegister(address: word(1), value: word(3)))
            case 0x10:
                let count = word(3)
                guard ModbusLimits.writeRegisterQuantity.contains(Int(count)) else { return nil }
                return .response(.writeMultipleRegisters(start: word(1), count: count))
            default:
                guard let failed = ModbusFunctionCode(rawValue: function & 0x7F) else { return nil }
                return .response(.exception(function: failed, code: ModbusExceptionCode(rawValue: pdu[base + 1])))
            }
        }
    }

    /// FF 00 is on, 00 00 is off; anything else is not a coil value (§6.5).
    private static func coilState(_ value: UInt16) -> Bool? {
        switch value {
        case ModbusLimits.coilOn: true
        case 0: false
        default: nil
        }
    }
}

extension [UInt8] {
    mutating func appendModbusWord(_ value: UInt16) {
        append(UInt8(value >> 8))
        append(UInt8(value & 0xFF))
    }
}
