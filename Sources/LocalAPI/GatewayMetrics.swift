public import DeviceGateway
import Prometheus
import Synchronization

/// The gateway's figures in the Prometheus text format, for `/metrics`: each device's wire counters and latency,
/// each sink's backlog and deliveries, the outbox, and the commands' latency.
///
/// The registry is this value's own (no global `MetricsSystem`): a process may run several gateways, as the tests do.
/// The engine's and the outbox's running totals are read at scrape time and added to the counters as increments, so
/// every counter only grows within a process, even when a total it follows starts again from zero.
public final class GatewayMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    /// The totals seen at the last scrape, and the latency histograms as exported; one scrape at a time.
    private let scrape = Mutex(ScrapeState())
    /// Upper bounds of the command-duration buckets.
    private static let commandBuckets: [Duration] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]
        .map { .milliseconds($0) }

    /// Metrics with nothing recorded yet.
    public init() {}

    /// Records one command answered, from the local API or MQTT alike (`CommandCenter`'s `onFinished`): a repeat of an
    /// idempotency key too, as the client saw it answered.
    @Sendable public func record(_ timing: CommandTiming) {
        let descriptor = MetricNameDescriptor(
            metricName: "hall_gateway_command_duration", unitName: "seconds",
            helpText: "Time the gateway took to answer a queue-system command from its local API or MQTT; a repeat "
                + "answered from its idempotency key's first run counts too.")
        registry.makeDurationHistogram(
            descriptor: descriptor, labels: [("command", timing.command), ("status", timing.status)],
            buckets: Self.commandBuckets
        ).record(timing.duration)
    }

    /// The metrics text, with the device, sink and outbox figures read from `gateway` now.
    public func render(gateway: Gateway) async -> String {
        let devices = await gateway.deviceStates()
        let lines = await gateway.lineCounters()
        let uncommitted = await gateway.uncommittedEvents()
        let outbox: (sinks: [SinkReport], events: Int, committed: Int64, dropped: Int)?
        do {
            outbox = (try await gateway.outbox.sinkReports(), try await gateway.outbox.count(),
                      try await gateway.outbox.committedTotal(), try await gateway.outbox.dropTotal())
        } catch {
            // The sink and outbox figures keep their last values; the gauge below says they are stale.
            outbox = nil
        }
        return scrape.withLock { state in
            for device in devices { update(device, &state) }
            for line in lines { update(line, &state) }
            gauge("hall_gateway_outbox_readable", [], "1 when the outbox could be read for this scrape, 0 when not.")
                .set(to: outbox == nil ? 0 : 1)
            gauge("hall_gateway_events_uncommitted", [],
                  "Events read or made and waiting in memory for the outbox: above 0 for seconds, it refuses commits.")
                .set(to: Double(uncommitted))
            if let outbox {
                update(outbox.sinks, events: outbox.events, committed: outbox.committed, dropped: outbox.dropped, &state)
            }
            var text = registry.emitToString()
            text += Self.latencyFamily(state.latency)
            return text
        }
    }

    private func update(_ line: LineCounters, _ state: inout ScrapeState) {
        let labels = [("bus", line.bus)]
        let families: [(String, Int, String)] = [
            ("received_bytes", line.counters.bytesReceived, "Bytes the bus read while it asked no device (unprompted frames included)."),
            ("garbage_bytes", line.counters.garbageBytes, "Bytes no device's request was waiting for that were no part of any valid frame."),
            ("checksum_errors", line.counters.checksumErrors, "Frames with a wrong checksum while no request was in flight."),
        ]
        for (family, total, help) in families {
            advance("hall_gateway_line_\(family)", labels, help, to: Int64(total), &state)
        }
    }

    private func update(_ device: DeviceState, _ state: inout ScrapeState) {
        let labels = [("device", device.device), ("bus", device.bus)]
        let counters = device.counters
        let families: [(String, Int, String)] = [
            ("transactions", counters.transactions, "Requests the device answered (refusals included); frames heard from a device never asked (FF 68, QSystem)."),
            ("timeouts", counters.timeouts, "Requests the device did not answer within the response timeout."),
            ("checksum_errors", counters.checksumErrors, "Frames with a wrong checksum while a request was in flight."),
            ("exceptions", counters.exceptions, "Answers refusing the request (Modbus exceptions, error codes)."),
            ("garbage_bytes", counters.garbageBytes, "Bytes that were no part of any valid frame."),
            ("sent_bytes", counters.bytesSent, "Bytes sent to the device."),
            ("received_bytes", counters.bytesReceived, "Bytes received while the device's request was in flight."),
        ]
        for (family, total, help) in families {
            advance("hall_gateway_device_\(family)", labels, help, to: Int64(total), &state)
        }
        gauge("hall_gateway_device_online", labels, "1 while the device answers, 0 when offline or not yet heard from.")
            .set(to: device.online == true ? 1 : 0)
        state.latency[device.device, default: ExportedHistogram(bus: device.bus)].advance(to: counters.latency)
    }

    private func update(_ sinks: [SinkReport], events: Int, committed: Int64, dropped: Int,
                        _ state: inout ScrapeState) {
        for sink in sinks {
            let labels = [("sink", sink.sink)]
            gauge("hall_gateway_sink_backlog", labels, "Events committed and not yet confirmed by the sink.")
                .set(to: Double(sink.backlog))
            advance("hall_gateway_sink_sent", labels, "Events the sink confirmed.", to: sink.sent, &state)
            advance("hall_gateway_sink_failed", labels, "Delivery attempts to the sink that failed.",
                    to: sink.failed, &state)
            advance("hall_gateway_sink_put_aside", labels, "Events the sink refused for good, put aside.",
                    to: sink.putAside, &state)
        }
        gauge("hall_gateway_outbox_events", [], "Events held in the outbox (committed, not yet pruned).")
            .set(to: Double(events))
        advance("hall_gateway_events_committed", [], "Events committed to the outbox since it was created.",
                to: committed, &state)
        advance("hall_gateway_events_dropped", [], "Events dropped because the outbox reached its size limit.",
                to: Int64(dropped), &state)
    }

    private func gauge(_ name: String, _ labels: [(String, String)], _ help: String) -> Gauge {
        let descriptor = MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        return labels.isEmpty ? registry.makeGauge(descriptor: descriptor)
            : registry.makeGauge(descriptor: descriptor, labels: labels)
    }

    /// Moves the counter `<name>_total` on by what `total` grew since the last scrape; a total that went down
    /// started again from zero (a restarted engine), so all of it is new.
    private func advance(_ name: String, _ labels: [(String, String)], _ help: String, to total: Int64,
                         _ state: inout ScrapeState) {
        let descriptor = MetricNameDescriptor(metricName: name, unitName: "total", helpText: help)
        let counter = labels.isEmpty ? registry.makeCounter(descriptor: descriptor)
            : registry.makeCounter(descriptor: descriptor, labels: labels)
        let key = ([name] + labels.map { $0.1 }).joined(separator: "\u{0}")
        let last = state.totals[key] ?? 0
        counter.increment(by: total >= last ? total - last : total)
        state.totals[key] = total
    }

    /// `hall_gateway_device_latency_seconds`, written here: swift-prometheus's histograms take one observation at a
    /// time, and the engine hands over counts per bucket.
    private static func latencyFamily(_ histograms: [String: ExportedHistogram]) -> String {
        let name = "hall_gateway_device_latency_seconds"
        var text = "# HELP \(name) Time from the end of a request on the wire to the end of its answer.\n"
        text += "# TYPE \(name) histogram\n"
        for (device, histogram) in histograms.sorted(by: { $0.key < $1.key }) {
            let labels = "device=\"\(escape(device))\",bus=\"\(escape(histogram.bus))\""
            var cumulative = 0
            for (index, bound) in LatencyHistogram.boundsMilliseconds.enumerated() {
                cumulative += histogram.buckets[index]
                text += "\(name)_bucket{\(labels),le=\"\(bound / 1000)\"} \(cumulative)\n"
            }
            text += "\(name)_bucket{\(labels),le=\"+Inf\"} \(histogram.count)\n"
            text += "\(name)_sum{\(labels)} \(histogram.sumSeconds)\n"
            text += "\(name)_count{\(labels)} \(histogram.count)\n"
        }
        return text
    }

    /// A label value as the text format wants it: backslash, double quote and line feed escaped.
    private static func escape(_ value: String) -> String {
        var escaped = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }
}

private struct ScrapeState: Sendable {
    /// The running totals as last read, by metric name and label values.
    var totals: [String: Int64] = [:]
    /// The latency histograms as exported, by device.
    var latency: [String: ExportedHistogram] = [:]
}

/// One device's latency histogram as exported: only grows, whatever the engine's histogram does.
private struct ExportedHistogram: Sendable {
    let bus: String
    var buckets = [Int](repeating: 0, count: LatencyHistogram.boundsMilliseconds.count + 1)
    var count = 0
    var sumSeconds = 0.0
    private var last = LatencyHistogram()

    init(bus: String) { self.bus = bus }

    /// Adds what the engine's histogram gained since the last scrape (all of it, when it started again).
    mutating func advance(to current: LatencyHistogram) {
        let grew = current.count >= last.count && zip(current.buckets, last.buckets).allSatisfy { $0 >= $1 }
        let base = grew ? last : LatencyHistogram()
        for index in buckets.indices { buckets[index] += current.buckets[index] - base.buckets[index] }
        count += current.count - base.count
        sumSeconds += max(0, current.sumMilliseconds - base.sumMilliseconds) / 1000
        last = current
    }
}
