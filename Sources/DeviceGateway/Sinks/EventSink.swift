/// A destination for committed events: the central store, or the embedded default.
///
/// Delivery is at least once: after a crash or a lost answer the forwarder delivers a batch again,
/// so a sink must be idempotent on (`source`, `id`).
public protocol EventSink: Sendable {
    /// The sink's name, which keys its delivery cursor in the outbox.
    var name: String { get }
    /// Stores a batch, in order; returns only once the sink holds all of it.
    ///
    /// Throws `SinkError`: `.unavailable` is retried with backoff, `.rejected` puts the batch aside.
    /// Any other error counts as `.unavailable`. Must not hang: a store that stops answering is a
    /// timeout, thrown as `.unavailable`.
    func deliver(_ batch: [OutboundEvent]) async throws
    /// Closes connections; called once when the gateway stops.
    func shutdown() async
    /// For a sink that keeps a connection to its store and makes it again by itself (MQTT): which of its connections is
    /// up now, numbered from 1, or 0 while none is; nil for a sink that connects for its deliveries. A forwarder waiting
    /// out its backoff tries again once another connection than the failed attempt's is up: the store is back, and the
    /// next backoff step could be a minute away. A sink that wraps another passes it on.
    var connectionUp: Int? { get }
}

extension EventSink {
    public func shutdown() async {}
    public var connectionUp: Int? { nil }
}

/// A committed event on its way out: the attributes stores index, and the JSON form sent as it is,
/// never decoded and encoded again on the way.
public struct OutboundEvent: Sendable, Equatable {
    /// The event's place in the outbox: delivery order.
    public var position: Int64
    public var source: String
    public var id: String
    public var type: String
    /// RFC 3339 UTC with milliseconds, as in the event.
    public var time: String
    public var subject: String?
    /// The per-source counter the outbox assigned (the `sequence` extension as a number).
    public var sequence: Int64
    /// The whole CloudEvent in the JSON event format, `sequence` included.
    public var json: String

    /// Creates an outbound event.
    public init(position: Int64, source: String, id: String, type: String, time: String, subject: String?,
                sequence: Int64, json: String) {
        self.position = position
        self.source = source
        self.id = id
        self.type = type
        self.time = time
        self.subject = subject
        self.sequence = sequence
        self.json = json
    }

    /// The hall named in `source` (`/halls/<hall>/…`), if it has that shape.
    public var hall: String? {
        let parts = source.split(separator: "/", omittingEmptySubsequences: true)
        return parts.count >= 2 && parts[0] == "halls" ? String(parts[1]) : nil
    }
}

/// Why a sink did not take a batch, and what the forwarder should do about it.
public struct SinkError: Error, Sendable, CustomStringConvertible {
    /// What the forwarder does with the batch; new codes may be added.
    public struct Code: Hashable, Sendable {
        private let name: String
        /// The store is down, slow, overloaded or unreachable: retried with backoff, nothing lost.
        public static let unavailable = Code(name: "unavailable")
        /// The store refused these events for good (HTTP 4xx other than 408/429): put aside with the reason.
        public static let rejected = Code(name: "rejected")
    }

    public var code: Code
    /// What happened, in one line: the store's answer, the TLS failure, the timeout.
    public var message: String
    /// When the store asked to be retried no sooner than this (HTTP `Retry-After`).
    public var retryAfter: Duration?

    /// Creates an error.
    public init(_ code: Code, _ message: String, retryAfter: Duration? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { message }
}
