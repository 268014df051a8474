import DeviceGateway
import Foundation
import MockDevices
import Protocols
import Testing

/// A ticket printer and Onbon call boards on their serial lines, through the real gateway.
@Suite struct PrinterAndOnbonTests {
    func printerStates(_ store: SQLiteEventStore) async throws -> [String] {
        try await eventData(store, type: HallEventType.printerStatusChanged) { data in
            if case .printerStatus(let status) = data { status.state } else { nil }
        }
    }

    /// A demo hall runs for days: its simulated printer keeps the newest tickets, not every one it ever printed.
    @Test func aSimulatedPrinterKeepsTheNewestTicketsOnly() async throws {
        let printer = try MockEscPosPrinter()
        defer { printer.stop() }
        let host = open(printer.devicePath, O_RDWR | O_NOCTTY)
        try #require(host >= 0)
        defer { close(host) }
        let printed = mockHistoryLimit + 5
        // Each ticket its number and a partial cut (GS V 1).
        for number in 0..<printed {
            let bytes = Array("T\(number)".utf8) + [0x1D, 0x56, 0x01]
            try #require(bytes.withUnsafeBytes { write(host, $0.baseAddress, $0.count) } == bytes.count)
        }
        func number(_ ticket: [EscPosCommand]?) -> String? {
            ticket?.lazy.compactMap { command -> String? in if case .text(let text) = command { text } else { nil } }.first
        }
        #expect(await eventually { number(printer.tickets.last) == "T\(printed - 1)" })
        #expect(printer.tickets.count == mockHistoryLimit)
        #expect(number(printer.tickets.first) == "T5")
    }

    @Test func aTicketIsPrintedAndEveryChangeOfThePrinterIsOneEvent() async throws {
        let printer = try MockEscPosPrinter()
        defer { printer.stop() }
        let folder = try TemporaryDirectory()
        let gateway = try testGateway(
            buses: "  - {id: kiosk-1, transport: serial, port: \(printer.devicePath), poll-interval-ms: 100, response-timeout-ms: 200}",
            devices: "  - {id: printer-1, profile: escpos-80mm, bus: kiosk-1, address: 1}", folder: folder)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        defer { stop.stop() }
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        #expect(await eventually { (try? await printerStates(store)) == ["online"] })

        try await gateway.send(.printTicket(.init(number: "A023", service: "社保业务", waitingAhead: 5,
                                                  issuedAt: "2026-11-25 09:30", qrPayload: "https://hall.example/q/A023")),
                               to: "printer-1")
        let ticket = try #require(printer.tickets.first)
        let texts = ticket.compactMap { command -> String? in
            if case .text(let text) = command { return text }
            return nil
        }
        #expect(texts.contains("A023"))
        #expect(texts.contains { $0.contains("社保业务") })
        #expect(ticket.contains(.characterSize(width: 3, height: 3)))
        let cutsPartially = if case .cut(.partial, _) = ticket.last { true } else { false }
        #expect(cutsPartially, "the 80 mm profile cuts partially: \(String(describing: ticket.last))")

        printer.set(.init(paperNearEnd: true))
        #expect(await eventually { (try? await printerStates(store)) == ["online", "paper-near-end"] })
        printer.set(.init(coverOpen: true, paperNearEnd: true))
        #expect(await eventually { (try? await printerStates(store))?.last == "cover-open" })
        // A printer that cannot print refuses the ticket with the reason, instead of losing it.
        await #expect(throws: GatewayError.self) {
            try await gateway.send(.printTicket(.init(number: "A024", service: "社保业务", waitingAhead: 4, issuedAt: "09:31")),
                                   to: "printer-1")
        }
        printer.set(.init(paperOut: true))
        #expect(await eventually { (try? await printerStates(store))?.last == "paper-out" })
        printer.set(.init())
        #expect(await eventually { (try? await printerStates(store))?.last == "online" })
        // One event per change of what the printer reports, never the same twice running, each change in order. A
        // change that lands between the questions of one round shows as a step of its own (from a run: the cover still
        // open beside the new paper-out, between cover-open and paper-out): what was read, not a repeat.
        let statuses = try await eventData(store, type: HallEventType.printerStatusChanged) { data in
            if case .printerStatus(let status) = data { status } else { nil }
        }
        #expect(zip(statuses, statuses.dropFirst()).allSatisfy { $0 != $1 }, "\(statuses)")
        var expected = ["online", "paper-near-end", "cover-open", "paper-out", "online"][...]
        for status in statuses where status.state == expected.first { expected.removeFirst() }
        #expect(expected.isEmpty, "every change, in order: \(statuses.map(\.state))")

        printer.setAnswering(false)
        #expect(await eventually {
            (try? await store.events(types: [HallEventType.deviceOffline], limit: 10).count) == 1
        })
        stop.stop()
        await running.value
    }

    @Test func callsReachOnbonBoardsAndTheirVerdictsAreEvents() async throws {
        let boards = try MockOnbonBoards(addresses: [1, 2])
        defer { boards.stop() }
        let folder = try TemporaryDirectory()
        let gateway = try testGateway(
            buses: "  - {id: boards, transport: serial, port: \(boards.devicePath), poll-interval-ms: 100, response-timeout-ms: 200}",
            devices: """
              - {id: board-w05, profile: onbon-bx5, bus: boards, address: 1, window: "5"}
              - {id: board-w06, profile: onbon-bx5, bus: boards, address: 2, window: "6"}
            """, folder: folder)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        defer { stop.stop() }
        try await gateway.send(.call(ticket: "A023", window: "5"), to: "board-w05")
        #expect(boards.shown(address: 1) == "请A023号到5号窗口")
        try await gateway.send(.pause(window: "6"), to: "board-w06")
        #expect(boards.shown(address: 2) == "暂停服务")
        boards.reject(with: .fontMissing)
        // Refused by the board: the command fails with its reason, and the verdict is an event.
        let refused = await #expect(throws: GatewayError.self) { try await gateway.send(.clear, to: "board-w06") }
        #expect(refused?.message == "board-w06 refused clear: controller error 12", "\(String(describing: refused))")
        // A text GB2312 cannot write is refused before anything is sent.
        await #expect(throws: GatewayError.self) { try await gateway.send(.showText("请A023号到㐀号窗口"), to: "board-w05") }

        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        #expect(await eventually { (try? await store.events(types: [HallEventType.boardAcknowledged], limit: 10).count) == 3 })
        let verdicts = try await eventData(store, type: HallEventType.boardAcknowledged) { data in
            if case .boardAcknowledged(let acknowledged) = data { acknowledged } else { nil }
        }
        #expect(verdicts == [
            BoardAcknowledged(command: "call", accepted: true, errorCode: nil),
            BoardAcknowledged(command: "pause", accepted: true, errorCode: nil),
            BoardAcknowledged(command: "clear", accepted: false, errorCode: Int(OnbonErrorCode.fontMissing.rawValue)),
        ])
        boards.setSilent(true, address: 2)
        #expect(await eventually {
            (try? await store.events(types: [HallEventType.deviceOffline], limit: 10))?.map(\.source)
                == ["/halls/test-hall/devices/board-w06"]
        })
        stop.stop()
        await running.value
    }
}
