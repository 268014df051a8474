import Protocols

/// Modbus RTU and TCP decoding: a gateway's view (responses) and a mock device's view (requests).
func modbusBenchmarks() -> [DecodeBenchmark] {
    let requests: [ModbusMessage] = [
        .request(.readHoldingRegisters(start: 0x0000, count: 10)),
        .request(.readInputRegisters(start: 0x0100, count: 4)),
        .request(.writeSingleRegister(address: 0x0010, value: 1)),
        .request(.writeMultipleRegisters(start: 0x0020, values: Array(0..<8))),
    ]
    let responses: [ModbusMessage] = [
        .response(.readHoldingRegisters(values: Array(0..<10))),
        .response(.readInputRegisters(values: [0x1234, 0x5678, 0x9ABC, 0xDEF0])),
        .response(.writeSingleRegister(address: 0x0010, value: 1)),
        .response(.exception(function: .readHoldingRegisters, code: .illegalDataAddress)),
    ]
    func rtu(_ messages: [ModbusMessage]) -> [[UInt8]] {
        messages.enumerated().compactMap { index, message in
            try? ModbusRTUFrame(address: UInt8(index + 1), message: message).encode()
        }
    }
    func tcp(_ messages: [ModbusMessage]) -> [[UInt8]] {
        messages.enumerated().compactMap { index, message in
            try? ModbusTCPFrame(transactionId: UInt16(index + 1), unitId: 1, message: message).encode()
        }
    }
    let rtuResponses = stream(of: rtu(responses), count: 2_000)
    let rtuRequests = stream(of: rtu(requests), count: 2_000)
    // TCP garbage without a 00 byte, which every MBAP header carries.
    let tcpResponses = stream(of: tcp(responses), count: 2_000, garbage: [0x13, 0x37, 0xFF])
    return [
        DecodeBenchmark(family: "modbus-rtu responses", stream: rtuResponses.bytes, expectedFrames: rtuResponses.frames,
                        makeDecoder: { ModbusRTUDecoder(role: .client) }),
        DecodeBenchmark(family: "modbus-rtu requests", stream: rtuRequests.bytes, expectedFrames: rtuRequests.frames,
                        makeDecoder: { ModbusRTUDecoder(role: .server) }),
        DecodeBenchmark(family: "modbus-tcp responses", stream: tcpResponses.bytes, expectedFrames: tcpResponses.frames,
                        makeDecoder: { ModbusTCPDecoder(role: .client) }),
    ]
}
