import DeviceGateway
import Foundation
import LocalAPI
import MockDevices
import Protocols
import Testing

/// `gatewayd status`: what the running gateway believes about each device, with its wire counters.
@Suite struct StatusCommandTests {
    @Test func statusShowsTheLiveAndTheSilentDeviceWithTheirCounters() async throws {
        let pad = MockModbusEvaluator(staffId: "0105")
        let server = try MockModbusServer.rtu(units: [4: pad])
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        let hall = try await ConfiguredHall(buses: { folder in """
              - {id: line-0, transport: modbus-rtu, port: \(folder)/ttyUSB-unplugged}
              - {id: line-a, transport: modbus-rtu, port: \(path), response-timeout-ms: 100, poll-interval-ms: 50}
            """ }, devices: """
              - {id: eval-w06, profile: modbus-evaluator-3key, bus: line-a, address: 9, window: "6"}
              - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "5"}
              - {id: eval-w07, profile: modbus-evaluator-3key, bus: line-0, address: 7, window: "7"}
            """)
        let folder = hall.folder
        let configPath = hall.configPath
        let outbox = folder.path + "/state/outbox.sqlite"
        // The books are written every 2 s: wait until they show the silent pad offline.
        let reader = try Outbox.openForReading(path: outbox)
        #expect(await eventually {
            let states = (try? await reader.deviceStates()) ?? []
            return ["eval-w06", "eval-w07"].allSatisfy { device in
                states.contains { $0.state.device == device && $0.state.online == false }
            }
        }, "\(hall.log.text)")
        await hall.stop()

        let text = try await run(gatewaydPath, ["status", "--outbox", outbox])
        // An offline device fails the status (exit 1), for scripts.
        #expect(text.status == 1, "\(text.standardError)")
        let lines = text.standardOutput.split(separator: "\n").map(String.init)
        let live = try #require(lines.first { $0.hasPrefix("eval-w05") })
        let silent = try #require(lines.first { $0.hasPrefix("eval-w06") })
        #expect(live.contains("was online") && live.contains("line-a"))
        #expect(silent.contains("was OFFLINE") && silent.contains("never") && silent.contains("no answer to poll within"))

        // Nothing answers for the gateway: its outbox's record is shown as such, and the status is no "all well".
        let stopped = try await run(gatewaydPath, ["status", "--config", configPath, "--api", "http://127.0.0.1:9"])
        #expect(stopped.status == 3, "\(stopped.standardOutput)\(stopped.standardError)")
        let stoppedLines = stopped.standardOutput.split(separator: "\n").map(String.init)
        #expect(
            stoppedLines.first?.hasPrefix("the gateway is not running (nothing listens on ") == true
                && stoppedLines.first?.contains("; last known device states, recorded ") == true
                && stoppedLines.first?.hasSuffix(" in \(outbox)") == true, "\(stoppedLines)")
        #expect(try #require(stoppedLines.first { $0.hasPrefix("eval-w05") }).contains(" was online "))
        #expect(stoppedLines.filter { $0.hasPrefix("eval-") }.map { $0.prefix(8) } == ["eval-w07", "eval-w06", "eval-w05"],
                "bus by bus in the configuration's order, as the daemon lists them")
        #expect(stoppedLines.last == "3 devices as last recorded, 2 offline then; now unknown", "\(stoppedLines)")
        let stoppedJSON = try await run(
            gatewaydPath, ["status", "--config", configPath, "--api", "http://127.0.0.1:9", "--json"])
        #expect(stoppedJSON.status == 3)
        let recorded = try #require(
            try JSONSerialization.jsonObject(with: Data(stoppedJSON.standardOutput.utf8)) as? [String: Any])
        #expect(recorded["live"] as? Bool == false && recorded["source"] as? String == "outbox")
        #expect((recorded["daemonAnswer"] as? String)?.contains("not running") == true, "\(recorded)")
        let recordedAtText = try #require(recorded["recordedAt"] as? String)
        let recordedAt = try #require(EventTime.parse(recordedAtText))
        #expect(recordedAt < Date())

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

        // A device since taken out of the configuration is not listed from the record.
        try String(contentsOfFile: configPath, encoding: .utf8).replacingOccurrences(of: "  - {id: eval-w06, profile: modbus-evaluator-3key, bus: line-a, address: 9, window: \"6\"}\n", with: "")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        let removed = try await run(gatewaydPath, ["status", "--config", configPath, "--api", "http://127.0.0.1:9"])
        #expect(!removed.standardOutput.contains("eval-w06"), "\(removed.standardOutput)")
        #expect(removed.standardOutput.hasSuffix("2 devices as last recorded, 1 offline then; now unknown\n"),
                "\(removed.standardOutput)")
    }

    @Test func statusAndMetricsShowTheNoiseOfALineWhoseDevicesOnlySpeakUnprompted() async throws {
        let bus = try MockFF68Bus()
        defer { bus.stop() }
        let hall = try await ConfiguredHall(buses: { _ in "  - {id: ff68, transport: serial, port: \(bus.devicePath)}" }, devices: """
              - {id: eval-w03, profile: ff68-evaluator, bus: ff68, address: 3, window: "3"}
              - {id: eval-w04, profile: ff68-evaluator, bus: ff68, address: 4, window: "4"}
            """)
        let gateway = hall.gateway

        // Once the line is open (a first press acknowledged): noise, a key frame damaged in its checksum, then a good
        // press. An FF 68 pad is never asked, so none of it is any device's.
        bus.pressEvaluatorKey(1, address: 3)
        let opened = await eventually { bus.acknowledged.count == 1 }
        let noise: [UInt8] = [0x13, 0x37, 0x00]
        var damaged = FF68Frame.evaluatorKeyPress(address: 3, key: 1).encode()
        damaged[damaged.count - 2] ^= 0x5A
        bus.sendRaw(noise + damaged)
        bus.pressEvaluatorKey(2, address: 3)
        let counted = await eventually {
            let checksumErrors = await gateway.lineCounters().first?.counters.checksumErrors ?? 0
            return bus.acknowledged.count == 2 && checksumErrors > 0
        }
        let cli = hall.cli
        let status = try await run(gatewaydPath, ["status"] + cli)
        let json = try await run(gatewaydPath, ["status", "--json"] + cli)
        let metrics = MetricsTests.samples(await GatewayMetrics().render(gateway: gateway))
        await hall.stop()

        #expect(opened && counted, "\(hall.log.text)")
        #expect(status.status == 0, "\(status.standardOutput)\(status.standardError)")
        // The pad is never asked: it is online by what it said, and it says when it was last heard.
        let padRow = try #require(status.standardOutput.split(separator: "\n").first { $0.hasPrefix("eval-w03") })
        #expect(padRow.contains("online") && padRow.contains(" ago") && !padRow.contains("never"), "\(padRow)")
        // The pad nobody pressed is not counted as well: the summary says it was not heard from.
        #expect(status.standardOutput.contains("\n2 devices, 0 offline, 1 not heard from yet\n"), "\(status.standardOutput)")
        let noiseLine = try #require(status.standardOutput.split(separator: "\n").first { $0.hasPrefix("line ff68 (") },
                                     "\(status.standardOutput)")
        #expect(noiseLine.contains("\(noise.count + damaged.count) garbage bytes and 1 bad checksum of "),
                "\(noiseLine)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        let line = try #require((report["lines"] as? [[String: Any]])?.first)
        #expect(line["bus"] as? String == "ff68")
        #expect((line["counters"] as? [String: Any])?["checksumErrors"] as? Int == 1)
        #expect(metrics[#"hall_gateway_line_checksum_errors_total{bus="ff68"}"#] == 1)
        #expect(metrics[#"hall_gateway_line_garbage_bytes_total{bus="ff68"}"#] == Double(noise.count + damaged.count))
        // What the pads said, counted as a polled device's answers are: two presses at least (a pad repeats a press
        // until acknowledged), none from the pad nobody pressed. From a trial: both read 0 answered.
        let devices = try #require(report["devices"] as? [[String: Any]])
        func answered(_ id: String) -> Int? {
            (devices.first { $0["device"] as? String == id }?["counters"] as? [String: Any])?["transactions"] as? Int
        }
        #expect((answered("eval-w03") ?? 0) >= 2 && answered("eval-w04") == 0, "\(devices)")
        // The pad never heard from says so in words: `online` is absent for it (from a trial).
        #expect(devices.first { $0["device"] as? String == "eval-w04" }?["state"] as? String == "unknown", "\(devices)")
    }

    /// From a trial: a bus whose adapter was unplugged showed only its devices' reasons, and a trace of it printed
    /// "0 records" and exited 0.
    @Test func statusAndTraceSayALineIsDownAndWhy() async throws {
        var port = ""
        let hall = try await ConfiguredHall(buses: { folder in
            port = folder + "/ttyUSB-unplugged"
            return "  - {id: line-a, transport: modbus-rtu, port: \(port)}"
        }, devices: """
              - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "4"}
            """)
        let cli = hall.cli
        let reason = "cannot open \(port): no such device"
        let said = await eventually { hall.gateway.lineDown(bus: "line-a") == reason }
        let status = try await run(gatewaydPath, ["status"] + cli)
        let json = try await run(gatewaydPath, ["status", "--json"] + cli)
        let trace = try await run(gatewaydPath, ["trace", "line-a", "--seconds", "1"] + cli)
        await hall.stop()

        #expect(said, "\(hall.log.text)")
        #expect(status.standardOutput.contains("line line-a (\(port)) is down: \(reason)\n"), "\(status.standardOutput)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        #expect((report["lines"] as? [[String: Any]])?.first?["down"] as? String == reason, "\(report)")
        #expect(trace.status == 4, "docs/cli.md: 4 when the port cannot be opened")
        #expect(trace.standardError.contains("bus line-a is down: \(reason)"), "\(trace.standardError)")
    }

    /// A technician wiring a two-wire adapter sees doubled frames on a scope; status says the gateway knows.
    @Test func statusSaysWhenALineEchoesWhatTheGatewayWrites() async throws {
        let bus = try MockFF68Bus(echoing: true)
        defer { bus.stop() }
        let hall = try await ConfiguredHall(buses: { _ in "  - {id: ff68, transport: serial, port: \(bus.devicePath)}" }, devices: """
              - {id: eval-w03, profile: ff68-evaluator, bus: ff68, address: 3, window: "3"}
              - {id: caller-w03, profile: ff68-caller, bus: ff68, address: 33, window: "3"}
            """)
        let gateway = hall.gateway
        // A display and a beep, then two acknowledgements: each written frame comes back.
        bus.pressCallerKeys([0x0C], address: 33)
        let heard = await eventually { bus.acknowledged.count == 1 }
        try await gateway.send(.recall(ticket: "A013", window: "3"), to: "caller-w03")
        bus.pressEvaluatorKey(2, address: 3)
        let learnt = await eventually {
            let echoes = await gateway.lineCounters().first?.echoes
            return bus.acknowledged.count == 2 && bus.beeps(address: 33) == 1 && echoes == true
        }
        let cli = hall.cli
        let status = try await run(gatewaydPath, ["status"] + cli)
        let json = try await run(gatewaydPath, ["status", "--json"] + cli)
        await hall.stop()

        #expect(heard && learnt, "\(hall.log.text)")
        #expect(status.standardOutput.contains(
            "line ff68 (\(bus.devicePath)): its adapter sends back what the gateway writes (two-wire, no echo suppression); "
                + "the gateway drops its own frames\n"), "\(status.standardOutput)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        let line = try #require((report["lines"] as? [[String: Any]])?.first)
        #expect(line["echoes"] as? Bool == true)
    }

    /// The hall day's line is the daemon's, by its hours and its clock: the CLI's own clock (today's) and a
    /// configuration edited since the start would tell another day.
    @Test func statusSaysWhereTheDaemonsHallDayStands() async throws {
        let clock = ManualHallClock(now: try HallDayGatewayTests.shanghai("2026-10-05 10:00"))
        let hall = try await ConfiguredHall(buses: { folder in
            "  - {id: line-a, transport: modbus-rtu, port: \(folder)/ttyUSB-unplugged}"
        }, devices: """
              - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "4"}
            """, more: """
            hours:
              monday-friday: ["09:00-12:00", "13:30-17:00"]
            """, hallClock: clock)
        let cli = hall.cli
        let open = try await run(gatewaydPath, ["status"] + cli)
        let openJSON = try await run(gatewaydPath, ["status", "--json"] + cli)
        clock.advance(to: try HallDayGatewayTests.shanghai("2026-10-05 12:10"))
        try String(contentsOfFile: hall.configPath, encoding: .utf8).replacingOccurrences(of: "13:30-17:00", with: "14:00-17:00")
            .write(toFile: hall.configPath, atomically: true, encoding: .utf8)
        let onBreak = try await run(gatewaydPath, ["status"] + cli)
        await hall.stop()

        let lines = open.standardOutput.split(separator: "\n")
        #expect(lines.count > 1 && lines[1] == "hall day: open until 12:00", "\(open.standardOutput)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(openJSON.standardOutput.utf8)) as? [String: Any])
        #expect(report["hallDay"] as? String == "open until 12:00", "\(report)")
        #expect(onBreak.standardOutput.contains("\nhall day: on a break until 13:30 (boards on)\n"), "\(onBreak.standardOutput)")
    }

    /// From a night technician's question (what is board 5 showing?): `status` says what each board was last sent, in
    /// its own wording, live and from the outbox once the daemon has stopped; a text sent to it without its words.
    @Test func statusSaysWhatEachBoardWasLastSentLiveAndAfterTheStop() async throws {
        let boards = [3: MockModbusBoard(), 6: MockModbusBoard(), 7: MockModbusBoard(), 9: MockModbusBoard()]
        let server = try MockModbusServer.rtu(units: boards)
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        let hall = try await ConfiguredHall(buses: { _ in """
              - {id: line-a, transport: modbus-rtu, port: \(path), response-timeout-ms: 100, poll-interval-ms: 50}
            """ }, devices: """
              - {id: board-w05, profile: modbus-window-board, bus: line-a, address: 3, window: "5"}
              - {id: board-w06, profile: modbus-window-board, bus: line-a, address: 6, window: "6"}
              - {id: board-w07, profile: modbus-window-board, bus: line-a, address: 7, window: "7"}
              - {id: board-hall, profile: modbus-window-board, bus: line-a, address: 9, templates: {call: "{ticket} → {window}号窗口"}}
            """)
        try await hall.gateway.send(.call(ticket: "A007", window: "5"), to: "board-w05")
        try await hall.gateway.send(.call(ticket: "A007", window: "5"), to: "board-hall")
        try await hall.gateway.send(.showText("请王五到6号窗口"), to: "board-w06")
        let live = try await run(gatewaydPath, ["status"] + hall.cli)
        let json = try await run(gatewaydPath, ["status", "--json"] + hall.cli)
        // The outbox's record, every 2 s: the states of a run that sent the boards something.
        let outbox = hall.folder.path + "/state/outbox.sqlite"
        let reader = try Outbox.openForReading(path: outbox)
        #expect(await eventually {
            (try? await reader.deviceStates())?.filter { $0.state.lastShown != nil }.count == 3
        }, "\(hall.log.text)")
        await hall.stop()
        let recorded = try await run(gatewaydPath, ["status", "--outbox", outbox])

        for output in [live.standardOutput, recorded.standardOutput] {
            let lines = output.split(separator: "\n").map(String.init)
            let heading = try #require(lines.firstIndex(of: "what the boards were last sent:"), "\(output)")
            let rows = lines[(heading + 1)...].prefix { $0.hasPrefix("  board-") }
            func row(_ board: String) -> String? { rows.first { $0.hasPrefix("  \(board) ") } }
            #expect(rows.count == 3 && row("board-w07") == nil, "board-w07 was sent nothing: \(output)")
            let time = #", \d\d:\d\d:\d\d$"#
            #expect(row("board-w05")?.range(of: "  「请A007号到5号窗口」 +call" + time, options: .regularExpression) != nil, "\(output)")
            #expect(row("board-hall")?.range(of: "  「A007 → 5号窗口」 +call" + time, options: .regularExpression) != nil, "\(output)")
            let text = "  a text \\(its words are not kept\\) +show-text" + time
            #expect(row("board-w06")?.range(of: text, options: .regularExpression) != nil, "\(output)")
            #expect(!output.contains("王五"), "\(output)")
        }
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        let device = (report["devices"] as? [[String: Any]])?.first { $0["device"] as? String == "board-hall" }
        let shown = try #require(device?["lastShown"] as? [String: Any], "\(json.standardOutput)")
        #expect(shown["command"] as? String == "call" && shown["text"] as? String == "A007 → 5号窗口", "\(shown)")
        #expect(shown["ticket"] as? String == "A007" && shown["window"] as? String == "5", "\(shown)")
    }

    /// A gateway with its local API served, as `gatewayd run` would have them, for the CLI to ask.
    struct ConfiguredHall {
        let gateway: Gateway
        let folder: TemporaryDirectory
        let configPath: String
        /// The gateway's log, for the message of an expectation that failed.
        let log = CapturedLog()
        /// `gatewayd status`'s options to reach it.
        let cli: [String]
        private let api: Task<Void, any Error>
        private let stopSignal = StopSignal()
        private let running: Task<Void, Never>

        /// `buses` and `devices` are YAML list items; `buses` is given the hall's folder. `more`: top-level keys.
        init(buses: (String) -> String, devices: String, more: String = "", hallClock: any HallClock = SystemHallClock())
            async throws
        {
            folder = try TemporaryDirectory()
            let yaml = """
                hall: {id: test-hall, timezone: Asia/Shanghai}
                \(more)
                state-directory: \(folder.path)/state
                profiles: \(profilesDirectory)
                buses:
                \(buses(folder.path))
                devices:
                \(devices)
                sinks:
                  - {type: sqlite, path: \(folder.path)/events.sqlite}
                """
            configPath = folder.file("hall.yaml")
            try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
            let (config, profiles) = try ConfigLoader.parse(yaml, file: configPath, relativeTo: folder.path)
            let gateway = try Gateway(config: config, profiles: profiles, logger: log.logger, hallClock: hallClock)
            self.gateway = gateway
            running = Task { [stopSignal] in await gateway.run(until: stopSignal) }
            let token = "ff68-hall-test-token-0123456789ab"
            try token.write(toFile: folder.path + "/state/api-token", atomically: true, encoding: .utf8)
            let (api, port) = try await serveLocalAPI(gateway, token: token)
            self.api = api
            cli = ["--config", configPath, "--api", "http://127.0.0.1:\(port)"]
        }

        /// Before any `#require` can end the test: a gateway left running would reopen this pseudo-terminal's path,
        /// which the next test's mock may be given.
        func stop() async {
            api.cancel()
            stopSignal.stop()
            await running.value
        }
    }
}
