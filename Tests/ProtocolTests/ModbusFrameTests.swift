import Foundation
import Protocols
import Testing

/// Golden Modbus frames from outside our code: the specification's worked examples and pymodbus 3.8.6.
@Suite struct ModbusFrameTests {
    // MARK: MODBUS Application Protocol Specification V1.1b3 (modbus.org), worked examples (PDUs)

    /// §6.3 Read Holding Registers: registers 108–110 → 555, 0, 100.
    @Test func specificationReadHoldingRegisters() throws {
        let request: [UInt8] = [0x03, 0x00, 0x6B, 0x00, 0x03]
        let response: [UInt8] = [0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64]
        #expect(try ModbusRequest.readHoldingRegisters(start: 0x006B, count: 3).encode() == request)
        #expect(ModbusRequest(pdu: request) == .readHoldingRegisters(start: 0x006B, count: 3))
        #expect(try ModbusResponse.readHoldingRegisters(values: [555, 0, 100]).encode() == response)
        #expect(ModbusResponse(pdu: response) == .readHoldingRegisters(values: [555, 0, 100]))
    }

    /// §6.1 Read Coils: outputs 20–38; status CD 6B 05, output 20 in bit 0 of the first byte.
    @Test func specificationReadCoils() throws {
        let request: [UInt8] = [0x01, 0x00, 0x13, 0x00, 0x13]
        let response: [UInt8] = [0x01, 0x03, 0xCD, 0x6B, 0x05]
        #expect(try ModbusRequest.readCoils(start: 0x0013, count: 0x0013).encode() == request)
        #expect(ModbusResponse(pdu: response) == .readCoils(status: [0xCD, 0x6B, 0x05]))
        // 0xCD = 1100 1101: outputs 27…20 read from the top bit down.
        #expect(ModbusBits.unpack([0xCD], count: 8) == [true, false, true, true, false, false, true, true])
        #expect(ModbusBits.pack([true, false, true, true, false, false, true, true, true, true, false, true, false,
                                 true, true, false, true, false, true]) == [0xCD, 0x6B, 0x05])
    }

    /// §6.5 Write Single Coil: coil 173 on; the response echoes the request.
    @Test func specificationWriteSingleCoil() throws {
        let pdu: [UInt8] = [0x05, 0x00, 0xAC, 0xFF, 0x00]
        #expect(try ModbusRequest.writeSingleCoil(address: 0x00AC, on: true).encode() == pdu)
        #expect(ModbusResponse(pdu: pdu) == .writeSingleCoil(address: 0x00AC, on: true))
    }

    /// §6.6 Write Single Register: register 2 ← 00 03; the response echoes the request.
    @Test func specificationWriteSingleRegister() throws {
        let pdu: [UInt8] = [0x06, 0x00, 0x01, 0x00, 0x03]
        #expect(try ModbusRequest.writeSingleRegister(address: 1, value: 3).encode() == pdu)
        #expect(ModbusRequest(pdu: pdu) == .writeSingleRegister(address: 1, value: 3))
        #expect(ModbusResponse(pdu: pdu) == .writeSingleRegister(address: 1, value: 3))
    }

    /// §6.12 Write Multiple Registers: two registers from address 1 ← 00 0A, 01 02.
    @Test func specificationWriteMultipleRegisters() throws {
        let request: [UInt8] = [0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02]
        let response: [UInt8] = [0x10, 0x00, 0x01, 0x00, 0x02]
        #expect(try ModbusRequest.writeMultipleRegisters(start: 1, values: [0x000A, 0x0102]).encode() == request)
        #expect(ModbusRequest(pdu: request) == .writeMultipleRegisters(start: 1, values: [0x000A, 0x0102]))
        #expect(try ModbusResponse.writeMultipleRegisters(start: 1, count: 2).encode() == response)
        #expect(ModbusResponse(pdu: response) == .writeMultipleRegisters(start: 1, count: 2))
    }

    /// §7 Exception example: read coil 04A1 (1185) → 81 02, illegal data address.
    @Test func specificationException() throws {
        #expect(try ModbusRequest.readCoils(start: 0x04A1, count: 1).encode() == [0x01, 0x04, 0xA1, 0x00, 0x01])
        let response = ModbusResponse.exception(function: .readCoils, code: .illegalDataAddress)
        #expect(try response.encode() == [0x81, 0x02])
        #expect(ModbusResponse(pdu: [0x81, 0x02]) == response)
    }

    // MARK: pymodbus 3.8.6 framers (Tests/ProtocolTests/Fixtures/modbus/frames.json, scripts/modbus-fixtures.py)

    @Test func rtuFramesMatchPymodbus() throws {
        let fixtures = try ModbusFixtures.frames().filter { $0.framer == "rtu" }
        #expect(fixtures.count == Self.expectedMessages.count)
        for fixture in fixtures {
            let message = try #require(Self.expectedMessages[fixture.name], "no expectation for \(fixture.name)")
            let frame = ModbusRTUFrame(address: fixture.unit, message: message)
            #expect(try frame.encode() == fixture.bytes, "\(fixture.name)")
            for chunkSize in [fixture.bytes.count, 1] {
                var decoder = ModbusRTUDecoder(role: fixture.direction == "request" ? .server : .client)
                var decoded: [ModbusRTUFrame] = []
                for start in stride(from: 0, to: fixture.bytes.count, by: chunkSize) {
                    decoded += decoder.decode(fixture.bytes[start..<min(start + chunkSize, fixture.bytes.count)])
                }
                #expect(decoded == [frame], "\(fixture.name) in chunks of \(chunkSize)")
                #expect(decoder.bufferedByteCount == 0 && decoder.discardedByteCount == 0)
            }
        }
    }

    @Test func tcpFramesMatchPymodbus() throws {
        let fixtures = try ModbusFixtures.frames().filter { $0.framer == "tcp" }
        #expect(fixtures.count == Self.expectedMessages.count)
        for fixture in fixtures {
            let message = try #require(Self.expectedMessages[fixture.name], "no expectation for \(fixture.name)")
            let frame = ModbusTCPFrame(transactionId: fixture.transaction, unitId: fixture.unit, message: message)
            #expect(try frame.encode() == fixture.bytes, "\(fixture.name)")
            var decoder = ModbusTCPDecoder(role: fixture.direction == "request" ? .server : .client)
            #expect(decoder.decode(fixture.bytes) == [frame], "\(fixture.name)")
            #expect(decoder.bufferedByteCount == 0 && decoder.discardedByteCount == 0)
        }
    }

    /// mbpoll 1.0 (libmodbus) requests captured on a socat pseudo-terminal pair
    /// (Tests/ProtocolTests/Fixtures/modbus/mbpoll.json, scripts/modbus-fixtures.py).
    @Test func rtuRequestsMatchMbpoll() throws {
        let fixtures = try ModbusFixtures.frames("mbpoll.json")
        #expect(fixtures.count == 4)
        for fixture in fixtures {
            let message = try #require(Self.expectedMessages[fixture.name], "no expectation for \(fixture.name)")
            let frame = ModbusRTUFrame(address: fixture.unit, message: message)
            #expect(try frame.encode() == fixture.bytes, "\(fixture.name)")
            var decoder = ModbusRTUDecoder(role: .server)
            #expect(decoder.decode(fixture.bytes) == [frame], "\(fixture.name)")
        }
    }

    /// What each pymodbus fixture was built from (see scripts/modbus-fixtures.py).
    static let expectedMessages: [String: ModbusMessage] = [
        "read_holding_registers_request": .request(.readHoldingRegisters(start: 0x006B, count: 3)),
        "read_holding_registers_response": .response(.readHoldingRegisters(values: [555, 0, 100])),
        "read_input_registers_request": .request(.readInputRegisters(start: 0x0200, count: 2)),
        "read_input_registers_response": .response(.readInputRegisters(values: [0x1234, 0xFFFF])),
        "write_single_register_request": .request(.writeSingleRegister(address: 1, value: 3)),
        "write_single_register_response": .response(.writeSingleRegister(address: 1, value: 3)),
        "write_multiple_registers_request": .request(.writeMultipleRegisters(start: 1, values: [0x000A, 0x0102])),
        "write_multiple_registers_response": .response(.writeMultipleRegisters(start: 1, count: 2)),
        "read_coils_request": .request(.readCoils(start: 0x0013, count: 0x13)),
        "read_coils_response": .response(.readCoils(status: [0xCD, 0x6B, 0x05])),
        "read_discrete_inputs_request": .request(.readDiscreteInputs(start: 0x00C4, count: 0x16)),
        "write_single_coil_request": .request(.writeSingleCoil(address: 0x00AC, on: true)),
        "write_single_coil_response": .response(.writeSingleCoil(address: 0x00AC, on: false)),
        "exception_response": .response(.exception(function: .readHoldingRegisters, code: .illegalDataAddress)),
    ]

    // MARK: Limits

    @Test func quantitiesOutsideTheSpecificationAreRefusedNotTruncated() {
        #expect(throws: ModbusEncodingError.quantityOutOfRange(function: .readHoldingRegisters, quantity: 126,
                                                               allowed: 1...125)) {
            try ModbusRequest.readHoldingRegisters(start: 0, count: 126).encode()
        }
        #expect(throws: ModbusEncodingError.self) {
            try ModbusRequest.writeMultipleRegisters(start: 0, values: []).encode()
        }
        #expect(throws: ModbusEncodingError.self) {
            try ModbusRequest.writeMultipleRegisters(start: 0, values: Array(repeating: 1, count: 124)).encode()
        }
        #expect(throws: ModbusEncodingError.self) { try ModbusResponse.readCoils(status: []).encode() }
        #expect(throws: ModbusEncodingError.addressOutOfRange(248)) {
            try ModbusRTUFrame(address: 248, request: .readHoldingRegisters(start: 0, count: 1)).encode()
        }
        // 123 registers: the longest write; 1 + 1 + 4 + 1 + 246 + 2 = 255 bytes on the line.
        let longest = ModbusRTUFrame(address: 1, request: .writeMultipleRegisters(start: 0, values: Array(0..<123)))
        #expect((try? longest.encode())?.count == 255)
    }
}

/// Decoder behaviour the property tests do not pin down by name.
@Suite struct ModbusDecoderTests {
    static let response = ModbusRTUFrame(address: 0x11, response: .readHoldingRegisters(values: [555, 0, 100]))
    static let echo = ModbusRTUFrame(address: 0x11, response: .writeSingleRegister(address: 1, value: 3))

    @Test func rtuResynchronisesAfterGarbageAndABadCrc() throws {
        let good = try Self.response.encode()
        var corrupted = good
        corrupted[corrupted.count - 1] ^= 0x01
        var decoder = ModbusRTUDecoder(role: .client)
        // Inside the corrupted frame, 06 02 2B claims 43 data bytes: the frames after it come out when
        // the line goes quiet (or once 48 bytes have arrived), not before.
        var frames = decoder.decode([0xFF, 0xFE] + corrupted + good + [0x2B] + (try Self.echo.encode()))
        #expect(frames.isEmpty)
        frames += decoder.flush()
        #expect(frames == [Self.response, Self.echo])
        #expect(decoder.discardedByteCount == 2 + corrupted.count + 1)
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func rtuUnknownFunctionCodesAreDiscarded() throws {
        // Read device identification (0x2B) is not a function we decode: its bytes are skipped.
        let identification = ModbusRTUFrame.frame(address: 1, pdu: [0x2B, 0x0E, 0x01, 0x00])
        var decoder = ModbusRTUDecoder(role: .server)
        let request = ModbusRTUFrame(address: 1, request: .readInputRegisters(start: 0, count: 2))
        #expect(decoder.decode(identification + (try request.encode())) == [request])
        #expect(decoder.discardedByteCount == identification.count)
    }

    @Test func rtuRolesDecodeTheirOwnDirectionOnly() throws {
        let write = ModbusRTUFrame(address: 7, request: .writeMultipleRegisters(start: 1, values: [1, 2]))
        let request = try write.encode()
        var client = ModbusRTUDecoder(role: .client)
        #expect(client.decode(request).isEmpty)
        #expect(client.flush().isEmpty && client.bufferedByteCount == 0)
        // A broadcast request (address 0) is for every server; no response ever comes from address 0.
        let broadcast = ModbusRTUFrame(address: 0, request: .writeSingleRegister(address: 9, value: 1))
        var server = ModbusRTUDecoder(role: .server)
        #expect(server.decode(try broadcast.encode()) == [broadcast])
    }

    @Test func flushReturnsAWholeFrameHiddenInsideATruncatedOne() throws {
        // 11 03 10 claims 16 data bytes (21 in all); the echo frame after it is only 8.
        var decoder = ModbusRTUDecoder(role: .client)
        #expect(decoder.decode([0x11, 0x03, 0x10, 0x00] + (try Self.echo.encode())).isEmpty)
        #expect(decoder.bufferedByteCount == 12)
        #expect(decoder.flush() == [Self.echo])
        #expect(decoder.bufferedByteCount == 0)
        #expect(decoder.discardedByteCount == 4)
    }

    @Test func buffersStayWithinTheLongestFrame() {
        var generator = SeededGenerator(seed: 42)
        var rtu = ModbusRTUDecoder(role: .client)
        var tcp = ModbusTCPDecoder(role: .server)
        for _ in 0..<20_000 {
            let byte = UInt8.random(in: 0...255, using: &generator)
            _ = rtu.decode([byte])
            _ = tcp.decode([byte == 0xFF ? 0 : byte])
            #expect(rtu.bufferedByteCount <= rtu.maximumBufferedBytes)
            #expect(tcp.bufferedByteCount <= tcp.maximumBufferedBytes)
        }
    }

    @Test func tcpRejectsABadHeaderOneByteAtATime() throws {
        let frame = ModbusTCPFrame(transactionId: 0x1501, unitId: 0xFF,
                                   request: .readHoldingRegisters(start: 0, count: 10))
        let good = try frame.encode()
        var wrongProtocol = good
        wrongProtocol[3] = 0x01
        // Length 0x0105 is beyond the 254 a 253-byte PDU allows.
        var tooLong = good
        tooLong[4] = 0x01
        // The header says 5 bytes follow, the 03 request needs 6.
        var wrongLength = good
        wrongLength[5] = 0x05
        var decoder = ModbusTCPDecoder(role: .server)
        #expect(decoder.decode(wrongProtocol + tooLong + wrongLength.dropLast() + good) == [frame])
        #expect(decoder.discardedByteCount == 3 * good.count - 1)
    }

    @Test func tcpResponseOfTheLongestKind() throws {
        let frame = ModbusTCPFrame(transactionId: 9, unitId: 1, response: .readInputRegisters(values: Array(0..<125)))
        let bytes = try frame.encode()
        #expect(bytes.count == 7 + 2 + 250)
        var decoder = ModbusTCPDecoder(role: .client)
        #expect(decoder.decode(bytes) == [frame])
    }
}

/// The JSON fixtures scripts/modbus-fixtures.py generated with pymodbus.
enum ModbusFixtures {
    struct Frame: Decodable {
        var name: String
        var framer: String
        var direction: String
        var unit: UInt8
        var transaction: UInt16
        var hex: String

        var bytes: [UInt8] {
            stride(from: 0, to: hex.count, by: 2).compactMap { offset in
                let start = hex.index(hex.startIndex, offsetBy: offset)
                return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16)
            }
        }
    }

    struct Encoding: Decodable {
        var type: String
        var wordOrder: String
        var encoding: String
        var value: Value
        var registers: [UInt16]
    }

    /// A JSON number or string, as pymodbus produced it.
    enum Value: Decodable {
        case integer(Int64)
        case real(Double)
        case text(String)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let integer = try? container.decode(Int64.self) {
                self = .integer(integer)
            } else if let real = try? container.decode(Double.self) {
                self = .real(real)
            } else {
                self = .text(try container.decode(String.self))
            }
        }
    }

    private struct FramesFile: Decodable { var frames: [Frame] }
    private struct RegistersFile: Decodable { var encodings: [Encoding] }

    static func frames(_ file: String = "frames.json") throws -> [Frame] {
        try JSONDecoder().decode(FramesFile.self, from: data(file)).frames
    }

    static func encodings() throws -> [Encoding] {
        try JSONDecoder().decode(RegistersFile.self, from: data("registers.json")).encodings
    }

    private static func data(_ name: String) throws -> Data {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        return try Data(contentsOf: directory.appendingPathComponent("Fixtures/modbus/\(name)"))
    }
}
