public import Logging
import Foundation
public import ServiceLifecycle

/// The gateway: buses polling devices into the outbox, forwarders moving the outbox to the sinks.
///
/// A `Service`: on graceful shutdown (SIGINT/SIGTERM through a `ServiceGroup`) the buses finish and
/// commit the cycle in flight, the forwarders deliver what is committed, then `run()` returns.
public final class Gateway: Service {
    public let config: GatewayConfig
    public let outbox: Outbox
    private let buses: [any Bus]
    private let forwarders: [Forwarder]
    private let logger: Logger

    /// Sets up the outbox, sinks and buses. Fails only for what makes the whole gateway useless
    /// (an outbox that cannot be written, a profile that cannot be read); a missing port is not that.
    public init(config: GatewayConfig, profiles: ProfileLibrary, logger: Logger,
                onCommit: @escaping ModbusBus.CommitObserver = { _ in }) throws {
        self.config = config
        self.logger = logger
        let outbox = try Outbox.open(
            path: (config.stateDirectory as NSString).appendingPathComponent("outbox.sqlite"), policy: config.outbox,
            logger: logger)
        self.outbox = outbox
        forwarders = try config.sinks.map { sink in
            Forwarder(outbox: outbox, sink: try SinkFactory.make(sink, hallId: config.hall.id, logger: logger),
                      config: sink, logger: logger)
        }
        var profileCache: [String: DeviceProfile] = [:]
        buses = try config.buses.compactMap { bus in
            let members = try config.devices.filter { $0.bus == bus.id }.map { device in
                let profile = try profileCache[device.profile] ?? profiles.profile(named: device.profile)
                profileCache[device.profile] = profile
                return (device: device, profile: profile)
            }
            guard !members.isEmpty else {
                // Nothing to poll; opening the port would only hold it from a technician's tools.
                logger.warning("bus \(bus.id) has no devices in the configuration; its port is left closed")
                return nil
            }
            switch bus.transport {
            case .modbusRTU, .modbusTCP:
                var pads: [ModbusEvaluatorDriver] = []
                var boards: [ModbusBoardDriver] = []
                for (device, profile) in members {
                    switch profile {
                    case .modbusEvaluator(let evaluator):
                        pads.append(ModbusEvaluatorDriver(device: device, profile: evaluator, hallId: config.hall.id))
                    case .modbusBoard(let board):
                        boards.append(ModbusBoardDriver(device: device, profile: board, hallId: config.hall.id))
                    default:
                        throw GatewayError(.profileMismatch, "\(device.id): \(profile.model) is not a Modbus device (bus \(bus.id))")
                    }
                }
                return ModbusBus(config: bus, hallId: config.hall.id, drivers: pads, boards: boards, outbox: outbox,
                                 logger: logger, onCommit: onCommit) as any Bus
            case .serial(let settings):
                return try LineDrivers.bus(for: bus, settings: settings, members: members, hallId: config.hall.id,
                                           outbox: outbox, logger: logger, onCommit: onCommit)
            }
        }
    }

    /// Carries out a command on a device, on the bus that owns it (commands go before that bus's polls).
    public func send(_ command: HallCommand, to deviceId: String) async throws {
        guard let device = config.devices.first(where: { $0.id == deviceId }),
            let bus = buses.first(where: { $0.config.id == device.bus })
        else { throw GatewayError(.deviceError, "no device \(deviceId) in hall \(config.hall.id)") }
        try await bus.send(command, to: deviceId)
    }

    public func run() async throws {
        let stop = StopSignal()
        await withGracefulShutdownHandler {
            await run(until: stop)
        } onGracefulShutdown: {
            stop.stop()
        }
    }

    /// Runs until `stop` fires, then finishes the cycles in flight and delivers what they committed.
    public func run(until stop: StopSignal) async {
        let forwardersStop = StopSignal()
        do {
            try await outbox.register(sinks: config.sinks.map(\.name))
        } catch {
            logger.error("outbox: cannot record the configured sinks: \(error)")
        }
        logger.info(
            "gateway for hall \(config.hall.id): \(buses.count) buses, \(config.devices.count) devices, outbox \(outbox.path)")
        await withTaskGroup(of: Void.self) { group in
            for forwarder in forwarders {
                group.addTask { await forwarder.run(until: forwardersStop) }
            }
            group.addTask { [outbox, logger] in
                while !forwardersStop.isStopped {
                    await forwardersStop.sleep(for: .seconds(60))
                    do {
                        try await outbox.prune()
                    } catch {
                        logger.warning("outbox: pruning delivered events failed: \(error)")
                    }
                }
            }
            await withTaskGroup(of: Void.self) { busGroup in
                for bus in buses {
                    busGroup.addTask { await bus.run(until: stop) }
                }
            }
            // Every cycle is committed; let the forwarders deliver it before returning.
            forwardersStop.stop()
        }
        logger.info("gateway stopped; everything read is committed")
    }
}
