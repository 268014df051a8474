import AsyncHTTPClient
import DeviceGateway
import Foundation
import LocalAPI
import MockDevices
import NIOCore
import NIOHTTP1
import Testing

/// The local API on a real loopback port, driving mock boards over Modbus RTU through the real gateway.
@Suite(.serialized) struct LocalAPITests {
    /// A hall with window 5 (a board and a pad), window 7 (a board that never answers) and a hall board, the
    /// gateway running and its API listening.
    final class Hall: Sendable {
        let board = MockModbusBoard()
        let hallBoard = MockModbusBoard()
        let pad = MockModbusEvaluator(staffId: "0105")
        let server: MockModbusServer
        let folder: TemporaryDirectory
        let gateway: Gateway
        let stop = StopSignal()
        let running: Task<Void, Never>
        let api: Task<Void, any Error>
        let port: Int
        let token = "test-token-\(UInt64.random(in: 0...UInt64.max))"
        /// The shared client needs no shutdown: a test that throws half-way does not crash the run.
        let client = HTTPClient.shared
        /// The simulated printers of `buses`, stopped with the hall.
        let printers: [MockEscPosPrinter]

        /// `buses`, `devices`, `sinks` and `more` add to the configuration (a printer's line, terminals, a central
        /// store, tickets), `printers` are the simulated ones on its lines; `clock` is the hall's.
        init(buses: String = "", devices: String = "", sinks: String = "", more: String = "",
             printers: [MockEscPosPrinter] = [], clock: any HallClock = SystemHallClock(),
             idleLimit: Duration = LocalAPI.idleConnectionLimit) async throws {
            self.printers = printers
            server = try MockModbusServer.rtu(units: [3: board, 4: pad, 6: hallBoard])
            let path = try #require(server.endpoint.devicePath)
            folder = try TemporaryDirectory()
            let (config, profiles) = try ConfigLoader.parse("""
                hall: {id: test-hall}
                state-directory: \(folder.path)/state
                profiles: \(profilesDirectory)
                buses:
                  - {id: line-a, transport: modbus-rtu, port: \(path), response-timeout-ms: 100, poll-interval-ms: 50}
                \(buses)
                devices:
                  - {id: board-w05, profile: modbus-window-board, bus: line-a, address: 3, window: "5"}
                  - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "5"}
                  - {id: board-w07, profile: modbus-window-board, bus: line-a, address: 9, window: "7"}
                  - {id: board-hall, profile: modbus-window-board, bus: line-a, address: 6}
                \(devices)
                sinks:
                  - {type: sqlite, path: \(folder.path)/events.sqlite}
                \(sinks)
                \(more)
                """, file: "test.yaml", relativeTo: folder.path)
            let gateway = try Gateway(config: config, profiles: profiles, logger: CapturedLog().logger, hallClock: clock)
            self.gateway = gateway
            let stop = self.stop
            running = Task { await gateway.run(until: stop) }
            (self.api, port) = try await serveLocalAPI(gateway, token: token, idleLimit: idleLimit)
        }

        func stopAll() async throws {
            api.cancel()
            _ = await api.result
            stop.stop()
            await running.value
            server.stop()
            for printer in printers { printer.stop() }
        }

        /// A test that throws before `stopAll` still stops its gateway: left running, it would reopen its port's
        /// path, which a later test's mock may be given.
        deinit {
            api.cancel()
            stop.stop()
            for printer in printers { printer.stop() }
        }

        /// A request to the API; `token` nil sends none.
        func request(_ method: HTTPMethod, _ path: String, json: String? = nil, token: String?? = .none,
                     headers: [(String, String)] = [], contentType: String = "application/json")
            async throws -> (status: Int, type: String, body: String) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
            request.method = method
            let bearer: String? = switch token {
            case .none: self.token
            case .some(let given): given
            }
            if let bearer { request.headers.add(name: "Authorization", value: "Bearer \(bearer)") }
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            if let json {
                request.headers.add(name: "Content-Type", value: contentType)
                request.body = .bytes(ByteBuffer(string: json))
            }
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            return (Int(response.status.code), response.headers.first(name: "Content-Type") ?? "", String(buffer: body))
        }

        /// `POST /v1/check`: the event id it was reported as (nil: told already), and its problems.
        func check() async throws -> (reported: String?, problems: [String]) {
            let report = try json(try await request(.POST, "/v1/check").body)
            return (report["reported"] as? String, report["problems"] as? [String] ?? [])
        }

        func json(_ text: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        }
    }

    /// A tablet that lost its power or Wi-Fi never closes its keep-alive connection, nor finishes a request it began:
    /// the gateway closes either once idle, or each would hold a descriptor for the gateway's life. A request under
    /// way (a trace, seconds long) is not idle.
    @Test func aConnectionLeftIdleIsClosedByTheGatewayAndARequestUnderWayIsNot() async throws {
        let hall = try await Hall(idleLimit: .milliseconds(500))
        let keptAlive = try LoopbackClient(port: hall.port), halfSent = try LoopbackClient(port: hall.port)
        defer { keptAlive.close(); halfSent.close() }
        keptAlive.send("GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        #expect(keptAlive.receive().hasPrefix("HTTP/1.1 200"))
        halfSent.send("POST /v1/calls HTTP/1.1\r\nHost: gateway\r\n")
        let trace = try await hall.request(.GET, "/v1/buses/line-a/trace?seconds=2")
        let ticks = trace.body.split(separator: "\n", omittingEmptySubsequences: false).dropLast().filter(\.isEmpty)
        #expect(trace.status == 200 && ticks.count == 2, "a two-second trace answered whole: \(trace.body)")
        #expect(keptAlive.closedByPeer(), "an idle keep-alive connection is closed")
        #expect(halfSent.closedByPeer(), "a request begun and left is closed")
        try await hall.stopAll()
    }

    /// A technician who fixed the central store's link and checked again was told the sink failed until its backoff
    /// ended (up to a minute): the check tries it now. Not a pause the store asked for: a monitor checking every
    /// minute would undo its `Retry-After`.
    @Test(arguments: [false, true])
    func aCheckTriesAFailingCentralStoreNowUnlessTheStoreAskedToWait(storeAskedToWait: Bool) async throws {
        let folder = try TemporaryDirectory()
        let token = "check-test-token"
        let tokenFile = folder.file("token")
        try "\(token)\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let receiver = try await Receiver.start(folder: folder, token: token)
        defer { receiver.stop() }
        let proxy = try await FaultProxy.start(target: receiver.port)
        defer { proxy.stop() }
        try await proxy.set(storeAskedToWait ? "status 503 retry-after 3600" : "status 503")
        let hall = try await Hall(sinks: "  - {type: http, name: central, url: \(proxy.url), token-file: \(tokenFile)}")
        func central() async throws -> SinkReport? { try await hall.gateway.outbox.sinkReports(["central"]).first }
        // Three failures: the backoff is at its third step, 2 to 4 s.
        let failures: Int64 = storeAskedToWait ? 1 : 3
        #expect(try await eventually { try await central()?.failed ?? 0 >= failures }, "the store's 503 was met")
        try await proxy.set("pass")

        let report = try hall.json(try await hall.request(.POST, "/v1/check").body)
        let problems = report["problems"] as? [String] ?? []
        let sinks = try #require(report["sinks"] as? [[String: Any]])
        let row = try #require(sinks.first { $0["sink"] as? String == "central" })
        if storeAskedToWait {
            #expect(problems.contains { $0.hasPrefix("sink central:") && $0.contains("503") }, "\(problems)")
            #expect(row["passed"] as? Bool == false, "\(row)")
            #expect(try await receiver.stats().rows == 0)
        } else {
            #expect(!problems.contains { $0.hasPrefix("sink central:") }, "\(problems)")
            #expect(row["passed"] as? Bool == true, "\(row)")
            #expect(row["lastSuccessAt"] is String, "\(row)")
            #expect(try await receiver.stats().rows > 0)
        }
        try await hall.stopAll()
    }

    @Test func aCallReachesTheWindowsBoardAndTheHallBoardAndCommitsItsEvent() async throws {
        let hall = try await Hall()
        let response = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "A023"}"#)
        let result = try hall.json(response.body)
        #expect(response.status == 200, "\(response.body)")
        #expect(result["status"] as? String == "done")
        #expect(hall.board.display.text == "请A023号到5号窗口")
        #expect(hall.hallBoard.display.text == "请A023号到5号窗口", "the hall board shows every window's call")
        #expect(hall.board.display.mode == .steady)
        let devices = try #require(result["devices"] as? [[String: Any]])
        #expect(Set(devices.compactMap { $0["device"] as? String }) == ["board-w05", "board-hall"], "not the pad")
        let eventId = try #require(result["eventId"] as? String)
        let committed = try await hall.gateway.outbox.entries(after: 0, limit: 1000)
        let event = try #require(committed.first { $0.id == eventId })
        #expect(event.type == "hall.call.displayed" && event.subject == "window/5")
        #expect(event.json.contains(#""ticket":"A023""#))

        let recall = try await hall.request(.POST, "/v1/windows/5/recall", json: #"{"ticket": "A023"}"#)
        #expect(recall.status == 200)
        #expect(hall.board.display.mode == .blinking)
        let pause = try await hall.request(.POST, "/v1/windows/5/pause")
        #expect(pause.status == 200)
        #expect(hall.board.display.text == "暂停服务")
        #expect(hall.hallBoard.display.text == "请A023号到5号窗口", "a window's pause is not the hall's")
        let text = try await hall.request(.POST, "/v1/devices/board-hall/text", json: #"{"text": "欢迎光临"}"#)
        #expect(text.status == 200)
        #expect(hall.hallBoard.display.text == "欢迎光临")
        try await hall.stopAll()
    }

    /// The queue system sees per board that a call after closing lit it, and until when (from a night trial: only
    /// `gatewayd status`'s line said so).
    @Test func aBoardACallAfterClosingSwitchedOnSaysUntilWhenInTheDeviceList() async throws {
        // 2026-12-02 20:00 UTC, 04:00 in the hall (Asia/Shanghai): closed since 17:00 the day before.
        let clock = ManualHallClock(now: Date(timeIntervalSince1970: 1_796_241_600))
        let hall = try await Hall(more: #"hours: {monday-friday: ["09:00-17:00"]}"#, clock: clock)
        #expect(await HallDayGatewayTests.committed("boards-off-2026-12-02T09:00:00Z", by: hall.gateway))
        let call = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "A031"}"#)
        #expect(call.status == 200, "\(call.body)")
        let list = try hall.json(try await hall.request(.GET, "/v1/devices").body)
        let devices = try #require(list["devices"] as? [[String: Any]])
        let held = Dictionary(uniqueKeysWithValues: devices.compactMap { device in
            (device["onAfterClosingUntil"] as? String).map { (device["device"] as? String ?? "", $0) }
        })
        #expect(held == ["board-w05": "2026-12-02T20:30:00.000Z", "board-hall": "2026-12-02T20:30:00.000Z"], "\(devices)")
        // Its screen as the board's read says: lit for the call; a pad has none.
        #expect(devices.first { $0["device"] as? String == "board-w05" }?["screen"] as? String == "on", "\(devices)")
        #expect(devices.contains { $0["device"] as? String == "eval-w05" && $0["screen"] == nil }, "\(devices)")
        // Dark by its own key during the hold: the check fails for it, in its row too, and says how to light it for
        // the rest of the hold (from a trial: a power command, which kept it on until the opening).
        HallDayGatewayTests.setScreen(hall.board, on: false)
        var report: [String: Any] = [:]
        #expect(await eventually {
            report = (try? hall.json(try await hall.request(.POST, "/v1/check").body)) ?? [:]
            return (report["devices"] as? [[String: Any]])?.first { $0["device"] as? String == "board-w05" }?["passed"] as? Bool == false
        }, "\(report)")
        #expect((report["problems"] as? [String])?.contains(
            "board-w05 is dark: its screen is off while the hall needs it lit (its own key or a power cut): "
                + "show its call or text again (a recall) to switch it on for late-call-minutes more") == true, "\(report)")
        // The remedy works: a recall lights it again.
        let recall = try await hall.request(.POST, "/v1/windows/5/recall", json: #"{"ticket": "A031"}"#)
        #expect(recall.status == 200 && hall.board.isOn, "\(recall.body)")
        try await hall.stopAll()
    }

    /// Without `hours:` the gateway does not know when the hall needs a board lit: its screen is given, not judged.
    @Test func aBoardsScreenIsGivenAndNotJudgedWithoutOpeningHours() async throws {
        let hall = try await Hall()
        HallDayGatewayTests.setScreen(hall.board, on: false)
        func board05() async throws -> [String: Any]? {
            let list = try hall.json(try await hall.request(.GET, "/v1/devices").body)
            return (list["devices"] as? [[String: Any]])?.first { $0["device"] as? String == "board-w05" }
        }
        #expect(await eventually { (try? await board05())?["screen"] as? String == "off" })
        #expect(try await board05()?["condition"] == nil)
        // A call to it is done, and said not seen (from a trial: `done`, and the citizen saw nothing).
        let call = try hall.json(try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "A031"}"#).body)
        let outcome = (call["devices"] as? [[String: Any]])?.first { $0["device"] as? String == "board-w05" }
        #expect(outcome?["result"] as? String == "done", "\(call)")
        #expect(outcome?["detail"] as? String == "the board's screen is off: not seen", "\(call)")
        let pause = try hall.json(try await hall.request(.POST, "/v1/windows/5/pause").body)
        let paused = (pause["devices"] as? [[String: Any]])?.first { $0["device"] as? String == "board-w05" }
        #expect(paused?["detail"] as? String == "the board's screen is off: not seen", "\(pause)")
        try await hall.stopAll()
    }

    /// From a night technician's question (what is board 5 showing?): what each board was last sent is given with the
    /// devices, in the board's words; of a text sent to it (which may name a citizen) neither its words, written
    /// nowhere in the outbox, nor a fingerprint (from a trial: a name was found again from one in 0.1 s).
    @Test func whatABoardWasLastSentIsGivenInItsWordsAndAFreeTextWithoutThem() async throws {
        let hall = try await Hall()
        func lastShown(_ board: String) async throws -> [String: Any]? {
            let list = try hall.json(try await hall.request(.GET, "/v1/devices").body)
            let device = (list["devices"] as? [[String: Any]])?.first { $0["device"] as? String == board }
            return device?["lastShown"] as? [String: Any]
        }
        #expect(try await lastShown("board-w05") == nil, "nothing sent yet")
        let before = Date()
        let call = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "A031"}"#)
        #expect(call.status == 200, "\(call.body)")
        let shown = try #require(try await lastShown("board-w05"))
        #expect(shown["command"] as? String == "call" && shown["ticket"] as? String == "A031" && shown["window"] as? String == "5")
        #expect(shown["text"] as? String == "请A031号到5号窗口", "\(shown)")
        let sentAt = try #require(shown["at"] as? String)
        let at = try #require(EventTime.parse(sentAt))
        #expect(at >= before.addingTimeInterval(-1) && at <= Date(), "\(at)")
        #expect(try await lastShown("board-hall")?["text"] as? String == "请A031号到5号窗口", "the hall board shows every call")
        #expect(try await lastShown("board-w07") == nil, "window 7's board was sent nothing")
        #expect(try await lastShown("eval-w05") == nil, "a pad shows no calls")

        let text = try await hall.request(.POST, "/v1/devices/board-w05/text", json: #"{"text": "请张三先生到5号窗口"}"#)
        #expect(text.status == 200 && hall.board.display.text == "请张三先生到5号窗口", "\(text.body)")
        let free = try #require(try await lastShown("board-w05"))
        #expect(free["command"] as? String == "show-text" && free["text"] == nil, "\(free)")
        #expect(Set(free.keys) == ["command", "at"], "nothing else of it: \(free)")
        #expect(try await lastShown("board-hall")?["command"] as? String == "call", "the text went to board-w05 only")
        // Kept by the outbox for `status` and a restart: without its words.
        #expect(await eventually {
            (try? await hall.gateway.outbox.deviceStates())?.first { $0.state.device == "board-w05" }?.state.lastShown?.command
                == "show-text"
        })
        try await hall.stopAll()
        let outbox = hall.gateway.config.outboxPath
        for file in [outbox, outbox + "-wal"] where FileManager.default.fileExists(atPath: file) {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
            #expect(bytes.range(of: Data("张三".utf8)) == nil, "\(file) holds the text's words")
        }
    }

    @Test func aWindowWithoutABoardOfItsOwnIsCalledOnTheHallBoard() async throws {
        let hall = try await Hall(devices: """
              - {id: eval-w03, profile: modbus-evaluator-3key, bus: line-a, address: 8, window: "3"}
            """)
        let response = try await hall.request(.POST, "/v1/windows/3/call", json: #"{"ticket": "B777"}"#)
        #expect(response.status == 200, "\(response.body)")
        let result = try hall.json(response.body)
        #expect(result["status"] as? String == "done")
        #expect((result["devices"] as? [[String: Any]])?.compactMap { $0["device"] as? String } == ["board-hall"])
        #expect(hall.hallBoard.display.text == "请B777号到3号窗口")
        // A pause there has nothing to show it: the hall board shows calls, not one window's pause.
        let pause = try await hall.request(.POST, "/v1/windows/3/pause")
        #expect(pause.status == 404 && pause.body.contains("window 3 has no device that takes pause"), "\(pause.body)")
        try await hall.stopAll()
    }

    @Test func windowsNamedInChineseOrWithASpaceAreReachedPercentEncoded() async throws {
        let hall = try await Hall(devices: """
              - {id: eval-z06, profile: modbus-evaluator-3key, bus: line-a, address: 8, window: "综合6"}
              - {id: eval-6a, profile: modbus-evaluator-3key, bus: line-a, address: 10, window: "6 A"}
            """)
        let chinese = try await hall.request(.POST, "/v1/windows/%E7%BB%BC%E5%90%886/call", json: #"{"ticket": "B777"}"#)
        #expect(chinese.status == 200, "\(chinese.body)")
        #expect(hall.hallBoard.display.text == "请B777号到综合6号窗口")
        let spaced = try await hall.request(.POST, "/v1/windows/6%20A/call", json: #"{"ticket": "A001"}"#)
        #expect(spaced.status == 200, "\(spaced.body)")
        #expect(hall.hallBoard.display.text == "请A001号到6 A号窗口")
        let unknown = try await hall.request(.POST, "/v1/windows/%E7%BB%BC%E5%90%889/pause")
        #expect(unknown.status == 404 && unknown.body.contains("has no window 综合9"), "\(unknown.body)")
        // A citizen's number sent where the window goes is not said back.
        let number = try await hall.request(.POST, "/v1/windows/13812345678/pause")
        let detail = try #require(try hall.json(number.body)["detail"] as? String)
        #expect(number.status == 404 && !detail.contains("13812345678") && detail.contains("not repeated"), "\(detail)")
        try await hall.stopAll()
    }

    @Test func aBodyOverTheLimitIsRefusedInWords() async throws {
        let hall = try await Hall()
        let huge = #"{"text": ""# + String(repeating: "x", count: 2_200_000) + #""}"#
        let answer = try await hall.request(.POST, "/v1/devices/board-w05/text", json: huge)
        #expect(answer.status == 413 && answer.type == "application/problem+json")
        #expect(answer.body.contains("the body is larger than the API takes (2 MB)") && !answer.body.contains("NIO"),
                "\(answer.body.prefix(300))")
        #expect(try hall.json(answer.body)["kind"] as? String == "invalid", "a kind a program switches on, as for any 400")
        try await hall.stopAll()
    }

    @Test func aFieldTheEndpointDoesNotTakeIsRefusedNotIgnored() async throws {
        let hall = try await Hall()
        // From a trial: a terminal's `staffId` (meant as `staff`) was dropped and the rating stored without its staff.
        let rating = try await hall.request(.POST, "/v1/terminals/tablet-w05/ratings",
                                            json: #"{"counter": 7, "level": 5, "staffId": "0231"}"#)
        let refusal = try hall.json(rating.body)
        #expect(rating.status == 400 && refusal["kind"] as? String == "invalid", "\(rating.body)")
        #expect(refusal["detail"] as? String == "the body is not what this endpoint takes: it has no "
                + "field 'staffId' (its fields: counter, boot, key, level, staff, ticket)", "\(rating.body)")
        // A misspelt required field is named as what it is, not as the missing one.
        let call = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"tickets": "B101"}"#)
        #expect(call.status == 400 && call.body.contains("it has no field 'tickets' (its fields: ticket)"), "\(call.body)")
        // A field holding a citizen's number is not repeated.
        let number = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "B101", "13812345678": 1}"#)
        #expect(number.status == 400 && !number.body.contains("13812345678"), "\(number.body)")
        // An endpoint without body fields takes none, or {}.
        let pause = try await hall.request(.POST, "/v1/windows/5/pause", json: #"{"reason": "lunch"}"#)
        #expect(pause.status == 400 && pause.body.contains("it has no field 'reason' (it takes none)"), "\(pause.body)")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 0, "nothing ran")
        #expect(try await hall.gateway.outbox.entries(after: 0, limit: 1000).allSatisfy { $0.type != "hall.rating.submitted" })
        #expect(try await hall.request(.POST, "/v1/windows/5/pause", json: "{}").status == 200)
        // No body is no body, whatever it is labelled (curl -d '' says form data).
        #expect(try await hall.request(.POST, "/v1/windows/5/resume", json: "", contentType: "application/x-www-form-urlencoded")
                    .status == 200)
        try await hall.stopAll()
    }

    @Test func aBodyLabelledAsSomethingElseThanJSONIsRefusedBeforeAnythingRuns() async throws {
        let hall = try await Hall()
        // From a trial: a body sent as text/plain was read as JSON and the call ran.
        for label in ["text/plain", "application/x-www-form-urlencoded"] {
            let refused = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "B101"}"#, contentType: label)
            #expect(refused.status == 415 && refused.type == "application/problem+json", "\(label): \(refused.body)")
            #expect(try hall.json(refused.body)["kind"] as? String == "invalid")
            #expect((try hall.json(refused.body)["detail"] as? String)?.contains("Content-Type: application/json") == true,
                    "\(refused.body)")
        }
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 0, "nothing ran")
        // JSON with its charset, or a JSON type of its own, is JSON.
        let charset = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "B101"}"#,
                                             contentType: "application/json; charset=utf-8")
        #expect(charset.status == 200, "\(charset.body)")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 1)
        try await hall.stopAll()
    }

    @Test func aRepeatedIdempotencyKeyRunsTheCommandOnce() async throws {
        let hall = try await Hall()
        let key = [("Idempotency-Key", "queue-7f3a-0001")]
        let first = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "B101"}"#, headers: key)
        let second = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "B101"}"#, headers: key)
        #expect(first.status == 200 && second.status == 200)
        #expect(try hall.json(first.body)["id"] as? String == hall.json(second.body)["id"] as? String)
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 1, "the board took one command")
        // The key sent again with another request is refused: the first result would say C999 was called.
        let reused = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "C999"}"#, headers: key)
        #expect(reused.status == 422, "\(reused.body)")
        #expect(reused.type == "application/problem+json")
        #expect(try hall.json(reused.body)["kind"] as? String == "idempotency-key-reused", "a kind a program switches on")
        #expect((try hall.json(reused.body)["detail"] as? String)?.contains(
            "this idempotency key was used for call of ticket B101 at window 5; this request is call of "
                + "ticket C999 at window 5") == true, "\(reused.body)")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 1, "nothing ran")
        let calls = try await hall.gateway.outbox.entries(after: 0, limit: 1000).filter { $0.type == "hall.call.displayed" }
        #expect(calls.count == 1)

        // Free text a board shows may name a citizen: the refusal and what is kept with the key do not repeat it.
        let textKey = [("Idempotency-Key", "queue-7f3a-0002")]
        _ = try await hall.request(.POST, "/v1/devices/board-w05/text", json: #"{"text": "请张三先生到5号窗口"}"#, headers: textKey)
        let otherText = try await hall.request(
            .POST, "/v1/devices/board-w05/text", json: #"{"text": "请李四女士到5号窗口"}"#, headers: textKey)
        #expect(otherText.status == 422, "\(otherText.body)")
        #expect(otherText.body.contains("was used for show-text on board-w05 (text #"), "\(otherText.body)")
        #expect(!otherText.body.contains("张三") && !otherText.body.contains("李四"), "\(otherText.body)")
        let kept = try await hall.gateway.outbox.commandResult(key: "queue-7f3a-0002")
        #expect(kept?.request?.contains("张三") == false, "\(String(describing: kept?.request))")
        try await hall.stopAll()
    }

    @Test func aTicketThatIsNotATicketNumberIsRefusedAndNotRepeated() async throws {
        let hall = try await Hall(more: "tickets: {prefixes: [A]}")
        // A name and a phone number where a ticket number belongs: on a board, in the store, in the logs.
        for ticket in ["张三", "13812345678", "A023 张三", "110101199003077777"] {
            let call = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "\#(ticket)"}"#)
            #expect(call.status == 400, "\(ticket): \(call.body)")
            #expect(call.body.contains("'ticket' is not a ticket number") && !call.body.contains(ticket), "\(call.body)")
        }
        let ticket = try await hall.request(.POST, "/v1/tickets", json: #"{"number": "13812345678", "service": "x"}"#)
        #expect(ticket.status == 400 && !ticket.body.contains("13812345678"), "\(ticket.body)")
        // A phone number sent as a window's name is not repeated in the problem's instance or detail (from a trial).
        for (method, path) in [(HTTPMethod.POST, "/v1/windows/13812345678/call"), (.GET, "/v1/windows/13812345678/call")] {
            let answer = try await hall.request(method, path, json: #"{"ticket": "A001"}"#)
            #expect([404, 405].contains(answer.status) && !answer.body.contains("13812345678"), "\(answer.status) \(answer.body)")
        }
        // The gateway numbers prefix A: a queue system's A050 would be given again by its counter (from a trial).
        let numbered = try await hall.request(.POST, "/v1/tickets", json: #"{"number": "A050", "service": "户籍"}"#)
        #expect(numbered.status == 400 && numbered.body.contains("the gateway numbers the tickets of prefix A"), "\(numbered.body)")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 0, "nothing was shown")
        #expect(try await hall.gateway.outbox.entries(after: 0, limit: 1000).allSatisfy {
            !$0.json.contains("张三") && !$0.json.contains("Li Wei")
        }, "no event carries a refused staff id")
        // From a security trial: a number where a device, a bus, a content type or an idempotency key goes was said back.
        for (method, path) in [(HTTPMethod.GET, "/v1/devices/13812345678/printer-status"),
                               (.POST, "/v1/devices/13812345678/probe"), (.GET, "/v1/buses/13812345678/trace")] {
            let answer = try await hall.request(method, path)
            #expect(answer.status == 404 && !answer.body.contains("13812345678"), "\(path): \(answer.status) \(answer.body)")
        }
        let labelled = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "B001"}"#,
                                              contentType: "text/13812345678")
        #expect(labelled.status == 415 && !labelled.body.contains("13812345678"), "\(labelled.body)")
        let personalKey = [("Idempotency-Key", "13812345678-1")]
        _ = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "B002"}"#, headers: personalKey)
        let reusedKey = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "B003"}"#, headers: personalKey)
        #expect(reusedKey.status == 422 && !reusedKey.body.contains("13812345678"), "\(reusedKey.body)")
        // Ticket numbers of every shape, the queue system's own prefixes among them, are called.
        for number in ["B023", "V001", "AB-12", "1023"] {
            let call = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "\#(number)"}"#)
            #expect(call.status == 200, "\(number): \(call.body)")
        }
        try await hall.stopAll()
    }

    @Test func freeTextStaffAndServiceAreRefusedWithControlCharactersOrACitizensNumbersAndNotRepeated() async throws {
        let hall = try await Hall(more: """
            terminals:
              - {id: tablet-w05, window: "5", scale: five-level}
            """)
        // Bytes the caller chose would reach the board's wire; a number would reach events, logs and the store.
        let refused: [(path: String, json: String, secret: String, reason: String)] = [
            ("/v1/devices/board-w05/text", #"{"text": "AB\u0000\u001b[2JCD"}"#, "[2J", "control or formatting character"),
            ("/v1/devices/board-w05/text", #"{"text": "请13812345678到5号窗口"}"#, "13812345678", "mobile or resident ID"),
            ("/v1/devices/board-w05/text", #"{"text": "\#(String(repeating: "长", count: 201))"}"#, "长长", "at most 200"),
            ("/v1/windows/5/staff", #"{"staff": "138 1234 5678"}"#, "1234", "mobile or resident ID"),
            // A name where the staff number goes: refused before the pad is told, so no event carries it.
            ("/v1/windows/5/staff", #"{"staff": "张三"}"#, "张三", "must be a staff number"),
            ("/v1/terminals/tablet-w05/ratings", #"{"counter": 3, "level": 5, "staff": "Li Wei"}"#, "Li Wei",
             "must be a staff number"),
            // The technician's display test takes the same token, so the same rule.
            ("/v1/devices/board-w05/test", #"{"text": "\u001b[5m请13812345678"}"#, "[5m", "control or formatting character"),
            ("/v1/terminals/tablet-w05/ratings", #"{"counter": 1, "level": 5, "staff": "张三 110101199003071234"}"#,
             "110101199003071234", "mobile or resident ID"),
            ("/v1/terminals/tablet-w05/ratings", #"{"counter": 2, "level": 5, "staff": "S01\n2026-12-02 critical"}"#,
             "critical", "control or formatting character"),
            ("/v1/tickets", #"{"number": "A001", "service": "户籍 11010119900307123X"}"#, "11010119900307123X",
             "mobile or resident ID"),
            ("/v1/tickets", #"{"number": "A001", "service": "户籍", "waitingAhead": -5}"#, "-5", "waitingAhead must be 0 to 100000"),
            // From a security trial: layouts that went through, and a boot id that became part of an event id.
            ("/v1/windows/5/staff", #"{"staff": "138_1234_5678"}"#, "1234", "mobile or resident ID"),
            ("/v1/tickets", #"{"number": "A001", "service": "138 - 1234 - 5678"}"#, "1234", "mobile or resident ID"),
            ("/v1/tickets", #"{"number": "A001", "service": "一三八一二三四五六七八"}"#, "一三八", "mobile or resident ID"),
            ("/v1/terminals/tablet-w05/ratings", #"{"counter": 4, "level": 5, "boot": "110101199003077774"}"#,
             "110101199003077774", "no mobile or resident ID number"),
        ]
        for request in refused {
            let answer = try await hall.request(.POST, request.path, json: request.json)
            #expect(answer.status == 400, "\(request.json): \(answer.body)")
            #expect(answer.body.contains(request.reason) && !answer.body.contains(request.secret), "\(answer.body)")
        }
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 0, "nothing was shown")

        // Text the board cannot hold is refused by the board's driver: its reason, not the text, goes into the event.
        let tooLong = String(repeating: "请到窗口", count: 10)
        let refusedByBoard = try await hall.request(.POST, "/v1/devices/board-w05/text", json: #"{"text": "\#(tooLong)"}"#)
        #expect(refusedByBoard.status == 200 && refusedByBoard.body.contains("the text needs 80 bytes, the board holds 64"),
                "\(refusedByBoard.body)")
        let failed = try await hall.gateway.outbox.entries(after: 0, limit: 1000).filter { $0.type == "hall.command.failed" }
        #expect(failed.count == 1 && !failed.contains { $0.json.contains("请到窗口") }, "\(failed.map(\.json))")

        let shown = try await hall.request(.POST, "/v1/devices/board-w05/text", json: #"{"text": "欢迎光临 服务热线12345"}"#)
        #expect(shown.status == 200 && shown.body.contains(#""status":"done""#), "\(shown.body)")
        try await hall.stopAll()
    }

    @Test func anIdempotencyKeyUsedAgainOnALaterDayGetsAnEventOfItsOwn() {
        // Keys are kept 24 h: one used again after that runs again, and its event must not be dropped as the first's.
        let day = Date(timeIntervalSince1970: 1_796_000_000)
        #expect(CommandCenter.eventId(forKey: "w3-A023", at: day) == CommandCenter.eventId(forKey: "w3-A023", at: day + 3600))
        #expect(CommandCenter.eventId(forKey: "w3-A023", at: day) != CommandCenter.eventId(forKey: "w3-A023", at: day + 86_400))
        #expect(CommandCenter.eventId(forKey: "w3-A023", at: day) != CommandCenter.eventId(forKey: "w3-A024", at: day))
        #expect(!CommandCenter.eventId(forKey: "w3-A023", at: day).contains("A023"), "the key itself is the client's")
        // Its 64-bit FNV-1a fingerprint in 16 hex digits, a leading zero too (python: 0x5bad67a338eecd7).
        #expect(CommandCenter.eventId(forKey: "w3-A000", at: day) == "command-05bad67a338eecd7-20261130")
    }

    @Test func aCommandToAnOfflineBoardAnswersWithThatReason() async throws {
        let hall = try await Hall()
        #expect(await eventually {
            let devices = (try? await hall.request(.GET, "/v1/devices").body).flatMap { try? hall.json($0) }
            let list = devices?["devices"] as? [[String: Any]] ?? []
            return list.contains { $0["device"] as? String == "board-w07" && $0["state"] as? String == "offline" }
        })
        let response = try await hall.request(.POST, "/v1/windows/7/call", json: #"{"ticket": "A024"}"#)
        let result = try hall.json(response.body)
        #expect(result["status"] as? String == "device-offline")
        let device = try #require((result["devices"] as? [[String: Any]])?.first { $0["device"] as? String == "board-w07" })
        #expect((device["detail"] as? String)?.contains("board-w07 is offline: no answer") == true)
        // The hall board showed it: a call displayed, its result saying the window's board was offline.
        let eventId = try #require(result["eventId"] as? String)
        let event = try #require(try await hall.gateway.outbox.entries(after: 0, limit: 1000).first { $0.id == eventId })
        #expect(event.type == "hall.call.displayed" && event.json.contains(#""result":"device-offline""#), "\(event.json)")
        // A pause only the offline board would show was carried out nowhere: not a window paused.
        let pause = try hall.json(try await hall.request(.POST, "/v1/windows/7/pause").body)
        #expect(pause["status"] as? String == "device-offline")
        let pauseId = try #require(pause["eventId"] as? String)
        let failed = try #require(try await hall.gateway.outbox.entries(after: 0, limit: 1000).first { $0.id == pauseId })
        #expect(failed.type == "hall.command.failed" && failed.json.contains(#""command":"pause""#), "\(failed.json)")
        try await hall.stopAll()
    }

    @Test func aCheckAskedForTellsTheCentralStoreEachNewVerdictOnceAndRecordsUnderTheHallsClock() async throws {
        // The hall's clock two days behind this machine's: what the check records goes by the hall's.
        let clock = ManualHallClock(now: Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 2 * 86_400).rounded()))
        let hall = try await Hall(clock: clock)
        func states() async -> [String: String] {
            let devices = (try? await hall.request(.GET, "/v1/devices").body).flatMap { try? hall.json($0) }
            let list = devices?["devices"] as? [[String: Any]] ?? []
            return Dictionary(uniqueKeysWithValues: list.compactMap { device in
                (device["device"] as? String).map { ($0, device["state"] as? String ?? "") }
            })
        }
        func checkEvents() async throws -> [OutboundEvent] {
            try await hall.gateway.outbox.entries(after: 0, limit: 1000).filter { $0.type == "hall.gateway.device_check" }
        }
        #expect(await eventually {
            await states() == ["board-w05": "online", "eval-w05": "online", "board-w07": "offline", "board-hall": "online"]
        })

        // The first check since the start: board 7 is silent, and the central store is told.
        let first = try await hall.check()
        #expect(first.problems.count == 1 && first.problems[0].hasPrefix("board-w07 does not answer"), "\(first.problems)")
        let firstId = try #require(first.reported)
        let event = try #require(try await checkEvents().first { $0.id == firstId })
        #expect(event.json.contains(#""onDemand":true"#) && event.json.contains(#""passed":false"#), "\(event.json)")
        #expect(event.json.contains("board-w07 does not answer"))
        // Asked again with nothing changed (a monitor asking every minute): told already, no second event.
        let again = try await hall.check()
        #expect(again.problems == first.problems && again.reported == nil)
        #expect(try await checkEvents().count == 1)

        // Board 5 goes silent, then the technician fixes it: each verdict reaches the central store once.
        hall.board.answering = false
        #expect(await eventually { await states()["board-w05"] == "offline" })
        let broken = try await hall.check()
        #expect(broken.problems.count == 2 && broken.reported != nil, "\(broken.problems)")
        hall.board.answering = true
        #expect(await eventually { await states()["board-w05"] == "online" })
        let fixed = try await hall.check()
        let fixedId = try #require(fixed.reported)
        #expect(fixed.problems.count == 1 && fixed.problems[0].hasPrefix("board-w07 does not answer"))
        #expect(try await checkEvents().map(\.id) == [firstId, try #require(broken.reported), fixedId])

        // The check's real write to the outbox was made under the hall's clock, not this machine's.
        #expect(try await hall.gateway.outbox.lastRecordedTime() == clock.now)
        try await hall.stopAll()
    }

    @Test func clientMistakesGetProblemDetails() async throws {
        let hall = try await Hall()
        for token in [String?.none, "wrong"] {
            let refused = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "A1"}"#, token: .some(token))
            #expect(refused.status == 401 && refused.type == "application/problem+json")
            #expect(try hall.json(refused.body)["status"] as? Int == 401)
        }
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 0, "nothing ran without the token")
        let malformed = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "#)
        #expect(malformed.status == 400 && malformed.type == "application/problem+json")
        #expect(try hall.json(malformed.body)["detail"] as? String == "the body is not what this endpoint takes: not valid JSON", "\(malformed.body)")
        #expect(try hall.json(malformed.body)["kind"] as? String == "invalid", "refused before it ran: \(malformed.body)")
        let missing = try await hall.request(.POST, "/v1/windows/5/call", json: #"{}"#)
        #expect(missing.status == 400)
        #expect((try hall.json(missing.body)["detail"] as? String)?.contains("'ticket' is missing") == true, "\(missing.body)")
        #expect(try hall.json(missing.body)["kind"] as? String == "invalid")
        // A fraction where a whole number goes is valid JSON with one field wrong: the detail names the field.
        let fraction = try await hall.request(.POST, "/v1/devices/board-w05/brightness", json: #"{"level": 50.5}"#)
        #expect(fraction.status == 400)
        #expect(try hall.json(fraction.body)["detail"] as? String
                == "the body is not what this endpoint takes: 'level' must be a whole number", "\(fraction.body)")
        let unknown = try await hall.request(.POST, "/v1/windows/99/call", json: #"{"ticket": "A1"}"#)
        #expect(unknown.status == 404)
        #expect(try hall.json(unknown.body)["detail"] as? String == "hall test-hall has no window 99")
        let nowhere = try await hall.request(.GET, "/v1/nowhere")
        #expect(nowhere.status == 404 && nowhere.type == "application/problem+json")
        let badPage = try await hall.request(.GET, "/v1/events?limit=0")
        #expect(badPage.status == 400)
        // A device asked what it cannot do is refused as a call to a pad is, with the kind a program switches on
        // (from a docs trial: a 409 without one).
        for (method, path, detail) in [(HTTPMethod.POST, "/v1/devices/eval-w05/test", "eval-w05 has no test: only boards and printers do"),
                                       (.GET, "/v1/devices/board-w05/printer-status", "board-w05 is not a ticket printer")] {
            let answer = try await hall.request(method, path)
            #expect(answer.status == 400 && answer.type == "application/problem+json", "\(path): \(answer.status)")
            #expect(try hall.json(answer.body)["kind"] as? String == "invalid", "\(path): \(answer.body)")
            #expect((try hall.json(answer.body)["detail"] as? String)?.hasPrefix(detail) == true, "\(path): \(answer.body)")
        }
        try await hall.stopAll()
    }

    @Test func healthReadinessDevicesEventsAndTheDocument() async throws {
        let hall = try await Hall()
        #expect(try await hall.request(.GET, "/healthz", token: .some(nil)).status == 200)
        #expect(try await hall.request(.GET, "/readyz", token: .some(nil)).status == 200)
        #expect(try await hall.request(.GET, "/metrics", token: .some(nil)).status == 401)
        let metrics = try await hall.request(.GET, "/metrics")
        #expect(metrics.status == 200 && metrics.type.hasPrefix("text/plain"))
        #expect(metrics.body.contains(#"hall_gateway_device_transactions_total{"#))
        let document = try await hall.request(.GET, "/openapi.json", token: .some(nil))
        let committed = try String(contentsOfFile: repositoryRoot + "/Sources/LocalAPI/openapi.json", encoding: .utf8)
        #expect(document.body == committed, "the committed document is the one served")
        hall.pad.press(.satisfied)
        #expect(await eventually {
            let page = (try? await hall.request(.GET, "/v1/events?after=0&limit=1000").body).flatMap { try? hall.json($0) }
            let events = page?["events"] as? [[String: Any]] ?? []
            return events.contains { ($0["event"] as? [String: Any])?["type"] as? String == "hall.rating.submitted" }
        })
        let page = try hall.json(try await hall.request(.GET, "/v1/events?after=0&limit=1").body)
        let first = try #require((page["events"] as? [[String: Any]])?.first)
        #expect(page["next"] as? Int == first["position"] as? Int)
        let next = try hall.json(try await hall.request(.GET, "/v1/events?after=\(page["next"] as? Int ?? 0)&limit=1").body)
        #expect((next["events"] as? [[String: Any]])?.first?["position"] as? Int != first["position"] as? Int)
        try await hall.stopAll()
    }

    @Test func aTerminalPostingTheSameRatingThreeTimesIsStoredOnce() async throws {
        let hall = try await Hall(more: """
            terminals:
              - {id: tablet-w05, window: "5", scale: five-level}
            """)
        let rating = #"{"counter": 41, "level": 5, "staff": "0231", "ticket": "A023"}"#
        var answers: [(Int, String)] = []
        for _ in 0..<3 {
            let response = try await hall.request(.POST, "/v1/terminals/tablet-w05/ratings", json: rating)
            answers.append((response.status, response.body))
        }
        #expect(answers.map(\.0) == [201, 200, 200], "stored, then recognised as the same rating: \(answers)")
        let ratings = try await hall.gateway.outbox.entries(after: 0, limit: 1000)
            .filter { $0.type == HallEventType.ratingSubmitted && $0.source.hasSuffix("/tablet-w05") }
        #expect(ratings.count == 1)
        let stored = try #require(ratings.first)
        #expect(stored.subject == "window/5")
        for field in [#""level":5"#, #""staffId":"0231""#, #""ticket":"A023""#, #""deviceCounter":41"#] {
            #expect(stored.json.contains(field), "\(field) in \(stored.json)")
        }
        // The same counter with another rating is not a retry: refused, not silently dropped.
        let reused = try await hall.request(
            .POST, "/v1/terminals/tablet-w05/ratings", json: #"{"counter": 41, "level": 1, "staff": "0231", "ticket": "A023"}"#)
        #expect(reused.status == 409 && reused.body.contains("counter 41 was used for another rating"), "\(reused.body)")
        // A terminal that cannot keep its counter sends a new boot each start: its counter 41 is then a new rating,
        // and its retries are still retries.
        let restarted = #"{"boot": "7f3a-2", "counter": 41, "level": 1, "staff": "0231", "ticket": "A023"}"#
        var afterRestart: [Int] = []
        for _ in 0..<2 {
            afterRestart.append(try await hall.request(.POST, "/v1/terminals/tablet-w05/ratings", json: restarted).status)
        }
        #expect(afterRestart == [201, 200])
        let levels = try await hall.gateway.outbox.entries(after: 0, limit: 1000)
            .filter { $0.type == HallEventType.ratingSubmitted && $0.source.hasSuffix("/tablet-w05") }
            .map { $0.json.contains(#""level":5"#) ? 5 : $0.json.contains(#""level":1"#) ? 1 : 0 }
        #expect(levels == [5, 1], "both ratings kept")
        let badBoot = try await hall.request(
            .POST, "/v1/terminals/tablet-w05/ratings", json: #"{"boot": "a/b", "counter": 1, "level": 5}"#)
        #expect(badBoot.status == 400 && badBoot.body.contains("boot must be"), "\(badBoot.body)")
        let offScale = try await hall.request(.POST, "/v1/terminals/tablet-w05/ratings", json: #"{"counter": 42, "key": 9}"#)
        #expect(offScale.status == 400)
        let unknown = try await hall.request(.POST, "/v1/terminals/tablet-w99/ratings", json: rating)
        #expect(unknown.status == 404)
        try await hall.stopAll()
    }

    /// A hall whose tickets go to two simulated printers (printer-1 and printer-2, `hall.printers`), each on a line of
    /// its own.
    static func printersHall(pollIntervalMs: Int, tickets: String) async throws -> Hall {
        let (first, second) = (try MockEscPosPrinter(), try MockEscPosPrinter())
        return try await Hall(
            buses: """
              - {id: kiosk-1, transport: serial, port: \(first.devicePath), poll-interval-ms: \(pollIntervalMs), response-timeout-ms: 200}
              - {id: kiosk-2, transport: serial, port: \(second.devicePath), poll-interval-ms: \(pollIntervalMs), response-timeout-ms: 200}
            """,
            devices: """
              - {id: printer-1, profile: escpos-80mm, bus: kiosk-1, address: 1}
              - {id: printer-2, profile: escpos-80mm, bus: kiosk-2, address: 1}
            """,
            more: tickets, printers: [first, second])
    }

    /// A printer whose paper ran out and whose cover is then opened: the same device failing, but what a technician
    /// goes to do differs, so the check tells it again.
    @Test func aPrintersNewConditionIsANewVerdictOfTheCheck() async throws {
        let hall = try await Self.printersHall(pollIntervalMs: 100, tickets: "")
        let printer = hall.printers[0]
        printer.set(.init(paperOut: true))
        // Every device settled (board 7 never answers): the verdict no longer changes by itself.
        #expect(await eventually {
            let problems = (try? await hall.check())?.problems ?? []
            return problems.contains("printer printer-1: paper-out") && problems.contains { $0.hasPrefix("board-w07 does not answer") }
        })
        #expect(try await hall.check().reported == nil, "told already")
        printer.set(.init(coverOpen: true))
        #expect(await eventually { hall.gateway.printerConditions()["printer-1"] == "cover-open" })
        let opened = try await hall.check()
        #expect(opened.problems.contains("printer printer-1: cover-open") && opened.reported != nil, "\(opened)")
        try await hall.stopAll()
    }

    @Test func aTicketIsNumberedByTheGatewayAndPrintedOnAPrinterThatHasPaper() async throws {
        let hall = try await Self.printersHall(pollIntervalMs: 100, tickets: "tickets: {prefixes: [A], priority-prefixes: [V]}")
        let (empty, loaded) = (hall.printers[0], hall.printers[1])
        empty.set(.init(paperOut: true))
        #expect(await eventually { hall.gateway.printerConditions() == ["printer-1": "paper-out", "printer-2": "online"] })
        let key = [("Idempotency-Key", "kiosk-ticket-1")]
        let first = try await hall.request(.POST, "/v1/tickets", json: #"{"prefix": "A", "service": "社保业务"}"#, headers: key)
        let result = try hall.json(first.body)
        #expect(first.status == 200 && result["status"] as? String == "done", "\(first.body)")
        #expect(result["ticket"] as? String == "A001")
        let outcomes = try #require(result["devices"] as? [[String: Any]])
        #expect(outcomes.map { $0["device"] as? String } == ["printer-1", "printer-2"])
        #expect(outcomes.first?["detail"] as? String == "printer-1: paper-out", "the empty printer is skipped and said so")
        #expect(empty.tickets.isEmpty && loaded.tickets.count == 1)
        let retry = try await hall.request(.POST, "/v1/tickets", json: #"{"prefix": "A", "service": "社保业务"}"#, headers: key)
        #expect(try hall.json(retry.body)["ticket"] as? String == "A001", "a retried request keeps its number")
        #expect(loaded.tickets.count == 1, "and prints nothing again")
        let next = try hall.json(try await hall.request(.POST, "/v1/tickets", json: #"{"prefix": "A", "service": "医保"}"#).body)
        #expect(next["ticket"] as? String == "A002")
        let issued = try await hall.gateway.outbox.entries(after: 0, limit: 1000).filter { $0.type == "hall.ticket.issued" }
        #expect(issued.count == 2)
        // The hall counts its tickets by service: each event says which.
        let services = try issued.map { entry -> String? in
            guard case .command(let executed) = try CloudEvent.decode(json: Data(entry.json.utf8)).data else { return nil }
            return executed.service
        }
        #expect(services == ["社保业务", "医保"])
        let bad = try await hall.request(.POST, "/v1/tickets", json: #"{"prefix": "Z", "service": "x"}"#)
        #expect(bad.status == 400 && bad.body.contains("unknown ticket prefix 'Z' (configured: A; 绿色通道: V)"), "\(bad.body)")
        #expect(try hall.json(bad.body)["kind"] as? String == "invalid")
        // Every request counts by its outcome, the retry too (answered from the first run).
        let samples = MetricsTests.samples(try await hall.request(.GET, "/metrics").body)
        #expect(samples[#"hall_gateway_command_duration_seconds_count{command="ticket",status="done"}"#] == 3)
        #expect(samples[#"hall_gateway_command_duration_seconds_count{command="ticket",status="invalid"}"#] == 1)

        // From a security trial: a number sent where a prefix or a printer goes was said back.
        let personalPrefix = try await hall.request(.POST, "/v1/tickets", json: #"{"prefix": "13812345678", "service": "x"}"#)
        #expect(personalPrefix.status == 400 && personalPrefix.body.contains("unknown ticket prefix (not repeated here")
                    && !personalPrefix.body.contains("13812345678"), "\(personalPrefix.body)")
        let personalPrinter = try await hall.request(.POST, "/v1/tickets",
                                                     json: #"{"prefix": "A", "service": "x", "printer": "138 1234 5678"}"#)
        #expect(personalPrinter.status == 404 && !personalPrinter.body.contains("1234"), "\(personalPrinter.body)")
        // From the integrator's trial: the empty printer then stopped answering, and was still called out of paper.
        empty.setAnswering(false)
        #expect(await eventually { await hall.gateway.deviceStates().first { $0.device == "printer-1" }?.online == false })
        let report = await hall.gateway.deviceCheck()
        #expect(report.problems.contains { $0.hasPrefix("printer-1 does not answer") }, "\(report.problems)")
        #expect(!report.problems.contains { $0.contains("paper-out") }, "one problem, the one it has now: \(report.problems)")
        let afterSilence = try hall.json(try await hall.request(.POST, "/v1/tickets", json: #"{"prefix": "A", "service": "医保"}"#).body)
        let skipped = try #require(afterSilence["devices"] as? [[String: Any]]).first
        #expect(skipped?["result"] as? String == "device-offline", "\(afterSilence)")
        #expect((skipped?["detail"] as? String)?.hasPrefix("printer-1 is offline") == true, "\(afterSilence)")
        #expect(afterSilence["ticket"] as? String == "A003" && loaded.tickets.count == 3, "printed on the other printer")
        try await hall.stopAll()
    }

    /// From a data engineer's trial: the gateway numbers the day's tickets, so a call of one it never gave (a typo in
    /// a recall, A103 for A013) is said. It still runs: a gateway whose state was lost mid-day would refuse every
    /// ticket still waiting.
    @Test func aCallOfATicketTheGatewayNeverIssuedTodayRunsWithAWarning() async throws {
        let hall = try await Self.printersHall(pollIntervalMs: 100, tickets: "tickets: {prefixes: [A], priority-prefixes: [V]}")
        #expect(await eventually { hall.gateway.printerConditions() == ["printer-1": "online", "printer-2": "online"] })
        for ticket in ["A001", "V001"] {
            let prefix = String(ticket.prefix(1))
            let issued = try hall.json(try await hall.request(.POST, "/v1/tickets",
                                                              json: #"{"prefix": "\#(prefix)", "service": "户籍"}"#).body)
            #expect(issued["ticket"] as? String == ticket, "\(issued)")
        }
        for (path, ticket, last) in [("call", "A013", "the last A ticket issued is A001"),
                                     ("recall", "A002", "the last A ticket issued is A001"),
                                     ("call", "A-103", "the last A ticket issued is A001"),
                                     ("call", "A000", "the last A ticket issued is A001"),
                                     ("rating-request", "v2", "the last V ticket issued is V001")] {
            let call = try await hall.request(.POST, "/v1/windows/5/\(path)", json: #"{"ticket": "\#(ticket)"}"#)
            let result = try hall.json(call.body)
            #expect(call.status == 200 && result["status"] as? String == "done", "\(ticket): \(call.body)")
            #expect(result["warning"] as? String == "ticket \(ticket) was not issued today: \(last) (the gateway numbers "
                        + "\(ticket.prefix(1).uppercased()) tickets)", "\(call.body)")
        }
        // Issued ones, written as the queue system writes them, and other prefixes (the queue system's) say nothing.
        for ticket in ["A001", "a1", "A-001", "V001", "B777"] {
            let call = try await hall.request(.POST, "/v1/windows/5/call", json: #"{"ticket": "\#(ticket)"}"#)
            #expect(call.status == 200 && !call.body.contains("warning"), "\(ticket): \(call.body)")
        }
        try await hall.stopAll()
    }

    /// From a trial: a citizen's name typed into `service` by a queue system reached the central store, and
    /// "社保业务 " with a trailing space was counted apart from 社保业务. A hall that lists its services takes no other.
    @Test func aTicketsServiceIsOneOfTheHallsServicesWhenItListsThem() async throws {
        let hall = try await Self.printersHall(pollIntervalMs: 100, tickets: "tickets: {prefixes: [A]}\nservices: [户籍, 社保业务]")
        let (printer, other) = (hall.printers[0], hall.printers[1])
        for service in ["户籍 张三", "", "医保"] {
            let refused = try await hall.request(.POST, "/v1/tickets", json: #"{"prefix": "A", "service": "\#(service)"}"#)
            #expect(refused.status == 400 && refused.body.contains("service must be one of the hall's services: 户籍, 社保业务"),
                    "\(service): \(refused.body)")
            #expect(!refused.body.contains("张三"), "what was sent is not said back")
        }
        #expect(printer.tickets.isEmpty && other.tickets.isEmpty, "nothing printed")
        let taken = try await hall.request(.POST, "/v1/tickets", json: #"{"prefix": "A", "service": "社保业务 "}"#)
        let number = try hall.json(taken.body)["ticket"] as? String
        #expect(taken.status == 200 && number == "A001", "\(taken.body)")
        let issued = try #require(try await hall.gateway.outbox.entries(after: 0, limit: 1000).first { $0.type == "hall.ticket.issued" })
        #expect(issued.json.contains(#""service":"社保业务""#), "counted with the others: \(issued.json)")
        try await hall.stopAll()
    }

    @Test func aTicketSentToAPrinterThatThenFallsSilentIsIssuedOnceNotPrintedAgainElsewhere() async throws {
        // Found by a queue system's integrator: the printer took the ticket to its cut, then did not answer the
        // status request (its cover opened). The ticket was called not issued, then printed again on the next
        // printer: two citizens with one number, or a citizen whose number is never called.
        let hall = try await Self.printersHall(pollIntervalMs: 5000, tickets: "tickets: {prefixes: [A]}")
        let (silent, other) = (hall.printers[0], hall.printers[1])
        #expect(await eventually { hall.gateway.printerConditions() == ["printer-1": "online", "printer-2": "online"] })
        silent.setAnswering(false)
        let answer = try hall.json(try await hall.request(.POST, "/v1/tickets", json: #"{"prefix": "A", "service": "社保业务"}"#).body)
        #expect(answer["status"] as? String == "done" && answer["ticket"] as? String == "A001", "\(answer)")
        let outcomes = try #require(answer["devices"] as? [[String: Any]])
        #expect(outcomes.map { $0["device"] as? String } == ["printer-1"])
        #expect((outcomes.first?["detail"] as? String)?.contains("the printer did not answer after it") == true, "\(outcomes)")
        #expect(silent.tickets.count == 1 && other.tickets.isEmpty, "printed once")
        let events = try await hall.gateway.outbox.entries(after: 0, limit: 1000).map(\.type)
        #expect(events.filter { $0 == "hall.ticket.issued" }.count == 1 && !events.contains("hall.ticket.not_issued"))
        try await hall.stopAll()
    }
}
