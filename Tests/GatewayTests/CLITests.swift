import AsyncHTTPClient
import DeviceGateway
import Foundation
import MockDevices
import NIOCore
import NIOHTTP1
import Testing

/// The technician's CLI run as a technician runs it: the built `gatewayd` binary, against a running `gatewayd run`
/// over mock devices on pseudo-terminals, and with that daemon stopped.
@Suite struct CLITests {
    /// A hall of one Modbus pad and one ESC/POS printer, its state in `folder`.
    static func hallConfig(_ folder: TemporaryDirectory, padLine: String, printerLine: String) throws -> String {
        let path = folder.path + "/hall.yaml"
        try """
        hall: {id: cli-hall}
        state-directory: \(folder.path)/state
        profiles: \(profilesDirectory)
        buses:
          - {id: line-a, transport: modbus-rtu, port: \(padLine), response-timeout-ms: 200, poll-interval-ms: 100}
          - {id: kiosk-1, transport: serial, port: \(printerLine), poll-interval-ms: 100, response-timeout-ms: 200}
        devices:
          - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "4"}
          - {id: printer-1, profile: escpos-80mm, bus: kiosk-1, address: 1}
        sinks:
          - {type: sqlite, path: \(folder.path)/events.sqlite}
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A hall `cli-hall` whose state is in `folder`, with `body`'s buses, devices and the rest; returns its path.
    static func hallFile(_ folder: TemporaryDirectory, _ body: String) throws -> String {
        let path = folder.path + "/hall.yaml"
        try """
        hall: {id: cli-hall}
        state-directory: \(folder.path)/state
        profiles: \(profilesDirectory)
        \(body)
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A daemon of a hall with one pad on a TCP port nothing listens on (`more`: further top-level keys), once its API
    /// listens; the caller interrupts it.
    static func oneSilentPadDaemon(_ folder: TemporaryDirectory, _ more: String = "") async throws
        -> (daemon: ChildProcess, config: String, api: String)
    {
        let config = try hallFile(folder, """
            \(more)
            buses:
              - {id: lan-1, transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(try unusedMQTTPort())}
            devices:
              - {id: eval-w01, profile: modbus-evaluator-3key, bus: lan-1, address: 1, window: "1"}
            """)
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        let listening = await eventually { apiURL(daemon) != nil }
        if !listening { daemon.interrupt() }
        try #require(listening, "the daemon's API listens: \(daemon.output)")
        return (daemon, config, try #require(apiURL(daemon)))
    }

    /// The port the daemon's API bound, from its log line `api: listening on http://127.0.0.1:PORT`.
    static func apiURL(_ daemon: ChildProcess) -> String? {
        guard
            let range = daemon.output.range(
                of: #"api: listening on (http://[0-9.]+:[0-9]+)"#, options: .regularExpression)
        else { return nil }
        return String(daemon.output[range].split(separator: " ").last ?? "")
    }

    /// From a soak: during a central store's outage `status` said "0 offline" and nothing of it (only `check` and
    /// `outbox status` did). A sink whose last delivery failed is said under the table, with what waits for it.
    @Test func statusSaysASinkThatIsNotDelivering() async throws {
        let pad = MockModbusEvaluator(staffId: "0104")
        let server = try MockModbusServer.rtu(units: [4: pad])
        defer { server.stop() }
        let folder = try TemporaryDirectory()
        let closed = try unusedMQTTPort()
        let config = try Self.hallFile(folder, """
            buses:
              - {id: line-a, transport: modbus-rtu, port: \(try #require(server.endpoint.devicePath)), poll-interval-ms: 100}
            devices:
              - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "4"}
            sinks:
              - {type: sqlite, path: \(folder.path)/events.sqlite}
              - {type: http, name: central, url: "http://127.0.0.1:\(closed)/events"}
            """)
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        #expect(await eventually { Self.apiURL(daemon) != nil }, "the daemon's API listens: \(daemon.output)")
        let cli = ["--config", config, "--api", try #require(Self.apiURL(daemon))]
        pad.press(.satisfied)
        #expect(await eventually {
            (try? await run(gatewaydPath, ["status"] + cli))?.standardOutput.contains("sink central is not delivering") == true
        })
        let status = try await run(gatewaydPath, ["status"] + cli).standardOutput
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("sink central is not delivering: ") })
        #expect(line.contains(" waiting in the outbox, the oldest from ") && line.contains("connection refused"), "\(status)")
        #expect(!status.contains("sink local"), "the local store delivers: \(status)")
        // The exit status stays the devices'; `check` is the one that fails on a sink.
        let check = try await run(gatewaydPath, ["check"] + cli)
        #expect(check.status == 1 && check.standardOutput.contains(/sink central: \d+ events waiting; last error: .*connection refused/),
                "\(check.standardOutput)")
    }

    @Test func statusCheckEventsAndTraceGoThroughTheRunningGatewayAndSaySoWhenItStops() async throws {
        let pad = MockModbusEvaluator(staffId: "0104")
        let server = try MockModbusServer.rtu(units: [4: pad])
        defer { server.stop() }
        let printer = try MockEscPosPrinter()
        defer { printer.stop() }
        let folder = try TemporaryDirectory()
        let config = try Self.hallConfig(
            folder, padLine: try #require(server.endpoint.devicePath),
            printerLine: printer.devicePath)
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        #expect(await eventually { Self.apiURL(daemon) != nil }, "the daemon's API listens: \(daemon.output)")
        let api = try #require(Self.apiURL(daemon))
        let cli = ["--config", config, "--api", api]

        // status: live from the daemon, both devices online.
        #expect(
            await eventually {
                let status = try? await run(gatewaydPath, ["status"] + cli)
                return status?.status == 0 && status?.standardOutput.contains("printer-1") == true
                    && status?.standardOutput.components(separatedBy: " online ").count == 3
            })
        let status = try await run(gatewaydPath, ["status"] + cli)
        #expect(status.standardOutput.hasPrefix("devices live from the gateway at \(api)"), "\(status.standardOutput)")
        let padRow = try #require(status.standardOutput.split(separator: "\n").first { $0.hasPrefix("eval-w04") })
        #expect(padRow.contains("line-a (") && padRow.contains("online"))
        #expect(!status.standardOutput.contains("\u{1B}["), "no colour when piped")
        // Said above the table when no NTP keeps this machine's clock (the daemon runs on the same one).
        #expect(status.standardOutput.contains("the gateway's clock is not synchronised (no NTP)")
                == !SystemHallClock().isSynchronised, "\(status.standardOutput)")
        // --watch refreshes until interrupted; --json makes each refresh one line.
        let watch = try ChildProcess(gatewaydPath, ["status", "--watch", "--interval", "0.3", "--json"] + cli)
        #expect(await eventually { watch.output.split(separator: "\n").count >= 3 }, "\(watch.output)")
        watch.interrupt()
        let refreshes = watch.output.split(separator: "\n")
        #expect(refreshes.allSatisfy { $0.hasPrefix("{") && $0.contains(#""source":"daemon""#) })

        // check: all well, then the printer runs out of paper and the check fails with exit 1, saying which.
        let passed = try await run(gatewaydPath, ["check"] + cli)
        #expect(passed.status == 0, "\(passed.standardOutput)\(passed.standardError)")
        // No row ends in the padding of an empty last cell (from a docs trial).
        for output in [status.standardOutput, passed.standardOutput] {
            #expect(!output.split(separator: "\n").contains { $0.hasSuffix(" ") }, "\(output)")
        }
        #expect(passed.standardOutput.contains("PASSED"))
        #expect(passed.standardOutput.contains("reported to the sinks as event device-check-"), "the first check since the start")
        // Following from the first event: what was committed comes first, then what happens while it follows.
        let follow = try ChildProcess(gatewaydPath, ["events", "--follow", "--json", "--after", "0"] + cli)
        defer { follow.interrupt() }
        #expect(await eventually { follow.output.contains(#""type":"hall.device.online""#) }, "\(follow.output)")
        // Following with --since starts with what was committed since then, as events without --follow does.
        let recent = try ChildProcess(gatewaydPath, ["events", "--follow", "--json", "--since", "1h"] + cli)
        defer { recent.interrupt() }
        #expect(await eventually { recent.output.contains(#""type":"hall.device.online""#) }, "\(recent.output)")
        recent.interrupt()
        // In words, the lines' zone is said once on stderr, following too (from a docs trial: only without --follow).
        let inWords = try ChildProcess(gatewaydPath, ["events", "--follow", "--after", "0"] + cli)
        defer { inWords.interrupt() }
        #expect(await eventually { inWords.output.contains("hall.device.online") }, "\(inWords.output)")
        inWords.interrupt()
        let followed = try await inWords.wait()
        #expect(followed.standardError.components(separatedBy: "times are hall time, ").count == 2,
                "\(followed.standardError)")
        func paperOutEvents() -> [Substring] {
            follow.output.split(separator: "\n").filter {
                $0.contains(#""type":"hall.printer."#) && $0.contains("paper-out")
            }
        }
        #expect(paperOutEvents().isEmpty)
        // Near its end: the check passes and says so (a duty officer's trial: not a word, and the roll ran out by ten).
        printer.set(.init(paperNearEnd: true))
        #expect(await eventually {
            (try? await run(gatewaydPath, ["check"] + cli))?.standardOutput.contains("printer printer-1: paper near its end") == true
        })
        #expect(try await run(gatewaydPath, ["check"] + cli).status == 0)
        #expect(try await run(gatewaydPath, ["status"] + cli).status == 0, "it still prints")
        printer.set(.init(paperOut: true))
        #expect(await eventually { (try? await run(gatewaydPath, ["check"] + cli))?.status == 1 })
        // status too: the printer answers, and cannot print (from a trial: its row said only "online").
        let paperOutStatus = try await run(gatewaydPath, ["status"] + cli)
        let printerStatusRow = try #require(paperOutStatus.standardOutput.split(separator: "\n").first { $0.hasPrefix("printer-1") })
        #expect(printerStatusRow.contains(" online, paper-out "), "\(paperOutStatus.standardOutput)")
        #expect(paperOutStatus.status == 1, "a printer that cannot print is no 'all well' (a duty officer's trial: exit 0)")
        // In the journal at warning: `journalctl -p warning` shows it (the trial: info, hidden).
        #expect(await eventually { daemon.output.contains("warning gatewayd: hall.printer.status_changed") }, "\(daemon.output)")
        let failed = try await run(gatewaydPath, ["check"] + cli)
        #expect(failed.status == 1)
        let printerRow = try #require(
            failed.standardOutput.split(separator: "\n").first { $0.contains("printer-1 (printer)") })
        #expect(printerRow.hasPrefix("FAIL") && printerRow.contains("paper"), "\(failed.standardOutput)")
        #expect(failed.standardOutput.contains("FAILED: 1 problem"))
        #expect(failed.standardOutput.contains("reported already: an earlier check since the gateway started gave this verdict"),
                "the check that first failed told it: \(failed.standardOutput)")
        let report = try #require(
            try JSONSerialization.jsonObject(
                with: Data(try await run(gatewaydPath, ["check", "--json"] + cli).standardOutput.utf8))
                as? [String: Any])
        #expect(report["passed"] as? Bool == false)
        #expect((report["problems"] as? [String])?.contains { $0.hasPrefix("printer printer-1:") } == true)

        // events --follow: the printer's change arrives as a CloudEvent line while it happens.
        #expect(await eventually { !paperOutEvents().isEmpty }, "\(follow.output)")
        let line = try #require(paperOutEvents().first)
        #expect(
            (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["specversion"] as? String
                == "1.0")

        // trace: the pad's polls and answers as the gateway writes and reads them, replayable by decode.
        let capture = folder.path + "/line-a.trace"
        // Under the umask most shells have: the capture holds what printers printed, not for every user of the box.
        let trace = try await run("/bin/sh", ["-c", #"umask 022; exec "$0" "$@""#, gatewaydPath,
                                              "trace", "line-a", "--seconds", "1.5", "--save", capture] + cli)
        #expect(trace.status == 0, "\(trace.standardError)")
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: capture)[.posixPermissions] as? Int)
        #expect(mode & 0o007 == 0, "capture mode \(String(mode, radix: 8))")
        #expect(trace.standardOutput.contains("→ 04 03") && trace.standardOutput.contains("address 4 ← read"))
        #expect(trace.standardOutput.contains("← 04 03") && trace.standardOutput.contains("address 4 →"))
        #expect(trace.standardOutput.contains(" ms "), "gaps between records")
        // A capture that cannot be written is said in one line, not as the usage (from a docs trial).
        let unwritable = try await run(gatewaydPath, ["trace", "line-a", "--seconds", "1", "--save",
                                                      folder.path + "/no-such-folder/line-a.trace"] + cli)
        #expect(unwritable.status == 4, "\(unwritable.standardError)")
        #expect(unwritable.standardError == "cannot write \(folder.path)/no-such-folder/line-a.trace: no such file or directory\n",
                "\(unwritable.standardError)")
        // A bus the hall does not have is said before anything is asked of the daemon.
        let nosuch = try await run(gatewaydPath, ["trace", "nosuch", "--seconds", "1"] + cli)
        #expect(nosuch.status == 2 && nosuch.standardError.hasPrefix("no bus 'nosuch' in \(config) (buses: line-a, "),
                "\(nosuch.standardError)")
        let replay = try await run(gatewaydPath, ["decode", "--file", capture])
        #expect(replay.status == 0, "\(replay.standardOutput)")
        #expect(replay.standardOutput.contains("records from line-a, 0 bytes of garbage"))

        // The daemon's log: one stamp per line, in the hall's zone with its offset.
        let logLines = daemon.output.split(separator: "\n")
        #expect(logLines.count > 3)
        for logLine in logLines {
            #expect(
                logLine.range(
                    of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+08:00 [a-z]+ "#, options: .regularExpression) != nil,
                "\(logLine)")
            #expect(
                logLine.components(separatedBy: "2026-").count + logLine.components(separatedBy: "2027-").count <= 3,
                "one date only: \(logLine)")
        }

        // The daemon stops: status says so and reads the outbox; check cannot run (exit 3).
        daemon.interrupt()
        _ = try await daemon.wait()
        let offline = try await run(gatewaydPath, ["status"] + cli)
        #expect(
            offline.standardOutput.hasPrefix("the gateway is not running (nothing listens on "),
            "\(offline.standardOutput)\(offline.standardError)")
        #expect(offline.standardOutput.contains("eval-w04"))
        let noCheck = try await run(gatewaydPath, ["check"] + cli)
        #expect(noCheck.status == 3)
        #expect(noCheck.standardError.contains("not running"))
    }

    @Test func aDaemonStoppedWhileItsCommandBrokerIsUnreachableExitsZeroAndNeverShowsItsToken() async throws {
        let folder = try TemporaryDirectory()
        let closedPort = try unusedMQTTPort()
        let config = try Self.hallFile(folder, """
            buses:
              - {id: lan-1, transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(closedPort)}
            devices:
              - {id: eval-w01, profile: modbus-evaluator-3key, bus: lan-1, address: 1, window: "1"}
            commands: {mqtt: {host: 127.0.0.1, port: \(closedPort), tls: true}}
            """)
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        #expect(await eventually { Self.apiURL(daemon) != nil }, "\(daemon.output)")
        let token = try String(contentsOfFile: folder.path + "/state/api-token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        kill(daemon.process.processIdentifier, SIGTERM)
        let stopped = try await daemon.wait(timeout: .seconds(15))
        #expect(stopped.status == 0 && !stopped.terminatedBySignal, "\(stopped.standardError)")
        #expect(!(stopped.standardOutput + stopped.standardError).contains(token))
    }

    @Test func theCLIDoesNotFollowALinkPutInPlaceOfTheGatewaysOwnToken() async throws {
        let folder = try TemporaryDirectory()
        let (daemon, config, api) = try await Self.oneSilentPadDaemon(folder)
        defer { daemon.interrupt() }
        let cli = ["status", "--config", config, "--api", api]
        let answered = try await run(gatewaydPath, cli)
        #expect(answered.status != 3 && answered.standardOutput.contains("eval-w01"), "\(answered.standardError)")
        // A link to a file holding the very token: a CLI that followed it would be answered.
        let own = folder.path + "/state/api-token"
        let elsewhere = folder.file("token-elsewhere")
        try FileManager.default.moveItem(atPath: own, toPath: elsewhere)
        try FileManager.default.createSymbolicLink(atPath: own, withDestinationPath: elsewhere)
        let refused = try await run(gatewaydPath, cli)
        #expect(refused.status == 3)
        #expect(refused.standardError.contains("401 unauthorized: no token: \(own) is a symbolic link"),
                "\(refused.standardError)")
    }

    @Test func aTokenReplacedInTheTokenFileIsTakenWithoutARestartAndTheOldOneNoLonger() async throws {
        // From an operator's trial: after a rotation the daemon kept the old token until its restart, and every CLI
        // command, reading the new one, was refused.
        let folder = try TemporaryDirectory()
        let tokenFile = folder.file("api.token")
        try "first-token-0123456789abcdef\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let (daemon, config, api) = try await Self.oneSilentPadDaemon(folder, "api: {token-file: \(tokenFile)}")
        defer { daemon.interrupt() }
        let before = try await run(gatewaydPath, ["status", "--config", config, "--api", api])
        #expect(before.status != 3, "\(before.standardError)")
        // Replaced as an editor or `install` does: a new file in its place.
        try "second-token-0123456789abcdef\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        #expect(await eventually {
            (try? await run(gatewaydPath, ["status", "--config", config, "--api", api]))?.status != 3
        }, "the CLI, with the new token, is answered: \(daemon.output)")
        #expect(daemon.output.contains("api: the token in \(tokenFile) was replaced"), "\(daemon.output)")
        var request = HTTPClientRequest(url: api + "/v1/devices")
        request.headers.add(name: "Authorization", value: "Bearer first-token-0123456789abcdef")
        let old = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        #expect(old.status == .unauthorized, "the token before no longer")
    }

    @Test func theDaemonLogsForJournaldUnderSystemd() async throws {
        let folder = try TemporaryDirectory()
        let server = try MockModbusServer.rtu(units: [4: MockModbusEvaluator(staffId: "0104")])
        defer { server.stop() }
        let printer = try MockEscPosPrinter()
        defer { printer.stop() }
        let config = try Self.hallConfig(
            folder, padLine: try #require(server.endpoint.devicePath),
            printerLine: printer.devicePath)
        // systemd sets JOURNAL_STREAM to the device and inode of the stream it gave as stdout.
        let daemon = try ChildProcess(
            "/bin/sh",
            [
                "-c",
                """
                JOURNAL_STREAM=$(stat -L -c %d:%i /proc/$$/fd/1) exec "$0" run --config "$1" --api-port 0
                """, gatewaydPath, config,
            ])
        defer { daemon.interrupt() }
        #expect(await eventually { daemon.output.contains("api: listening") })
        let lines = daemon.output.split(separator: "\n")
        for line in lines {
            #expect(line.range(of: #"^<[2-7]>[a-z]+ gatewayd: "#, options: .regularExpression) != nil, "\(line)")
        }
        #expect(lines.contains { $0.hasPrefix("<6>info gatewayd: api: listening") })
    }

    @Test func theDemoHallStampsEveryLogLineInTheHallsZoneTheFirstToo() async throws {
        let folder = try TemporaryDirectory()
        // The machine's clock on UTC, the demo hall in Asia/Shanghai.
        let demo = try ChildProcess(
            gatewaydPath, ["run", "--api-port", "0"], environment: ["TZ": "UTC"], workingDirectory: folder.path)
        defer { demo.interrupt() }
        #expect(await eventually { demo.output.contains("api: listening") }, "\(demo.output)")
        // Whole lines only: the last may be half written.
        let lines = demo.output.components(separatedBy: "\n").dropLast()
        #expect(lines.contains { $0.contains(" gatewayd: demo hall: ") }, "\(lines)")
        for line in lines {
            #expect(
                line.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+08:00 "#, options: .regularExpression) != nil,
                "\(line)")
        }
        // A second demo beside it is refused in the same zone (from a docs trial: its one line was in UTC).
        let second = try await run(gatewaydPath, ["run", "--api-port", "0"], environment: ["TZ": "UTC"],
                                   workingDirectory: folder.path)
        #expect(second.status == 1, "\(second.standardOutput)\(second.standardError)")
        let refusal = try #require(second.standardOutput.split(separator: "\n").first { $0.contains("cannot start: another gateway") },
                                   "\(second.standardOutput)")
        #expect(refusal.contains("+08:00 critical"), "\(refusal)")
    }

    @Test func theCLIBesideARunningDemoAsksItsPortAndGoesThroughIt() async throws {
        // From a trial: with --api-port the demo's configuration for the CLI kept 8420, so `status` beside it said
        // "not running" and handed the demo's token to whatever listened on 8420.
        let folder = try TemporaryDirectory()
        let demo = try ChildProcess(gatewaydPath, ["run", "--api-port", "0"], workingDirectory: folder.path)
        defer { demo.interrupt() }
        #expect(await eventually { Self.apiURL(demo) != nil }, "\(demo.output)")
        let api = try #require(Self.apiURL(demo))
        #expect(!api.hasSuffix(":8420"))
        let status = try await run(gatewaydPath, ["status"], workingDirectory: folder.path)
        #expect(status.standardOutput.hasPrefix("devices live from the gateway at \(api)"),
                "\(status.standardOutput)\(status.standardError)")
        // From a docs trial: with the demo running, `--direct` said "none answers … start it", exit 3.
        for command in [["probe", "eval-w01"], ["trace", "rs485-1", "--seconds", "1"], ["printer", "status", "printer-1"]] {
            let result = try await run(gatewaydPath, command + ["--direct"], workingDirectory: folder.path)
            #expect(result.status == 4, "gatewayd \(command.joined(separator: " ")) --direct: \(result.standardError)")
            #expect(result.standardError.hasPrefix("--direct cannot be used on the demo hall: its ports are its own "
                                                   + "pseudo-terminals, held by its running gateway (pid ")
                    && result.standardError.contains("drop --direct and the command goes through it (\(api))"),
                    "\(result.standardError)")
        }
    }

    @Test func theDemoHallDeliversToTheCentralStoreOfASinksFile() async throws {
        // From a data engineer's trial: trying the central store on the demo took writing a whole hall.
        let folder = try TemporaryDirectory()
        let central = try CentralDatabase(folder: folder)
        let table = CentralDatabase.uniqueTable()
        let hall = folder.file("hall")
        try FileManager.default.createDirectory(atPath: hall, withIntermediateDirectories: true)
        // Its password file named from the sinks file's folder, not from where the demo runs.
        let passwordFile = (central.passwordFile as NSString).lastPathComponent
        try """
            sinks:
              - {type: postgres, name: central, host: \(central.host), port: \(central.port), database: \(central.database),
                 user: \(central.user), password-file: \(passwordFile), table: \(table)}
            """.write(toFile: folder.file("sinks.yaml"), atomically: true, encoding: .utf8)

        let demo = try ChildProcess(gatewaydPath, ["run", "--sinks", folder.file("sinks.yaml"), "--api-port", "0"],
                                    workingDirectory: hall)
        defer { demo.interrupt() }
        #expect(try await eventually(timeout: .seconds(60)) {
            // The table is made at the first delivery.
            guard try await central.value("SELECT to_regclass('\(table)') IS NOT NULL") == "t" else { return false }
            return try await central.value("SELECT count(*) FROM \(table) WHERE type = 'hall.rating.submitted'") != "0"
        }, "\(demo.output)")
        #expect(try await central.value("SELECT DISTINCT hall FROM \(table)") == "demo-hall")
        // The CLI beside it sees the demo's sinks, and has no local store to read.
        let status = try await run(gatewaydPath, ["outbox", "status"], workingDirectory: hall)
        let sinkNames = status.standardOutput.split(separator: "\n").dropFirst(2).map { $0.prefix { $0 != " " } }
        #expect(sinkNames == ["central"], "\(status.standardOutput)\(status.standardError)")
        let events = try await run(gatewaydPath, ["events"], workingDirectory: hall)
        #expect(events.status == 2)
        #expect(events.standardError.contains("no local event store (no sqlite sink"), "\(events.standardError)")

        // A broken file is said at its line, and nothing starts.
        try "sinks:\n  - {type: postgres, host: db.example}\n".write(
            toFile: folder.file("broken.yaml"), atomically: true, encoding: .utf8)
        let broken = try await run(gatewaydPath, ["run", "--sinks", folder.file("broken.yaml")], workingDirectory: hall)
        #expect(broken.status == 2)
        #expect(broken.standardError.contains("broken.yaml:2:5: sinks[0].database: missing (required)"),
                "\(broken.standardError)")
        let withConfig = try await run(gatewaydPath, ["run", "--config", "hall.yaml", "--sinks", "sinks.yaml"])
        #expect(withConfig.status == 2)
        #expect(withConfig.standardError.contains("--sinks is for the demo hall"), "\(withConfig.standardError)")
    }

    /// 评价统计 for the duty officer and the technician: the hall's day (Asia/Shanghai), not the UTC day; each rating
    /// once; 满意率 as docs/central-store.md counts it; the pad that gave none named.
    @Test func ratingsCountTheHallsDayPerWindowStaffAndPadAndNameThePadThatGaveNone() async throws {
        let folder = try TemporaryDirectory()
        let config = folder.path + "/hall.yaml"
        try """
            hall: {id: cli-hall, timezone: Asia/Shanghai}
            state-directory: \(folder.path)/state
            profiles: \(profilesDirectory)
            buses:
              - {id: line-a, transport: modbus-rtu, port: \(folder.path)/ttyUSB-unplugged}
            devices:
              - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 5, window: "5"}
              - {id: eval-w05b, profile: modbus-evaluator-3key, bus: line-a, address: 6, window: "5"}
              - {id: eval-w07, profile: modbus-evaluator-3key, bus: line-a, address: 7, window: "7"}
              - {id: eval-w12, profile: modbus-evaluator-3key, bus: line-a, address: 12, window: "12"}
            terminals:
              - {id: tablet-w09, window: "9", scale: three-key}
            sinks:
              - {type: sqlite, path: \(folder.path)/events.sqlite}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        func rating(_ number: Int, pad: String, window: String, staff: String?, level: Int, at time: String) throws -> CloudEvent {
            CloudEvent(id: "rating-\(number)", source: EventSource.device(hall: "cli-hall", device: pad),
                       type: HallEventType.ratingSubmitted, time: try #require(EventTime.parse(time)),
                       subject: EventSource.windowSubject(window),
                       data: .rating(RatingSubmitted(window: window, staffId: staff, level: level, levelLabel: "", key: level,
                                                     keyLabel: "", scale: "three-key", deviceCounter: Int64(number))))
        }
        // 4 December 2026 in the hall is 3 December 16:00 UTC up to 4 December 16:00 UTC.
        let events = [
            try rating(1, pad: "eval-w05", window: "5", staff: "0105", level: 5, at: "2026-12-03T15:59:59.999Z"),  // the 3rd
            try rating(2, pad: "eval-w05", window: "5", staff: "0105", level: 5, at: "2026-12-03T16:00:00.000Z"),
            try rating(3, pad: "eval-w05", window: "5", staff: "0105", level: 4, at: "2026-12-04T01:30:00.000Z"),
            try rating(4, pad: "eval-w05", window: "5", staff: "0231", level: 3, at: "2026-12-04T06:00:00.000Z"),
            try rating(5, pad: "eval-w07", window: "7", staff: nil, level: 4, at: "2026-12-04T07:00:00.000Z"),
            try rating(6, pad: "eval-w07", window: "7", staff: nil, level: 2, at: "2026-12-04T15:59:59.999Z"),
            try rating(7, pad: "eval-w07", window: "7", staff: nil, level: 5, at: "2026-12-04T16:00:00.000Z"),   // the 5th
        ]
        let outbox = try Outbox.open(path: folder.path + "/outbox.sqlite", logger: CapturedLog().logger)
        try await outbox.commit(events)
        let store = try SQLiteEventStore(name: "local", path: folder.path + "/events.sqlite")
        let committed = try await outbox.entries(after: 0, limit: 100)
        try await store.deliver(committed)
        try await store.deliver(committed)  // delivered twice (a retry): stored, and counted, once

        let byWindow = try await run(gatewaydPath, ["ratings", "--day", "2026-12-04", "--config", config])
        #expect(byWindow.status == 0, "\(byWindow.standardError)")
        let lines = byWindow.standardOutput.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
        #expect(lines == [
            "ratings on 2026-12-04, hall time Asia/Shanghai, from \(folder.path)/events.sqlite",
            "window ratings 非常满意 满意 基本满意 不满意 非常不满意 满意率",
            "5 3 1 1 1 0 0 66.7 %",
            "7 2 0 1 0 1 0 50.0 %",
            "all 5 1 2 1 1 0 60.0 %",
            "满意率: 非常满意 and 满意 (levels 5 and 4) among all ratings",
            "no ratings from: eval-w05b (window 5), eval-w12 (window 12), tablet-w09 (window 9)",
        ], "the second pad of window 5 named, though its window was rated: \(byWindow.standardOutput)")

        let byStaff = try await run(gatewaydPath, ["ratings", "--day", "2026-12-04", "--by", "staff", "--json", "--config", config])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(byStaff.standardOutput.utf8)) as? [String: Any])
        let rows = try #require(report["rows"] as? [[String: Any]])
        #expect(rows.map { $0["key"] as? String } == ["(none shown)", "0105", "0231"], "\(rows)")
        #expect(rows.map { $0["ratings"] as? Int } == [2, 2, 1])
        #expect(rows.map { $0["satisfactionPercent"] as? Double } == [50.0, 100.0, 0.0])
        #expect((report["padsWithoutRatings"] as? [[String: Any]])?.compactMap { $0["pad"] as? String } == ["eval-w05b", "eval-w12", "tablet-w09"])

        let month = try await run(gatewaydPath, ["ratings", "--month", "2026-12", "--by", "pad", "--json", "--config", config])
        let monthly = try #require(try JSONSerialization.jsonObject(with: Data(month.standardOutput.utf8)) as? [String: Any])
        #expect((monthly["all"] as? [String: Any])?["ratings"] as? Int == 7, "\(month.standardOutput)")
        #expect((monthly["padsWithoutRatings"] as? [[String: Any]])?.compactMap { $0["pad"] as? String } == ["eval-w05b", "eval-w12", "tablet-w09"])

        for (typo, said) in [("2026-02-30", "there is no such day"), ("2026-12-4", "expected YYYY-MM-DD"),
                             ("12026-12-04", "expected YYYY-MM-DD")] {
            let refused = try await run(gatewaydPath, ["ratings", "--day", typo, "--config", config])
            #expect(refused.status == 2 && refused.standardError.contains("--day '\(typo)': \(said)"), "\(refused.standardError)")
        }
    }

    @Test func decodeExplainsEveryRejectedRunAndFailsOnGarbage() async throws {
        // A read request, the same with its CRC zeroed, and three bytes of a third cut off by the end.
        let rtu = try await run(
            gatewaydPath,
            [
                "decode", "-s", "modbus-rtu-requests",
                "01 03 00 00 00 02 C4 0B 01 03 00 00 00 02 00 00 01 03 00",
            ])
        #expect(rtu.status == 1)
        let lines = rtu.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasSuffix("address 1 ← read 2 holding registers from 0") == true, "\(lines)")
        #expect(lines.dropFirst().first?.contains("REJECTED checksum: expected C4 0B, found 00 00") == true, "\(lines)")
        #expect(lines.dropFirst().first?.contains("the capture ends inside a frame from address 1") == true)
        #expect(lines.last == "1 frame, 1 rejected run: 11 of 19 bytes not part of any frame")

        // FF 68: a wrong checksum, and a frame without its end byte before the next one.
        let ff68 = try await run(
            gatewaydPath,
            [
                "decode", "-s", "ff68", "--json",
                "FF 68 03 03 68 03 11 02 17 16 FF 68 03 03 68 03 11 02 16 99 FF 68 03 03 68 03 11 02 16 16",
            ])
        #expect(ff68.status == 1)
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(ff68.standardOutput.utf8)) as? [String: Any])
        let items = try #require(report["items"] as? [[String: Any]])
        let reasons = items.compactMap { $0["rejected"] as? String }
        #expect(reasons.contains { $0.contains("checksum: expected 16, found 17") }, "\(reasons)")
        #expect(reasons.contains { $0.contains("no end byte: 16 expected after the checksum, found 99") }, "\(reasons)")
        #expect(items.last?["frame"] as? String == "address 3, function 11, evaluator key 2")
        #expect(report["garbageBytes"] as? Int == 20)
        // A caller's 呼叫 in the profiles' words, and the host's acknowledgement of pad 7's key 3 (from the trial: it
        // read as "caller keys 03 (unassigned(keys: [3]))").
        let keys = try await run(gatewaydPath, ["decode", "-s", "ff68", "FF 68 03 03 68 1F 01 0C 2C 16 FF 68 03 03 68 07 01 03 0B 16"])
        #expect(keys.status == 0, "\(keys.standardOutput)\(keys.standardError)")
        #expect(keys.standardOutput.contains("address 31, function 01, caller keys 0C (call-next)"), "\(keys.standardOutput)")
        #expect(keys.standardOutput.contains(
            "address 7, function 01, caller keys 03 (no meaning in the protocol), or from the host: evaluator key 3 acknowledged"),
                "\(keys.standardOutput)")

        // Colour on a terminal (script(1) gives the command one), none with NO_COLOR set.
        let command = "\(gatewaydPath) decode -s ff68 'FF 68 03 03 68 03 11 02 16 17'"
        // (An empty NO_COLOR counts as unset, as no-color.org has it; TERM=dumb would turn colour off too.)
        let terminal = try await run("/usr/bin/script", ["-qec", command, "/dev/null"],
                                     environment: ["TERM": "xterm", "NO_COLOR": ""])
        #expect(terminal.standardOutput.contains("\u{1B}[31mREJECTED\u{1B}[0m"), "\(terminal.standardOutput)")
        let plain = try await run("/usr/bin/script", ["-qec", command, "/dev/null"], environment: ["TERM": "xterm", "NO_COLOR": "1"])
        #expect(plain.standardOutput.contains("REJECTED") && !plain.standardOutput.contains("\u{1B}["))

        // A shop's python-escpos ticket with code pages: every byte known, the euro and Greek read back.
        let fixture = repositoryRoot + "/Tests/ProtocolTests/Fixtures/escpos/ticket-code-pages.bin"
        let ticket = try await run(gatewaydPath, ["decode", "-s", "escpos-commands", "--file", fixture])
        #expect(ticket.status == 0, "\(ticket.standardOutput)")
        #expect(ticket.standardOutput.contains("ESC t 15: code page ISO_8859-7"))
        #expect(ticket.standardOutput.contains(#"text "€""#) && ticket.standardOutput.contains(#"text "Ελληνικά""#))
        #expect(ticket.standardOutput.contains(#"GS k: barcode EAN13 "4006381333931""#))
        #expect(ticket.standardOutput.contains(": 0 of "))
    }

    @Test func traceListensOnTheLineItselfWhenTheGatewayIsStopped() async throws {
        let bus = try MockFF68Bus()
        defer { bus.stop() }
        let folder = try TemporaryDirectory()
        let config = try Self.hallFile(folder, """
            buses:
              - {id: ff68, transport: serial, port: \(bus.devicePath)}
            devices:
              - {id: eval-w03, profile: ff68-evaluator, bus: ff68, address: 3, window: "3"}
            """)
        // No daemon: nothing listens on the (free) port given, so trace opens the line itself.
        let trace = try ChildProcess(
            gatewaydPath,
            [
                "trace", "ff68", "--config", config, "--api", "http://127.0.0.1:9",
                "--seconds", "3",
            ])
        // The pad says its key until someone acknowledges it: nobody does, trace only listens.
        #expect(
            await eventually(timeout: .seconds(10)) {
                bus.pressEvaluatorKey(2, address: 3)
                return trace.output.contains("address 3, function 11, evaluator key 2")
            }, "\(trace.output)")
        let result = try await trace.wait()
        #expect(result.status == 0, "\(result.standardError)")
        #expect(
            result.standardError.contains("the gateway is not running") && result.standardError.contains("listening on")
        )
    }

    @Test func everyUsageErrorExitsTwoAndHelpExitsZero() async throws {
        let folder = try TemporaryDirectory()
        let existing = folder.file("existing.yaml")
        try "hall: {id: reviewed}\n".write(toFile: existing, atomically: true, encoding: .utf8)
        // Found by a technician: ArgumentParser's own usage errors exited 64 (EX_USAGE), the project's exit 2.
        let usageErrors: [[String]] = [
            ["status", "--bogus"],
            ["events", "--since", "yesterday"],
            // From an installer's trial: printed nothing, exit 0.
            ["events", "--type", "hall.ratings.*"],
            ["events", "--type", "hall.device.*,rating"],
            ["decode", "-s", "ff68", "zz"],
            ["decode", "01", "02"],
            ["modbus", "read", "-t", "7", "--host", "127.0.0.1", "0"],
            ["modbus", "read", "--address", "1", "0"],
            ["check", "--json", "extra"],
            ["--bogus"],
            // A mistyped command: said as one, not as an argument of run, the default command (from a trial).
            ["statsu"],
            // Through the daemon a listen is at most 30 s (from a review: 30 ended as "the daemon does not answer").
            ["pad", "test", "eval-w04", "--seconds", "31"],
            ["probe", "eval-w04", "--listen", "-1"],
            // From a docs trial: a port out of range wrapped (70000 listened on 4464) or was tried as given.
            ["run", "--api-port", "70000"],
            ["modbus", "read", "--host", "127.0.0.1", "--port", "70000", "0"],
            ["scan", "--host", "127.0.0.1", "--port", "0"],
            // From a docs trial: read as the daemon being down, exit 3, with the HTTP client's error name.
            ["status", "--api", "not-a-url"],
            ["check", "--api", "http://127.0.0.1:70000"],
        ]
        for arguments in usageErrors {
            let result = try await run(gatewaydPath, arguments, workingDirectory: folder.path)
            #expect(result.status == 2, "gatewayd \(arguments.joined(separator: " ")): \(result.standardError)")
            #expect(result.standardError.contains("Error: "), "\(arguments): \(result.standardError)")
            // The command's own usage, not gatewayd's (from a docs trial: decode's errors showed gatewayd's).
            if let command = arguments.first, !command.hasPrefix("-"), command != "statsu" {
                #expect(result.standardError.contains("Usage: gatewayd \(command) "), "\(arguments): \(result.standardError)")
            }
        }
        // A file in the way is no wrong usage: said in one line, no usage shown (exit 2 still: the value given).
        let inTheWay = try await run(gatewaydPath, ["scan", "--port", folder.file("no-such-port"), "--write-config", existing])
        #expect(inTheWay.status == 2 && inTheWay.standardError == """
            \(existing) exists; the scan writes a new file for review, never over one

            """, "\(inTheWay.standardError)")
        let type = try await run(gatewaydPath, ["events", "--type", "hall.ratings.*"], workingDirectory: folder.path)
        #expect(type.standardError.contains("""
            Error: --type 'hall.ratings.*' matches no event type (a family ends in *: hall.device.*); the types: \
            hall.rating.submitted, hall.rating.requested, hall.device.online,
            """), "\(type.standardError)")
        let apiPort = try await run(gatewaydPath, ["run", "--api-port", "70000"], workingDirectory: folder.path)
        #expect(apiPort.standardError.hasPrefix("Error: --api-port 70000: 1 to 65535 (0: any free port)\n"),
                "\(apiPort.standardError)")
        let tcpPort = try await run(gatewaydPath, ["modbus", "read", "--host", "127.0.0.1", "--port", "70000", "0"])
        #expect(tcpPort.standardError.hasPrefix("Error: --port with --host is a TCP port number, 1 to 65535, not '70000'\n"),
                "\(tcpPort.standardError)")
        let api = try await run(gatewaydPath, ["status", "--api", "not-a-url"], workingDirectory: folder.path)
        #expect(api.standardError.hasPrefix("Error: --api: 'not-a-url' is not an http:// URL (e.g. http://127.0.0.1:8420)\n"),
                "\(api.standardError)")
        // mbpoll's numbers are taken, and said with the names (from a docs trial: the names only).
        let table = try await run(gatewaydPath, ["modbus", "read", "-t", "7", "--host", "127.0.0.1", "0"])
        #expect(table.standardError.hasPrefix("""
            Error: The value '7' is invalid for '-t <type>': holding (4), input (3), coil (0) or discrete (1)

            """), "\(table.standardError)")
        // No example of modbus's help is wrapped onto a second line (from a docs trial: its --json was).
        let modbusHelp = try await run(gatewaydPath, ["modbus", "--help"]).standardOutput
        let helpLines = modbusHelp.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(helpLines.count { $0.hasPrefix("  gatewayd modbus ") } == 3, "\(modbusHelp)")
        for (line, next) in zip(helpLines, helpLines.dropFirst()) where line.hasPrefix("  gatewayd modbus ") {
            #expect(next.isEmpty || next.hasPrefix("  gatewayd modbus "), "\(modbusHelp)")
        }
        let typo = try await run(gatewaydPath, ["statsu"], workingDirectory: folder.path)
        #expect(typo.standardError.hasPrefix("Error: unknown command 'statsu' (commands: run, status, "), "\(typo.standardError)")
        for arguments in [["--help"], ["status", "--help"], ["modbus", "read", "--help"], ["--version"]] {
            let result = try await run(gatewaydPath, arguments, workingDirectory: folder.path)
            #expect(result.status == 0, "gatewayd \(arguments.joined(separator: " ")): \(result.standardError)")
            #expect(!result.standardOutput.isEmpty)
        }
    }

    @Test func aRefusedTokenExitsThreeFromEveryCommandThatAsksTheDaemon() async throws {
        let server = try MockModbusServer.rtu(units: [4: MockModbusEvaluator(staffId: "0104")])
        defer { server.stop() }
        let printer = try MockEscPosPrinter()
        defer { printer.stop() }
        let folder = try TemporaryDirectory()
        let config = try Self.hallConfig(
            folder, padLine: try #require(server.endpoint.devicePath), printerLine: printer.devicePath)
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        #expect(await eventually { Self.apiURL(daemon) != nil }, "the daemon's API listens: \(daemon.output)")
        let api = try #require(Self.apiURL(daemon))
        // The technician's copy of the hall's configuration names a token file holding another token.
        let wrongToken = folder.file("wrong-token")
        try "0123456789abcdef0123456789abcdef\n".write(toFile: wrongToken, atomically: true, encoding: .utf8)
        let technicianConfig = folder.file("technician.yaml")
        try (try String(contentsOfFile: config, encoding: .utf8) + "\napi: {token-file: \(wrongToken)}\n")
            .write(toFile: technicianConfig, atomically: true, encoding: .utf8)
        let cli = ["--config", technicianConfig, "--api", api]
        let commands: [[String]] = [
            ["status"], ["check"], ["events", "--follow"], ["trace", "line-a", "--seconds", "1"],
            ["probe", "eval-w04"], ["pad", "test", "eval-w04", "--seconds", "1"], ["printer", "status", "printer-1"],
        ]
        for command in commands {
            let result = try await run(gatewaydPath, command + cli)
            #expect(result.status == 3, "gatewayd \(command.joined(separator: " ")): \(result.standardError)")
            #expect(
                result.standardError.contains("401 unauthorized: the token in \(wrongToken) is not the daemon's"),
                "gatewayd \(command.joined(separator: " ")): \(result.standardError)")
            if command.first == "events" {
                // From a trial: it named a position of its search for the end (after=549755813888).
                #expect(result.standardError.contains("/v1/events?after=0&limit=1: 401"), "\(result.standardError)")
            }
        }
        // A token file that is not there is said so (from a trial: it read as a permissions problem).
        let missing = folder.file("missing-token")
        try (try String(contentsOfFile: config, encoding: .utf8) + "\napi: {token-file: \(missing)}\n")
            .write(toFile: technicianConfig, atomically: true, encoding: .utf8)
        let status = try await run(gatewaydPath, ["status"] + cli)
        #expect(status.status == 3 && status.standardError.contains("no token: \(missing) does not exist"), "\(status.standardError)")
        // trace --direct without a configuration is a usage error, said as one.
        let direct = try await run(gatewaydPath, ["trace", "line-a", "--direct", "--seconds", "1"], workingDirectory: folder.path)
        #expect(direct.status == 2 && direct.standardError.hasPrefix("trace --direct listens on the line itself: it needs "),
                "\(direct.standardError)")
    }

    @Test func aServerThatIsNotTheGatewayIsSaidToBeOne() async throws {
        // From a trial: another web server at --api gave "…/v1/devices: 404 <!DOCTYPE HTML>".
        let folder = try TemporaryDirectory()
        // The project's CloudEvents receiver: a web server whose 404 is plain text.
        let web = try await Receiver.start(folder: folder, token: "receiver-token-0123456789")
        defer { web.stop() }
        let port = web.port
        let status = try await run(gatewaydPath, ["status", "--api", "http://127.0.0.1:\(port)"], workingDirectory: folder.path)
        #expect(status.standardError.contains("/v1/devices: 404 from a server that is not a hall gateway's API"),
                "\(status.standardError)")
    }

    @Test func theCLISaysWhenTheGatewayIsNotRunning() async throws {
        let folder = try TemporaryDirectory()
        // The demo hall's defaults, with nothing on a port nobody uses.
        let check = try await run(
            gatewaydPath, ["check", "--api", "http://127.0.0.1:9"], workingDirectory: folder.path)
        #expect(check.status == 3)
        #expect(check.standardError.contains("the gateway is not running (nothing listens on http://127.0.0.1:9)"))
        // Without a config the CLI asks the demo hall's address; a technician who forgot --config is told so.
        let guessed = try await run(gatewaydPath, ["check"], workingDirectory: folder.path)
        #expect(guessed.status == 3)
        #expect(guessed.standardError.contains("the gateway is not running (nothing listens on http://127.0.0.1:8420; "
                                               + "without --config or $HALL_GATEWAY_CONFIG this is the demo hall's address"),
                "\(guessed.standardError)")
        let follow = try await run(
            gatewaydPath, ["events", "--follow", "--api", "http://127.0.0.1:9"], workingDirectory: folder.path)
        #expect(follow.status == 3)
        let status = try await run(
            gatewaydPath, ["status", "--api", "http://127.0.0.1:9"], workingDirectory: folder.path)
        #expect(status.status == 3, "neither the daemon nor an outbox: \(status.standardError)")
        // A script reading --watch --json gets a JSON line a refresh then too, not a sentence it cannot parse.
        let watch = try ChildProcess(gatewaydPath, ["status", "--watch", "--json", "--interval", "0.3", "--api", "http://127.0.0.1:9"],
                                     workingDirectory: folder.path)
        #expect(await eventually { watch.output.split(separator: "\n").count >= 2 }, "\(watch.output)")
        watch.interrupt()
        let written = watch.output.split(separator: "\n")
        // A refresh cut by the interrupt is no line yet.
        for line in watch.output.hasSuffix("\n") ? written : written.dropLast() {
            let refresh = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            #expect(refresh["live"] as? Bool == false
                    && (refresh["unavailable"] as? String)?.hasPrefix("the gateway is not running (nothing listens on http://127.0.0.1:9)") == true,
                    "\(line)")
        }
        let broken = try await run(gatewaydPath, ["status", "--config", folder.path + "/missing.yaml"])
        #expect(broken.status == 2)
        // An outbox that is not there: a wrong path given, and the help says so.
        let noOutbox = try await run(gatewaydPath, ["outbox", "status", "--outbox", folder.file("missing.sqlite")])
        #expect(noOutbox.status == 2, "\(noOutbox.standardError)")
        let help = try await run(gatewaydPath, ["outbox", "status", "--help"])
        #expect(
            help.standardOutput.split(whereSeparator: \.isWhitespace).joined(separator: " ")
                .contains("; 2 when the outbox cannot be read (a wrong --outbox"), "\(help.standardOutput)")
    }

    /// From a docs trial: a failed check marked each warning `to see to:`, a passed one headed them.
    @Test func aFailedCheckHeadsItsWarningsAsAPassedOneDoes() async throws {
        let folder = try TemporaryDirectory()
        // A damaged outbox a salvage set aside: a warning beside the silent pad's failure.
        try FileManager.default.createDirectory(atPath: folder.file("state"), withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: folder.file("state/outbox.sqlite.damaged-20261206T000000Z"), contents: nil)
        let (daemon, config, api) = try await Self.oneSilentPadDaemon(folder)
        defer { daemon.interrupt() }
        let cli = ["--config", config, "--api", api]
        #expect(await eventually { (try? await run(gatewaydPath, ["check"] + cli))?.status == 1 })
        let check = try await run(gatewaydPath, ["check"] + cli).standardOutput
        #expect(check.contains("\n  - eval-w01 does not answer")
                && check.contains("\nto see to (they do not fail the check):\n  - a damaged outbox the gateway salvaged "),
                "\(check)")
        #expect(!check.contains("- to see to:"), "\(check)")
    }

    /// From the PostgreSQL trial: a damaged outbox was said as SQLite's raw error from a query.
    @Test func outboxStatusOfADamagedOutboxSaysTheNextStartSalvagesIt() async throws {
        let folder = try TemporaryDirectory()
        let path = folder.file("outbox.sqlite")
        do {
            let outbox = try Outbox.open(path: path, logger: CapturedLog().logger)
            try await outbox.register(sinks: ["central"])
            for round in 0..<20 { try await outbox.commit(deviceEvents(100, prefix: "r\(round)-")) }
        }
        try damagePages(of: path, bytes: 8192)
        let status = try await run(gatewaydPath, ["outbox", "status", "--outbox", path])
        #expect(status.status == 2)
        #expect(status.standardError.hasPrefix("the outbox \(path) is damaged ("), "\(status.standardError)")
        #expect(status.standardError.contains("): the gateway's next start salvages it, its readable events queued again"))
    }

    /// From the second ext4 trial: after a kill on a nearly full disk the reserve was missing, `check` failed for it,
    /// and `outbox status` said only "3.4 MB free", exit 0.
    @Test func outboxStatusSaysWhenTheReserveAgainstAFullDiskIsMissing() async throws {
        let folder = try TemporaryDirectory()
        let config = folder.file("hall.yaml")
        try """
            hall: {id: test-hall}
            state-directory: \(folder.path)
            profiles: \(profilesDirectory)
            buses: []
            devices: []
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let path = folder.file("outbox.sqlite")
        do {
            let outbox = try Outbox.open(path: path, logger: CapturedLog().logger)
            try await outbox.register(sinks: ["central"])
        }
        let missing = "no reserve against a full disk beside the outbox"
        let kept = try await run(gatewaydPath, ["outbox", "status", "--config", config])
        #expect(kept.status == 0 && !kept.standardOutput.contains(missing), "\(kept.standardOutput)")
        #expect(try await reserveKept(["--config", config]) == true)
        // As a run that gave it back on a full disk leaves it.
        try FileManager.default.removeItem(atPath: path + ".reserve")
        let status = try await run(gatewaydPath, ["outbox", "status", "--config", config])
        #expect(status.status == 0, "a warning: the disk has room")
        #expect(status.standardOutput.contains("""
            \(missing) (given back on a full disk, or no room to make it): the gateway makes it at its next start or \
            minute with 8 MB free on the disk; `gatewayd check` fails until then
            """), "\(status.standardOutput)")
        #expect(try await reserveKept(["--config", config]) == false)
        // An outbox given by its path may be a copy, with no gateway to keep a reserve beside it.
        let copy = try await run(gatewaydPath, ["outbox", "status", "--outbox", path])
        #expect(copy.status == 0 && !copy.standardOutput.contains(missing), "\(copy.standardOutput)")
    }

    /// `reserveKept` in `outbox status --json` with `arguments`.
    private func reserveKept(_ arguments: [String]) async throws -> Bool? {
        let json = try await run(gatewaydPath, ["outbox", "status", "--json"] + arguments)
        let document = try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any]
        return document?["reserveKept"] as? Bool
    }

    /// From a trial: after a salvage at a start, nothing a technician reads said the damaged file was kept.
    @Test func outboxStatusNamesTheDamagedOutboxASalvageSetAside() async throws {
        let folder = try TemporaryDirectory()
        let path = folder.file("outbox.sqlite")
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: path))
        _ = try Outbox.open(path: path, logger: CapturedLog().logger)
        let aside = try #require(FileManager.default.contentsOfDirectory(atPath: folder.path)
            .first { $0.hasPrefix("outbox.sqlite.damaged-") })

        let status = try await run(gatewaydPath, ["outbox", "status", "--outbox", path])
        #expect(status.status == 0, "\(status.standardError)")
        #expect(status.standardOutput.contains("""
            damaged outboxes set aside by a salvage at a start, kept for inspection (what each salvage could not read: \
            its hall.gateway.outbox_recovered event; with a local event store, \
            `gatewayd events --type hall.gateway.outbox_recovered`):
              \(folder.file(aside))
            """), "\(status.standardOutput)")
    }

    /// Found by trying the demo: after it stopped, `probe` took the demo's configuration, still in var/, and wrote a
    /// Modbus request into whatever terminal had been given its pseudo-terminal's name since.
    @Test func theDemoHallsPortsAreNotOpenedOnceItStopped() async throws {
        let folder = try TemporaryDirectory()
        let someonesTerminal = try PseudoTerminal()
        try FileManager.default.createDirectory(atPath: folder.path + "/var", withIntermediateDirectories: true)
        try """
            # The demo hall as `gatewayd run` started it; the CLI reads it when given no --config.
            hall: {id: demo-hall}
            state-directory: \(folder.path)/var
            profiles: \(profilesDirectory)
            api: {listen: "127.0.0.1:9"}
            buses:
              - {id: line-a, transport: modbus-rtu, port: \(someonesTerminal.devicePath)}
            devices:
              - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "4"}
            """.write(toFile: folder.path + "/var/demo-hall.yaml", atomically: true, encoding: .utf8)
        // Found without --config, or given under any path.
        let copy = folder.path + "/copied-demo.yaml"
        try FileManager.default.copyItem(atPath: folder.path + "/var/demo-hall.yaml", toPath: copy)
        for command in [["probe", "eval-w04"], ["trace", "line-a", "--seconds", "1"], ["probe", "eval-w04", "--config", copy]] {
            let result = try await run(gatewaydPath, command, workingDirectory: folder.path)
            #expect(result.status == 3, "gatewayd \(command.joined(separator: " ")): \(result.standardError)")
            #expect(result.standardError.contains("the demo hall's ports are its own pseudo-terminals, reached only "
                                                  + "through its running daemon"), "\(result.standardError)")
        }
        // Nor does a gateway run on it.
        let daemon = try await run(gatewaydPath, ["run", "--config", copy, "--api-port", "0"], workingDirectory: folder.path)
        #expect(daemon.status == 2 && daemon.standardError.contains("\(copy): the configuration a run of the demo hall wrote"),
                "\(daemon.standardOutput)\(daemon.standardError)")
        // And `config check` does not pass it (from a docs trial: it said OK).
        let checked = try await run(gatewaydPath, ["config", "check", copy], workingDirectory: folder.path)
        #expect(checked.status == 2 && checked.standardError.contains("\(copy): the configuration a run of the demo hall wrote"),
                "\(checked.standardOutput)\(checked.standardError)")
        var waiting = pollfd(fd: someonesTerminal.controller, events: Int16(POLLIN), revents: 0)
        #expect(poll(&waiting, 1, 0) == 0, "nothing was written to the terminal")
    }

    /// A hall of one Modbus pad on `line`, its state in `folder`; returns the configuration's path.
    static func onePadHall(_ folder: TemporaryDirectory, line: String) throws -> String {
        try hallFile(folder, """
            buses:
              - {id: line-a, transport: modbus-rtu, port: \(line)}
            devices:
              - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "4"}
            """)
    }

    @Test func aSecondGatewayOnTheSameHallIsRefusedAndTheFirstKeepsItsFilesToItself() async throws {
        let folder = try TemporaryDirectory()
        let server = try MockModbusServer.rtu(units: [4: MockModbusEvaluator(staffId: "0104")])
        defer { server.stop() }
        let config = try Self.onePadHall(folder, line: try #require(server.endpoint.devicePath))
        // SIGHUP at its default, as from a terminal, even when these tests run under nohup.
        let first = try ChildProcess("/usr/bin/env", ["--default-signal=HUP", gatewaydPath, "run", "--config", config,
                                                      "--api-port", "0"])
        defer { first.interrupt() }
        #expect(await eventually { Self.apiURL(first) != nil }, "\(first.output)")

        // Two masters on one line and one outbox: refused, naming the one running.
        let second = try await run(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        #expect(second.status == 1, "\(second.standardOutput)\(second.standardError)")
        #expect(second.standardOutput.contains(
            "cannot start: another gateway (pid \(first.process.processIdentifier)) runs on \(folder.path)/state"),
            "\(second.standardOutput)")
        let refusal = second.standardOutput.split(separator: "\n").first { $0.contains("cannot start: another gateway") }
        #expect(refusal?.contains("+08:00 critical") == true, "stamped in the hall's zone: \(refusal ?? "")")

        // Ratings carry staff ids: the outbox is not for every user of the machine.
        let attributes = try FileManager.default.attributesOfItem(atPath: folder.path + "/state/outbox.sqlite")
        let mode = try #require(attributes[.posixPermissions] as? Int)
        #expect(mode & 0o007 == 0, "outbox mode \(String(mode, radix: 8))")

        // A closed terminal session (SIGHUP) stops it in order, as SIGTERM does.
        kill(first.process.processIdentifier, SIGHUP)
        let stopped = try await first.wait(timeout: .seconds(15))
        #expect(stopped.status == 0 && !stopped.terminatedBySignal, "\(stopped.standardOutput)")
        #expect(stopped.standardOutput.contains("gateway stopped"), "\(stopped.standardOutput)")
        // Which signal, in words (from a trial: a stop nobody had asked for looked the same).
        #expect(stopped.standardOutput.contains("notice gatewayd: SIGHUP received: the gateway stops"), "\(stopped.standardOutput)")
    }

    @Test func aDemoConfigurationThatIsNotTheDemosOwnIsNotUsedToFindADaemon() async throws {
        // From a security trial: a var/demo-hall.yaml anyone left in a folder had `status` run there send another
        // hall's token to the address it named.
        let folder = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: folder.file("var"), withIntermediateDirectories: true)
        try "0123456789abcdef0123\n".write(toFile: folder.file("token"), atomically: true, encoding: .utf8)
        for (api, stateDirectory, said) in [
            ("api: {listen: \"192.0.2.2:21998\", token-file: \(folder.file("token"))}", folder.file("var"),
             "its API is at 192.0.2.2, beyond this machine"),
            ("api: {listen: \"127.0.0.1:21998\", token-file: \(folder.file("token"))}", folder.file("var"),
             "it names a token file"),
            ("api: {listen: \"127.0.0.1:21998\"}", folder.path, "its state directory is \(folder.path), not the folder it is in"),
        ] {
            try """
                # The demo hall as `gatewayd run` started it; the CLI reads it when given no --config.
                hall: {id: demo-hall}
                state-directory: \(stateDirectory)
                profiles: \(profilesDirectory)
                buses: []
                devices: []
                \(api)
                """.write(toFile: folder.file("var/demo-hall.yaml"), atomically: true, encoding: .utf8)
            // Nor to open another hall's outbox.
            for command in [["status"], ["outbox", "status"]] {
                let result = try await run(gatewaydPath, command, workingDirectory: folder.path)
                #expect(result.status == 2, "\(command): \(result.standardOutput)\(result.standardError)")
                #expect(result.standardError.contains(
                    "var/demo-hall.yaml reads as the demo hall's configuration, but \(said): not used"), "\(result.standardError)")
            }
        }
    }

    @Test func aLockFileThatIsASymbolicLinkIsRefusedAndWhatItPointsToIsLeftAlone() async throws {
        // From a security trial: whoever could write the state directory had a run as root overwrite any file.
        let folder = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: folder.file("var"), withIntermediateDirectories: true)
        try "IMPORTANT\n".write(toFile: folder.file("victim"), atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: folder.file("var/gatewayd.lock"), withDestinationPath: folder.file("victim"))
        let demo = try await run(gatewaydPath, ["run", "--api-port", "0"], workingDirectory: folder.path)
        #expect(demo.status == 1)
        #expect(demo.standardOutput.contains("cannot start: var/gatewayd.lock is not a plain file (a symbolic link?): remove it"),
                "\(demo.standardOutput)")
        #expect(try String(contentsOfFile: folder.file("victim"), encoding: .utf8) == "IMPORTANT\n")
    }

    @Test func anAPITokenFileThatIsALinkOrOpenToEveryUserIsNotTaken() async throws {
        // From a security trial: a link's target, or a file every user could read or write, became the API's token.
        for (prepare, said) in [
            ({ (folder: TemporaryDirectory) in
                try "weakbutlongtoken0000\n".write(toFile: folder.file("elsewhere"), atomically: true, encoding: .utf8)
                try FileManager.default.createSymbolicLink(atPath: folder.file("var/api-token"),
                                                           withDestinationPath: folder.file("elsewhere"))
            }, "var/api-token is a symbolic link: remove it, the gateway makes its own"),
            ({ (folder: TemporaryDirectory) in
                try "weakbutlongtoken0000\n".write(toFile: folder.file("var/api-token"), atomically: true, encoding: .utf8)
                chmod(folder.file("var/api-token"), 0o666)
            }, "var/api-token can be read or changed by every user of the machine (mode 666): remove it, the gateway makes a new one"),
            ({ (folder: TemporaryDirectory) in
                try "weakbutlongtoken0000\n".write(toFile: folder.file("var/api-token"), atomically: true, encoding: .utf8)
                chmod(folder.file("var/api-token"), 0o600)
                chown(folder.file("var/api-token"), 65534, 65534)
            }, "var/api-token belongs to another user: remove it, the gateway makes its own"),
        ] {
            let folder = try TemporaryDirectory()
            try FileManager.default.createDirectory(atPath: folder.file("var"), withIntermediateDirectories: true)
            try prepare(folder)
            let demo = try await run(gatewaydPath, ["run", "--api-port", "0"], workingDirectory: folder.path)
            #expect(demo.status == 2, "\(demo.standardOutput)\(demo.standardError)")
            #expect(demo.standardOutput.contains("cannot start: \(folder.path)/\(said)"), "\(demo.standardOutput)")
        }
        // The one the gateway makes is its user's alone from the start.
        let folder = try TemporaryDirectory()
        let demo = try ChildProcess(gatewaydPath, ["run", "--api-port", "0"], workingDirectory: folder.path)
        defer { demo.interrupt() }
        #expect(await eventually { Self.apiURL(demo) != nil }, "\(demo.output)")
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: folder.file("var/api-token"))[.posixPermissions] as? Int)
        #expect(mode == 0o600, "mode \(String(mode, radix: 8))")
    }

    @Test func startedUnderNohupAClosedTerminalDoesNotStopIt() async throws {
        let folder = try TemporaryDirectory()
        let server = try MockModbusServer.rtu(units: [4: MockModbusEvaluator(staffId: "0104")])
        defer { server.stop() }
        let config = try Self.onePadHall(folder, line: try #require(server.endpoint.devicePath))
        let daemon = try ChildProcess("/usr/bin/nohup", [gatewaydPath, "run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        #expect(await eventually { Self.apiURL(daemon) != nil }, "\(daemon.output)")
        let api = try #require(Self.apiURL(daemon))

        // nohup executes the gateway in its own process: the signal reaches the gateway, which ignores it.
        kill(daemon.process.processIdentifier, SIGHUP)
        // A stopping gateway closes its API first: the status would find nobody.
        let status = try await run(gatewaydPath, ["status", "--config", config, "--api", api])
        #expect(status.status == 0, "\(status.standardOutput)\(status.standardError)\(daemon.output)")
        #expect(status.standardOutput.hasPrefix("devices live from the gateway at \(api)"), "\(status.standardOutput)")

        kill(daemon.process.processIdentifier, SIGTERM)
        let stopped = try await daemon.wait(timeout: .seconds(15))
        #expect(stopped.status == 0 && !stopped.terminatedBySignal, "\(stopped.standardOutput)")
        #expect(stopped.standardOutput.components(separatedBy: "gateway stopped").count == 2, "stopped once, by SIGTERM")
        #expect(stopped.standardOutput.contains("SIGTERM received: the gateway stops"), "\(stopped.standardOutput)")
    }

    @Test func filesAnotherUserLeftAndAStateDirectoryThatCannotBeMadeAreSaidAtTheStart() async throws {
        let folder = try TemporaryDirectory()
        let server = try MockModbusServer.rtu(units: [4: MockModbusEvaluator(staffId: "0104")])
        defer { server.stop() }
        // The program and the profiles where user nobody can reach them, wherever the checkout is.
        let program = folder.file("gatewayd")
        try FileManager.default.copyItem(atPath: gatewaydPath, toPath: program)
        try FileManager.default.copyItem(atPath: profilesDirectory, toPath: folder.file("devices"))
        let config = try Self.onePadHall(folder, line: try #require(server.endpoint.devicePath))
        try String(contentsOfFile: config, encoding: .utf8)
            .replacingOccurrences(of: "profiles: \(profilesDirectory)", with: "profiles: \(folder.file("devices"))")
            .write(toFile: config, atomically: true, encoding: .utf8)
        // A first run as root leaves the outbox root's; the gateway's own user then could open it only read-only.
        _ = try Outbox.open(path: folder.path + "/state/outbox.sqlite", logger: CapturedLog().logger)
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder.path + "/state")
        let asNobody = ["-u", "nobody", "--", program, "run", "--config", config, "--api-port", "0"]
        let readOnly = try await run("/usr/sbin/runuser", asNobody)
        #expect(readOnly.status == 1, "\(readOnly.standardOutput)\(readOnly.standardError)")
        #expect(readOnly.standardOutput.contains(
            "\(folder.path)/state/outbox.sqlite belongs to root and user nobody may not write it"), "\(readOnly.standardOutput)")

        let locked = folder.path + "/locked"
        try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: true)
        try String(contentsOfFile: config, encoding: .utf8)
            .replacingOccurrences(of: "state-directory: \(folder.path)/state", with: "state-directory: \(locked)/state")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let unmade = try await run("/usr/sbin/runuser", asNobody)
        #expect(unmade.status == 1, "\(unmade.standardOutput)\(unmade.standardError)")
        #expect(unmade.standardOutput.contains(
            "the state directory \(locked)/state does not exist and user nobody cannot make it"), "\(unmade.standardOutput)")

        // The local event store left root's: the gateway runs, the store's events wait in the outbox, and the start
        // says why instead of SQLite's "readonly database" at every delivery.
        let fresh = folder.path + "/fresh/state"
        try FileManager.default.createDirectory(atPath: fresh, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: fresh)
        _ = try SQLiteEventStore(name: "local", path: fresh + "/events.sqlite")
        try String(contentsOfFile: config, encoding: .utf8)
            .replacingOccurrences(of: "state-directory: \(locked)/state", with: "state-directory: \(fresh)")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try ChildProcess(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", program, "run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        #expect(await eventually {
            daemon.output.contains("sink local cannot be set up, its events wait in the outbox: \(fresh)/events.sqlite "
                                   + "belongs to root and user nobody may not write it")
        }, "\(daemon.output)")
        #expect(await eventually { Self.apiURL(daemon) != nil }, "it runs: \(daemon.output)")
        daemon.interrupt()
        let stopped = try await daemon.wait(timeout: .seconds(15))
        #expect(stopped.status == 0, "\(stopped.standardOutput)")

        // A technician outside the gateway's group is told who may read the configuration.
        chmod(config, 0o600)
        let unreadable = try await run("/usr/sbin/runuser", ["-u", "nobody", "--", program, "config", "check", config])
        #expect(unreadable.status == 2)
        #expect(unreadable.standardError.contains("\(config): cannot read: permission denied to user nobody (run it as "
                                                  + "the gateway's user or a member of its group, or with sudo)"),
                "\(unreadable.standardError)")
    }

    @Test func aGatewayWhoseAPIPortIsTakenDoesNotStart() async throws {
        let folder = try TemporaryDirectory()
        let server = try MockModbusServer.rtu(units: [4: MockModbusEvaluator(staffId: "0104")])
        defer { server.stop() }
        let config = try Self.onePadHall(folder, line: try #require(server.endpoint.devicePath))
        // Whatever holds the port would be handed the token by every CLI call.
        let holder = try LoopbackListener()
        defer { holder.close() }
        let daemon = try await run(gatewaydPath, ["run", "--config", config, "--api-port", "\(holder.port)"])
        #expect(daemon.status == 1, "\(daemon.standardOutput)\(daemon.standardError)")
        #expect(daemon.standardOutput.contains(
            "api: cannot serve on 127.0.0.1:\(holder.port): the port is in use by another program"),
            "\(daemon.standardOutput)")
        #expect(!daemon.standardError.contains("bind("), "said once, in words: \(daemon.standardError)")
        // It did not start: no device polled, nothing committed for the stores (the trial saw events delivered).
        #expect(!daemon.standardOutput.contains("hall.device.online"), "\(daemon.standardOutput)")
        #expect(try await Outbox.openForReading(path: folder.file("state/outbox.sqlite")).count() == 0)
    }

    @Test func aClientThatStopsSendingMidRequestDoesNotHoldTheStop() async throws {
        let folder = try TemporaryDirectory()
        let server = try MockModbusServer.rtu(units: [4: MockModbusEvaluator(staffId: "0104")])
        defer { server.stop() }
        let config = try Self.onePadHall(folder, line: try #require(server.endpoint.devicePath))
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        #expect(await eventually { Self.apiURL(daemon) != nil }, "\(daemon.output)")
        let port = try #require(Self.apiURL(daemon).flatMap { $0.split(separator: ":").last }.flatMap { Int($0) })
        let token = try String(contentsOfFile: folder.path + "/state/api-token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let client = try LoopbackClient(port: port)
        defer { client.close() }
        // A whole request first: the connection is being served when the stalled one follows on it.
        client.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(client.receive().hasPrefix("HTTP/1.1 200"))
        client.send("""
            POST /v1/windows/4/call HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\n\
            Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"tick
            """)
        // The stop must find the request begun: a connection whose next request is unread is idle, closed at once.
        #expect(await eventually { client.peerHasReadAll() })
        kill(daemon.process.processIdentifier, SIGTERM)
        let stopped = try await daemon.wait(timeout: .seconds(20))
        #expect(stopped.status == 0 && !stopped.terminatedBySignal, "\(stopped.standardOutput)")
        #expect(stopped.standardOutput.contains("api: requests still open 5.0 seconds after the stop began; closing them"),
                "\(stopped.standardOutput)")
    }
}

/// A TCP socket listening on a free loopback port, accepting nobody.
final class LoopbackListener {
    let descriptor: Int32
    let port: Int

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && listen(descriptor, 1) == 0
                    && getsockname(descriptor, $0, &length) == 0
            }
        }
        try #require(bound)
        self.descriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { _ = Glibc.close(descriptor) }
}

/// A raw loopback connection, for requests no HTTP client would send.
final class LoopbackClient {
    let descriptor: Int32

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(connected == 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) { _ = text.withCString { Glibc.send(descriptor, $0, strlen($0), Int32(MSG_NOSIGNAL)) } }

    /// What arrived in one read (up to 4 KiB), waiting up to 10 s.
    func receive() -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : ""
    }

    /// Whether the other end closed the connection (reading on to its end), rather than leaving it open for 10 s.
    func closedByPeer() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count <= 0 { return count == 0 }
        }
    }

    /// Whether the server process has read everything sent: nothing unacknowledged here, nothing in the queue of the
    /// server's end (`rx_queue` in /proc/net/tcp, tcp6 for a dual-stack listener).
    func peerHasReadAll() -> Bool {
        var unsent: Int32 = 0
        guard ioctl(descriptor, UInt(TIOCOUTQ), &unsent) == 0, unsent == 0 else { return false }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ours = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) == 0 }
        }
        guard ours else { return false }
        var peer = sockaddr_in()
        let theirs = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(descriptor, $0, &length) == 0 }
        }
        guard theirs else { return false }
        let serverEnd = String(format: ":%04X", UInt16(bigEndian: peer.sin_port))
        let clientEnd = String(format: ":%04X", UInt16(bigEndian: address.sin_port))
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            for row in Self.wholeFile(table).split(separator: "\n").dropFirst() {
                let fields = row.split(separator: " ")
                guard fields.count > 4, fields[1].hasSuffix(serverEnd), fields[2].hasSuffix(clientEnd) else { continue }
                return fields[4].split(separator: ":").last.flatMap { Int($0, radix: 16) } == 0
            }
        }
        return false
    }

    /// A file read to its end: a file in /proc says its size is 0, and a read of that size stops at the first page.
    static func wholeFile(_ path: String) -> String {
        let file = open(path, O_RDONLY)
        guard file >= 0 else { return "" }
        defer { _ = Glibc.close(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while case let count = read(file, &chunk, chunk.count), count > 0 { bytes += chunk[0..<count] }
        return String(decoding: bytes, as: UTF8.self)
    }

    func close() { _ = Glibc.close(descriptor) }
}
