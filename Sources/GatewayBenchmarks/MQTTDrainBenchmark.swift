import DeviceGateway
import Foundation
import Logging
import Synchronization

/// Drains a 100,000-event outbox backlog into an MQTT broker (QoS 1, one message per event, every
/// batch waiting for its PUBACKs) and reports events per second.
///
///     scripts/test-services.sh swift run -c release GatewayBenchmarks drain-mqtt \
///         [HOST] [--port N] [--events N] [--batch-size N]
///
/// The broker defaults to `HALL_TEST_MQTT_HOST` / `HALL_TEST_MQTT_PORT`. The events are those of the
/// drain-postgres benchmark (ratings from 40 windows), committed in batches of 1,000.
enum MQTTDrainBenchmark {
    static func run(_ arguments: [String]) async throws {
        let environment = ProcessInfo.processInfo.environment
        var host = environment["HALL_TEST_MQTT_HOST"]
        var port = environment["HALL_TEST_MQTT_PORT"].flatMap { Int($0) } ?? 1883
        var eventCount = 100_000
        var batchSize = 1_000
        var remaining = arguments[...]
        while let argument = remaining.popFirst() {
            switch argument {
            case "--port": port = Int(remaining.popFirst() ?? "") ?? port
            case "--events": eventCount = Int(remaining.popFirst() ?? "") ?? eventCount
            case "--batch-size": batchSize = Int(remaining.popFirst() ?? "") ?? batchSize
            default: host = argument
            }
        }
        guard let host else {
            print("drain-mqtt: give the broker's host (and --port) or set HALL_TEST_MQTT_HOST and HALL_TEST_MQTT_PORT")
            exit(2)
        }
        let folder = NSTemporaryDirectory() + "hall-gateway-drain-mqtt-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }

        var logger = Logger(label: "drain-mqtt")
        logger.logLevel = .warning
        let outbox = try Outbox.open(path: folder + "/outbox.sqlite", logger: logger)
        let fill = try await BenchmarkBacklog.fill(outbox, events: eventCount)
        print("drain-mqtt: \(eventCount) rating events committed to the outbox in \(fill)")

        let config = MQTTSinkConfig(host: host, port: port, clientId: "drain-mqtt-\(UInt32.random(in: 0...UInt32.max))",
                                    topic: "bench/{hall}/{device}/{type}", timeout: .seconds(60))
        let mqtt = try MQTTSink(name: "central", config: config, hallId: "bench-hall", logger: logger)
        let sink = TimedSink(mqtt)
        let sinkConfig = SinkConfig(name: "central", kind: .mqtt(config), batchSize: batchSize)
        try await outbox.register(sinks: ["central"])
        let start = ContinuousClock.now
        let drained = try await Forwarder(outbox: outbox, sink: sink, config: sinkConfig, logger: logger).drain()
        let elapsed = start.duration(to: .now)
        await sink.shutdown()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("""
            drain-mqtt: \(drained) events to mqtt \(host):\(port) (QoS 1, PUBACK per batch) in \
            \(String(format: "%.2f", seconds)) s: \(Int(Double(drained) / seconds)) events/s, batch size \(batchSize); \
            \(String(format: "%.2f", sink.seconds)) s of it inside the sink's deliver (publish to last PUBACK), \
            the rest reading the outbox and committing its cursor
            """)
        let backlog = try await outbox.backlog(sink: "central")
        if drained != eventCount || backlog != 0 {
            print("drain-mqtt: FAILED: \(drained) of \(eventCount) drained, \(backlog) left in the backlog")
            exit(1)
        }
    }
}

/// Adds up the time spent in the wrapped sink's `deliver`.
private final class TimedSink: EventSink {
    private let sink: any EventSink
    private let spent = Mutex(Duration.zero)

    init(_ sink: any EventSink) { self.sink = sink }

    var name: String { sink.name }
    var seconds: Double {
        let spent = spent.withLock { $0 }
        return Double(spent.components.seconds) + Double(spent.components.attoseconds) / 1e18
    }

    func deliver(_ batch: [OutboundEvent]) async throws {
        let start = ContinuousClock.now
        defer { spent.withLock { $0 += start.duration(to: .now) } }
        try await sink.deliver(batch)
    }

    func shutdown() async { await sink.shutdown() }

    var connectionUp: Int? { sink.connectionUp }
}
