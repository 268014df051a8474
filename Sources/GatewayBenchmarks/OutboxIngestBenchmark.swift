import DeviceGateway
import Foundation
import Logging

/// Outbox ingest with group commit: events per second and commit latency for transactions of 1 to 500 events,
/// with `synchronous=FULL` (an fsync per commit) on the disk the outbox folder is on.
///
///     swift run -c release GatewayBenchmarks ingest [--folder DIR] [--seconds S]
enum OutboxIngestBenchmark {
    static func run(_ arguments: [String]) async throws {
        var folder = NSTemporaryDirectory()
        var seconds = 3.0
        var remaining = arguments[...]
        while let argument = remaining.popFirst() {
            switch argument {
            case "--folder": folder = remaining.popFirst() ?? folder
            case "--seconds": seconds = Double(remaining.popFirst() ?? "") ?? seconds
            default: print("ingest: unknown argument \(argument)"); exit(2)
            }
        }
        var logger = Logger(label: "ingest")
        logger.logLevel = .warning
        print("ingest: rating events into a fresh outbox in \(folder), \(seconds) s per group size, synchronous=FULL")
        print("events/commit   events/s   commits/s   p50 commit   p99 commit")
        var number = 0
        for groupSize in [1, 10, 50, 200, 500] {
            let path = folder + "/ingest-\(UUID().uuidString).sqlite"
            defer { for suffix in ["", "-wal", "-shm", ".reserve", ".stop-reserve"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
            let outbox = try Outbox.open(path: path, logger: logger)
            var latencies: [Duration] = []
            let clock = ContinuousClock()
            let started = clock.now
            while clock.now - started < .seconds(seconds) {
                let events = (number..<number + groupSize).map(BenchmarkBacklog.rating)
                number += groupSize
                let before = clock.now
                try await outbox.commit(events)
                latencies.append(clock.now - before)
            }
            let elapsed = clock.now - started
            latencies.sort()
            func milliseconds(_ duration: Duration) -> String {
                String(format: "%.2f ms", Double(duration.components.attoseconds) / 1e15 + Double(duration.components.seconds) * 1000)
            }
            let total = Double(latencies.count * groupSize)
            let secondsElapsed = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print(String(format: "%14d   %8.0f   %9.0f", groupSize, total / secondsElapsed, Double(latencies.count) / secondsElapsed)
                  + "   " + milliseconds(latencies[latencies.count / 2]).padding(toLength: 10, withPad: " ", startingAt: 0)
                  + "   " + milliseconds(latencies[min(latencies.count - 1, latencies.count * 99 / 100)]))
        }
    }
}
