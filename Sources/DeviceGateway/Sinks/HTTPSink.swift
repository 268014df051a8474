public import Logging

/// Placeholder until the http sink lands.
public final class HTTPSink: EventSink {
    public let name: String

    /// Creates the sink; connections are made on the first delivery.
    public init(name: String, config: HTTPSinkConfig, hallId: String, logger: Logger) throws {
        self.name = name
    }

    public func deliver(_ batch: [OutboundEvent]) async throws {
        throw SinkError(.unavailable, "the http sink is not built yet")
    }
}
