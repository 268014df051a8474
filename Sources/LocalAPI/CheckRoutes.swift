import DeviceGateway
import Foundation
public import Hummingbird

/// `POST /v1/check`: the pre-opening check (设备检查) on demand — `Gateway.deviceCheck()`, the one the hall's day
/// runs before opening, with each device's line, the sinks and a real write to the outbox beside it. 200 with
/// `passed` true or false: a failed check is an answer, not an error. A verdict the central store has not had yet is
/// committed as an event.
extension LocalAPI {
    func addCheckRoutes(_ v1: RouterGroup<BasicRequestContext>) {
        v1.post("/check") { request, context in
            try await LocalAPI.noFields(request, context)
            return await checkReport()
        }
    }

    func checkReport() async -> CheckResponse {
        // A failing sink is tried now, so the check says whether it delivers, not whether it did at its last attempt.
        await gateway.retryFailingSinksNow(waitingUpTo: .seconds(5))
        // One reading of the devices for the check and the list beside it.
        let states = await gateway.deviceStates()
        // And one of the sinks: the table and the problems say the same backlog (from a trial: two counts).
        let sinkReading: Result<[SinkReport], any Error>
        do {
            sinkReading = .success(try await gateway.outbox.sinkReports(gateway.config.sinks.map(\.name)))
        } catch {
            sinkReading = .failure(error)
        }
        var report = await gateway.deviceCheck(of: states, sinks: sinkReading)
        var outboxWritable = true
        var outboxDetail = "takes writes"
        do {
            try await gateway.outbox.recordDeviceStates(states, clock: gateway.hallClock)
        } catch {
            outboxWritable = false
            outboxDetail = "cannot be written: \(error)"
            // Part of the verdict the sinks are told, once the outbox takes the event again.
            report.problems.append("the outbox \(outboxDetail)")
            report.passed = false
        }
        let printers = gateway.printerConditions()
        let devices = states.map { state -> CheckResponse.Device in
            // The device's own problems, as the check words them (its name first, or "printer NAME:").
            let own = report.problems.filter {
                $0.hasPrefix("\(state.device) ") || $0.hasPrefix("printer \(state.device):")
            }
            let unconfirmed = report.warnings.filter { $0.hasPrefix("\(state.device) ") }
            var detail = (own + unconfirmed).joined(separator: "; ")
            if detail.isEmpty, let condition = printers[state.device] { detail = "paper and printer: \(condition)" }
            return CheckResponse.Device(
                device: state.device, bus: state.bus, role: gateway.roles[state.device]?.rawValue,
                state: state.online.map { $0 ? "online" : "offline" } ?? "unknown", passed: own.isEmpty,
                detail: detail.isEmpty ? nil : detail)
        }
        let reported = await gateway.reportCheckOnDemand(report)
        let sinks = ((try? sinkReading.get()) ?? []).map { sink in
            CheckResponse.Sink(
                sink: sink.sink, backlog: sink.backlog, lastSuccessAt: sink.lastSuccessAt.map(EventTime.format),
                lastError: sink.lastError,
                passed: !report.problems.contains { $0.hasPrefix("sink \(sink.sink):") })
        }
        return CheckResponse(
            passed: report.passed, problems: report.problems, warnings: report.warnings,
            devicesChecked: report.devicesChecked,
            devicesAnswering: report.devicesAnswering, devices: devices, sinks: sinks,
            outbox: .init(passed: outboxWritable, detail: outboxDetail), reported: reported?.id,
            reportWaiting: reported?.waiting == true ? true : nil)
    }
}

/// The answer of `POST /v1/check`, as the route writes it and the CLI reads it.
public struct CheckResponse: ResponseEncodable, Decodable {
    /// One device: `passed` false for a problem; true with a `detail` when it could not be confirmed (a warning).
    public struct Device: Codable, Sendable {
        public var device: String
        public var bus: String
        public var role: String?
        /// online, offline or unknown (not heard since the gateway started).
        public var state: String
        public var passed: Bool
        public var detail: String?
    }
    /// One sink's backlog and health.
    public struct Sink: Codable, Sendable {
        public var sink: String
        public var backlog: Int
        public var lastSuccessAt: String?
        public var lastError: String?
        public var passed: Bool
    }
    /// Whether the outbox takes writes.
    public struct OutboxHealth: Codable, Sendable {
        public var passed: Bool
        public var detail: String
    }
    public var passed: Bool
    public var problems: [String]
    /// Devices the check could not confirm; they do not fail it.
    public var warnings: [String]
    public var devicesChecked: Int
    public var devicesAnswering: Int
    public var devices: [Device]
    public var sinks: [Sink]
    public var outbox: OutboxHealth
    /// The id of the `hall.gateway.device_check` event this check was committed as; absent when the central store
    /// was told its verdict (what fails, or that all passed) already.
    public var reported: String?
    /// True when that event waits in memory because the outbox takes no write (a full disk): the sinks get it once
    /// the outbox takes writes again.
    public var reportWaiting: Bool?
}
