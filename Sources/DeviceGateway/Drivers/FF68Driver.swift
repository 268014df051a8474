public import Foundation
public import Protocols

/// The FF 68 caller/evaluator bus: pads and callers speak unprompted and repeat a frame until the
/// host echoes it; the gateway echoes only after the frame's event is committed.
///
/// A repeat of a frame (the echo was lost, or the commit failed) gets the same event id as the first
/// sighting, so the outbox keeps it once whichever of the two got committed.
public struct FF68Driver: LineDriver {
    /// How long an identical frame from the same device counts as a repeat, not a new key press.
    /// Pads lock their keys for a few seconds after a press; callers repeat within a second.
    static let repeatWindow: Duration = .seconds(5)

    enum Member: Sendable {
        case evaluator(KeyEvaluatorProfile)
        case caller(CallerProfile)
    }

    private struct Sighting {
        var frame: FF68Frame
        var eventId: String
        var lastSeen: ContinuousClock.Instant
    }

    public let devices: [DeviceConfig]
    private let members: [Int: (device: DeviceConfig, member: Member)]
    private let hallId: String
    private var sightings: [String: Sighting] = [:]

    init(members: [(device: DeviceConfig, member: Member)], hallId: String) {
        devices = members.map(\.device)
        self.members = Dictionary(members.map { (Int($0.device.address), $0) }, uniquingKeysWith: { first, _ in first })
        self.hallId = hallId
    }

    public func makeDecoder() -> FF68Decoder { FF68Decoder() }

    /// The bus has no poll: devices count as online from their first frame.
    public mutating func pollRequests() -> [LineRequest] { [] }

    public mutating func handle(_ frame: FF68Frame, inFlight request: LineRequest?, at time: Date) -> LineReaction {
        guard let (device, member) = members[Int(frame.address)] else {
            // Not ours (or a host frame heard back on a two-wire bus): no echo, so its owner still gets it.
            return LineReaction()
        }
        let acknowledgement = [frame.acknowledgement.encode()]
        let source = EventSource.device(hall: hallId, device: device.id)
        let subject = device.window.map(EventSource.windowSubject)
        let id = eventId(for: frame, from: device)
        switch member {
        case .evaluator(let profile):
            guard let code = frame.evaluatorKey.map(Int.init) else {
                return LineReaction(from: device.id)
            }
            if profile.noVerdictCodes.contains(code) {
                return LineReaction(repliesAfterCommit: acknowledgement, from: device.id)
            }
            guard let key = profile.scale.key(forCode: code) else {
                let fault = DeviceFault(fault: "unknown-key", detail: "key code \(code) is not in profile \(profile.model); rating skipped")
                return LineReaction(
                    events: [CloudEvent(id: id, source: source, type: HallEventType.deviceFault, time: time, subject: subject,
                                        data: .deviceFault(fault))],
                    repliesAfterCommit: acknowledgement, from: device.id)
            }
            // The pad shows no staff id on this bus; the window says whose service it was.
            let rating = RatingSubmitted(
                window: device.window ?? "", staffId: nil, level: key.level.rawValue, levelLabel: key.level.label,
                key: key.code, keyLabel: key.label, scale: profile.scale.name, deviceCounter: nil)
            return LineReaction(
                events: [CloudEvent(id: id, source: source, type: HallEventType.ratingSubmitted, time: time,
                                    subject: subject, data: .rating(rating))],
                repliesAfterCommit: acknowledgement, from: device.id)
        case .caller(let profile):
            guard frame.evaluatorKey == nil, let last = frame.data.last else { return LineReaction(from: device.id) }
            guard let action = profile.action(forKeys: frame.data) else {
                // A key the queue system gives no meaning (digits, 一米线): echoed so the caller stops repeating.
                return LineReaction(repliesAfterCommit: acknowledgement, from: device.id)
            }
            let key = CallerKeyPressed(window: device.window ?? "", action: action, key: Int(last))
            return LineReaction(
                events: [CloudEvent(id: id, source: source, type: HallEventType.callerKeyPressed, time: time,
                                    subject: subject, data: .callerKey(key))],
                repliesAfterCommit: acknowledgement, from: device.id)
        }
    }

    public func requests(for command: HallCommand, to device: DeviceConfig) throws(GatewayError) -> [LineRequest] {
        guard case .caller = members[device.address]?.member else {
            throw GatewayError(.commandRejected, "\(device.id) is an evaluator pad: it takes no \(command.name) command")
        }
        let address = UInt8(truncatingIfNeeded: device.address)
        let display: FF68CallerDisplay
        switch command {
        case .call(let ticket, _), .recall(let ticket, _):
            guard let digits = FF68CallerDisplay(ticket: ticket) else {
                throw GatewayError(.commandRejected, "\(device.id): the caller's LED shows three digits; '\(ticket)' does not end in three")
            }
            display = digits
        case .clear:
            display = FF68CallerDisplay(waiting: [FF68CallerDisplay.blank, FF68CallerDisplay.blank, FF68CallerDisplay.blank],
                                        ticket: [FF68CallerDisplay.blank, FF68CallerDisplay.blank, FF68CallerDisplay.blank])
        case .pause, .showText, .printTicket:
            throw GatewayError(.commandRejected, "\(device.id): a caller's LED shows digits only; no \(command.name)")
        }
        var requests = [LineRequest(device: device.id, bytes: FF68Frame.callerDisplay(address: address, display).encode(),
                                    expectsAnswer: false, purpose: command.name)]
        if case .recall = command {
            requests.append(LineRequest(device: device.id, bytes: FF68Frame.beep(address: address).encode(),
                                        expectsAnswer: false, purpose: "beep"))
        }
        return requests
    }

    /// The same id for a repeat of the frame last seen from this device, a new one otherwise.
    private mutating func eventId(for frame: FF68Frame, from device: DeviceConfig) -> String {
        let now = ContinuousClock.now
        if var sighting = sightings[device.id], sighting.frame == frame, now - sighting.lastSeen < Self.repeatWindow {
            sighting.lastSeen = now
            sightings[device.id] = sighting
            return sighting.eventId
        }
        let id = "ff68-\(UUID().uuidString.lowercased())"
        sightings[device.id] = Sighting(frame: frame, eventId: id, lastSeen: now)
        return id
    }
}
