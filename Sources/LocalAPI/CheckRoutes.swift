import DeviceGateway
import Foundation
import Hummingbird

/// `POST /v1/check`: the pre-opening check (设备检查) on demand — `Gateway.deviceCheck()`, the one the hall's day
/// runs before opening, with each device's line, the sinks and a real write to the outbox beside it. 200 with
/// `passed` true or false: a failed check is an answer, not an error.
extension LocalAPI {
    func addCheckRoutes(_ v1: RouterGroup<BasicRequestContext>) {
        v1.post("/check") { _, _ in await checkReport() }
    }

    func checkReport() async -> CheckResponse {
        let report = await gateway.deviceCheck()
        var problems = report.problems
        var outboxWritable = true
        var outboxDetail = "takes writes"
        do {
            try await gateway.outbox.recordDeviceStates(await gateway.deviceStates())
        } catch {
            outboxWritable = false
            outboxDetail = "cannot be written: \(error)"
            problems.append("the outbox \(outboxDetail)")
        }
        let printers = gateway.printerConditions()
        let devices = await gateway.deviceStates().map { state -> CheckResponse.Device in
            // The device's own problems, as the check words them (its name first, or "printer NAME:").
            let own = report.problems.filter {
                $0.hasPrefix("\(state.device) ") || $0.hasPrefix("printer \(state.device):")
            }
            var detail = own.joined(separator: "; ")
            if detail.isEmpty, let condition = printers[state.device] { detail = "paper and printer: \(condition)" }
            return CheckResponse.Device(
                device: state.device, bus: state.bus, role: gateway.roles[state.device]?.rawValue,
                state: state.online.map { $0 ? "online" : "offline" } ?? "unknown", passed: own.isEmpty,
                detail: detail.isEmpty ? nil : detail)
        }
        let sinkReports = (try? await gateway.outbox.sinkReports(gateway.config.sinks.map(\.name))) ?? []
        let sinks = sinkReports.map { sink in
            CheckResponse.Sink(
                sink: sink.sink, backlog: sink.backlog, lastSuccessAt: sink.lastSuccessAt.map(EventTime.format),
                lastError: sink.lastError,
                passed: !report.problems.contains { $0.hasPrefix("sink \(sink.sink):") })
        }
        return CheckResponse(
            passed: report.passed && outboxWritable, problems: problems, devicesChecked: report.devicesChecked,
            devicesAnswering: report.devicesAnswering, devices: devices, sinks: sinks,
            outbox: .init(passed: outboxWritable, detail: outboxDetail))
    }
}

/// The answer of `POST /v1/check`.
struct CheckResponse: ResponseEncodable {
    struct Device: Codable {
        var device: String
        var bus: String
        var role: String?
        var state: String
        var passed: Bool
        var detail: String?
    }
    struct Sink: Codable {
        var sink: String
        var backlog: Int
        var lastSuccessAt: String?
        var lastError: String?
        var passed: Bool
    }
    struct OutboxHealth: Codable {
        var passed: Bool
        var detail: String
    }
    var passed: Bool
    var problems: [String]
    var devicesChecked: Int
    var devicesAnswering: Int
    var devices: [Device]
    var sinks: [Sink]
    var outbox: OutboxHealth
}
