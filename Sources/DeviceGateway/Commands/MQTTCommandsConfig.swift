import Foundation
import Yams

/// The queue system's commands over MQTT: the broker, the topic the gateway takes commands from, and the topic it
/// answers on. The connection settings are the MQTT sink's.
public struct MQTTCommandsConfig: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// With a clean session off, the broker keeps the subscription and the commands sent meanwhile under this id
    /// (default `hall-gateway-<hall>-commands`).
    public var clientId: String?
    /// Where commands arrive (default `hall/<hall>/commands`).
    public var topic: String
    /// Where results go (default `hall/<hall>/command-results`).
    public var replyTopic: String
    public var username: String?
    /// File holding the password.
    public var passwordFile: String?
    /// TLS to the broker, when set.
    public var tls: TLSSettings?
    /// MQTT keep-alive.
    public var keepAlive: Duration
    /// How long a connection attempt, and a result waiting for its PUBACK, may take.
    public var timeout: Duration

    /// Creates the settings; `{hall}` in a topic is the hall's id.
    public init(host: String, port: Int = 1883, clientId: String? = nil, topic: String = "hall/{hall}/commands",
                replyTopic: String = "hall/{hall}/command-results", username: String? = nil,
                passwordFile: String? = nil, tls: TLSSettings? = nil, keepAlive: Duration = .seconds(30),
                timeout: Duration = .seconds(30)) {
        self.host = host
        self.port = port
        self.clientId = clientId
        self.topic = topic
        self.replyTopic = replyTopic
        self.username = username
        self.passwordFile = passwordFile
        self.tls = tls
        self.keepAlive = keepAlive
        self.timeout = timeout
    }

    /// The topics with `{hall}` filled in.
    func topics(hall: String) -> (commands: String, replies: String) {
        (topic.replacingOccurrences(of: "{hall}", with: hall),
         replyTopic.replacingOccurrences(of: "{hall}", with: hall))
    }
}

extension ConfigLoader {
    /// `commands: {mqtt: {host: broker.lan, tls: true, topic: "hall/{hall}/commands", reply-topic: …}}`.
    static func parseCommands(_ node: Node, _ reader: YAMLReader, folder: String) -> MQTTCommandsConfig? {
        guard let top = reader.fields(node, "commands") else { return nil }
        defer { top.rejectUnknownKeys() }
        guard let mqtt = top.value("mqtt"), let fields = reader.fields(mqtt, "commands.mqtt") else { return nil }
        defer { fields.rejectUnknownKeys() }
        func file(_ key: String) -> String? { fields.file(key, relativeTo: folder) }
        let host = fields.string("host", required: true)
        let useTLS = fields.bool("tls") ?? false
        let port = fields.int("port", in: 1...65535) ?? (useTLS ? 8883 : 1883)
        let tls = TLSSettings(caFile: file("ca-file"), certificateFile: file("certificate-file"),
                              keyFile: file("key-file"))
        if !useTLS, tls != TLSSettings() {
            reader.report(fields.value("ca-file") ?? fields.value("certificate-file"), fields.keyPath("tls"),
                          "certificate files are given but tls is not true")
        }
        var config = MQTTCommandsConfig(
            host: host ?? "", port: port, clientId: fields.string("client-id"), username: fields.string("username"),
            passwordFile: fields.secretFile("password-file", relativeTo: folder), tls: useTLS ? tls : nil,
            keepAlive: .seconds(fields.int("keepalive-seconds", in: 5...3600) ?? 30),
            timeout: .milliseconds(fields.int("timeout-ms", in: 100...600_000) ?? 30_000))
        for (key, keyPath) in [("topic", \MQTTCommandsConfig.topic), ("reply-topic", \.replyTopic)] {
            guard let topic = fields.string(key) else { continue }
            // A sample hall id: the real one is checked with the hall, the shape here.
            let sample = topic.replacingOccurrences(of: "{hall}", with: "hall")
            if MQTTSink.isValidTopic(sample) {
                config[keyPath: keyPath] = topic
            } else {
                reader.report(fields.value(key), fields.keyPath(key),
                              "'\(topic)' is not an MQTT topic name (no + or #, not empty)")
            }
        }
        guard host != nil else { return nil }
        return config
    }
}
