import DeviceGateway
import Foundation
import LocalAPI
import MockDevices
import Testing

/// `/metrics`' text, rendered from a real gateway polling mock boards over Modbus RTU, read as Prometheus would.
@Suite(.serialized) struct MetricsTests {
    /// A pad that answers (address 4), a board nobody plays (address 9), the gateway polling them.
    final class Hall: Sendable {
        let pad = MockModbusEvaluator(staffId: "0105")
        let server: MockModbusServer
        let folder: TemporaryDirectory
        let gateway: Gateway
        let stop = StopSignal()
        let running: Task<Void, Never>

        init() throws {
            server = try MockModbusServer.rtu(units: [4: pad])
            let path = try #require(server.endpoint.devicePath)
            folder = try TemporaryDirectory()
            gateway = try testGateway(
                buses: "  - {id: line-a, transport: modbus-rtu, port: \(path), response-timeout-ms: 100, poll-interval-ms: 50}",
                devices: """
                  - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "5"}
                  - {id: board-w07, profile: modbus-window-board, bus: line-a, address: 9, window: "7"}
                """, folder: folder)
            let gateway = self.gateway
            let stop = self.stop
            running = Task { await gateway.run(until: stop) }
        }

        /// Waits until the pad has answered and the silent board has missed enough polls to be offline.
        func polled() async -> Bool {
            await eventually {
                let states = await gateway.deviceStates()
                let pad = states.first { $0.device == "eval-w05" }
                let silent = states.first { $0.device == "board-w07" }
                return (pad?.counters.transactions ?? 0) > 0 && pad?.online == true
                    && (silent?.counters.timeouts ?? 0) >= 3 && silent?.online == false
            }
        }

        func stopAll() async {
            stop.stop()
            await running.value
            server.stop()
        }

        /// A test that throws before `stopAll` still stops its gateway: left running, it would reopen its ports'
        /// paths, which a later test's mocks may be given.
        deinit {
            stop.stop()
        }
    }

    /// The samples of an exposition, by series (`name{labels}`) as written.
    static func samples(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            samples[String(line[..<space])] = Double(line[line.index(after: space)...])
        }
        return samples
    }

    @Test func devicesSinksOutboxAndCommandsInTextThatPromtoolAccepts() async throws {
        let hall = try Hall()
        #expect(await hall.polled())
        let metrics = GatewayMetrics()
        metrics.record(CommandTiming(command: "call", status: "done", duration: .milliseconds(42)))
        metrics.record(CommandTiming(command: "call", status: "done", duration: .milliseconds(7)))
        metrics.record(CommandTiming(command: "pause", status: "device-offline", duration: .milliseconds(310)))
        let text = await metrics.render(gateway: hall.gateway)
        await hall.stopAll()
        let samples = Self.samples(text)
        let pad = #"device="eval-w05",bus="line-a""#
        let silent = #"device="board-w07",bus="line-a""#

        #expect(try #require(samples["hall_gateway_device_transactions_total{\(pad)}"]) > 0, "\(text)")
        #expect(try #require(samples["hall_gateway_device_timeouts_total{\(silent)}"]) >= 3)
        #expect(samples["hall_gateway_device_transactions_total{\(silent)}"] == 0)
        #expect(samples["hall_gateway_device_online{\(pad)}"] == 1)
        #expect(samples["hall_gateway_device_online{\(silent)}"] == 0)
        for family in ["checksum_errors", "exceptions", "garbage_bytes", "sent_bytes", "received_bytes"] {
            #expect(samples["hall_gateway_device_\(family)_total{\(pad)}"] != nil, "\(family)")
        }
        #expect(try #require(samples["hall_gateway_device_sent_bytes_total{\(pad)}"]) > 0)

        // The pad's latency: every answer in some bucket, the buckets cumulative, the engine's bounds in seconds.
        let answered = try #require(samples["hall_gateway_device_latency_seconds_count{\(pad)}"])
        #expect(answered > 0)
        #expect(samples["hall_gateway_device_latency_seconds_bucket{\(pad),le=\"+Inf\"}"] == answered)
        let buckets = LatencyHistogram.boundsMilliseconds.map {
            samples["hall_gateway_device_latency_seconds_bucket{\(pad),le=\"\($0 / 1000)\"}"]
        }
        #expect(buckets.allSatisfy { $0 != nil }, "\(text)")
        #expect(zip(buckets, buckets.dropFirst()).allSatisfy { ($0 ?? 0) <= ($1 ?? 0) })
        // Zero is possible: on a pseudo-terminal the answer can be in before the request's computed wire time ends.
        #expect(try #require(samples["hall_gateway_device_latency_seconds_sum{\(pad)}"]) >= 0)
        #expect(samples["hall_gateway_device_latency_seconds_count{\(silent)}"] == 0, "no answer, no latency")

        // The gateway's one sink (the local SQLite store) and the outbox: the devices' online events are committed.
        let sink = try #require(samples.keys.first { $0.hasPrefix("hall_gateway_sink_backlog{sink=") })
        let labels = sink.dropFirst("hall_gateway_sink_backlog".count)
        for family in ["sent_total", "failed_total", "put_aside_total"] {
            #expect(samples["hall_gateway_sink_\(family)\(labels)"] != nil, "\(family)")
        }
        #expect(try #require(samples["hall_gateway_outbox_events"]) >= 1)
        // Every event committed, counted by the outbox itself: at least the events it holds (read a moment before).
        let committed = try #require(samples["hall_gateway_events_committed_total"])
        #expect(committed >= 1 && committed >= samples["hall_gateway_outbox_events"] ?? .infinity, "\(text)")
        #expect(samples["hall_gateway_events_dropped_total"] == 0)
        #expect(samples["hall_gateway_outbox_readable"] == 1)

        let call = #"command="call",status="done""#
        #expect(samples["hall_gateway_command_duration_seconds_count{\(call)}"] == 2)
        #expect(samples["hall_gateway_command_duration_seconds_bucket{\(call),le=\"0.01\"}"] == 1)
        #expect(samples["hall_gateway_command_duration_seconds_bucket{\(call),le=\"0.05\"}"] == 2)
        #expect(samples["hall_gateway_command_duration_seconds_sum{\(call)}"] == 0.049)
        #expect(samples[#"hall_gateway_command_duration_seconds_count{command="pause",status="device-offline"}"#] == 1)

        let promtool = try await run("/usr/bin/promtool", ["check", "metrics"], input: text)
        #expect(promtool.status == 0, "promtool: \(promtool.standardOutput)\(promtool.standardError)\n\(text)")
    }

    /// A counter never goes down within a process, even when the totals it follows start again (here: a second
    /// gateway with the same devices, its engine's counters at zero, as after a restart of the buses).
    @Test func countersNeverGoDownWhenTheEnginesTotalsStartAgain() async throws {
        let hall = try Hall()
        #expect(await hall.polled())
        let metrics = GatewayMetrics()
        let first = Self.samples(await metrics.render(gateway: hall.gateway))
        await hall.stopAll()

        let restarted = try Hall()
        let second = Self.samples(await metrics.render(gateway: restarted.gateway))
        #expect(await restarted.polled())
        let third = Self.samples(await metrics.render(gateway: restarted.gateway))
        await restarted.stopAll()

        let growing = first.keys.filter { $0.hasSuffix("_total") || $0.contains("_total{") || $0.contains("_latency_") }
        #expect(growing.count > 10)
        for series in growing {
            let (before, after, later) = (first[series] ?? 0, second[series] ?? -1, third[series] ?? -1)
            #expect(after >= before && later >= after, "\(series): \(before), then \(after), then \(later)")
        }
        let timeouts = #"hall_gateway_device_timeouts_total{device="board-w07",bus="line-a"}"#
        #expect(try #require(third[timeouts]) >= (first[timeouts] ?? 0) + 3, "the restarted engine's misses are added")
    }
}
