import AsyncHTTPClient
import DeviceGateway
import Foundation
import MockDevices
import NIOCore
import NIOHTTP1
import Testing

/// The gatewayd process killed with SIGKILL around the commit of a rating, then started again.
@Suite struct CrashTests {
    let folder: TemporaryDirectory
    let pad = MockModbusEvaluator(staffId: "0420")
    let server: MockModbusServer
    let configPath: String

    init() throws {
        folder = try TemporaryDirectory()
        server = try .rtu(units: [3: pad])
        guard case .rtu(let port) = server.endpoint else { preconditionFailure("an RTU server has a device path") }
        configPath = folder.file("hall.yaml")
        try """
            hall: {id: crash-hall}
            state-directory: state
            profiles: \(profilesDirectory)
            buses:
              - {id: line-a, transport: modbus-rtu, port: \(port), response-timeout-ms: 200, poll-interval-ms: 50}
            devices:
              - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 3, window: "4"}
            sinks:
              - {type: sqlite, path: events.sqlite}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func storedRatings() async throws -> [RatingSubmitted] {
        guard FileManager.default.fileExists(atPath: folder.file("events.sqlite")) else { return [] }
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        return try await ratings(in: store).map(\.rating)
    }

    func runUntilKilled(at point: String) async throws {
        let child = try ChildProcess(gatewaydPath, ["run", "--config", configPath],
                                     environment: ["HALL_GATEWAY_CRASH_AT": point])
        let result = try await child.wait(timeout: .seconds(30))
        #expect(result.terminatedBySignal && result.status == SIGKILL, "the gateway should have been killed: \(result)")
    }

    /// Starts the gateway again, waits for `count` ratings, then stops it with SIGINT or SIGTERM.
    func restartAndCollect(expecting count: Int, stopWithTerminate: Bool = false) async throws -> ProcessResult {
        let child = try ChildProcess(gatewaydPath, ["run", "--config", configPath])
        let arrived = await eventually { (try? await storedRatings().count) ?? 0 >= count }
        // A few more poll cycles read the pad again: a duplicate would show up now.
        let answered = server.requestsAnswered
        #expect(await eventually { server.requestsAnswered >= answered + 5 })
        if stopWithTerminate { child.process.terminate() } else { child.interrupt() }
        let result = try await child.wait()
        #expect(arrived, "\(result.standardOutput)\n\(result.standardError)")
        return result
    }

    @Test func killedBetweenReadingAndCommittingTheRatingIsReadAgainAndStoredOnce() async throws {
        defer { server.stop() }
        pad.press(.dissatisfied)
        pad.press(.satisfied)
        try await runUntilKilled(at: "before-commit")
        #expect(try await storedRatings().isEmpty, "nothing was committed before the kill")
        #expect(pad.acknowledged == 0, "the pad must not be acknowledged before the commit")

        let result = try await restartAndCollect(expecting: 2)
        #expect(result.status == 0 && !result.terminatedBySignal, "SIGINT ends the gateway with status 0")
        let stored = try await storedRatings()
        #expect(stored.map(\.level) == [2, 4])
        #expect(stored.map(\.deviceCounter) == [1, 2])
        #expect(pad.acknowledged == 2)
    }

    @Test func killedAfterCommittingButBeforeAcknowledgingIsNotStoredTwice() async throws {
        defer { server.stop() }
        pad.press(.basicallySatisfied)
        try await runUntilKilled(at: "after-commit")
        #expect(pad.acknowledged == 0, "killed before the acknowledgement was written")

        pad.press(.satisfied)
        let result = try await restartAndCollect(expecting: 2, stopWithTerminate: true)
        #expect(result.status == 0 && !result.terminatedBySignal, "SIGTERM ends the gateway with status 0")
        let stored = try await storedRatings()
        #expect(stored.map(\.level) == [3, 4], "the re-read rating is recognised by its id")
        #expect(pad.acknowledged == 2)
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        let sequences = try await store.events(types: ["hall.rating.submitted"]).compactMap(\.sequence)
        #expect(Set(sequences).count == 2, "each rating got one sequence number")
    }

    /// From an installer's trial: after a kill -9 nothing said that the run before had ended uncleanly (its heartbeats
    /// stopped; no `hall.gateway.stopped`). The next start says so in its log and in its first heartbeat; the start
    /// after a clean stop does not.
    @Test func theStartAfterAKillSaysTheRunBeforeDidNotStopCleanly() async throws {
        defer { server.stop() }
        let outbox = folder.file("state/outbox.sqlite")
        func firstHeartbeats() async throws -> [String] {
            try await Outbox.openForReading(path: outbox).entries(after: 0, limit: 10_000)
                .filter { $0.type == HallEventType.gatewayHeartbeat && $0.id.hasSuffix("-1") }.map(\.json)
        }
        let killed = try ChildProcess(gatewaydPath, ["run", "--config", configPath],
                                      environment: ["HALL_GATEWAY_CRASH_AT": "after-commit"])
        // Killed once its first heartbeat is in: at the commit of a rating.
        #expect(await eventually { (try? await firstHeartbeats().count) == 1 })
        pad.press(.satisfied)
        let result = try await killed.wait(timeout: .seconds(30))
        #expect(result.terminatedBySignal && result.status == SIGKILL, "\(result)")

        let afterTheKill = try await restartAndCollect(expecting: 1)
        // To the second: the record is made every 2 s, and a technician holds it against a UPS's or a switch's log.
        #expect(afterTheKill.standardOutput.contains(
            /the gateway's last run did not record a clean stop \(a power cut, a kill, a crash, or a disk too full to record it\); its last record: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/),
                "\(afterTheKill.standardOutput)")
        let afterAStop = try await restartAndCollect(expecting: 1)
        #expect(!afterAStop.standardOutput.contains("did not record a clean stop"), "\(afterAStop.standardOutput)")
        let beats = try await firstHeartbeats()
        #expect(beats.count == 3)
        #expect(beats.map { $0.contains(#""previousRunStoppedCleanly""#) } == [false, true, true], "\(beats)")
        #expect(beats.dropFirst().map { $0.contains(#""previousRunStoppedCleanly":false"#) } == [true, false], "\(beats)")
        #expect(beats.last?.contains(#""previousRunStoppedCleanly":true"#) == true, "\(beats)")
    }

    /// From a second read: a kill between the commit of a pad's power-up read and the write-back of its staff id forgot
    /// the write-back (the new boot id was committed, nothing owed it after the start): the pad's ratings went on
    /// under the id it boots with. The start after the kill writes it back, and the power-up is said once.
    @Test func aStaffIdOwedToAPadAtAKillIsWrittenBackAfterTheStart() async throws {
        defer { server.stop() }
        // Set through the gateway before: kept in the outbox, with the pad's cursor of the power-up before this one.
        try FileManager.default.createDirectory(atPath: folder.file("state"), withIntermediateDirectories: true)
        let before = try Outbox.open(path: folder.file("state/outbox.sqlite"), logger: CapturedLog().logger)
        try await before.record(staff: "S0517", device: "eval-w04")
        _ = try await before.commit([], cursors: [DeviceCursor(device: "eval-w04", bootId: 7, consumed: 0)])
        // Its power cut: it boots showing its own 0420, and a citizen rates.
        pad.press(.satisfied)
        try await runUntilKilled(at: "after-commit")
        #expect(pad.staffId == "0420", "killed before the write-back went out")
        #expect(try await Outbox.openForReading(path: folder.file("state/outbox.sqlite")).cursor(device: "eval-w04")?
                    .staffOwed == true)

        let result = try await restartAndCollect(expecting: 1)
        #expect(pad.staffId == "S0517", "written back after the start: \(result.standardOutput)")
        let stored = try await storedRatings()
        #expect(stored.map(\.staffId) == ["S0517"])
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        let faults = try await store.events(types: [HallEventType.deviceFault]).map(\.id)
        #expect(faults.filter { $0.hasPrefix("staff-id-") }.count == 1 && faults.contains { $0.hasPrefix("staff-id-restored-") },
                "\(faults)")
        #expect(try await Outbox.openForReading(path: folder.file("state/outbox.sqlite")).cursor(device: "eval-w04")?
                    .staffOwed == false, "nothing owed once the pad shows it")
    }

    /// A ticket printed, then the gateway killed before the ticket's event: the citizen holds a ticket the central
    /// store must hear of, and the kiosk's retry of its request must not print a second one.
    @Test func aTicketPrintedJustBeforeAKillIsCommittedAtTheStartAndItsRetryPrintsNoOther() async throws {
        server.stop()
        let printer = try MockEscPosPrinter()
        defer { printer.stop() }
        let config = folder.file("kiosk.yaml")
        try """
            hall: {id: crash-hall}
            state-directory: state
            profiles: \(profilesDirectory)
            buses:
              - {id: kiosk-1, transport: serial, port: \(printer.devicePath), poll-interval-ms: 100, response-timeout-ms: 200}
            devices:
              - {id: printer-1, profile: escpos-80mm, bus: kiosk-1, address: 1}
            tickets: {prefixes: [A]}
            sinks:
              - {type: sqlite, path: events.sqlite}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        func post(_ api: String, key: String?) async throws -> (status: Int, body: String) {
            var request = HTTPClientRequest(url: api + "/v1/tickets")
            request.method = .POST
            let token = try String(contentsOfFile: folder.file("state/api-token"), encoding: .utf8)
            request.headers.add(name: "Authorization", value: "Bearer \(token.trimmingCharacters(in: .whitespacesAndNewlines))")
            request.headers.add(name: "Content-Type", value: "application/json")
            if let key { request.headers.add(name: "Idempotency-Key", value: key) }
            request.body = .bytes(ByteBuffer(string: #"{"prefix": "A", "service": "social security"}"#))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(20))
            return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
        }
        func printerOnline(_ api: String) async -> Bool {
            let status = try? await run(gatewaydPath, ["status", "--config", config, "--api", api])
            return status?.standardOutput.split(separator: "\n").contains { $0.hasPrefix("printer-1") && $0.contains(" online") } == true
        }

        let first = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"],
                                     environment: ["HALL_GATEWAY_CRASH_AT": "after-printing"])
        #expect(await eventually { CLITests.apiURL(first) != nil }, "\(first.output)")
        let firstAPI = try #require(CLITests.apiURL(first))
        #expect(await eventually { await printerOnline(firstAPI) })
        // The kiosk's request: the gateway dies with it, after the printer cut the ticket.
        #expect((try? await post(firstAPI, key: "kiosk-2-0815")) == nil, "no answer: the gateway died")
        let killed = try await first.wait(timeout: .seconds(30))
        #expect(killed.terminatedBySignal && killed.status == SIGKILL, "\(killed)")
        #expect(printer.tickets.count == 1)

        let second = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        #expect(await eventually { CLITests.apiURL(second) != nil }, "\(second.output)")
        let secondAPI = try #require(CLITests.apiURL(second))
        #expect(second.output.contains("ticket A001 was being printed on printer-1 when the gateway stopped"), "\(second.output)")
        // The retry gets the first ticket's number; nothing more is printed.
        let retry = try await post(secondAPI, key: "kiosk-2-0815")
        #expect(retry.status == 200 && retry.body.contains(#""ticket":"A001""#) && retry.body.contains(#""status":"done""#),
                "\(retry.body)")
        #expect(printer.tickets.count == 1, "the retry printed no second ticket")
        // The next citizen's ticket has the next number.
        #expect(await eventually { await printerOnline(secondAPI) })
        let next = try await post(secondAPI, key: nil)
        #expect(next.status == 200 && next.body.contains(#""ticket":"A002""#), "\(next.body)")
        #expect(printer.tickets.count == 2)
        second.interrupt()
        let stopped = try await second.wait()
        #expect(stopped.status == 0 && !stopped.terminatedBySignal)

        let events = try await run(gatewaydPath, ["events", "--json", "--config", config])
        let tickets = events.standardOutput.split(separator: "\n").filter { $0.contains(#""type":"hall.ticket.issued""#) }
        #expect(tickets.count == 2, "\(events.standardOutput)")
        #expect(tickets.first?.contains(#""ticket":"A001""#) == true
                && tickets.first?.contains("whether it came out is not known") == true, "\(tickets)")
        #expect(tickets.last?.contains(#""ticket":"A002""#) == true && tickets.last?.contains("not known") == false, "\(tickets)")
    }
}
