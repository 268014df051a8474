public import Foundation
public import Protocols

/// A QSystem RS-485 line: operator boxes send key frames unprompted, number boards take display frames.
///
/// The protocol has no checksum, no poll and no acknowledgement: a box counts as online from its first
/// key, and a key press is committed as it arrives. The box's lamp follows the commands of the queue system.
public struct QSystemDriver: BusDriver {
    enum Member: Sendable {
        case box(CallerProfile)
        case board(NumberBoardProfile)
    }

    /// How long after a box's lamp frame a key frame equal to it is that frame heard back: the red lamp, sent on a
    /// pause, is byte for byte the `call` key, so on a two-wire line whose echo got past the filter a pause would call
    /// the next citizen. Timed from the write to the read, so a read held up by a slow commit still falls inside. A
    /// real `call` pressed that soon after a pause is lost: the operator presses it again.
    static let ownFrameWindow: TimeInterval = 1

    public let devices: [DeviceConfig]
    private let members: [Int: (device: DeviceConfig, member: Member)]
    private let hallId: String
    private let boxes: Set<String>
    /// The lamp frame last written to each box, and when.
    private var lampWritten: [String: (bytes: [UInt8], at: Date)] = [:]

    init(members: [(device: DeviceConfig, member: Member)], hallId: String) {
        devices = members.map(\.device)
        boxes = Set(members.compactMap { if case .box = $0.member { $0.device.id } else { nil } })
        self.members = Dictionary(members.map { ($0.device.address, $0) }, uniquingKeysWith: { first, _ in first })
        self.hallId = hallId
    }

    public func makeDecoder() -> QSystemBoxDecoder { QSystemBoxDecoder() }

    public mutating func pollRequests(for device: DeviceConfig) -> [LineRequest] { [] }

    public mutating func handle(_ frame: QSystemKeyFrame, inFlight request: LineRequest?, at time: Date) -> LineReaction {
        guard let (device, member) = members[Int(frame.address)], case .box(let profile) = member else {
            return LineReaction()
        }
        if let lamp = lampWritten[device.id], lamp.bytes == frame.encode(),
           case let elapsed = time.timeIntervalSince(lamp.at), elapsed >= 0, elapsed < Self.ownFrameWindow {
            return LineReaction()
        }
        guard let action = profile.action(forKeys: [frame.key.rawValue]) else { return LineReaction(from: device.id) }
        let key = CallerKeyPressed(window: device.window ?? "", action: action, key: Int(frame.key.rawValue))
        return LineReaction(
            events: [CloudEvent(id: "qsystem-\(UUID().uuidString.lowercased())",
                                source: EventSource.device(hall: hallId, device: device.id),
                                type: HallEventType.callerKeyPressed, time: time,
                                subject: device.window.map(EventSource.windowSubject), data: .callerKey(key))],
            from: device.id)
    }

    public mutating func wrote(_ request: LineRequest, at time: Date) {
        if boxes.contains(request.device) { lampWritten[request.device] = (request.bytes, time) }
    }

    public func requests(for command: HallCommand, to device: DeviceConfig) throws(GatewayError) -> [LineRequest] {
        let address = UInt8(truncatingIfNeeded: device.address)
        switch members[device.address]?.member {
        case .board:
            let frame: QSystemDisplayFrame?
            switch command {
            case .call(let ticket, _): frame = QSystemDisplayFrame(address: address, mode: .blinkContinuously, text: ticket)
            case .recall(let ticket, _): frame = QSystemDisplayFrame(address: address, mode: .blink(times: 3) ?? .blink, text: ticket)
            case .clear, .pause: frame = .blank(address: address)
            case .showText(let text): frame = QSystemDisplayFrame(address: address, mode: .steady, text: text)
            case .printTicket: throw GatewayError(.commandRejected, "\(device.id) is a number board: it prints no tickets")
            case .brightness, .power:
                // BelIndicatorBoardRS frames carry a mode and three characters, nothing else.
                throw GatewayError(.commandRejected, "\(device.id): a QSystem number board has no \(command.name) command "
                                   + "(its frames carry a blink mode and three characters); clear blanks it")
            case .setStaff, .requestRating:
                throw GatewayError(.commandRejected, "\(device.id) is a number board, not an evaluator pad: no \(command.name)")
            }
            guard let frame else {
                throw GatewayError(.commandRejected, "\(device.id): the board shows three ASCII characters; '\(command.displayText ?? "")' has none to show")
            }
            return [LineRequest(device: device.id, bytes: frame.encode(), expectsAnswer: false, purpose: command.name)]
        case .box:
            // The box's lamp: green blinking while a customer is invited, red while the window is paused.
            let signal: QSystemBoxSignal
            switch command {
            case .call, .recall: signal = .beepGreenBlinkSlow
            case .pause: signal = .red
            case .clear: signal = .off
            case .showText, .printTicket, .brightness, .power, .setStaff, .requestRating:
                throw GatewayError(.commandRejected, "\(device.id) is an operator box: it has a lamp, no display; no \(command.name)")
            }
            return [LineRequest(device: device.id, bytes: QSystemSignalFrame(address: address, signal: signal).encode(),
                                expectsAnswer: false, purpose: command.name)]
        case nil:
            throw GatewayError(.deviceError, "no device \(device.id) at address \(device.address)")
        }
    }
}
