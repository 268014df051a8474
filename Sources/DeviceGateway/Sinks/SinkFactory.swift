public import Logging
import Synchronization

/// Builds the sink a configuration names: the one place that knows every kind of store.
public enum SinkFactory {
    /// Creates the sink; fails only for what no retry can fix (an unreadable token file, a bad URL).
    public static func make(_ config: SinkConfig, hallId: String, logger: Logger) throws -> any EventSink {
        var logger = logger
        logger[metadataKey: "sink.name"] = "\(config.name)"
        switch config.kind {
        case .sqlite(let path):
            return try SQLiteEventStore(name: config.name, path: path, retention: config.retention, logger: logger)
        case .http(let http):
            return try HTTPSink(name: config.name, config: http, hallId: hallId, logger: logger)
        case .postgres(let postgres):
            return try PostgresSink(name: config.name, config: postgres, hallId: hallId, logger: logger)
        case .mqtt(let mqtt):
            return try MQTTSink(name: config.name, config: mqtt, hallId: hallId, logger: logger)
        }
    }
}

/// A sink built on first use, and built again until that succeeds: a sink that cannot be set up (an unreadable
/// token file, a CA file not there yet) is one sink failing, retried like a store that is down, while the
/// devices keep being read and every other sink keeps delivering.
final class DeferredSink: EventSink {
    let name: String
    private let config: SinkConfig
    private let hallId: String
    private let logger: Logger
    private let built = Mutex<(any EventSink)?>(nil)

    init(config: SinkConfig, hallId: String, logger: Logger) {
        name = config.name
        self.config = config
        self.hallId = hallId
        self.logger = logger
        do {
            let sink = try SinkFactory.make(config, hallId: hallId, logger: logger)
            built.withLock { $0 = sink }
        } catch {
            logger.error("sink \(config.name) cannot be set up, its events wait in the outbox: \(error)")
        }
    }

    func deliver(_ batch: [OutboundEvent]) async throws {
        try await sink().deliver(batch)
    }

    func shutdown() async {
        await built.withLock { $0 }?.shutdown()
    }

    var connectionUp: Int? { built.withLock { $0 }?.connectionUp }

    private func sink() throws -> any EventSink {
        if let sink = built.withLock({ $0 }) { return sink }
        do {
            let sink = try SinkFactory.make(config, hallId: hallId, logger: logger)
            built.withLock { $0 = sink }
            return sink
        } catch let error as SinkError {
            throw SinkError(.unavailable, "cannot be set up: \(error.message)")
        } catch {
            throw SinkError(.unavailable, "cannot be set up: \(error)")
        }
    }
}
