import Logging

/// The one place device families are registered: which driver a bus's profiles call for, on which link.
///
/// A new family has one case here; docs/adding-a-family.md names its other files.
enum DriverRegistry {
    /// A configured device with its profile.
    struct Member {
        var device: DeviceConfig
        var profile: DeviceProfile
        /// The profile's poll interval, if it sets one (else the bus's).
        var pollInterval: Duration?
        /// How the profile recognises its model (`identify:`), if it can.
        var identify: IdentifyRule?
    }

    /// The engine for one bus, its driver chosen from its devices' profiles.
    static func bus(for bus: BusConfig, members: [Member], hallId: String, outbox: Outbox, logger: Logger,
                    clock: any BusClock = SystemBusClock(),
                    onCommit: @escaping BusCommitter.Observer) throws(GatewayError) -> any Bus {
        let opener: any LinkOpener
        let timing: LineTiming
        switch bus.transport {
        case .modbusTCP(let host, let port):
            // Several devices behind one connection keep it busy: it gets a thread, as a serial line does.
            opener = members.count > 1
                ? SocketLinkOpener(host: host, port: port, clock: clock, label: "bus.\(bus.id)")
                : TCPLinkOpener(host: host, port: port, clock: clock)
            timing = .instant
        case .modbusRTU(let settings):
            opener = SerialLinkOpener(settings: settings, clock: clock, label: "bus.\(bus.id)")
            timing = .serial(settings, silenceBetweenFrames: true)
        case .serial(let settings):
            opener = SerialLinkOpener(settings: settings, clock: clock, label: "bus.\(bus.id)")
            timing = .serial(settings, silenceBetweenFrames: false)
        }
        let intervals = Dictionary(members.map { ($0.device.id, $0.pollInterval) }, uniquingKeysWith: { first, _ in first })
        return try driver(for: bus, members: members, hallId: hallId, EngineBuilder(
            bus: bus, opener: opener, clock: clock, timing: timing, hallId: hallId, intervals: intervals, outbox: outbox,
            logger: logger, onCommit: onCommit))
    }

    /// Chooses the driver a bus's profiles call for and hands it to `use`: the engine runs it, a probe polls once.
    static func driver<Use: DriverUse>(for bus: BusConfig, members: [Member], hallId: String,
                                       _ use: Use) throws(GatewayError) -> Use.Outcome {
        guard let first = members.first else {
            throw GatewayError(.profileMismatch, "bus \(bus.id): no devices on it")
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
            let framing: ModbusFraming = if case .modbusTCP = bus.transport { .tcp } else { .rtu }
            let identities = Dictionary(
                members.compactMap { member in member.identify.map { (member.device.id, $0) } },
                uniquingKeysWith: { first, _ in first })
            return try use.use(ModbusDriver(members: modbus, framing: framing, hallId: hallId,
                                            pollInterval: bus.pollInterval, responseTimeout: bus.responseTimeout,
                                            identities: identities))
        case .serial:
            guard let line = first.profile.lineProtocol else {
                throw GatewayError(.profileMismatch, "\(first.device.id): \(first.profile.model) is a Modbus device (bus \(bus.id) is serial)")
            }
            switch line {
            case .ff68:
                let ff68 = try members.map { member throws(GatewayError) -> (device: DeviceConfig, member: FF68Driver.Member) in
                    switch member.profile {
                    case .ff68Evaluator(let profile): (member.device, .evaluator(profile))
                    case .ff68Caller(let profile): (member.device, .caller(profile))
                    default: throw mismatch(member, line.rawValue)
                    }
                }
                return try use.use(FF68Driver(members: ff68, hallId: hallId))
            case .qsystem:
                let qsystem = try members.map { member throws(GatewayError) -> (device: DeviceConfig, member: QSystemDriver.Member) in
                    switch member.profile {
                    case .qsystemBox(let profile): (member.device, .box(profile))
                    case .qsystemBoard(let profile): (member.device, .board(profile))
                    default: throw mismatch(member, line.rawValue)
                    }
                }
                return try use.use(QSystemDriver(members: qsystem, hallId: hallId))
            case .onbon:
                let boards = try members.map { member throws(GatewayError) -> (device: DeviceConfig, profile: OnbonBoardProfile) in
                    guard case .onbonBoard(let profile) = member.profile else { throw mismatch(member, line.rawValue) }
                    return (member.device, profile)
                }
                return try use.use(OnbonDriver(members: boards, hallId: hallId))
            case .escPos:
                guard members.count == 1, case .escPosPrinter(let profile) = first.profile else {
                    throw GatewayError(.profileMismatch, "bus \(bus.id): an ESC/POS printer has a line of its own")
                }
                return try use.use(PrinterDriver(device: first.device, profile: profile, hallId: hallId))
            }
        }
    }

    /// Builds the bus's engine around the chosen driver.
    private struct EngineBuilder: DriverUse {
        let bus: BusConfig
        let opener: any LinkOpener
        let clock: any BusClock
        let timing: LineTiming
        let hallId: String
        let intervals: [String: Duration?]
        let outbox: Outbox
        let logger: Logger
        let onCommit: BusCommitter.Observer

        func use<Driver: BusDriver>(_ driver: Driver) -> any Bus {
            BusEngine(config: bus, opener: opener, clock: clock, timing: timing, hallId: hallId, driver: driver,
                      pollIntervals: intervals, outbox: outbox, logger: logger, onCommit: onCommit)
        }
    }
}

/// What is done with a bus's driver once the registry has chosen it.
protocol DriverUse {
    associatedtype Outcome
    func use<Driver: BusDriver>(_ driver: Driver) throws(GatewayError) -> Outcome
}

/// The driver the engine's loop is compiled for ahead of the others (`@_specialize` in `BusEngine.run`): the family
/// of the busiest lines, a Modbus TCP bus at tens of thousands of polls a second.
typealias SpecializedDriver = ModbusDriver
