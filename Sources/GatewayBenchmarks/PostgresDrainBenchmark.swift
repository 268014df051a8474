import DeviceGateway
import Foundation
import Logging
import Synchronization

/// Drains a 100,000-event outbox backlog into a fresh PostgreSQL table and reports events per second.
///
///     scripts/test-services.sh swift run -c release GatewayBenchmarks drain-postgres \
///         [postgres://user:password@host:port/db] [--events N] [--batch-size N]
///
/// The URL defaults to `HALL_TEST_POSTGRES_URL`. The events are what a busy hall's pads send: ratings
/// from 40 windows, most of them 非常满意, committed in batches of 1,000 as the gateway would.
enum PostgresDrainBenchmark {
    static func run(_ arguments: [String]) async throws {
        var url = ProcessInfo.processInfo.environment["HALL_TEST_POSTGRES_URL"]
        var eventCount = 100_000
        var batchSize = 1_000
        var remaining = arguments[...]
        while let argument = remaining.popFirst() {
            switch argument {
            case "--events": eventCount = Int(remaining.popFirst() ?? "") ?? eventCount
            case "--batch-size": batchSize = Int(remaining.popFirst() ?? "") ?? batchSize
            default: url = argument
            }
        }
        guard let url, let components = URLComponents(string: url), let host = components.host,
              let user = components.user, components.path.count > 1 else {
            print("drain-postgres: give postgres://user:password@host:port/database or set HALL_TEST_POSTGRES_URL")
            exit(2)
        }
        let folder = NSTemporaryDirectory() + "hall-gateway-drain-postgres-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let passwordFile = folder + "/password"
        try (components.password ?? "").removingPercentEncoding!.write(toFile: passwordFile, atomically: true,
                                                                         encoding: .utf8)

        var logger = Logger(label: "drain-postgres")
        logger.logLevel = .warning
        let outbox = try Outbox.open(path: folder + "/outbox.sqlite", logger: logger)
        let fill = try await BenchmarkBacklog.fill(outbox, events: eventCount)
        print("drain-postgres: \(eventCount) rating events committed to the outbox in \(fill)")

        let table = "bench_events_\(UInt32.random(in: 0...UInt32.max))"
        let config = PostgresSinkConfig(
            host: host, port: components.port ?? 5432, database: String(components.path.dropFirst()),
            user: user.removingPercentEncoding ?? user, passwordFile: passwordFile, table: table,
            timeout: .seconds(60))
        let postgres = try PostgresSink(name: "central", config: config, hallId: "bench-hall", logger: logger)
        let sink = TimedPostgresSink(postgres)
        let sinkConfig = SinkConfig(name: "central", kind: .postgres(config), batchSize: batchSize)
        try await outbox.register(sinks: ["central"])
        let start = ContinuousClock.now
        let drained = try await Forwarder(outbox: outbox, sink: sink, config: sinkConfig, logger: logger).drain()
        let elapsed = start.duration(to: .now)
        await sink.shutdown()
        print("""
            drain-postgres: \(drained) events into \(postgres.endpoint) table \(table) in \
            \(String(format: "%.2f", seconds(elapsed))) s: \(Int(Double(drained) / seconds(elapsed))) events/s, \
            batch size \(batchSize); \(String(format: "%.2f", seconds(sink.inDeliver))) s of it in the sink's deliver
            """)
        let backlog = try await outbox.backlog(sink: "central")
        if drained != eventCount || backlog != 0 {
            print("drain-postgres: FAILED: \(drained) of \(eventCount) drained, \(backlog) left in the backlog")
            exit(1)
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

}

/// A sink that counts the time spent in another's `deliver`: the store's share of the drain.
private final class TimedPostgresSink: EventSink {
    let sink: any EventSink
    private let total = Mutex(Duration.zero)
    var name: String { sink.name }
    var inDeliver: Duration { total.withLock { $0 } }

    init(_ sink: any EventSink) { self.sink = sink }

    func deliver(_ batch: [OutboundEvent]) async throws {
        let start = ContinuousClock.now
        defer { total.withLock { $0 += start.duration(to: .now) } }
        try await sink.deliver(batch)
    }

    func shutdown() async { await sink.shutdown() }
}
