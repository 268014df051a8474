public import Foundation
import Synchronization
import Logging

/// What the gateway believes about one device.
public struct DeviceState: Sendable, Equatable {
    public var device: String
    public var bus: String
    /// nil until the device was first heard from (or first missed often enough) in this run.
    public var online: Bool?
    /// When it last answered or spoke.
    public var lastSeen: Date?
    /// Why it is offline, while it is.
    public var offlineReason: String?
    /// Offline because its bus was, not by its own silence: a command to it is tried (the bus refuses it at once
    /// while it is still down).
    public var offlineByLine: Bool
    /// Offline though it answers: it says it is not in service, refuses its poll, or is another model.
    public var answersWhileOffline = false
    /// What passed on the wire with it.
    public var counters = DeviceCounters()
    /// What a device that answers says of itself when it cannot do its work (a printer's paper-out, cover-open);
    /// nil when it can, or nothing is known.
    public var condition: String?
    /// Whether a board's screen is lit, as its last read said; nil when it has none or its reads do not tell.
    public var screenOn: Bool?
    /// `screenOn` as the API and `status --json` spell it: `on`, `off`, or nil.
    public var screen: String? { screenOn.map { $0 ? "on" : "off" } }
    /// What a board was last sent to show; nil for other devices and a board sent nothing yet.
    public var lastShown: ShownOnBoard?

    /// A device's state.
    public init(device: String, bus: String, online: Bool?, lastSeen: Date?, offlineReason: String? = nil,
                offlineByLine: Bool = false, counters: DeviceCounters = DeviceCounters()) {
        self.device = device
        self.bus = bus
        self.online = online
        self.lastSeen = lastSeen
        self.offlineReason = offlineReason
        self.offlineByLine = offlineByLine
        self.counters = counters
    }
}

/// What a board was last sent to show (a call, a text, a clear), as `status` and `GET /v1/devices` say it and the
/// outbox keeps it through a restart: a board back from a power cut is shown it again.
public struct ShownOnBoard: Sendable, Equatable, Codable {
    /// `call`, `recall`, `pause`, `show-text` or `clear`.
    public var command: String
    public var ticket: String?
    public var window: String?
    /// The words on the board: a call, recall or pause as the board's templates word them, a text of the hall day's
    /// own (the welcome, a break's); nil after a clear, and for a text of the queue system's or a technician's, which
    /// may name a citizen: not even a fingerprint (a name is found again from one by trying the common ones).
    public var text: String?
    /// When it was sent, by the hall's clock.
    public var at: Date
    /// A later command to the board was not sent, the board offline: what it shows now is not known (a power cut may
    /// have blanked it), and this is not shown on it again.
    public var laterCommandNotSent = false

    /// `command` sent to a board worded by `templates`; `hallDaysText`: a text is the hall day's own, its words kept.
    init(_ command: HallCommand, templates: DisplayTemplates, hallDaysText: Bool, at: Date) {
        self.command = command.name
        self.at = at
        switch command {
        case .call(let ticket, let window), .recall(let ticket, let window): (self.ticket, self.window) = (ticket, window)
        case .pause(let window): self.window = window
        default: break
        }
        if case .showText = command, !hallDaysText { return }
        text = command.displayText(with: templates)
    }

    private enum CodingKeys: String, CodingKey { case command, ticket, window, text, at, laterCommandNotSent }

    /// One shape wherever it is written (the API, `status --json`, the outbox): `at` as the events write times.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(command, forKey: .command)
        try container.encodeIfPresent(ticket, forKey: .ticket)
        try container.encodeIfPresent(window, forKey: .window)
        try container.encodeIfPresent(text, forKey: .text)
        try container.encode(EventTime.format(at), forKey: .at)
        if laterCommandNotSent { try container.encode(true, forKey: .laterCommandNotSent) }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        command = try container.decode(String.self, forKey: .command)
        ticket = try container.decodeIfPresent(String.self, forKey: .ticket)
        window = try container.decodeIfPresent(String.self, forKey: .window)
        text = try container.decodeIfPresent(String.self, forKey: .text)
        let time = try container.decode(String.self, forKey: .at)
        guard let at = EventTime.parse(time) else {
            throw DecodingError.dataCorruptedError(forKey: .at, in: container, debugDescription: "not an RFC 3339 time: \(time)")
        }
        self.at = at
        laterCommandNotSent = try container.decodeIfPresent(Bool.self, forKey: .laterCommandNotSent) ?? false
    }

    /// The command that shows it again; nil for a text whose words are not kept, and after a later command not sent.
    var showingAgain: HallCommand? {
        if laterCommandNotSent { return nil }
        return switch command {
        case "call": ticket.flatMap { ticket in window.map { HallCommand.call(ticket: ticket, window: $0) } }
        case "recall": ticket.flatMap { ticket in window.map { HallCommand.recall(ticket: ticket, window: $0) } }
        case "pause": window.map { HallCommand.pause(window: $0) }
        case "show-text": text.map { HallCommand.showText($0) }
        case "clear": .clear
        default: nil
        }
    }
}

/// Online/offline bookkeeping for the devices of one bus: an event on every change, none otherwise.
struct DeviceHealth {
    /// Misses in a row before a device is reported offline.
    static let missesBeforeOffline = 3

    private struct State {
        var online: Bool?
        var misses = 0
        var lastSeen: Date?
        var reason: String?
        /// Offline because its bus was: nothing is known of the device itself until it is asked again.
        var offlineByLine = false
        /// Offline though it answers (not ready, a refusal, another model).
        var answersWhileOffline = false
    }

    let busId: String
    let hallId: String
    let logger: Logger
    private var states: [String: State] = [:]

    init(busId: String, hallId: String, logger: Logger) {
        self.busId = busId
        self.hallId = hallId
        self.logger = logger
    }

    /// The device answered; `ready` false when it answered but says it is not in service (or `reason`).
    mutating func answered(_ device: DeviceConfig, ready: Bool = true, reason: String? = nil, at time: Date) -> [CloudEvent] {
        // One lookup in the usual case, a device answering as it did before: this runs at every transaction.
        let unchanged = { (state: inout State) -> Bool in
            state.misses = 0
            state.lastSeen = time
            state.offlineByLine = false
            state.answersWhileOffline = !ready
            return state.online == ready
        }(&states[device.id, default: State()])
        if unchanged {
            // Offline for another reason before (silent, then another model at the address): the reason now is this.
            if !ready, case let now = reason ?? "device reports not ready", states[device.id]?.reason != now {
                states[device.id]?.reason = now
                logger.warning("device \(device.id) offline: \(now)")
            }
            return []
        }
        return change(device, online: ready, reason: ready ? "answering" : reason ?? "device reports not ready", at: time)
    }

    /// The device did not answer (or answered garbage); offline after `missesBeforeOffline` in a row.
    mutating func missed(_ device: DeviceConfig, reason: String, at time: Date) -> [CloudEvent] {
        states[device.id, default: State()].misses += 1
        logger.debug("device \(device.id) at address \(device.address): \(reason)")
        guard states[device.id, default: State()].misses >= Self.missesBeforeOffline else { return [] }
        if states[device.id]?.online == false {
            // Already offline with its bus, or answering (another model at the address): now it is silent itself.
            if states[device.id]?.answersWhileOffline == true { logger.warning("device \(device.id) offline: \(reason)") }
            states[device.id]?.offlineByLine = false
            states[device.id]?.answersWhileOffline = false
            states[device.id]?.reason = reason
            return []
        }
        return change(device, online: false, reason: reason, at: time)
    }

    /// The whole bus is unreachable (port missing, connection refused): every device is offline at once.
    mutating func unreachable(_ devices: [DeviceConfig], reason: String, at time: Date) -> [CloudEvent] {
        devices.flatMap { device in
            let events = change(device, online: false, reason: reason, at: time)
            if !events.isEmpty { states[device.id, default: State()].offlineByLine = true }
            // Nothing answers on a bus that is down, another model no more than the device.
            states[device.id]?.answersWhileOffline = false
            return events
        }
    }

    /// The bus is open again. A device that is polled stays offline until it answers (at once, if it is there) or
    /// misses; one that is never polled (it only speaks unprompted, or only listens) is as reachable as its bus, so
    /// it is online again now.
    mutating func lineReopened(_ devices: [DeviceConfig], polled: Set<String>, at time: Date) -> [CloudEvent] {
        devices.flatMap { device -> [CloudEvent] in
            guard states[device.id]?.offlineByLine == true, !polled.contains(device.id) else { return [] }
            states[device.id]?.offlineByLine = false
            return change(device, online: true, reason: "its bus is open again", at: time)
        }
    }

    /// The gateway's view of each device, in the order given.
    func states(of devices: [DeviceConfig]) -> [DeviceState] {
        devices.map { device in
            var state = DeviceState(
                device: device.id, bus: busId, online: states[device.id]?.online,
                lastSeen: states[device.id]?.lastSeen, offlineReason: offlineReason(device.id),
                offlineByLine: isOffline(device.id) && states[device.id]?.offlineByLine == true)
            state.answersWhileOffline = isOffline(device.id) && states[device.id]?.answersWhileOffline == true
            return state
        }
    }

    /// Whether the device is reported offline.
    func isOffline(_ id: String) -> Bool { states[id]?.online == false }

    /// Why the device is offline, while it is.
    func offlineReason(_ id: String) -> String? { isOffline(id) ? states[id]?.reason ?? "not answering" : nil }

    /// Why a command to the device is refused without trying: it is offline by its own silence. One offline with its
    /// bus is tried once the bus is open again.
    func commandRefusal(_ id: String) -> String? { states[id]?.offlineByLine == true ? nil : offlineReason(id) }

    private mutating func change(_ device: DeviceConfig, online: Bool, reason: String, at time: Date) -> [CloudEvent] {
        guard states[device.id, default: State()].online != online else { return [] }
        states[device.id, default: State()].online = online
        states[device.id, default: State()].reason = online ? nil : reason
        if online {
            logger.debug("device \(device.id) online")
        } else {
            logger.warning("device \(device.id) offline: \(reason)")
        }
        let status = DeviceStatusChanged(device: device.id, bus: busId, address: device.address, reason: reason)
        return [
            CloudEvent(
                id: UUID().uuidString.lowercased(), source: EventSource.device(hall: hallId, device: device.id),
                type: online ? HallEventType.deviceOnline : HallEventType.deviceOffline, time: time,
                subject: device.window.map(EventSource.windowSubject), data: .deviceStatus(status))
        ]
    }
}

/// Commits a bus's events and reports what was new; a failed commit is logged and reported as false,
/// so the bus acknowledges nothing and the devices keep their data for the next try.
public struct BusCommitter: Sendable {
    let busId: String
    let outbox: Outbox
    let logger: Logger
    let onCommit: Observer
    private let refusals = CommitRefusals()

    init(busId: String, outbox: Outbox, logger: Logger, onCommit: @escaping Observer) {
        self.busId = busId
        self.outbox = outbox
        self.logger = logger
        self.onCommit = onCommit
    }

    /// What the gateway hears after each commit: the events that were new to the outbox.
    public typealias Observer = @Sendable ([CloudEvent]) -> Void

    /// Events a bus keeps in memory while the outbox refuses commits (a full disk); past this the oldest go, loudly.
    static let maximumUncommitted = 100_000

    func commit(_ events: [CloudEvent], cursors: [DeviceCursor] = []) async -> Bool {
        guard !events.isEmpty || !cursors.isEmpty else { return true }
        CrashPoint.reached(.beforeCommit, withRatings: events)
        do {
            let inserted = try await outbox.commit(events, cursors: cursors)
            CrashPoint.reached(.afterCommit, withRatings: events)
            if !inserted.isEmpty { onCommit(inserted) }
            refusals.succeeded(logger, "bus \(busId): the outbox takes commits again")
            return true
        } catch {
            refusals.failed(logger, "bus \(busId): outbox commit failed, nothing acknowledged, devices keep their data", error)
            return false
        }
    }
}

/// Says once that the outbox refuses commits (a full disk refuses every cycle of every bus), then once a minute while
/// it lasts, and once that it takes them again: not a line per attempt.
final class CommitRefusals: Sendable {
    private struct State {
        var failing = false
        /// Whether this run of failures was said: its end is said only then.
        var said = false
        var lastSaid: ContinuousClock.Instant?
        var failed = 0
    }

    private let state = Mutex(State())
    static let repeatEvery = Duration.seconds(60)

    /// Also across runs: commits that fail and succeed by turns (a disk nearly full) are said once a minute at most.
    func failed(_ logger: Logger, _ what: String, _ error: any Error) {
        let now = ContinuousClock.now
        let say: (failed: Int, first: Bool)? = state.withLock { state in
            let first = !state.failing
            state.failing = true
            state.failed += 1
            if let last = state.lastSaid, now - last < Self.repeatEvery { return nil }
            state.lastSaid = now
            state.said = true
            return (state.failed, first)
        }
        guard let say else { return }
        let message = GatewayError.oneLine("\(error)")
        if say.first {
            logger.error("\(what): \(message)")
        } else {
            logger.error("\(what): \(message) (still; \(say.failed) attempts failed so far)")
        }
    }

    func succeeded(_ logger: Logger, _ what: String) {
        let failed: Int? = state.withLock { state in
            guard state.failing else { return nil }
            defer {
                state.failing = false
                state.said = false
                state.failed = 0
            }
            return state.said ? state.failed : nil
        }
        if let failed { logger.notice("\(what) (\(failed) attempts had failed)") }
    }
}

/// Says once that a bus's port cannot be opened, and once that it is open again: not once per retry. A lost link is
/// said with the outcome of the first attempt to open it again, so that an unplugged adapter is one line ("hung up,
/// then cannot open …: no such device").
struct ConnectionReporter {
    let busId: String
    let logger: Logger
    private var lastError: String?
    /// A lost link not said yet.
    private var lostLink: String?
    /// Why the link is down now, said or not.
    var reason: String? { lostLink ?? lastError }
    /// A link lost and opened again, as last said, when, and how often since: a peer that closes each connection at
    /// once is said once every `flapSaidEvery`, with a count, not at each retry (from a docs trial).
    private var flap: (line: String, saidAt: ContinuousClock.Instant, since: Int)?
    var flapSaidEvery = Duration.seconds(600)

    init(busId: String, logger: Logger) {
        self.busId = busId
        self.logger = logger
    }

    mutating func opened(_ endpoint: String) {
        if let lostLink {
            let line = "\(lostLink); \(endpoint) is open again"
            if let flap, flap.line == line, ContinuousClock.now - flap.saidAt < flapSaidEvery {
                self.flap?.since += 1
            } else {
                let again = flap.map { $0.line == line && $0.since > 0 ? " (\($0.since) more times since it was last said)" : "" }
                logger.notice("bus \(busId): \(line)\(again ?? "")")
                flap = (line, .now, 0)
            }
        } else if lastError != nil {
            logger.notice("bus \(busId): \(endpoint) is open again")
        }
        lastError = nil
        lostLink = nil
    }

    mutating func lost(_ message: String, retry: Duration) {
        guard lastError == nil, lostLink == nil else { return failed(message, retry: retry) }
        lostLink = message
    }

    mutating func failed(_ message: String, retry: Duration) {
        if let lostLink {
            logger.error("bus \(busId): \(lostLink), then \(message); retrying, first in \(retry), then less often")
        } else if lastError != message {
            logger.error("bus \(busId): \(message); retrying, first in \(retry), then less often")
        }
        lastError = message
        lostLink = nil
    }
}
