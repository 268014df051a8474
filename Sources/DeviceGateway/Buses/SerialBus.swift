import Foundation
import Protocols
public import Logging

/// The one owner of a raw serial line (ESC/POS, Onbon BX, FF 68, QSystem): one request in flight,
/// commands before polls, unprompted frames (key presses) heard between polls.
///
/// Runs on its own serial queue (see `BusExecutor`): termios reads block here, never on the
/// cooperative pool. Events are committed before any acknowledgement goes back to a device.
public actor SerialBus<Driver: LineDriver>: Bus {
    private nonisolated let executor: BusExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public nonisolated let config: BusConfig
    private let settings: SerialSettings
    private var driver: Driver
    private var decoder: Driver.Decoder
    private var line: SerialLine?
    private let logger: Logger
    private let committer: BusCommitter
    private var reporter: ConnectionReporter
    private var health: DeviceHealth
    private var commands: [(requests: [LineRequest], done: CheckedContinuation<Void, any Error>)] = []
    /// What the current cycle has read but not committed yet.
    private var pendingEvents: [CloudEvent] = []
    private var pendingReplies: [[UInt8]] = []
    /// When the last byte arrived; a partial frame older than `quietGap` will not be completed.
    private var lastByteAt = ContinuousClock.now
    /// Longer than any gap inside a frame, USB adapters' 16 ms latency timer included.
    static var quietGap: Duration { .milliseconds(50) }

    /// Creates the bus; `settings` is the line the driver's devices hang on.
    public init(config: BusConfig, settings: SerialSettings, hallId: String, driver: Driver, outbox: Outbox,
                logger: Logger, onCommit: @escaping ModbusBus.CommitObserver) {
        executor = BusExecutor(label: "bus.\(config.id)")
        self.config = config
        self.settings = settings
        self.driver = driver
        decoder = driver.makeDecoder()
        var logger = logger
        logger[metadataKey: "bus.id"] = "\(config.id)"
        self.logger = logger
        committer = BusCommitter(busId: config.id, outbox: outbox, logger: logger, onCommit: onCommit)
        reporter = ConnectionReporter(busId: config.id, logger: logger, retryDelay: ModbusBus.reconnectDelay)
        health = DeviceHealth(busId: config.id, hallId: hallId, logger: logger)
    }

    /// Carries out a command on a device; returns once its frames were sent and answered (or not expected to be).
    public func send(_ command: HallCommand, to deviceId: String) async throws {
        guard let device = driver.devices.first(where: { $0.id == deviceId }) else {
            throw GatewayError(.deviceError, "no device \(deviceId) on bus \(config.id)")
        }
        let requests = try driver.requests(for: command, to: device)
        try await withCheckedThrowingContinuation { continuation in
            commands.append((requests, continuation))
        }
    }

    /// Polls and listens until `stop` fires; what was read is committed before it returns.
    public func run(until stop: StopSignal) async {
        while !stop.isStopped {
            guard let line = openIfNeeded() else {
                _ = await committer.commit(health.unreachable(
                    driver.devices, reason: reporter.lastError ?? "port unavailable", at: Date()))
                failCommands(GatewayError(.portUnavailable, reporter.lastError ?? "port unavailable"))
                await stop.sleep(for: ModbusBus.reconnectDelay)
                continue
            }
            let started = ContinuousClock.now
            // Lets `send` into the actor even when polls fill the whole interval.
            await Task.yield()
            await runCommands(on: line)
            for request in driver.pollRequests() {
                await runCommands(on: line)
                exchange(request, on: line)
            }
            await commitPending(on: line)
            // Between polls, listen: pads and callers speak unprompted.
            while !stop.isStopped, ContinuousClock.now - started < config.pollInterval {
                // Lets `send` into the actor: without a suspension here the loop would monopolise it.
                await Task.yield()
                await runCommands(on: line)
                listen(on: line, for: .milliseconds(20))
                await commitPending(on: line)
            }
        }
        await commitPending(on: line)
        failCommands(GatewayError(.portUnavailable, "bus \(config.id) stopped"))
        line = nil
        logger.info("bus stopped")
    }

    private func openIfNeeded() -> SerialLine? {
        if let line { return line }
        do {
            let opened = try SerialLine(settings: settings)
            reporter.opened(settings.port)
            decoder = driver.makeDecoder()
            line = opened
            return opened
        } catch {
            reporter.failed(error.message)
            return nil
        }
    }

    private func runCommands(on line: SerialLine) async {
        while !commands.isEmpty {
            let command = commands.removeFirst()
            var failure: (any Error)?
            for request in command.requests where !exchange(request, on: line) {
                failure = GatewayError(.deviceTimeout, "\(request.device): no answer to \(request.purpose) within \(config.responseTimeout)")
                break
            }
            await commitPending(on: line)
            if let failure { command.done.resume(throwing: failure) } else { command.done.resume() }
        }
    }

    /// Sends a request and, when it expects one, waits for its answer. Returns whether it was answered.
    @discardableResult
    private func exchange(_ request: LineRequest, on line: SerialLine) -> Bool {
        do {
            try line.write(request.bytes)
        } catch {
            dropLine(error.message)
            return false
        }
        guard request.expectsAnswer else { return true }
        let deadline = ContinuousClock.now + config.responseTimeout
        while ContinuousClock.now < deadline {
            if receive(on: line, for: deadline - ContinuousClock.now, inFlight: request) { return true }
            if self.line == nil { return false }
        }
        line.discardInput()
        if let device = driver.devices.first(where: { $0.id == request.device }) {
            pendingEvents += health.missed(
                device, reason: "no answer to \(request.purpose) within \(config.responseTimeout)", at: Date())
        }
        return false
    }

    private func listen(on line: SerialLine, for duration: Duration) {
        _ = receive(on: line, for: duration, inFlight: nil)
    }

    /// Reads what arrives within `duration` and hands every frame to the driver. Returns whether a
    /// frame answered the request in flight.
    private func receive(on line: SerialLine, for duration: Duration, inFlight request: LineRequest?) -> Bool {
        let bytes: [UInt8]
        do {
            bytes = try line.read(timeout: duration)
        } catch {
            dropLine(error.message)
            return false
        }
        var answered = false
        let now = Date()
        // A quiet line ends any partial frame: a truncated one must not hold back what follows it.
        let frames: [Driver.Decoder.Frame]
        if !bytes.isEmpty {
            lastByteAt = .now
            frames = decoder.decode(bytes)
        } else if decoder.bufferedByteCount > 0, ContinuousClock.now - lastByteAt >= Self.quietGap {
            frames = decoder.flush()
        } else {
            frames = []
        }
        for frame in frames {
            let reaction = driver.handle(frame, inFlight: request, at: now)
            if let from = reaction.from, let device = driver.devices.first(where: { $0.id == from }) {
                pendingEvents += health.answered(device, at: now)
            }
            pendingEvents += reaction.events
            pendingReplies += reaction.repliesAfterCommit
            answered = answered || reaction.answersRequest
        }
        return answered
    }

    /// Commits what was read, then sends the acknowledgements that depended on the commit.
    private func commitPending(on line: SerialLine?) async {
        guard !pendingEvents.isEmpty || !pendingReplies.isEmpty else { return }
        let events = pendingEvents
        let replies = pendingReplies
        pendingEvents = []
        pendingReplies = []
        // Unacknowledged frames are sent again by the devices that expect an acknowledgement.
        guard await committer.commit(events), let line else { return }
        for reply in replies {
            do {
                try line.write(reply)
            } catch {
                dropLine(error.message)
                return
            }
        }
    }

    private func dropLine(_ message: String) {
        logger.error("bus \(config.id): \(message); reopening")
        line = nil
    }

    private func failCommands(_ error: GatewayError) {
        let waiting = commands
        commands = []
        for command in waiting { command.done.resume(throwing: error) }
    }
}
