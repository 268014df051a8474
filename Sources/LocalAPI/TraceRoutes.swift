import DeviceGateway
import Foundation
import Hummingbird
import NIOCore
import ServiceLifecycle

/// `GET /v1/buses/{bus}/trace?seconds=N`: the bytes on one bus's line as they pass, for `gatewayd trace`; one JSON
/// line per write or read after a header line (`{"bus":…,"line":…,"sent":STREAM,"received":STREAM}`, the streams
/// as `gatewayd decode` names them, on an FF 68 bus `"ff68Roles":{"3":"evaluator","33":"caller"}`, and while the
/// line is down `"down":REASON`), then `{"unix":1733043725.123456,"direction":"out","hex":"01 03 00 00"}`, and an
/// empty line each second so a client gone is noticed. A response lasts at most 30 s (`seconds`, 1 to 30) and ends
/// at the gateway's shutdown; the CLI asks again to follow longer. In the OpenAPI document, but left out of the
/// contract test: a stream of this kind is no request-response it can check in bounded time.
extension LocalAPI {
    func addTraceRoutes(_ v1: RouterGroup<BasicRequestContext>) {
        v1.get("/buses/:bus/trace") { request, context in try trace(request, context) }
    }

    private func trace(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        let bus = try context.pathParameter("bus")
        guard gateway.config.buses.contains(where: { $0.id == bus }) else {
            throw Problem(.notFound, "no bus \(CommandCenter.quoted(bus)) in this gateway's configuration")
        }
        guard let seconds = request.uri.queryParameters["seconds"].map({ Int(String($0)) }) ?? 30,
            (1...30).contains(seconds)
        else { throw Problem(.badRequest, "seconds must be an integer from 1 to 30") }
        let (lines, continuation) = AsyncStream.makeStream(
            of: ByteBuffer.self, bufferingPolicy: .bufferingNewest(20_000))
        // The first line says how to read the rest: the bus, its line and its streams.
        let config = gateway.config
        let library = ProfileLibrary(directory: config.profilesDirectory)
        let streams = WireInspector.streams(bus: bus, config: config, library: library)
        let line: String =
            switch config.buses.first(where: { $0.id == bus })?.transport {
            case .modbusRTU(let serial), .serial(let serial): serial.port
            case .modbusTCP(let host, let port): "\(host):\(port)"
            case nil: ""
            }
        let roles = WireInspector.ff68Roles(bus: bus, config: config, library: library)
        let header = TraceHeader(
            bus: bus, line: line, sent: streams?.sent.rawValue ?? "", received: streams?.received.rawValue ?? "",
            // On an FF 68 bus a host's frame and a device's can be the same bytes: who sits at each address decides.
            ff68Roles: roles.isEmpty ? nil : Dictionary(uniqueKeysWithValues: roles.map { (String($0.key), $0.value.rawValue) }),
            // A line that is down passes nothing: said at once, not left to an empty trace.
            down: gateway.lineDown(bus: bus))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        continuation.yield(ByteBuffer(bytes: (try encoder.encode(header)) + Data("\n".utf8)))
        let token = BusTap.shared.subscribe(outbox: gateway.outbox, bus: bus) { record in
            let hex = record.bytes.map { String(format: "%02X", $0) }.joined(separator: " ")
            let unix = String(format: "%.6f", record.time.timeIntervalSince1970)
            continuation.yield(
                ByteBuffer(
                    string: #"{"unix":\#(unix),"direction":"\#(record.direction.rawValue)","hex":"\#(hex)"}"# + "\n"))
        }
        let ticker = Task {
            await withGracefulShutdownHandler {
                for _ in 0..<seconds {
                    do { try await Task.sleep(for: .seconds(1)) } catch { break }
                    continuation.yield(ByteBuffer(string: "\n"))
                }
            } onGracefulShutdown: {
                continuation.finish()
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in
            BusTap.shared.unsubscribe(token)
            ticker.cancel()
        }
        return Response(
            status: .ok, headers: [.contentType: "application/x-ndjson"],
            body: ResponseBody(asyncSequence: lines))
    }
}

/// The first line of a trace answer.
struct TraceHeader: Encodable {
    var bus: String
    var line: String
    var sent: String
    var received: String
    var ff68Roles: [String: String]?
    var down: String?
}
