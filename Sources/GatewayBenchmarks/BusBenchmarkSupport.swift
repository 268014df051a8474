import DeviceGateway
import Foundation
import Logging
import MockDevices
import Synchronization

// What the bus-engine benchmarks (`bench/bus.sh`) share: options, a hall configuration from YAML, child processes
// (the simulated devices in a process of their own, the real daemon) and what /proc says about them.

/// A bus benchmark that cannot run: a missing server, a daemon that died.
struct BusBenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// `--name value` options of one subcommand; an unknown name stops the benchmark with its usage.
struct BenchOptions {
    private var values: [String: [String]] = [:]

    init(_ arguments: [String], command: String, known: [String]) {
        var remaining = arguments[...]
        while let name = remaining.popFirst() {
            guard known.contains(name), let value = remaining.popFirst() else {
                print("\(command): unknown option or missing value: \(name) (options: \(known.joined(separator: " ")))")
                exit(2)
            }
            values[name, default: []].append(value)
        }
    }

    func string(_ name: String) -> String? { values[name]?.last }
    func strings(_ name: String) -> [String] { values[name] ?? [] }
    func int(_ name: String, _ fallback: Int) -> Int { string(name).flatMap { Int($0) } ?? fallback }
    func double(_ name: String, _ fallback: Double) -> Double { string(name).flatMap { Double($0) } ?? fallback }
    /// A comma-separated list of whole numbers.
    func ints(_ name: String, _ fallback: [Int]) -> [Int] {
        string(name).map { $0.split(separator: ",").compactMap { Int($0) } } ?? fallback
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    /// The duration in milliseconds, as a `Double`.
    var inMilliseconds: Double { inSeconds * 1000 }
}

/// A fresh folder under /tmp for one run: state directory, event store, configuration, logs.
final class BenchFolder: Sendable {
    let path: String

    init(_ name: String) throws {
        path = NSTemporaryDirectory() + "hall-gateway-\(name)-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Where things of the checkout and the build are.
enum BenchPaths {
    /// This executable.
    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The `devices/` folder: the working folder's, or the checkout's the binary was built in.
    static func profiles() throws -> String {
        let marker = "modbus-evaluator-3key.yaml"
        var candidates = [FileManager.default.currentDirectoryPath + "/devices"]
        var folder = URL(fileURLWithPath: executable).deletingLastPathComponent()
        for _ in 0..<6 {
            candidates.append(folder.appendingPathComponent("devices").path)
            folder.deleteLastPathComponent()
        }
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: "\($0)/\(marker)") }) else {
            throw BusBenchmarkError("cannot find the device profiles (devices/\(marker)); run from the checkout")
        }
        return found
    }

    /// The gatewayd built beside this executable (`.build-release/release/gatewayd` for `bench/bus.sh`).
    static var gatewayd: String {
        URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("gatewayd").path
    }

    /// A copy of the Modbus profiles in `folder` whose pads are polled as fast as the line allows: the profile's
    /// `poll-interval-ms: 0` (a bus's own poll interval cannot go below 10 ms, which would cap a TCP connection
    /// with 32 pads at 3,200 polls/s).
    static func fastPollingProfiles(in folder: BenchFolder) throws -> String {
        let source = try profiles()
        let target = folder.file("profiles")
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        for name in ["modbus-evaluator-3key", "modbus-window-board"] {
            var text = try String(contentsOfFile: "\(source)/\(name).yaml", encoding: .utf8)
            if name == "modbus-evaluator-3key" { text += "\npoll-interval-ms: 0\n" }
            try text.write(toFile: "\(target)/\(name).yaml", atomically: true, encoding: .utf8)
        }
        return target
    }
}

/// A hall configuration file for the benchmarks: buses and devices given as YAML list items.
func benchConfiguration(folder: BenchFolder, profiles: String, buses: [String], devices: [String]) -> String {
    """
    hall: {id: bench-hall}
    state-directory: \(folder.path)/state
    profiles: \(profiles)
    buses:
    \(buses.map { "  - " + $0 }.joined(separator: "\n"))
    devices:
    \(devices.map { "  - " + $0 }.joined(separator: "\n"))
    sinks:
      - {type: sqlite, path: \(folder.path)/events.sqlite}
    """
}

/// A gateway inside this process, running from a configuration as `gatewayd run` would.
struct InProcessGateway {
    let gateway: Gateway
    private let stop = StopSignal()
    private let running: Task<Void, Never>

    init(configuration: String, folder: BenchFolder) throws {
        let (config, profiles) = try ConfigLoader.parse(configuration, file: "bench.yaml", relativeTo: folder.path)
        var logger = Logger(label: "gateway") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .warning
        let gateway = try Gateway(config: config, profiles: profiles, logger: logger)
        self.gateway = gateway
        let stop = self.stop
        running = Task { await gateway.run(until: stop) }
    }

    /// The devices' wire counters summed: answered requests and timeouts.
    func totals() async -> (transactions: Int, timeouts: Int) {
        await gateway.deviceStates().reduce((0, 0)) { ($0.0 + $1.counters.transactions, $0.1 + $1.counters.timeouts) }
    }

    /// Stops the buses and the forwarders and waits until they finished.
    func shutdown() async {
        stop.stop()
        await running.value
    }
}

/// What /proc tells about a process.
struct ProcessSample {
    /// User plus system CPU since the start, in seconds.
    var cpuSeconds: Double
    /// Threads now.
    var threads: Int
    /// VmRSS and VmHWM in MB.
    var residentMegabytes: Double
    var peakResidentMegabytes: Double
    /// VmRSS split: anonymous pages (heap, stacks) and file pages (code and data of the executable and libraries,
    /// shared with every process that maps them), in MB.
    var anonymousMegabytes: Double
    var fileMegabytes: Double

    /// A sample of `pid` (0: this process); nil once the process is gone.
    static func of(_ pid: Int32) -> ProcessSample? {
        let base = pid == 0 ? "/proc/self" : "/proc/\(pid)"
        guard let stat = readProcFile(base + "/stat"), let close = stat.lastIndex(of: ")"),
            let status = readProcFile(base + "/status")
        else { return nil }
        // After the command name: the state is field 3; utime is field 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        func kilobytes(_ key: String) -> Double {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return 0 }
            return Double(line.split(whereSeparator: \.isWhitespace).dropFirst().first ?? "0") ?? 0
        }
        return ProcessSample(
            cpuSeconds: (user + system) / Double(sysconf(Int32(_SC_CLK_TCK))), threads: Int(kilobytes("Threads")),
            residentMegabytes: kilobytes("VmRSS") / 1024, peakResidentMegabytes: kilobytes("VmHWM") / 1024,
            anonymousMegabytes: kilobytes("RssAnon") / 1024, fileMegabytes: kilobytes("RssFile") / 1024)
    }
}

/// A file of /proc, whole: `String(contentsOfFile:)` stops at the first 4 KB there, since /proc files have no size.
func readProcFile(_ path: String) -> String? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    do {
        return String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
    } catch {
        return nil
    }
}

/// The simulated devices of a benchmark in a process of their own (`GatewayBenchmarks modbus-server`), so that their
/// CPU does not compete inside the measured process. It prints what it serves, then answers `count` with the number
/// of requests it answered; it exits when its standard input closes.
final class ServerChild: @unchecked Sendable {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let queue = DispatchQueue(label: "bench.server-child")
    private var buffered: [UInt8] = []
    /// The first line the server printed: `port P` or `paths A B …`.
    private(set) var banner = ""

    /// Starts the server; on `cpu` alone when given (through taskset), else wherever the scheduler puts it.
    init(_ arguments: [String], cpu: Int? = nil) async throws {
        if let cpu {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
            process.arguments = ["-c", "\(cpu)", BenchPaths.executable, "modbus-server"] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: BenchPaths.executable)
            process.arguments = ["modbus-server"] + arguments
        }
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        banner = try await line()
    }

    /// The TCP port it listens on.
    var port: Int {
        get throws {
            guard banner.hasPrefix("port "), let port = Int(banner.dropFirst(5)) else {
                throw BusBenchmarkError("modbus-server said '\(banner)', not its port")
            }
            return port
        }
    }

    /// The pseudo-terminals of its RTU lines.
    var paths: [String] { banner.hasPrefix("paths ") ? banner.dropFirst(6).split(separator: " ").map(String.init) : [] }

    /// Requests answered so far.
    func answered() async throws -> Int {
        try input.fileHandleForWriting.write(contentsOf: Data("count\n".utf8))
        let reply = try await line()
        guard reply.hasPrefix("count "), let count = Int(reply.dropFirst(6)) else {
            throw BusBenchmarkError("modbus-server answered '\(reply)' to count")
        }
        return count
    }

    /// CPU the server used so far, in seconds.
    var cpuSeconds: Double { ProcessSample.of(process.processIdentifier)?.cpuSeconds ?? 0 }

    /// Closes its input: it exits.
    func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    /// The next line it prints; read on a queue of its own, since the read blocks.
    private func line() async throws -> String {
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<String, any Error>) in
            queue.async { [self] in
                while true {
                    if let end = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                        let line = String(decoding: buffered[..<end], as: UTF8.self)
                        buffered.removeSubrange(...end)
                        return done.resume(returning: line)
                    }
                    let data = output.fileHandleForReading.availableData
                    if data.isEmpty {
                        return done.resume(
                            throwing: BusBenchmarkError(
                                "modbus-server ended (exit \(process.isRunning ? -1 : process.terminationStatus))"))
                    }
                    buffered += data
                }
            }
        }
    }
}

/// A child process whose output goes to a file (the real daemon, the C baseline, the memory floor).
final class LoggedChild: @unchecked Sendable {
    let process = Process()
    let logPath: String

    init(_ executable: String, _ arguments: [String], log: String, environment: [String: String] = [:]) throws {
        logPath = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits for its end without blocking the cooperative pool; SIGKILL after `timeout`.
    func wait(timeout: Duration = .seconds(30)) async {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline { kill(pid, SIGKILL) }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// SIGTERM (a graceful stop for gatewayd), then waits.
    func terminate() async {
        if process.isRunning { kill(pid, SIGTERM) }
        await wait()
    }
}

/// Prints rows under a header, each column as wide as its widest cell; numbers right-aligned.
func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { column in
        ([header] + rows).map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0
    }
    func format(_ cells: [String]) -> String {
        cells.enumerated().map { column, cell in
            let pad = String(repeating: " ", count: max(0, widths[column] - cell.count))
            return column == 0 ? cell + pad : pad + cell
        }.joined(separator: "  ")
    }
    print(format(header))
    print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "))
    for row in rows { print(format(row)) }
}

/// A number with a fixed count of decimals.
func fixed(_ value: Double, _ decimals: Int = 1) -> String { String(format: "%.\(decimals)f", value) }

/// Whether a measured value meets its target, for the tables.
func verdict(_ met: Bool) -> String { met ? "met" : "MISSED" }

/// The threads of a process by name, counted: "3 NIO-ELT-1-#0, 2 …".
func threadNames(_ pid: Int32) -> String {
    let folder = "/proc/\(pid)/task"
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).compactMap {
        readProcFile("\(folder)/\($0)/comm")?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    return Dictionary(grouping: names, by: { $0 }).map { (name: $0.key, count: $0.value.count) }
        .sorted { ($0.count, $0.name) > ($1.count, $1.name) }.map { "\($0.count) \($0.name)" }.joined(separator: ", ")
}

/// The CPUs a process may run on (`Cpus_allowed_list`; 0: this process).
func allowedCPUs(_ pid: Int32) -> String {
    let status = readProcFile(pid == 0 ? "/proc/self/status" : "/proc/\(pid)/status") ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }
    return line.map { $0.split(whereSeparator: \.isWhitespace).dropFirst().joined() } ?? "?"
}

/// The share of the machine's CPU time the hypervisor gave to other guests since the meter was made (`steal` in
/// /proc/stat): on a virtual machine a vCPU that sleeps may wake late when the host is busy, which no load average
/// inside the guest shows.
struct StealMeter {
    private let start: (steal: Double, total: Double)

    init() { start = Self.read() }

    /// Stolen time as a percentage of all CPU time since `init`.
    var percent: Double {
        let now = Self.read()
        let total = now.total - start.total
        return total > 0 ? (now.steal - start.steal) / total * 100 : 0
    }

    private static func read() -> (steal: Double, total: Double) {
        let line = (readProcFile("/proc/stat") ?? "").split(separator: "\n").first ?? ""
        let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        return (fields.count > 7 ? fields[7] : 0, fields.prefix(8).reduce(0, +))
    }
}

/// The machine's load now (1-minute average), to print beside the figures: other builds share the two cores.
func loadAverage() -> String {
    (readProcFile("/proc/loadavg") ?? "?").split(separator: " ").prefix(3)
        .joined(separator: " ")
}

/// A window board that notes when the first write after `arm()` reached it: the paced server hands a request to its
/// unit once the request's last character has arrived on the wire.
final class StampedBoard: MockModbusUnit {
    private struct Stamp {
        var armed = false
        var at: ContinuousClock.Instant?
        var lastAnswerBefore: ContinuousClock.Instant?
    }

    private let board = MockModbusBoard()
    private let stamp = Mutex(Stamp())
    /// When the line's last answer arrived at the gateway (the server's, set once it exists).
    let lastAnswerOnLine = Mutex<(@Sendable () -> ContinuousClock.Instant?)?>(nil)

    var registers: [UInt16] { board.registers }
    var answering: Bool { board.answering }

    func accept(writtenRegisters: [UInt16]) {
        let now = ContinuousClock.now
        let lastAnswer = lastAnswerOnLine.withLock { $0 }?()
        stamp.withLock {
            if $0.armed, $0.at == nil {
                $0.at = now
                $0.lastAnswerBefore = lastAnswer
            }
        }
        board.accept(writtenRegisters: writtenRegisters)
    }

    /// Forgets the last write; the next one is stamped.
    func arm() { stamp.withLock { $0 = Stamp(armed: true) } }

    /// When the first write since `arm()` arrived.
    var firstWrite: ContinuousClock.Instant? { stamp.withLock { $0.at } }

    /// When the answer that ended the transaction in flight before that write had arrived at the gateway.
    var lastAnswerBeforeFirstWrite: ContinuousClock.Instant? { stamp.withLock { $0.lastAnswerBefore } }
}
