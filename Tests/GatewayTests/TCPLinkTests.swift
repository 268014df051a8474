import DeviceGateway
import Foundation
import MockDevices
import NIOCore
import Protocols
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The Modbus TCP links against real sockets on loopback, driven from an actor running on the link's executor, as the
/// bus engine drives them: the non-blocking one on the shared event loop and, where a test takes `ownThread`, the
/// blocking one on a thread of its own (a connection with several devices behind it).
@Suite(.serialized) struct TCPLinkTests {
    @Test func aRequestIsAnsweredThroughWriteAndReadOnAThreadOfItsOwn() async throws {
        let pad = MockModbusEvaluator(staffId: "0105")
        let server = try MockModbusServer.tcp(units: [1: pad])
        defer { server.stop() }
        let engine = Engine(port: try #require(tcpPort(of: server)), ownThread: true)
        try await engine.open()
        for transaction in UInt16(1)...3 {
            let request = ModbusTCPFrame(
                transactionId: transaction, unitId: 1, request: .readHoldingRegisters(start: 1, count: 2))
            #expect(try await engine.transact(try request.encode(), within: .seconds(2)) == ModbusTCPFrame(
                transactionId: transaction, unitId: 1, response: .readHoldingRegisters(values: Array(pad.registers[1..<3]))))
        }
        #expect(server.requestsAnswered == 3)
        await engine.close()
    }

    @Test func aReadRequestIsAnsweredThroughWriteAndRead() async throws {
        let pad = MockModbusEvaluator(staffId: "0105")
        pad.press(.satisfied)
        let server = try MockModbusServer.tcp(units: [1: pad])
        defer { server.stop() }
        let port = try #require(tcpPort(of: server))
        let engine = Engine(port: port)
        try await engine.open()
        #expect(await engine.runsOnTheLinksLoop)

        for transaction in UInt16(1)...3 {
            let request = ModbusTCPFrame(
                transactionId: transaction, unitId: 1, request: .readHoldingRegisters(start: 0, count: 8))
            let reply = try #require(try await engine.transact(try request.encode(), within: .seconds(2)))
            let held = Array(pad.registers[0..<8])
            #expect(reply == ModbusTCPFrame(
                transactionId: transaction, unitId: 1, response: .readHoldingRegisters(values: held)))
            let values = try #require(registers(in: reply))
            #expect(values[MockModbusEvaluator.Register.counter] == 1)
            #expect(values[MockModbusEvaluator.Register.lastKey] == MockModbusEvaluator.Key.satisfied.rawValue)
        }
        #expect(server.requestsAnswered == 3)
        await engine.close()

        // The same from a task preferring the loop as its executor, as a bus task may be started.
        let preferring = Engine(port: port)
        let reply = try await Task(executorPreference: try #require(preferring.loopOpener).taskExecutor) {
            try await preferring.open()
            let request = ModbusTCPFrame(
                transactionId: 9, unitId: 1, request: .readHoldingRegisters(start: 1, count: 2))
            return try await preferring.transact(try request.encode(), within: .seconds(2))
        }.value
        #expect(reply == ModbusTCPFrame(transactionId: 9, unitId: 1, response: .readHoldingRegisters(values: [1, 1])))
        await preferring.close()
    }

    @Test(arguments: [false, true]) func aReadWithNothingComingReturnsEmptyAtTheDeadlineAndLaterBytesWait(ownThread: Bool)
        async throws
    {
        let listener = try Listener()
        let engine = Engine(port: listener.port, ownThread: ownThread)
        try await engine.open()
        let peer = try listener.accept()
        defer { close(peer) }

        let quiet = try await engine.read(for: .milliseconds(200))
        #expect(quiet.bytes.isEmpty)
        #expect(quiet.lateness >= .zero, "returned before its deadline")
        #expect(quiet.lateness < .seconds(1), "returned \(quiet.lateness) after its deadline")

        // Bytes sent after that deadline are the next read's, however they are split.
        let sent: [UInt8] = [0x12, 0x34, 0x56]
        #expect(send(peer, sent, sent.count, 0) == sent.count)
        var received: [UInt8] = []
        while received.count < sent.count {
            let next = try await engine.read(for: .seconds(5))
            try #require(!next.bytes.isEmpty, "nothing came within 5 s")
            received += next.bytes
        }
        #expect(received == sent)
        await engine.close()
    }

    @Test(.timeLimit(.minutes(1))) func aCancelledExchangeStillGetsItsAnswer() async throws {
        // A bus is cancelled with a request in flight when the gateway is: its read must wait on the loop for the
        // answer, not return at once and spin that loop (which delivers the answer) until the deadline.
        let listener = try Listener()
        let engine = Engine(port: listener.port)
        try await engine.open()
        let peer = try listener.accept()
        defer { close(peer) }
        let request = try ModbusTCPFrame(transactionId: 1, unitId: 1, request: .readHoldingRegisters(start: 0, count: 2))
            .encode()
        let exchange = Task { try await engine.transact(request, within: .seconds(2)) }
        exchange.cancel()
        var received = [UInt8](repeating: 0, count: 64)
        #expect(recv(peer, &received, received.count, 0) == request.count, "the request went out")
        let reply = try ModbusTCPFrame(transactionId: 1, unitId: 1, response: .readHoldingRegisters(values: [7, 8]))
            .encode()
        #expect(send(peer, reply, reply.count, 0) == reply.count)
        #expect(try await exchange.value
                == ModbusTCPFrame(transactionId: 1, unitId: 1, response: .readHoldingRegisters(values: [7, 8])))
        await engine.close()
    }

    @Test(arguments: [false, true]) func thePeerClosingMakesReadAndWriteThrowNamingHostAndPort(ownThread: Bool) async throws {
        let listener = try Listener()
        let engine = Engine(port: listener.port, ownThread: ownThread)
        try await engine.open()
        let peer = try listener.accept()
        let started = ContinuousClock.now
        let reading = Task { try await engine.read(for: .seconds(10)) }
        close(peer)

        let readError = await #expect(throws: GatewayError.self) { try await reading.value }
        #expect(readError?.code == .portUnavailable)
        #expect(readError?.message == "127.0.0.1:\(listener.port) closed the connection")
        #expect(ContinuousClock.now - started < .seconds(5), "the read waited for its deadline, not for the close")
        let writeError = await #expect(throws: GatewayError.self) { try await engine.write([0x00]) }
        #expect(writeError?.code == .portUnavailable)
        #expect(writeError?.message == "127.0.0.1:\(listener.port) closed the connection")
    }

    @Test(arguments: [false, true]) func aResetIsSaidAsSuch(ownThread: Bool) async throws {
        let listener = try Listener()
        let engine = Engine(port: listener.port, ownThread: ownThread)
        try await engine.open()
        let peer = try listener.accept()
        // Closed with a zero linger: a reset, as a device that reboots sends.
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(peer, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(peer)
        let error = await #expect(throws: GatewayError.self) { _ = try await engine.read(for: .seconds(5)) }
        #expect(error?.message == "connection to 127.0.0.1:\(listener.port) failed: connection reset by peer")
    }

    @Test(arguments: [false, true]) func connectingWhereNobodyListensSaysConnectionRefused(ownThread: Bool) async throws {
        // A port just freed: nothing listens there.
        let port = try Listener(listening: false).port
        let engine = Engine(port: port, ownThread: ownThread)
        let error = await #expect(throws: GatewayError.self) { try await engine.open() }
        #expect(error?.code == .portUnavailable)
        #expect(error?.message == "cannot connect to 127.0.0.1:\(port): connection refused")
    }

    @Test(arguments: [false, true]) func connectingToAServerThatNeverAnswersTimesOut(ownThread: Bool) async throws {
        // A listener whose accept queue is full drops further handshakes (Linux, unless tcp_abort_on_overflow), as
        // an unplugged device's address does.
        let listener = try Listener(backlog: 0)
        var queued: [Int32] = []
        defer { queued.forEach { close($0) } }
        for _ in 0..<2 { queued.append(try Listener.startConnecting(port: listener.port)) }
        let engine = Engine(port: listener.port, ownThread: ownThread, connectTimeout: .milliseconds(300))
        let started = ContinuousClock.now
        let error = await #expect(throws: GatewayError.self) { try await engine.open() }
        #expect(error?.message == "cannot connect to 127.0.0.1:\(listener.port): timed out")
        #expect(ContinuousClock.now - started < .seconds(2))
    }

    @Test func twoHundredLinksOnTheSharedLoopAddNoThreads() async throws {
        let listener = try Listener(backlog: 256)
        let before = try threadCount()
        var engines: [Engine] = []
        for _ in 0..<200 {
            let engine = Engine(port: listener.port)
            try await engine.open()
            engines.append(engine)
        }
        let after = try threadCount()
        // The shared loop's one thread appears if no test opened a link before this one.
        #expect(after - before <= 1, "\(before) threads before 200 links, \(after) with them")
        let loops = Set(try engines.map { ObjectIdentifier(try #require($0.loopOpener).eventLoop) })
        #expect(loops.count == 1)
        for engine in engines {
            try await engine.write([0x00])
            await engine.close()
        }
    }
}

/// The engine's side as the bus engine will hold it: an actor whose executor is the link's (the event loop, or the
/// blocking link's own thread).
private actor Engine {
    let opener: any LinkOpener
    private let clock = SystemBusClock()
    private var link: (any BusLink)?
    private var decoder = ModbusTCPDecoder(role: .client)

    init(port: Int, ownThread: Bool = false, connectTimeout: Duration = .seconds(3)) {
        opener = ownThread
            ? SocketLinkOpener(host: "127.0.0.1", port: port, clock: clock, label: "test-link", connectTimeout: connectTimeout)
            : TCPLinkOpener(host: "127.0.0.1", port: port, clock: clock, connectTimeout: connectTimeout)
    }

    nonisolated var unownedExecutor: UnownedSerialExecutor { opener.executor.asUnownedSerialExecutor() }

    nonisolated var loopOpener: TCPLinkOpener? { opener as? TCPLinkOpener }

    var runsOnTheLinksLoop: Bool { loopOpener?.eventLoop.inEventLoop ?? false }

    func open() async throws(GatewayError) {
        link = try await opener.open()
    }

    func write(_ bytes: [UInt8]) async throws {
        try await #require(link).write(bytes)
    }

    /// Writes `request` and reads until a whole frame came or `timeout` passed.
    func transact(_ request: [UInt8], within timeout: Duration) async throws -> ModbusTCPFrame? {
        let link = try #require(link)
        let deadline = clock.now + timeout
        try await link.write(request)
        while clock.now < deadline {
            if let frame = decoder.decode(try await link.read(until: deadline)).first { return frame }
        }
        return nil
    }

    /// One read with a deadline `timeout` away, and how long after that deadline it returned.
    func read(for timeout: Duration) async throws -> (bytes: [UInt8], lateness: Duration) {
        let link = try #require(link)
        let deadline = clock.now + timeout
        let bytes = try await link.read(until: deadline)
        return (bytes, clock.now - deadline)
    }

    func close() {
        link?.close()
    }
}

/// A plain listening socket on 127.0.0.1 that accepts only when asked to.
private final class Listener: Sendable {
    let descriptor: Int32
    let port: Int

    /// Listens on a free port; `listening: false` only binds (and closes at once), to find a port nobody uses.
    init(backlog: Int32 = 16, listening: Bool = true) throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw ListenerError("socket: errno \(errno)") }
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
            }
        }
        guard bound, !listening || listen(descriptor, backlog) == 0 else {
            close(descriptor)
            throw ListenerError("bind/listen on 127.0.0.1: errno \(errno)")
        }
        if !listening { close(descriptor) }
        self.descriptor = listening ? descriptor : -1
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// The connection the link made (already in the accept queue, so this does not block).
    func accept() throws -> Int32 {
        let peer = Glibc.accept(descriptor, nil, nil)
        guard peer >= 0 else { throw ListenerError("accept: errno \(errno)") }
        return peer
    }

    /// A client connection to `port` on 127.0.0.1, started and not waited for.
    static func startConnecting(port: Int) throws -> Int32 {
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        var address = loopback(port: port)
        let started = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 || errno == EINPROGRESS
            }
        }
        guard started else {
            close(client)
            throw ListenerError("connect to 127.0.0.1:\(port): errno \(errno)")
        }
        return client
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}

private struct ListenerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private func tcpPort(of server: MockModbusServer) -> Int? {
    if case .tcp(let port) = server.endpoint { port } else { nil }
}

private func registers(in frame: ModbusTCPFrame) -> [UInt16]? {
    if case .response(.readHoldingRegisters(let values)) = frame.message { values } else { nil }
}

/// The threads of this process.
private func threadCount() throws -> Int {
    try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count
}
