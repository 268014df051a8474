import DeviceGateway
import Foundation
import Logging

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Drains a backlog into a CloudEvents HTTP receiver: `swift run -c release GatewayBenchmarks drain-http`.
///
/// Fills a temporary outbox with events (committed 1,000 at a time, as a busy hall's poll cycles would),
/// then times `Forwarder.drain()` through the HTTP sink. Without `--url` it starts
/// `scripts/cloudevents_receiver.py` on loopback; the receiver's and the gateway's CPU time during the
/// drain tell which side limits. Options: `--events N` (100000), `--batch-size N` (500), `--no-validate`
/// (the receiver stores without the CloudEvents SDK), `--url URL --token-file FILE` (a receiver of your own).
enum HTTPDrainBenchmark {
    static func run(_ arguments: [String]) async throws {
        var events = 100_000
        var batchSize = 500
        var validate = true
        var url: String?
        var tokenFile: String?
        var remaining = arguments[...]
        while let option = remaining.popFirst() {
            switch option {
            case "--events": events = try Int(value(of: option, &remaining)) ?? events
            case "--batch-size": batchSize = try Int(value(of: option, &remaining)) ?? batchSize
            case "--no-validate": validate = false
            case "--url": url = try value(of: option, &remaining)
            case "--token-file": tokenFile = try value(of: option, &remaining)
            default: throw BenchmarkError("drain-http: unknown option \(option)")
            }
        }

        let folder = NSTemporaryDirectory() + "hall-drain-http-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var receiver: Receiver?
        if url == nil {
            let started = try await Receiver.start(folder: folder, validate: validate)
            receiver = started
            url = "http://127.0.0.1:\(started.port)/events"
            tokenFile = folder + "/token"
            try started.token.write(toFile: folder + "/token", atomically: true, encoding: .utf8)
        }
        defer { receiver?.stop() }
        guard let url else { return }

        var logger = Logger(label: "drain-http")
        logger.logLevel = .warning
        let outbox = try Outbox.open(path: folder + "/outbox.sqlite", logger: logger)
        let fill = try await BenchmarkBacklog.fill(outbox, events: events)

        let config = SinkConfig(name: "central", kind: .http(HTTPSinkConfig(url: url, tokenFile: tokenFile)),
                                batchSize: batchSize)
        let sink = try SinkFactory.make(config, hallId: "bench-hall", logger: logger)
        let forwarder = Forwarder(outbox: outbox, sink: sink, config: config, logger: logger)
        let receiverCPUBefore = receiver?.cpuSeconds() ?? 0
        let ownCPUBefore = ownCPUSeconds()
        let drainStart = ContinuousClock.now
        let drained: Int
        do {
            drained = try await forwarder.drain()
        } catch {
            await sink.shutdown()
            throw error
        }
        let drain = ContinuousClock.now - drainStart
        let ownCPU = ownCPUSeconds() - ownCPUBefore
        await sink.shutdown()

        let seconds = drain.seconds
        print("drain-http: \(events) events committed in \(String(format: "%.1f", fill.seconds)) s (1,000 per commit)")
        print("""
            drain-http: \(drained) events drained in \(String(format: "%.2f", seconds)) s, batches of \(batchSize): \
            \(Int(Double(drained) / seconds)) events/s, \(Int(Double(drained) / Double(batchSize) / seconds)) batches/s
            """)
        if let receiver {
            let receiverCPU = receiver.cpuSeconds() - receiverCPUBefore
            let stats = try await receiver.stats()
            print("""
                drain-http: receiver (\(validate ? "each event read with the CloudEvents SDK" : "no SDK validation")) \
                holds \(stats) rows; CPU during the drain: receiver \(String(format: "%.2f", receiverCPU)) s \
                (\(Int(receiverCPU / seconds * 100)) % of a core), gateway \(String(format: "%.2f", ownCPU)) s \
                (\(Int(ownCPU / seconds * 100)) % of a core)
                """)
        } else {
            print("drain-http: gateway CPU during the drain \(String(format: "%.2f", ownCPU)) s")
        }
    }

    private static func value(of option: String, _ remaining: inout ArraySlice<String>) throws -> String {
        guard let value = remaining.popFirst() else { throw BenchmarkError("drain-http: \(option) needs a value") }
        return value
    }

    private static func ownCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}

private struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension Duration {
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// `scripts/cloudevents_receiver.py` on loopback, its output in a file the benchmark polls.
private struct Receiver {
    let process: Process
    let port: Int
    let token = "bench-token"

    static func start(folder: String, validate: Bool) async throws -> Receiver {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/cloudevents_receiver.py").path
        let output = folder + "/receiver.out"
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, "--port", "0", "--db", folder + "/receiver.sqlite",
                             "--token", "bench-token"] + (validate ? [] : ["--no-validate"])
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        try process.run()
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, process.isRunning {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("PORT ") }),
               let port = Int(line.dropFirst(5)) {
                return Receiver(process: process, port: port)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        if process.isRunning { process.interrupt() }
        throw BenchmarkError(
            "drain-http: \(script) did not start (is the cloudevents package installed? make python-deps)")
    }

    func stop() {
        if process.isRunning { process.interrupt() }
    }

    /// User plus system CPU of the receiver, from /proc.
    func cpuSeconds() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return 0 }
        // Fields after the command name: state is field 3, utime 14 and stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    func stats() async throws -> Int {
        struct Stats: Decodable { var rows: Int }
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/stats")!)
        return try JSONDecoder().decode(Stats.self, from: data).rows
    }
}
