/// A destination for committed events (the central store, or the embedded default).
///
/// Delivery is at least once: after a crash the forwarder may deliver a batch again, so a sink must be
/// idempotent on (`source`, `id`).
public protocol EventSink: Sendable {
    /// The sink's name, which keys its delivery cursor in the outbox.
    var name: String { get }
    /// Stores a batch; returns only once the sink holds all of it.
    func deliver(_ events: [CloudEvent]) async throws
}
