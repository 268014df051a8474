import Foundation
import MockDevices
import Protocols
import Testing

/// Paced mocks keep wire time, measured from the host's end of the pseudo-terminal as the gateway would see it.
/// Bounds on the paced side are lower bounds (a loaded machine only makes things slower).
@Suite(.serialized)
struct WirePacingTests {
    private static let line9600 = WirePacing(baud: 9600)
    /// For spreads: 10 % of a frame's wire time at 2400 baud is far more than a loaded machine delays one read.
    private static let line2400 = WirePacing(baud: 2400)

    /// Read holding registers 0…31 of unit 7, with its CRC.
    private static let readEvaluatorBlock = withCRC([7, 0x03, 0, 0, 0, UInt8(MockModbusEvaluator.Register.count)])
    /// Address, function, byte count, 32 registers, CRC.
    private static let answerLength = 3 + 2 * MockModbusEvaluator.Register.count + 2

    @Test func characterTimeAndFrameGapFollowTheFraming() {
        // 8N1: 10 bits, 1.0417 ms at 9600; the frame gap is 3.5 characters.
        #expect(Self.within1ns(WirePacing(baud: 9600).characterTime, .nanoseconds(1_041_667)))
        #expect(Self.within1ns(WirePacing(baud: 9600).frameGap, .nanoseconds(3_645_833)))
        // 8E1 and 7O2: 11 bits.
        #expect(Self.within1ns(WirePacing(baud: 19200, parity: .even).characterTime, .nanoseconds(572_917)))
        let sevenOddTwo = WirePacing(baud: 9600, dataBits: 7, parity: .odd, stopBits: 2)
        #expect(Self.within1ns(sevenOddTwo.characterTime, .nanoseconds(1_145_833)))
        #expect(sevenOddTwo.description == "9600 7O2")
        // Above 19200 baud the spec fixes the gap at 1.75 ms.
        #expect(WirePacing(baud: 115_200).frameGap == .microseconds(1750))
        #expect(WirePacing(baud: 9600).wireTime(characters: 8) == WirePacing(baud: 9600).characterTime * 8)
    }

    @Test func pacedModbusReadTakesTheWireTimeOfRequestGapAndAnswer() async throws {
        let pad = MockModbusEvaluator(staffId: "A1234", bootId: 0x1234_5678)
        let server = try MockModbusServer.rtu(units: [7: pad], pacing: Self.line9600)
        defer { server.stop() }

        let exchange = try await Self.exchange(with: server, Self.readEvaluatorBlock, answerLength: Self.answerLength)

        // The answer, checked byte by byte against the Modbus spec and the pad's register map.
        let answer = exchange.bytes
        try #require(answer.count == Self.answerLength)
        #expect(Array(answer.prefix(3)) == [7, 0x03, UInt8(2 * MockModbusEvaluator.Register.count)])
        #expect(Array(answer.suffix(2)) == Array(Self.withCRC(Array(answer.dropLast(2))).suffix(2)))
        let registers = stride(from: 3, to: answer.count - 2, by: 2).map {
            UInt16(answer[$0]) << 8 | UInt16(answer[$0 + 1])
        }
        #expect(registers[MockModbusEvaluator.Register.status] == 0b11)
        #expect(registers[MockModbusEvaluator.Register.bootIdHigh] == 0x1234)
        #expect(registers[MockModbusEvaluator.Register.bootIdLow] == 0x5678)
        #expect(registers[MockModbusEvaluator.Register.staffId] == UInt16(ascii: "A", "1"))

        let wireTime = Self.line9600.wireTime(characters: Self.readEvaluatorBlock.count + Self.answerLength)
            + Self.line9600.frameGap
        let elapsed = try exchange.elapsed()
        #expect(elapsed >= wireTime, "answered in \(elapsed), the wire needs \(wireTime)")
        // Only gross over-pacing fails this (a unit mix-up, a doubled delay); scheduling delays stay far below.
        #expect(elapsed < wireTime * 3, "answered in \(elapsed), the wire needs \(wireTime)")
    }

    @Test func pacedModbusAnswerArrivesSpreadOverItsWireTime() async throws {
        let server = try MockModbusServer.rtu(units: [7: MockModbusEvaluator(staffId: "A1234")], pacing: Self.line2400)
        defer { server.stop() }

        let exchange = try await Self.exchange(with: server, Self.readEvaluatorBlock, answerLength: Self.answerLength)

        try #require(exchange.bytes.count == Self.answerLength)
        let spread = try exchange.spread()
        let minimum = Self.line2400.wireTime(characters: Self.answerLength - 1) * 0.9
        #expect(spread >= minimum, "first to last answer byte took \(spread), the wire needs \(minimum)")
    }

    @Test func unpacedModbusAnswersFarFasterThanTheWire() async throws {
        // 1200 baud: the paced exchange takes about 0.67 s, so the unpaced one has a wide margin on a loaded machine.
        let slowLine = WirePacing(baud: 1200)
        let pad = MockModbusEvaluator(staffId: "A1234")
        let paced = try MockModbusServer.rtu(units: [7: pad], pacing: slowLine)
        defer { paced.stop() }
        let unpaced = try MockModbusServer.rtu(units: [7: pad])
        defer { unpaced.stop() }
        let wireTime = slowLine.wireTime(characters: Self.readEvaluatorBlock.count + Self.answerLength)
            + slowLine.frameGap

        let pacedExchange = try await Self.exchange(
            with: paced, Self.readEvaluatorBlock, answerLength: Self.answerLength)
        let unpacedExchange = try await Self.exchange(
            with: unpaced, Self.readEvaluatorBlock, answerLength: Self.answerLength)

        try #require(pacedExchange.bytes.count == Self.answerLength)
        #expect(unpacedExchange.bytes == pacedExchange.bytes)
        #expect(try pacedExchange.elapsed() >= wireTime)
        #expect(try unpacedExchange.elapsed() < wireTime / 2)
    }

    @Test func pacedLineSendsAnUnpromptedFrameAtWireSpeed() async throws {
        let line = try MockLine(pacing: Self.line2400) { _ in [] }
        defer { line.stop() }
        let frame = (0..<64).map { UInt8($0) }

        let arrival = try await Self.onOwnThread {
            let host = try HostEnd(line.devicePath)
            let sent = ContinuousClock.now
            line.send(frame)
            return Arrival(sent: sent, received: host.read(count: frame.count, within: .seconds(5)))
        }

        #expect(arrival.bytes == frame)
        #expect(try arrival.elapsed() >= Self.line2400.wireTime(characters: frame.count))
        #expect(try arrival.spread() >= Self.line2400.wireTime(characters: frame.count - 1) * 0.9)
    }

    @Test func pacedLineAnswersAfterTheRequestArrivedAndTheGap() async throws {
        let request = (0..<20).map { UInt8($0) }
        let heard = ByteCount()
        // The device acknowledges once the whole request is in, however the pseudo-terminal splits it.
        let line = try MockLine(pacing: Self.line9600) { bytes in
            heard.add(bytes.count) == request.count ? [0x06] : []
        }
        defer { line.stop() }

        let arrival = try await Self.onOwnThread {
            let host = try HostEnd(line.devicePath)
            let sent = ContinuousClock.now
            try host.write(request)
            return Arrival(sent: sent, received: host.read(count: 1, within: .seconds(5)))
        }

        #expect(arrival.bytes == [0x06])
        let wireTime = Self.line9600.wireTime(characters: request.count + 1) + Self.line9600.frameGap
        #expect(try arrival.elapsed() >= wireTime)
    }

    @Test func pacedEchoingLineReturnsTheHostsBytesAsTheyCrossTheWire() async throws {
        let line = try MockLine(echoing: true, pacing: Self.line2400) { _ in [] }
        defer { line.stop() }
        let request = (0..<64).map { UInt8($0) }

        let arrival = try await Self.onOwnThread {
            let host = try HostEnd(line.devicePath)
            let sent = ContinuousClock.now
            try host.write(request)
            return Arrival(sent: sent, received: host.read(count: request.count, within: .seconds(5)))
        }

        #expect(arrival.bytes == request)
        #expect(try arrival.elapsed() >= Self.line2400.wireTime(characters: request.count))
        #expect(try arrival.spread() >= Self.line2400.wireTime(characters: request.count - 1) * 0.9)
    }

    @Test func pacedFF68BusSendsKeyFramesBackToBackAtWireSpeed() async throws {
        let slowLine = WirePacing(baud: 1200)
        let bus = try MockFF68Bus(pacing: slowLine)
        defer { bus.stop() }
        let addresses: [UInt8] = [5, 6, 7, 8]
        let frames = addresses.flatMap { FF68Frame.evaluatorKeyPress(address: $0, key: 1).encode() }

        let arrival = try await Self.onOwnThread {
            let host = try HostEnd(bus.devicePath)
            let sent = ContinuousClock.now
            for address in addresses { bus.pressEvaluatorKey(1, address: address) }
            return Arrival(sent: sent, received: host.read(count: frames.count, within: .seconds(5)))
        }

        // Four pads pressing at once: their frames follow each other whole, in order, never interleaved.
        #expect(arrival.bytes == frames)
        #expect(try arrival.elapsed() >= slowLine.wireTime(characters: frames.count))
        #expect(try arrival.spread() >= slowLine.wireTime(characters: frames.count - 1) * 0.9)
    }

    // MARK: Helpers

    /// Writes `request` to the server's line as the host and reads `answerLength` bytes back.
    private static func exchange(with server: MockModbusServer, _ request: [UInt8], answerLength: Int) async throws
        -> Arrival
    {
        guard case .rtu(let path) = server.endpoint else { throw HostEndError("not an RTU server") }
        return try await onOwnThread {
            let host = try HostEnd(path)
            let sent = ContinuousClock.now
            try host.write(request)
            return Arrival(sent: sent, received: host.read(count: answerLength, within: .seconds(5)))
        }
    }

    /// Runs blocking tty work on a thread of its own, off the two-thread cooperative pool.
    private static func onOwnThread<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws
        -> Value
    {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Whether two durations differ by less than a nanosecond (the exact values are fractions of one).
    private static func within1ns(_ first: Duration, _ second: Duration) -> Bool {
        first - second < .nanoseconds(1) && second - first < .nanoseconds(1)
    }

    /// `bytes` followed by their CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF), low byte first.
    private static func withCRC(_ bytes: [UInt8]) -> [UInt8] {
        var crc: UInt16 = 0xFFFF
        for byte in bytes {
            crc ^= UInt16(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xA001 : crc >> 1 }
        }
        return bytes + [UInt8(crc & 0xFF), UInt8(crc >> 8)]
    }
}

/// Bytes the host received, each with when it was read.
private struct Arrival: Sendable {
    var sent: ContinuousClock.Instant
    var received: [(byte: UInt8, at: ContinuousClock.Instant)]

    var bytes: [UInt8] { received.map(\.byte) }

    /// From the host's write (or the device's send) to the last byte read.
    func elapsed() throws -> Duration { try #require(received.last).at - sent }

    /// From the first byte read to the last.
    func spread() throws -> Duration { try #require(received.last).at - #require(received.first).at }
}

/// The host's end of a mock's line, opened raw and non-blocking as the gateway's `SerialLine` opens it.
private final class HostEnd {
    private let fd: Int32

    init(_ path: String) throws {
        fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { throw HostEndError("cannot open \(path): \(String(cString: strerror(errno)))") }
        var attributes = termios()
        tcgetattr(fd, &attributes)
        cfmakeraw(&attributes)
        tcsetattr(fd, TCSANOW, &attributes)
    }

    deinit { close(fd) }

    func write(_ bytes: [UInt8]) throws {
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw HostEndError("short write to the line: \(written) bytes") }
    }

    /// Reads until `count` bytes came or `timeout` passed, stamping each read with the time it returned.
    func read(count: Int, within timeout: Duration) -> [(byte: UInt8, at: ContinuousClock.Instant)] {
        let deadline = ContinuousClock.now + timeout
        var received: [(byte: UInt8, at: ContinuousClock.Instant)] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while received.count < count, ContinuousClock.now < deadline {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 10) > 0 else { continue }
            let length = Foundation.read(fd, &buffer, buffer.count)
            let now = ContinuousClock.now
            if length > 0 { received += buffer[0..<length].map { ($0, now) } }
        }
        return received
    }
}

private struct HostEndError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Bytes a mock's handler has seen, across its calls.
private final class ByteCount: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    /// Adds `bytes` and returns the new total.
    func add(_ bytes: Int) -> Int { lock.withLock { count += bytes; return count } }
}

extension UInt16 {
    /// Two ASCII characters in one register, the first in the high byte.
    fileprivate init(ascii high: Unicode.Scalar, _ low: Unicode.Scalar) {
        self = UInt16(UInt8(ascii: high)) << 8 | UInt16(UInt8(ascii: low))
    }
}
