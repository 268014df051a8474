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

    init(_ status: HTTPResponse.Status, _ detail: String) {
        self.status = status
        self.detail = detail
    }

    var headers: HTTPFields {
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer realm=\"hall-gateway\"" }
        return headers
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let body: [String: Any] = [
            "type": "about:blank", "title": status.reasonPhrase, "status": status.code, "detail": detail,
            "instance": request.uri.path,
        ]
        let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes])
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Turns every error into a problem document: the router's own 404 and 405, a body that does not decode, and
/// anything unexpected (a 500 that says what, never a stack).
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
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
            let detail = switch error.status {
            case .notFound: "no such endpoint: \(request.method) \(request.uri.path)"
            case .methodNotAllowed: "\(request.method) is not allowed on \(request.uri.path)"
            default: "\(error)"
            }
            throw Problem(error.status, detail)
        } catch {
            context.logger.error("api: \(request.method) \(request.uri.path) failed: \(error)")
            throw Problem(.internalServerError, "the gateway failed to answer: \(error)")
        }
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

/// Requires `Authorization: Bearer <token>`; compares in constant time.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw Problem(.unauthorized, "send the gateway's API token as 'Authorization: Bearer <token>'")
        }
        let given = Array(header.dropFirst("Bearer ".count).utf8)
        let expected = Array(token.utf8)
        var difference = given.count ^ expected.count
        for index in expected.indices { difference |= Int(expected[index] ^ (index < given.count ? given[index] : 0)) }
        guard difference == 0 else { throw Problem(.unauthorized, "the API token is wrong") }
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
}

struct Status: ResponseEncodable {
    var status: String
}

struct TicketBody: Decodable {
    var ticket: String
}

struct TextBody: Decodable {
    var text: String
}

struct TicketRequest: Decodable {
    var number: String?
    var prefix: String?
    var service: String
    var waitingAhead: Int?
    var printer: String?
}

struct TerminalRating: Decodable {
    var counter: Int64
    var key: Int?
    var level: Int?
    var staff: String?
    var ticket: String?
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

    init(_ state: DeviceState) {
        device = state.device
        bus = state.bus
        self.state = state.online.map { $0 ? "online" : "offline" } ?? "unknown"
        lastSeen = state.lastSeen.map(EventTime.format)
        offlineReason = state.offlineReason
        counters = state.counters
    }
}

struct DeviceList: ResponseEncodable {
    var devices: [DeviceView]
}
