import DeviceGateway
import Foundation
import MockDevices
import Synchronization

/// A queue system's call through the local API to a window's board on a busy paced line (issue 9): the real daemon
/// (`gatewayd run`, release) polls 32 pads and a window board on one paced pseudo-terminal at 9600 8N1 served by this
/// process, and this process posts `POST /v1/windows/1/call` over one keep-alive HTTP/1.1 connection, timing each
/// from the request's write to the moment the board's first write frame has arrived at the board.
///
///     GatewayBenchmarks api-call-latency [--calls 200] [--warmup 8] [--baud 9600] [--pads 32] [--max-pause-ms 250]
///                                        [--timeout-ms 300] [--gatewayd PATH]
enum APICallBenchmark {
    static func run(_ arguments: [String]) async throws {
        let options = BenchOptions(
            arguments, command: "api-call-latency",
            known: ["--calls", "--warmup", "--baud", "--pads", "--max-pause-ms", "--timeout-ms", "--gatewayd"])
        let calls = options.int("--calls", 200)
        let pacing = WirePacing(baud: options.int("--baud", 9600))
        let padCount = options.int("--pads", 32)
        let maximumPause = options.int("--max-pause-ms", 250)
        let gatewayd = options.string("--gatewayd") ?? BenchPaths.gatewayd
        guard FileManager.default.isExecutableFile(atPath: gatewayd) else {
            throw BusBenchmarkError(
                "no gatewayd at \(gatewayd); build it: swift build -c release --scratch-path .build-release "
                    + "--product gatewayd")
        }

        var units: [Int: any MockModbusUnit] = [:]
        for address in 1...padCount {
            units[address] = MockModbusEvaluator(staffId: String(format: "%04d", 1000 + address))
        }
        let board = StampedBoard()
        units[padCount + 1] = board
        let server = try MockModbusServer.rtu(units: units, pacing: pacing)
        defer { server.stop() }
        guard case .rtu(let path) = server.endpoint else { throw BusBenchmarkError("not an RTU server") }
        let folder = try BenchFolder("api-call")
        defer { folder.remove() }
        let port = try freeLoopbackPort()
        let token = "bench-token-" + UUID().uuidString
        try (token + "\n").write(toFile: folder.file("api-token"), atomically: true, encoding: .utf8)
        var devices = (1...padCount).map {
            String(format: "{id: pad-%02d, profile: modbus-evaluator-3key, bus: rs485-1, address: %d, window: \"%d\"}", $0, $0, $0)
        }
        devices.append(
            "{id: board-1, profile: modbus-window-board, bus: rs485-1, address: \(padCount + 1), window: \"1\"}")
        let configuration = benchConfiguration(
            folder: folder, profiles: try BenchPaths.fastPollingProfiles(in: folder),
            buses: [
                "{id: rs485-1, transport: modbus-rtu, port: \(path), baud: \(pacing.baud), parity: none, stop-bits: 1, "
                    + "response-timeout-ms: \(options.int("--timeout-ms", 300)), poll-interval-ms: 10}"
            ],
            devices: devices) + "\napi: {listen: 127.0.0.1:\(port), token-file: \(folder.file("api-token"))}\n"
        try configuration.write(toFile: folder.file("hall.yaml"), atomically: true, encoding: .utf8)
        let daemon = try LoggedChild(
            gatewayd, ["run", "--config", folder.file("hall.yaml"), "--log-level", "warning"],
            log: folder.file("gatewayd.log"))
        let warmup = ContinuousClock.now + .seconds(options.double("--warmup", 8))
        while ContinuousClock.now < warmup {
            guard daemon.process.isRunning else {
                throw BusBenchmarkError("gatewayd ended: \(daemon.log.suffix(2000))")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        let answeredBefore = server.requestsAnswered

        // Blocking socket calls on a thread of their own, never on the cooperative pool.
        let steal = StealMeter()
        let started = ContinuousClock.now
        let samples = try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do {
                    // The daemon binds its port a moment after starting: a few tries.
                    var attempt = 0
                    var connection: BlockingHTTPClient?
                    while connection == nil {
                        do {
                            connection = try BlockingHTTPClient(port: port)
                        } catch where attempt < 50 {
                            attempt += 1
                            Thread.sleep(forTimeInterval: 0.2)
                        }
                    }
                    guard let client = connection else { throw BusBenchmarkError("no connection to the API") }
                    defer { client.close() }
                    var samples = Samples()
                    for number in 0..<calls {
                        // A random moment in the cycle of polls.
                        Thread.sleep(forTimeInterval: Double(Int.random(in: 0...maximumPause)) / 1000)
                        board.arm()
                        let body = #"{"ticket": "\#(String(format: "A%03d", number % 1000))"}"#
                        let (sent, status, text) = try client.post("/v1/windows/1/call", json: body, token: token)
                        let answered = ContinuousClock.now
                        guard status == 200, text.contains(#""status":"done""#), let arrived = board.firstWrite else {
                            samples.failures.append("call \(number): \(status) \(text.prefix(300))")
                            continue
                        }
                        samples.latencies.append((arrived - sent).inMilliseconds)
                        samples.responses.append((answered - sent).inMilliseconds)
                    }
                    continuation.resume(returning: samples)
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.name = "api-call client"
            thread.start()
        }
        let elapsed = (ContinuousClock.now - started).inSeconds
        let answered = server.requestsAnswered - answeredBefore
        let stolen = steal.percent
        await daemon.terminate()

        let answer = RTUWireBenchmark.answerCharacters(registers: MockModbusEvaluator.Register.count)
        let inFlight = pacing.wireTime(characters: RTUWireBenchmark.requestCharacters + answer) + pacing.frameGap * 2
        let command = pacing.wireTime(characters: RTUWireBenchmark.textWriteCharacters)
        let target = (inFlight + command).inMilliseconds
        let latencies = samples.latencies.sorted()
        let responses = samples.responses.sorted()
        func quantile(_ values: [Double], _ fraction: Double) -> Double {
            values.isEmpty
                ? .nan : values[min(values.count - 1, Int((Double(values.count) * fraction).rounded(.up)) - 1)]
        }
        for failure in samples.failures.prefix(5) { print("api-call-latency: \(failure)") }
        print(
            "api-call-latency: \(latencies.count) calls (\(samples.failures.count) failed) over HTTP to gatewayd "
                + "(release) for a window board among \(padCount) pads polled as fast as the line allows "
                + "(\(fixed(Double(answered) / elapsed, 1)) transactions/s answered meanwhile), \(pacing), pauses of "
                + "0-\(maximumPause) ms; load \(loadAverage()), steal \(fixed(stolen, 1)) %")
        print(
            "from writing POST /v1/windows/1/call until the board's first write frame "
                + "(\(RTUWireBenchmark.textWriteCharacters) characters) has arrived at the board:")
        printTable(
            ["figure", "ms"],
            [
                ["the poll in flight (request + answer + 2 gaps)", fixed(inFlight.inMilliseconds, 1)],
                ["the command frame's wire time", fixed(command.inMilliseconds, 1)],
                ["target (the two together)", fixed(target, 1)],
                ["minimum", fixed(latencies.first ?? .nan, 1)],
                ["p50", fixed(quantile(latencies, 0.5), 1)],
                ["p99", fixed(quantile(latencies, 0.99), 1)],
                ["max", fixed(latencies.last ?? .nan, 1)],
                ["HTTP response (3 writes answered, event committed), p50", fixed(quantile(responses, 0.5), 1)],
                ["HTTP response, p99", fixed(quantile(responses, 0.99), 1)],
                ["target: p99 <= target", verdict(quantile(latencies, 0.99) <= target)],
            ])
    }
}

/// What the client thread measured.
private struct Samples: Sendable {
    var latencies: [Double] = []
    var responses: [Double] = []
    var failures: [String] = []
}

/// HTTP/1.1 over one kept-alive loopback connection with blocking calls: nothing between the write of a request and
/// the wire but the kernel, so the time measured is the server's.
private final class BlockingHTTPClient {
    private let socket: Int32
    private let port: Int
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        self.port = port
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw BusBenchmarkError("socket: \(String(cString: strerror(errno)))") }
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(socket)
            throw BusBenchmarkError("cannot connect to the API at 127.0.0.1:\(port): \(reason)")
        }
        var on: Int32 = 1
        setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    func close() { Glibc.close(socket) }

    /// Sends the request in one write and reads the whole response; returns when the write began, status and body.
    func post(_ path: String, json: String, token: String) throws -> (ContinuousClock.Instant, Int, String) {
        let body = Array(json.utf8)
        let head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAuthorization: Bearer \(token)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        let request = Array(head.utf8) + body
        let sent = ContinuousClock.now
        var written = 0
        while written < request.count {
            let count = request[written...].withUnsafeBytes { Glibc.write(socket, $0.baseAddress, $0.count) }
            guard count > 0 else { throw BusBenchmarkError("write to the API: \(String(cString: strerror(errno)))") }
            written += count
        }
        let separator = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while headEnd == nil {
            headEnd = buffer.firstRange(of: separator)?.upperBound
            if headEnd == nil { try fill() }
        }
        let header = String(decoding: buffer[..<headEnd!], as: UTF8.self)
        let lines = header.split(separator: "\r\n")
        let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        let length = lines.first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "") }
        guard let length else { throw BusBenchmarkError("the API answered without Content-Length: \(header)") }
        while buffer.count < headEnd! + length { try fill() }
        let text = String(decoding: buffer[headEnd!..<(headEnd! + length)], as: UTF8.self)
        buffer.removeFirst(headEnd! + length)
        return (sent, status, text)
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = chunk.withUnsafeMutableBytes { Glibc.read(socket, $0.baseAddress, $0.count) }
        guard count > 0 else {
            let reason = count < 0 ? String(cString: strerror(errno)) : "EOF"
            throw BusBenchmarkError("the API closed the connection: \(reason)")
        }
        buffer += chunk[..<count]
    }
}

private func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

/// A loopback port nothing listens on when asked (the daemon binds it a moment later).
private func freeLoopbackPort() throws -> Int {
    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socket >= 0 else { throw BusBenchmarkError("socket: \(String(cString: strerror(errno)))") }
    defer { Glibc.close(socket) }
    var address = loopback(port: 0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0
        }
    }
    guard bound else { throw BusBenchmarkError("cannot find a free port: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: address.sin_port))
}
