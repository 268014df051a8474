/// A Modbus RTU frame on a serial line: address, PDU, CRC-16/MODBUS low byte first.
public struct ModbusRTUFrame: Equatable, Sendable {
    /// The server's address: 1…247, or 0 for a broadcast request.
    public var address: UInt8
    /// The request or response the frame carries.
    public var message: ModbusMessage

    /// The longest RTU frame the serial line specification allows: 256 bytes.
    public static let maximumLength = 256
    /// The highest unicast address; 248…255 are reserved.
    public static let highestAddress: UInt8 = 247

    /// A frame carrying `message` to or from `address`.
    public init(address: UInt8, message: ModbusMessage) {
        self.address = address
        self.message = message
    }

    /// A request to `address`.
    public init(address: UInt8, request: ModbusRequest) {
        self.init(address: address, message: .request(request))
    }

    /// A response from `address`.
    public init(address: UInt8, response: ModbusResponse) {
        self.init(address: address, message: .response(response))
    }

    /// The bytes on the wire.
    public func encode() throws(ModbusEncodingError) -> [UInt8] {
        guard address <= Self.highestAddress else { throw .addressOutOfRange(address) }
        return Self.frame(address: address, pdu: try message.encode())
    }

    /// Wraps raw PDU bytes (any function code) into an RTU frame: address first, CRC last.
    public static func frame(address: UInt8, pdu: [UInt8]) -> [UInt8] {
        var bytes = [address] + pdu
        let crc = Checksum.crc16Modbus(bytes)
        bytes.append(UInt8(crc & 0xFF))
        bytes.append(UInt8(crc >> 8))
        return bytes
    }
}

/// A Modbus TCP frame: the MBAP header (transaction id, protocol id 0, length, unit id), then the PDU.
public struct ModbusTCPFrame: Equatable, Sendable {
    /// Pairs a response with its request.
    public var transactionId: UInt16
    /// The unit behind a gateway (often 0xFF or 1 for a device spoken to directly).
    public var unitId: UInt8
    /// The request or response the frame carries.
    public var message: ModbusMessage

    /// The longest Modbus TCP frame: the 7-byte MBAP header and a 253-byte PDU.
    public static let maximumLength = 260
    /// The MBAP header's length in bytes.
    public static let headerLength = 7

    /// A frame carrying `message` in transaction `transactionId` for `unitId`.
    public init(transactionId: UInt16, unitId: UInt8, message: ModbusMessage) {
        self.transactionId = transactionId
        self.unitId = unitId
        self.message = message
    }

    /// A request in transaction `transactionId` for `unitId`.
    public init(transactionId: UInt16, unitId: UInt8, request: ModbusRequest) {
        self.init(transactionId: transactionId, unitId: unitId, message: .request(request))
    }

    /// A response in transaction `transactionId` from `unitId`.
    public init(transactionId: UInt16, unitId: UInt8, response: ModbusResponse) {
        self.init(transactionId: transactionId, unitId: unitId, message: .response(response))
    }

    /// The bytes on the wire.
    public func encode() throws(ModbusEncodingError) -> [UInt8] {
        Self.frame(transactionId: transactionId, unitId: unitId, pdu: try message.encode())
    }

    /// Wraps raw PDU bytes (any function code, at most 253) into a Modbus TCP frame.
    public static func frame(transactionId: UInt16, unitId: UInt8, pdu: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerLength + pdu.count)
        bytes.appendModbusWord(transactionId)
        bytes.appendModbusWord(0)
        // The length counts the unit id and the PDU; a PDU longer than the protocol allows saturates it.
        bytes.appendModbusWord(UInt16(clamping: pdu.count + 1))
        bytes.append(unitId)
        return bytes + pdu
    }
}
