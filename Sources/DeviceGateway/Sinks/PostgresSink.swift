public import Logging

/// Placeholder until the postgres sink lands.
public final class PostgresSink: EventSink {
    public let name: String

    /// Creates the sink; connections are made on the first delivery.
    public init(name: String, config: PostgresSinkConfig, hallId: String, logger: Logger) throws {
        self.name = name
    }

    public func deliver(_ batch: [OutboundEvent]) async throws {
        throw SinkError(.unavailable, "the postgres sink is not built yet")
    }
}
