import Logging

/// The one place device families are registered: which driver a bus's profiles call for, on which link.
///
/// A new family is its codec (Sources/Protocols), its driver (a `BusDriver` in this folder), its profile kind
/// (Sources/DeviceGateway/Profiles) and one case here; see docs/adding-a-family.md.
enum DriverRegistry {
    /// A configured device with its profile.
    struct Member {
        var device: DeviceConfig
        var profile: DeviceProfile
        /// The profile's poll interval, if it sets one (else the bus's).
        var pollInterval: Duration?
    }

    /// The engine for one bus, its driver chosen from its devices' profiles.
    static func bus(for bus: BusConfig, members: [Member], hallId: String, outbox: Outbox, logger: Logger,
                    clock: any BusClock = SystemBusClock(),
                    onCommit: @escaping BusCommitter.Observer) throws(GatewayError) -> any Bus {
        guard let first = members.first else {
            throw GatewayError(.profileMismatch, "bus \(bus.id): no devices on it")
        }
        let intervals = Dictionary(members.map { ($0.device.id, $0.pollInterval) }, uniquingKeysWith: { first, _ in first })
        func engine<Driver: BusDriver>(_ driver: Driver, _ opener: any LinkOpener, _ timing: LineTiming) -> any Bus {
            BusEngine(config: bus, opener: opener, clock: clock, timing: timing, hallId: hallId, driver: driver,
                      pollIntervals: intervals, outbox: outbox, logger: logger, onCommit: onCommit)
        }
        func mismatch(_ member: Member, _ speaks: String) -> GatewayError {
            GatewayError(.profileMismatch, "\(member.device.id): \(member.profile.model) does not speak \(speaks) like bus \(bus.id)")
        }

        switch bus.transport {
        case .modbusRTU, .modbusTCP:
            let modbus = try members.map { member throws(GatewayError) -> (device: DeviceConfig, member: ModbusDriver.Member) in
                switch member.profile {
                case .modbusEvaluator(let profile): (member.device, .pad(profile))
                case .modbusBoard(let profile): (member.device, .board(profile))
                default: throw mismatch(member, "Modbus")
                }
            }
            let opener: any LinkOpener
            let timing: LineTiming
            let framing: ModbusFraming
            switch bus.transport {
            case .modbusTCP(let host, let port):
                opener = TCPLinkOpener(host: host, port: port, clock: clock)
                timing = .instant
                framing = .tcp
            case .modbusRTU(let settings), .serial(let settings):
                opener = SerialLinkOpener(settings: settings, clock: clock, label: "bus.\(bus.id)")
                timing = .serial(settings, silenceBetweenFrames: true)
                framing = .rtu
            }
            return engine(ModbusDriver(members: modbus, framing: framing, hallId: hallId, pollInterval: bus.pollInterval,
                                       responseTimeout: bus.responseTimeout), opener, timing)
        case .serial(let settings):
            guard let line = first.profile.lineProtocol else {
                throw GatewayError(.profileMismatch, "\(first.device.id): \(first.profile.model) is a Modbus device (bus \(bus.id) is serial)")
            }
            let opener = SerialLinkOpener(settings: settings, clock: clock, label: "bus.\(bus.id)")
            let timing = LineTiming.serial(settings, silenceBetweenFrames: false)
            switch line {
            case .ff68:
                let ff68 = try members.map { member throws(GatewayError) -> (device: DeviceConfig, member: FF68Driver.Member) in
                    switch member.profile {
                    case .ff68Evaluator(let profile): (member.device, .evaluator(profile))
                    case .ff68Caller(let profile): (member.device, .caller(profile))
                    default: throw mismatch(member, line.rawValue)
                    }
                }
                return engine(FF68Driver(members: ff68, hallId: hallId), opener, timing)
            case .qsystem:
                let qsystem = try members.map { member throws(GatewayError) -> (device: DeviceConfig, member: QSystemDriver.Member) in
                    switch member.profile {
                    case .qsystemBox(let profile): (member.device, .box(profile))
                    case .qsystemBoard(let profile): (member.device, .board(profile))
                    default: throw mismatch(member, line.rawValue)
                    }
                }
                return engine(QSystemDriver(members: qsystem, hallId: hallId), opener, timing)
            case .onbon:
                let boards = try members.map { member throws(GatewayError) -> (device: DeviceConfig, profile: OnbonBoardProfile) in
                    guard case .onbonBoard(let profile) = member.profile else { throw mismatch(member, line.rawValue) }
                    return (member.device, profile)
                }
                return engine(OnbonDriver(members: boards, hallId: hallId), opener, timing)
            case .escPos:
                guard members.count == 1, case .printer(let profile) = first.profile else {
                    throw GatewayError(.profileMismatch, "bus \(bus.id): an ESC/POS printer has a line of its own")
                }
                return engine(PrinterDriver(device: first.device, profile: profile, hallId: hallId), opener, timing)
            }
        }
    }
}
