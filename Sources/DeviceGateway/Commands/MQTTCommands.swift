import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization

/// The queue system's commands over MQTT: a JSON message on the hall's command topic runs like the same call to the
/// local API, and its result goes to the reply topic (QoS 1 both ways).
///
/// A message: `{"id": "q-1", "idempotency-key": "k-1", "command": "call", "window": "3", "ticket": "A023"}`;
/// commands `call`, `recall`, `pause`, `resume`, `clear`, `text` and `ticket`, with the HTTP routes' fields. The
/// result is the HTTP `CommandResult` plus `requestId` (the message's `id`); a message that cannot run gets
/// `{"requestId": …, "status": "invalid", "kind": …, "message": …}`. Commands to one window (or board, or the
/// printers) run in the order they came; others run at once. A command runs once per idempotency key; the broker
/// may deliver a QoS 1 message twice, so a client that needs exactly once sends a key. A retained command runs when it
/// arrives as published; the broker's replay of it to a new subscription (each start of the gateway) is not run and
/// not answered, only logged: the command ran when published, or its copy queued for the gateway's session comes
/// too and is answered (an answer to the replay as well would contradict it). An empty message, MQTT's way to clear a
/// retained one, is no command and gets no reply.
public final class MQTTCommands: Service, Sendable {
    private let client: MosquittoClient
    private let center: CommandCenter
    /// Where commands arrive and where results go.
    public let commandTopic: String
    public let replyTopic: String
    private let timeout: Duration
    private let logger: Logger
    /// Windows, devices and the printers: the lanes whose commands keep their order.
    private let lanes: Set<String>
    private let listening = Mutex(false)
    /// Results that could not be published (the broker away): sent when the command topic is subscribed again.
    private let unsent = Mutex<[MosquittoMessage]>([])
    /// At most this many results wait for the broker; older ones are dropped (their results stay under their keys).
    static let mostUnsent = 1_000
    private let replies = Atomic<UInt64>(0)
    private let messages: AsyncStream<Arrived>
    private let incoming: AsyncStream<Arrived>.Continuation
    /// Where a command is held from its arrival until its result went out.
    private let outbox: Outbox

    /// A message, and its number among the commands held in the outbox (none for one that is no command to run).
    private struct Arrived: Sendable {
        var message: MosquittoReceived
        var held: Int64?
        /// How long before this start a command held across a stop was received (nil: it just came, or was held by
        /// an older version, or the clock reads before it was received).
        var heldFor: TimeInterval?
    }
    /// A command held across a stop longer than this is answered `expired`, not run: a call shown or a ticket printed
    /// that much later is no longer what the queue system asked for (the gateway was down over night, say).
    static let heldCommandsExpireAfter: TimeInterval = 120
    /// Commands running at once at most; more wait in the stream, unbounded: libmosquitto acknowledges a message
    /// before handing it over, so the broker's QoS 1 window does not bound it (each is held in the outbox too).
    static let concurrency = 64
    /// Larger messages are refused: a command is a few hundred bytes.
    static let largestMessage = 65_536

    /// Whether the broker granted the subscription on the current connection.
    public var isListening: Bool { listening.withLock { $0 } }

    /// Sets up the client for `config`'s broker; connects when `run` starts.
    ///
    /// Fails for what no retry can fix: an unreadable password or TLS file, a topic that is not valid with the hall's
    /// id filled in.
    public init(config: MQTTCommandsConfig, gateway: Gateway, commands: CommandCenter, logger: Logger) throws {
        let hall = gateway.config.hall.id
        let address = "\(config.host):\(config.port)"
        let (commandTopic, replyTopic) = config.topics(hall: hall)
        for topic in [commandTopic, replyTopic] where !MQTTSink.isValidTopic(topic) {
            throw SinkError(.rejected, "mqtt commands \(address): '\(topic)' is not a valid MQTT topic name")
        }
        var password: String?
        if let file = config.passwordFile {
            switch ReadableFile.secret(file) {
            case .success(let text): password = text
            case .failure(let problem):
                throw SinkError(.rejected, "mqtt commands \(address): \(problem.message("password file"))")
            }
        }
        var settings = MosquittoSettings(
            host: config.host, port: config.port, clientId: config.clientId ?? "hall-gateway-\(hall)-commands",
            username: config.username, password: password.map(Secret.init), passwordFile: config.passwordFile,
            tls: config.tls, keepAliveSeconds: Int32(clamping: min(max(config.keepAlive.components.seconds, 5), 65535)),
            connectTimeout: config.timeout)
        settings.name = "mqtt commands"
        client = try MosquittoClient(settings: settings, logger: logger)
        center = commands
        self.commandTopic = commandTopic
        self.replyTopic = replyTopic
        timeout = config.timeout
        self.logger = logger
        let devices = gateway.config.devices
        lanes = Set(devices.compactMap { $0.window.map { "window \($0)" } } + devices.map { "device \($0.id)" }
            + ["printers"])
        (messages, incoming) = AsyncStream.makeStream(of: Arrived.self)
        outbox = gateway.outbox
    }

    /// Subscribes and runs the commands that arrive until a graceful shutdown or cancellation; then lets the
    /// commands under way finish and publish their results, and disconnects.
    public func run() async throws {
        let incoming = self.incoming
        let logger = self.logger
        let outbox = self.outbox
        // Received and acknowledged before a crash or a power cut, not run: they run first (from a trial: kill -9 lost
        // 227 of 300 commands the broker had been told were received).
        let held = (try? await outbox.heldCommands()) ?? []
        if !held.isEmpty {
            logger.warning("mqtt commands: \(held.count) received before the gateway stopped and not run; running them now")
        }
        // Their age at the start: a long queue of them must not age while it is worked off.
        let start = Date()
        for command in held {
            let heldFor = command.receivedAt.map { start.timeIntervalSince($0) }
            if let heldFor, heldFor < 0 {
                logger.warning("mqtt commands: a held command was received after this start by the clock (set back since?); it runs")
            }
            incoming.yield(Arrived(message: MosquittoReceived(topic: commandTopic, payload: command.payload), held: command.seq,
                                   heldFor: heldFor.flatMap { $0 >= 0 ? $0 : nil }))
        }
        // Weak: the client keeps its handlers, and this object keeps the client.
        client.subscribe(commandTopic, onListening: { [weak self] granted in
            self?.listening(granted)
        }, onMessage: { message in
            // libmosquitto acknowledged it already: on disk before anything else, so that a crash does not lose it.
            var held: Int64?
            // Not an empty or retained one (no command to run), nor one too large to be one (refused at once).
            if !message.payload.isEmpty, !message.retained, message.payload.count <= Self.largestMessage {
                do {
                    held = try outbox.hold(command: message.payload)
                } catch {
                    logger.error("mqtt commands: a command on '\(message.topic)' cannot be kept in the outbox (\(error)); it runs, but a crash before it ran would lose it")
                }
            }
            if case .terminated = incoming.yield(Arrived(message: message, held: held)) {
                let when = held == nil ? "it is not run" : "it runs at the next start"
                logger.warning("mqtt commands: a command came on '\(message.topic)' as the gateway stops; \(when)")
            }
        })
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await serve()
            } onCancel: {
                incoming.finish()
            }
        } onGracefulShutdown: {
            incoming.finish()
        }
        await client.shutdown()
        listening.withLock { $0 = false }
    }

    private func listening(_ granted: Bool) {
        let first = listening.withLock { listening in
            defer { listening = granted }
            return granted && !listening
        }
        // Back on the broker: the results it missed go now (from a trial: they were dropped).
        if granted {
            let waiting = unsent.withLock { unsent in defer { unsent.removeAll() }; return unsent }
            if !waiting.isEmpty {
                Task { [weak self] in
                    guard let self else { return }
                    do {
                        try await client.publish(waiting, timeout: timeout)
                        logger.notice("mqtt commands: \(waiting.count) results published once the broker was back")
                    } catch {
                        unsent.withLock { $0 = Array((waiting + $0).suffix(Self.mostUnsent)) }
                    }
                }
            }
        }
        if first {
            logger.info("""
                mqtt commands \(client.settings.address): taking commands on '\(commandTopic)', results on \
                '\(replyTopic)'
                """)
        }
    }

    private func serve() async {
        await withTaskGroup(of: Void.self) { group in
            var tails: [String: Task<Void, Never>] = [:]
            var running = 0
            for await arrived in messages {
                let message = arrived.message
                if running >= Self.concurrency {
                    await group.next()
                    running -= 1
                }
                if message.payload.isEmpty {
                    logger.info("mqtt commands: an empty message on '\(message.topic)' (clearing a retained one) is no command")
                    continue
                }
                var request = MQTTCommandRequest.parse(message.payload, largest: Self.largestMessage)
                if let age = arrived.heldFor, age > Self.heldCommandsExpireAfter {
                    // One that ran before the stop gets its result as kept now: a look-up when its turn comes might
                    // find the key forgotten meanwhile (a day old), and run it again.
                    if let kept = await resultKept(for: request) {
                        request.action = .answered(kept)
                    } else {
                        request.action = .invalid(CommandInvalid(kind: CommandInvalid.expired, message: """
                            received \(WallClockWatch.describe(age)) before the gateway could run it (it had stopped): \
                            not run now, it is older than \(Int(Self.heldCommandsExpireAfter)) s (one that ran before the \
                            stop has its event)
                            """))
                    }
                }
                if message.retained {
                    let what = request.id.map { "request \($0)" } ?? "a request without id"
                    logger.warning("""
                        mqtt commands: \(what) on '\(message.topic)' is a retained message the broker replays at every \
                        start of the gateway; not run and not answered (publish commands without the retain flag; \
                        clear this one with an empty retained message)
                        """)
                    continue
                }
                // One lane per window, board or the printers: a call and its recall keep their order.
                let lane = request.lane.flatMap { lanes.contains($0) ? $0 : nil }
                let previous = lane.flatMap { tails[$0] }
                let task = Task {
                    await previous?.value
                    await self.answer(request)
                    await self.release(arrived.held)
                }
                if let lane { tails[lane] = task }
                group.addTask { await task.value }
                running += 1
            }
        }
    }

    /// The result of the request if it ran before the stop: kept under its idempotency key.
    private func resultKept(for request: MQTTCommandRequest) async -> CommandResult? {
        guard let key = request.idempotencyKey, let kept = try? await outbox.commandResult(key: key) else { return nil }
        return try? JSONDecoder().decode(CommandResult.self, from: Data(kept.result.utf8))
    }

    /// Forgets a held command once its result went out (or could not: the result is kept under its idempotency key).
    private func release(_ held: Int64?) async {
        guard let held else { return }
        do {
            try await outbox.release(command: held)
        } catch {
            logger.error("mqtt commands: a command that ran is still held in the outbox (\(error)); it runs again at the next start")
        }
    }

    /// Runs the request and publishes its result.
    private func answer(_ request: MQTTCommandRequest) async {
        let reply: MQTTCommandReply
        switch request.action {
        case .invalid(let invalid):
            reply = MQTTCommandReply(requestId: request.id, command: request.command, outcome: .invalid(invalid))
        case .answered(let result):
            reply = MQTTCommandReply(requestId: request.id, command: request.command, outcome: .result(result))
        case .queue(let command):
            do throws(CommandInvalid) {
                let result = try await center.execute(command, idempotencyKey: request.idempotencyKey)
                reply = MQTTCommandReply(requestId: request.id, command: request.command, outcome: .result(result))
            } catch {
                reply = MQTTCommandReply(requestId: request.id, command: request.command, outcome: .invalid(error))
            }
        case .ticket(let ticket):
            do throws(CommandInvalid) {
                let result = try await center.issueTicket(
                    number: ticket.number, prefix: ticket.prefix, service: ticket.service,
                    waitingAhead: ticket.waitingAhead, printer: ticket.printer, idempotencyKey: request.idempotencyKey)
                reply = MQTTCommandReply(requestId: request.id, command: request.command, outcome: .result(result))
            } catch {
                reply = MQTTCommandReply(requestId: request.id, command: request.command, outcome: .invalid(error))
            }
        }
        let number = replies.wrappingAdd(1, ordering: .relaxed).newValue
        let message = MosquittoMessage(key: "reply-\(number)", topic: replyTopic, payload: reply.json)
        do {
            try await client.publish([message], timeout: timeout)
        } catch {
            let what = request.id.map { "request \($0)" } ?? "a request without id"
            let dropped = unsent.withLock { unsent in
                unsent.append(message)
                defer { if unsent.count > Self.mostUnsent { unsent.removeFirst() } }
                return unsent.count > Self.mostUnsent
            }
            let oldest = dropped ? " (the oldest waiting result is dropped: \(Self.mostUnsent) wait)" : ""
            logger.warning("mqtt commands: the result of \(what) (\(reply.status)) is not published: \(error); it is sent once the broker is back\(oldest)")
        }
    }
}

/// A message from the command topic, read as far as it goes.
struct MQTTCommandRequest: Sendable {
    /// What the message asks for.
    enum Action: Sendable {
        case queue(QueueCommand)
        case ticket(Ticket)
        case invalid(CommandInvalid)
        /// Ran before the stop: its kept result, sent again.
        case answered(CommandResult)
    }

    /// `POST /v1/tickets`' fields.
    struct Ticket: Sendable {
        var number: String?
        var prefix: String?
        var service: String
        var waitingAhead: Int
        var printer: String?
    }

    var id: String?
    var idempotencyKey: String?
    var command: String?
    var action: Action

    /// The commands a message may name.
    static let commands = [
        "call", "recall", "pause", "resume", "clear", "text", "brightness", "power", "staff", "rating-request", "ticket",
    ]

    /// The fields each command takes beside every message's `id`, `idempotency-key` and `command`: any other is refused
    /// before the command is read, so that a misspelt required field is named, not said missing.
    static let fields: [String: [String]] = [
        "call": ["window", "ticket"], "recall": ["window", "ticket"], "pause": ["window"], "resume": ["window"],
        "clear": ["window"], "text": ["device", "text"], "brightness": ["device", "level"], "power": ["device", "on"],
        "staff": ["window", "staff"], "rating-request": ["window", "ticket"],
        "ticket": ["number", "prefix", "service", "waitingAhead", "printer"],
    ]

    /// Whose commands this one must follow: its window, its board or the printers.
    var lane: String? {
        switch action {
        case .queue(.showText(let device, _)), .queue(.brightness(let device, _)), .queue(.power(let device, _)):
            "device \(device)"
        case .queue(let command): command.window.map { "window \($0)" }
        case .ticket: "printers"
        case .invalid, .answered: nil
        }
    }

    /// Reads a message; whatever is wrong with it becomes an `invalid` action saying what.
    static func parse(_ payload: [UInt8], largest: Int) -> MQTTCommandRequest {
        var request = MQTTCommandRequest(id: nil, idempotencyKey: nil, command: nil,
                                         action: .invalid(invalid("the message is empty")))
        guard payload.count <= largest else {
            request.action = .invalid(
                invalid("the message is \(payload.count) bytes; a command takes at most \(largest)"))
            return request
        }
        let fields: [String: JSONValue]
        do {
            fields = try JSONDecoder().decode([String: JSONValue].self, from: Data(payload))
        } catch DecodingError.typeMismatch {
            request.action = .invalid(invalid("the message must be a JSON object, e.g. {\"command\": \"call\", …}"))
            return request
        } catch {
            request.action = .invalid(invalid("the message is not valid JSON"))
            return request
        }
        // The id first: even a message wrong in every other way gets an answer the client can match.
        if case .string(let id)? = fields["id"], !id.isEmpty, id.count <= 200 { request.id = id }
        // Said back only when it is one: anything else could be what the sender typed by mistake.
        if case .string(let command)? = fields["command"], Self.fields[command] != nil { request.command = command }
        do throws(CommandInvalid) {
            let reader = FieldReader(fields: fields)
            if fields["id"] != nil, request.id == nil {
                throw invalid("'id' must be a string of 1 to 200 characters")
            }
            if let key = try reader.string("idempotency-key") {
                guard key.count <= 200 else { throw invalid("'idempotency-key' must be 1 to 200 characters") }
                request.idempotencyKey = key
            }
            guard let command = try reader.string("command") else {
                throw invalid("'command' is missing (one of \(commands.joined(separator: ", ")))")
            }
            if let taken = Self.fields[command], case let all = ["id", "idempotency-key", "command"] + taken,
               let shown = CommandCenter.unknownField(among: fields.keys, taken: all) {
                throw invalid("'\(shown)' is no field of a \(command) command (its fields: \(all.joined(separator: ", ")))")
            }
            switch command {
            case "call":
                request.action = .queue(.call(window: try reader.window(), ticket: try reader.required("ticket")))
            case "recall":
                request.action = .queue(.recall(window: try reader.window(), ticket: try reader.required("ticket")))
            case "pause": request.action = .queue(.pause(window: try reader.window()))
            case "resume": request.action = .queue(.resume(window: try reader.window()))
            case "clear": request.action = .queue(.clear(window: try reader.window()))
            case "text":
                request.action = .queue(
                    .showText(device: try reader.required("device"), text: try reader.required("text")))
            case "brightness":
                guard let level = try reader.count("level", upTo: 100) else {
                    throw invalid("'level' is missing: a whole number from 0 to 100 (percent)")
                }
                request.action = .queue(.brightness(device: try reader.required("device"), percent: level))
            case "power":
                guard let on = try reader.bool("on") else { throw invalid("'on' is missing (true or false)") }
                request.action = .queue(.power(device: try reader.required("device"), on: on))
            case "staff":
                request.action = .queue(.setStaff(window: try reader.window(), staff: try reader.required("staff")))
            case "rating-request":
                request.action = .queue(.requestRating(window: try reader.window(), ticket: try reader.required("ticket")))
            case "ticket":
                request.action = .ticket(Ticket(
                    number: try reader.string("number"), prefix: try reader.string("prefix"),
                    service: try reader.required("service"), waitingAhead: try reader.count("waitingAhead", upTo: CommandCenter.mostWaitingAhead) ?? 0,
                    printer: try reader.string("printer")))
            default:
                throw invalid("'command' is \(CommandCenter.quoted(command)); it must be one of \(commands.joined(separator: ", "))")
            }
        } catch {
            request.action = .invalid(error)
        }
        return request
    }

    static func invalid(_ message: String) -> CommandInvalid {
        CommandInvalid(kind: "invalid", message: message)
    }

    /// A field's value, as far as a command cares.
    enum JSONValue: Decodable {
        case string(String)
        case number(Double)
        case bool(Bool)
        case null
        /// An array or an object: never what a command takes.
        case other

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self = .null
            } else if let flag = try? container.decode(Bool.self) {
                self = .bool(flag)
            } else if let number = try? container.decode(Double.self) {
                self = .number(number)
            } else if let text = try? container.decode(String.self) {
                self = .string(text)
            } else {
                self = .other
            }
        }
    }

    /// Typed reads of a message's fields, each mistake said with the field's name.
    private struct FieldReader {
        let fields: [String: JSONValue]

        func string(_ name: String) throws(CommandInvalid) -> String? {
            switch fields[name] {
            case nil, .null?: return nil
            case .string(let text)? where !text.isEmpty: return text
            default: throw MQTTCommandRequest.invalid("'\(name)' must be a non-empty string")
            }
        }

        func required(_ name: String) throws(CommandInvalid) -> String {
            guard let text = try string(name) else { throw MQTTCommandRequest.invalid("'\(name)' is missing") }
            return text
        }

        /// A window as a string ("3") or a whole number (3).
        func window() throws(CommandInvalid) -> String {
            if case .number(let number)? = fields["window"], let whole = Int(exactly: number), whole >= 0 {
                return String(whole)
            }
            return try required("window")
        }

        func bool(_ name: String) throws(CommandInvalid) -> Bool? {
            switch fields[name] {
            case nil, .null?: return nil
            case .bool(let flag)?: return flag
            default: throw MQTTCommandRequest.invalid("'\(name)' must be true or false")
            }
        }

        func count(_ name: String, upTo maximum: Int) throws(CommandInvalid) -> Int? {
            switch fields[name] {
            case nil, .null?: return nil
            case .number(let number)? where number >= 0 && number <= Double(maximum) && number == number.rounded():
                return Int(number)
            default: throw MQTTCommandRequest.invalid("'\(name)' must be a whole number from 0 to \(maximum)")
            }
        }
    }
}

/// What goes to the reply topic.
struct MQTTCommandReply: Encodable {
    enum Outcome {
        case result(CommandResult)
        case invalid(CommandInvalid)
    }

    var requestId: String?
    var command: String?
    var outcome: Outcome

    private enum Keys: String, CodingKey {
        case requestId, command, status, kind, message
    }

    /// `done`, `device-offline`, … or `invalid`.
    var status: String {
        switch outcome {
        case .result(let result): result.status.rawValue
        case .invalid: "invalid"
        }
    }

    func encode(to encoder: any Encoder) throws {
        switch outcome {
        case .result(let result):
            // The HTTP answer's fields, and the request's id beside them.
            try result.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encodeIfPresent(requestId, forKey: .requestId)
        case .invalid(let invalid):
            var container = encoder.container(keyedBy: Keys.self)
            try container.encodeIfPresent(requestId, forKey: .requestId)
            try container.encodeIfPresent(command, forKey: .command)
            try container.encode("invalid", forKey: .status)
            try container.encode(invalid.kind, forKey: .kind)
            try container.encode(invalid.message, forKey: .message)
        }
    }

    /// The reply as JSON text.
    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else {
            return #"{"status":"invalid","kind":"invalid","message":"the result could not be encoded"}"#
        }
        return String(decoding: data, as: UTF8.self)
    }
}
