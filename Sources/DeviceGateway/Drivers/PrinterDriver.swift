public import Foundation
public import Protocols

/// A ticket printer on its own serial line: status asked with DLE EOT each poll (and, where the profile
/// turns it on, reported unprompted by automatic status back); tickets built from `HallCommand.Ticket`.
///
/// An event goes out only when the printer's condition changes, not on every poll.
public struct PrinterDriver: BusDriver {
    public let devices: [DeviceConfig]
    private let device: DeviceConfig
    private let profile: PrinterProfile
    private let source: String
    /// The latest condition per aspect (the four DLE EOT requests); an automatic status covers them all.
    private var aspects: [PrinterStatusRequest: PrinterCondition] = [:]
    private var reported: PrinterCondition?
    private var automaticStatusRequested = false

    init(device: DeviceConfig, profile: PrinterProfile, hallId: String) {
        devices = [device]
        self.device = device
        self.profile = profile
        source = EventSource.device(hall: hallId, device: device.id)
    }

    public func makeDecoder() -> PrinterStatusDecoder { PrinterStatusDecoder() }

    /// A reopened line may lead to a power-cycled printer: turn automatic status back on again.
    public mutating func lineOpened() { automaticStatusRequested = false }

    public mutating func pollRequests(for device: DeviceConfig) -> [LineRequest] {
        var requests: [LineRequest] = []
        if profile.automaticStatusBack && !automaticStatusRequested {
            // Once per start; the printer answers with its current status straight away.
            automaticStatusRequested = true
            requests.append(LineRequest(device: device.id, bytes: EscPos.enableAutomaticStatusBack(.hall),
                                        expectsAnswer: false, purpose: "automatic-status-back"))
        }
        for aspect in profile.realTimeStatus.compactMap({ PrinterStatusRequest(rawValue: UInt8($0)) }) {
            requests.append(LineRequest(device: device.id, bytes: EscPos.statusRequest(aspect), expectsAnswer: true,
                                        purpose: Self.purpose(aspect)))
        }
        return requests
    }

    public mutating func handle(_ frame: PrinterStatusFrame, inFlight request: LineRequest?, at time: Date) -> LineReaction {
        var answers = false
        switch frame {
        case .realTime(let byte):
            guard let request, let aspect = PrinterStatusRequest.allCases.first(where: { Self.purpose($0) == request.purpose }),
                  let condition = PrinterCondition(realTimeReply: byte, to: aspect)
            else {
                // A status byte nobody asked for: without its question it means nothing.
                return LineReaction(from: device.id)
            }
            aspects[aspect] = condition
            answers = true
            // Judge the printer on a whole round of answers: half a round (offline, cause not yet asked) is not a state.
            guard aspect.rawValue == profile.realTimeStatus.last.map(UInt8.init) else {
                return LineReaction(from: device.id, answersRequest: true)
            }
        case .automaticStatus(let status):
            // One report covers every aspect; file each flag where its DLE EOT request would put it.
            let condition = PrinterCondition(automaticStatus: status)
            aspects[.printer] = condition.intersection(.offline)
            aspects[.offlineCause] = condition.intersection([.coverOpen, .error])
            aspects[.errorCause] = condition.intersection([.cutterError, .unrecoverableError, .autoRecoverableError])
            aspects[.paperSensor] = condition.intersection([.paperNearEnd, .paperOut])
        }
        let condition = aspects.values.reduce(PrinterCondition()) { $0.union($1) }
        guard condition != reported else { return LineReaction(from: device.id, answersRequest: answers) }
        reported = condition
        let status = PrinterStatusChanged(state: Self.name(of: condition.state), conditions: Self.names(of: condition))
        let event = CloudEvent(id: UUID().uuidString.lowercased(), source: source, type: HallEventType.printerStatusChanged,
                               time: time, subject: nil, data: .printerStatus(status))
        return LineReaction(events: [event], from: device.id, answersRequest: answers)
    }

    public func requests(for command: HallCommand, to device: DeviceConfig) throws(GatewayError) -> [LineRequest] {
        guard case .printTicket(let ticket) = command else {
            throw GatewayError(.commandRejected, "\(device.id) is a ticket printer: it takes no \(command.name) command")
        }
        if let condition = reported, condition.state != .online && condition.state != .paperNearEnd {
            throw GatewayError(.commandRejected, "\(device.id) cannot print now: \(Self.name(of: condition.state))")
        }
        let bytes = Ticket(
            number: ticket.number, serviceName: ticket.service, waitingAhead: ticket.waitingAhead,
            issuedAt: ticket.issuedAt, qrPayload: profile.qrCode ? ticket.qrPayload : nil,
            numberScale: profile.numberSize, cut: profile.partialCut ? .partial : .full
        ).encode()
        // The paper sensor's answer after the ticket says the printer took it and still has paper.
        return [
            LineRequest(device: device.id, bytes: bytes, expectsAnswer: false, purpose: command.name),
            LineRequest(device: device.id, bytes: EscPos.statusRequest(.paperSensor), expectsAnswer: true,
                        purpose: Self.purpose(.paperSensor)),
        ]
    }

    private static func purpose(_ aspect: PrinterStatusRequest) -> String { "status-\(aspect.rawValue)" }

    /// Whether a printer whose condition is `name` (as events and `GET /v1/devices` spell it) prints: near the end of
    /// its roll it still does. The one rule for the check, `status`, tickets and the log's level.
    public static func prints(_ name: String) -> Bool { name == "online" || name == "paper-near-end" }

    /// State names as events spell them.
    static func name(of state: PrinterState) -> String {
        switch state {
        case .cutterError: "cutter-error"
        case .paperOut: "paper-out"
        case .coverOpen: "cover-open"
        case .offline: "offline"
        case .paperNearEnd: "paper-near-end"
        case .online: "online"
        }
    }

    static func names(of condition: PrinterCondition) -> [String] {
        let named: [(PrinterCondition, String)] = [
            (.offline, "offline"), (.coverOpen, "cover-open"), (.paperNearEnd, "paper-near-end"), (.paperOut, "paper-out"),
            (.cutterError, "cutter-error"), (.unrecoverableError, "unrecoverable-error"),
            (.autoRecoverableError, "auto-recoverable-error"), (.error, "error"),
        ]
        return named.filter { condition.contains($0.0) }.map(\.1)
    }
}
