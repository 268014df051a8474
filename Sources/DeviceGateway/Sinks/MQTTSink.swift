import CMosquitto
import Foundation
public import Logging

/// Publishes events to an MQTT broker through libmosquitto: QoS 1, one message per event.
///
/// The CloudEvents MQTT binding in structured mode: the message is the event in the JSON event format,
/// as committed (MQTT 3.1.1 has no message properties, so there is no binary mode and no content-type).
/// The session is persistent (clean session off) under the configured client id, and the sink connects
/// on its first delivery and then keeps reconnecting by itself.
///
/// A batch counts as delivered once the broker acknowledged every message (PUBACK). A PUBACK says the
/// broker took the message, not that it stored it: a broker that crashes before writing its persistence
/// file, or one without persistence, can still lose it. Over MQTT 3.1.1 a broker that denies a topic by
/// its ACL acknowledges and drops the message all the same.
public final class MQTTSink: EventSink {
    public let name: String
    let config: MQTTSinkConfig
    /// The hall named in topics when an event's source names none.
    let hallId: String
    private let client: MosquittoClient

    /// Creates the sink; connections are made on the first delivery.
    ///
    /// Fails for what no retry can fix: an unreadable password or TLS file, a topic template that
    /// cannot give a valid topic name.
    public init(name: String, config: MQTTSinkConfig, hallId: String, logger: Logger) throws {
        self.name = name
        self.config = config
        self.hallId = hallId
        let address = "\(config.host):\(config.port)"
        var password: String?
        if let file = config.passwordFile {
            switch ReadableFile.secret(file) {
            case .success(let text): password = text
            case .failure(let problem):
                throw SinkError(.rejected, "mqtt \(address): \(problem.message("password file"))")
            }
        }
        let sample = Self.fill(config.topic, hall: hallId, type: "hall.rating.submitted", device: "gateway",
                               source: "/halls/\(hallId)/devices/gateway")
        guard Self.isValidTopic(sample) else {
            throw SinkError(.rejected, """
                mqtt \(address): the topic template '\(config.topic)' does not give a valid MQTT topic \
                (no + or #, not empty): '\(sample)'
                """)
        }
        let keepAlive = Int32(clamping: min(max(config.keepAlive.components.seconds, 5), 65535))
        let settings = MosquittoSettings(
            host: config.host, port: config.port, clientId: config.clientId ?? "hall-gateway-\(hallId)-\(name)",
            username: config.username, password: password.map(Secret.init), passwordFile: config.passwordFile,
            tls: config.tls, keepAliveSeconds: keepAlive, connectTimeout: config.timeout)
        client = try MosquittoClient(settings: settings, logger: logger)
    }

    deinit {
        client.stop()
    }

    /// Publishes the batch and returns once the broker acknowledged every message.
    public func deliver(_ batch: [OutboundEvent]) async throws {
        let messages = try batch.map { event in
            let topic = topic(for: event)
            guard Self.isValidTopic(topic) else {
                throw SinkError(.rejected, """
                    mqtt \(config.host):\(config.port): event \(event.id) of \(event.source) gives the topic \
                    '\(topic)', which is not a valid MQTT topic name
                    """)
            }
            return MosquittoMessage(key: event.source + "\u{0}" + event.id, topic: topic, payload: event.json)
        }
        try await client.publish(messages, timeout: config.timeout)
    }

    public var connectionUp: Int? { client.connectionUp }

    /// Disconnects from the broker and frees the client.
    public func shutdown() async {
        await client.shutdown()
    }

    /// The topic of an event: the template with `{hall}`, `{type}`, `{device}` and `{source}` filled in.
    ///
    /// `{device}` is the last segment of a source `/halls/<hall>/devices/<device>`, else `gateway`.
    func topic(for event: OutboundEvent) -> String {
        let parts = event.source.split(separator: "/", omittingEmptySubsequences: true)
        let device = parts.count == 4 && parts[0] == "halls" && parts[2] == "devices" ? String(parts[3]) : "gateway"
        return Self.fill(config.topic, hall: event.hall ?? hallId, type: event.type, device: device,
                         source: event.source)
    }

    /// Fills the placeholders in one pass, so a value that looks like a placeholder stays as it is.
    static func fill(_ template: String, hall: String, type: String, device: String, source: String) -> String {
        let values = ["{hall}": hall, "{type}": type, "{device}": device, "{source}": source]
        var result = ""
        var rest = template[...]
        while let open = rest.firstIndex(of: "{") {
            result += rest[..<open]
            rest = rest[open...]
            if let (placeholder, value) = values.first(where: { rest.hasPrefix($0.key) }) {
                result += value
                rest = rest.dropFirst(placeholder.count)
            } else {
                result += "{"
                rest = rest.dropFirst()
            }
        }
        return result + rest
    }

    /// Whether brokers accept the name for publishing: UTF-8 without NUL, no wildcards, 1…65535 bytes.
    static func isValidTopic(_ topic: String) -> Bool {
        let length = topic.utf8.count
        guard length > 0, length <= 65535, !topic.utf8.contains(0) else { return false }
        return mosquitto_pub_topic_check2(topic, length) == MOSQ_ERR_SUCCESS.rawValue
    }
}
