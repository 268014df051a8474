import Foundation
public import Logging

/// The one owner of a Modbus line or endpoint: one request in flight, devices polled in turn.
///
/// Runs on its own serial queue (see `BusExecutor`), so libmodbus may block here. A device that does
/// not answer costs its own response timeout and nothing more; the others keep being polled.
public actor ModbusBus {
    /// What the bus hands to the gateway after each commit.
    public typealias CommitObserver = @Sendable ([CloudEvent]) -> Void

    private nonisolated let executor: BusExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public nonisolated let config: BusConfig
    private let hallId: String
    private let outbox: Outbox
    private let logger: Logger
    private let onCommit: CommitObserver
    private var connection: ModbusConnection?
    private var lastConnectError: String?
    private var pads: [PadState]

    /// Misses in a row before a device is reported offline.
    static let missesBeforeOffline = 3
    /// The pause before trying to open a missing port again.
    static let reconnectDelay = Duration.seconds(5)

    private struct PadState {
        var driver: ModbusEvaluatorDriver
        var cursor: DeviceCursor?
        var online: Bool?
        var misses = 0
        var pendingAcknowledge: UInt16?
    }

    /// Creates the bus with the pads that hang on it.
    public init(config: BusConfig, hallId: String, drivers: [ModbusEvaluatorDriver], outbox: Outbox,
                logger: Logger, onCommit: @escaping CommitObserver) {
        self.executor = BusExecutor(label: "bus.\(config.id)")
        self.config = config
        self.hallId = hallId
        self.outbox = outbox
        var logger = logger
        logger[metadataKey: "bus.id"] = "\(config.id)"
        self.logger = logger
        self.onCommit = onCommit
        self.pads = drivers.map { PadState(driver: $0) }
    }

    /// Polls until `stop` fires; the cycle in flight is committed before it returns.
    public func run(until stop: StopSignal) async {
        for index in pads.indices {
            pads[index].cursor = try? await outbox.cursor(device: pads[index].driver.device.id)
        }
        while !stop.isStopped {
            let started = ContinuousClock.now
            guard let connection = openIfNeeded() else {
                await commit(deviceChanges: markAll(online: false, reason: lastConnectError ?? "port unavailable"))
                await stop.sleep(for: Self.reconnectDelay)
                continue
            }
            await pollCycle(connection)
            await stop.sleep(for: config.pollInterval - (ContinuousClock.now - started))
        }
        connection = nil
        logger.info("bus stopped")
    }

    private func openIfNeeded() -> ModbusConnection? {
        if let connection { return connection }
        do {
            let opened = try ModbusConnection(transport: config.transport, responseTimeout: config.responseTimeout)
            try opened.connect()
            if lastConnectError != nil { logger.notice("bus \(config.id): \(opened.endpoint) is open again") }
            lastConnectError = nil
            connection = opened
            return opened
        } catch {
            if lastConnectError != error.message {
                logger.error("bus \(config.id): \(error.message); retrying every \(Self.reconnectDelay)")
            }
            lastConnectError = error.message
            return nil
        }
    }

    private func pollCycle(_ connection: ModbusConnection) async {
        var events: [CloudEvent] = []
        var cursors: [DeviceCursor] = []
        var readings: [(index: Int, reading: ModbusEvaluatorDriver.Reading)] = []
        let now = Date()
        for index in pads.indices {
            let driver = pads[index].driver
            let profile = driver.profile
            do {
                let registers = try connection.readHoldingRegisters(
                    unit: driver.device.address, start: profile.block.start, count: profile.block.count)
                let reading = driver.interpret(registers: registers, cursor: pads[index].cursor, at: now)
                events += statusChange(index, online: reading.ready,
                                       reason: reading.ready ? "answering" : "pad reports not ready")
                events += reading.events
                cursors.append(reading.cursor)
                readings.append((index, reading))
                events += faults(in: reading, driver: driver, at: now)
            } catch {
                events += missed(index, error, connection: connection)
            }
            interFrameGap()
        }
        guard await commit(events, cursors: cursors) else { return }
        for (index, reading) in readings {
            pads[index].cursor = reading.cursor
            let acknowledge = UInt16(truncatingIfNeeded: reading.cursor.consumed)
            guard reading.acknowledged != acknowledge else { continue }
            let driver = pads[index].driver
            do {
                try connection.writeRegister(unit: driver.device.address,
                                             address: driver.profile.acknowledgeRegister, value: acknowledge)
            } catch {
                // The ratings are committed; the pad will be acknowledged on the next poll.
                logger.warning("device \(driver.device.id): acknowledgement not written: \(error)")
            }
            interFrameGap()
        }
    }

    /// Lost and unmapped ratings become fault events for the duty officer, and log lines.
    private func faults(in reading: ModbusEvaluatorDriver.Reading, driver: ModbusEvaluatorDriver, at time: Date)
        -> [CloudEvent]
    {
        // A re-read after a crash reports the same loss under the same id.
        var faults: [(id: String, fault: DeviceFault)] = []
        if reading.lost > 0 {
            faults.append(("ratings-lost-\(String(reading.cursor.bootId, radix: 16))-\(reading.cursor.consumed)", DeviceFault(
                fault: "ratings-lost",
                detail: "\(reading.lost) ratings lost: more came in between two polls than the pad keeps "
                    + "(\(driver.profile.keyRing.count))")))
        }
        for code in reading.unknownKeys {
            faults.append((UUID().uuidString.lowercased(), DeviceFault(
                fault: "unknown-key", detail: "key code \(code) is not in profile \(driver.profile.model); rating skipped")))
        }
        return faults.map { id, fault in
            logger.error("device \(driver.device.id): \(fault.detail)")
            return CloudEvent(
                id: id, source: driver.source, type: HallEventType.deviceFault, time: time,
                subject: driver.device.window.map(EventSource.windowSubject), data: .deviceFault(fault))
        }
    }

    private func missed(_ index: Int, _ failure: any Error, connection: ModbusConnection) -> [CloudEvent] {
        let device = pads[index].driver.device
        let reason: String
        switch failure as? ModbusConnection.Failure {
        case .timeout:
            reason = "no answer within \(config.responseTimeout)"
            connection.flush()
        case .corrupted(let text):
            reason = "garbled answer: \(text)"
            connection.flush()
        case .exception(let code, let text):
            reason = "Modbus exception \(code): \(text)"
        case .link(let text):
            reason = "line error: \(text)"
            self.connection = nil
        case nil:
            reason = "\(failure)"
        }
        pads[index].misses += 1
        logger.debug("device \(device.id) at address \(device.address): \(reason)")
        guard pads[index].misses >= Self.missesBeforeOffline else { return [] }
        return statusChange(index, online: false, reason: reason)
    }

    /// An online/offline event when the device's state changes.
    private func statusChange(_ index: Int, online: Bool, reason: String) -> [CloudEvent] {
        if online { pads[index].misses = 0 }
        guard pads[index].online != online else { return [] }
        pads[index].online = online
        let device = pads[index].driver.device
        if online {
            logger.debug("device \(device.id) online")
        } else {
            logger.warning("device \(device.id) offline: \(reason)")
        }
        let status = DeviceStatusChanged(device: device.id, bus: config.id, address: device.address, reason: reason)
        return [
            CloudEvent(
                id: UUID().uuidString.lowercased(), source: pads[index].driver.source,
                type: online ? HallEventType.deviceOnline : HallEventType.deviceOffline, time: Date(),
                subject: device.window.map(EventSource.windowSubject), data: .deviceStatus(status))
        ]
    }

    private func markAll(online: Bool, reason: String) -> [CloudEvent] {
        pads.indices.flatMap { statusChange($0, online: online, reason: reason) }
    }

    private func commit(deviceChanges: [CloudEvent]) async {
        _ = await commit(deviceChanges, cursors: [])
    }

    /// Commits a cycle; on failure nothing is acknowledged, so the pads keep the ratings for the next try.
    private func commit(_ events: [CloudEvent], cursors: [DeviceCursor]) async -> Bool {
        guard !events.isEmpty || !cursors.isEmpty else { return true }
        CrashPoint.reached(.beforeCommit, withRatings: events)
        do {
            let inserted = try await outbox.commit(events, cursors: cursors)
            CrashPoint.reached(.afterCommit, withRatings: events)
            if !inserted.isEmpty { onCommit(inserted) }
            return true
        } catch {
            logger.error("bus \(config.id): outbox commit failed, ratings stay on the pads: \(error)")
            return false
        }
    }

    /// The silence Modbus RTU requires between frames: 3.5 characters, at least 1.75 ms.
    /// libmodbus does not keep it (stephane/libmodbus PR #494), so the bus does.
    private func interFrameGap() {
        guard case .modbusRTU(let serial) = config.transport else { return }
        let bitsPerCharacter = 1 + serial.dataBits + (serial.parity == .none ? 0 : 1) + serial.stopBits
        let microseconds = max(1750, 3_500_000 * bitsPerCharacter / serial.baud)
        usleep(UInt32(microseconds))
    }
}
