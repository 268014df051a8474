import DeviceGateway
import Foundation
import Logging

/// Resident memory while a long outage's backlog builds up: the central store is unreachable, a busy hall's
/// events keep coming (time-compressed), the forwarder keeps retrying. The backlog must live on disk, not in memory.
///
///     swift run -c release GatewayBenchmarks backlog-rss [--hours 72] [--events-per-day 50000]
enum BacklogMemoryBenchmark {
    static func run(_ arguments: [String]) async throws {
        var hours = 72
        var eventsPerDay = 50_000
        var remaining = arguments[...]
        while let argument = remaining.popFirst() {
            switch argument {
            case "--hours": hours = Int(remaining.popFirst() ?? "") ?? hours
            case "--events-per-day": eventsPerDay = Int(remaining.popFirst() ?? "") ?? eventsPerDay
            default: print("backlog-rss: unknown argument \(argument)"); exit(2)
            }
        }
        let folder = NSTemporaryDirectory() + "hall-gateway-backlog-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var logger = Logger(label: "backlog-rss")
        logger.logLevel = .critical
        let outbox = try Outbox.open(path: folder + "/outbox.sqlite", logger: logger)
        // A port where nothing listens: every delivery fails at once and is retried with backoff.
        let config = SinkConfig(name: "central", kind: .http(HTTPSinkConfig(url: "http://127.0.0.1:9/events")),
                                maximumRetryDelay: .seconds(2))
        guard case .http(let http) = config.kind else { return }
        let sink = try HTTPSink(name: "central", config: http, hallId: "bench-hall", logger: logger)
        try await outbox.register(sinks: ["central"])
        let stop = StopSignal()
        var forwarder = Forwarder(outbox: outbox, sink: sink, config: config, logger: logger)
        forwarder.firstRetryDelay = .milliseconds(100)
        let forwarding = Task { [forwarder] in await forwarder.run(until: stop) }

        let total = eventsPerDay * hours / 24
        // One bus cycle's events per commit, as a busy hall's buses commit them.
        let perCommit = 20
        print("backlog-rss: \(total) events (\(hours) h at \(eventsPerDay)/day, time-compressed), store unreachable")
        print("   events held   backlog MB   RSS MB")
        var number = 0
        let checkpoints = 8
        var samples: [Double] = []
        for checkpoint in 1...checkpoints {
            while number < total * checkpoint / checkpoints {
                try await outbox.commit((number..<number + perCommit).map(BenchmarkBacklog.rating))
                number += perCommit
            }
            let rss = residentMegabytes()
            samples.append(rss)
            print(String(format: "%14d   %10.1f   %6.1f", try await outbox.backlog(sink: "central"),
                         Double(try await outbox.usedBytes()) / 1_048_576, rss))
        }
        stop.stop()
        await forwarding.value
        let growth = (samples.last ?? 0) - (samples.first ?? 0)
        print(String(format: "backlog-rss: RSS from first to last checkpoint %+.1f MB", growth))
    }

    /// VmRSS of this process, from /proc.
    static func residentMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return 0 }
        return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }
}
