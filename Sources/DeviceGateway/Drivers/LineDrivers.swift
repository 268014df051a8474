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
        func mismatch(_ device: DeviceConfig, _ profile: DeviceProfile) -> GatewayError {
            GatewayError(.profileMismatch, "\(device.id): \(profile.model) does not speak \(line.rawValue) like the rest of bus \(bus.id)")
        }
        func serialBus<Driver: LineDriver>(_ driver: Driver) -> any Bus {
            SerialBus(config: bus, settings: settings, hallId: hallId, driver: driver, outbox: outbox, logger: logger,
                      onCommit: onCommit)
        }
        switch line {
        case .ff68:
            let ff68 = try members.map { member throws(GatewayError) -> (device: DeviceConfig, member: FF68Driver.Member) in
                switch member.profile {
                case .ff68Evaluator(let profile): (member.device, .evaluator(profile))
                case .ff68Caller(let profile): (member.device, .caller(profile))
                default: throw mismatch(member.device, member.profile)
                }
            }
            return serialBus(FF68Driver(members: ff68, hallId: hallId))
        case .qsystem:
            let qsystem = try members.map { member throws(GatewayError) -> (device: DeviceConfig, member: QSystemDriver.Member) in
                switch member.profile {
                case .qsystemBox(let profile): (member.device, .box(profile))
                case .qsystemBoard(let profile): (member.device, .board(profile))
                default: throw mismatch(member.device, member.profile)
                }
            }
            return serialBus(QSystemDriver(members: qsystem, hallId: hallId))
        case .onbon:
            let boards = try members.map { member throws(GatewayError) -> (device: DeviceConfig, profile: OnbonBoardProfile) in
                guard case .onbonBoard(let profile) = member.profile else { throw mismatch(member.device, member.profile) }
                return (member.device, profile)
            }
            return serialBus(OnbonDriver(members: boards, hallId: hallId))
        case .escPos:
            guard members.count == 1, case .printer(let profile) = first.profile else {
                throw GatewayError(.profileMismatch, "bus \(bus.id): an ESC/POS printer has a line of its own")
            }
            return serialBus(PrinterDriver(device: first.device, profile: profile, hallId: hallId))
        }
    }
}
