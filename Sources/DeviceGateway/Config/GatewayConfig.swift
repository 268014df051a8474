public import Foundation

/// A hall's gateway configuration: one YAML file.
public struct GatewayConfig: Sendable {
    /// The hall this gateway serves.
    public var hall: Hall
    /// Where the outbox and other state live; relative paths are taken from the config file's folder.
    public var stateDirectory: String
    /// Where device profiles are looked up.
    public var profilesDirectory: String
    /// The physical lines and network endpoints.
    public var buses: [BusConfig]
    /// The devices on them.
    public var devices: [DeviceConfig]
    /// Where events go.
    public var sinks: [SinkConfig]

    /// Creates a configuration.
    public init(
        hall: Hall, stateDirectory: String, profilesDirectory: String,
        buses: [BusConfig], devices: [DeviceConfig], sinks: [SinkConfig]
    ) {
        self.hall = hall
        self.stateDirectory = stateDirectory
        self.profilesDirectory = profilesDirectory
        self.buses = buses
        self.devices = devices
        self.sinks = sinks
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

    /// Creates a bus.
    public init(id: String, transport: Transport, responseTimeout: Duration = .milliseconds(500),
                pollInterval: Duration = .milliseconds(500)) {
        self.id = id
        self.transport = transport
        self.responseTimeout = responseTimeout
        self.pollInterval = pollInterval
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

    /// Creates a device.
    public init(id: String, profile: String, bus: String, address: Int, window: String?) {
        self.id = id
        self.profile = profile
        self.bus = bus
        self.address = address
        self.window = window
    }
}

/// Where committed events are forwarded.
public enum SinkConfig: Sendable, Equatable {
    /// The embedded default: a local SQLite event store.
    case sqlite(name: String, path: String)

    /// The sink's name, used for its delivery cursor.
    public var name: String {
        switch self {
        case .sqlite(let name, _): name
        }
    }
}
