import DeviceGateway
import Foundation
import MockDevices
import Protocols
import Synchronization
import Testing

/// `gatewayd probe`, `display test`, `printer test|status` and `pad test`, run as the technician runs them, against
/// mock devices on pseudo-terminals: with no daemon (the port opened directly) and through a running daemon.
@Suite struct TechnicianCommandTests {
    /// A hall configuration with `buses` and `devices` (YAML list items); its API on a port nothing listens on
    /// unless `apiPort` is given.
    func hall(_ folder: TemporaryDirectory, buses: String, devices: String, apiPort: Int = 1) throws -> String {
        let path = folder.file("hall.yaml")
        try """
        hall: {id: test-hall}
        state-directory: \(folder.path)/state
        profiles: \(profilesDirectory)
        api: {listen: 127.0.0.1:\(apiPort)}
        buses:
        \(buses)
        devices:
        \(devices)
        sinks:
          - {type: sqlite, path: \(folder.path)/events.sqlite}
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A hall of one Modbus RTU line, `line-a`, on `server`'s pseudo-terminal, with `devices` (YAML list items).
    func rtuHall(_ folder: TemporaryDirectory, _ server: MockModbusServer, devices: String) throws -> String {
        try hall(folder, buses: "  - {id: line-a, transport: modbus-rtu, port: \(try #require(server.endpoint.devicePath)), "
                     + "response-timeout-ms: 200}", devices: devices)
    }

    /// A hall of one FF 68 bus with a pad at 9 (window 9).
    func ff68Pad9Hall(_ bus: MockFF68Bus, _ folder: TemporaryDirectory) throws -> String {
        try hall(folder, buses: "  - {id: ff68-1, transport: serial, port: \(bus.devicePath)}",
                 devices: "  - {id: eval-w09, profile: ff68-evaluator, bus: ff68-1, address: 9, window: \"9\"}")
    }

    /// A daemon running a hall of one FF 68 bus, a pad at 3 and a caller at 33 (window 3), its API on a free port.
    func ff68Daemon(_ bus: MockFF68Bus, _ folder: TemporaryDirectory) async throws
        -> (daemon: ChildProcess, config: String, api: String)
    {
        let config = try hall(
            folder, buses: "  - {id: ff68-1, transport: serial, port: \(bus.devicePath)}",
            devices: """
                  - {id: eval-w03, profile: ff68-evaluator, bus: ff68-1, address: 3, window: "3"}
                  - {id: caller-w03, profile: ff68-caller, bus: ff68-1, address: 33, window: "3"}
                """)
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        let listening = await eventually { CLITests.apiURL(daemon) != nil }
        if !listening { daemon.interrupt() }
        try #require(listening, "the daemon's API listens: \(daemon.output)")
        return (daemon, config, try #require(CLITests.apiURL(daemon)))
    }

    @Test func probeShowsAPadsAnswerDecodedAndInHex() async throws {
        let pad = MockModbusEvaluator(staffId: "0105", bootId: 0x0102_0304)
        pad.press(.satisfied)
        pad.press(.dissatisfied)
        let server = try MockModbusServer.rtu(units: [4: pad])
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        let folder = try TemporaryDirectory()
        let config = try rtuHall(
            folder, server, devices: """
                  - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "5"}
                  - {id: eval-w06, profile: modbus-evaluator-3key, bus: line-a, address: 9, window: "6"}
                """)
        let probe = try await run(gatewaydPath, ["probe", "--config", config, "eval-w05"])
        #expect(probe.status == 0, "\(probe.standardError)")
        let text = probe.standardOutput
        #expect(
            text.contains(
                "probe eval-w05 (modbus-evaluator-3key) on bus line-a, \(path) at 9600 8N1: port opened directly"))
        // The request in hex (read 32 holding registers from 0 at address 4) and in words.
        #expect(text.contains("→ 04 03 00 00 00 20"), "\(text)")
        #expect(text.contains("← 04 03 40 00 03 00 02 00 03 01 02 03 04"), "\(text)")
        // What the pad reports, read through its profile.
        #expect(
            text.contains(
                "eval-w05 reports:\n  status 0x0003: ready\n  ratings since power-up: 2\n  boot id 0x01020304\n"
                    + "  staff shown: 0105\n  last keys, newest first: 不满意 (3), 满意 (1)"), "\(text)")

        let silent = try await run(gatewaydPath, ["probe", "--config", config, "eval-w06", "--json"])
        #expect(silent.status == 1)
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(silent.standardOutput.utf8)) as? [String: Any])
        #expect(report["answered"] as? Bool == false)
        #expect((report["problem"] as? String)?.contains("no answer from eval-w06 (address 9)") == true)

        let unknown = try await run(gatewaydPath, ["probe", "--config", config, "eval-w99"])
        #expect(unknown.status == 2)
        #expect(unknown.standardError.contains("no device 'eval-w99'"))
    }

    /// From the night technician's trial: nothing said whether a dark board's screen was switched off or the board dead.
    @Test func probeSaysWhetherABoardsScreenIsOnAndHowBright() async throws {
        let board = MockModbusBoard()
        var registers = board.registers
        registers[MockModbusBoard.Register.power] = 0
        registers[MockModbusBoard.Register.brightness] = 9
        registers[MockModbusBoard.Register.commandCounter] &+= 1
        board.accept(writtenRegisters: registers)
        let server = try MockModbusServer.rtu(units: [3: board])
        defer { server.stop() }
        let folder = try TemporaryDirectory()
        let config = try rtuHall(folder, server, devices: """
              - {id: board-w05, profile: modbus-window-board, bus: line-a, address: 3, window: "5"}
            """)
        let probe = try await run(gatewaydPath, ["probe", "--config", config, "board-w05"])
        #expect(probe.status == 0, "\(probe.standardError)")
        // Registers 0-7 from 0 at address 3: the power and brightness registers with the rest.
        #expect(probe.standardOutput.contains("→ 03 03 00 00 00 08"), "\(probe.standardOutput)")
        #expect(probe.standardOutput.contains("""
              command 1, acknowledged 1
              screen off: it shows nothing
              brightness level 9 of 15
            """), "\(probe.standardOutput)")
    }

    @Test func printerStatusAndTestTicketWithTheDaemonStopped() async throws {
        let printer = try MockEscPosPrinter()
        defer { printer.stop() }
        let folder = try TemporaryDirectory()
        let config = try hall(
            folder,
            buses: "  - {id: kiosk-1, transport: serial, port: \(printer.devicePath), response-timeout-ms: 300}",
            devices: "  - {id: printer-1, profile: escpos-80mm, bus: kiosk-1, address: 1}")
        let ready = try await run(gatewaydPath, ["printer", "status", "--config", config, "printer-1"])
        #expect(ready.status == 0, "\(ready.standardError)")
        #expect(ready.standardOutput.hasPrefix("printer-1: online"), "\(ready.standardOutput)")

        let test = try await run(gatewaydPath, ["printer", "test", "--config", config, "printer-1"])
        #expect(test.status == 0, "\(test.standardError)")
        let ticket = try #require(printer.tickets.first)
        let texts = ticket.compactMap { command -> String? in if case .text(let text) = command { text } else { nil } }
        #expect(texts.contains("T000"))
        #expect(texts.contains { $0.contains("测试票") }, "\(texts)")
        // Hall time to the minute, as on every ticket, not an ISO timestamp in UTC.
        #expect(texts.contains { $0.contains(/20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}/) }, "\(texts)")
        #expect(!texts.contains { $0.contains(/[0-9]T[0-9]{2}:[0-9]{2}/) }, "\(texts)")

        printer.set(.init(paperOut: true))
        let out = try await run(gatewaydPath, ["printer", "status", "--config", config, "printer-1"])
        #expect(out.status == 1)
        #expect(out.standardOutput.hasPrefix("printer-1: paper-out"), "\(out.standardOutput)")
        #expect(!out.standardOutput.contains("(paper-out)"), "said once: \(out.standardOutput)")
        #expect(out.standardError.contains("printer-1 cannot print: paper-out"))
        let json = try await run(gatewaydPath, ["printer", "status", "--config", config, "printer-1", "--json"])
        #expect(json.status == 1)
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        #expect(report["printerState"] as? String == "paper-out")
        #expect((report["printerConditions"] as? [String])?.contains("paper-out") == true)

        // A ticket on a printer without paper is refused with the reason; nothing is printed.
        let refused = try await run(gatewaydPath, ["printer", "test", "--config", config, "printer-1"])
        #expect(refused.status == 1)
        #expect(refused.standardError.contains("cannot print now: paper-out"), "\(refused.standardError)")
        #expect(printer.tickets.count == 1)

        let wrongKind = try await run(gatewaydPath, ["display", "test", "--config", config, "printer-1"])
        #expect(wrongKind.status == 2)
        #expect(wrongKind.standardError.contains("printer-1 is a printer (escpos-80mm), not a board"))
    }

    @Test func displayTestShowsTheTextOnABoard() async throws {
        let board = MockModbusBoard()
        let server = try MockModbusServer.rtu(units: [21: board])
        defer { server.stop() }
        let folder = try TemporaryDirectory()
        let config = try rtuHall(
            folder, server, devices: "  - {id: board-w01, profile: modbus-window-board, bus: line-a, address: 21, window: \"1\"}")
        let test = try await run(
            gatewaydPath, ["display", "test", "--config", config, "board-w01", "--text", "测试 0123"])
        #expect(test.status == 0, "\(test.standardError)")
        #expect(board.display.text == "测试 0123")
        #expect(test.standardOutput.contains("hall.board.acknowledged"), "\(test.standardOutput)")
    }

    /// A device of 4 holding registers: libmodbus refuses a read of more with exception 02 (illegal data address).
    final class FourRegisters: MockModbusUnit {
        let registers = [UInt16](repeating: 0, count: 4)
        let answering = true
        func accept(writtenRegisters: [UInt16]) {}
    }

    /// From closing-23: `probe` through the daemon said `poll: answered` for a poll the device refused with an
    /// exception (here a device at a pad's address without a pad's registers). It says refused, and why.
    @Test func probeThroughTheDaemonSaysARefusedPollIsRefused() async throws {
        let server = try MockModbusServer.rtu(units: [1: MockModbusEvaluator(staffId: "0101"), 9: FourRegisters()])
        defer { server.stop() }
        let hall = try await StatusCommandTests.ConfiguredHall(buses: { _ in
            "  - {id: line-a, \(server.endpoint.busKeys), response-timeout-ms: 100, poll-interval-ms: 50}"
        }, devices: """
              - {id: eval-w01, profile: modbus-evaluator-3key, bus: line-a, address: 1, window: "1"}
              - {id: eval-w09, profile: modbus-evaluator-3key, bus: line-a, address: 9, window: "9"}
            """)
        #expect(await eventually { await hall.gateway.deviceStates().first { $0.device == "eval-w09" }?.online == false })
        let refused = try await run(gatewaydPath, ["probe", "eval-w09"] + hall.cli)
        let answered = try await run(gatewaydPath, ["probe", "eval-w01"] + hall.cli)
        await hall.stop()
        #expect(refused.status == 1, "\(refused.standardOutput)")
        #expect(refused.standardOutput.contains("\npoll: refused in "), "\(refused.standardOutput)")
        #expect(!refused.standardOutput.contains("poll: answered"), "\(refused.standardOutput)")
        #expect(refused.standardOutput.contains("illegal data address"), "its words: \(refused.standardOutput)")
        #expect(answered.standardOutput.contains("\npoll: answered in "), "\(answered.standardOutput)")
    }

    /// From an installer's trial: a pad whose answers make no frame (A and B swapped inverts every bit) was `refused`
    /// in `probe`, and the reason it was offline did not think of the wires.
    @Test func anAnswerThatIsNoFrameIsGarbledNotRefusedAndTheWiresAreThoughtOf() async throws {
        // Every answer garbled; then every other one (a loose wire), so that the pad is polled while probed.
        final class Wires: Sendable {
            let swapped = Mutex(true)
            let answers = Mutex(0)
        }
        let wires = Wires()
        let line = try MockLine { request in
            guard request.count == 8 else { return [] }
            let registers = Int(request[4]) << 8 | Int(request[5])
            let answer = ModbusRTUFrame.frame(
                address: request[0], pdu: [3, UInt8(2 * registers)] + Array(repeating: 0, count: 2 * registers))
            let garbled = wires.swapped.withLock { $0 } || wires.answers.withLock { count in
                count += 1
                return count % 2 == 0
            }
            return garbled ? answer.map { ~$0 } : answer
        }
        defer { line.stop() }
        let hall = try await StatusCommandTests.ConfiguredHall(buses: { _ in
            "  - {id: line-a, transport: modbus-rtu, port: \(line.devicePath), response-timeout-ms: 100, poll-interval-ms: 50}"
        }, devices: """
              - {id: eval-w01, profile: modbus-evaluator-3key, bus: line-a, address: 1, window: "1"}
            """)
        #expect(await eventually { await hall.gateway.deviceStates().first?.online == false })
        let reason = await hall.gateway.deviceStates().first?.offlineReason
        #expect(reason == "no answer to poll within 0.1 seconds; what came back was no frame (a wrong baud rate or "
                    + "parity? A and B wires swapped? two devices at one address?)", "\(String(describing: reason))")
        wires.swapped.withLock { $0 = false }
        var outputs: [String] = []
        // The pad, offline, is probed with backoff (up to 30 s between): the loose wire is seen once it is polled again.
        #expect(await eventually(timeout: .seconds(60)) {
            guard let probe = try? await run(gatewaydPath, ["probe", "eval-w01"] + hall.cli) else { return false }
            outputs.append(probe.standardOutput)
            return probe.standardOutput.contains("\npoll: garbled in ")
        }, "\(outputs)")
        await hall.stop()
        #expect(!outputs.contains { $0.contains("refused") }, "\(outputs)")
    }

    /// At night a board is off as the hall's closing left it, when a technician comes to see to it: a test on the dark
    /// screen showed nothing, and said "answered and acknowledged". The board is switched on for it, and says so.
    @Test func aDisplayTestAfterClosingSwitchesTheBoardOnForIt() async throws {
        for minutes in [30, 0] {
            let board = MockModbusBoard()
            let server = try MockModbusServer.rtu(units: [3: board])
            defer { server.stop() }
            let clock = ManualHallClock(now: try HallDayGatewayTests.shanghai("2026-12-02 20:00"))
            let hall = try await StatusCommandTests.ConfiguredHall(buses: { _ in
                "  - {id: line-a, \(server.endpoint.busKeys), response-timeout-ms: 100, poll-interval-ms: 50}"
            }, devices: """
                  - {id: board-w05, profile: modbus-window-board, bus: line-a, address: 3, window: "5"}
                """, more: """
                hours:
                  monday-friday: ["09:00-17:00"]
                  late-call-minutes: \(minutes)
                """, hallClock: clock)
            let closed = await eventually {
                (try? await hall.gateway.outbox.entries(after: 0, limit: 100))?.contains { $0.id.hasPrefix("boards-off-") } == true
            }
            let darkBefore = !board.isOn
            let test = try await run(gatewaydPath, ["display", "test", "board-w05"] + hall.cli)
            await hall.stop()

            #expect(closed && darkBefore)
            if minutes > 0 {
                #expect(test.status == 0, "\(test.standardOutput)\(test.standardError)")
                #expect(test.standardOutput.contains(
                    "answered and acknowledged; switched on for it (the hall is closed), off again in 30 min"), "\(test.standardOutput)")
                #expect(board.isOn && board.display.text.hasPrefix("设备测试 "), "\(board.display.text)")
            } else {
                // Nothing could be seen: no pass.
                #expect(test.status == 1, "\(test.standardOutput)\(test.standardError)")
                #expect(test.standardError.contains(
                    "the hall is closed and its boards stay off (late-call-minutes: 0): board-w05 shows nothing"),
                        "\(test.standardError)")
                #expect(!board.isOn)
            }
        }
    }

    @Test func padTestHearsTheKeysOfAnFF68Pad() async throws {
        let bus = try MockFF68Bus()
        defer { bus.stop() }
        let folder = try TemporaryDirectory()
        let config = try ff68Pad9Hall(bus, folder)
        // The citizen pressed 满意 (code 2); the pad repeats the frame until it is acknowledged, so the command hears it.
        bus.pressEvaluatorKey(2, address: 9)
        let result = try await run(gatewaydPath, ["pad", "test", "--config", config, "eval-w09", "--seconds", "1"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("hall.rating.submitted"), "\(result.standardOutput)")
        #expect(result.standardOutput.contains("满意"))
        // Nothing acknowledged: the rating stays for the daemon.
        #expect(bus.acknowledged.isEmpty)
    }

    @Test func aDirectPadTestOfAnFF68PadIsNotPassedByAnotherDevicesFrames() async throws {
        // From a docs trial: with the daemon stopped, the test of one pad passed on another pad's key and on a caller's.
        let bus = try MockFF68Bus()
        defer { bus.stop() }
        let folder = try TemporaryDirectory()
        let config = try ff68Pad9Hall(bus, folder)
        // Both repeat their frames until acknowledged, which nothing does here: the test hears them all along.
        bus.pressEvaluatorKey(2, address: 8)
        bus.pressCallerKeys([0x0C], address: 33)
        let result = try await run(gatewaydPath, ["pad", "test", "--config", config, "eval-w09", "--seconds", "1"])
        #expect(result.status == 1, "\(result.standardOutput)")
        #expect(result.standardOutput.contains("listen: nothing heard in 1 s"), "\(result.standardOutput)")
        #expect(!result.standardOutput.contains("address 8,") && !result.standardOutput.contains("address 33,"))
        // A probe that listens says the same, and fails the same (from the trial: it exited 0).
        let probe = try await run(gatewaydPath, ["probe", "--config", config, "eval-w09", "--listen", "1"])
        #expect(probe.status == 1 && probe.standardOutput.contains("listen: nothing heard in 1 s"), "\(probe.standardOutput)")
    }

    @Test func aBoardWhoseAddressHoldsAPadIsNotReadAsABoard() async throws {
        // From a docs trial: "another model answers", then the pad's registers decoded as a board's (a lamp fault,
        // -28.8 °C), which sends a technician the wrong way.
        let pad = MockModbusEvaluator(staffId: "0105")
        let server = try MockModbusServer.rtu(units: [21: pad])
        defer { server.stop() }
        let folder = try TemporaryDirectory()
        let config = try rtuHall(
            folder, server, devices: "  - {id: board-w21, profile: modbus-window-board, bus: line-a, address: 21, window: \"21\"}")
        for command in [["display", "test"], ["probe"]] {
            let result = try await run(gatewaydPath, command + ["--config", config, "board-w21"])
            #expect(result.status == 1, "\(command): \(result.standardOutput)")
            let output = result.standardOutput
            #expect(output.contains("board-w21 reports:\n  not read as a "), "\(command): \(output)")
            #expect(!output.contains("°C") && !output.contains("lamp"), "\(command): \(output)")
            #expect(result.standardError.contains("another model answers"), "\(command): \(result.standardError)")
        }
    }

    @Test func padTestKeepsPollingAModbusPadWhileTheTechnicianPressesKeys() async throws {
        // From a trial: with the daemon stopped the test polled once, then listened to a pad that never speaks unasked.
        let pad = MockModbusEvaluator(staffId: "0105", bootId: 0x0102_0304)
        let server = try MockModbusServer.rtu(units: [4: pad])
        defer { server.stop() }
        let folder = try TemporaryDirectory()
        let config = try rtuHall(
            folder, server, devices: "  - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: \"5\"}")
        let test = try ChildProcess(gatewaydPath, ["pad", "test", "--config", config, "eval-w05", "--seconds", "3"])
        // Pressed once the test's first poll is answered: the key is the technician's, not what the pad held.
        #expect(await eventually { server.requestsAnswered >= 1 })
        pad.press(.satisfied)
        let result = try await test.wait()
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
        let ratings = result.standardOutput.components(separatedBy: "hall.rating.submitted").count - 1
        #expect(ratings == 1, "the one key, once, however many polls read it: \(result.standardOutput)")
        #expect(result.standardOutput.contains("listen: polled "), "\(result.standardOutput)")
        #expect(pad.acknowledged == 0, "nothing acknowledged: the rating stays for the daemon")
    }

    @Test(arguments: [1, 3])
    func aPadTestThatMissesOnePollAmongManyPassesAndSaysSo(missed: Int) async throws {
        // From a second read: one unanswered poll while listening (noise, a key held) failed the whole test, exit 1;
        // and from the next: a missed first poll (a pad slow to wake) counted every later one as unanswered.
        let pad = OneSilentRequest(MockModbusEvaluator(staffId: "0105", bootId: 0x0102_0304), silentAt: missed)
        let server = try MockModbusServer.rtu(units: [4: pad])
        defer { server.stop() }
        let folder = try TemporaryDirectory()
        let config = try rtuHall(
            folder, server, devices: "  - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: \"5\"}")
        let result = try await run(gatewaydPath, ["pad", "test", "--config", config, "eval-w05", "--seconds", "2"])
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
        // The first poll is before listening: missed, it shows in its own step, not in the listening's count.
        #expect(result.standardOutput.contains(missed == 1 ? "no answer within" : "; 1 unanswered"), "\(result.standardOutput)")
        #expect(!result.standardOutput.contains("none answered"), "\(result.standardOutput)")
        #expect(server.requestsAnswered >= 3, "polls answered after the missed one")
    }

    /// A pad that does not answer its `silentAt`-th request (from 1), then answers again.
    final class OneSilentRequest: MockModbusUnit, Sendable {
        let pad: MockModbusEvaluator
        let silentAt: Int
        private let requests = Mutex(0)
        init(_ pad: MockModbusEvaluator, silentAt: Int) { (self.pad, self.silentAt) = (pad, silentAt) }
        var registers: [UInt16] { pad.registers }
        // Asked once per request addressed to this unit.
        var answering: Bool { requests.withLock { $0 += 1; return $0 != silentAt } }
        func accept(writtenRegisters: [UInt16]) { pad.accept(writtenRegisters: writtenRegisters) }
        func registersForRequest() -> [UInt16] { pad.registersForRequest() }
    }

    @Test func aTraceOfAnFF68BusTellsTheKeysFromTheGatewaysAcknowledgements() async throws {
        // From a trial: on FF 68 the host's acknowledgement of a caller is the caller's own frame, and FUNC 01 with a
        // key is an evaluator's acknowledgement or a caller's key; trace said both readings of every such frame.
        let bus = try MockFF68Bus()
        defer { bus.stop() }
        let folder = try TemporaryDirectory()
        let (daemon, config, api) = try await ff68Daemon(bus, folder)
        defer { daemon.interrupt() }
        let capture = folder.file("ff68-1.trace")
        let trace = try ChildProcess(
            gatewaydPath, ["trace", "ff68-1", "--seconds", "20", "--config", config, "--api", api, "--save", capture])
        defer { trace.interrupt() }
        let padAcknowledgement = "address 3, function 01, evaluator key 2 acknowledged"
        let callerAcknowledgement = "address 33, function 01, caller keys 0C (call-next) acknowledged"
        #expect(
            await eventually(timeout: .seconds(15)) {
                // Pressed again until the trace, which subscribes a moment after it starts, has seen both answered.
                bus.pressEvaluatorKey(2, address: 3)
                bus.pressCallerKeys([0x0C], address: 33)
                return trace.output.contains(padAcknowledgement) && trace.output.contains(callerAcknowledgement)
            }, "\(trace.output)")
        // A read's frames are printed under its first, without an arrow; a write is one frame with →.
        let lines = trace.output.split(separator: "\n")
        let padKeys = lines.filter { $0.contains("FF 68 03 03 68 03 11 02 16 16") }
        #expect(!padKeys.isEmpty && padKeys.allSatisfy { !$0.contains("→") && $0.hasSuffix("address 3, function 11, evaluator key 2") },
                "\(trace.output)")
        let callerFrames = lines.filter { $0.contains("FF 68 03 03 68 21 01 0C 2E 16") }
        #expect(callerFrames.contains { !$0.contains("→") && $0.hasSuffix("address 33, function 01, caller keys 0C (call-next)") },
                "\(trace.output)")
        #expect(callerFrames.filter { $0.contains("→") }.allSatisfy { $0.hasSuffix(callerAcknowledgement) }, "\(trace.output)")
        // The configuration says who is at each address and the trace which way a frame went: no alternatives left.
        #expect(!trace.output.contains(", or "), "\(trace.output)")
        // The saved capture keeps who is where: read back, it says the same.
        trace.interrupt()
        _ = try await trace.wait()
        let replay = try await run(gatewaydPath, ["decode", "--file", capture])
        #expect(replay.standardOutput.contains(callerAcknowledgement) && !replay.standardOutput.contains(", or "),
                "\(replay.standardOutput)")
    }

    @Test func aPhoneNumberInAPadsStaffFieldReachesNeitherEventsNorTheLog() async throws {
        let pad = MockModbusEvaluator(staffId: "13812345678")
        let server = try MockModbusServer.rtu(units: [4: pad])
        defer { server.stop() }
        let folder = try TemporaryDirectory()
        let config = try hall(
            folder, buses: "  - {id: line-a, transport: modbus-rtu, port: \(try #require(server.endpoint.devicePath)), poll-interval-ms: 100}",
            devices: "  - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: \"4\"}")
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        pad.press(.satisfied)
        #expect(await eventually { daemon.output.contains("hall.rating.submitted") && daemon.output.contains("staff-id-refused") },
                "\(daemon.output)")
        // More ratings with the same field: the field's fault is said once (from a review: one a rating).
        pad.press(.dissatisfied)
        pad.press(.satisfied)
        #expect(await eventually { daemon.output.components(separatedBy: "hall.rating.submitted").count == 4 }, "\(daemon.output)")
        // What the central store gets: the local store's copy.
        #expect(await eventually {
            (try? await run(gatewaydPath, ["events", "--store", folder.path + "/events.sqlite", "--json"]))?
                .standardOutput.contains("staff-id-refused") == true
        })
        let stored = try await run(gatewaydPath, ["events", "--store", folder.path + "/events.sqlite", "--json"])
        #expect(stored.standardOutput.contains("hall.rating.submitted"), "\(stored.standardOutput)")
        #expect(!stored.standardOutput.contains("13812345678") && !daemon.output.contains("13812345678"),
                "\(stored.standardOutput)\(daemon.output)")
        #expect(stored.standardOutput.components(separatedBy: #""fault":"staff-id-refused""#).count == 2, "\(stored.standardOutput)")
        // Named as the profile names the registers (a duty officer's trial: 'staff' is the API's field, not the pad's).
        #expect(daemon.output.contains("'staff-id' holds what reads as a mobile or resident ID number"), "\(daemon.output)")
    }

    @Test func aPadTestThroughTheDaemonSaysWhichEventsTheTechniciansKeysMade() async throws {
        // From an installer's trial: the test listed the pad's ten latest events, the keys pressed during it among
        // those before it, with nothing to tell them apart.
        let pad = MockModbusEvaluator(staffId: "0105", bootId: 0x0102_0304)
        let server = try MockModbusServer.rtu(units: [4: pad])
        defer { server.stop() }
        let folder = try TemporaryDirectory()
        let config = try hall(
            folder, buses: "  - {id: line-a, transport: modbus-rtu, port: \(try #require(server.endpoint.devicePath)), poll-interval-ms: 100}",
            devices: "  - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: \"5\"}")
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        #expect(await eventually { CLITests.apiURL(daemon) != nil }, "the daemon's API listens: \(daemon.output)")
        let cli = ["--config", config, "--api", try #require(CLITests.apiURL(daemon))]
        pad.press(.dissatisfied)
        #expect(await eventually { pad.acknowledged == 1 }, "the rating before the test is committed")

        let untouched = try await run(gatewaydPath, ["pad", "test", "eval-w05", "--seconds", "1"] + cli)
        let quiet = untouched.standardOutput
        #expect(quiet.contains("events before:\n") && quiet.hasSuffix("events during the test: none\n"), "\(quiet)")
        #expect(quiet.components(separatedBy: "不满意 → level 2").count == 2, "the rating before it, listed before it: \(quiet)")

        let test = try ChildProcess(gatewaydPath, ["pad", "test", "eval-w05", "--seconds", "3"] + cli)
        // Pressed once a second until the test ends, as a technician does (it listens from a moment after its start),
        // few enough for the test's listing of ten.
        var pressed = ContinuousClock.now - .seconds(1)
        _ = await eventually(timeout: .seconds(15)) {
            if ContinuousClock.now - pressed >= .seconds(1) {
                pad.press(.satisfied)
                pressed = ContinuousClock.now
            }
            return !test.isRunning
        }
        let result = try await test.wait()
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
        let output = result.standardOutput
        let before = try #require(output.range(of: "events before:\n"), "\(output)")
        let during = try #require(output.range(of: "events during the test:\n"), "\(output)")
        #expect(output[before.upperBound..<during.lowerBound].contains("不满意 → level 2"), "\(output)")
        let meanwhile = output[during.upperBound...]
        #expect(meanwhile.contains("满意 → level 4") && !meanwhile.contains("level 2"), "\(output)")
        // The pad answers every request: none of the exchanges the tap saw is unanswered, the last cut by its end either.
        #expect(!output.contains("no answer seen") && !quiet.contains("no answer seen"), "\(quiet)\n\(output)")
    }

    @Test func aProbeThroughTheDaemonOfABusyPadJudgesOnlyTheExchangesItReadToTheEnd() async throws {
        // From a test: the probe shows up to four exchanges, and began a fifth it did not read: a pad rated at every
        // poll (each poll followed by an acknowledgement) showed its last acknowledgement as `no answer seen`; and
        // every acknowledgement of it had timed out (below).
        let pad = MockModbusEvaluator(staffId: "0105", bootId: 0x0102_0304)
        let server = try MockModbusServer.rtu(units: [4: pad])
        defer { server.stop() }
        let folder = try TemporaryDirectory()
        let config = try hall(
            folder, buses: "  - {id: line-a, transport: modbus-rtu, port: \(try #require(server.endpoint.devicePath)), poll-interval-ms: 50}",
            devices: "  - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: \"5\"}")
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        #expect(await eventually { CLITests.apiURL(daemon) != nil }, "the daemon's API listens: \(daemon.output)")
        let cli = ["--config", config, "--api", try #require(CLITests.apiURL(daemon))]
        // A key pressed each time the last was taken: an acknowledgement follows every poll.
        pad.pressedOnAcknowledgement = .satisfied
        pad.press(.satisfied)
        // Past the start, whose first acknowledgements may be taken for the line's echo until three polls have told
        // (below): one of those in a probe's view is a timeout indeed.
        #expect(await eventually { pad.acknowledged >= 3 })
        var last = ""
        for _ in 1...8 {
            let probe = try await run(gatewaydPath, ["probe", "eval-w05"] + cli)
            #expect(probe.status == 0, "\(probe.standardOutput)")
            #expect(!probe.standardOutput.contains("no answer seen"), "\(probe.standardOutput)")
            last = probe.standardOutput
        }
        // Its acknowledgements are answered with their own bytes, as fast as no wire allows: not taken for the line's
        // echo (from this test: every one timed out), but for the first or two while the polls tell.
        let timeouts = try #require(last.firstMatch(of: /answered, (\d+) timeouts/).flatMap { Int($0.1) }, "\(last)")
        #expect(timeouts <= 2, "\(last)")
    }

    @Test func padTestThroughTheDaemonListensForTheKeysOfAnFF68Pad() async throws {
        // From a trial: through the daemon the test returned after a second whatever --seconds said, showed the
        // gateway's acknowledgement as the pad's "poll", and failed a pad that had been pressed.
        let bus = try MockFF68Bus()
        defer { bus.stop() }
        let folder = try TemporaryDirectory()
        let (daemon, config, api) = try await ff68Daemon(bus, folder)
        defer { daemon.interrupt() }
        let cli = ["--config", config, "--api", api]
        // Nothing pressed: nothing heard, and the test fails after the time given.
        let started = ContinuousClock.now
        let silent = try await run(gatewaydPath, ["pad", "test", "eval-w03", "--seconds", "2"] + cli)
        #expect(ContinuousClock.now - started >= .seconds(2))
        #expect(silent.status == 1 && silent.standardOutput.contains("listen: nothing heard in 2 s"), "\(silent.standardOutput)")
        // The technician presses 满意 during the test; the caller at 33 speaks too, and is not the pad.
        let test = try ChildProcess(gatewaydPath, ["pad", "test", "eval-w03", "--seconds", "3"] + cli)
        // Pressed again until the test ends: its listening starts a moment after the command does.
        _ = await eventually(timeout: .seconds(10)) {
            bus.pressCallerKeys([0x0C], address: 33)
            bus.pressEvaluatorKey(2, address: 3)
            return !test.isRunning
        }
        let result = try await test.wait()
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.contains("listen: heard") && lines.contains("    address 3, function 11, evaluator key 2"), "\(lines)")
        #expect(lines.contains("    address 3, function 01, evaluator key 2 acknowledged"), "the gateway's answer: \(lines)")
        #expect(!lines.contains { $0.hasPrefix("poll:") || $0.contains("address 33,") }, "\(lines)")
    }

    @Test func throughTheRunningDaemon() async throws {
        let board = MockModbusBoard()
        let pad = MockModbusEvaluator(staffId: "0104")
        let server = try MockModbusServer.rtu(units: [4: pad, 21: board])
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        let printer = try MockEscPosPrinter()
        defer { printer.stop() }
        let folder = try TemporaryDirectory()
        let config = try hall(
            folder,
            buses: """
                  - {id: line-a, transport: modbus-rtu, port: \(path), response-timeout-ms: 200, poll-interval-ms: 100}
                  - {id: kiosk-1, transport: serial, port: \(printer.devicePath), poll-interval-ms: 100}
                """,
            devices: """
                  - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "4"}
                  - {id: board-w04, profile: modbus-window-board, bus: line-a, address: 21, window: "4"}
                  - {id: printer-1, profile: escpos-80mm, bus: kiosk-1, address: 1}
                """)
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        func apiURL() -> String? {
            guard
                let range = daemon.output.range(
                    of: #"listening on (http://[0-9.]+:[0-9]+)"#, options: .regularExpression)
            else { return nil }
            return String(daemon.output[range].split(separator: " ").last ?? "")
        }
        #expect(await eventually { apiURL() != nil }, "the daemon's API listens: \(daemon.output)")
        let cli = ["--config", config, "--api", try #require(apiURL())]

        #expect(await eventually { (try? await run(gatewaydPath, ["probe", "eval-w04"] + cli))?.status == 0 })
        let probe = try await run(gatewaydPath, ["probe", "eval-w04"] + cli)
        #expect(
            probe.standardOutput.contains(
                "probe eval-w04 (modbus-evaluator-3key) on bus line-a, \(path) at 9600 8N1: "
                    + "through the running daemon"), "\(probe.standardOutput)")
        #expect(probe.standardOutput.contains("polls: answered"))
        // The daemon's next poll of the pad, seen on the bus's tap: in hex and in words.
        #expect(probe.standardOutput.contains("poll: answered"), "\(probe.standardOutput)")
        #expect(probe.standardOutput.contains("→ 04 03 00 00 00 20"), "\(probe.standardOutput)")
        #expect(probe.standardOutput.contains("← 04 03 40"), "\(probe.standardOutput)")
        // One poll, not each the tap saw (from the trial: the same poll three times); its registers in words, as
        // with the port opened directly; times in the hall's zone.
        #expect(probe.standardOutput.components(separatedBy: "poll: answered").count == 2, "\(probe.standardOutput)")
        #expect(probe.standardOutput.contains("eval-w04 reports:\n  status 0x0003: ready\n"), "\(probe.standardOutput)")
        #expect(probe.standardOutput.range(of: #"last seen \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n"#, options: .regularExpression) != nil,
                "\(probe.standardOutput)")

        let display = try await run(gatewaydPath, ["display", "test", "board-w04", "--text", "测试 42"] + cli)
        #expect(display.status == 0, "\(display.standardError)")
        #expect(display.standardOutput.contains("answered and acknowledged"), "\(display.standardOutput)")
        #expect(board.display.text == "测试 42")
        // A board that answers its writes but does not take the text fails the test: it shows nothing.
        board.acknowledging = false
        let stuck = try await run(gatewaydPath, ["display", "test", "board-w04", "--text", "测试 43"] + cli)
        #expect(stuck.status == 1, "\(stuck.standardOutput)")
        #expect(stuck.standardError.contains("board-w04 did not acknowledge show-text: it has not shown it"),
                "\(stuck.standardError)")
        board.acknowledging = true
        // status names the lit and the dark boards (from a night technician's trial: the table said only `online`).
        let lit = try await run(gatewaydPath, ["status"] + cli)
        #expect(lit.standardOutput.contains("\nboards' screens: lit board-w04\n"), "\(lit.standardOutput)")
        HallDayGatewayTests.setScreen(board, on: false)
        #expect(await eventually {
            (try? await run(gatewaydPath, ["status"] + cli))?.standardOutput.contains("\nboards' screens: dark board-w04\n") == true
        })
        let dark = try await run(gatewaydPath, ["status", "--json"] + cli)
        let darkReport = try #require(try JSONSerialization.jsonObject(with: Data(dark.standardOutput.utf8)) as? [String: Any])
        let boardReport = (darkReport["devices"] as? [[String: Any]])?.first { $0["device"] as? String == "board-w04" }
        // Without `hours:` nobody knows whether the hall needs it lit: given, not judged.
        #expect(boardReport?["screen"] as? String == "off" && boardReport?["condition"] == nil, "\(dark.standardOutput)")
        HallDayGatewayTests.setScreen(board, on: true)

        #expect(
            await eventually { (try? await run(gatewaydPath, ["printer", "status", "printer-1"] + cli))?.status == 0 })
        let test = try await run(gatewaydPath, ["printer", "test", "printer-1"] + cli)
        #expect(test.status == 0, "\(test.standardOutput) \(test.standardError)")
        #expect(printer.tickets.count == 1)
        // The test ticket was the roll's last: the report is the paper after it, not before.
        printer.setPaper(tickets: 1)
        let last = try await run(gatewaydPath, ["printer", "test", "printer-1"] + cli)
        #expect(last.status == 1 && last.standardOutput.contains("paper-out"), "\(last.standardOutput)")
        #expect(printer.tickets.count == 2)
        printer.set(.init())
        #expect(
            await eventually { (try? await run(gatewaydPath, ["printer", "status", "printer-1"] + cli))?.status == 0 })

        printer.set(.init(paperOut: true))
        #expect(
            await eventually { (try? await run(gatewaydPath, ["printer", "status", "printer-1"] + cli))?.status == 1 })
        let out = try await run(gatewaydPath, ["printer", "status", "printer-1"] + cli)
        #expect(
            out.standardOutput.hasPrefix("printer-1: paper-out")
                && out.standardOutput.contains("through the running daemon"),
            "\(out.standardOutput)")
        #expect(out.standardError.contains("printer-1 cannot print: paper-out"))

        // The daemon owns the pads' line: a direct Modbus read is refused instead of garbling its polls.
        let direct = try await run(gatewaydPath, ["modbus", "read", "--port", path, "-a", "4", "0"])
        #expect(direct.status == 4)
        #expect(direct.standardError.contains("\(path) is in use by the running gateway (gatewayd, pid "),
                "\(direct.standardError)")
        // So is listening beside it: a second reader of the line would take the daemon's answers.
        let listening = try await run(gatewaydPath, ["trace", "line-a", "--direct", "--seconds", "2"] + cli)
        #expect(listening.status == 4)
        #expect(listening.standardError.contains("\(path) is in use by the running gateway (gatewayd, pid "),
                "\(listening.standardError)")
        #expect(listening.standardOutput.isEmpty, "nothing read: \(listening.standardOutput)")

        // Unplugged: the printer's last condition is no word on it now (from a trial: "printer-1: online", exit 0).
        printer.set(.init())
        #expect(
            await eventually { (try? await run(gatewaydPath, ["printer", "status", "printer-1"] + cli))?.status == 0 })
        printer.stop()
        #expect(await eventually {
            (try? await run(gatewaydPath, ["printer", "status", "printer-1"] + cli))?.standardError.contains("printer-1 is offline") == true
        })
        let unplugged = try await run(gatewaydPath, ["printer", "status", "printer-1"] + cli)
        #expect(unplugged.status == 1 && !unplugged.standardOutput.hasPrefix("printer-1: online"),
                "\(unplugged.standardOutput) \(unplugged.standardError)")
        let unpluggedJSON = try await run(gatewaydPath, ["printer", "status", "printer-1", "--json"] + cli)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(unpluggedJSON.standardOutput.utf8)) as? [String: Any])
        #expect(report["answered"] as? Bool == false && report["printerState"] == nil, "\(report)")
    }
}
