public import Foundation
public import Protocols

/// One request on a raw serial line.
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

    /// Creates a request.
    public init(device: String, bytes: [UInt8], expectsAnswer: Bool, purpose: String, discardsStaleInput: Bool = false) {
        self.device = device
        self.bytes = bytes
        self.expectsAnswer = expectsAnswer
        self.purpose = purpose
        self.discardsStaleInput = discardsStaleInput
    }
}

/// What a driver makes of a frame.
public struct LineReaction: Sendable {
    /// Events to commit.
    public var events: [CloudEvent]
    /// Device cursors to commit with them (what the driver must remember across a restart).
    public var cursors: [DeviceCursor]
    /// Bytes to send once the events are committed (acknowledgements: never before the commit).
    public var repliesAfterCommit: [[UInt8]]
    /// The device the frame came from, if known: it counts as answering.
    public var from: String?
    /// Whether the frame answers the request in flight.
    public var answersRequest: Bool

    /// Creates a reaction.
    public init(events: [CloudEvent] = [], cursors: [DeviceCursor] = [], repliesAfterCommit: [[UInt8]] = [],
                from: String? = nil, answersRequest: Bool = false) {
        self.events = events
        self.cursors = cursors
        self.repliesAfterCommit = repliesAfterCommit
        self.from = from
        self.answersRequest = answersRequest
    }
}

/// A device family on a raw serial line (ESC/POS, Onbon BX, FF 68, QSystem): how to poll it, what its
/// frames mean, how commands become frames. Pure: the `SerialBus` does the I/O and the commits.
public protocol LineDriver: Sendable {
    associatedtype Decoder: FrameDecoder

    /// The devices on the line.
    var devices: [DeviceConfig] { get }

    /// A decoder for the line, fresh after every reopen.
    func makeDecoder() -> Decoder

    /// Requests for one poll cycle, sent one at a time.
    mutating func pollRequests() -> [LineRequest]

    /// A frame arrived; `request` is the request in flight, if any.
    mutating func handle(_ frame: Decoder.Frame, inFlight request: LineRequest?, at time: Date) -> LineReaction

    /// The frames that carry out a command on one device.
    func requests(for command: HallCommand, to device: DeviceConfig) throws(GatewayError) -> [LineRequest]

    /// The cursors committed for the line's devices before this start.
    mutating func restore(_ cursors: [DeviceCursor])

    /// The line was opened (again): its devices may have been power-cycled meanwhile.
    mutating func lineOpened()
}

extension LineDriver {
    public mutating func restore(_ cursors: [DeviceCursor]) {}
    public mutating func lineOpened() {}
}
