import Logging

/// Builds the serial bus for a line from the protocol its devices' profiles speak.
enum LineDrivers {
    static func bus(for bus: BusConfig, settings: SerialSettings, members: [(device: DeviceConfig, profile: DeviceProfile)],
                    hallId: String, outbox: Outbox, logger: Logger,
                    onCommit: @escaping ModbusBus.CommitObserver) throws(GatewayError) -> any Bus {
        guard let first = members.first else {
            throw GatewayError(.profileMismatch, "bus \(bus.id): no devices on this serial line")
        }
        guard let line = first.profile.lineProtocol else {
            throw GatewayError(.profileMismatch, "\(first.device.id): \(first.profile.model) is a Modbus device (bus \(bus.id) is serial)")
        }
        throw GatewayError(.profileMismatch, "bus \(bus.id): \(line.rawValue) lines are not driven yet")
    }
}
