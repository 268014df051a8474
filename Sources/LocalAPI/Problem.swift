import DeviceGateway
import Foundation
import Logging
import Hummingbird
import HTTPTypes
import NIOCore

/// An RFC 9457 problem: the one shape of every error the API returns.
struct Problem: Error, HTTPResponseError {
    let status: HTTPResponse.Status
    let detail: String
    /// The methods the path takes, for a 405's `Allow` header.
    var allow: [String] = []
    /// A refused command's kind (`CommandInvalid.kind`): a member a program switches on, as RFC 9457 allows.
    var kind: String?

    init(_ status: HTTPResponse.Status, _ detail: String, allow: [String] = []) {
        self.status = status
        self.detail = detail
        self.allow = allow
        // A malformed request (a body that does not decode, is too large or is no JSON, a bad parameter) is refused
        // before anything ran, as a command's own check refuses one: a program switches on the same kind.
        if [.badRequest, .contentTooLarge, .unsupportedMediaType].contains(status) { kind = "invalid" }
    }

    /// A command refused before it ran: 400 for a malformed one, 422 for an idempotency key reused with another
    /// request (as the IETF Idempotency-Key draft has it), 404 for a window or device the hall does not have.
    init(_ invalid: CommandInvalid) {
        let status: HTTPResponse.Status = switch invalid.kind {
        case "invalid": .badRequest
        case CommandInvalid.keyReused: .unprocessableContent
        case CommandInvalid.counterReused: .conflict
        default: .notFound
        }
        self.init(status, invalid.message)
        kind = invalid.kind
    }

    var headers: HTTPFields {
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer realm=\"hall-gateway\"" }
        if status == .methodNotAllowed { headers[.allow] = allow.joined(separator: ", ") }
        return headers
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var body: [String: Any] = [
            "type": "about:blank", "title": status.reasonPhrase, "status": status.code, "detail": detail,
            "instance": ProblemMiddleware<BasicRequestContext>.shown(request.uri.path),
        ]
        if let kind { body["kind"] = kind }
        let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes])
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Turns every error into a problem document: the router's own 404 and 405, a body that does not decode, and
/// anything unexpected (a 500 that says what, never a stack).
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The API's paths and their methods: the router says 404 for a known path asked with another method.
    var routes = RouteTable(routes: [])

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            throw problem
        } catch let error as DecodingError {
            throw Problem(.badRequest, "the body is not what this endpoint takes: \(Self.describe(error))")
        } catch let error as any HTTPResponseError {
            if error.status == .notFound, let allowed = routes.methods(for: request.uri.path),
               !allowed.contains(request.method.rawValue) {
                throw Problem(.methodNotAllowed, "\(request.method) is not allowed on \(Self.shown(request.uri.path)); it takes "
                              + allowed.joined(separator: ", "), allow: allowed)
            }
            let detail = switch error.status {
            case .notFound: "no such endpoint: \(request.method) \(Self.shown(request.uri.path))"
            case .methodNotAllowed: "\(request.method) is not allowed on \(Self.shown(request.uri.path))"
            case .contentTooLarge: "the body is larger than the API takes (2 MB)"
            default: "\(error)"
            }
            throw Problem(error.status, detail)
        } catch {
            context.logger.error("api: \(request.method) \(Self.shown(request.uri.path)) failed: \(error)")
            throw Problem(.internalServerError, "the gateway failed to answer: \(error)")
        }
    }

    /// A request's path as answers and the log repeat it: a segment that reads as a mobile or resident ID number (a
    /// citizen's, sent as a window's name) is not repeated (from a trial: a Problem's `instance` repeated it).
    static func shown(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { segment in
            let text = String(segment).removingPercentEncoding ?? String(segment)
            return CommandCenter.holdsPhoneOrIDNumber(text) ? "(not repeated)" : String(segment)
        }.joined(separator: "/")
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): "'\(key.stringValue)' is missing"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            "'\(context.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type"
        case .dataCorrupted: "not valid JSON"
        @unknown default: "not valid JSON"
        }
    }
}

/// The API's path templates (`/v1/windows/{window}/call`) with the methods each takes.
struct RouteTable: Sendable {
    private let routes: [(segments: [Substring], methods: [String])]

    /// Routes from templates and their methods (upper case).
    init(routes: [(template: String, methods: [String])]) {
        self.routes = routes.map { ($0.template.split(separator: "/", omittingEmptySubsequences: false), $0.methods) }
    }

    /// The methods a concrete path takes, nil when no template matches it.
    func methods(for path: String) -> [String]? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        let matching = routes.filter { route in
            route.segments.count == segments.count && zip(route.segments, segments).allSatisfy { template, given in
                template == given || (template.hasPrefix("{") && template.hasSuffix("}") && !given.isEmpty)
            }
        }
        guard !matching.isEmpty else { return nil }
        return Array(Set(matching.flatMap(\.methods))).sorted()
    }
}

/// Requires `Authorization: Bearer <token>`; compares in constant time.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: AcceptedToken

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw Problem(.unauthorized, "send the gateway's API token as 'Authorization: Bearer <token>'")
        }
        guard token.matches(header.dropFirst("Bearer ".count).utf8) else {
            throw Problem(.unauthorized, "the API token is wrong")
        }
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
    static let allow = Self("Allow")!
}

struct Status: ResponseEncodable {
    var status: String
}

/// A request's JSON body. Its fields are its coding keys; a field it does not have is refused rather than ignored
/// (from a trial: a rating's `staffId`, meant as `staff`, was dropped in silence and the rating stored without it).
protocol RequestBody: Decodable {
    associatedtype CodingKeys: CodingKey & CaseIterable
}

extension RequestBody {
    static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue) }
}

struct TicketBody: RequestBody {
    var ticket: String
    enum CodingKeys: String, CodingKey, CaseIterable { case ticket }
}

struct TextBody: RequestBody {
    var text: String
    enum CodingKeys: String, CodingKey, CaseIterable { case text }
}

struct BrightnessBody: RequestBody {
    /// 0 to 100 %.
    var level: Int
    enum CodingKeys: String, CodingKey, CaseIterable { case level }
}

struct PowerBody: RequestBody {
    var on: Bool
    enum CodingKeys: String, CodingKey, CaseIterable { case on }
}

struct StaffBody: RequestBody {
    var staff: String
    enum CodingKeys: String, CodingKey, CaseIterable { case staff }
}

struct TicketRequest: RequestBody {
    var number: String?
    var prefix: String?
    var service: String
    var waitingAhead: Int?
    var printer: String?
    enum CodingKeys: String, CodingKey, CaseIterable { case number, prefix, service, waitingAhead, printer }
}

struct TerminalRating: RequestBody {
    var counter: Int64
    var boot: String?
    var key: Int?
    var level: Int?
    var staff: String?
    var ticket: String?
    enum CodingKeys: String, CodingKey, CaseIterable { case counter, boot, key, level, staff, ticket }
}

struct RatingStored: ResponseEncodable {
    var eventId: String
    /// False when a post of the same terminal and counter was stored before (a retry).
    var stored: Bool
}

/// A command's result as the response body.
struct CommandResponse: ResponseEncodable {
    let result: CommandResult

    func encode(to encoder: any Encoder) throws { try result.encode(to: encoder) }
}

/// A device as the API shows it.
struct DeviceView: Encodable {
    var device: String
    var bus: String
    var state: String
    var lastSeen: String?
    var offlineReason: String?
    var counters: DeviceCounters
    var condition: String?
    /// A board's screen, `on` or `off`, as its last read said; absent when its reads do not tell.
    var screen: String?
    /// A board a call or a text after closing switched on: when it goes off again.
    var onAfterClosingUntil: String?
    /// What a board was last sent to show.
    var lastShown: ShownOnBoard?

    init(_ state: DeviceState, holds: [String: Date]) {
        device = state.device
        bus = state.bus
        self.state = state.online.map { $0 ? "online" : "offline" } ?? "unknown"
        lastSeen = state.lastSeen.map(EventTime.format)
        offlineReason = state.offlineReason
        counters = state.counters
        condition = state.condition
        screen = state.screen
        onAfterClosingUntil = holds[state.device].map(EventTime.format)
        lastShown = state.lastShown
    }
}

struct DeviceList: ResponseEncodable {
    var devices: [DeviceView]
    /// Per bus, what its line carried that belongs to no device.
    var lines: [LineCounters]
    var clock: ClockState
    /// Where the hall's day stands by the gateway's hours and clock (`open until 12:00`); absent without hours.
    var hallDay: String?
}

extension BasicRequestContext {
    /// A path parameter as the client meant it: window 综合6 or "6 A" arrives percent-encoded, and the router
    /// leaves it so.
    func pathParameter(_ name: String) throws -> String {
        let raw = try parameters.require(name)
        guard let decoded = raw.removingPercentEncoding else {
            throw Problem(.badRequest, "the \(name) '\(raw)' in the path is not valid percent-encoded UTF-8")
        }
        return decoded
    }
}
