import Foundation
public import Logging

/// The one owner of a Modbus line or endpoint: one request in flight, devices polled in turn.
///
/// Runs on its own serial queue (see `BusExecutor`), so libmodbus may block here. A device that does
/// not answer costs its own response timeout and nothing more; the others keep being polled.
public actor ModbusBus: Bus {
    /// What the bus hands to the gateway after each commit.
    public typealias CommitObserver = @Sendable ([CloudEvent]) -> Void

    private nonisolated let executor: BusExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public nonisolated let config: BusConfig
    private let outbox: Outbox
    private let logger: Logger
    private let committer: BusCommitter
    private var connection: ModbusConnection?
    private var reporter: ConnectionReporter
    private var health: DeviceHealth
    private var pads: [PadState]
    private var boards: [ModbusBoardDriver]
    /// Commands waiting for the next cycle: they go before its polls.
    private var commands: [(device: String, command: ModbusBoardDriver.PreparedCommand, done: CheckedContinuation<Void, any Error>)] = []
    /// Set when `run` has returned: commands are refused from then on.
    private var finished = false
    /// Events of a cycle whose commit failed (a full disk): committed with the next cycle's.
    private var uncommitted: [CloudEvent] = []
    /// The pads' cursors read with those events, committed with them.
    private var uncommittedCursors: [String: DeviceCursor] = [:]
    /// Since when the outbox refuses commits, while it does.
    private var refusingSince: Date?
    /// Ratings dropped from memory per pad (by source) while the outbox refused commits, not yet reported.
    private var memoryLosses: [String: MemoryLoss] = [:]

    private struct MemoryLoss {
        var since: Date
        var count: Int64 = 0
        var numbers: [Int64] = []
    }

    /// The pause before trying to open a missing port again.
    static let reconnectDelay = Duration.seconds(5)

    private struct PadState {
        var driver: ModbusEvaluatorDriver
        /// How far the pad's ratings were read (committed, or held in `uncommitted`): losses count from here.
        var cursor: DeviceCursor?
        /// When the pad was last read in this run.
        var lastReadAt: ContinuousClock.Instant?
    }

    /// Creates the bus with the pads and boards that hang on it.
    public init(config: BusConfig, hallId: String, drivers: [ModbusEvaluatorDriver], boards: [ModbusBoardDriver] = [],
                outbox: Outbox, logger: Logger, onCommit: @escaping CommitObserver) {
        self.executor = BusExecutor(label: "bus.\(config.id)")
        self.config = config
        self.outbox = outbox
        var logger = logger
        logger[metadataKey: "bus.id"] = "\(config.id)"
        self.logger = logger
        self.committer = BusCommitter(busId: config.id, outbox: outbox, logger: logger, onCommit: onCommit)
        self.reporter = ConnectionReporter(busId: config.id, logger: logger, retryDelay: Self.reconnectDelay)
        self.health = DeviceHealth(busId: config.id, hallId: hallId, logger: logger)
        self.pads = drivers.map { PadState(driver: $0) }
        self.boards = boards
    }

    /// Queues a command for a board; returns once it is written (its acknowledgement arrives as an event).
    public func send(_ command: HallCommand, to deviceId: String) async throws {
        guard let index = boards.firstIndex(where: { $0.device.id == deviceId }) else {
            if pads.contains(where: { $0.driver.device.id == deviceId }) {
                throw GatewayError(.commandRejected, "\(deviceId) on bus \(config.id) is an evaluator pad: it takes no \(command.name) command")
            }
            throw GatewayError(.deviceError, "no device \(deviceId) on bus \(config.id)")
        }
        if connection == nil, let error = reporter.lastError {
            throw GatewayError(.portUnavailable, "\(deviceId): bus \(config.id) is down: \(error)")
        }
        let prepared = try boards[index].prepare(command)
        // After `run` returned nobody would carry the command out: say so instead of waiting forever.
        guard !finished else { throw GatewayError(.portUnavailable, "\(deviceId): bus \(config.id) is stopped") }
        try await withCheckedThrowingContinuation { continuation in
            commands.append((deviceId, prepared, continuation))
        }
    }

    public func deviceStates() -> [DeviceState] {
        health.states(of: boards.map(\.device) + pads.map(\.driver.device))
    }

    /// Polls until `stop` fires; the cycle in flight is committed before it returns.
    public func run(until stop: StopSignal) async {
        for index in pads.indices {
            pads[index].cursor = try? await outbox.cursor(device: pads[index].driver.device.id)
        }
        while !stop.isStopped {
            let started = ContinuousClock.now
            guard let connection = openIfNeeded() else {
                let reason = reporter.lastError ?? "port unavailable"
                failCommands(reason)
                let unreachable = health.unreachable(pads.map(\.driver.device) + boards.map(\.device), reason: reason, at: Date())
                _ = await committer.commit(unreachable)
                await stop.sleep(for: Self.reconnectDelay)
                continue
            }
            await pollCycle(connection)
            await stop.sleep(for: config.pollInterval - (ContinuousClock.now - started))
        }
        connection = nil
        finished = true
        failCommands("the gateway is stopping")
        if !uncommitted.isEmpty {
            logger.critical("bus \(config.id): \(uncommitted.count) events could not be committed before the stop")
        }
        logger.info("bus stopped")
    }

    private func failCommands(_ reason: String) {
        let failed = commands
        commands.removeAll()
        for command in failed {
            command.done.resume(throwing: GatewayError(.portUnavailable, "\(command.device) on bus \(config.id): \(reason)"))
        }
    }

    /// Writes the queued commands, each in order, before the cycle's polls.
    private func runCommands(_ connection: ModbusConnection) {
        let queued = commands
        commands.removeAll()
        for command in queued {
            guard let index = boards.firstIndex(where: { $0.device.id == command.device }) else { continue }
            let device = boards[index].device
            do {
                if boards[index].lastCounter == nil {
                    // The counter must differ from what the board already acknowledged: read it first.
                    let block = boards[index].profile.block
                    let registers = try connection.readHoldingRegisters(unit: device.address, start: block.start, count: block.count)
                    uncommitted += boards[index].interpret(registers: registers, at: Date()).events
                    interFrameGap()
                }
                for write in command.command.writes {
                    try connection.writeRegisters(unit: device.address, start: write.start, values: write.values)
                    interFrameGap()
                }
                let counter = boards[index].counterWrite()
                try connection.writeRegisters(unit: device.address, start: counter.start, values: counter.values)
                interFrameGap()
                boards[index].written(command.command, counter: counter)
                command.done.resume()
            } catch {
                let reason = recover(from: error, connection: connection)
                interFrameGap()
                command.done.resume(throwing: GatewayError(.deviceError, "\(command.device): command not written: \(reason)"))
            }
        }
    }

    private func openIfNeeded() -> ModbusConnection? {
        if let connection { return connection }
        do {
            let opened = try ModbusConnection(transport: config.transport, responseTimeout: config.responseTimeout)
            try opened.connect()
            reporter.opened(opened.endpoint)
            connection = opened
            return opened
        } catch {
            reporter.failed(error.message)
            return nil
        }
    }

    private func pollCycle(_ connection: ModbusConnection) async {
        var events: [CloudEvent] = []
        var readings: [(index: Int, reading: ModbusEvaluatorDriver.Reading)] = []
        runCommands(connection)
        let now = Date()
        for index in boards.indices {
            let device = boards[index].device
            do {
                let registers = try connection.readHoldingRegisters(
                    unit: device.address, start: boards[index].profile.block.start, count: boards[index].profile.block.count)
                let reading = boards[index].interpret(registers: registers, at: now)
                events += health.answered(device, ready: reading.ready, at: now)
                events += reading.events
            } catch {
                events += health.missed(device, reason: recover(from: error, connection: connection), at: now)
            }
            interFrameGap()
        }
        for index in pads.indices {
            let driver = pads[index].driver
            let profile = driver.profile
            do {
                let registers = try connection.readHoldingRegisters(
                    unit: driver.device.address, start: profile.block.start, count: profile.block.count)
                let reading = driver.interpret(registers: registers, cursor: pads[index].cursor, at: now)
                events += health.answered(driver.device, ready: reading.ready, at: now)
                events += reading.events
                events += faults(in: reading, driver: driver, lastReadAt: pads[index].lastReadAt, at: now)
                // What was read is held (committed now, or kept in memory until a commit succeeds), so the
                // next read counts as lost only what the pad overwrote before anyone read it.
                pads[index].cursor = reading.cursor
                pads[index].lastReadAt = .now
                uncommittedCursors[driver.device.id] = reading.cursor
                readings.append((index, reading))
            } catch {
                events += health.missed(driver.device, reason: recover(from: error, connection: connection), at: now)
            }
            interFrameGap()
        }
        events = uncommitted + events
        uncommitted = []
        let cursors = Array(uncommittedCursors.values)
        guard await committer.commit(events + memoryLossFaults(at: now), cursors: cursors) else {
            // Nothing is acknowledged, so the pads keep their last 16 ratings too; what was read waits here.
            refusingSince = refusingSince ?? now
            uncommitted = events
            if events.count > BusCommitter.maximumUncommitted { dropOldestUncommitted(at: now) }
            return
        }
        refusingSince = nil
        uncommittedCursors = [:]
        memoryLosses = [:]
        for (index, reading) in readings {
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
    private func faults(in reading: ModbusEvaluatorDriver.Reading, driver: ModbusEvaluatorDriver,
                        lastReadAt: ContinuousClock.Instant?, at time: Date) -> [CloudEvent] {
        var faults: [(id: String, fault: DeviceFault)] = []
        if reading.lost > 0 {
            let ring = driver.profile.keyRing.count
            let cause: String
            if let lastReadAt {
                let gap = ContinuousClock.now - lastReadAt
                let milliseconds = gap.components.seconds * 1000 + gap.components.attoseconds / 1_000_000_000_000_000
                cause = gap > config.pollInterval * 3 + config.responseTimeout * 3
                    ? "the pad could not be read for \(milliseconds / 1000) s and more came in meanwhile than it keeps (\(ring))"
                    : "more came in between two polls (\(milliseconds) ms apart) than the pad keeps (\(ring))"
            } else {
                cause = "more came in than the pad keeps (\(ring)) while the gateway was not reading it (stopped or restarting)"
            }
            let last = reading.cursor.consumed - Int64(reading.events.count + reading.unknownKeys.count)
            let first = last - reading.lost + 1
            // The same loss read again after a crash has the same numbers, so the same id.
            let power = ModbusEvaluatorDriver.powerUp(bootId: reading.cursor.bootId, restarts: reading.cursor.restarts)
            faults.append(("ratings-lost-\(power)-\(first)-\(last)", DeviceFault(
                fault: "ratings-lost", detail: "\(reading.lost) ratings lost (numbers \(first)–\(last)): \(cause)",
                count: reading.lost)))
        }
        if let previous = reading.restartedFrom {
            // Once per restart: its id names the boot id and the restart.
            faults.append(("counter-restart-\(String(reading.cursor.bootId, radix: 16))-\(reading.cursor.restarts)", DeviceFault(
                fault: "counter-restarted",
                detail: "the pad's rating counter went back from \(previous % 65536) to \(reading.cursor.consumed) under the "
                    + "same boot id \(String(reading.cursor.bootId, radix: 16)): it restarted; its new ratings are taken "
                    + "from its acknowledge register")))
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

    /// Past the memory bound while the outbox refuses commits, the oldest held events go. The ratings among
    /// them (and the counts of `ratings-lost` faults among them) are tallied per pad outside the queue, so that
    /// the loss reaches the store exactly, with its cause, once a commit succeeds.
    private func dropOldestUncommitted(at time: Date) {
        let excess = uncommitted.count - BusCommitter.maximumUncommitted
        let dropped = uncommitted.prefix(excess)
        uncommitted.removeFirst(excess)
        var ratings = 0
        for event in dropped {
            var loss = memoryLosses[event.source] ?? MemoryLoss(since: refusingSince ?? time)
            switch event.data {
            case .rating(let rating):
                loss.count += 1
                loss.numbers.append(rating.deviceCounter ?? 0)
                ratings += 1
            case .deviceFault(let fault) where fault.fault == "ratings-lost":
                loss.count += fault.count ?? 0
            default:
                continue
            }
            memoryLosses[event.source] = loss
        }
        let since = refusingSince.map { Int(time.timeIntervalSince($0)) } ?? 0
        logger.critical("""
            bus \(config.id): the outbox has refused commits for \(since) s; \(excess) oldest events held in memory \
            dropped (\(ratings) ratings among them)
            """)
    }

    /// The tallied memory losses as faults, one per pad, to commit with the next cycle.
    private func memoryLossFaults(at time: Date) -> [CloudEvent] {
        pads.compactMap { pad -> CloudEvent? in
            guard let loss = memoryLosses[pad.driver.source], loss.count > 0 else { return nil }
            let seconds = Int(time.timeIntervalSince(loss.since))
            let numbers = loss.numbers.isEmpty ? "" : " (numbers between \(loss.numbers.min()!) and \(loss.numbers.max()!))"
            let fault = DeviceFault(
                fault: "ratings-lost",
                detail: "\(loss.count) ratings lost\(numbers): the outbox refused commits for \(seconds) s (disk full?) "
                    + "and the gateway holds at most \(BusCommitter.maximumUncommitted) events per bus in memory",
                count: loss.count)
            return CloudEvent(
                id: "ratings-lost-memory-\(UUID().uuidString.lowercased())", source: pad.driver.source,
                type: HallEventType.deviceFault, time: time,
                subject: pad.driver.device.window.map(EventSource.windowSubject), data: .deviceFault(fault))
        }
    }

    /// Puts the line right after a failed request and says what went wrong.
    private func recover(from failure: any Error, connection: ModbusConnection) -> String {
        switch failure as? ModbusConnection.Failure {
        case .timeout:
            connection.flush()
            return "no answer within \(config.responseTimeout)"
        case .corrupted(let text):
            connection.flush()
            return "garbled answer: \(text)"
        case .exception(let code, let text):
            return "Modbus exception \(code): \(text)"
        case .link(let text):
            self.connection = nil
            return "line error: \(text)"
        case nil:
            return "\(failure)"
        }
    }

    /// The silence Modbus RTU requires between frames: 3.5 characters, at least 1.75 ms.
    /// libmodbus does not keep it (stephane/libmodbus PR #494), so the bus does.
    private func interFrameGap() {
        guard case .modbusRTU(let serial) = config.transport else { return }
        let gap = max(.microseconds(1750), serial.wireTime(characters: 7) / 2)
        usleep(UInt32(gap / .microseconds(1)))
    }
}
