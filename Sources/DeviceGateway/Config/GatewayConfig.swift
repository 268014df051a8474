public import Foundation

/// A hall's gateway configuration: one YAML file.
public struct GatewayConfig: Sendable {
    /// The hall this gateway serves.
    public var hall: Hall
    /// Where the outbox and other state live; relative paths are taken from the config file's folder.
    public var stateDirectory: String
    /// The outbox's file in the state directory.
    public var outboxPath: String { Self.outboxPath(in: stateDirectory) }

    /// The outbox's file in `stateDirectory`: one name for the gateway, its checks and the CLI.
    public static func outboxPath(in stateDirectory: String) -> String {
        (stateDirectory as NSString).appendingPathComponent("outbox.sqlite")
    }
    /// The local event store's file in `stateDirectory`, where a `sqlite` sink without a `path:` keeps its events.
    public static func localStorePath(in stateDirectory: String) -> String {
        (stateDirectory as NSString).appendingPathComponent("events.sqlite")
    }
    /// Where device profiles are looked up.
    public var profilesDirectory: String
    /// The physical lines and network endpoints.
    public var buses: [BusConfig]
    /// The devices on them.
    public var devices: [DeviceConfig]
    /// Where events go.
    public var sinks: [SinkConfig]
    /// The outbox's disk budget and retention.
    public var outbox: OutboxPolicy
    /// How often the gateway commits a `hall.gateway.heartbeat` event (nil: never).
    public var heartbeatInterval: Duration?
    /// The local API for the queue system and the CLI.
    public var api = APISettings()
    /// The hall's working day (`hours:`) and the gateway's ticket numbering (`tickets:`); nil when neither is set.
    public var hallDay: HallDayConfig?
    /// Networked evaluator terminals (tablets) that post their ratings to the API.
    public var terminals: [TerminalConfig] = []
    /// The hall's services (`services: [户籍, 社保业务]`): a ticket's `service` must be one of them. Empty: any text that
    /// holds no phone or ID number.
    public var services: [String] = []
    /// The queue system's commands over MQTT (`commands: {mqtt: …}`); nil when no broker is configured.
    public var mqttCommands: MQTTCommandsConfig?

    /// Creates a configuration.
    public init(
        hall: Hall, stateDirectory: String, profilesDirectory: String,
        buses: [BusConfig], devices: [DeviceConfig], sinks: [SinkConfig],
        outbox: OutboxPolicy = OutboxPolicy(), heartbeatInterval: Duration? = .seconds(60)
    ) {
        self.outbox = outbox
        self.heartbeatInterval = heartbeatInterval
        self.hall = hall
        self.stateDirectory = stateDirectory
        self.profilesDirectory = profilesDirectory
        self.buses = buses
        self.devices = devices
        self.sinks = sinks
    }
}

/// A tablet evaluator on the LAN: it posts ratings to the API instead of being polled.
public struct TerminalConfig: Sendable, Equatable {
    public var id: String
    public var window: String
    /// The scale its keys are on (`three-key`, `four-key`, `five-level`), mapped to the national levels like a pad's.
    public var scale: String

    /// A terminal.
    public init(id: String, window: String, scale: String) {
        self.id = id
        self.window = window
        self.scale = scale
    }
}

/// Where the local API listens and how clients prove who they are.
public struct APISettings: Sendable, Equatable {
    /// The address to listen on: loopback unless a token file is configured.
    public var host = "127.0.0.1"
    /// The TCP port (0: any free one, for tests).
    public var port = 8420
    /// The file holding the bearer token; nil: the gateway makes one in its state directory (`api-token`).
    public var tokenFile: String?
    /// Whether the API runs at all.
    public var enabled = true

    /// The default: loopback, port 8420, a token of the gateway's making.
    public init() {}

    /// The token in a token file's text (surrounding blanks and line ends are not part of it), or why it cannot be
    /// one: a short token is guessed.
    public static func token(inFile text: String) -> Result<String, TokenProblem> {
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        // A second line or a blank would be part of a token no client sends.
        if token.contains(where: \.isWhitespace) { return .failure(TokenProblem(description: "the token must be one word on one line")) }
        return token.count >= 16 ? .success(token) : .failure(TokenProblem(description: "the token must be at least 16 characters"))
    }

    /// A token file whose token cannot be one: too short, or more than one word.
    public struct TokenProblem: Error, CustomStringConvertible {
        public var description: String
    }

    /// Whether `host` is reachable from this machine only: `localhost`, or a loopback address written as one. A name
    /// is not looked up (`127.example` may resolve to anything).
    public static func isLoopback(_ host: String) -> Bool {
        var address = in_addr()
        if inet_pton(AF_INET, host, &address) == 1 { return UInt32(bigEndian: address.s_addr) >> 24 == 127 }
        return host == "::1" || host == "localhost"
    }
}

/// The hall's identity and clock.
public struct Hall: Sendable, Equatable {
    /// A short id, used in every event's `source`.
    public var id: String
    /// The hall's time zone (daily counters, opening hours, human output); events stay in UTC.
    public var timeZone: TimeZone

    /// Creates a hall.
    public init(id: String, timeZone: TimeZone) {
        self.id = id
        self.timeZone = timeZone
    }
}

/// One bus: a serial line or a Modbus TCP endpoint, owned by exactly one bus actor.
public struct BusConfig: Sendable, Equatable {
    /// How the bus is reached.
    public enum Transport: Sendable, Equatable {
        case modbusRTU(SerialSettings)
        case modbusTCP(host: String, port: Int)
        /// A raw serial line for the framed families (ESC/POS, Onbon BX, FF 68, QSystem).
        case serial(SerialSettings)
    }

    /// The bus id devices refer to.
    public var id: String
    public var transport: Transport
    /// How long to wait for a device's answer before counting it as missed.
    public var responseTimeout: Duration
    /// The pause between two polls of the same device.
    public var pollInterval: Duration
    /// Modbus TCP: how many polls may await their answers at once, told apart by transaction id. 1 (the default)
    /// waits for each answer before the next request, which every device and TCP-to-RTU converter accepts.
    public var requestsInFlight: Int

    /// Creates a bus.
    public init(id: String, transport: Transport, responseTimeout: Duration = .milliseconds(500),
                pollInterval: Duration = .milliseconds(500), requestsInFlight: Int = 1) {
        self.id = id
        self.transport = transport
        self.responseTimeout = responseTimeout
        self.pollInterval = pollInterval
        self.requestsInFlight = requestsInFlight
    }
}

/// Serial line settings.
public struct SerialSettings: Sendable, Equatable {
    /// Parity bit.
    public enum Parity: String, Sendable, Equatable, CaseIterable {
        case none, even, odd
    }

    /// The baud rates a line can be set to.
    public static let supportedBauds = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115_200, 230_400]

    /// The device path, e.g. `/dev/ttyUSB0`.
    public var port: String
    public var baud: Int
    public var parity: Parity
    public var dataBits: Int
    public var stopBits: Int

    /// How long `count` characters take on the line: a start bit, the data bits, the parity bit, the stop bits each.
    public func wireTime(characters count: Int) -> Duration {
        let bitsPerCharacter = 1 + dataBits + (parity == .none ? 0 : 1) + stopBits
        return .microseconds(count * bitsPerCharacter * 1_000_000 / max(baud, 1))
    }

    /// Creates settings; the defaults are the usual 9600 8N1 of hall devices.
    public init(port: String, baud: Int = 9600, parity: Parity = .none, dataBits: Int = 8, stopBits: Int = 1) {
        self.port = port
        self.baud = baud
        self.parity = parity
        self.dataBits = dataBits
        self.stopBits = stopBits
    }
}

/// One device on a bus.
public struct DeviceConfig: Sendable, Equatable {
    /// The device id used in events and the CLI.
    public var id: String
    /// The profile name: a file `<profile>.yaml` in the profiles folder.
    public var profile: String
    /// The bus id.
    public var bus: String
    /// The address (Modbus unit id) on the bus.
    public var address: Int
    /// The service window the device serves, if any.
    public var window: String?
    /// How a board words calls, recalls and pauses (`templates:`); empty: the halls' usual wording.
    public var templates: DisplayTemplates

    /// Creates a device.
    public init(id: String, profile: String, bus: String, address: Int, window: String?,
                templates: DisplayTemplates = DisplayTemplates()) {
        self.id = id
        self.profile = profile
        self.bus = bus
        self.address = address
        self.window = window
        self.templates = templates
    }
}

/// Where committed events are forwarded: each sink has its own cursor over the outbox.
public struct SinkConfig: Sendable, Equatable {
    /// The kind of store and how to reach it.
    public enum Kind: Sendable, Equatable {
        /// The embedded default: a local SQLite event store.
        case sqlite(path: String)
        /// POST `application/cloudevents-batch+json` to a URL.
        case http(HTTPSinkConfig)
        /// A central PostgreSQL table keyed (`source`, `id`).
        case postgres(PostgresSinkConfig)
        /// An MQTT broker, QoS 1, one message per event (CloudEvents MQTT binding, structured mode).
        case mqtt(MQTTSinkConfig)
    }

    /// The sink's name, used for its delivery cursor and in reports.
    public var name: String
    public var kind: Kind
    /// Events per delivery.
    public var batchSize: Int
    /// The longest pause between two attempts while the store is down.
    public var maximumRetryDelay: Duration
    /// How long a local SQLite store keeps an event (by its time); nil: for ever.
    public var retention: Duration?

    /// The file of a local SQLite store, for readers such as `gatewayd events`.
    public var sqlitePath: String? {
        if case .sqlite(let path) = kind { path } else { nil }
    }

    /// Creates a sink configuration.
    public init(name: String, kind: Kind, batchSize: Int = 500, maximumRetryDelay: Duration = .seconds(60),
                retention: Duration? = nil) {
        self.name = name
        self.kind = kind
        self.batchSize = batchSize
        self.maximumRetryDelay = maximumRetryDelay
        self.retention = retention
    }
}

/// TLS settings of a sink. Certificates are always verified: against the system trust store, or
/// only against `caFile` when it is given.
public struct TLSSettings: Sendable, Equatable {
    /// PEM file of the certificate authorities to trust instead of the system's.
    public var caFile: String?
    /// PEM file of the client certificate, for stores that ask for one.
    public var certificateFile: String?
    /// PEM file of the client certificate's private key.
    public var keyFile: String?

    /// Creates TLS settings.
    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}

/// An HTTP receiver of CloudEvents batches.
public struct HTTPSinkConfig: Sendable, Equatable {
    /// `http://` or `https://` URL the batches are POSTed to.
    public var url: String
    /// File holding the bearer token (kept out of the configuration file).
    public var tokenFile: String?
    public var tls: TLSSettings
    /// How long one request may take, connection included.
    public var timeout: Duration

    /// Creates an HTTP sink configuration.
    public init(url: String, tokenFile: String? = nil, tls: TLSSettings = TLSSettings(),
                timeout: Duration = .seconds(30)) {
        self.url = url
        self.tokenFile = tokenFile
        self.tls = tls
        self.timeout = timeout
    }
}

/// A central PostgreSQL database.
public struct PostgresSinkConfig: Sendable, Equatable {
    /// Whether and how the connection is encrypted.
    public enum TLSMode: String, Sendable, Equatable, CaseIterable {
        /// Plain TCP (a store on the same box or a private link).
        case disable
        /// TLS with the server's certificate verified (system trust store or `tls.caFile`) and its name checked.
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var database: String
    public var user: String
    /// File holding the password.
    public var passwordFile: String?
    public var tlsMode: TLSMode
    public var tls: TLSSettings
    /// The table events go into; the gateway creates and migrates it.
    public var table: String
    /// How long one batch may take.
    public var timeout: Duration

    /// Creates a PostgreSQL sink configuration.
    public init(host: String, port: Int = 5432, database: String, user: String, passwordFile: String? = nil,
                tlsMode: TLSMode = .disable, tls: TLSSettings = TLSSettings(), table: String = "hall_events",
                timeout: Duration = .seconds(30)) {
        self.host = host
        self.port = port
        self.database = database
        self.user = user
        self.passwordFile = passwordFile
        self.tlsMode = tlsMode
        self.tls = tls
        self.table = table
        self.timeout = timeout
    }
}

/// An MQTT broker.
public struct MQTTSinkConfig: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// The client id; with a clean session off, the broker keeps the session under it
    /// (default `hall-gateway-<hall>-<sink name>`, unique per gateway in a province).
    public var clientId: String?
    /// Topic per event; `{hall}`, `{type}`, `{device}` and `{source}` are filled in.
    public var topic: String
    public var username: String?
    /// File holding the password.
    public var passwordFile: String?
    /// TLS to the broker, when set.
    public var tls: TLSSettings?
    /// MQTT keep-alive.
    public var keepAlive: Duration
    /// How long a batch may wait for the broker's PUBACKs.
    public var timeout: Duration

    /// Creates an MQTT sink configuration.
    public init(host: String, port: Int = 1883, clientId: String? = nil, topic: String = "halls/{hall}/events/{type}",
                username: String? = nil, passwordFile: String? = nil, tls: TLSSettings? = nil,
                keepAlive: Duration = .seconds(30), timeout: Duration = .seconds(30)) {
        self.host = host
        self.port = port
        self.clientId = clientId
        self.topic = topic
        self.username = username
        self.passwordFile = passwordFile
        self.tls = tls
        self.keepAlive = keepAlive
        self.timeout = timeout
    }
}

extension GatewayConfig {
    /// What a security review would flag in this configuration (read from `file`), one line each: secrets sent in clear
    /// text beyond this machine, and secret files, the configuration and the state directory open to other users. Said
    /// by `config check` and at every start, not refused: a hall's network may be closed, and the owner decides.
    public func securityWarnings(file: String?) -> [String] {
        var warnings: [String] = []
        func beyond(_ host: String) -> Bool { !APISettings.isLoopback(host) }
        for sink in sinks {
            switch sink.kind {
            case .http(let http) where http.url.lowercased().hasPrefix("http://") && http.tokenFile != nil:
                let host = URL(string: http.url)?.host ?? http.url
                if beyond(host) { warnings.append("sink \(sink.name): its token goes to \(host) in clear text (http://): use https://") }
            case .mqtt(let mqtt) where mqtt.tls == nil && mqtt.passwordFile != nil && beyond(mqtt.host):
                warnings.append("sink \(sink.name): its password goes to \(mqtt.host) in clear text: set tls: true")
            case .postgres(let postgres) where postgres.tlsMode == .disable && beyond(postgres.host):
                warnings.append("sink \(sink.name): its password and the events go to \(postgres.host) unencrypted "
                                + "(tls-mode: disable): use tls-mode: verify-full")
            default:
                break
            }
        }
        if api.enabled, beyond(api.host) {
            warnings.append("api: the bearer token crosses the network in clear text (the API has no TLS); keep the hall's "
                            + "network closed, or listen on loopback behind a TLS proxy")
        }
        func mode(_ path: String) -> mode_t? {
            var status = stat()
            return stat(path, &status) == 0 ? status.st_mode & 0o777 : nil
        }
        let secrets = sinks.flatMap { sink -> [String?] in
            switch sink.kind {
            case .http(let http): [http.tokenFile, http.tls.keyFile]
            case .postgres(let postgres): [postgres.passwordFile, postgres.tls.keyFile]
            case .mqtt(let mqtt): [mqtt.passwordFile, mqtt.tls?.keyFile]
            case .sqlite: []
            }
        } + [api.tokenFile]
        for secret in Set(secrets.compactMap { $0 }).sorted() {
            if let bits = mode(secret), bits & 0o007 != 0 {
                warnings.append("\(secret) can be read by every user of the machine (mode \(String(bits, radix: 8))): "
                                + "chmod 640 it, owned by the gateway's group")
            }
        }
        if let file, let bits = mode(file), bits & 0o002 != 0 {
            warnings.append("\(file) can be changed by every user of the machine (mode \(String(bits, radix: 8))): chmod o-w")
        }
        if let bits = mode(stateDirectory), bits & 0o002 != 0 {
            warnings.append("\(stateDirectory) can be written by every user of the machine (mode "
                            + "\(String(bits, radix: 8))): chmod o-w, or another user could put files in the gateway's way")
        }
        return warnings
    }
}
