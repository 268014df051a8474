import Protocols
import Testing

/// Random valid Modbus frames with garbage, truncated and corrupted frames between them, split at random points.
@Suite struct ModbusPropertyTests {
    /// RTU has no start byte; the function code (second byte) is what garbage must not supply, so that
    /// garbage alone cannot form a frame. Truncated and corrupted frames still offer plausible starts: each
    /// passes the CRC by chance once in 65,536, so the frames garbage is made of are short ones, keeping the
    /// expected chance matches over a whole run (about 8,000 frames per role) well below one.
    static func functionBytes(_ role: ModbusRole) -> Set<UInt8> {
        let functions = ModbusFunctionCode.allCases.map(\.rawValue)
        return Set(role == .server ? functions : functions + functions.map { $0 | 0x80 })
    }

    @Test(arguments: [ModbusRole.server, .client])
    func rtuDecoderFindsExactlyTheValidFrames(role: ModbusRole) {
        func sample(_ generator: inout SeededGenerator, allowLongest: Bool = true) -> SampleFrame<ModbusRTUFrame> {
            let frame = ModbusRTUFrame(
                address: UInt8.random(in: role == .server ? 0...247 : 1...247, using: &generator),
                message: randomModbusMessage(role, &generator, allowLongest: allowLongest))
            return SampleFrame(bytes: (try? frame.encode()) ?? [], frame: frame)
        }
        checkDecoderProperty(
            samples: { sample(&$0) },
            garbage: { generator in
                var bytes = randomGarbage(&generator, excluding: Self.functionBytes(role))
                switch Int.random(in: 0..<4, using: &generator) {
                case 0:
                    // A frame cut one byte short and followed by the very byte that was cut is a whole frame on
                    // the wire, which no decoder can tell apart: the byte after the cut differs from it.
                    let whole = sample(&generator, allowLongest: false).bytes
                    let cut = truncated(whole, &generator)
                    var after: [UInt8] = []
                    while after.isEmpty {
                        after = randomGarbage(&generator, excluding: Self.functionBytes(role).union([whole[cut.count]]))
                    }
                    bytes += cut + after
                case 1:
                    var corrupted = sample(&generator, allowLongest: false).bytes
                    corrupted[corrupted.count - Int.random(in: 1...2, using: &generator)] ^=
                        UInt8.random(in: 1...255, using: &generator)
                    bytes += corrupted
                default:
                    break
                }
                return bytes
            },
            makeDecoder: { ModbusRTUDecoder(role: role) })
    }

    /// TCP has no checksum: a frame cut inside its declared length is indistinguishable from a whole one once
    /// the bytes after it fill the gap, so the cuts here fall within the first four header bytes. Garbage
    /// has no 00 byte (every header holds 00 00 00 at bytes 2–4), and the "corrupted checksum" of TCP is a
    /// non-zero protocol id.
    @Test(arguments: [ModbusRole.server, .client])
    func tcpDecoderFindsExactlyTheValidFrames(role: ModbusRole) {
        func sample(_ generator: inout SeededGenerator) -> SampleFrame<ModbusTCPFrame> {
            let frame = ModbusTCPFrame(
                transactionId: UInt16.random(in: 0...UInt16.max, using: &generator),
                unitId: UInt8.random(in: 0...255, using: &generator),
                message: randomModbusMessage(role, &generator))
            return SampleFrame(bytes: (try? frame.encode()) ?? [], frame: frame)
        }
        checkDecoderProperty(
            samples: sample,
            garbage: { generator in
                var bytes = randomGarbage(&generator, excluding: [0x00])
                switch Int.random(in: 0..<4, using: &generator) {
                case 0:
                    bytes += truncated(Array(sample(&generator).bytes.prefix(5)), &generator)
                case 1:
                    var corrupted = sample(&generator).bytes
                    corrupted[Int.random(in: 2...3, using: &generator)] = UInt8.random(in: 1...255, using: &generator)
                    bytes += corrupted
                default:
                    break
                }
                return bytes
            },
            makeDecoder: { ModbusTCPDecoder(role: role) })
    }
}

/// A random request (for `.server`) or response (for `.client`) within the specification's limits.
func randomModbusMessage(_ role: ModbusRole, _ generator: inout SeededGenerator, allowLongest: Bool = true)
    -> ModbusMessage {
    func word() -> UInt16 { UInt16.random(in: 0...UInt16.max, using: &generator) }
    func count(_ range: ClosedRange<UInt16>) -> UInt16 { UInt16.random(in: range, using: &generator) }
    // Mostly short payloads, like a poll; now and then the longest the function allows.
    func length(_ limit: Int) -> Int {
        allowLongest && Int.random(in: 0..<10, using: &generator) == 0
            ? limit : Int.random(in: 1...min(limit, 16), using: &generator)
    }
    switch role {
    case .server:
        switch Int.random(in: 0..<7, using: &generator) {
        case 0: return .request(.readCoils(start: word(), count: count(1...2000)))
        case 1: return .request(.readDiscreteInputs(start: word(), count: count(1...2000)))
        case 2: return .request(.readHoldingRegisters(start: word(), count: count(1...125)))
        case 3: return .request(.readInputRegisters(start: word(), count: count(1...125)))
        case 4: return .request(.writeSingleCoil(address: word(), on: Bool.random(using: &generator)))
        case 5: return .request(.writeSingleRegister(address: word(), value: word()))
        default: return .request(.writeMultipleRegisters(start: word(), values: (0..<length(123)).map { _ in word() }))
        }
    case .client:
        switch Int.random(in: 0..<8, using: &generator) {
        case 0: return .response(.readCoils(status: (0..<length(250)).map { _ in UInt8(truncatingIfNeeded: word()) }))
        case 1:
            let status = (0..<length(250)).map { _ in UInt8(truncatingIfNeeded: word()) }
            return .response(.readDiscreteInputs(status: status))
        case 2: return .response(.readHoldingRegisters(values: (0..<length(125)).map { _ in word() }))
        case 3: return .response(.readInputRegisters(values: (0..<length(125)).map { _ in word() }))
        case 4: return .response(.writeSingleCoil(address: word(), on: Bool.random(using: &generator)))
        case 5: return .response(.writeSingleRegister(address: word(), value: word()))
        case 6: return .response(.writeMultipleRegisters(start: word(), count: count(1...123)))
        default:
            let function = ModbusFunctionCode.allCases.randomElement(using: &generator) ?? .readHoldingRegisters
            let code = ModbusExceptionCode(rawValue: UInt8.random(in: 1...11, using: &generator))
            return .response(.exception(function: function, code: code))
        }
    }
}
