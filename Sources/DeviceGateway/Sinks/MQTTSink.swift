public import Logging

/// Placeholder until the mqtt sink lands.
public final class MQTTSink: EventSink {
    public let name: String

    /// Creates the sink; connections are made on the first delivery.
    public init(name: String, config: MQTTSinkConfig, hallId: String, logger: Logger) throws {
        self.name = name
    }

    public func deliver(_ batch: [OutboundEvent]) async throws {
        throw SinkError(.unavailable, "the mqtt sink is not built yet")
    }
}
