public import Logging

/// Builds the sink a configuration names: the one place that knows every kind of store.
public enum SinkFactory {
    /// Creates the sink; fails only for what no retry can fix (an unreadable token file, a bad URL).
    public static func make(_ config: SinkConfig, hallId: String, logger: Logger) throws -> any EventSink {
        var logger = logger
        logger[metadataKey: "sink.name"] = "\(config.name)"
        switch config.kind {
        case .sqlite(let path):
            return try SQLiteEventStore(name: config.name, path: path)
        case .http(let http):
            return try HTTPSink(name: config.name, config: http, hallId: hallId, logger: logger)
        case .postgres(let postgres):
            return try PostgresSink(name: config.name, config: postgres, hallId: hallId, logger: logger)
        case .mqtt(let mqtt):
            return try MQTTSink(name: config.name, config: mqtt, hallId: hallId, logger: logger)
        }
    }
}
