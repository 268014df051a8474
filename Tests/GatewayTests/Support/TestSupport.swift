import DeviceGateway
import Foundation
import GRDB
import Hummingbird
import LocalAPI
import Logging
import MockDevices
import Protocols
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The checkout the tests run from.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().path

/// The `devices/` folder of the checkout.
let profilesDirectory = repositoryRoot + "/devices"

/// The gatewayd binary built beside the test bundle.
let gatewaydPath: String = {
    let testBinary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var folder = URL(fileURLWithPath: testBinary).deletingLastPathComponent()
    // On Linux the test bundle is `<build>/debug/<package>PackageTests.xctest`, an executable beside gatewayd.
    while folder.path != "/" {
        let candidate = folder.appendingPathComponent("gatewayd").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        folder.deleteLastPathComponent()
    }
    return repositoryRoot + "/.build/debug/gatewayd"
}()

/// A fresh folder under /tmp, removed when the value goes away.
final class TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "hall-gateway-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// What a finished child process left.
struct ProcessResult {
    var status: Int32
    var terminatedBySignal: Bool
    var standardOutput: String
    var standardError: String
}

/// A child process with its output collected into files (pipes could fill and block it).
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    private let outputPath: String
    private let errorPath: String
    /// Finishes when the process has exited: what `wait` waits on.
    private let exited: AsyncStream<Void>

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
         workingDirectory: String? = nil, input: String? = nil) throws {
        let folder = NSTemporaryDirectory() + "hall-gateway-child-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        outputPath = folder + "/stdout"
        errorPath = folder + "/stderr"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
        let (exited, exit) = AsyncStream.makeStream(of: Void.self)
        self.exited = exited
        process.terminationHandler = { _ in exit.finish() }
        if let input {
            let pipe = Pipe()
            process.standardInput = pipe
            try process.run()
            pipe.fileHandleForWriting.write(Data(input.utf8))
            try pipe.fileHandleForWriting.close()
        } else {
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    func interrupt() { process.interrupt() }

    /// Whether it has not exited yet.
    var isRunning: Bool { process.isRunning }

    /// Waits for the process without blocking the cooperative pool.
    func wait(timeout: Duration = .seconds(60)) async throws -> ProcessResult {
        // The exit itself, or the deadline: whichever comes first.
        let exitedInTime = await withTaskGroup(of: Bool.self) { group in
            group.addTask { [exited] in
                for await _ in exited {}
                return !Task.isCancelled
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !exitedInTime, process.isRunning {
            // SIGKILL: children inherit the runner thread's signal mask, where SIGTERM may be blocked.
            kill(process.processIdentifier, SIGKILL)
            Issue.record("process \(process.executableURL?.path ?? "") did not finish within \(timeout)")
        }
        process.waitUntilExit()
        return ProcessResult(
            status: process.terminationStatus, terminatedBySignal: process.terminationReason == .uncaughtSignal,
            standardOutput: output,
            standardError: (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "")
    }
}

/// Runs a command to its end.
func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
         workingDirectory: String? = nil, input: String? = nil) async throws -> ProcessResult {
    try await ChildProcess(executable, arguments, environment: environment, workingDirectory: workingDirectory,
                           input: input).wait()
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return try await condition()
}

/// A tmpfs of `megabytes` mounted at `path`, the tests' disk to fill (mounting needs root).
struct SmallDisk {
    let path: String

    init(at path: String, megabytes: Int = 2) async throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let mounted = try await run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path])
        try #require(mounted.status == 0, "a tmpfs is needed as the full disk (root): \(mounted.standardError)")
    }

    /// Fills it to the last byte.
    func fill() async throws {
        let filled = try await run("/bin/sh", ["-c", "dd if=/dev/zero of=\(path)/filler bs=4k 2>/dev/null; sync; true"])
        try #require(filled.status == 0)
    }

    /// Fills it holding the outbox at `outboxPath`, its write-ahead log emptied first, so that the next commit needs
    /// room the disk no longer has. A gateway writing at every poll: its lock is waited for (CI once saw "database is
    /// locked").
    func fill(holding outboxPath: String) async throws {
        var waiting = Configuration()
        waiting.busyMode = .timeout(10)
        let outboxFile = try DatabaseQueue(path: outboxPath, configuration: waiting)
        _ = try await outboxFile.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
        try outboxFile.close()
        try await fill()
    }

    func free() throws { try FileManager.default.removeItem(atPath: path + "/filler") }

    func unmount() { try? Process.run(URL(fileURLWithPath: "/bin/umount"), arguments: ["-l", path]).waitUntilExit() }
}

/// A logger that keeps what was logged, for asserting on the technician's view.
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    var logger: Logger {
        Logger(label: "test") { _ in CapturingHandler(log: self) }
    }

    var text: String { lock.withLock { lines.joined(separator: "\n") } }

    fileprivate func append(_ line: String) { lock.withLock { lines.append(line) } }
}

private struct CapturingHandler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        log.append("\(event.level) \(event.message)")
    }
}

/// The rating events a store holds.
func ratings(in store: SQLiteEventStore) async throws -> [(event: CloudEvent, rating: RatingSubmitted)] {
    try await store.events(types: ["hall.rating.submitted"], limit: 100_000).compactMap { event in
        if case .rating(let rating) = event.data { return (event, rating) }
        return nil
    }
}

/// A gateway for a test hall: the given bus and device lines (YAML list items, indented two spaces),
/// the profiles in `directory` (the shipped ones unless told), its state and local store in `folder`.
func testGateway(buses: String, devices: String, folder: TemporaryDirectory, profiles directory: String = profilesDirectory,
                 log: CapturedLog = CapturedLog()) throws -> Gateway
{
    let (config, profiles) = try ConfigLoader.parse("""
        hall: {id: test-hall}
        state-directory: \(folder.path)/state
        profiles: \(directory)
        buses:
        \(buses)
        devices:
        \(devices)
        sinks:
          - {type: sqlite, path: \(folder.path)/events.sqlite}
        """, file: "test.yaml", relativeTo: folder.path)
    return try Gateway(config: config, profiles: profiles, logger: log.logger)
}

/// The data of the events of `type` in `store`, oldest first.
func eventData<Data>(_ store: SQLiteEventStore, type: String, _ extract: (EventData) -> Data?) async throws -> [Data] {
    try await store.events(types: [type], limit: 100_000).compactMap { extract($0.data) }
}

/// Events as the outbox hands them to sinks, numbered from 1 in the order given.
func outbound(_ events: [CloudEvent]) throws -> [OutboundEvent] {
    try events.enumerated().map { index, event in
        var event = event
        event.sequence = event.sequence ?? CloudEvent.sequenceString(Int64(index + 1))
        return OutboundEvent(position: Int64(index + 1), source: event.source, id: event.id, type: event.type,
                             time: event.time, subject: event.subject, sequence: Int64(event.sequence!) ?? 0,
                             json: try event.jsonLine())
    }
}

extension MockModbusServer.Endpoint {
    /// The port of a loopback Modbus TCP server (nil for RTU), for `try #require`.
    var tcpPort: Int? { if case .tcp(let port) = self { port } else { nil } }
    /// The device path of a Modbus RTU server (nil for TCP), for `try #require`.
    var devicePath: String? { if case .rtu(let path) = self { path } else { nil } }
    /// A bus's keys that reach the server: `transport: modbus-tcp, host: 127.0.0.1, tcp-port: …` or the RTU line's.
    var busKeys: String {
        switch self {
        case .rtu(let path): "transport: modbus-rtu, port: \(path)"
        case .tcp(let port): "transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(port)"
        }
    }
}

extension MockModbusServer {
    /// A server over `transport` (`modbus-rtu`: a pseudo-terminal; `modbus-tcp`: loopback).
    static func serving(_ units: [Int: any MockModbusUnit], over transport: String) throws -> MockModbusServer {
        transport == "modbus-rtu" ? try rtu(units: units) : try tcp(units: units)
    }
}

extension EventData {
    /// The rating, when this is one (for `try #require`).
    var rating: RatingSubmitted? { if case .rating(let rating) = self { rating } else { nil } }
    /// The fault, when this is one (for `try #require`).
    var fault: DeviceFault? { if case .deviceFault(let fault) = self { fault } else { nil } }
}

/// A gateway of `devices` on one Modbus TCP bus, `lan`, to `server` (`settings`: the bus's other keys), running while
/// `scenario` does.
func runningOnModbusTCP(
    _ server: MockModbusServer, settings: String, devices: String, folder: TemporaryDirectory,
    _ scenario: (Gateway) async throws -> Void
) async throws {
    let gateway = try testGateway(
        buses: "  - {id: lan, transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(try #require(server.endpoint.tcpPort)), "
            + "\(settings)}",
        devices: devices, folder: folder)
    let stop = StopSignal()
    let running = Task { await gateway.run(until: stop) }
    do {
        try await scenario(gateway)
    } catch {
        stop.stop()
        await running.value
        throw error
    }
    stop.stop()
    await running.value
}

/// Serves `gateway`'s local API on a free loopback port, as `gatewayd run` serves it: the serving task and the port.
func serveLocalAPI(_ gateway: Gateway, token: String, idleLimit: Duration = LocalAPI.idleConnectionLimit) async throws
    -> (task: Task<Void, any Error>, port: Int)
{
    let metrics = GatewayMetrics()
    let api = LocalAPI(gateway: gateway, commands: CommandCenter(gateway: gateway, onFinished: metrics.record),
                       metrics: metrics, token: token, logger: CapturedLog().logger)
    let (ports, listening) = AsyncStream.makeStream(of: Int.self)
    let application = api.application(host: "127.0.0.1", port: 0, idleLimit: idleLimit) { port in listening.yield(port) }
    let task = Task { try await application.runService() }
    var iterator = ports.makeAsyncIterator()
    return (task, try #require(await iterator.next(), "the API did not start listening"))
}

/// A Python helper as a child process; it prints `LABEL <port>` lines when it listens.
final class PythonService: Sendable {
    let child: ChildProcess
    let script: String

    init(_ script: String, _ arguments: [String]) throws {
        self.script = script
        child = try ChildProcess("/usr/bin/env", ["python3", repositoryRoot + "/scripts/" + script] + arguments)
    }

    func port(_ label: String) async throws -> Int {
        var port: Int?
        _ = await eventually {
            port = child.output.split(separator: "\n").lazy.compactMap { line -> Int? in
                let parts = line.split(separator: " ")
                return parts.count == 2 && parts[0] == label ? Int(parts[1]) : nil
            }.first
            return port != nil || !child.process.isRunning
        }
        guard let port else {
            child.interrupt()
            let result = try await child.wait(timeout: .seconds(10))
            throw ServiceError(description: "\(script) printed no \(label) line: \(result.standardError)")
        }
        return port
    }

    /// Asks the helper to stop; it exits on its own within a moment.
    func stop() {
        if child.process.isRunning { child.interrupt() }
    }

    /// Stops the helper and waits until it has exited.
    func stopAndWait() async throws {
        stop()
        _ = try await child.wait(timeout: .seconds(10))
    }
}

/// `scripts/fault_proxy.py` in front of a store: an HTTP receiver, a broker.
struct FaultProxy {
    let service: PythonService
    let port: Int
    let control: Int
    var url: String { "http://127.0.0.1:\(port)/events" }

    static func start(target: Int) async throws -> FaultProxy {
        let service = try PythonService("fault_proxy.py", ["--target", "127.0.0.1:\(target)"])
        return FaultProxy(service: service, port: try await service.port("LISTEN"),
                          control: try await service.port("CONTROL"))
    }

    func stop() { service.stop() }

    func set(_ mode: String) async throws {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(control)/mode")!)
        request.httpMethod = "POST"
        request.httpBody = Data(mode.utf8)
        let (_, response) = try await URLSession.shared.data(for: request)
        try #require((response as? HTTPURLResponse)?.statusCode == 200, "the proxy took mode \(mode)")
    }

    func counts() async throws -> [String: Int] {
        struct Answer: Decodable { var counts: [String: Int] }
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(control)/stats")!)
        return try JSONDecoder().decode(Answer.self, from: data).counts
    }
}

struct ServiceError: Error, CustomStringConvertible {
    var description: String
}

/// A profile library in `folder` holding the shipped profile `name` with `edits` made (each must apply), for a test
/// of a model whose register map differs; returns the library's directory.
func editedProfiles(_ name: String, in folder: TemporaryDirectory, _ edits: [(of: String, with: String)]) throws -> String {
    let directory = folder.file("profiles")
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    var text = try String(contentsOfFile: profilesDirectory + "/\(name).yaml", encoding: .utf8)
    for edit in edits {
        try #require(text.contains(edit.of), "\(name).yaml has no '\(edit.of)' to edit")
        text = text.replacingOccurrences(of: edit.of, with: edit.with)
    }
    try text.write(toFile: directory + "/\(name).yaml", atomically: true, encoding: .utf8)
    return directory
}

extension MockModbusEvaluator {
    /// The pad's answer to a read of its registers or a write of one (which it takes), as a simulated line's
    /// responder gives it; nil for anything else.
    func answer(_ request: ModbusRequest) -> ModbusResponse? {
        switch request {
        case .readHoldingRegisters(let start, let count):
            return .readHoldingRegisters(values: Array(registers[Int(start)..<Int(start + count)]))
        case .writeSingleRegister(let address, let value):
            var written = registers
            written[Int(address)] = value
            accept(writtenRegisters: written)
            return .writeSingleRegister(address: address, value: value)
        default:
            return nil
        }
    }
}
