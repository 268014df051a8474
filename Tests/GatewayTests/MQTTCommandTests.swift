import DeviceGateway
import Foundation
import LocalAPI
import MockDevices
import Synchronization
import Testing

/// Commands over MQTT against the real mosquitto of `scripts/test-services.sh`, driving mock boards over Modbus RTU
/// through the real gateway; commands sent with `mosquitto_pub`, results read with `mosquitto_sub`.
@Suite(.serialized) struct MQTTCommandTests {
    /// A hall with window 5 (a board and a pad), window 7 (a board that never answers) and a hall board, the gateway
    /// running and taking commands on `hall/<hall>/commands`; a subscriber on the reply topic made before any.
    final class Hall: Sendable {
        let board = MockModbusBoard()
        let hallBoard = MockModbusBoard()
        let pad = MockModbusEvaluator(staffId: "0105")
        let server: MockModbusServer
        let folder: TemporaryDirectory
        let gateway: Gateway
        let commands: MQTTCommands
        let mqtt: MQTTCommandsConfig
        let stop = StopSignal()
        let running: Task<Void, Never>
        let serving: Task<Void, any Error>
        let id = "mqtt-hall-\(UInt32.random(in: 0...UInt32.max))"
        let host: String
        let port: String
        let replies: MQTTReplySubscriber
        let log = CapturedLog()
        let metrics = GatewayMetrics()

        /// On the test services' broker, or on `broker` (a port on loopback).
        init(broker: Int? = nil) async throws {
            if let broker {
                (host, port) = ("127.0.0.1", String(broker))
            } else {
                host = try #require(ProcessInfo.processInfo.environment["HALL_TEST_MQTT_HOST"],
                                    "run the tests through scripts/test-services.sh (a real mosquitto)")
                port = try #require(ProcessInfo.processInfo.environment["HALL_TEST_MQTT_PORT"])
            }
            server = try MockModbusServer.rtu(units: [3: board, 4: pad, 6: hallBoard])
            let path = try #require(server.endpoint.devicePath)
            folder = try TemporaryDirectory()
            let (config, profiles) = try ConfigLoader.parse("""
                hall: {id: \(id)}
                state-directory: \(folder.path)/state
                profiles: \(profilesDirectory)
                buses:
                  - {id: line-a, transport: modbus-rtu, port: \(path), response-timeout-ms: 100, poll-interval-ms: 50}
                devices:
                  - {id: board-w05, profile: modbus-window-board, bus: line-a, address: 3, window: "5"}
                  - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "5"}
                  - {id: board-w07, profile: modbus-window-board, bus: line-a, address: 9, window: "7"}
                  - {id: board-hall, profile: modbus-window-board, bus: line-a, address: 6}
                sinks:
                  - {type: sqlite, path: \(folder.path)/events.sqlite}
                commands:
                  mqtt: {host: \(host), port: \(port), timeout-ms: 10000}
                """, file: "test.yaml", relativeTo: folder.path)
            let mqtt = try #require(config.mqttCommands)
            self.mqtt = mqtt
            replies = try await MQTTReplySubscriber(host: host, port: port, clientId: "\(id)-results",
                                                topic: "hall/\(id)/command-results")
            let gateway = try Gateway(config: config, profiles: profiles, logger: CapturedLog().logger)
            self.gateway = gateway
            let stop = self.stop
            running = Task { await gateway.run(until: stop) }
            let center = CommandCenter(gateway: gateway, onFinished: metrics.record)
            let commands = try MQTTCommands(config: mqtt, gateway: gateway, commands: center,
                                            logger: log.logger)
            self.commands = commands
            serving = Task { try await commands.run() }
            try #require(await eventually { commands.isListening },
                         "the gateway did not subscribe to its command topic")
        }

        func stopAll() async throws {
            serving.cancel()
            _ = await serving.result
            stop.stop()
            await running.value
            server.stop()
        }

        /// A test that throws before `stopAll` still stops its gateway: left running, it would reopen its ports'
        /// paths, which a later test's mocks may be given.
        deinit {
            serving.cancel()
            stop.stop()
        }

        /// Publishes one message on the hall's command topic at QoS 1 (an empty one as a null message).
        func send(_ payload: String, retained: Bool = false) async throws {
            let message = payload.isEmpty ? ["-n"] : ["-m", payload]
            let sent = try await run("/usr/bin/mosquitto_pub",
                                     ["-h", host, "-p", port, "-q", "1", "-t", "hall/\(id)/commands"] + message
                                        + (retained ? ["-r"] : []))
            try #require(sent.status == 0, "mosquitto_pub: \(sent.standardError)")
        }

        func events(type: String) async throws -> [OutboundEvent] {
            try await gateway.outbox.entries(after: 0, limit: 1000).filter { $0.type == type }
        }
    }

    @Test func aCallOverMQTTReachesTheBoardAnswersOnTheReplyTopicAndCommitsItsEvent() async throws {
        let hall = try await Hall()
        try await hall.send(#"{"id": "q-1", "command": "call", "window": "5", "ticket": "A023"}"#)
        let reply = try #require(try await hall.replies.collect(1).first)
        #expect(reply["requestId"] as? String == "q-1")
        #expect(reply["status"] as? String == "done", "\(reply)")
        #expect(reply["command"] as? String == "call" && reply["window"] as? String == "5")
        #expect(hall.board.display.text == "请A023号到5号窗口")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 1, "the board took one command")
        #expect(hall.hallBoard.display.text == "请A023号到5号窗口", "the hall board shows every window's call")
        let devices = try #require(reply["devices"] as? [[String: Any]])
        #expect(Set(devices.compactMap { $0["device"] as? String }) == ["board-w05", "board-hall"])
        let eventId = try #require(reply["eventId"] as? String)
        let event = try #require(try await hall.events(type: "hall.call.displayed").first { $0.id == eventId })
        #expect(event.subject == "window/5" && event.json.contains(#""ticket":"A023""#))

        // A window given as a number, then a pause and a board's text, in the order sent.
        try await hall.send(#"{"id": "q-2", "command": "recall", "window": 5, "ticket": "A023"}"#)
        try await hall.send(#"{"id": "q-3", "command": "pause", "window": "5"}"#)
        try await hall.send(#"{"id": "q-4", "command": "text", "device": "board-hall", "text": "欢迎光临"}"#)
        let more = try await hall.replies.collect(3)
        #expect(Set(more.compactMap { $0["requestId"] as? String }) == ["q-2", "q-3", "q-4"])
        #expect(more.allSatisfy { $0["status"] as? String == "done" }, "\(more)")
        #expect(hall.board.display.text == "暂停服务", "the pause came after the recall")
        #expect(hall.hallBoard.display.text == "欢迎光临")

        // Counted in the metrics like the local API's commands.
        let samples = MetricsTests.samples(await hall.metrics.render(gateway: hall.gateway))
        for command in ["call", "recall", "pause", "show-text"] {
            #expect(samples[#"hall_gateway_command_duration_seconds_count{command="\#(command)",status="done"}"#] == 1,
                    "\(command)")
        }
        try await hall.stopAll()
    }

    @Test func aRepeatedIdempotencyKeyRunsTheCommandOnce() async throws {
        let hall = try await Hall()
        for request in ["q-1", "q-2"] {
            try await hall.send("""
                {"id": "\(request)", "idempotency-key": "queue-7f3a-0001", "command": "call", "window": "5", \
                "ticket": "B101"}
                """)
        }
        let replies = try await hall.replies.collect(2)
        #expect(Set(replies.compactMap { $0["requestId"] as? String }) == ["q-1", "q-2"])
        #expect(replies.allSatisfy { $0["status"] as? String == "done" }, "\(replies)")
        let commandIds = Set(replies.compactMap { $0["id"] as? String })
        #expect(commandIds.count == 1, "one command, answered twice: \(replies)")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 1, "the board took one command")
        #expect(try await hall.events(type: "hall.call.displayed").count == 1)
        try await hall.stopAll()
    }

    @Test func malformedMessagesGetAnInvalidResultAndTheNextCommandStillRuns() async throws {
        let hall = try await Hall()
        let messages = [
            #"{"id": "q-1", "command": "call", "window": "5", "ticket": "#,
            #"["call", "5"]"#,
            #"{"id": "q-3", "command": "call", "window": "5"}"#,
            #"{"id": "q-4", "command": "call", "window": "99", "ticket": "A1"}"#,
            #"{"id": "q-5", "command": "shout", "window": "5"}"#,
            #"{"id": "q-6", "command": "call", "window": "5", "ticket": 23}"#,
            #"{"id": "q-8", "command": "brightness", "device": "board-w05", "level": "high"}"#,
            #"{"id": "q-9", "command": "call", "window": "5", "ticket": "13812345678"}"#,
            // A misspelt field is not ignored: here the board would be told something else than meant.
            #"{"id": "q-10", "command": "call", "window": "5", "ticket": "A023", "blink": true}"#,
            #"{"id": "q-11", "command": "call", "window": "5", "tickets": "A023"}"#,
            // From a security trial: a command name was said back, in the reply's `command` and its message.
            #"{"id": "q-12", "command": "138_1234_5678"}"#,
        ]
        for message in messages { try await hall.send(message) }
        let replies = try await hall.replies.collect(messages.count)
        #expect(replies.allSatisfy { $0["status"] as? String == "invalid" }, "\(replies)")
        func message(_ request: String?) -> String? {
            replies.first { $0["requestId"] as? String == request }?["message"] as? String
        }
        let anonymous = replies.filter { $0["requestId"] == nil }.compactMap { $0["message"] as? String }
        #expect(Set(anonymous) == ["the message is not valid JSON",
                                   #"the message must be a JSON object, e.g. {"command": "call", …}"#])
        #expect(message("q-3") == "'ticket' is missing")
        #expect(message("q-4") == "hall \(hall.id) has no window 99")
        #expect(replies.first { $0["requestId"] as? String == "q-4" }?["kind"] as? String == "unknown-window")
        #expect(message("q-5")?.hasPrefix("'command' is 'shout'; it must be one of call, recall,") == true)
        #expect(message("q-6") == "'ticket' must be a non-empty string")
        #expect(message("q-8") == "'level' must be a whole number from 0 to 100")
        #expect(message("q-9")?.hasPrefix("'ticket' is not a ticket number") == true, "\(replies)")
        #expect(message("q-10") == "'blink' is no field of a call command (its fields: id, idempotency-key, command, window, ticket)",
                "\(replies)")
        #expect(message("q-11")?.hasPrefix("'tickets' is no field of a call command") == true, "named, not 'ticket' missing: \(replies)")
        #expect(message("q-12")?.hasPrefix("'command' is (not repeated here: it reads as a mobile or resident ID number); "
                                           + "it must be one of call,") == true, "\(replies)")
        #expect(replies.allSatisfy { !"\($0)".contains("13812345678") && !"\($0)".contains("138_1234") },
                "a phone number is not repeated")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 0, "nothing ran")

        try await hall.send(#"{"id": "q-7", "command": "call", "window": "5", "ticket": "A024"}"#)
        let next = try #require(try await hall.replies.collect(1).first)
        #expect(next["requestId"] as? String == "q-7" && next["status"] as? String == "done", "\(next)")
        #expect(hall.board.display.text == "请A024号到5号窗口")
        try await hall.stopAll()
    }

    @Test func aRetainedCommandRunsAndIsAnsweredOnceNotAgainAtTheNextStartAndAnEmptyMessageClearsIt() async throws {
        let hall = try await Hall()
        /// The gateway's command service started again on the same broker session.
        func restart(after serving: Task<Void, any Error>) async throws -> Task<Void, any Error> {
            serving.cancel()
            _ = await serving.result
            let center = CommandCenter(gateway: hall.gateway, onFinished: hall.metrics.record)
            let restarted = try MQTTCommands(config: hall.mqtt, gateway: hall.gateway, commands: center,
                                             logger: hall.log.logger)
            return Task { try await restarted.run() }
        }
        try await hall.send(#"{"id": "q-1", "command": "call", "window": "5", "ticket": "A031"}"#, retained: true)
        let sent = try #require(try await hall.replies.collect(1).first)
        #expect(sent["requestId"] as? String == "q-1" && sent["status"] as? String == "done", "\(sent)")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 1)

        // The gateway starts again: its new subscription gets the retained message from the broker.
        var serving = try await restart(after: hall.serving)
        defer { serving.cancel() }
        // Not run and not answered: the next result is the next command's.
        #expect(await eventually {
            hall.log.text.contains("request q-1 on 'hall/\(hall.id)/commands' is a retained message")
        })
        try await hall.send(#"{"id": "q-2", "command": "pause", "window": "5"}"#)
        let next = try #require(try await hall.replies.collect(1).first)
        #expect(next["requestId"] as? String == "q-2" && next["status"] as? String == "done", "\(next)")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 2, "the call did not run again")

        // Cleared the MQTT way: no reply, and the next command is answered as the next result.
        try await hall.send("", retained: true)
        try await hall.send(#"{"id": "q-3", "command": "resume", "window": "5"}"#)
        let resumed = try #require(try await hall.replies.collect(1).first)
        #expect(resumed["requestId"] as? String == "q-3" && resumed["status"] as? String == "done", "\(resumed)")
        #expect(await eventually { hall.log.text.contains("an empty message on 'hall/\(hall.id)/commands'") })

        // Published while the gateway is away (the trial): the copy the broker kept for its session runs and is
        // answered once; the replay of the retained message is not answered too.
        serving.cancel()
        _ = await serving.result
        try await hall.send(#"{"id": "q-4", "command": "call", "window": "5", "ticket": "A032"}"#, retained: true)
        serving = try await restart(after: serving)
        let queued = try await hall.replies.collect(1)
        #expect(queued.first?["requestId"] as? String == "q-4" && queued.first?["status"] as? String == "done", "\(queued)")
        #expect(await eventually {
            hall.log.text.contains("request q-4 on 'hall/\(hall.id)/commands' is a retained message")
        })
        try await hall.send(#"{"id": "q-5", "command": "pause", "window": "5"}"#)
        let afterReplay = try await hall.replies.collect(1)
        #expect(afterReplay.first?["requestId"] as? String == "q-5", "one answer for q-4: \(afterReplay)")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 5, "q-4's call ran once")
        try await hall.send("", retained: true)
        serving.cancel()
        _ = await serving.result
        try await hall.stopAll()
    }

    @Test func aPadsStaffARatingRequestAndABoardsBrightnessGoOverMQTTToo() async throws {
        let hall = try await Hall()
        try await hall.send(#"{"id": "q-1", "command": "staff", "window": "5", "staff": "S0517"}"#)
        try await hall.send(#"{"id": "q-2", "command": "rating-request", "window": 5, "ticket": "B012"}"#)
        try await hall.send(#"{"id": "q-3", "command": "brightness", "device": "board-w05", "level": 60}"#)
        try await hall.send(#"{"id": "q-4", "command": "power", "device": "board-w05", "on": "yes"}"#)
        let replies = try await hall.replies.collect(4)
        func reply(_ request: String) -> [String: Any]? { replies.first { $0["requestId"] as? String == request } }
        #expect(reply("q-1")?["status"] as? String == "done", "\(replies)")
        #expect(hall.pad.staffId == "S0517", "written into the pad's staff-id registers")
        #expect(reply("q-2")?["status"] as? String == "done", "\(replies)")
        // The Modbus window board's profile names a brightness register: 60 % is level 9 of its 0-15.
        #expect(reply("q-3")?["status"] as? String == "done", "\(replies)")
        #expect(hall.board.brightness == 9)
        #expect(reply("q-4")?["status"] as? String == "invalid")
        #expect(reply("q-4")?["message"] as? String == "'on' must be true or false")
        #expect(hall.board.registers[MockModbusBoard.Register.commandCounter] == 1, "the board took one command")
        #expect(hall.board.isOn, "the invalid power command did not run")
        try await hall.stopAll()
    }

    @Test func aCommandToAnOfflineBoardAnswersAtOnceWithItsReason() async throws {
        let hall = try await Hall()
        #expect(await eventually {
            await hall.gateway.deviceStates().contains { $0.device == "board-w07" && $0.online == false }
        })
        let sent = ContinuousClock.now
        try await hall.send(#"{"id": "q-1", "command": "call", "window": "7", "ticket": "A024"}"#)
        let reply = try #require(try await hall.replies.collect(1).first)
        let took = ContinuousClock.now - sent
        #expect(reply["status"] as? String == "device-offline", "\(reply)")
        let devices = try #require(reply["devices"] as? [[String: Any]])
        let device = try #require(devices.first { $0["device"] as? String == "board-w07" })
        #expect((device["detail"] as? String)?.contains("board-w07 is offline: no answer") == true, "\(device)")
        // No wait for a response timeout: the reply comes as fast as the broker passes it on.
        #expect(took < .seconds(2), "the offline answer took \(took)")
        try await hall.stopAll()
    }

    @Test func aBrokerThatWentAwayIsReconnectedAndTheCommandTopicSubscribedAgain() async throws {
        let broker = try CommandBroker()
        try await broker.start()
        let hall = try await Hall(broker: broker.port)
        let address = "127.0.0.1:\(broker.port)"
        #expect(await eventually {
            hall.log.text.contains("mqtt commands \(address): taking commands on 'hall/\(hall.id)/commands'")
        })

        try await broker.stop()
        #expect(await eventually { !hall.commands.isListening })
        #expect(await eventually { hall.log.text.contains("mqtt commands \(address): connection lost, reconnecting") },
                "\(hall.log.text)")
        // The broker keeps no sessions (persistence off): the gateway must subscribe again by itself.
        try await broker.start()
        #expect(await eventually { hall.commands.isListening }, "\(hall.log.text)")
        let replies = try await MQTTReplySubscriber(host: "127.0.0.1", port: String(broker.port),
                                                    clientId: "\(hall.id)-results-2",
                                                    topic: "hall/\(hall.id)/command-results")
        try await hall.send(#"{"id": "q-1", "command": "call", "window": "5", "ticket": "A030"}"#)
        let reply = try #require(try await replies.collect(1).first)
        #expect(reply["requestId"] as? String == "q-1" && reply["status"] as? String == "done", "\(reply)")
        #expect(hall.board.display.text == "请A030号到5号窗口")
        let lines = hall.log.text.split(separator: "\n")
        #expect(lines.count { $0.contains("connection lost") } == 1, "one line for the outage: \(hall.log.text)")
        #expect(lines.count { $0.contains("cannot connect, retrying") } <= 1, "not one per attempt: \(hall.log.text)")
        try await hall.stopAll()
    }

    /// A hall of one window board (board-w05, window 5, address 3) on `line`, taking commands from `mqtt`.
    static func oneBoardHall(_ id: String, folder: TemporaryDirectory, line: String, pollMs: Int, mqtt: String) -> String {
        """
        hall: {id: \(id)}
        state-directory: \(folder.path)/state
        profiles: \(profilesDirectory)
        buses:
          - {id: line-a, transport: modbus-rtu, port: \(line), poll-interval-ms: \(pollMs)}
        devices:
          - {id: board-w05, profile: modbus-window-board, bus: line-a, address: 3, window: "5"}
        sinks:
          - {type: sqlite, path: \(folder.path)/events.sqlite}
        commands:
          mqtt: \(mqtt)
        """
    }

    /// A one-board hall for a `gatewayd run` child on the test services' broker, without API: its broker address, hall
    /// id, folder and configuration file.
    static func daemonHall(_ name: String, line: String, pollMs: Int) throws
        -> (host: String, port: String, id: String, folder: TemporaryDirectory, config: String) {
        let host = try #require(ProcessInfo.processInfo.environment["HALL_TEST_MQTT_HOST"],
                                "run the tests through scripts/test-services.sh (a real mosquitto)")
        let port = try #require(ProcessInfo.processInfo.environment["HALL_TEST_MQTT_PORT"])
        let id = "\(name)-\(UInt32.random(in: 0...UInt32.max))"
        let folder = try TemporaryDirectory()
        let config = folder.file("hall.yaml")
        try (oneBoardHall(id, folder: folder, line: line, pollMs: pollMs, mqtt: "{host: \(host), port: \(port)}") + "\napi: off\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        return (host, port, id, folder, config)
    }

    /// From a trial: a result the broker could not take (it was away) was dropped; it goes once the broker is back.
    /// The command is one held from before a restart, run while the broker is still down; the broker's own log says
    /// what it received.
    @Test func aResultTheBrokerCouldNotTakeGoesOnceItIsBack() async throws {
        let broker = try CommandBroker(logsMessages: true)
        let board = MockModbusBoard()
        let server = try MockModbusServer.rtu(units: [3: board])
        defer { server.stop() }
        let id = "mqtt-away-\(UInt32.random(in: 0...UInt32.max))"
        let folder = try TemporaryDirectory()
        let (config, profiles) = try ConfigLoader.parse(
            Self.oneBoardHall(id, folder: folder, line: try #require(server.endpoint.devicePath), pollMs: 50,
                              mqtt: "{host: 127.0.0.1, port: \(broker.port), timeout-ms: 2000}"),
            file: "test.yaml", relativeTo: folder.path)
        let gateway = try Gateway(config: config, profiles: profiles, logger: CapturedLog().logger)
        _ = try gateway.outbox.hold(command: Array(#"{"id": "away-1", "command": "call", "window": "5", "ticket": "A040"}"#.utf8))
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        let log = CapturedLog()
        let commands = try MQTTCommands(config: try #require(config.mqttCommands), gateway: gateway,
                                        commands: CommandCenter(gateway: gateway), logger: log.logger)
        let serving = Task { try await commands.run() }
        #expect(await eventually { log.text.contains("the result of request away-1 (done) is not published") }, "\(log.text)")
        #expect(board.display.text == "请A040号到5号窗口")
        try await broker.start()
        let published = "Received PUBLISH from hall-gateway-\(id)-commands (d0, q1, r0, m"
        #expect(await eventually { broker.log.contains(published) && broker.log.contains("'hall/\(id)/command-results'") },
                "\(broker.log)\n\(log.text)")
        serving.cancel()
        _ = await serving.result
        stop.stop()
        await running.value
        try await broker.stop()
    }

    /// From a trial: libmosquitto acknowledges a command as it arrives, so a gateway killed before it ran the commands
    /// it had received lost them (227 of 300); the broker does not send them again. They are held in the outbox now.
    @Test func aCommandReceivedBeforeTheGatewayWasKilledRunsAfterItsRestart() async throws {
        let board = MockModbusBoard()
        // It takes the call's writes and never says it showed them: the command waits for its verdict.
        board.acknowledging = false
        let server = try MockModbusServer.rtu(units: [3: board])
        defer { server.stop() }
        let (host, port, id, folder, config) = try Self.daemonHall("mqtt-crash", line: try #require(server.endpoint.devicePath),
                                                                   pollMs: 2000)
        let replies = try await MQTTReplySubscriber(host: host, port: port, clientId: "\(id)-results",
                                                    topic: "hall/\(id)/command-results")
        let first = try ChildProcess(gatewaydPath, ["run", "--config", config])
        #expect(await eventually { first.output.contains("taking commands on") }, "\(first.output)")
        let sent = try await run("/usr/bin/mosquitto_pub", ["-h", host, "-p", port, "-q", "1", "-t", "hall/\(id)/commands",
                                 "-m", #"{"id": "c-1", "idempotency-key": "crash-1", "command": "call", "window": "5", "ticket": "A031"}"#])
        try #require(sent.status == 0, "\(sent.standardError)")
        // Under way: the board took the call's writes, and the command waits five polls (10 s) for its acknowledgement.
        // The power goes.
        #expect(await eventually { board.registers[MockModbusBoard.Register.commandCounter] != 0 })
        kill(first.process.processIdentifier, SIGKILL)
        _ = try await first.wait()

        board.acknowledging = true
        let second = try ChildProcess(gatewaydPath, ["run", "--config", config])
        defer { second.interrupt() }
        let reply = try #require(try await replies.collect(1).first, "\(second.output)")
        #expect(reply["requestId"] as? String == "c-1" && reply["status"] as? String == "done", "\(reply)")
        #expect(second.output.contains("1 received before the gateway stopped and not run; running them now"), "\(second.output)")
        second.interrupt()
        _ = try await second.wait()
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        let calls = try await store.events(limit: 1000).filter { $0.type == "hall.call.displayed" }
        #expect(calls.count == 1, "\(calls)")
    }

    /// From a trial: held commands ran at the next start whatever their age: a call from the night before would be
    /// shown in the morning. One held longer than `heldCommandsExpireAfter` is answered `expired` and not run, unless
    /// it ran before the stop (its idempotency key has a result, which is the answer).
    @Test func aCommandHeldAcrossALongStopIsAnsweredExpiredAndNotRun() async throws {
        let board = MockModbusBoard()
        let server = try MockModbusServer.rtu(units: [3: board])
        defer { server.stop() }
        let (host, port, id, folder, config) = try Self.daemonHall("mqtt-expiry", line: try #require(server.endpoint.devicePath),
                                                                   pollMs: 100)
        // What a gateway stopped ten minutes ago left held: two commands from then, one of which had run, and one from now.
        try FileManager.default.createDirectory(atPath: folder.file("state"), withIntermediateDirectories: true)
        do {
            let outbox = try Outbox.open(path: folder.file("state/outbox.sqlite"), logger: CapturedLog().logger)
            let tenMinutesAgo = Date().addingTimeInterval(-600)
            _ = try outbox.hold(command: Array(#"{"id": "c-old", "command": "call", "window": "5", "ticket": "A040"}"#.utf8),
                                at: tenMinutesAgo)
            _ = try outbox.hold(command: Array(#"{"id": "c-ran", "idempotency-key": "ran-1", "command": "call", "window": "5", "ticket": "A041"}"#.utf8),
                                at: tenMinutesAgo)
            try await outbox.recordCommandResult(
                key: "ran-1", request: "call of ticket A041 at window 5",
                json: #"{"id":"command-ran","command":"call","window":"5","ticket":"A041","status":"done","devices":[],"eventId":"command-ran"}"#,
                at: tenMinutesAgo)
            _ = try outbox.hold(command: Array(#"{"id": "c-new", "command": "call", "window": "5", "ticket": "A042"}"#.utf8))
        }
        let replies = try await MQTTReplySubscriber(host: host, port: port, clientId: "\(id)-results",
                                                    topic: "hall/\(id)/command-results")
        let gateway = try ChildProcess(gatewaydPath, ["run", "--config", config])
        defer { gateway.interrupt() }
        let answers = try await replies.collect(3)
        func reply(_ request: String) -> [String: Any]? { answers.first { $0["requestId"] as? String == request } }
        #expect(reply("c-old")?["status"] as? String == "invalid" && reply("c-old")?["kind"] as? String == "expired", "\(answers)")
        #expect((reply("c-old")?["message"] as? String)?.hasPrefix("received 10 min before the gateway could run it") == true,
                "\(answers)")
        #expect(reply("c-ran")?["status"] as? String == "done" && reply("c-ran")?["ticket"] as? String == "A041", "\(answers)")
        #expect(reply("c-new")?["status"] as? String == "done", "\(answers)")
        #expect(board.display.text == "请A042号到5号窗口")
        gateway.interrupt()
        _ = try await gateway.wait()
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        let calls = try await store.events(limit: 1000).filter { $0.type == "hall.call.displayed" }
        #expect(calls.count == 1 && { if case .command(let call)? = calls.first?.data { call.ticket == "A042" } else { false } }(), "only the fresh call ran: \(calls)")
    }

    @Test func theTopicsDefaultToTheHallsAndABadTopicIsReported() throws {
        let folder = try TemporaryDirectory()
        let base = """
            hall: {id: hall-12}
            buses: []
            devices: []
            """
        let (config, _) = try ConfigLoader.parse(base + "\ncommands: {mqtt: {host: broker.lan, tls: true}}",
                                                 file: "t.yaml", relativeTo: folder.path)
        let mqtt = try #require(config.mqttCommands)
        #expect(mqtt.port == 8883 && mqtt.tls != nil)
        #expect(mqtt.topic == "hall/{hall}/commands" && mqtt.replyTopic == "hall/{hall}/command-results")
        let error = try #require(throws: ConfigError.self) {
            let commands = #"commands: {mqtt: {host: broker.lan, topic: "hall/+/commands", colour: red}}"#
            return try ConfigLoader.parse(base + "\n" + commands, file: "t.yaml", relativeTo: folder.path)
        }
        #expect(error.description.contains("commands.mqtt.topic"), "\(error.description)")
        #expect(error.description.contains("'hall/+/commands' is not an MQTT topic name"), "\(error.description)")
        #expect(error.description.contains("commands.mqtt.colour: unknown key"), "\(error.description)")
    }
}

/// `mosquitto_sub` reading the reply topic all along the test, its output in a file: its persistent session subscribed
/// (`-E`) before any command is sent, so the broker keeps every result for it. One process for the whole test: a
/// QoS 1 message whose PUBACK a finished `mosquitto_sub -C` never sent would come a second time to the next one.
final class MQTTReplySubscriber: Sendable {
    private let child: ChildProcess
    private let consumed = Mutex(0)

    init(host: String, port: String, clientId: String, topic: String) async throws {
        let arguments = ["-h", host, "-p", port, "-c", "-i", clientId, "-q", "1", "-t", topic]
        let subscribed = try await run("/usr/bin/mosquitto_sub", arguments + ["-E"])
        try #require(subscribed.status == 0, "mosquitto_sub could not subscribe: \(subscribed.standardError)")
        child = try ChildProcess("/usr/bin/mosquitto_sub", arguments)
    }

    deinit {
        if child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
    }

    private var lines: [Substring] { child.output.split(separator: "\n") }

    /// The next `count` results, each a JSON object; fewer if they do not come within 15 s (and the test fails).
    func collect(_ count: Int) async throws -> [[String: Any]] {
        let start = consumed.withLock { $0 }
        let arrived = await eventually(timeout: .seconds(15)) { lines.count >= start + count }
        let taken = lines.dropFirst(start).prefix(count)
        consumed.withLock { $0 = start + taken.count }
        #expect(arrived, "\(taken.count) of \(count) results arrived")
        return try taken.map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
        }
    }
}

/// A mosquitto of the test's own on a free loopback port, without persistence, killed and started again at will;
/// `logsMessages`: its log (every message it receives) in a file, read by `log`.
final class CommandBroker: @unchecked Sendable {
    let folder: TemporaryDirectory
    let port: Int
    private var process: ChildProcess?
    /// What the broker logged (with `logsMessages`).
    var log: String { (try? String(contentsOfFile: folder.file("mosquitto.log"), encoding: .utf8)) ?? "" }

    init(logsMessages: Bool = false) throws {
        folder = try TemporaryDirectory()
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(socket >= 0)
        defer { close(socket) }
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0
            }
        }
        try #require(named)
        port = Int(UInt16(bigEndian: address.sin_port))
        let logging = logsMessages ? "log_dest file \(folder.file("mosquitto.log"))\nlog_type all\n" : "log_dest stderr\n"
        // Started as root, mosquitto writes its log as its own user.
        if logsMessages { try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder.path) }
        try "listener \(port) 127.0.0.1\nallow_anonymous true\npersistence false\n\(logging)"
            .write(toFile: folder.file("mosquitto.conf"), atomically: true, encoding: .utf8)
    }

    deinit {
        if let process, process.process.isRunning { kill(process.process.processIdentifier, SIGKILL) }
    }

    func start() async throws {
        let process = try ChildProcess("/usr/sbin/mosquitto", ["-c", folder.file("mosquitto.conf")])
        self.process = process
        let port = port
        _ = await eventually(timeout: .seconds(10)) { Self.accepts(port: port) || !process.process.isRunning }
        try #require(Self.accepts(port: port), "mosquitto does not listen on 127.0.0.1:\(port)")
    }

    /// SIGKILL: a crash, as far as its clients can tell (and SIGTERM may be blocked in the child's signal mask).
    func stop() async throws {
        let process = try #require(process)
        kill(process.process.processIdentifier, SIGKILL)
        _ = try await process.wait(timeout: .seconds(10))
        self.process = nil
    }

    private static func accepts(port: Int) -> Bool {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { return false }
        defer { close(socket) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        } == 0
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}
