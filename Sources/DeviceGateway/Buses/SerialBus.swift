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
    private var pendingCursors: [DeviceCursor] = []
    private var pendingReplies: [[UInt8]] = []
    private let outbox: Outbox
    /// When the last byte arrived; a partial frame older than `quietGap` will not be completed.
    private var lastByteAt = ContinuousClock.now
    /// Longer than any gap inside a frame, USB adapters' 16 ms latency timer included.
    static var quietGap: Duration { .milliseconds(50) }
    /// Set when `run` has returned: commands are refused from then on.
    private var finished = false
    /// What we wrote and may hear back: two-wire RS-485 adapters without echo suppression return it.
    private var echo: (frames: [[UInt8]], until: ContinuousClock.Instant) = ([], .now)
    /// Received bytes that so far match `echo`, held until it is clear whether they are our echo.
    private var echoHeld: [UInt8] = []

    /// Creates the bus; `settings` is the line the driver's devices hang on.
    public init(config: BusConfig, settings: SerialSettings, hallId: String, driver: Driver, outbox: Outbox,
                logger: Logger, onCommit: @escaping ModbusBus.CommitObserver) {
        executor = BusExecutor(label: "bus.\(config.id)")
        self.config = config
        self.settings = settings
        self.driver = driver
        self.outbox = outbox
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
        // After `run` returned nobody would carry the command out: say so instead of waiting forever.
        guard !finished else { throw GatewayError(.portUnavailable, "\(deviceId): bus \(config.id) is stopped") }
        try await withCheckedThrowingContinuation { continuation in
            commands.append((requests, continuation))
        }
    }

    public func deviceStates() -> [DeviceState] { health.states(of: driver.devices) }

    /// Polls and listens until `stop` fires; what was read is committed before it returns.
    public func run(until stop: StopSignal) async {
        var cursors: [DeviceCursor] = []
        for device in driver.devices {
            if let cursor = try? await outbox.cursor(device: device.id) { cursors.append(cursor) }
        }
        driver.restore(cursors)
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
            for request in driver.pollRequests() where self.line != nil {
                await runCommands(on: line)
                exchange(request, on: line)
            }
            await commitPending(on: line)
            // Between polls, listen: pads and callers speak unprompted. A dropped line goes back to reopening.
            while !stop.isStopped, self.line != nil, ContinuousClock.now - started < config.pollInterval {
                // Lets `send` into the actor: without a suspension here the loop would monopolise it.
                await Task.yield()
                await runCommands(on: line)
                listen(on: line, for: .milliseconds(20))
                await commitPending(on: line)
            }
        }
        await commitPending(on: line)
        finished = true
        failCommands(GatewayError(.portUnavailable, "bus \(config.id) stopped"))
        if !pendingEvents.isEmpty {
            logger.critical("bus \(config.id): \(pendingEvents.count) events could not be committed before the stop")
        }
        line = nil
        logger.info("bus stopped")
    }

    private func openIfNeeded() -> SerialLine? {
        if let line { return line }
        do {
            let opened = try SerialLine(settings: settings)
            reporter.opened(settings.port)
            decoder = driver.makeDecoder()
            driver.lineOpened()
            line = opened
            return opened
        } catch {
            reporter.failed(error.message)
            return nil
        }
    }

    private func runCommands(on line: SerialLine) async {
        while !commands.isEmpty {
            guard self.line != nil else {
                failCommands(GatewayError(.portUnavailable, "bus \(config.id): \(reporter.lastError ?? "line lost")"))
                return
            }
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
        if request.discardsStaleInput {
            line.discardInput()
            _ = decoder.flush()
        }
        do {
            try line.write(request.bytes)
        } catch {
            dropLine(error.message)
            return false
        }
        expectEcho(of: request.bytes)
        guard request.expectsAnswer else { return true }
        // The timeout runs from when the last byte is on the wire, not from when write() returned.
        let deadline = ContinuousClock.now + settings.wireTime(characters: request.bytes.count) + config.responseTimeout
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
        var bytes: [UInt8]
        do {
            bytes = try line.read(timeout: duration)
        } catch {
            dropLine(error.message)
            return false
        }
        bytes = withoutEcho(bytes)
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
            pendingCursors += reaction.cursors
            pendingReplies += reaction.repliesAfterCommit
            answered = answered || reaction.answersRequest
        }
        return answered
    }

    /// Commits what was read, then sends the acknowledgements that depended on the commit.
    private func commitPending(on line: SerialLine?) async {
        guard !pendingEvents.isEmpty || !pendingReplies.isEmpty || !pendingCursors.isEmpty else { return }
        let events = pendingEvents
        let cursors = pendingCursors
        let replies = pendingReplies
        pendingEvents = []
        pendingCursors = []
        pendingReplies = []
        // Unacknowledged frames are sent again by the devices that expect an acknowledgement; the events of
        // devices that do not (a QSystem key, a printer's change) wait here for the next commit.
        guard await committer.commit(events, cursors: cursors) else {
            pendingCursors = cursors + pendingCursors
            pendingEvents = events + pendingEvents
            if pendingEvents.count > BusCommitter.maximumUncommitted {
                let dropped = pendingEvents.count - BusCommitter.maximumUncommitted
                pendingEvents.removeFirst(dropped)
                logger.critical("bus \(config.id): outbox still refuses commits; \(dropped) oldest uncommitted events dropped")
            }
            return
        }
        guard let line else { return }
        for reply in replies {
            do {
                try line.write(reply)
                expectEcho(of: reply)
            } catch {
                dropLine(error.message)
                return
            }
        }
    }

    private func expectEcho(of bytes: [UInt8]) {
        if ContinuousClock.now > echo.until { echo.frames = [] }
        echo.frames.append(bytes)
        echo.until = ContinuousClock.now + settings.wireTime(characters: echo.frames.reduce(0) { $0 + $1.count }) + Self.quietGap
    }

    /// Drops each frame we wrote when it comes back whole, in the order written; anything else (a reply that
    /// merely starts like our request, as every Onbon frame does with its preamble) is handed on untouched.
    private func withoutEcho(_ bytes: [UInt8]) -> [UInt8] {
        guard !echo.frames.isEmpty else { return bytes }
        func giveBack(_ rest: ArraySlice<UInt8>) -> [UInt8] {
            let held = echoHeld
            echoHeld = []
            echo.frames = []
            return held + rest
        }
        if ContinuousClock.now > echo.until { return giveBack(bytes[...]) }
        var input = bytes[...]
        while let byte = input.first, let expected = echo.frames.first {
            guard byte == expected[echoHeld.count] else { return giveBack(input) }
            echoHeld.append(byte)
            input = input.dropFirst()
            if echoHeld.count == expected.count {
                echoHeld = []
                echo.frames.removeFirst()
            }
        }
        return Array(input)
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
