import DeviceGateway
import Foundation
import MockDevices
import Protocols
import Testing

/// The FF 68 and QSystem RS-485 lines through the real gateway, with simulated pads, callers, boxes and boards.
@Suite struct RS485LineTests {
    @Test func ff68KeysBecomeEventsOnceAndAreEchoedAfterTheCommit() async throws {
        let bus = try MockFF68Bus()
        defer { bus.stop() }
        let folder = try TemporaryDirectory()
        let gateway = try testGateway(
            buses: "  - {id: ff68, transport: serial, port: \(bus.devicePath), poll-interval-ms: 100}",
            devices: """
              - {id: eval-w03, profile: ff68-evaluator, bus: ff68, address: 3, window: "3"}
              - {id: caller-w03, profile: ff68-caller, bus: ff68, address: 33, window: "3"}
            """, folder: folder)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        defer { stop.stop() }
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        // The line is open once the gateway has said the caller's display; until then keys would be flushed.
        try await gateway.send(.call(ticket: "A023", window: "3"), to: "caller-w03")
        // The display frame expects no answer: send returns once it is written, the caller shows it a moment later.
        #expect(await eventually { bus.display(address: 33) == "   023" })
        // A caller's three digits are no board's wording (from a trial: status listed 「请A023号到3号窗口」 for it).
        #expect(await gateway.deviceStates().first { $0.device == "caller-w03" }?.lastShown == nil)

        // The echo is lost twice: the pad repeats its frame, the store still gets one rating.
        bus.ignoreEchoes(true)
        bus.pressEvaluatorKey(3, address: 3)
        #expect(await eventually { bus.echoesIgnored >= 2 }, "the gateway echoed the frame and a repeat")
        bus.ignoreEchoes(false)
        #expect(await eventually { bus.unacknowledgedCount == 0 })
        bus.pressEvaluatorKey(1, address: 3)  // no verdict: echoed, no rating
        bus.sendRaw([0xFF, 0x68, 0x03, 0x03, 0x68, 0x03, 0x11, 0x00, 0x99, 0x16])  // bad checksum: ignored
        bus.pressCallerKeys([0x06, 0x0F], address: 33)  // 6 确认: 弃号
        #expect(await eventually { bus.acknowledged.count == 3 })
        bus.pressEvaluatorKey(0, address: 3)
        #expect(await eventually { (try? await ratings(in: store).count) == 2 })

        let rated = try await ratings(in: store).map(\.rating)
        #expect(rated.map(\.level).sorted() == [2, 5])
        #expect(rated.contains { $0.keyLabel == "非常满意" && $0.window == "3" && $0.scale == "three-key" })
        let keys = try await eventData(store, type: HallEventType.callerKeyPressed) { data in
            if case .callerKey(let key) = data { key } else { nil }
        }
        #expect(keys == [CallerKeyPressed(window: "3", action: "skip", key: 0x0F)])
        await #expect(throws: GatewayError.self) { try await gateway.send(.clear, to: "eval-w03") }
        stop.stop()
        await running.value
    }

    @Test func qsystemBoxKeysBecomeEventsAndBoardsShowTheCall() async throws {
        let line = try MockQSystemLine()
        defer { line.stop() }
        let folder = try TemporaryDirectory()
        let gateway = try testGateway(
            buses: "  - {id: qs, transport: serial, port: \(line.devicePath), poll-interval-ms: 100}",
            devices: """
              - {id: box-w04, profile: qsystem-box, bus: qs, address: 4, window: "4"}
              - {id: board-w04, profile: qsystem-board, bus: qs, address: 104, window: "4"}
            """, folder: folder)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        defer { stop.stop() }
        try await gateway.send(.call(ticket: "A023", window: "4"), to: "board-w04")
        try await gateway.send(.call(ticket: "A023", window: "4"), to: "box-w04")
        #expect(await eventually { line.board(address: 104)?.text == "023" })
        #expect(line.board(address: 104)?.mode == .blinkContinuously)
        #expect(await eventually { line.lamp(address: 4) == .beepGreenBlinkSlow })

        line.press(.call, address: 4)
        line.press(.finish, address: 4)
        line.press(.call, address: 9)  // a box the hall does not have: ignored
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        #expect(await eventually { (try? await store.events(types: [HallEventType.callerKeyPressed], limit: 10).count) == 2 })
        let actions = try await eventData(store, type: HallEventType.callerKeyPressed) { data in
            if case .callerKey(let key) = data { key.action } else { nil }
        }
        #expect(Set(actions) == ["call-next", "finish"])
        stop.stop()
        await running.value
    }
}

/// A two-wire RS-485 adapter that returns every byte the gateway sends must not make the gateway
/// read its own frames as key presses, nor acknowledge its own acknowledgements.
@Suite struct EchoingAdapterTests {
    @Test func theGatewayIgnoresItsOwnFramesComingBack() async throws {
        let bus = try MockFF68Bus(echoing: true)
        defer { bus.stop() }
        let folder = try TemporaryDirectory()
        let gateway = try testGateway(
            buses: "  - {id: ff68, transport: serial, port: \(bus.devicePath), poll-interval-ms: 100}",
            devices: """
              - {id: eval-w03, profile: ff68-evaluator, bus: ff68, address: 3, window: "3"}
              - {id: caller-w03, profile: ff68-caller, bus: ff68, address: 33, window: "3"}
            """, folder: folder)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        defer { stop.stop() }
        try await gateway.send(.recall(ticket: "A013", window: "3"), to: "caller-w03")
        // On a half-duplex bus nothing speaks while the gateway does: the echo is back before any key.
        #expect(await eventually { bus.beeps(address: 33) == 1 })
        bus.pressCallerKeys([0x0C], address: 33)
        bus.pressEvaluatorKey(2, address: 3)
        #expect(await eventually { bus.acknowledged.count == 2 })
        // A later key the gateway acknowledged means every byte before it was read, echoes included. Key 1 has no
        // verdict: it is echoed and makes no rating.
        bus.pressEvaluatorKey(1, address: 3)
        #expect(await eventually { bus.acknowledged.count == 3 })
        // The outbox, not the sink: each acknowledgement went out after its event's commit there.
        let committed = try await gateway.outbox.entries(after: 0, limit: 1000)
        #expect(committed.filter { $0.type == HallEventType.callerKeyPressed }.count == 1,
                "the display frame and the echoes are not key presses")
        #expect(committed.filter { $0.type == HallEventType.ratingSubmitted }.count == 1)
        // No acknowledgement loop: the display, the beep and three acknowledgements are 15 + 9 + 3 × 10 bytes; a
        // pad's repeat crossing an acknowledgement on the wire earns one more (more of them on a loaded machine, where
        // the commit before each acknowledgement takes longer). One more key must cost one more acknowledgement, not
        // a stream of them.
        let sent = bus.bytesFromHost
        bus.pressEvaluatorKey(1, address: 3)
        #expect(await eventually { bus.acknowledged.count == 4 })
        #expect(await eventually { bus.unacknowledgedCount == 0 })
        let more = bus.bytesFromHost - sent
        #expect(more >= 10 && more % 10 == 0 && more <= 30, "\(more) bytes for one key: the gateway answers its own frames")
        #expect(sent >= 54 && (sent - 54) % 10 == 0, "\(sent) bytes from the host: beyond the five frames, only acknowledgements")
        stop.stop()
        await running.value
    }
}

/// The rating was committed but its echo never reached the pad, and the gateway restarted: the pad's
/// repeat, heard by the new process, is the same rating, not a second one.
@Suite struct FF68RestartTests {
    @Test func aRepeatHeardAfterARestartIsTheSameRating() async throws {
        let bus = try MockFF68Bus()
        defer { bus.stop() }
        let folder = try TemporaryDirectory()
        let buses = "  - {id: ff68, transport: serial, port: \(bus.devicePath), poll-interval-ms: 100}"
        let devices = "  - {id: eval-w03, profile: ff68-evaluator, bus: ff68, address: 3, window: \"3\"}"
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))

        let first = try testGateway(buses: buses, devices: devices, folder: folder)
        let stopFirst = StopSignal()
        let runningFirst = Task { await first.run(until: stopFirst) }
        bus.ignoreEchoes(true)
        bus.pressEvaluatorKey(3, address: 3)
        #expect(await eventually { (try? await ratings(in: store).count) == 1 })
        stopFirst.stop()
        await runningFirst.value
        let echoedByFirst = bus.echoesIgnored

        let second = try testGateway(buses: buses, devices: devices, folder: folder)
        let stopSecond = StopSignal()
        let runningSecond = Task { await second.run(until: stopSecond) }
        defer { stopSecond.stop() }
        #expect(await eventually { bus.echoesIgnored > echoedByFirst }, "the new gateway hears a repeat and echoes it")
        bus.ignoreEchoes(false)
        // The echo goes out only after the commit: once the pad has it, the outbox has all it will get.
        #expect(await eventually { bus.unacknowledgedCount == 0 }, "the new gateway acknowledges the repeat")
        let committed = try await second.outbox.entries(after: 0, limit: 100)
        #expect(committed.filter { $0.type == HallEventType.ratingSubmitted }.count == 1,
                "the repeat is the rating already stored")
        #expect(try await ratings(in: store).count == 1)
        stopSecond.stop()
        await runningSecond.value
    }
}
