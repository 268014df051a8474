import DeviceGateway
import Foundation
import MockDevices
import Testing

/// `gatewayd status`: what the running gateway believes about each device, with its wire counters.
@Suite struct StatusCommandTests {
    @Test func statusShowsTheLiveAndTheSilentDeviceWithTheirCounters() async throws {
        let pad = MockModbusEvaluator(staffId: "0105")
        let server = try MockModbusServer.rtu(units: [4: pad])
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        let folder = try TemporaryDirectory()
        let (config, profiles) = try ConfigLoader.parse("""
            hall: {id: test-hall}
            state-directory: \(folder.path)/state
            profiles: \(profilesDirectory)
            buses:
              - {id: line-a, transport: modbus-rtu, port: \(path), response-timeout-ms: 100, poll-interval-ms: 50}
            devices:
              - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "5"}
              - {id: eval-w06, profile: modbus-evaluator-3key, bus: line-a, address: 9, window: "6"}
            sinks:
              - {type: sqlite, path: \(folder.path)/events.sqlite}
            """, file: "test.yaml", relativeTo: folder.path)
        let gateway = try Gateway(config: config, profiles: profiles, logger: CapturedLog().logger)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        let outbox = folder.path + "/state/outbox.sqlite"
        // The books are written every 2 s: wait until they show the silent pad offline.
        let reader = try Outbox.openForReading(path: outbox)
        #expect(await eventually {
            (try? await reader.deviceStates())?.contains { $0.state.device == "eval-w06" && $0.state.online == false } == true
        })
        stop.stop()
        await running.value

        let text = try await run(gatewaydPath, ["status", "--outbox", outbox])
        // An offline device fails the status (exit 1), for scripts.
        #expect(text.status == 1, "\(text.standardError)")
        let lines = text.standardOutput.split(separator: "\n").map(String.init)
        let live = try #require(lines.first { $0.hasPrefix("eval-w05") })
        let silent = try #require(lines.first { $0.hasPrefix("eval-w06") })
        #expect(live.contains("online") && live.contains("line-a"))
        #expect(silent.contains("OFFLINE") && silent.contains("never") && silent.contains("no answer to poll within"))

        let json = try await run(gatewaydPath, ["status", "--outbox", outbox, "--json"])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        let devices = try #require(report["devices"] as? [[String: Any]])
        let counters = Dictionary(uniqueKeysWithValues: devices.map {
            ($0["device"] as? String ?? "", $0["counters"] as? [String: Any] ?? [:])
        })
        let answered = try #require(counters["eval-w05"]?["transactions"] as? Int)
        #expect(answered > 0)
        #expect(counters["eval-w05"]?["timeouts"] as? Int == 0)
        #expect(counters["eval-w06"]?["transactions"] as? Int == 0)
        #expect(try #require(counters["eval-w06"]?["timeouts"] as? Int) >= 3)
        let latency = try #require(counters["eval-w05"]?["latency"] as? [String: Any])
        #expect(latency["count"] as? Int == answered, "every answer's latency is in the histogram")

        let empty = try await run(gatewaydPath, ["status", "--outbox", folder.path + "/nothing.sqlite"])
        #expect(empty.status == 3, "neither the daemon nor its outbox can tell")
    }
}
