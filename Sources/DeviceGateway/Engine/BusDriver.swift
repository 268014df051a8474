public import Foundation
public import Protocols

/// One request on a bus: bytes for the wire, and whether an answer is awaited.
public struct LineRequest: Sendable, Equatable {
    /// The device addressed.
    public var device: String
    /// The bytes on the wire.
    public var bytes: [UInt8]
    /// Whether the bus waits for an answer (up to the response timeout) before the next request.
    public var expectsAnswer: Bool
    /// What the request is, for logs and events (`status`, `show-text`, …).
    public var purpose: String
    /// Whether stale input is dropped before the request goes out: on lines where nothing speaks unprompted, a
    /// late answer to an earlier request would otherwise pass for this one's.
    public var discardsStaleInput: Bool
    /// Whether the device answers with the request's own bytes (a Modbus write of one register or coil): a copy of it
    /// coming back proves nothing about the line echoing.
    public var answerMayEqualIt: Bool

    /// Creates a request.
    public init(device: String, bytes: [UInt8], expectsAnswer: Bool, purpose: String, discardsStaleInput: Bool = false,
                answerMayEqualIt: Bool = false) {
        self.device = device
        self.bytes = bytes
        self.expectsAnswer = expectsAnswer
        self.purpose = purpose
        self.discardsStaleInput = discardsStaleInput
        self.answerMayEqualIt = answerMayEqualIt
    }
}

/// What a driver makes of a frame.
public struct LineReaction: Sendable {
    /// Events to commit.
    public var events: [CloudEvent]
    /// Device cursors to commit with them (what the driver must remember across a restart).
    public var cursors: [DeviceCursor]
    /// Requests to send once the events are committed (acknowledgements: never before the commit). The bus may drop
    /// them (a failed commit; one answered with itself before the line's echo is known): the device must repeat, or
    /// the driver ask again at the next poll.
    public var afterCommit: [LineRequest]
    /// The device the frame came from, if known: it counts as answering.
    public var from: String?
    /// Whether the frame answers the request in flight.
    public var answersRequest: Bool
    /// False when the device answered but says it is not in service.
    public var ready: Bool
    /// Why it is not, when the driver knows better than "not ready" (another model at the device's address).
    public var notReadyBecause: String?
    /// The device refused the request (a Modbus exception, a board's error code): what it said.
    public var refusal: String?
    /// The request in flight got no answer from its device, and something in between says so (a Modbus gateway's
    /// exception 10 or 11): the device's silence, with these words, not its answer.
    public var unanswered: String?
    /// The command this frame answers is carried out only once the device says so on a later read (a board that
    /// acknowledges a counter): it is done at its verdict, not now.
    public var holdsCommand: CommandHold?
    /// What the device said of commands held earlier.
    public var verdicts: [CommandVerdict]

    /// Creates a reaction.
    public init(events: [CloudEvent] = [], cursors: [DeviceCursor] = [], afterCommit: [LineRequest] = [],
                from: String? = nil, answersRequest: Bool = false, ready: Bool = true, notReadyBecause: String? = nil,
                refusal: String? = nil, unanswered: String? = nil, holdsCommand: CommandHold? = nil,
                verdicts: [CommandVerdict] = []) {
        self.notReadyBecause = notReadyBecause
        self.unanswered = unanswered
        self.events = events
        self.cursors = cursors
        self.afterCommit = afterCommit
        self.from = from
        self.answersRequest = answersRequest
        self.ready = ready
        self.refusal = refusal
        self.holdsCommand = holdsCommand
        self.verdicts = verdicts
    }
}

/// A command whose frames were answered and that the device confirms later: the driver's verdict under `key` ends it.
public struct CommandHold: Sendable, Equatable {
    /// Names the command to the driver (a board's command counter).
    public var key: Int
    /// How many polls of the device the driver waits for the verdict; the bus gives up a little after.
    public var verdictWithinPolls: Int

    /// Creates a hold.
    public init(key: Int, verdictWithinPolls: Int) {
        self.key = key
        self.verdictWithinPolls = verdictWithinPolls
    }
}

/// What a device said of a held command: carried out, or the failure to report.
public struct CommandVerdict: Sendable {
    public var device: String
    /// The key of its `CommandHold`.
    public var key: Int
    /// Nil when the device carried the command out.
    public var failure: GatewayError?

    /// Creates a verdict.
    public init(device: String, key: Int, failure: GatewayError?) {
        self.device = device
        self.key = key
        self.failure = failure
    }
}

/// A device family as the bus engine drives it: how to poll each device, what its frames mean, how commands
/// become frames, what to acknowledge after the commit. Pure: the `BusEngine` does the I/O, the timing and the
/// commits, and knows no family. Every family implements this, Modbus pads and boards included.
public protocol BusDriver: Sendable {
    associatedtype Decoder: FrameDecoder

    /// The devices on the bus.
    var devices: [DeviceConfig] { get }

    /// A decoder for the bus, fresh after every reopen.
    func makeDecoder() -> Decoder

    /// The requests of one poll of `device`; empty for a device that only speaks unprompted.
    mutating func pollRequests(for device: DeviceConfig) -> [LineRequest]

    /// A frame arrived; `request` is the request in flight, if any.
    mutating func handle(_ frame: Decoder.Frame, inFlight request: LineRequest?, at time: Date) -> LineReaction

    /// Whether `frame` answers `request`, one of several in flight together (Modbus TCP: by its transaction id).
    /// Asked only on a bus that sends several requests at once (`requests-in-flight`); false by default, so a family
    /// that cannot tell never has an answer taken for the wrong request.
    func answers(_ frame: Decoder.Frame, _ request: LineRequest) -> Bool

    /// The frames that carry out a command on one device, sent in order, each awaiting its answer if it expects one.
    mutating func requests(for command: HallCommand, to device: DeviceConfig) throws(GatewayError) -> [LineRequest]

    /// Whether the driver must have heard from `device` in this run before it can build a command for it
    /// (a Modbus board's command counter continues from what the board acknowledged).
    func needsPollBeforeCommand(_ device: DeviceConfig) -> Bool

    /// The cursors committed for the bus's devices before this start.
    mutating func restore(_ cursors: [DeviceCursor])

    /// The staff ids the queue system set on the bus's pads before this start, by device.
    mutating func restore(staff: [String: String])

    /// The link was opened (again): its devices may have been power-cycled meanwhile.
    mutating func lineOpened()

    /// `request` was written on a serial line at `time`: a driver whose devices' frames can equal its own tells them
    /// apart when a two-wire adapter sends them back and the echo filter did not take them out.
    mutating func wrote(_ request: LineRequest, at time: Date)

    /// Whether `device`'s screen is lit, as its last read said; nil for a device without one, or one whose reads do
    /// not tell.
    func screenOn(of device: String) -> Bool?
}

extension BusDriver {
    public func needsPollBeforeCommand(_ device: DeviceConfig) -> Bool { false }
    public func answers(_ frame: Decoder.Frame, _ request: LineRequest) -> Bool { false }
    public mutating func restore(_ cursors: [DeviceCursor]) {}
    /// A pad that keeps its staff id itself (Modbus) needs none.
    public mutating func restore(staff: [String: String]) {}
    public mutating func lineOpened() {}
    public mutating func wrote(_ request: LineRequest, at time: Date) {}
    public func screenOn(of device: String) -> Bool? { nil }
}
