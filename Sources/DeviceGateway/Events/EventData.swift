/// The `data` member of a hall event: one case per event type.
public enum EventData: Sendable, Equatable, Encodable {
    case rating(RatingSubmitted)
    case deviceStatus(DeviceStatusChanged)
    case callerKey(CallerKeyPressed)
    case printerStatus(PrinterStatusChanged)
    case boardAcknowledged(BoardAcknowledged)
    case deviceFault(DeviceFault)
    case heartbeat(GatewayHeartbeat)
    case eventsDropped(EventsDropped)
    case outboxRecovered(OutboxRecovered)
    case command(CommandExecuted)
    case deviceCheck(DeviceCheckReport)

    /// Decodes the data of an event of the given type.
    init(type: String, from container: KeyedDecodingContainer<CloudEvent.CodingKeys>) throws {
        switch type {
        case HallEventType.ratingSubmitted:
            self = .rating(try container.decode(RatingSubmitted.self, forKey: .data))
        case HallEventType.deviceOnline, HallEventType.deviceOffline:
            self = .deviceStatus(try container.decode(DeviceStatusChanged.self, forKey: .data))
        case HallEventType.callerKeyPressed:
            self = .callerKey(try container.decode(CallerKeyPressed.self, forKey: .data))
        case HallEventType.printerStatusChanged:
            self = .printerStatus(try container.decode(PrinterStatusChanged.self, forKey: .data))
        case HallEventType.boardAcknowledged:
            self = .boardAcknowledged(try container.decode(BoardAcknowledged.self, forKey: .data))
        case HallEventType.deviceFault:
            self = .deviceFault(try container.decode(DeviceFault.self, forKey: .data))
        case HallEventType.gatewayHeartbeat, HallEventType.gatewayStopped:
            self = .heartbeat(try container.decode(GatewayHeartbeat.self, forKey: .data))
        case HallEventType.eventsDropped:
            self = .eventsDropped(try container.decode(EventsDropped.self, forKey: .data))
        case HallEventType.outboxRecovered:
            self = .outboxRecovered(try container.decode(OutboxRecovered.self, forKey: .data))
        case HallEventType.deviceCheck:
            self = .deviceCheck(try container.decode(DeviceCheckReport.self, forKey: .data))
        case _ where HallEventType.commands.contains(type):
            self = .command(try container.decode(CommandExecuted.self, forKey: .data))
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: container, debugDescription: "unknown event type \(type)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .rating(let rating): try container.encode(rating)
        case .deviceStatus(let status): try container.encode(status)
        case .callerKey(let key): try container.encode(key)
        case .printerStatus(let status): try container.encode(status)
        case .boardAcknowledged(let acknowledged): try container.encode(acknowledged)
        case .deviceFault(let fault): try container.encode(fault)
        case .heartbeat(let heartbeat): try container.encode(heartbeat)
        case .eventsDropped(let dropped): try container.encode(dropped)
        case .outboxRecovered(let recovered): try container.encode(recovered)
        case .command(let command): try container.encode(command)
        case .deviceCheck(let report): try container.encode(report)
        }
    }
}

/// `hall.rating.submitted`: a citizen pressed a key on an evaluator pad.
///
/// Carries the national level and the device's own key and scale, so that a profile's mapping can be
/// re-examined later. No data of the citizen exists here: only the staff member's id.
public struct RatingSubmitted: Sendable, Equatable, Codable {
    /// The service window the pad belongs to.
    public var window: String
    /// The id of the staff member the pad showed, if it showed one.
    public var staffId: String?
    /// The level on the national five-level 好差评 scale (5 非常满意 … 1 非常不满意).
    public var level: Int
    /// The national name of `level`.
    public var levelLabel: String
    /// The raw key code the device reported.
    public var key: Int
    /// The key's label on the device.
    public var keyLabel: String
    /// The device's scale, e.g. `three-key`.
    public var scale: String
    /// The device's own rating counter, where it has one.
    public var deviceCounter: Int64?
    /// The ticket whose service was rated, when the queue system said (a networked terminal asks per ticket).
    public var ticket: String?

    /// Creates a rating.
    public init(window: String, staffId: String?, level: Int, levelLabel: String, key: Int, keyLabel: String,
                scale: String, deviceCounter: Int64?, ticket: String? = nil) {
        self.ticket = ticket
        self.window = window
        self.staffId = staffId
        self.level = level
        self.levelLabel = levelLabel
        self.key = key
        self.keyLabel = keyLabel
        self.scale = scale
        self.deviceCounter = deviceCounter
    }
}

/// `hall.device.online` / `hall.device.offline`: the gateway's view of a device changed.
public struct DeviceStatusChanged: Sendable, Equatable, Codable {
    /// The device id from the configuration.
    public var device: String
    /// The bus the device hangs on.
    public var bus: String
    /// The device's address on the bus.
    public var address: Int
    /// Why, in a technician's words (e.g. `no answer within 500 ms`, `port /dev/ttyUSB1 missing`).
    public var reason: String

    /// Creates a status change.
    public init(device: String, bus: String, address: Int, reason: String) {
        self.device = device
        self.bus = bus
        self.address = address
        self.reason = reason
    }
}

/// `hall.caller.key_pressed`: a staff member pressed a key on a window's caller (call next, recall, …).
public struct CallerKeyPressed: Sendable, Equatable, Codable {
    /// The service window the caller belongs to.
    public var window: String
    /// What the key asks for: `call-next`, `recall`, `pause`, `resume`, `transfer`, `evaluate`, …
    public var action: String
    /// The raw key code the device reported.
    public var key: Int

    /// Creates a key press.
    public init(window: String, action: String, key: Int) {
        self.window = window
        self.action = action
        self.key = key
    }
}

/// `hall.printer.status_changed`: a ticket printer's state changed.
public struct PrinterStatusChanged: Sendable, Equatable, Codable {
    /// `ready` when nothing is wrong, else the most urgent condition.
    public var state: String
    /// Every condition now present: `cover-open`, `paper-near-end`, `paper-out`, `cutter-error`, …
    public var conditions: [String]

    /// Creates a status change.
    public init(state: String, conditions: [String]) {
        self.state = state
        self.conditions = conditions
    }
}

/// `hall.board.acknowledged`: an LED board confirmed (or refused) a command.
public struct BoardAcknowledged: Sendable, Equatable, Codable {
    /// The command the board answered, e.g. `show-text`, `clear`.
    public var command: String
    /// Whether the board accepted it.
    public var accepted: Bool
    /// The board's error code when it refused.
    public var errorCode: Int?

    /// Creates an acknowledgement.
    public init(command: String, accepted: Bool, errorCode: Int?) {
        self.command = command
        self.accepted = accepted
        self.errorCode = errorCode
    }
}

/// `hall.device.fault`: a device reported, or the gateway saw, something a technician must look at.
public struct DeviceFault: Sendable, Equatable, Codable {
    /// A short code: `ratings-lost`, `unknown-key`, `garbled-frames`, …
    public var fault: String
    /// What happened, in a technician's words.
    public var detail: String
    /// How many, where the fault counts something (`ratings-lost`: exactly the ratings lost).
    public var count: Int64?

    /// Creates a fault.
    public init(fault: String, detail: String, count: Int64? = nil) {
        self.fault = fault
        self.detail = detail
        self.count = count
    }
}

/// `hall.gateway.heartbeat`: the gateway is alive. The central side alarms once when these stop,
/// instead of once per device. Also the figures of `hall.gateway.stopped`, the last before a stop.
public struct GatewayHeartbeat: Sendable, Equatable, Codable {
    /// The gateway's version.
    public var version: String
    /// When this run of the gateway started (RFC 3339 UTC).
    public var startedAt: String
    public var uptimeSeconds: Int
    /// Per sink: events committed and not yet confirmed, and the commit time of the oldest of them.
    public var sinks: [SinkBacklog]
    /// Devices answering, by id.
    public var devicesOnline: [String]
    /// Devices reported offline, by id.
    public var devicesOffline: [String]
    /// Devices not heard from yet in this run (unprompted devices until their first frame).
    public var devicesUnknown: [String]
    /// Events dropped at the outbox's disk budget since it was created.
    public var eventsDropped: Int
    /// The clock the hall's events are stamped with: whether NTP keeps it, and whether the hall's day waits for it.
    /// Absent from the heartbeats of versions before it.
    public var clock: ClockState?
    /// In a run's first heartbeat: whether the run before it stopped as asked (false: a power cut, a kill or a crash:
    /// the central store saw its heartbeats stop and no `hall.gateway.stopped`); absent when not known (a new outbox),
    /// in later heartbeats, and from versions before it.
    public var previousRunStoppedCleanly: Bool?

    /// Creates a heartbeat.
    public init(version: String, startedAt: String, uptimeSeconds: Int, sinks: [SinkBacklog], devicesOnline: [String],
                devicesOffline: [String], devicesUnknown: [String], eventsDropped: Int, clock: ClockState?,
                previousRunStoppedCleanly: Bool? = nil) {
        self.version = version
        self.startedAt = startedAt
        self.uptimeSeconds = uptimeSeconds
        self.sinks = sinks
        self.devicesOnline = devicesOnline
        self.devicesOffline = devicesOffline
        self.devicesUnknown = devicesUnknown
        self.eventsDropped = eventsDropped
        self.clock = clock
        self.previousRunStoppedCleanly = previousRunStoppedCleanly
    }
}

/// The clock the hall's day, the ticket days and event times follow, as a technician needs to know it.
public struct ClockState: Sendable, Equatable, Codable {
    /// Whether NTP keeps it right.
    public var synchronised: Bool
    /// Why the hall's day does nothing for now, if it does not: the clock reads a day before the gateway last ran.
    public var hallDayHeld: String?

    public init(synchronised: Bool, hallDayHeld: String?) {
        self.synchronised = synchronised
        self.hallDayHeld = hallDayHeld
    }
}

/// One sink's backlog as a heartbeat reports it.
public struct SinkBacklog: Sendable, Equatable, Codable {
    public var name: String
    public var backlog: Int
    /// RFC 3339 UTC commit time of the oldest unforwarded event, if any.
    public var oldestUnforwarded: String?

    /// Creates a backlog entry.
    public init(name: String, backlog: Int, oldestUnforwarded: String?) {
        self.name = name
        self.backlog = backlog
        self.oldestUnforwarded = oldestUnforwarded
    }
}

/// `hall.gateway.events_dropped`: the outbox reached its disk budget and dropped its oldest undelivered
/// events. Exactly these sequence numbers will be gaps at the central store.
public struct EventsDropped: Sendable, Equatable, Codable {
    /// Events dropped since the last such report.
    public var count: Int
    /// The dropped sequence numbers per source.
    public var ranges: [SequenceRange]
    /// The policy followed (`drop-oldest`) and the budget that was reached, in bytes.
    public var policy: String
    public var maximumBytes: Int64

    /// Creates a drop report.
    public init(count: Int, ranges: [SequenceRange], policy: String, maximumBytes: Int64) {
        self.count = count
        self.ranges = ranges
        self.policy = policy
        self.maximumBytes = maximumBytes
    }
}

/// `hall.gateway.outbox_recovered`: the outbox was damaged at start-up; what was salvaged from it.
public struct OutboxRecovered: Sendable, Equatable, Codable {
    /// Where the damaged file was kept.
    public var damagedFile: String
    public var recovered: Int
    public var alreadyDelivered: Int
    public var unreadable: Int
    /// Of the unreadable rows, those some sink had not confirmed.
    public var unreadableUndelivered: Int
    /// The sequence numbers per source that were not read back and may not have been delivered: a store that lacks
    /// any of them has lost it (as `events_dropped`'s ranges, they explain its gaps).
    public var notReadBack: [SequenceRange]
    /// Of those, the events found in a local event store on this box and queued again from there.
    public var takenFromLocalStore: Int
    public var damage: String

    /// Creates a salvage report.
    public init(_ report: SalvageReport) {
        damagedFile = report.damagedPath
        recovered = report.recovered
        alreadyDelivered = report.alreadyDelivered
        unreadable = report.unreadable
        // A report from before they were counted: every unreadable row may have been undelivered.
        unreadableUndelivered = report.unreadableUndelivered ?? report.unreadable
        notReadBack = report.notReadBack ?? []
        takenFromLocalStore = report.takenFromLocalStore ?? 0
        damage = report.damage
    }

    /// An event from before the undelivered rows were told apart (a store's history, `gatewayd events`) reads too.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        damagedFile = try container.decode(String.self, forKey: .damagedFile)
        recovered = try container.decode(Int.self, forKey: .recovered)
        alreadyDelivered = try container.decode(Int.self, forKey: .alreadyDelivered)
        unreadable = try container.decode(Int.self, forKey: .unreadable)
        unreadableUndelivered = try container.decodeIfPresent(Int.self, forKey: .unreadableUndelivered) ?? unreadable
        notReadBack = try container.decodeIfPresent([SequenceRange].self, forKey: .notReadBack) ?? []
        takenFromLocalStore = try container.decodeIfPresent(Int.self, forKey: .takenFromLocalStore) ?? 0
        damage = try container.decode(String.self, forKey: .damage)
    }
}

/// Event type names.
public enum HallEventType {
    public static let ratingSubmitted = "hall.rating.submitted"
    public static let deviceOnline = "hall.device.online"
    public static let deviceOffline = "hall.device.offline"
    public static let callerKeyPressed = "hall.caller.key_pressed"
    public static let printerStatusChanged = "hall.printer.status_changed"
    public static let boardAcknowledged = "hall.board.acknowledged"
    public static let deviceFault = "hall.device.fault"
    public static let gatewayHeartbeat = "hall.gateway.heartbeat"
    /// The gateway stops as asked (SIGTERM, SIGINT): the heartbeat's figures, the last ones until it starts again. From
    /// here until the devices' next `hall.device.online`, their state is not known; a crash says nothing.
    public static let gatewayStopped = "hall.gateway.stopped"
    public static let eventsDropped = "hall.gateway.events_dropped"
    public static let outboxRecovered = "hall.gateway.outbox_recovered"
    public static let callDisplayed = "hall.call.displayed"
    public static let windowPaused = "hall.window.paused"
    public static let windowResumed = "hall.window.resumed"
    public static let displayCleared = "hall.display.cleared"
    public static let textShown = "hall.display.text_shown"
    public static let ticketIssued = "hall.ticket.issued"
    /// No printer could print it (or no number could be drawn): what was tried, and why each failed.
    public static let ticketNotIssued = "hall.ticket.not_issued"
    /// A queue command no device carried out (every one offline, silent or refusing): what was tried, and why each
    /// failed. Counting `hall.call.displayed` then counts only calls some board showed.
    public static let commandFailed = "hall.command.failed"
    public static let hallOpened = "hall.day.opened"
    public static let hallClosed = "hall.day.closed"
    public static let deviceCheck = "hall.gateway.device_check"
    /// Every type the gateway makes.
    public static let all: [String] = [
        ratingSubmitted, ratingRequested, deviceOnline, deviceOffline, deviceFault, callerKeyPressed, printerStatusChanged,
        boardAcknowledged, callDisplayed, windowPaused, windowResumed, staffSet, displayCleared, textShown,
        brightnessChanged, displaySwitchedOn, displaySwitchedOff, ticketIssued, ticketNotIssued, commandFailed, hallOpened,
        hallClosed, gatewayHeartbeat, gatewayStopped, eventsDropped, outboxRecovered, deviceCheck,
    ]
    /// The events of commands: the queue system's, and the hall day's boards on and off.
    public static let commands: Set<String> = [
        callDisplayed, windowPaused, windowResumed, displayCleared, textShown, hallOpened, hallClosed, ticketIssued,
        ticketNotIssued, commandFailed, brightnessChanged, displaySwitchedOn, displaySwitchedOff, staffSet,
        ratingRequested,
    ]
}

/// A command from the queue system and what each device made of it (`hall.call.displayed`, `hall.window.paused`, …).
public struct CommandExecuted: Sendable, Equatable, Codable {
    /// The command's id (from the client's idempotency key when it sent one).
    public var commandId: String
    /// `call`, `recall`, `pause`, `resume`, `clear`, `show-text`.
    public var command: String
    public var window: String?
    public var ticket: String?
    /// A ticket's service (户籍, 社保业务…): what the hall counts its tickets by. Nil for other commands.
    public var service: String?
    /// The staff member a window's pad was set to (`staff`), as ratings carry it. Nil for other commands.
    public var staffId: String?
    /// The overall result: `done`, `device-offline`, `refused`, `timed-out` (the worst of the devices').
    public var result: String
    public var devices: [DeviceOutcome]

    /// One device's part in a command.
    public struct DeviceOutcome: Sendable, Equatable, Codable {
        public var device: String
        public var result: String
        /// Why, when not done.
        public var detail: String?

        /// Creates an outcome.
        public init(device: String, result: String, detail: String?) {
            self.device = device
            self.result = result
            self.detail = detail
        }
    }

    /// Creates the record of a command.
    public init(commandId: String, command: String, window: String?, ticket: String?, service: String? = nil,
                staffId: String? = nil, result: String, devices: [DeviceOutcome]) {
        self.commandId = commandId
        self.command = command
        self.window = window
        self.ticket = ticket
        self.service = service
        self.staffId = staffId
        self.result = result
        self.devices = devices
    }
}
