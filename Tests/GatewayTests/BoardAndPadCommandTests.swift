import AsyncHTTPClient
@testable import DeviceGateway
import Foundation
import LocalAPI
import MockDevices
import NIOCore
import NIOHTTP1
import Protocols
import Synchronization
import Testing

/// The commands beyond calls, through the API and the real gateway down to the bytes the mock devices receive:
/// per-board wording, brightness, screens on and off, a pad's staff and rating requests, 405, and idempotency keys
/// that outlive a restart.
@Suite(.serialized) struct BoardAndPadCommandTests {
    /// Window 5: a Modbus board and a Modbus pad; window 9: an Onbon board and an FF 68 pad; an Onbon hall board
    /// and a Modbus hall board. The gateway and its API run until `stopAll`; `restart` starts both again on the
    /// same state directory and devices.
    final class Hall: @unchecked Sendable {
        let board = MockModbusBoard()
        let modbusHallBoard = MockModbusBoard()
        let modbusPad = MockModbusEvaluator(staffId: "0105")
        let server: MockModbusServer
        let onbon: MockOnbonBoards
        let ff68: MockFF68Bus
        let qsystem: MockQSystemLine
        let folder: TemporaryDirectory
        let config: GatewayConfig
        let profiles: ProfileLibrary
        let token = "test-token-\(UInt64.random(in: 0...UInt64.max))"
        /// The shared client needs no shutdown: a test that throws half-way does not crash the run.
        let client = HTTPClient.shared
        private(set) var gateway: Gateway
        private var stop = StopSignal()
        private var running: Task<Void, Never>?
        private var api: Task<Void, any Error>?
        private(set) var port = 0

        init() async throws {
            server = try MockModbusServer.rtu(units: [3: board, 4: modbusPad, 6: modbusHallBoard])
            onbon = try MockOnbonBoards(addresses: [1, 2])
            ff68 = try MockFF68Bus()
            qsystem = try MockQSystemLine()
            let path = try #require(server.endpoint.devicePath)
            folder = try TemporaryDirectory()
            (config, profiles) = try ConfigLoader.parse("""
                hall: {id: test-hall}
                state-directory: \(folder.path)/state
                profiles: \(profilesDirectory)
                buses:
                  - {id: line-a, transport: modbus-rtu, port: \(path), response-timeout-ms: 100, poll-interval-ms: 50}
                  - {id: led, transport: serial, port: \(onbon.devicePath), poll-interval-ms: 100, response-timeout-ms: 200}
                  - {id: ff68, transport: serial, port: \(ff68.devicePath), poll-interval-ms: 100}
                  - {id: qs, transport: serial, port: \(qsystem.devicePath), poll-interval-ms: 100}
                devices:
                  - {id: board-w05, profile: modbus-window-board, bus: line-a, address: 3, window: "5"}
                  - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "5"}
                  - {id: board-hall, profile: modbus-window-board, bus: line-a, address: 6}
                  - id: board-w09
                    profile: onbon-bx5
                    bus: led
                    address: 1
                    window: "9"
                    templates: {call: "请{ticket}号到{window}号窗口办理", pause: "{window}号窗口暂停服务"}
                  - {id: callboard, profile: onbon-bx5, bus: led, address: 2, templates: {call: "{ticket} → {window}号窗口"}}
                  - {id: eval-w09, profile: ff68-evaluator, bus: ff68, address: 9, window: "9"}
                  - {id: numbers-w11, profile: qsystem-board, bus: qs, address: 111, window: "11"}
                sinks:
                  - {type: sqlite, path: \(folder.path)/events.sqlite}
                """, file: "test.yaml", relativeTo: folder.path)
            gateway = try Gateway(config: config, profiles: profiles, logger: CapturedLog().logger)
            try await start()
        }

        private func start() async throws {
            let gateway = self.gateway
            let stop = self.stop
            running = Task { await gateway.run(until: stop) }
            (self.api, port) = try await serveLocalAPI(gateway, token: token)
        }

        private func stopGateway() async {
            api?.cancel()
            _ = await api?.result
            stop.stop()
            await running?.value
        }

        /// Stops the gateway and its API, then starts a new gateway on the same outbox and devices; `whileStopped`
        /// happens in between.
        func restart(whileStopped: () -> Void = {}) async throws {
            await stopGateway()
            whileStopped()
            stop = StopSignal()
            gateway = try Gateway(config: config, profiles: profiles, logger: CapturedLog().logger)
            try await start()
        }

        func stopAll() async throws {
            await stopGateway()
            server.stop()
            onbon.stop()
            ff68.stop()
            qsystem.stop()
        }

        /// A test that throws before `stopAll` still stops its gateway: left running, it would reopen its ports'
        /// paths, which a later test's mocks may be given.
        deinit {
            api?.cancel()
            stop.stop()
        }

        func request(_ method: HTTPMethod, _ path: String, json: String? = nil, headers: [(String, String)] = [])
            async throws -> (status: Int, headers: HTTPHeaders, body: String)
        {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
            request.method = method
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            if let json {
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(string: json))
            }
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            return (Int(response.status.code), response.headers, String(buffer: body))
        }

        /// A command's result: its body as JSON, the HTTP status checked.
        func command(_ path: String, json: String? = nil, headers: [(String, String)] = []) async throws -> [String: Any] {
            let response = try await request(.POST, path, json: json, headers: headers)
            #expect(response.status == 200, "\(path): \(response.body)")
            return try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
        }

        /// The committed event of a command, by the result's event id.
        func event(of result: [String: Any]) async throws -> OutboundEvent {
            let id = try #require(result["eventId"] as? String)
            return try #require(try await gateway.outbox.entries(after: 0, limit: 10_000).first { $0.id == id })
        }

        func ratings() async throws -> [OutboundEvent] {
            try await gateway.outbox.entries(after: 0, limit: 10_000).filter { $0.type == HallEventType.ratingSubmitted }
        }
    }

    /// The text bytes a Modbus board holds in its text registers.
    static func textBytes(_ board: MockModbusBoard) -> [UInt8] {
        let text = MockModbusBoard.Register.text
        return RegisterText.bytes(from: board.registers[text..<(text + MockModbusBoard.Register.textCount)])
    }

    /// Whether `data` (an Onbon request's data field) carries `text` in GB 2312.
    static func carries(_ data: [UInt8], _ text: String) throws -> Bool {
        let bytes = try #require(ChineseText.encode(text, as: .gb2312))
        return data.count >= bytes.count && (0...(data.count - bytes.count)).contains { Array(data[$0..<($0 + bytes.count)]) == bytes }
    }

    @Test func eachBoardWordsTheCallWithItsOwnTemplate() async throws {
        let hall = try await Hall()
        let result = try await hall.command("/v1/windows/9/call", json: #"{"ticket": "A023"}"#)
        #expect(result["status"] as? String == "done", "\(result)")
        // The window's Onbon board, the Onbon hall board (its own template) and the Modbus hall board (the default).
        let window = try #require(hall.onbon.received(address: 1).last { $0.starts(with: [0xA3, 0x06]) })
        let callboard = try #require(hall.onbon.received(address: 2).last { $0.starts(with: [0xA3, 0x06]) })
        #expect(try Self.carries(window, "请A023号到9号窗口办理"))
        #expect(try Self.carries(callboard, "A023 → 9号窗口"))
        #expect(hall.onbon.shown(address: 2) == "A023 → 9号窗口")
        #expect(Self.textBytes(hall.modbusHallBoard) == ChineseText.encode("请A023号到9号窗口", as: .gb18030))

        _ = try await hall.command("/v1/windows/9/pause")
        #expect(hall.onbon.shown(address: 1) == "9号窗口暂停服务")
        // A recall without a template of its own is worded as the board's call.
        _ = try await hall.command("/v1/windows/9/recall", json: #"{"ticket": "A023"}"#)
        #expect(hall.onbon.shown(address: 1) == "请A023号到9号窗口办理")
        _ = try await hall.command("/v1/windows/5/call", json: #"{"ticket": "B007"}"#)
        #expect(Self.textBytes(hall.board) == ChineseText.encode("请B007号到5号窗口", as: .gb18030))
        #expect(hall.onbon.shown(address: 2) == "B007 → 5号窗口")
        try await hall.stopAll()
    }

    @Test func templatesWithUnknownPlaceholdersAreRefusedAtLoad() throws {
        let folder = try TemporaryDirectory()
        let error = #expect(throws: ConfigError.self) {
            _ = try ConfigLoader.parse("""
                hall: {id: h}
                state-directory: \(folder.path)/state
                profiles: \(profilesDirectory)
                buses:
                  - {id: led, transport: serial, port: /dev/null}
                devices:
                  - {id: b, profile: onbon-bx5, bus: led, address: 1, templates: {call: "{number}号", pause: "{ticket}暂停"}}
                sinks:
                  - {type: sqlite, path: \(folder.path)/events.sqlite}
                """, file: "test.yaml", relativeTo: folder.path)
        }
        let text = "\(try #require(error))"
        #expect(text.contains("templates.call: unknown placeholder {number}"), "\(text)")
        #expect(text.contains("templates.pause: a pause has no ticket"), "\(text)")
    }

    @Test func brightnessAndPowerUseTheBoardsOwnCommandsOrSayWhyNot() async throws {
        let hall = try await Hall()
        let bright = try await hall.command("/v1/devices/callboard/brightness", json: #"{"level": 60}"#)
        #expect(bright["status"] as? String == "done", "\(bright)")
        // 60 % of the controller's 16 levels (0-15) is level 9: A3 02, fixed mode 01, level 09, 48 half hours of 09.
        let sent = try #require(hall.onbon.received(address: 2).last { $0.starts(with: [0xA3, 0x02]) })
        #expect(sent == [0xA3, 0x02, 0x01, 0x00, 0x00, 0x01, 0x09] + Array(repeating: 0x09, count: 48))
        #expect(hall.onbon.brightness(address: 2) == 9)
        #expect(try await hall.event(of: bright).type == "hall.display.brightness_changed")

        let off = try await hall.command("/v1/devices/callboard/power", json: #"{"on": false}"#)
        #expect(off["status"] as? String == "done" && off["command"] as? String == "power-off")
        #expect(hall.onbon.received(address: 2).last { $0.starts(with: [0xA3, 0x00]) } == [0xA3, 0x00, 0x01, 0x00, 0x00, 0x02])
        #expect(!hall.onbon.isScreenOn(address: 2))
        #expect(try await hall.event(of: off).type == "hall.display.switched_off")
        let on = try await hall.command("/v1/devices/callboard/power", json: #"{"on": true}"#)
        #expect(hall.onbon.received(address: 2).last { $0.starts(with: [0xA3, 0x00]) } == [0xA3, 0x00, 0x01, 0x00, 0x00, 0x01])
        #expect(hall.onbon.isScreenOn(address: 2))
        #expect(try await hall.event(of: on).type == "hall.display.switched_on")

        // A QSystem number board's frames carry a blink mode and three characters: refused with the reason.
        let refused = try await hall.command("/v1/devices/numbers-w11/brightness", json: #"{"level": 30}"#)
        #expect(refused["status"] as? String == "refused")
        let detail = (refused["devices"] as? [[String: Any]])?.first?["detail"] as? String
        #expect(detail?.contains("a QSystem number board has no brightness command") == true, "\(refused)")
        #expect(hall.qsystem.board(address: 111) == nil, "nothing was sent to it")
        #expect(try await hall.event(of: refused).json.contains(#""result":"refused""#))

        let outOfRange = try await hall.request(.POST, "/v1/devices/callboard/brightness", json: #"{"level": 101}"#)
        #expect(outOfRange.status == 400)
        let notABoard = try await hall.request(.POST, "/v1/devices/eval-w05/power", json: #"{"on": false}"#)
        #expect(notABoard.status == 400 && notABoard.body.contains("eval-w05 is not a board"))
        let unknown = try await hall.request(.POST, "/v1/devices/nowhere/power", json: #"{"on": false}"#)
        #expect(unknown.status == 404)
        try await hall.stopAll()
    }

    @Test func aRatingRequestedForATicketCarriesTheTicketAndTheStaff() async throws {
        let hall = try await Hall()
        let staff = try await hall.command("/v1/windows/9/staff", json: #"{"staff": "S0931"}"#)
        #expect(staff["status"] as? String == "done", "\(staff)")
        let staffSet = try await hall.event(of: staff)
        #expect(staffSet.type == "hall.window.staff_set")
        #expect(staffSet.json.contains(#""staffId":"S0931""#), "who was set, as ratings carry it: \(staffSet.json)")
        let request = try await hall.command("/v1/windows/9/rating-request", json: #"{"ticket": "A031"}"#)
        #expect(request["status"] as? String == "done" && request["ticket"] as? String == "A031", "\(request)")
        #expect(try await hall.event(of: request).type == "hall.rating.requested")
        // The pad is told to open an evaluation: FF 68 03 03 68 09 01 0B, checksum 09 + 01 + 0B = 15, 16.
        // Sent without an answer to wait for: the command is done once the bytes are on the line.
        #expect(await eventually {
            hall.ff68.commands(address: 9).map { $0.encode() } == [[0xFF, 0x68, 0x03, 0x03, 0x68, 0x09, 0x01, 0x0B, 0x15, 0x16]]
        })

        hall.ff68.pressEvaluatorKey(3, address: 9)
        #expect(await eventually { (try? await hall.ratings().count) == 1 })
        let rating = try #require(try await hall.ratings().first)
        #expect(rating.source.hasSuffix("/eval-w09") && rating.subject == "window/9")
        for field in [#""ticket":"A031""#, #""staffId":"S0931""#, #""level":5"#] {
            #expect(rating.json.contains(field), "\(field) in \(rating.json)")
        }
        // The next rating was not asked for a ticket: the staff stays, the ticket does not.
        #expect(await eventually { hall.ff68.unacknowledgedCount == 0 })
        hall.ff68.pressEvaluatorKey(2, address: 9)
        #expect(await eventually { (try? await hall.ratings().count) == 2 })
        let next = try #require(try await hall.ratings().last)
        #expect(next.json.contains(#""staffId":"S0931""#) && !next.json.contains(#""ticket""#), "\(next.json)")

        let noPad = try await hall.request(.POST, "/v1/windows/99/staff", json: #"{"staff": "S1"}"#)
        #expect(noPad.status == 404)
        let empty = try await hall.request(.POST, "/v1/windows/9/staff", json: #"{"staff": ""}"#)
        #expect(empty.status == 400)
        try await hall.stopAll()
    }

    @Test
    func aModbusPadShowsTheStaffAndItsNextRatingCarriesTheTicket() async throws {
        let hall = try await Hall()
        let staff = try await hall.command("/v1/windows/5/staff", json: #"{"staff": "S0517"}"#)
        #expect(staff["status"] as? String == "done", "\(staff)")
        #expect(hall.modbusPad.staffId == "S0517", "written into the pad's staff-id registers")
        let request = try await hall.command("/v1/windows/5/rating-request", json: #"{"ticket": "B012"}"#)
        #expect(request["status"] as? String == "done", "\(request)")
        hall.modbusPad.press(.satisfied)
        #expect(await eventually { (try? await hall.ratings().count) == 1 })
        let rating = try #require(try await hall.ratings().first)
        #expect(rating.json.contains(#""ticket":"B012""#) && rating.json.contains(#""staffId":"S0517""#), "\(rating.json)")
        try await hall.stopAll()
    }

    @Test
    func theNewCommandsEventsDecodeLikeEveryOther() async throws {
        let hall = try await Hall()
        let results = [
            try await hall.command("/v1/devices/callboard/brightness", json: #"{"level": 40}"#),
            try await hall.command("/v1/devices/callboard/power", json: #"{"on": false}"#),
            try await hall.command("/v1/devices/callboard/power", json: #"{"on": true}"#),
            try await hall.command("/v1/windows/9/staff", json: #"{"staff": "S0931"}"#),
            try await hall.command("/v1/windows/9/rating-request", json: #"{"ticket": "A031"}"#),
        ]
        for result in results {
            let stored = try await hall.event(of: result)
            // What the local store and the outbox's salvage read back: an unknown type would not decode.
            let event = try CloudEvent.decode(json: Data(stored.json.utf8))
            guard case .command(let executed) = event.data else {
                Issue.record("\(stored.type) decodes as \(event.data), not a command")
                continue
            }
            #expect(executed.commandId == result["id"] as? String)
        }
        try await hall.stopAll()
    }

    @Test func aKnownPathWithAnotherMethodIs405WithAllow() async throws {
        let hall = try await Hall()
        let put = try await hall.request(.PUT, "/v1/windows/5/call", json: #"{"ticket": "A1"}"#)
        #expect(put.status == 405, "\(put.body)")
        #expect(put.headers.first(name: "Allow") == "POST")
        #expect(put.headers.first(name: "Content-Type") == "application/problem+json")
        #expect(put.body.contains(#""status":405"#) && put.body.contains("PUT is not allowed on /v1/windows/5/call"))
        let delete = try await hall.request(.DELETE, "/healthz")
        #expect(delete.status == 405 && delete.headers.first(name: "Allow") == "GET")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 0, "nothing ran")
        #expect(try await hall.request(.GET, "/v1/windows/5/nowhere").status == 404)
        try await hall.stopAll()
    }

    @Test func aRepeatedKeyAfterARestartGetsTheFirstResult() async throws {
        let hall = try await Hall()
        let key = [("Idempotency-Key", "queue-restart-0001")]
        let first = try await hall.command("/v1/windows/5/call", json: #"{"ticket": "C301"}"#, headers: key)
        #expect(first["status"] as? String == "done")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 1)
        try await hall.restart()
        let again = try await hall.command("/v1/windows/5/call", json: #"{"ticket": "C301"}"#, headers: key)
        #expect(again["id"] as? String == first["id"] as? String)
        #expect(again["eventId"] as? String == first["eventId"] as? String)
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 1, "the board took one command")
        let calls = try await hall.gateway.outbox.entries(after: 0, limit: 10_000).filter { $0.type == "hall.call.displayed" }
        #expect(calls.count == 1)
        // Kept with its request across the restart: the key with another window is refused, not answered.
        let reused = try await hall.request(.POST, "/v1/windows/9/call", json: #"{"ticket": "C301"}"#, headers: key)
        #expect(reused.status == 422 && reused.body.contains("this request is call of ticket C301 at window 9"),
                "\(reused.body)")
        // A new key runs.
        let other = try await hall.command("/v1/windows/5/call", json: #"{"ticket": "C302"}"#,
                                           headers: [("Idempotency-Key", "queue-restart-0002")])
        #expect(other["id"] as? String != first["id"] as? String)
        #expect(await eventually { hall.board.registers[MockModbusBoard.Register.commandCounter] == 2 })
        try await hall.stopAll()
    }

    /// From a trial: an FF 68 pad keeps no staff id of its own, and the gateway kept it in memory only: after a restart
    /// its ratings carried none until the queue system set it again.
    @Test func anFF68PadsStaffIsKeptAcrossARestart() async throws {
        let hall = try await Hall()
        let staff = try await hall.command("/v1/windows/9/staff", json: #"{"staff": "S0931"}"#)
        #expect(staff["status"] as? String == "done", "\(staff)")
        try await hall.restart()
        hall.ff68.pressEvaluatorKey(3, address: 9)
        #expect(await eventually { (try? await hall.ratings().count) == 1 })
        let rating = try #require(try await hall.ratings().first)
        #expect(rating.json.contains(#""staffId":"S0931""#), "\(rating.json)")
        try await hall.stopAll()
    }

    /// From an installer's trial: a Modbus pad power-cycled came back with the staff id it boots with, and its ratings
    /// went on under that one without a word. The staff id set through the gateway is written back, its new ratings
    /// carry it, and a fault event says so; also when the pad powered up while the gateway was stopped.
    @Test func aModbusPadPoweredUpWithoutItsStaffIdIsGivenItBack() async throws {
        let hall = try await Hall()
        let pad = hall.modbusPad
        let staff = try await hall.command("/v1/windows/5/staff", json: #"{"staff": "S0517"}"#)
        #expect(staff["status"] as? String == "done", "\(staff)")
        #expect(pad.staffId == "S0517")
        pad.press(.satisfied)
        #expect(await eventually { (try? await hall.ratings().count) == 1 })
        func restored() async throws -> [OutboundEvent] {
            try await hall.gateway.outbox.entries(after: 0, limit: 10_000).filter { $0.json.contains("staff-id-restored") }
        }

        // Its power cut: it boots showing B001.
        pad.showStaff("B001")
        pad.powerUp()
        pad.press(.dissatisfied)
        #expect(await eventually { (try? await hall.ratings().count) == 2 })
        let rating = try #require(try await hall.ratings().last)
        #expect(rating.json.contains(#""staffId":"S0517""#), "\(rating.json)")
        #expect(await eventually { pad.staffId == "S0517" }, "written back: \(pad.staffId)")
        let fault = try #require(try await restored().first)
        #expect(fault.json.contains("without the staff id set through the gateway: S0517 is written back"), "\(fault.json)")
        #expect(!fault.json.contains("B001"), "not the pad's own field: \(fault.json)")

        // Powered up keeping it: nothing to write back.
        pad.powerUp()
        pad.press(.satisfied)
        #expect(await eventually { (try? await hall.ratings().count) == 3 })
        #expect(try await restored().count == 1)

        // Powered up while the gateway was stopped: the staff id kept in the outbox is written back after its start.
        try await hall.restart {
            pad.showStaff("B001")
            pad.powerUp()
            pad.press(.basicallySatisfied)
        }
        #expect(await eventually { (try? await hall.ratings().count) == 4 })
        let afterRestart = try #require(try await hall.ratings().last)
        #expect(afterRestart.json.contains(#""staffId":"S0517""#), "\(afterRestart.json)")
        #expect(await eventually { pad.staffId == "S0517" }, "written back: \(pad.staffId)")
        #expect(try await restored().count == 2)
        try await hall.stopAll()
    }

    /// From a second read: the staff id written back to a pad that powered up without it was tried once (lost, the
    /// pad's later ratings carried its own field), and an older one's write going out after a newer staff command's
    /// was taken as the one set. It is written again until the pad shows it, three times at most, and only a staff
    /// command's write is the one set. The bus driver, reads and answers given to it.
    @Test func aStaffIdWrittenBackIsMadeAgainUntilThePadShowsItAndAnOlderOneDoesNotWinOverANewerCommand() throws {
        let loaded = try ProfileLibrary(directory: profilesDirectory).profile(named: "modbus-evaluator-3key")
        let profile = try #require({ if case .modbusEvaluator(let profile) = loaded { profile } else { nil } }())
        let device = DeviceConfig(id: "eval-w05", profile: "modbus-evaluator-3key", bus: "line-a", address: 2, window: "5")
        var driver = ModbusDriver(members: [(device, .pad(profile))], framing: .rtu, hallId: "h",
                                  pollInterval: .milliseconds(500), responseTimeout: .milliseconds(200))
        // The pad's block: online, counter, boot id, acknowledged, three keys, its model, the staff id, the ring.
        func read(boot: UInt32, counter: UInt16, acknowledged: UInt16, staff: String, ring: [UInt16] = []) -> LineReaction {
            var registers = [UInt16](repeating: 0, count: 32)
            (registers[0], registers[1], registers[3], registers[4]) = (1, counter, UInt16(boot >> 16), UInt16(boot & 0xFFFF))
            (registers[5], registers[6], registers[7]) = (acknowledged, 3, 0x4856)
            let bytes = Array(staff.utf8) + [UInt8](repeating: 0, count: 16 - staff.utf8.count)
            for index in 0..<8 { registers[8 + index] = UInt16(bytes[2 * index]) << 8 | UInt16(bytes[2 * index + 1]) }
            for (index, key) in ring.enumerated() { registers[16 + index] = key }
            let poll = driver.pollRequests(for: device)[0]
            return driver.handle(ModbusReply(unit: 2, transactionId: nil, message: .response(.readHoldingRegisters(values: registers))),
                                 inFlight: poll, at: Date())
        }
        func taken(_ write: LineRequest) {
            _ = driver.handle(ModbusReply(unit: 2, transactionId: nil, message: .response(.writeMultipleRegisters(start: 8, count: 8))),
                              inFlight: write, at: Date())
        }
        func staffIds(_ reaction: LineReaction) -> [String?] { reaction.events.compactMap { $0.data.rating }.map(\.staffId) }
        func faults(_ reaction: LineReaction) -> [String] { reaction.events.compactMap { $0.data.fault }.map(\.fault) }
        func writtenBack(_ reaction: LineReaction) -> [LineRequest] { reaction.afterCommit.filter { $0.purpose == "staff write-back" } }

        _ = read(boot: 1, counter: 0, acknowledged: 0, staff: "")
        try driver.requests(for: .setStaff("A001"), to: device).forEach(taken)
        // Powered up showing nothing; its write-back lost: the next read writes it again, and its rating carries it.
        let up = read(boot: 2, counter: 1, acknowledged: 0, staff: "", ring: [1])
        #expect(staffIds(up) == ["A001"] && faults(up) == ["staff-id-restored"] && writtenBack(up).count == 1, "\(up.events)")
        let lost = read(boot: 2, counter: 2, acknowledged: 1, staff: "", ring: [1, 3])
        #expect(staffIds(lost) == ["A001"] && faults(lost).isEmpty, "\(lost.events)")
        let again = try #require(writtenBack(lost).first)
        // A newer staff command taken, then the older write-back's answer: the pad shows A001, B002 is the one set.
        try driver.requests(for: .setStaff("B002"), to: device).forEach(taken)
        taken(again)
        let overtaken = read(boot: 2, counter: 3, acknowledged: 2, staff: "A001", ring: [1, 3, 2])
        #expect(staffIds(overtaken) == ["B002"], "\(overtaken.events)")
        #expect(writtenBack(overtaken).map { String(decoding: $0.bytes, as: UTF8.self).contains("B002") } == [true])
        let shown = read(boot: 2, counter: 3, acknowledged: 3, staff: "B002", ring: [1, 3, 2])
        #expect(writtenBack(shown).isEmpty && faults(shown).isEmpty)

        // A pad that takes none: three writes, then a fault, and its ratings carry what it shows.
        #expect(writtenBack(read(boot: 3, counter: 1, acknowledged: 0, staff: "", ring: [1])).count == 1)
        #expect(writtenBack(read(boot: 3, counter: 1, acknowledged: 1, staff: "", ring: [1])).count == 1)
        #expect(writtenBack(read(boot: 3, counter: 1, acknowledged: 1, staff: "", ring: [1])).count == 1)
        let givenUp = read(boot: 3, counter: 2, acknowledged: 1, staff: "", ring: [1, 2])
        #expect(faults(givenUp) == ["staff-id-not-restored"] && writtenBack(givenUp).isEmpty, "\(givenUp.events)")
        #expect(staffIds(givenUp) == [nil])
        #expect(writtenBack(read(boot: 3, counter: 2, acknowledged: 2, staff: "", ring: [1, 2])).isEmpty)
    }

    @Test func theHallDaySwitchesAnOnbonBoardOffAndBlanksABoardWithoutPower() async throws {
        let onbon = try MockOnbonBoards(addresses: [2])
        let qsystem = try MockQSystemLine()
        defer {
            onbon.stop()
            qsystem.stop()
        }
        let folder = try TemporaryDirectory()
        let (config, profiles) = try ConfigLoader.parse("""
            hall: {id: test-hall, timezone: Asia/Shanghai}
            state-directory: \(folder.path)/state
            profiles: \(profilesDirectory)
            buses:
              - {id: led, transport: serial, port: \(onbon.devicePath), poll-interval-ms: 100, response-timeout-ms: 200}
              - {id: qs, transport: serial, port: \(qsystem.devicePath), poll-interval-ms: 100}
            devices:
              - {id: callboard, profile: onbon-bx5, bus: led, address: 2}
              - {id: numbers-w11, profile: qsystem-board, bus: qs, address: 111, window: "11"}
            sinks:
              - {type: sqlite, path: \(folder.path)/events.sqlite}
            hours:
              monday-friday: ["09:00-17:00"]
            """, file: "test.yaml", relativeTo: folder.path)
        let clock = ManualHallClock(now: try HallDayGatewayTests.shanghai("2026-12-01 16:50"))
        let gateway = try Gateway(config: config, profiles: profiles, logger: CapturedLog().logger, hallClock: clock)
        // The gateway saw this opening (09:00 in the hall) before a restart.
        try await gateway.outbox.recordHallDayEvent(id: "boards-on-2026-12-01T01:00:00Z", result: "done")
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        // Restarted while open: switched on (A3 00 … 01), not greeted: a restart is no opening.
        #expect(await eventually { gateway.boardsTurn.withLock { $0?.switched.contains("callboard") == true } })
        #expect(onbon.received(address: 2).contains([0xA3, 0x00, 0x01, 0x00, 0x00, 0x01]))
        #expect(onbon.shown(address: 2) != "欢迎光临")
        _ = try await CommandCenter(gateway: gateway).execute(.call(window: "11", ticket: "A023"))
        #expect(await eventually { qsystem.board(address: 111)?.text == "023" })

        clock.advance(to: try HallDayGatewayTests.shanghai("2026-12-01 17:00"))
        // The Onbon controller gets its screen-off command (A3 00 … 02); the QSystem board, which has none, is blanked.
        #expect(await eventually { !onbon.isScreenOn(address: 2) && qsystem.board(address: 111)?.text == "   " })
        #expect(onbon.received(address: 2).contains([0xA3, 0x00, 0x01, 0x00, 0x00, 0x02]))
        #expect(await eventually {
            (try? await gateway.outbox.entries(after: 0, limit: 1000))?.contains { $0.type == "hall.day.closed" } == true
        })
        let closed = try #require(try await gateway.outbox.entries(after: 0, limit: 1000).first { $0.type == "hall.day.closed" })
        #expect(closed.json.contains(#""result":"done""#) && closed.json.contains("blanked: numbers-w11"), "\(closed.json)")

        clock.advance(to: try HallDayGatewayTests.shanghai("2026-12-02 09:00"))
        #expect(await eventually { onbon.isScreenOn(address: 2) && onbon.shown(address: 2) == "欢迎光临" }, "on again at opening")
        #expect(onbon.received(address: 2).contains([0xA3, 0x00, 0x01, 0x00, 0x00, 0x01]))
        stop.stop()
        await running.value
    }

    @Test func aModbusPadsStaffIsItsRegistersAndItsNextRatingTakesTheRequestedTicket() throws {
        let loaded = try ProfileLibrary(directory: profilesDirectory).profile(named: "modbus-evaluator-3key")
        let profile = try #require({ if case .modbusEvaluator(let profile) = loaded { profile } else { nil } }())
        let device = DeviceConfig(id: "eval-w05", profile: "modbus-evaluator-3key", bus: "line-a", address: 4, window: "5")
        let driver = ModbusEvaluatorDriver(device: device, profile: profile, hallId: "test-hall")
        // "S0517" in registers 8-15, ASCII, high byte first, NUL-padded.
        #expect(try driver.prepare(.setStaff("S0517")) == [.init(start: 8, values: [0x5330, 0x3531, 0x3700, 0, 0, 0, 0, 0])])
        #expect(throws: GatewayError.self) { try driver.prepare(.setStaff("a staff id far too long for it")) }
        #expect(throws: GatewayError.self) { try driver.prepare(.call(ticket: "A1", window: "5")) }
        #expect(try driver.prepare(.requestRating(ticket: "B012")) == [], "this register map has no prompt register")
        #expect(driver.pendingTicket == "B012")

        var registers = [UInt16](repeating: 0, count: 32)
        registers[0] = 0b11
        (registers[3], registers[4]) = (0, 7)
        registers.replaceSubrange(8..<11, with: [0x5330, 0x3531, 0x3700])
        // No new rating yet: the ticket waits.
        let idle = driver.interpret(registers: registers, cursor: nil, at: Date())
        #expect(idle.events.isEmpty && driver.pendingTicket == "B012")
        registers[1] = 2
        (registers[16], registers[17]) = (1, 2)
        let read = driver.interpret(registers: registers, cursor: idle.cursor, at: Date())
        let ratings = read.events.compactMap { event -> RatingSubmitted? in
            if case .rating(let rating) = event.data { rating } else { nil }
        }
        #expect(ratings.map(\.ticket) == ["B012", nil], "the first new rating is the ticket's, the next is not")
        #expect(ratings.map(\.staffId) == ["S0517", "S0517"])
        #expect(driver.pendingTicket == nil)
    }
}
