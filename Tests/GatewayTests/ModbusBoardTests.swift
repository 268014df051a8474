@testable import DeviceGateway
import Foundation
import GRDB
import MockDevices
import Protocols
import Testing

/// A window board on Modbus RTU driven through the real gateway: commands are written before polls,
/// the board's acknowledgement and its fault bit come back as events.
@Suite struct ModbusBoardTests {
    /// Over RTU and over TCP (one connection, two unit ids): the first call comes before the board was polled.
    @Test(arguments: ["modbus-rtu", "modbus-tcp"])
    func callsReachTheBoardAndItsAcknowledgementAndFaultsBecomeEvents(transport: String) async throws {
        let board = MockModbusBoard()
        let pad = MockModbusEvaluator(staffId: "0105")
        let server = try MockModbusServer.serving([3: board, 4: pad], over: transport)
        defer { server.stop() }
        let folder = try TemporaryDirectory()
        let (config, profiles) = try ConfigLoader.parse("""
            hall: {id: test-hall}
            state-directory: \(folder.path)/state
            profiles: \(profilesDirectory)
            buses:
              - {id: line-a, \(server.endpoint.busKeys), response-timeout-ms: 200, poll-interval-ms: 50}
            devices:
              - {id: board-w05, profile: modbus-window-board, bus: line-a, address: 3, window: "5"}
              - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "5"}
            sinks:
              - {type: sqlite, path: \(folder.path)/events.sqlite}
            """, file: "test.yaml", relativeTo: folder.path)
        let gateway = try Gateway(config: config, profiles: profiles, logger: CapturedLog().logger)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        defer { stop.stop() }

        try await gateway.send(.call(ticket: "A023", window: "5"), to: "board-w05")
        #expect(board.display.text == "请A023号到5号窗口")
        #expect(board.display.mode == .steady)
        try await gateway.send(.recall(ticket: "A023", window: "5"), to: "board-w05")
        #expect(board.display.mode == .blinking)
        await #expect(throws: GatewayError.self) { try await gateway.send(.clear, to: "eval-w05") }
        // 33 hanzi: one more than the board's 64 bytes hold; refused before anything is written.
        await #expect(throws: GatewayError.self) {
            try await gateway.send(.showText(String(repeating: "满", count: 33)), to: "board-w05")
        }
        board.setLampFault(true)
        board.setTemperature(71.5)

        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        let arrived = await eventually {
            let events = (try? await store.events(limit: 1000)) ?? []
            let acknowledged = events.filter { $0.type == "hall.board.acknowledged" }
            let faults = events.filter { $0.type == "hall.device.fault" }
            return acknowledged.count == 2 && faults.count == 2
        }
        #expect(arrived)
        let events = try await store.events(limit: 1000)
        let acknowledgements = events.compactMap { event -> BoardAcknowledged? in
            if case .boardAcknowledged(let acknowledged) = event.data { return acknowledged }
            return nil
        }
        #expect(Set(acknowledgements.map(\.command)) == ["call", "recall"])
        #expect(acknowledgements.allSatisfy { $0.accepted })
        let faults = events.compactMap { event -> DeviceFault? in
            guard event.source == "/halls/test-hall/devices/board-w05", event.subject == "window/5",
                  case .deviceFault(let fault) = event.data else { return nil }
            return fault
        }
        #expect(Set(faults.map(\.fault)) == ["lamp-fault", "temperature-high"])
        // The profile reads register 4 as int16 in tenths of a degree: the board's 715 is 71.5 °C.
        #expect(faults.contains { $0.detail == "temperature 71.5 °C, above the profile's limit of 65.0 °C" }, "\(faults)")
        stop.stop()
        await running.value
    }

    /// From a trial: with a pad configured at the board's address and the board at a pad's, the gateway read the
    /// board as a pad (45,998 "ratings lost", 16 unknown keys), wrote the pad's acknowledgement into the board's model
    /// code, and a call's text over the pad's key ring and counter.
    @Test func anotherModelAtADevicesAddressIsNeitherReadAsItNorWrittenTo() async throws {
        let board = MockModbusBoard()
        let pad = MockModbusEvaluator(staffId: "0105")
        pad.press(.satisfied)
        let server = try MockModbusServer.serving([21: board, 1: pad], over: "modbus-rtu")
        defer { server.stop() }
        let (padBefore, boardBefore) = (pad.registers, board.registers)
        let folder = try TemporaryDirectory()
        let gateway = try testGateway(
            buses: "  - {id: line-a, \(server.endpoint.busKeys), response-timeout-ms: 200, poll-interval-ms: 50}",
            devices: """
                  - {id: eval-w21, profile: modbus-evaluator-3key, bus: line-a, address: 21, window: "21"}
                  - {id: board-w01, profile: modbus-window-board, bus: line-a, address: 1, window: "1"}
                """, folder: folder)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        defer { stop.stop() }
        // A call at once, before the board was polled: the poll it waits for shows another model, and that is the
        // reason given (from a review: "no answer within 0.2 seconds; command not sent").
        let early = await #expect(throws: GatewayError.self) {
            try await gateway.send(.call(ticket: "A023", window: "1"), to: "board-w01")
        }
        #expect(early?.message.contains("another model answers at address 1") == true, "\(String(describing: early))")

        let told = await eventually {
            let states = await gateway.deviceStates()
            return states.count == 2 && states.allSatisfy { $0.online == false }
        }
        #expect(told)
        let states = await gateway.deviceStates()
        let padAtBoard = try #require(states.first { $0.device == "eval-w21" }?.offlineReason)
        #expect(padAtBoard == "another model answers at address 21: registers 6–7 read 0x000F 0x0001, where this model "
                + "has 0x0003 0x4856 (a wrong address in the configuration?); nothing is read from it or written to it",
                "\(padAtBoard)")
        let boardAtPad = try #require(states.first { $0.device == "board-w01" }?.offlineReason)
        #expect(boardAtPad.hasPrefix("another model answers at address 1: register 5 read 0x0000, where this model has 0x4C42"),
                "\(boardAtPad)")
        await #expect(throws: GatewayError.self) { try await gateway.send(.call(ticket: "A023", window: "1"), to: "board-w01") }
        // The check says it answers (from a docs trial: "does not answer" while `status` counted its answers).
        let problems = await gateway.deviceCheck().problems
        #expect(problems.contains { $0.hasPrefix("board-w01 is out of service on ") && $0.contains(": another model answers at address 1") },
                "\(problems)")
        #expect(!problems.contains { $0.contains("does not answer") }, "\(problems)")
        stop.stop()
        await running.value

        #expect(pad.registers == padBefore && board.registers == boardBefore, "nothing was written to either")
        let events = try await SQLiteEventStore(name: "reader", path: folder.file("events.sqlite")).events(limit: 1000)
        #expect(!events.contains { $0.type == HallEventType.deviceFault || $0.type == HallEventType.ratingSubmitted },
                "\(events.map(\.type))")
    }

    /// From a review: a device that refuses its poll as an illegal address (a board implementing fewer registers
    /// than its profile reads) stayed online, so the check before opening passed it. pymodbus holds six registers.
    @Test func aDeviceThatRefusesItsPollIsOfflineWithTheRefusal() async throws {
        // Six registers each: a pad's poll reads 32, a board's 8 (its brightness and power at 6 and 7: firmware
        // without them).
        let json = #"{"1": [1, 1, 0, 0, 250, 19522], "2": [1, 1, 0, 0, 350, 19522]}"#
        let server = try PythonService("pymodbus_tcp_server.py", [json])
        defer { server.stop() }
        let port = try await server.port("port")
        let folder = try TemporaryDirectory()
        let gateway = try testGateway(
            buses: "  - {id: lan, transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(port), poll-interval-ms: 50}",
            devices: """
                  - {id: eval-w01, profile: modbus-evaluator-3key, bus: lan, address: 1, window: "1"}
                  - {id: board-w01, profile: modbus-window-board, bus: lan, address: 2, window: "1"}
                """,
            folder: folder)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        defer { stop.stop() }
        let told = await eventually { await gateway.deviceStates().allSatisfy { $0.online == false } }
        let reasons = await gateway.deviceStates().map(\.offlineReason)
        stop.stop()
        await running.value
        #expect(told)
        #expect(reasons.allSatisfy { $0?.hasPrefix("refuses its poll: Modbus exception 2 (illegal data address") == true }, "\(reasons)")
        // The board's says what to change (the shipped profile reads its screen since 3154381).
        #expect(reasons.last??.hasSuffix("; a board without registers 6 and 7 needs a profile without brightness and power, its block ending before them") == true,
                "\(reasons)")
        #expect(reasons.first??.contains("a board without") == false, "\(reasons)")
    }

    /// From a review: a device offline for its silence kept that reason when another model answered at its address.
    @Test func anOfflineDevicesReasonFollowsWhatItSaysNow() {
        var health = DeviceHealth(busId: "line-a", hallId: "h", logger: CapturedLog().logger)
        let pad = DeviceConfig(id: "eval-w01", profile: "modbus-evaluator-3key", bus: "line-a", address: 1, window: "1")
        for _ in 0..<DeviceHealth.missesBeforeOffline { _ = health.missed(pad, reason: "no answer to poll within 0.5 seconds", at: Date()) }
        #expect(health.offlineReason("eval-w01") == "no answer to poll within 0.5 seconds")
        let events = health.answered(pad, ready: false, reason: "another model answers at address 1", at: Date())
        #expect(events.isEmpty, "still offline: no second offline event")
        #expect(health.offlineReason("eval-w01") == "another model answers at address 1")
        _ = health.answered(pad, ready: false, at: Date())
        #expect(health.offlineReason("eval-w01") == "device reports not ready")
        #expect(health.states(of: [pad]).first?.answersWhileOffline == true)
        // Its bus down: nothing answers (from a second read: the check said "out of service" of a pulled adapter).
        _ = health.unreachable([pad], reason: "the port is gone", at: Date())
        #expect(health.states(of: [pad]).first?.answersWhileOffline == false)
        _ = health.answered(pad, ready: false, at: Date())
        #expect(health.states(of: [pad]).first?.answersWhileOffline == true)
        // Silent again: the reason is the silence, not the answer it gave before (it kept that).
        for _ in 0..<DeviceHealth.missesBeforeOffline {
            #expect(health.missed(pad, reason: "no answer to poll within 0.5 seconds", at: Date()).isEmpty)
        }
        #expect(health.offlineReason("eval-w01") == "no answer to poll within 0.5 seconds")
        #expect(health.states(of: [pad]).first?.answersWhileOffline == false)
    }

    @Test func aRestartedGatewayCountsOnFromWhatTheBoardAcknowledged() async throws {
        let board = MockModbusBoard()
        let server = try MockModbusServer.rtu(units: [3: board])
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        for (round, ticket) in ["A023", "A024"].enumerated() {
            let folder = try TemporaryDirectory()
            let gateway = try testGateway(
                buses: "  - {id: line-a, transport: modbus-rtu, port: \(path), response-timeout-ms: 200, poll-interval-ms: 50}",
                devices: "  - {id: board-w05, profile: modbus-window-board, bus: line-a, address: 3, window: \"5\"}",
                folder: folder)
            let stop = StopSignal()
            let running = Task { await gateway.run(until: stop) }
            // Sent before the bus ever polled the board: the counter must still differ from the board's.
            try await gateway.send(.call(ticket: ticket, window: "5"), to: "board-w05")
            #expect(board.display.text == "请\(ticket)号到5号窗口", "round \(round + 1)")
            let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
            #expect(await eventually { (try? await store.events(types: ["hall.board.acknowledged"], limit: 10).count) == 1 })
            stop.stop()
            await running.value
            await #expect(throws: GatewayError.self, "a stopped bus refuses at once") {
                try await gateway.send(.clear, to: "board-w05")
            }
        }
    }

    @Test func aCallIsDoneOnlyOnceTheBoardAcknowledgedIt() async throws {
        let line = try BoardLine()
        let (board, folder) = (line.board, line.folder)
        let center = CommandCenter(gateway: line.gateway)

        let shown = try await center.execute(.call(window: "5", ticket: "A023"))
        #expect(shown.status == .done)
        #expect(board.display.text == "请A023号到5号窗口")
        // A board that redraws first acknowledges at its third poll after the command: still in time.
        board.requestsBeforeAcknowledging = 4
        let slow = try await center.execute(.call(window: "5", ticket: "A022"))
        #expect(slow.status == .done, "\(slow.devices)")
        board.requestsBeforeAcknowledging = 0
        #expect(try await center.execute(.call(window: "5", ticket: "A023")).status == .done)

        // The board answers its writes but takes nothing: the queue system hears it was not shown.
        board.acknowledging = false
        let lost = try await center.execute(.call(window: "5", ticket: "A024"))
        #expect(lost.status == .timedOut)
        #expect(lost.devices.map(\.detail) == ["board-w05 did not acknowledge call: it has not shown it"])
        #expect(board.display.text == "请A023号到5号窗口")
        // What the hall sees is in the event for the central store too.
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        #expect(await eventually { (try? await store.events(types: ["hall.command.failed"], limit: 10).count) == 1 })
        await line.stop()
    }

    /// From a night technician's trial: after a `display test --direct` on a board the daemon polls (a Modbus TCP
    /// board), the daemon's next command reused the test's counter; the board took it for the test again and the
    /// daemon for done: a call reported shown that nobody saw.
    @Test func aCommandAfterAnotherMastersCommandIsTakenByTheBoard() async throws {
        let line = try BoardLine()
        let board = line.board
        let center = CommandCenter(gateway: line.gateway)
        #expect(try await center.execute(.call(window: "5", ticket: "A023")).status == .done)
        // Another master (the technician's direct test) writes a text and the next counter; the board takes it.
        var registers = board.registers
        registers[MockModbusBoard.Register.commandCounter] &+= 1
        board.accept(writtenRegisters: registers)
        let taken = board.registers[MockModbusBoard.Register.acknowledge]
        // The bus polls the board meanwhile.
        let polls = await line.gateway.deviceStates().first { $0.device == "board-w05" }?.counters.transactions ?? 0
        #expect(await eventually {
            (await line.gateway.deviceStates().first { $0.device == "board-w05" }?.counters.transactions ?? 0) > polls + 1
        })
        let next = try await center.execute(.call(window: "5", ticket: "A024"))
        #expect(next.status == .done, "\(next.devices)")
        #expect(board.display.text == "请A024号到5号窗口", "the board took the call")
        #expect(board.registers[MockModbusBoard.Register.acknowledge] != taken)
        await line.stop()
    }

    @Test func aCallShownWhileTheDiskIsFullIsDoneAndItsAcknowledgementStoredLater() async throws {
        let folder = try TemporaryDirectory()
        let disk = try await SmallDisk(at: folder.file("state"))
        defer { disk.unmount() }
        let line = try BoardLine(folder: folder)
        let (board, gateway) = (line.board, line.gateway)
        let center = CommandCenter(gateway: gateway)
        #expect(try await center.execute(.call(window: "5", ticket: "A023")).status == .done)

        try await line.fill(disk)
        // A lamp fault to commit: the outbox refuses it, and it waits in memory.
        board.setLampFault(true)
        try #require(await eventually { await gateway.uncommittedEvents() > 0 }, "the outbox must refuse commits")
        // Said by every look while the bus retries its commit at each poll (one under way counted 0 before).
        for _ in 1...3 {
            let polls = await gateway.deviceStates()[0].counters.transactions
            #expect(await eventually { await gateway.deviceStates()[0].counters.transactions > polls })
            #expect(await gateway.uncommittedEvents() == 1)
        }
        // The board showed it: the window's call is done, whatever the disk.
        let shown = try await center.execute(.call(window: "5", ticket: "A024"))
        #expect(shown.status == .done, "\(shown.devices)")
        #expect(board.display.text == "请A024号到5号窗口")

        try disk.free()
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        #expect(await eventually(timeout: .seconds(10)) {
            (try? await store.events(types: [HallEventType.boardAcknowledged], limit: 10).count) == 2
        }, "the acknowledgement read while the disk was full reaches the store once it is not")
        await line.stop()
    }

    /// From the second ext4 trial: with the reserve used up, the check said both that the outbox lives on its reserve
    /// and that it cannot be written.
    @Test func theCheckSaysTheReserveLivedOnAndThenUsedUp() async throws {
        let folder = try TemporaryDirectory()
        let disk = try await SmallDisk(at: folder.file("state"), megabytes: 16)
        defer { disk.unmount() }
        let line = try BoardLine(folder: folder)
        let gateway = line.gateway
        try #require(FileManager.default.fileExists(atPath: gateway.outbox.path + ".reserve"))
        try await line.fill(disk)
        try #require(await eventually { gateway.outbox.reserveGivenBackAt != nil }, "the gateway's next write gives it back")
        let living = await gateway.deviceCheck()
        #expect(living.problems.contains {
            $0.hasPrefix("the disk holding \(disk.path) is full: the outbox lives on its reserve since ")
        }, "\(living.problems)")
        try await line.fill(disk)
        try #require(await eventually { gateway.outboxWriteProblem != nil }, "the reserve's room is taken too")
        let usedUp = await gateway.deviceCheck()
        #expect(usedUp.problems.contains {
            $0.hasPrefix("the disk holding \(disk.path) is full: the outbox's reserve, given back at ")
                && $0.hasSuffix(", is used up; make room on the disk")
        }, "\(usedUp.problems)")
        #expect(!usedUp.problems.contains { $0.contains("lives on its reserve") }, "\(usedUp.problems)")
        #expect(usedUp.failing == living.failing, "one verdict: a monitor asking every minute commits no new event")
        await line.stop()
    }

    /// From the second ext4 trial: two calls answered `done` were lost at a SIGTERM, the disk full past the reserve.
    /// The room kept for a stop takes them.
    @Test func callsWaitingAtAStopOnADiskFullPastTheReserveAreCommittedInTheRoomKeptForAStop() async throws {
        let folder = try TemporaryDirectory()
        let disk = try await SmallDisk(at: folder.file("state"), megabytes: 16)
        defer { disk.unmount() }
        let log = CapturedLog()
        let line = try BoardLine(folder: folder, log: log)
        let gateway = line.gateway
        let center = CommandCenter(gateway: gateway)
        try #require(FileManager.default.fileExists(atPath: gateway.outbox.path + ".stop-reserve"))
        try await line.fill(disk)
        try #require(await eventually { gateway.outbox.reserveGivenBackAt != nil }, "the gateway's next write gives it back")
        try await line.fill(disk)
        for ticket in ["A023", "A024"] {
            #expect(try await center.execute(.call(window: "5", ticket: ticket)).status == .done)
        }
        try #require(gateway.ownEventsWaiting.count == 2, "the reserve's room is taken too")
        #expect(FileManager.default.fileExists(atPath: gateway.outbox.path + ".stop-reserve"), "kept for the stop")
        await line.stop()
        #expect(log.text.contains("is full past the outbox's reserve: the 1 MB kept for a stop is given back for the gateway's own events"),
                "\(log.text)")
        #expect(!log.text.contains("not committed at the stop"), "\(log.text)")
        try disk.free()
        let outbox = try Outbox.open(path: gateway.outbox.path, logger: CapturedLog().logger)
        let calls = try await outbox.entries(after: 0, limit: 1000).filter { $0.type == HallEventType.callDisplayed }
        #expect(calls.map { $0.json.contains("A023") } == [true, false] && calls.last?.json.contains("A024") == true,
                "\(calls.map(\.json))")
        #expect(try await outbox.entries(after: 0, limit: 1000).contains { $0.type == HallEventType.gatewayStopped },
                "the stop's own event too")
    }

    /// From the second ext4 trial: each finished keyed command was held in memory with all its run had used (13 KB a
    /// call; 132 MB resident after 12 minutes of a busy hall). A result the outbox keeps is answered from there; one it
    /// cannot keep (a full disk) is held in memory, and a repeat still gets it without running the command again.
    @Test func aKeyedResultIsHeldInMemoryOnlyWhileTheOutboxCannotKeepIt() async throws {
        let folder = try TemporaryDirectory()
        let disk = try await SmallDisk(at: folder.file("state"))
        defer { disk.unmount() }
        let log = CapturedLog()
        let line = try BoardLine(folder: folder, log: log)
        let board = line.board
        let center = CommandCenter(gateway: line.gateway)
        let first = try await center.execute(.call(window: "5", ticket: "A023"), idempotencyKey: "queue-0001")
        #expect(first.status == .done)
        #expect(await center.keysInMemory == 0, "kept in the outbox")
        #expect(try await center.execute(.call(window: "5", ticket: "A023"), idempotencyKey: "queue-0001") == first)
        #expect(board.registers[MockModbusBoard.Register.commandCounter] == 1, "answered from the outbox")

        try await line.fill(disk)
        let shown = try await center.execute(.call(window: "5", ticket: "A024"), idempotencyKey: "queue-0002")
        #expect(shown.status == .done)
        #expect(await center.keysInMemory == 1, "the outbox could not keep it")
        #expect(try await center.execute(.call(window: "5", ticket: "A024"), idempotencyKey: "queue-0002") == shown)
        #expect(try await center.execute(.call(window: "5", ticket: "A023"), idempotencyKey: "queue-0001") == first)
        #expect(board.registers[MockModbusBoard.Register.commandCounter] == 2, "each call ran once")
        // Said once, not once a command.
        _ = try await center.execute(.call(window: "5", ticket: "A025"), idempotencyKey: "queue-0003")
        let said = log.text.components(separatedBy: "commands' results are not kept for their idempotency keys").count - 1
        #expect(said == 1, "\(log.text)")
        await line.stop()
    }

    /// From the ext4 trial: at a stop on a full disk, a ticket and its call answered `done` were lost, said only as a
    /// count of events.
    @Test func aStopOnAFullDiskNamesTheCommandsThatAreLost() async throws {
        let folder = try TemporaryDirectory()
        let disk = try await SmallDisk(at: folder.file("state"))
        defer { disk.unmount() }
        let log = CapturedLog()
        let line = try BoardLine(folder: folder, log: log)
        let (board, gateway) = (line.board, line.gateway)
        let center = CommandCenter(gateway: gateway)
        #expect(try await center.execute(.call(window: "5", ticket: "A023")).status == .done)
        try await line.fill(disk)
        #expect(try await center.execute(.call(window: "5", ticket: "A024")).status == .done)
        #expect(board.display.text == "请A024号到5号窗口")
        try #require(await eventually { await gateway.uncommittedEvents() > 0 }, "the outbox must refuse commits")
        await line.stop()
        #expect(log.text.contains("committed at the next start; the others never reach the sinks): hall.call.displayed A024 at window 5"),
                "\(log.text)")
        #expect(!log.text.contains("hall.call.displayed A023"), "committed before the disk was full: \(log.text)")
    }

    @Test func twoWindowsCallingOneBoardAtOnceAreBothDone() async throws {
        let line = try BoardLine()
        let (board, gateway) = (line.board, line.gateway)
        board.requestsBeforeAcknowledging = 2
        async let first: Void = gateway.send(.call(ticket: "A023", window: "5"), to: "board-w05")
        async let second: Void = gateway.send(.call(ticket: "B007", window: "6"), to: "board-w05")
        _ = try await (first, second)
        // Each was shown: the second was written only once the board had taken the first.
        #expect(board.takenTexts.sorted() == ["请A023号到5号窗口", "请B007号到6号窗口"])
        let store = try SQLiteEventStore(name: "reader", path: line.folder.file("events.sqlite"))
        #expect(await eventually { (try? await store.events(types: [HallEventType.boardAcknowledged], limit: 10).count) == 2 })
        let acknowledged = try await eventData(store, type: HallEventType.boardAcknowledged) { data -> BoardAcknowledged? in
            if case .boardAcknowledged(let acknowledged) = data { acknowledged } else { nil }
        }
        #expect(acknowledged.allSatisfy { $0.accepted })
        await line.stop()
    }

    @Test func brightnessAndPowerAreRegisterWritesTheBoardTakesAndAcknowledges() async throws {
        let line = try BoardLine()
        let (board, gateway) = (line.board, line.gateway)
        try await gateway.send(.call(ticket: "A023", window: "5"), to: "board-w05")
        #expect(board.brightness == 15 && board.isOn, "a board starts at full brightness, its screen on")
        // 60 % of the 16 levels (0-15) is level 9, in register 6; the call stays on the display.
        try await gateway.send(.brightness(percent: 60), to: "board-w05")
        #expect(board.registers[MockModbusBoard.Register.brightness] == 9)
        #expect(board.brightness == 9)
        #expect(board.display.text == "请A023号到5号窗口" && board.display.mode == .steady)
        try await gateway.send(.power(on: false), to: "board-w05")
        #expect(board.registers[MockModbusBoard.Register.power] == 0)
        #expect(!board.isOn && board.display.text.isEmpty && board.display.mode == .blank)
        // A call while the screen is off is taken, and shown once it is on again.
        try await gateway.send(.call(ticket: "A024", window: "5"), to: "board-w05")
        #expect(board.display.text.isEmpty)
        try await gateway.send(.power(on: true), to: "board-w05")
        #expect(board.registers[MockModbusBoard.Register.power] == 1)
        #expect(board.isOn && board.display.text == "请A024号到5号窗口" && board.brightness == 9)

        let store = try SQLiteEventStore(name: "reader", path: line.folder.file("events.sqlite"))
        #expect(await eventually { (try? await store.events(types: ["hall.board.acknowledged"], limit: 10).count) == 5 })
        let acknowledged = try await eventData(store, type: "hall.board.acknowledged") { data -> BoardAcknowledged? in
            if case .boardAcknowledged(let acknowledged) = data { acknowledged } else { nil }
        }
        #expect(acknowledged.map(\.command) == ["call", "brightness", "power-off", "call", "power-on"])
        #expect(acknowledged.allSatisfy { $0.accepted })
        await line.stop()
    }

    @Test func aBoardWhoseProfileNamesNoBrightnessOrPowerRegisterRefusesThemWithTheReason() async throws {
        let line = try BoardLine(editing: [(of: "  brightness: 6\n  power: 7\n", with: "")])
        let (board, gateway) = (line.board, line.gateway)
        for (command, reason) in [
            (HallCommand.brightness(percent: 60), "no brightness register: the board has no brightness command"),
            (.power(on: false), "no power register: the board has no power-off command (clear blanks it)"),
        ] {
            let error = await #expect(throws: GatewayError.self) { try await gateway.send(command, to: "board-w05") }
            #expect(error?.code == .commandRejected)
            #expect(error?.message == "board-w05: profile modbus-window-board names \(reason)")
        }
        #expect(board.registers[MockModbusBoard.Register.commandCounter] == 0, "nothing was written")
        #expect(board.brightness == 15 && board.isOn)
        await line.stop()
    }

    @Test func brightnessAndPowerAreOneRegisterEachBeforeTheCounter() throws {
        let loaded = try ProfileLibrary(directory: profilesDirectory).profile(named: "modbus-window-board")
        let profile = try #require({ if case .modbusBoard(let profile) = loaded { profile } else { nil } }())
        let device = DeviceConfig(id: "board-w05", profile: "modbus-window-board", bus: "line-a", address: 3, window: "5")
        var driver = ModbusBoardDriver(device: device, profile: profile, hallId: "test-hall")
        // The command's 0-100 % on the board's 0-15, as for Onbon boards: 0 % dark, 100 % full, 60 % level 9.
        for (percent, level): (Int, UInt16) in [(0, 0), (60, 9), (100, 15)] {
            #expect(try driver.prepare(.brightness(percent: percent)).writes == [.init(start: 6, values: [level])])
        }
        #expect(try driver.prepare(.power(on: false)).writes == [.init(start: 7, values: [0])])
        #expect(try driver.prepare(.power(on: true)).writes == [.init(start: 7, values: [1])])
        #expect(try driver.prepare(.power(on: true)).name == "power-on")
        #expect(driver.counterWrite() == .init(start: 2, values: [1]), "then the counter, as after a call")
    }

    @Test func aLateAnswerOfAnotherFunctionIsNotTakenForTheCommandsRefusal() throws {
        // RTU has no transaction id: a poll's registers arriving late, while a board's write waits, must leave the
        // write waiting for its own answer.
        let loaded = try ProfileLibrary(directory: profilesDirectory).profile(named: "modbus-window-board")
        let profile = try #require({ if case .modbusBoard(let profile) = loaded { profile } else { nil } }())
        let device = DeviceConfig(id: "board-w05", profile: "modbus-window-board", bus: "line-a", address: 3, window: "5")
        var driver = ModbusDriver(members: [(device, .board(profile))], framing: .rtu, hallId: "h",
                                  pollInterval: .milliseconds(500), responseTimeout: .milliseconds(200))
        let write = LineRequest(
            device: device.id,
            bytes: try ModbusRTUFrame(address: 3, request: .writeMultipleRegisters(start: 2, values: [1])).encode(),
            expectsAnswer: true, purpose: "call")
        let late = driver.handle(ModbusReply(unit: 3, transactionId: nil, message: .response(.readHoldingRegisters(values: [0, 0]))),
                                 inFlight: write, at: Date())
        #expect(!late.answersRequest && late.refusal == nil)
        let own = driver.handle(ModbusReply(unit: 3, transactionId: nil, message: .response(.writeMultipleRegisters(start: 2, count: 1))),
                                inFlight: write, at: Date())
        #expect(own.answersRequest && own.refusal == nil)
        let refused = driver.handle(
            ModbusReply(unit: 3, transactionId: nil,
                        message: .response(.exception(function: .writeMultipleRegisters, code: .illegalDataAddress))),
            inFlight: write, at: Date())
        #expect(refused.answersRequest && refused.refusal?.contains("Modbus exception 2") == true, "\(String(describing: refused.refusal))")
    }
}

/// A window board, `board-w05` at address 3 of a Modbus RTU line, and a gateway running on it with the shipped
/// profiles or, given `edits`, the shipped board profile edited so. Stopped when released, should a test end early.
final class BoardLine: Sendable {
    let board = MockModbusBoard()
    let server: MockModbusServer
    let folder: TemporaryDirectory
    let gateway: Gateway
    private let stopSignal = StopSignal()
    private let running: Task<Void, Never>

    /// In `folder` if given (its `state` may be a small disk of the test's).
    init(editing edits: [(of: String, with: String)] = [], folder: TemporaryDirectory? = nil,
         log: CapturedLog = CapturedLog()) throws {
        server = try MockModbusServer.rtu(units: [3: board])
        let folder = try folder ?? TemporaryDirectory()
        self.folder = folder
        let path = try #require(server.endpoint.devicePath)
        let profiles = edits.isEmpty ? profilesDirectory : try editedProfiles("modbus-window-board", in: folder, edits)
        gateway = try testGateway(
            buses: "  - {id: line-a, transport: modbus-rtu, port: \(path), response-timeout-ms: 200, poll-interval-ms: 50}",
            devices: "  - {id: board-w05, profile: modbus-window-board, bus: line-a, address: 3, window: \"5\"}",
            folder: folder, profiles: profiles, log: log)
        let (gateway, stopSignal) = (gateway, stopSignal)
        running = Task { await gateway.run(until: stopSignal) }
    }

    /// Fills `disk`, which holds the state, so that the next commit needs room the disk no longer has.
    func fill(_ disk: SmallDisk) async throws {
        try await disk.fill(holding: gateway.config.outboxPath)
    }

    /// Stops the gateway, waits for it to finish, then stops the board's line.
    func stop() async {
        stopSignal.stop()
        await running.value
        server.stop()
    }

    deinit {
        stopSignal.stop()
        server.stop()
    }
}

/// A five-key pad mapped through its profile: the key is the national level, 非常满意 and 非常不满意 included.
@Suite struct FiveLevelPadTests {
    @Test func everyNationalLevelArrivesWithItsLabel() async throws {
        // Five keys: the five-level profile's model is told by its scale register (a three-key pad is another model).
        let pad = MockModbusEvaluator(staffId: "0502", keys: 5)
        let server = try MockModbusServer.tcp(units: [2: pad])
        defer { server.stop() }
        let port = try #require(server.endpoint.tcpPort)
        let folder = try TemporaryDirectory()
        let gateway = try testGateway(
            buses: "  - {id: lan, transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(port), poll-interval-ms: 50}",
            devices: "  - {id: eval-w02, profile: modbus-evaluator-5level, bus: lan, address: 2, window: \"2\"}",
            folder: folder)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        defer { stop.stop() }
        for code: UInt16 in [5, 1, 3, 4, 2] { pad.press(code: code) }
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        #expect(await eventually { (try? await ratings(in: store).count) == 5 })
        let rated = try await ratings(in: store).map(\.rating).sorted { ($0.deviceCounter ?? 0) < ($1.deviceCounter ?? 0) }
        #expect(rated.map(\.level) == [5, 1, 3, 4, 2])
        #expect(rated.map(\.levelLabel) == ["非常满意", "非常不满意", "基本满意", "满意", "不满意"])
        #expect(rated.allSatisfy { $0.scale == "five-level" && $0.key == $0.level && $0.staffId == "0502" })
        stop.stop()
        await running.value
    }
}
