public import Foundation
public import Protocols

/// The FF 68 caller/evaluator bus: pads and callers speak unprompted and repeat a frame until the
/// host echoes it; the gateway echoes only after the frame's event is committed.
///
/// A repeat of a frame (the echo was lost, or the commit failed) gets the same event id as the first
/// sighting, so the outbox keeps it once whichever of the two got committed. The sighting is committed as
/// the device's cursor (frame hash, first-seen time), so a repeat heard after a restart is recognised too.
public struct FF68Driver: BusDriver {
    /// How long an identical frame from the same device counts as a repeat, not a new key press: pads lock
    /// their keys for seconds after a press, while staff may press 呼叫 twice in two seconds on purpose.
    static func repeatWindow(_ member: Member) -> Duration {
        switch member {
        case .evaluator: .seconds(5)
        case .caller: .milliseconds(1500)
        }
    }

    enum Member: Sendable {
        case evaluator(KeyEvaluatorProfile)
        case caller(CallerProfile)
    }

    private struct Sighting {
        /// FNV-1a of the frame's bytes (the cursor's `bootId`).
        var frameHash: UInt32
        /// Milliseconds since 1970 of the first sighting (the cursor's `consumed`; part of the event id).
        var firstSeen: Int64
        /// When it was last heard; nil for a sighting restored after a restart.
        var lastSeen: Date?
        /// When it was last acknowledged, and how many times.
        var acknowledgedAt: Date?
        var acknowledgements = 0
    }

    /// How long after the last acknowledgement of a frame (from when its repeat was read) a repeat of it is
    /// acknowledged again: 200 ms, doubling with each acknowledgement up to 1.6 s. On a two-wire line a caller's
    /// acknowledgement comes back equal to its frame; were the echo filter to miss it (an echo later than its window),
    /// acknowledging every copy would feed itself and flood the half-duplex line. Shorter than a pad's repeat interval
    /// (300 ms in `MockFF68Bus`), so a first lost acknowledgement costs one repeat, a fourth about five.
    static func acknowledgementSpacing(after acknowledgements: Int) -> Duration {
        .milliseconds(200 << min(max(acknowledgements - 1, 0), 3))
    }

    public let devices: [DeviceConfig]
    private let members: [Int: (device: DeviceConfig, member: Member)]
    private let hallId: String
    private var sightings: [String: Sighting] = [:]
    /// The staff member at each pad's window, as the queue system last set it: the pad shows none on this bus.
    private var staff: [String: String] = [:]
    /// The ticket each pad was last asked to rate: its next verdict (or no verdict) takes it.
    private var ratingTickets: [String: String] = [:]

    init(members: [(device: DeviceConfig, member: Member)], hallId: String) {
        devices = members.map(\.device)
        self.members = Dictionary(members.map { (Int($0.device.address), $0) }, uniquingKeysWith: { first, _ in first })
        self.hallId = hallId
    }

    public func makeDecoder() -> FF68Decoder { FF68Decoder() }

    public mutating func restore(staff kept: [String: String]) {
        for device in devices { if let id = kept[device.id] { staff[device.id] = id } }
    }

    /// The bus has no poll: devices count as online from their first frame.
    public mutating func pollRequests(for device: DeviceConfig) -> [LineRequest] { [] }

    public mutating func handle(_ frame: FF68Frame, inFlight request: LineRequest?, at time: Date) -> LineReaction {
        guard let (device, member) = members[Int(frame.address)] else {
            // Not ours (or a host frame heard back on a two-wire bus): no echo, so its owner still gets it.
            return LineReaction()
        }
        // A host frame heard back on a two-wire line is neither a sighting (the key's repeat would get a new event id,
        // a second event) nor a sign of the device.
        if Self.isHostFrame(frame, to: member) { return LineReaction() }
        let source = EventSource.device(hall: hallId, device: device.id)
        let subject = device.window.map(EventSource.windowSubject)
        switch member {
        case .evaluator(let profile):
            guard let code = frame.evaluatorKey.map(Int.init) else {
                return LineReaction(from: device.id)
            }
            let (id, cursor) = sighting(of: frame, from: device, member: member, at: time)
            let acknowledgement = acknowledgement(of: frame, from: device, at: time)
            if profile.noVerdictCodes.contains(code) {
                // The citizen gave no verdict on the ticket asked for: the next rating is not that ticket's.
                ratingTickets[device.id] = nil
                return LineReaction(afterCommit: acknowledgement, from: device.id)
            }
            guard let key = profile.scale.key(forCode: code) else {
                let fault = DeviceFault(fault: "unknown-key", detail: "key code \(code) is not in profile \(profile.model); rating skipped")
                return LineReaction(
                    events: [CloudEvent(id: id, source: source, type: HallEventType.deviceFault, time: time, subject: subject,
                                        data: .deviceFault(fault))],
                    cursors: [cursor], afterCommit: acknowledgement, from: device.id)
            }
            // The pad shows no staff id on this bus: the staff and ticket are what the queue system last set.
            let rating = RatingSubmitted(
                window: device.window ?? "", staffId: staff[device.id], level: key.level.rawValue,
                levelLabel: key.level.label, key: key.code, keyLabel: key.label, scale: profile.scale.name,
                deviceCounter: nil, ticket: ratingTickets.removeValue(forKey: device.id))
            return LineReaction(
                events: [CloudEvent(id: id, source: source, type: HallEventType.ratingSubmitted, time: time,
                                    subject: subject, data: .rating(rating))],
                cursors: [cursor], afterCommit: acknowledgement, from: device.id)
        case .caller(let profile):
            guard frame.evaluatorKey == nil, let last = frame.data.last else { return LineReaction(from: device.id) }
            let (id, cursor) = sighting(of: frame, from: device, member: member, at: time)
            let acknowledgement = acknowledgement(of: frame, from: device, at: time)
            guard let action = profile.action(forKeys: frame.data) else {
                // A key the queue system gives no meaning (digits, 一米线): echoed so the caller stops repeating.
                return LineReaction(afterCommit: acknowledgement, from: device.id)
            }
            let key = CallerKeyPressed(window: device.window ?? "", action: action, key: Int(last))
            return LineReaction(
                events: [CloudEvent(id: id, source: source, type: HallEventType.callerKeyPressed, time: time,
                                    subject: subject, data: .callerKey(key))],
                cursors: [cursor], afterCommit: acknowledgement, from: device.id)
        }
    }

    public mutating func requests(for command: HallCommand, to device: DeviceConfig) throws(GatewayError) -> [LineRequest] {
        let address = UInt8(truncatingIfNeeded: device.address)
        guard case .caller = members[device.address]?.member else {
            switch command {
            case .setStaff(let id):
                // The bus has no staff command (frmMain.cs sends none): the gateway puts the id on the pad's ratings.
                staff[device.id] = id.isEmpty ? nil : id
                return []
            case .requestRating(let ticket):
                ratingTickets[device.id] = ticket
                return [LineRequest(device: device.id, bytes: FF68Frame.startEvaluation(address: address).encode(),
                                    expectsAnswer: false, purpose: command.name)]
            default:
                throw GatewayError(.commandRejected, "\(device.id) is an evaluator pad: it takes no \(command.name) command")
            }
        }
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
        case .pause, .showText, .printTicket, .brightness, .power, .setStaff, .requestRating:
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

    public mutating func restore(_ cursors: [DeviceCursor]) {
        for cursor in cursors where devices.contains(where: { $0.id == cursor.device }) {
            sightings[cursor.device] = Sighting(frameHash: cursor.bootId, firstSeen: cursor.consumed, lastSeen: nil)
        }
    }

    /// The event id of `frame`: the id of the last sighting when this is a repeat of it, a new one otherwise;
    /// and the cursor that remembers the sighting.
    private mutating func sighting(of frame: FF68Frame, from device: DeviceConfig, member: Member, at time: Date)
        -> (id: String, cursor: DeviceCursor)
    {
        let hash = Self.fnv1a(frame.encode())
        let nowMillis = Int64((time.timeIntervalSince1970 * 1000).rounded())
        let window = Self.repeatWindow(member)
        var current: Sighting
        // After a restart only the first sighting is known: the window runs from it.
        if let last = sightings[device.id], last.frameHash == hash,
           last.lastSeen.map({ time.timeIntervalSince($0) < Double(window / .milliseconds(1)) / 1000 }) ?? (nowMillis - last.firstSeen < Int64(window / .milliseconds(1))) {
            current = last
            current.lastSeen = time
        } else {
            // Strictly after the previous sighting, so two presses in one millisecond still get two ids.
            let firstSeen = max(nowMillis, (sightings[device.id]?.firstSeen ?? 0) + 1)
            current = Sighting(frameHash: hash, firstSeen: firstSeen, lastSeen: time)
        }
        sightings[device.id] = current
        // Its time as events write it, not a 13-digit millisecond count: PII scanners find a mobile number in one
        // (1765012345678 holds 17650123456).
        let firstSeen = EventTime.format(Date(timeIntervalSince1970: Double(current.firstSeen) / 1000))
        return ("ff68-\(device.id)-\(firstSeen)",
                DeviceCursor(device: device.id, bootId: current.frameHash, consumed: current.firstSeen))
    }

    /// Frames only the host sends: to an evaluator FUNC 01 (acknowledgement, start of an evaluation) and 02 (service
    /// level); to a caller a display (FUNC 02, six codes; a caller's key frames carry one or two) and the beep (FUNC 03,
    /// no data).
    static func isHostFrame(_ frame: FF68Frame, to member: Member) -> Bool {
        switch member {
        case .evaluator: frame.function == FF68Function.evaluatorCommand || frame.function == FF68Function.display
        case .caller: frame.callerDisplay != nil || (frame.function == FF68Function.beep && frame.data.isEmpty)
        }
    }

    /// The acknowledgement of the frame just sighted, or none while a repeat of it is within the spacing.
    private mutating func acknowledgement(of frame: FF68Frame, from device: DeviceConfig, at time: Date) -> [LineRequest] {
        guard var current = sightings[device.id] else { return [] }
        // A clock set back (a negative interval) must not hold acknowledgements back for as long as the step.
        if let last = current.acknowledgedAt, case let elapsed = time.timeIntervalSince(last), elapsed >= 0,
           elapsed < Double(Self.acknowledgementSpacing(after: current.acknowledgements) / .milliseconds(1)) / 1000 {
            return []
        }
        current.acknowledgedAt = time
        current.acknowledgements += 1
        sightings[device.id] = current
        return [LineRequest(device: device.id, bytes: frame.acknowledgement.encode(), expectsAnswer: false, purpose: "acknowledge")]
    }

    /// FNV-1a, 32 bits: a frame's fingerprint small enough for the cursor.
    static func fnv1a(_ bytes: [UInt8]) -> UInt32 {
        bytes.reduce(0x811C_9DC5) { ($0 ^ UInt32($1)) &* 0x0100_0193 }
    }
}
