public import DeviceGateway
import Foundation
public import Hummingbird
import HTTPTypes
public import Logging
import NIOCore

/// The gateway's local HTTP API: the hall's one door to its devices for the queue system, and the CLI's window
/// into the running daemon. Every route but `/healthz`, `/readyz` and `/openapi.json` needs the bearer token;
/// errors are RFC 9457 problem details. The document is `Sources/LocalAPI/openapi.json`, served as is.
public struct LocalAPI: Sendable {
    let gateway: Gateway
    let commands: CommandCenter
    let token: AcceptedToken
    let logger: Logger
    let metrics: GatewayMetrics

    /// An API over `gateway`, its commands run by `commands`, requiring `token` (the one in `tokenFile` once that
    /// is replaced); `/metrics` shows `metrics`, which `commands` should report to
    /// (`CommandCenter(gateway:onFinished: metrics.record)`).
    public init(gateway: Gateway, commands: CommandCenter, metrics: GatewayMetrics, token: String,
                tokenFile: String? = nil, logger: Logger) {
        self.gateway = gateway
        self.commands = commands
        self.metrics = metrics
        self.token = AcceptedToken(token, file: tokenFile, logger: logger)
        self.logger = logger
    }

    /// How long a connection may stay open with no request under way. A tablet that lost its power or Wi-Fi never
    /// closes its keep-alive connection: without a limit each held a descriptor for the gateway's life. Longer than
    /// the 60 s AsyncHTTPClient (the CLI's) keeps its own, so that it closes first.
    public static let idleConnectionLimit = Duration.seconds(75)

    /// The application, listening on `host:port`, closing connections idle for `idleLimit`; `onListening` gets the
    /// port actually bound (for port 0).
    public func application(host: String, port: Int, idleLimit: Duration = idleConnectionLimit,
                            onListening: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol
    {
        // Hummingbird's own "Server started and listening" would repeat the gateway's "api: listening on" line.
        var serverLogger = logger
        if serverLogger.logLevel == .info { serverLogger.logLevel = .notice }
        return Application(
            router: router(), server: .http1(configuration: .init(idleTimeout: TimeAmount(idleLimit))),
            configuration: .init(address: .hostname(host, port: port), serverName: "hall-gateway"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) }, logger: serverLogger)
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ProblemMiddleware(routes: Self.documentedRoutes))
        router.get("/healthz") { _, _ in Status(status: "alive") }
        router.get("/readyz") { _, _ in try await readiness() }
        router.get("/openapi.json") { _, _ in try Self.openAPIDocument() }
        let v1 = router.group("/v1").add(middleware: BearerTokenMiddleware(token: token))
        // Behind the token like the rest: Prometheus scrapes with `authorization: {credentials_file: …}`.
        router.group().add(middleware: BearerTokenMiddleware(token: token)).get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: await metrics.render(gateway: gateway))))
        }
        v1.get("/devices") { _, _ in
            let holds = gateway.afterClosingHolds()
            return DeviceList(devices: await gateway.deviceStates().map { DeviceView($0, holds: holds) },
                              lines: await gateway.lineCounters(), clock: gateway.clockState(),
                              hallDay: gateway.hallDayOutlook())
        }
        addTechnicianRoutes(v1)
        addCheckRoutes(v1)
        addTraceRoutes(v1)
        v1.get("/events") { request, _ in try await events(request) }
        v1.post("/windows/:window/call") { request, context in
            let body = try await Self.body(TicketBody.self, request, context)
            return try await run(.call(window: try context.pathParameter("window"), ticket: body.ticket), request)
        }
        v1.post("/windows/:window/recall") { request, context in
            let body = try await Self.body(TicketBody.self, request, context)
            return try await run(.recall(window: try context.pathParameter("window"), ticket: body.ticket), request)
        }
        v1.post("/windows/:window/pause") { request, context in
            try await Self.noFields(request, context)
            return try await run(.pause(window: try context.pathParameter("window")), request)
        }
        v1.post("/windows/:window/resume") { request, context in
            try await Self.noFields(request, context)
            return try await run(.resume(window: try context.pathParameter("window")), request)
        }
        v1.post("/windows/:window/clear") { request, context in
            try await Self.noFields(request, context)
            return try await run(.clear(window: try context.pathParameter("window")), request)
        }
        v1.post("/devices/:device/text") { request, context in
            let body = try await Self.body(TextBody.self, request, context)
            return try await run(.showText(device: try context.pathParameter("device"), text: body.text), request)
        }
        v1.post("/devices/:device/brightness") { request, context in
            let body = try await Self.body(BrightnessBody.self, request, context)
            return try await run(.brightness(device: try context.pathParameter("device"), percent: body.level), request)
        }
        v1.post("/devices/:device/power") { request, context in
            let body = try await Self.body(PowerBody.self, request, context)
            return try await run(.power(device: try context.pathParameter("device"), on: body.on), request)
        }
        v1.post("/windows/:window/staff") { request, context in
            let body = try await Self.body(StaffBody.self, request, context)
            return try await run(.setStaff(window: try context.pathParameter("window"), staff: body.staff), request)
        }
        v1.post("/windows/:window/rating-request") { request, context in
            let body = try await Self.body(TicketBody.self, request, context)
            return try await run(.requestRating(window: try context.pathParameter("window"), ticket: body.ticket),
                                 request)
        }
        v1.post("/tickets") { request, context in
            let body = try await Self.body(TicketRequest.self, request, context)
            let key = try Self.idempotencyKey(request)
            do throws(CommandInvalid) {
                return CommandResponse(result: try await commands.issueTicket(
                    number: body.number, prefix: body.prefix, service: body.service, waitingAhead: body.waitingAhead ?? 0,
                    printer: body.printer, idempotencyKey: key))
            } catch {
                throw Problem(error)
            }
        }
        v1.post("/terminals/:terminal/ratings") { request, context in
            let body = try await Self.body(TerminalRating.self, request, context)
            let terminal = try context.pathParameter("terminal")
            do {
                let (eventId, stored) = try await commands.submitRating(
                    terminal: terminal, boot: body.boot, counter: body.counter, key: body.key, level: body.level,
                    staffId: body.staff, ticket: body.ticket)
                return EditedResponse(status: stored ? .created : .ok, response: RatingStored(eventId: eventId, stored: stored))
            } catch let invalid as CommandInvalid {
                throw Problem(invalid)
            } catch {
                throw Problem(.serviceUnavailable, "the rating could not be committed, post it again: \(error)")
            }
        }
        return router
    }

    static func idempotencyKey(_ request: Request) throws -> String? {
        let key = request.headers[.idempotencyKey]
        if let key, key.isEmpty || key.count > 200 {
            throw Problem(.badRequest, "Idempotency-Key must be 1 to 200 characters")
        }
        return key
    }

    private func run(_ command: QueueCommand, _ request: Request) async throws -> CommandResponse {
        let key = try Self.idempotencyKey(request)
        do {
            return CommandResponse(result: try await commands.execute(command, idempotencyKey: key))
        } catch {
            throw Problem(error)
        }
    }

    /// A page of committed events, each as it is stored (a CloudEvent), with its outbox position.
    private func events(_ request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        guard let after = query["after"].map({ Int64(String($0)) }) ?? 0, (0...9_007_199_254_740_991).contains(after) else {
            throw Problem(.badRequest, "after must be an event position (an integer from 0)")
        }
        guard let limit = query["limit"].map({ Int(String($0)) }) ?? 100, (1...1000).contains(limit) else {
            throw Problem(.badRequest, "limit must be an integer from 1 to 1000")
        }
        let entries = try await gateway.outbox.entries(after: after, limit: limit)
        // The stored JSON goes out byte for byte: what the sinks get.
        let events = entries.map { "{\"position\":\($0.position),\"event\":\($0.json)}" }.joined(separator: ",")
        let body = "{\"events\":[\(events)],\"next\":\(entries.last?.position ?? after)}"
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    private func readiness() async throws -> Status {
        var problems: [String] = []
        if !gateway.isRunning { problems.append("the buses are not started") }
        // The gateway's own latest write, not one per request: a full disk or a read-only outbox shows within 2 s.
        if let problem = gateway.outboxWriteProblem { problems.append("the outbox cannot be written: \(problem)") }
        guard problems.isEmpty else { throw Problem(.serviceUnavailable, problems.joined(separator: "; ")) }
        return Status(status: "ready")
    }

    /// The JSON body; its DecodingError reaches the problem middleware, which says in words what is wrong.
    static func body<Body: RequestBody>(_ type: Body.Type, _ request: Request, _ context: BasicRequestContext) async throws -> Body {
        try requireJSON(request)
        var request = request
        return try decode(type, from: Data(try await request.collectBody(upTo: context.maxUploadSize).readableBytesView))
    }

    /// Decodes a body, a field it does not take said first.
    static func decode<Body: RequestBody>(_ type: Body.Type, from data: Data) throws -> Body {
        try refuseUnknownFields(in: data, taking: Body.fieldNames)
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch DecodingError.dataCorrupted(let corrupted) where corrupted.codingPath.isEmpty {
            // Foundation says "not valid JSON", with no field, for 50.5 where a whole number goes: find the field.
            guard let fields = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let (field, problem) = fields.keys.sorted().lazy
                      .compactMap({ key in fields[key].flatMap(notAnInteger).map { (key, $0) } }).first
            else { throw DecodingError.dataCorrupted(corrupted) }
            throw Problem(.badRequest, "the body is not what this endpoint takes: '\(field)' \(problem)")
        }
    }

    /// For an endpoint whose body has no fields (pause, resume, clear, check, probe): none, or `{}`, and no other.
    static func noFields(_ request: Request, _ context: BasicRequestContext) async throws {
        var body = request
        let data = Data(try await body.collectBody(upTo: context.maxUploadSize).readableBytesView)
        // No body is no body, whatever it is labelled (`curl -d ''` says form data).
        guard !data.allSatisfy({ [0x20, 0x09, 0x0A, 0x0D].contains($0) }) else { return }
        try requireJSON(request)
        try refuseUnknownFields(in: data, taking: [])
        guard (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else {
            throw Problem(.badRequest, "the body is not what this endpoint takes: it takes none, or {}")
        }
    }

    /// A field the endpoint does not take is said first: a misspelt optional field would otherwise be ignored, and a
    /// misspelt required one reported as missing.
    private static func refuseUnknownFields(in data: Data, taking names: [String]) throws {
        guard let fields = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let shown = CommandCenter.unknownField(among: fields.keys, taken: names)
        else { return }
        let taken = names.isEmpty ? "it takes none" : "its fields: " + names.joined(separator: ", ")
        throw Problem(.badRequest, "the body is not what this endpoint takes: it has no field '\(shown)' (\(taken))")
    }

    /// Refuses a body labelled as something other than JSON (from a trial: `text/plain` was read as JSON, so a client
    /// sending form fields by mistake learnt it only from a decoding error); an unlabelled body is read as JSON.
    static func requireJSON(_ request: Request) throws {
        guard let label = request.headers[.contentType] else { return }
        let media = label.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        guard media != "application/json", !media.hasSuffix("+json") else { return }
        throw Problem(.unsupportedMediaType, "the body must be JSON, sent with Content-Type: application/json (this one "
                      + "says \(CommandCenter.holdsPhoneOrIDNumber(media) ? "something else" : String(media.prefix(60))))")
    }

    /// Why a JSON number is no Int: a fraction, or beyond Int64; nil for an integer or anything else.
    private static func notAnInteger(_ value: Any) -> String? {
        guard !(value is Bool), let number = value as? NSNumber else { return nil }
        let double = number.doubleValue
        if double.rounded() != double { return "must be a whole number" }
        return abs(double) >= 9.2e18 ? "is out of range" : nil
    }

    /// The paths and methods of the OpenAPI document: a known path asked with another method answers 405.
    static let documentedRoutes: RouteTable = {
        guard let document = try? JSONSerialization.jsonObject(with: Data(PackageResources.openapi_json)) as? [String: Any],
              let paths = document["paths"] as? [String: [String: Any]]
        else { return RouteTable(routes: []) }
        let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
        return RouteTable(routes: paths.map { path, operations in
            (path, operations.keys.filter(methods.contains).map { $0.uppercased() }.sorted())
        })
    }()

    static func openAPIDocument() throws -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: PackageResources.openapi_json)))
    }
}
