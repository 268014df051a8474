import Foundation
public import Logging
import Protocols
import Synchronization

/// One bus as the gateway drives it: whatever the transport and the device family.
public protocol Bus: Actor {
    /// The bus's configuration.
    nonisolated var config: BusConfig { get }
    /// The task executor the task running the bus should prefer (see `LinkOpener.preferredTaskExecutor`).
    nonisolated var preferredTaskExecutor: (any TaskExecutor)? { get }
    /// Polls until `stop` fires (or the task is cancelled); what was read is committed before it returns. Returns
    /// how many events read could not be committed (the outbox refused them to the end).
    @discardableResult
    func run(until stop: StopSignal) async -> Int
    /// Carries out a command on one of the bus's devices; nonisolated, so a busy bus queues it without delay.
    nonisolated func send(_ command: HallCommand, to deviceId: String) async throws
    /// What the bus believes about each of its devices, with their counters: nonisolated, it wakes a bus blocked in a
    /// read rather than waiting for its executor.
    nonisolated func deviceStates() async -> [DeviceState]
    /// What passed on the line that belongs to no device: garbage heard while nothing was asked. Nonisolated: a
    /// synchronous requirement of an actor is called on its executor, on a serial line a thread blocked in a read for
    /// up to a second.
    nonisolated func lineCounters() -> DeviceCounters
    /// Whether the line sends back what the gateway writes (a two-wire adapter without echo suppression), as the
    /// engine has learnt it since the line was opened; nil until it is clear, while the line is down, and on lines
    /// that are not paced.
    nonisolated func lineEchoes() -> Bool?
    /// Why the line is down (its port cannot be opened, its link was lost), while it is; nil while it is open.
    nonisolated func lineDown() -> String?
    /// Whether `device`'s screen was lit when its last command was carried out, as the command's read-back said; nil
    /// for a device whose reads do not tell. Nonisolated: a command's result does not wait for the next transaction.
    nonisolated func screenAfterCommand(of device: String) -> Bool?
    /// Events read and not yet committed: more than a moment, the outbox refuses commits.
    nonisolated func uncommittedEventCount() async -> Int
}

/// The one owner of a bus: one request in flight, commands before polls, each device polled at its own interval,
/// a silent device probed with backoff, a lost link reopened with backoff, unprompted frames heard between
/// requests. Events are committed before any acknowledgement goes back to a device.
///
/// Runs on its link's executor: a serial line's own thread (its reads block there, never on the cooperative
/// pool), or the event loop of a TCP connection. Time comes from a `BusClock`, so tests drive it virtually.
public actor BusEngine<Driver: BusDriver>: Bus {
    private nonisolated let executor: any SerialExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public nonisolated let config: BusConfig
    private let opener: any LinkOpener
    public nonisolated var preferredTaskExecutor: (any TaskExecutor)? { preferredExecutor }
    private nonisolated let preferredExecutor: (any TaskExecutor)?
    private let clock: any BusClock
    private let timing: LineTiming
    /// Whether bytes take time on this line (serial) and whether frames need a gap (Modbus RTU): asked several times a
    /// transaction, where comparing a `Duration` is a call into the standard library.
    private let paced: Bool
    private let gapped: Bool
    private var driver: Driver
    private var decoder: Driver.Decoder
    private var link: (any BusLink)?
    private let logger: Logger
    private let committer: BusCommitter
    private var reporter: ConnectionReporter
    private var health: DeviceHealth
    private let outbox: Outbox
    private nonisolated let inbox: CommandInbox
    private var schedule: PollSchedule
    /// The driver's devices, in its order: the schedule, the counters and a poll name a device by its place here.
    private let devices: [DeviceConfig]
    private nonisolated let deviceIndices: [String: Int]
    /// The place last looked up: the requests and answers of one transaction are all for one device.
    private var lastLookedUp = 0
    private var counters: [DeviceCounters]
    /// What the line carried that was no device's; read by callers without waiting for the engine (a serial bus's
    /// executor may be blocked in a read).
    private nonisolated let unattributed = Mutex(DeviceCounters())
    private var pending = PendingCommit()
    /// Events handed to a commit under way: still uncommitted to whoever asks meanwhile.
    private var committing = 0
    /// When the last byte arrived; a partial frame older than `quietGap` will not be completed.
    private var lastByteAt: Duration = .zero
    /// When the last read returned: what the next read returns arrived after it, however late the engine reads.
    private var lastReadAt: Duration = .zero
    /// When the line is next free for us to speak: our last frame's end, or the last byte heard, plus the frame gap.
    private var lineFreeAt: Duration = .zero
    private var echo = EchoFilter()
    /// `echo.lineEchoes` as last published to `echoVerdict`, for callers that do not wait for the engine.
    private var publishedEchoVerdict: Bool?
    private nonisolated let echoVerdict = Mutex<Bool?>(nil)
    /// Per device, its screen as the read-back of its last command found it: what the command's result says.
    private nonisolated let screensAfterCommands = Mutex<[String: Bool]>([:])
    /// Why the link is down, as `reporter` last said it, for callers that do not wait for the engine.
    private nonisolated let downReason = Mutex<String?>(nil)
    private var reopenAttempts = 0
    /// The refusals said, by device and purpose: what, when, and how many came since without being said.
    /// A few at most, looked through while there are any: no key is built at each answer.
    private var refusalsSaid: [RefusalSaid] = []

    private struct RefusalSaid {
        /// The device's place in `devices`, and the request's purpose.
        var device: Int
        var purpose: String
        var text: String
        var at: Duration
        var since: Int
    }
    /// The purposes of the requests the bus makes again and again (polls, acknowledgements): their refusals are said
    /// once while they last. A command's refusal is said each time.
    private let repeatedPurposes: Set<String>
    /// When the link may be opened again.
    private var reopenAt: Duration = .zero
    /// When the link was opened, and whether a device has been heard on it since: a link that breaks before either
    /// proves anything is retried with backoff like one that cannot be opened.
    private var linkOpenedAt: Duration = .zero
    private var linkHeard = false
    /// Devices whose request something in between answered for them as silent (`LineReaction.unanswered`), since the
    /// batch of pipelined polls began: missed like those that timed out.
    private var answeredForAsSilent: Set<String> = []
    /// Set on (re)open until the link's first read returns: only then are the devices it cannot ask reachable again.
    private var reopenUnconfirmed = false
    /// The devices the bus asks (the others only speak unprompted, or only listen).
    private let polled: Set<String>
    /// By place in `devices`: never asked (it speaks unprompted), its frames count as its transactions.
    private let unasked: [Bool]
    /// The requests written whose answers are awaited, with when each was on the wire: one at a time, or the polls
    /// sent together on a bus with `requestsInFlight` above 1.
    private var inFlight: [(request: LineRequest, onWireAt: Duration, rejectedBefore: Int)] = []
    /// How many polls may be in flight on this link: the configured number, or 1 once the peer showed it drops a
    /// request that comes while it answers another (until the link is reopened).
    private var requestsInFlight: Int
    private let configuredInFlight: Int
    /// The command being carried out, and the key it is held under once the device said it confirms it later.
    private var executing: (command: QueuedCommand, heldKey: Int?)?
    /// Commands whose frames were answered, waiting for their device's verdict (`CommandHold`), oldest first.
    private var held: [HeldCommand] = []

    /// How long a bus on a blocking link keeps its thread before it lets the callers of the bus in.
    static var yieldEvery: Duration { .milliseconds(5) }
    /// When it last did.
    private var yieldedAt: Duration = .zero
    /// Questions to the bus (its states, its uncommitted count) waiting for a blocking bus to let them in.
    private nonisolated let questions = Atomic<Int>(0)

    /// Longer than any gap inside a frame, USB adapters' 16 ms latency timer included.
    static var quietGap: Duration { .milliseconds(50) }
    /// How long a partial frame waits for the rest: the quiet gap on a serial line; on TCP, where a frame's length
    /// says where it ends and a segment can come 200 ms after the last (a retransmission), the response timeout.
    private var partialFrameLimit: Duration {
        if case .modbusTCP = config.transport { config.responseTimeout } else { Self.quietGap }
    }
    /// The longest a bus listens for unprompted frames before it looks around again; commands and the stop wake it
    /// earlier.
    static var idleLimit: Duration { .seconds(1) }
    /// The first pause before reopening a lost link; it doubles up to `maximumReopenDelay`.
    static var firstReopenDelay: Duration { .milliseconds(500) }
    static var maximumReopenDelay: Duration { .seconds(30) }
    /// How long a link on which devices answered must have lived for its loss to start the pauses over.
    static var workedAWhile: Duration { .seconds(2) }

    /// Creates the engine of one bus.
    public init(config: BusConfig, opener: any LinkOpener, clock: any BusClock, timing: LineTiming, hallId: String,
                driver: Driver, pollIntervals: [String: Duration?] = [:], outbox: Outbox, logger: Logger,
                onCommit: @escaping BusCommitter.Observer) {
        executor = opener.executor
        preferredExecutor = opener.preferredTaskExecutor
        self.config = config
        self.opener = opener
        self.clock = clock
        self.timing = timing
        paced = timing.characterTime > .zero
        gapped = timing.frameGap > .zero
        self.driver = driver
        self.outbox = outbox
        decoder = driver.makeDecoder()
        // No bus.id metadata: every line names its bus in words already.
        self.logger = logger
        committer = BusCommitter(busId: config.id, outbox: outbox, logger: logger, onCommit: onCommit)
        reporter = ConnectionReporter(busId: config.id, logger: logger)
        health = DeviceHealth(busId: config.id, hallId: hallId, logger: logger)
        inbox = CommandInbox()
        devices = driver.devices
        deviceIndices = Dictionary(driver.devices.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { first, _ in first })
        counters = Array(repeating: DeviceCounters(), count: driver.devices.count)
        // Only Modbus TCP tells answers apart (transaction ids); elsewhere one request at a time, whatever is set.
        configuredInFlight = if case .modbusTCP = config.transport { max(1, config.requestsInFlight) } else { 1 }
        requestsInFlight = configuredInFlight
        var probe = driver
        // A device whose poll is empty speaks unprompted only: it is never polled.
        polled = Set(driver.devices.filter { !probe.pollRequests(for: $0).isEmpty }.map(\.id))
        unasked = driver.devices.map { [polled] in !polled.contains($0.id) }
        repeatedPurposes = Set(driver.devices.flatMap { probe.pollRequests(for: $0).map(\.purpose) } + ["acknowledge"])
        schedule = PollSchedule(intervals: driver.devices.map { [polled] device in
            let interval = pollIntervals[device.id] ?? nil
            return polled.contains(device.id) ? interval ?? config.pollInterval : nil
        })
    }

    // MARK: Commands

    /// Carries out a command on a device; returns once its frames were sent and answered (or not expected to be).
    /// Nonisolated: the command goes straight into the inbox, with no wait for the engine, whose thread may be
    /// blocked in a read or in the frame gap; the engine takes it before choosing its next request.
    /// A cancelled caller is answered at once, `unconfirmed`: the command may still go out, or be shown later.
    public nonisolated func send(_ command: HallCommand, to deviceId: String) async throws {
        // Not sent at all: not the same as cancelled under way.
        try Task.checkCancellation()
        let outcome = OnceOutcome()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                outcome.wait(continuation)
                submit(command, to: deviceId) { result in outcome.resume(result) }
            }
        } onCancel: {
            outcome.resume(.failure(GatewayError(
                .unconfirmed, "\(deviceId): \(command.name) was cancelled under way: it may still be carried out")))
        }
    }

    /// Queues a command without waiting; `completion` gets its result. A command the bus cannot carry out now
    /// (unknown device, link down, bus stopped) completes at once with the reason.
    public nonisolated func submit(_ command: HallCommand, to deviceId: String,
                                   completion: @escaping @Sendable (Result<Void, GatewayError>) -> Void) {
        guard deviceIndices[deviceId] != nil else {
            completion(.failure(GatewayError(.deviceError, "no device \(deviceId) on bus \(config.id)")))
            return
        }
        if let refusal = inbox.append(QueuedCommand(command: command, device: deviceId, completion: completion)) {
            completion(.failure(GatewayError(.portUnavailable, "\(deviceId): \(refusal)")))
        }
    }

    /// On a link whose reads block, the question wakes the bus, which lets it in at once rather than when its read
    /// ends (up to a second on an idle line).
    public nonisolated func deviceStates() async -> [DeviceState] {
        await asked { $0.currentStates() }
    }

    /// Runs a question on the bus; on a blocking link, counted while it waits, so the bus yields and keeps its reads
    /// short until it got in.
    private nonisolated func asked<Answer: Sendable>(_ question: (isolated BusEngine) async -> Answer) async -> Answer {
        guard let link = inbox.waker, link.readsBlock else { return await question(self) }
        // Counted before the wake: a bus woken before it could see the question read on for up to a second.
        questions.add(1, ordering: .relaxed)
        defer { questions.subtract(1, ordering: .relaxed) }
        link.wake()
        return await question(self)
    }

    private func currentStates() -> [DeviceState] {
        let lineDown = link == nil ? reporter.reason : nil
        return health.states(of: devices).map { state in
            var state = state
            state.counters = index(of: state.device).map { counters[$0] } ?? DeviceCounters()
            state.screenOn = driver.screenOn(of: state.device)
            // Silent before its bus went down: the bus is what to fix first (from a trial: an unplugged adapter
            // left "no answer", and the technician checked the device's wiring).
            if let lineDown, !state.offlineByLine, let own = state.offlineReason {
                state.offlineReason = "its bus is down (\(lineDown)); before that, \(own)"
            }
            return state
        }
    }

    public nonisolated func lineCounters() -> DeviceCounters { unattributed.withLock { $0 } }

    public nonisolated func lineEchoes() -> Bool? { echoVerdict.withLock { $0 } }

    public nonisolated func lineDown() -> String? { downReason.withLock { $0 } }

    /// Publishes why the link is down, after each change of the link.
    private func publishLineDown() {
        let reason = link == nil ? reporter.reason : nil
        downReason.withLock { $0 = reason }
    }

    /// Publishes what the echo filter learnt, when it changed (rarely: once or twice a link).
    private func publishEchoVerdict() {
        guard echo.lineEchoes != publishedEchoVerdict else { return }
        publishedEchoVerdict = echo.lineEchoes
        echoVerdict.withLock { $0 = echo.lineEchoes }
    }

    public nonisolated func uncommittedEventCount() async -> Int {
        await asked { $0.uncommittedNow() }
    }

    private func uncommittedNow() -> Int { pending.events.count + committing }

    // MARK: The loop

    /// `read` from the outbox, tried again every second until it succeeds (nil: the bus stopped first); the first
    /// failure of the start is said, once.
    private func whenReadable<Value>(_ what: String, until stop: StopSignal, complained: inout Bool,
                                     _ read: () async throws -> Value) async -> Value? {
        while !stop.isStopped, !Task.isCancelled {
            do {
                return try await read()
            } catch {
                if !complained {
                    logger.error("bus \(config.id): cannot read \(what) from the outbox (\(error)); trying again every second")
                    complained = true
                }
                await clock.sleep(until: clock.now + .seconds(1), stop: stop)
            }
        }
        return nil
    }

    // Compiled ahead for the family the registry names: the generic loop pays for metadata and witness calls on
    // every transaction.
    @_specialize(where Driver == SpecializedDriver)
    @discardableResult
    public func run(until stop: StopSignal) async -> Int {
        // A device met without its cursor would be taken for new: a pad restarted under its boot id would give ids
        // its first power-up used, dropped as known. An outbox that cannot be read holds the bus until it can.
        var complained = false
        var cursors: [DeviceCursor] = []
        for device in devices {
            let read = await whenReadable("where \(device.id) was left", until: stop, complained: &complained) {
                try await outbox.cursor(device: device.id)
            }
            if let cursor = read ?? nil { cursors.append(cursor) }
        }
        driver.restore(cursors)
        // The staff ids set on pads too: read without them, a pad's first read would forget a write-back owed to it.
        if let staff = await whenReadable("the pads' staff ids", until: stop, complained: &complained, { try await outbox.padStaff() }) {
            driver.restore(staff: staff)
        }
        inbox.open()
        stop.onStop { [inbox] in inbox.wake() }
        while !stop.isStopped, !Task.isCancelled {
            if link == nil, clock.now < reopenAt {
                await clock.sleep(until: reopenAt, stop: stop)
                continue
            }
            guard let link = await openIfNeeded() else {
                let reason = reporter.reason ?? "port unavailable"
                inbox.refuse(because: "bus \(config.id) is down: \(reason)")
                pending.add(events: health.unreachable(devices, reason: reason, at: clock.date))
                await commitPending()
                reopenAt = clock.now + nextReopenDelay()
                continue
            }
            // One clock reading for the turn, unless it waited.
            var now = clock.now
            // Lets callers of deviceStates() in when a blocking link never suspends: every few milliseconds, not at
            // every request, since a yield costs two thread switches (the task resumes on the pool, then hops back),
            // as much as a Modbus TCP round trip. Not on a link that suspends in its reads.
            if link.readsBlock, questions.load(ordering: .relaxed) > 0 || now - yieldedAt >= Self.yieldEvery {
                yieldedAt = now
                await Task.yield()
                now = clock.now
            }
            // A command already waiting has its frames made before the frame gap is waited out, so they leave as it
            // ends. The gap is waited out before a poll is chosen, so a command that comes during it goes ahead.
            var command = nextCommand()
            if await waitForLineFree(on: link, stop: stop) {
                now = clock.now
                if command == nil { command = nextCommand() }
            }
            if let command {
                await execute(command, on: link)
            } else if requestsInFlight > 1, case let due = schedule.due(at: now, limit: requestsInFlight),
                      !due.isEmpty {
                await pollTogether(due, on: link)
            } else if let device = schedule.due(at: now) {
                await poll(device, on: link, startedAt: now)
            } else {
                var until = min(schedule.nextDue ?? .seconds(Int64.max / 2), now + Self.idleLimit)
                // A question on its way to the bus: a short read, then a yield, until it is in.
                if questions.load(ordering: .relaxed) > 0 { until = min(until, now + .milliseconds(1)) }
                await receive(on: link, until: until)
            }
            // A command waiting goes out before what was read is committed (a commit flushes to disk, milliseconds
            // on a small box): it commits it once its frames are out, and acknowledgements still wait for that.
            if !pending.isEmpty, !inbox.hasWaiting(besides: heldDevices) { await commitPending() }
        }
        await commitPending()
        inbox.close(because: "bus \(config.id) is stopped")
        releaseHeld(because: "the gateway stopped")
        if !pending.events.isEmpty {
            logger.critical("""
                bus \(config.id): \(pending.events.count) events read could not be committed before the stop; \
                nothing of them was acknowledged, the devices keep what they can
                """)
        }
        link?.close()
        link = nil
        logger.info("bus \(config.id) stopped")
        return pending.events.count
    }

    private func openIfNeeded() async -> (any BusLink)? {
        if let link { return link }
        do {
            let opened = try await opener.open()
            reporter.opened(opener.endpoint)
            inbox.reopen()
            linkOpenedAt = clock.now
            linkHeard = false
            reopenUnconfirmed = true
            requestsInFlight = configuredInFlight
            // What the lost line's decoder held of a frame is garbage too.
            let garbage = dropPartialFrame()
            if garbage > 0 { unattributed.withLock { $0.garbageBytes += garbage } }
            decoder = driver.makeDecoder()
            driver.lineOpened()
            link = opened
            inbox.waker = opened
            publishLineDown()
            return opened
        } catch {
            reporter.failed(error.message, retry: reopenDelay)
            publishLineDown()
            return nil
        }
    }

    /// The pause before the next attempt to open the link: it doubles with each attempt that failed.
    private var reopenDelay: Duration {
        min(Self.firstReopenDelay * (1 << min(reopenAttempts, 16)), Self.maximumReopenDelay)
    }

    private func nextReopenDelay() -> Duration {
        defer { reopenAttempts += 1 }
        return reopenDelay
    }

    /// Polls the device at `index` in `devices`; `started`: when its turn began, as the caller read the clock. Inlined:
    /// see `receive`.
    @inline(__always)
    private func poll(_ index: Int, on link: any BusLink, startedAt started: Duration) async {
        let id = devices[index].id
        var answered = true
        for request in driver.pollRequests(for: devices[index]) where self.link != nil {
            if case .timedOut = await exchange(request, on: link) {
                answered = false
                break
            }
        }
        // Whether it is offline matters only when it did not answer. An answer's read is when the poll ended.
        schedule.polled(index, startedAt: started, answered: answered, offline: !answered && health.isOffline(id),
                        at: answered ? max(lastReadAt, started) : clock.now)
        polledWhileHeld(id)
    }

    /// Several requests in flight (Modbus TCP, `requests-in-flight`): the polls of the devices due go out in one
    /// write, and the driver tells which request each answer is for (its transaction id). A poll of more than one
    /// request goes out on its own. The response timeout runs from the last answer, so a peer that serves the
    /// requests one after another is not blamed for the queue; a silent device costs the others one timeout.
    private func pollTogether(_ indices: [Int], on link: any BusLink) async {
        let started = clock.now
        var batch: [(request: LineRequest, index: Int)] = []
        for index in indices {
            let requests = driver.pollRequests(for: devices[index])
            if requests.count == 1, requests[0].expectsAnswer {
                batch.append((requests[0], index))
            } else {
                await poll(index, on: link, startedAt: started)
            }
        }
        guard !batch.isEmpty, self.link != nil else { return }
        let offlineBefore = Set(batch.map(\.request.device).filter { health.isOffline($0) })
        let bytes = batch.count == 1 ? batch[0].request.bytes : batch.flatMap(\.request.bytes)
        let writtenAt = clock.now
        do {
            try await link.write(bytes)
        } catch {
            dropLink(error.message)
            return
        }
        BusTap.record(outbox, config.id, .sent, bytes)
        var onWire = Duration.zero
        inFlight.removeAll(keepingCapacity: true)
        answeredForAsSilent.removeAll(keepingCapacity: true)
        for (request, _) in batch {
            count(request.device) { $0.bytesSent += request.bytes.count }
            onWire += timing.wireTime(characters: request.bytes.count)
            inFlight.append((request, writtenAt + onWire, rejectedSoFar))
        }
        lineFreeAt = writtenAt + onWire + timing.frameGap
        var deadline = writtenAt + onWire + config.responseTimeout
        while !inFlight.isEmpty, clock.now < deadline, self.link != nil {
            let waiting = inFlight.count
            await receive(on: link, until: deadline)
            if inFlight.count < waiting { deadline = max(deadline, clock.now + config.responseTimeout) }
        }
        let silent = Set(inFlight.map(\.request.device)).union(answeredForAsSilent)
        if !inFlight.isEmpty { _ = timeOutInFlight(on: link) }
        let linkLost = self.link == nil
        let now = clock.now
        for (request, index) in batch {
            let id = request.device
            // As one at a time: a lost link is no device's miss.
            schedule.polled(index, startedAt: started, answered: linkLost || !silent.contains(id),
                            offline: health.isOffline(id), at: now)
            polledWhileHeld(id)
        }
        // Nothing answered after the first request: a peer that drops requests arriving while it answers
        // (pymodbus 3.8's server does) looks just so. If a device that was online then answers when asked alone, it
        // was the peer. Not asked of a device already offline: its probe would cost a second timeout.
        guard !linkLost, batch.count > 1, batch.dropFirst().allSatisfy({ silent.contains($0.request.device) }),
              let probe = batch.dropFirst().first(where: { !offlineBefore.contains($0.request.device) })?.request,
              await exchange(rePoll(probe), on: link) == .answered
        else { return }
        requestsInFlight = 1
        logger.warning("""
            bus \(config.id): \(opener.endpoint) answered only the first of \(batch.count) requests sent together; \
            polling one at a time until the connection is reopened (set requests-in-flight: 1 on this bus)
            """)
    }

    /// A fresh poll request of the same device: a new transaction id, so a late answer to the dropped one is no match.
    private func rePoll(_ request: LineRequest) -> LineRequest {
        index(of: request.device).flatMap { driver.pollRequests(for: devices[$0]).first } ?? request
    }

    /// Devices with a command held: their next command waits for its verdict, so that a board shows each call (a
    /// second text written before the board took the first would replace it unseen).
    private var heldDevices: [String] { held.isEmpty ? [] : held.map(\.command.device) }

    private func nextCommand() -> CommandPlan? {
        inbox.next(besides: heldDevices).flatMap { plan($0) }
    }

    /// A command and its device, with its frames unless the device must be polled first.
    private struct CommandPlan {
        var queued: QueuedCommand
        /// The device's place in `devices`.
        var index: Int
        var requests: [LineRequest]?
    }

    /// Checks a command and makes its frames; nil when it was refused (its completion has the reason).
    private func plan(_ command: QueuedCommand) -> CommandPlan? {
        guard let index = index(of: command.device) else { return nil }
        let device = devices[index]
        if let reason = health.commandRefusal(device.id) {
            command.completion(.failure(GatewayError(.deviceOffline, "\(device.id) is offline: \(reason)")))
            return nil
        }
        if driver.needsPollBeforeCommand(device) { return CommandPlan(queued: command, index: index) }
        return frames(of: command, to: device).map { CommandPlan(queued: command, index: index, requests: $0) }
    }

    /// A command's frames; nil when the driver refused it (its completion has the reason).
    private func frames(of command: QueuedCommand, to device: DeviceConfig) -> [LineRequest]? {
        do {
            return try driver.requests(for: command.command, to: device)
        } catch {
            command.completion(.failure(error))
            return nil
        }
    }

    private func execute(_ plan: CommandPlan, on link: any BusLink) async {
        let command = plan.queued, device = devices[plan.index]
        executing = (command, nil)
        defer { executing = nil }
        var requests = plan.requests
        if requests == nil {
            await poll(plan.index, on: link, startedAt: clock.now)
            // The poll may have shown why not (another model at the address): said as that, not as silence.
            if let reason = health.commandRefusal(device.id) {
                finish(command, .failure(GatewayError(.deviceOffline, "\(device.id) is offline: \(reason)")))
                return
            }
            if driver.needsPollBeforeCommand(device) {
                finish(command, .failure(GatewayError(
                    .deviceTimeout, "\(device.id): no answer within \(config.responseTimeout); command not sent")))
                return
            }
            requests = frames(of: command, to: device)
        }
        guard let requests else { return }
        var earlierSent: String?
        for request in requests {
            switch await exchange(request, on: link) {
            case .answered, .sent:
                earlierSent = earlierSent ?? request.purpose
                continue
            case .refused(let reason):
                await commitPending()
                finish(command, .failure(GatewayError(.commandRejected, "\(device.id) refused \(request.purpose): \(reason)")))
                return
            case .timedOut(let answeredFor):
                await commitPending()
                let silence = "\(device.id): no answer to \(request.purpose)"
                    + (answeredFor.map { ": \($0)" } ?? " within \(config.responseTimeout)")
                // After frames that went out, the device may have done what they said: not the same as not at all.
                finish(command, .failure(earlierSent.map {
                    GatewayError(.unconfirmed, "\(silence), after its \($0) went out: it may have been carried out")
                } ?? GatewayError(.deviceTimeout, silence)))
                return
            case .linkLost(let reason):
                // As a timeout: after frames that went out, not the same as not at all (from a second read).
                finish(command, .failure(earlierSent.map {
                    GatewayError(.unconfirmed, "\(device.id): \(reason), after its \($0) went out: it may have been carried out")
                } ?? GatewayError(.portUnavailable, "\(device.id): \(reason)")))
                return
            }
        }
        await commitPending()
        finish(command, .success(()))
    }

    /// Ends the command being carried out; one its device confirms later ends at its verdict instead (or now, if a
    /// later frame of it failed).
    private func finish(_ command: QueuedCommand, _ result: Result<Void, GatewayError>) {
        guard let key = executing?.heldKey else { return command.completion(result) }
        guard case .failure(let error) = result,
              let index = held.firstIndex(where: { $0.command.device == command.device && $0.key == key })
        else { return }
        held.remove(at: index)
        command.completion(.failure(error))
    }

    /// A frame of the command being carried out says its device confirms it later: it waits for that verdict, up to
    /// the polls the driver waits and two more (counted, not timed: on a busy line a device's polls come seconds
    /// apart whatever its interval).
    private func hold(_ hold: CommandHold, from device: String) {
        guard let command = executing?.command, command.device == device, executing?.heldKey == nil else { return }
        executing?.heldKey = hold.key
        held.append(HeldCommand(command: command, key: hold.key, polls: hold.verdictWithinPolls + 2,
                                pollsLeft: hold.verdictWithinPolls + 2))
    }

    private func settle(_ verdict: CommandVerdict) {
        guard let index = held.firstIndex(where: { $0.command.device == verdict.device && $0.key == verdict.key }) else { return }
        let command = held.remove(at: index).command
        // Before the completion: its result is told from this.
        let screen = driver.screenOn(of: command.device)
        screensAfterCommands.withLock { $0[command.device] = screen }
        command.completion(verdict.failure.map { .failure($0) } ?? .success(()))
    }

    public nonisolated func screenAfterCommand(of device: String) -> Bool? {
        screensAfterCommands.withLock { $0[device] }
    }

    /// A poll of `device` ended: its held commands have one poll less to get their verdict. One that went offline
    /// gives none.
    private func polledWhileHeld(_ device: String) {
        guard !held.isEmpty else { return }
        if health.isOffline(device) { return releaseHeld(of: device, because: "it stopped answering") }
        var expired: [HeldCommand] = []
        for index in held.indices.reversed() where held[index].command.device == device {
            held[index].pollsLeft -= 1
            if held[index].pollsLeft <= 0 { expired.append(held.remove(at: index)) }
        }
        for waiting in expired.reversed() {
            let command = waiting.command
            command.completion(.failure(GatewayError(.deviceTimeout, """
                \(command.device): no acknowledgement of \(command.command.name) in \(waiting.polls) polls: \
                it may not show it
                """)))
        }
    }

    /// Ends the held commands (of `device`, or all): it took them and may show them, but no verdict can come now.
    private func releaseHeld(of device: String? = nil, because reason: String) {
        for waiting in held where device == nil || waiting.command.device == device {
            let command = waiting.command
            command.completion(.failure(GatewayError(.unconfirmed, """
                \(command.device) took \(command.command.name) but \(reason) before it acknowledged: it may show it
                """)))
        }
        held.removeAll { device == nil || $0.command.device == device }
    }

    // MARK: The wire

    private enum Outcome: Equatable {
        case sent
        case answered
        case refused(String)
        /// No answer in time; or, with what was said instead, an answer for the device by something in between.
        case timedOut(String?)
        case linkLost(String)
    }

    /// What a request's own frame gap waits on: the stop lets the request in flight finish (made once, not per request).
    private nonisolated let neverStops = StopSignal()

    /// Modbus RTU: waits out the frame gap after the last frame on the line, ours or a device's. Inlined: called twice
    /// a transaction, on TCP only to find there is no gap.
    /// Returns whether it waited.
    @inline(__always) @discardableResult
    private func waitForLineFree(on link: any BusLink, stop: StopSignal) async -> Bool {
        guard gapped, clock.now < lineFreeAt else { return false }
        // A link whose reads block gives the engine a thread of its own: sleeping there wakes on time, where an async
        // sleep woke 0.3 ms late (p50; 0.7 at p99) and hopped back to that thread.
        if link.readsBlock {
            clock.sleepOnThisThread(until: lineFreeAt)
        } else {
            await clock.sleep(until: lineFreeAt, stop: stop)
        }
        return true
    }

    /// Sends a request and, when it expects one, waits for its answer.
    private func exchange(_ request: LineRequest, on link: any BusLink) async -> Outcome {
        if request.discardsStaleInput {
            link.discardInput()
            let garbage = dropPartialFrame()
            if garbage > 0 { unattributed.withLock { $0.garbageBytes += garbage } }
        }
        await waitForLineFree(on: link, stop: neverStops)
        let writtenAt = clock.now
        do {
            try await link.write(request.bytes)
        } catch {
            dropLink(error.message)
            return .linkLost(error.message)
        }
        BusTap.record(outbox, config.id, .sent, request.bytes)
        let onWire = paced ? timing.wireTime(characters: request.bytes.count) : .zero
        // On a serial line the bytes leave after what the line is still sending: a ticket's status request goes out
        // once the ticket has (write() returns as soon as the driver holds the bytes).
        let sentAt = paced ? max(writtenAt, lineFreeAt - timing.frameGap) : writtenAt
        lineFreeAt = sentAt + onWire + timing.frameGap
        count(request.device) { $0.bytesSent += request.bytes.count }
        if paced {
            echo.expect(request.bytes, at: sentAt, until: sentAt + onWire + Self.quietGap,
                        onlyEchoBefore: sentAt + onWire * 2 + timing.frameGap, answerMayEqualIt: request.answerMayEqualIt)
            publishEchoVerdict()
            driver.wrote(request, at: clock.date)
        }
        guard request.expectsAnswer else { return .sent }
        inFlight.removeAll(keepingCapacity: true)
        inFlight.append((request, sentAt + onWire, rejectedSoFar))
        // The timeout runs from when the last byte is on the wire, not from when write() returned.
        let deadline = sentAt + onWire + config.responseTimeout
        // Read at once: the deadline is a response timeout away.
        repeat {
            if let outcome = await receive(on: link, until: deadline) { return outcome }
        } while clock.now < deadline && self.link != nil
        return timeOutInFlight(on: link)
    }

    /// Empties the decoder of what it holds of a frame, for the counters to see as garbage; returns how many bytes.
    /// A frame it completes can only be a late answer, and is dropped with the rest.
    private func dropPartialFrame() -> Int {
        let before = decoder.discardedByteCount
        _ = decoder.flush()
        return decoder.discardedByteCount - before
    }

    /// What answers that make no frame suggest, on this bus's transport.
    private var garbledHint: String {
        if case .modbusTCP = config.transport { "(another protocol on that port?)" }
        else { "(a wrong baud rate or parity? A and B wires swapped? two devices at one address?)" }
    }

    /// Bytes the decoder rejected so far (garbage, bad checksums): a request in flight notes it when it goes out.
    private var rejectedSoFar: Int { decoder.discardedByteCount + decoder.checksumFailureCount }

    /// The requests still in flight at their deadline missed it.
    private func timeOutInFlight(on link: any BusLink) -> Outcome {
        defer { inFlight.removeAll(keepingCapacity: true) }
        guard self.link != nil else { return .linkLost(reporter.reason ?? "line lost") }
        link.discardInput()
        // Read before the partial answer is dropped: an answer cut off by the deadline is late, not garbled.
        let rejectedBeforeTheDeadline = rejectedSoFar
        // A partial answer left in the decoder would garble the next one (on TCP it waits up to the response
        // timeout for the rest): garbage, counted for the device that timed out.
        let garbage = dropPartialFrame()
        if garbage > 0, let request = inFlight.first?.request { count(request.device) { $0.garbageBytes += garbage } }
        for (request, _, rejectedBefore) in inFlight {
            count(request.device) { $0.timeouts += 1 }
            // Silent now: its refusals are no longer the news, and no answer keeps looking for them.
            if !refusalsSaid.isEmpty, let device = index(of: request.device) { refusalsSaid.removeAll { $0.device == device } }
            if let index = index(of: request.device) {
                // Bytes that made no frame while it waited: the device may be there at another speed (from a trial:
                // a wrong baud rate said only "no answer" while the garbage counter climbed).
                let garbled = rejectedBeforeTheDeadline <= rejectedBefore ? "" : "; what came back was no frame " + garbledHint
                pending.add(events: health.missed(
                    devices[index], reason: "no answer to \(request.purpose) within \(config.responseTimeout)\(garbled)",
                    at: clock.date))
            }
        }
        return .timedOut(nil)
    }

    /// Reads until `deadline` or the first frame that answers a request in flight, handing every frame to the driver.
    /// An answered request leaves `inFlight`, counted; returns its outcome (the last one's, if a read answered
    /// several), nil when none was answered.
    ///
    /// Inlined, and what follows the read is not async: each await in an actor's code returns through a check of the
    /// executor (a lock on the task's status), and a call of an async function allocates its frame.
    @inline(__always) @discardableResult
    private func receive(on link: any BusLink, until deadline: Duration) async -> Outcome? {
        // A partial frame must be flushed once the line is quiet: read no longer than that.
        var until = deadline
        if decoder.bufferedByteCount > 0 { until = min(until, lastByteAt + partialFrameLimit) }
        let bytes: [UInt8]
        do {
            bytes = try await link.read(until: until)
        } catch {
            dropLink(error.message)
            return nil
        }
        return absorb(bytes)
    }

    /// What a read brought: see `receive`.
    private func absorb(_ bytes: [UInt8]) -> Outcome? {
        var bytes = bytes
        let now = clock.now
        if reopenUnconfirmed {
            reopenUnconfirmed = false
            pending.add(events: health.lineReopened(devices, polled: polled, at: clock.date))
        }
        if paced {
            bytes = echo.filter(bytes, arrivedAfter: lastReadAt, readAt: now)
            publishEchoVerdict()
        }
        lastReadAt = now
        BusTap.record(outbox, config.id, .received, bytes)
        let garbageBefore = decoder.discardedByteCount
        let checksumBefore = decoder.checksumFailureCount
        let frames: [Driver.Decoder.Frame]
        if !bytes.isEmpty {
            lastByteAt = now
            lineFreeAt = max(lineFreeAt, now + timing.frameGap)
            frames = decoder.decode(bytes)
        } else if decoder.bufferedByteCount > 0, now - lastByteAt >= partialFrameLimit {
            frames = decoder.flush()
        } else {
            frames = []
        }
        let garbage = decoder.discardedByteCount - garbageBefore
        let checksum = decoder.checksumFailureCount - checksumBefore
        // With several requests in flight, a read's bytes count for the oldest: the bus's total is exact, the split
        // between its devices approximate.
        if let request = inFlight.first?.request {
            count(request.device) {
                $0.bytesReceived += bytes.count
                $0.garbageBytes += garbage
                $0.checksumErrors += checksum
            }
        } else {
            unattributed.withLock {
                $0.bytesReceived += bytes.count
                $0.garbageBytes += garbage
                $0.checksumErrors += checksum
            }
        }
        guard !frames.isEmpty else { return nil }
        var outcome: Outcome?
        let date = clock.date
        for frame in frames {
            // One request in flight: the driver decides whether the frame answers it. Several: it says which.
            let index = inFlight.count == 1 ? 0 : inFlight.firstIndex { driver.answers(frame, $0.request) }
            let request = index.map { inFlight[$0].request }
            let reaction = driver.handle(frame, inFlight: request, at: date)
            if let from = reaction.from, let device = self.index(of: from) {
                linkHeard = true
                let changed = health.answered(devices[device], ready: reaction.ready, reason: reaction.notReadyBecause,
                                              at: date)
                if !changed.isEmpty { pending.add(events: changed) }
                // A device never asked (FF 68, QSystem) answers nothing: its frames are what a technician counts.
                if unasked[device] { counters[device].transactions += 1 }
            }
            for event in reaction.events {
                // Named by its id, as every other line names a device (from a trial: its event source's path).
                if case .deviceFault(let fault) = event.data {
                    logger.error("\(EventSource.deviceId(of: event.source)): \(fault.detail)")
                }
            }
            if !reaction.events.isEmpty || !reaction.cursors.isEmpty || !reaction.afterCommit.isEmpty {
                pending.add(events: reaction.events, cursors: reaction.cursors, afterCommit: reaction.afterCommit)
            }
            if let commandHold = reaction.holdsCommand, let from = reaction.from { hold(commandHold, from: from) }
            for verdict in reaction.verdicts { settle(verdict) }
            guard let index, let request, reaction.answersRequest else { continue }
            if let silence = reaction.unanswered {
                // The link works: what is behind it does not.
                linkHeard = true
                inFlight.remove(at: index)
                count(request.device) { $0.timeouts += 1 }
                if let device = self.index(of: request.device) {
                    refusalsSaid.removeAll { $0.device == device }
                    pending.add(events: health.missed(devices[device], reason: "no answer to \(request.purpose): \(silence)",
                                                      at: date))
                }
                answeredForAsSilent.insert(request.device)
                outcome = .timedOut(silence)
                continue
            }
            let answer: Outcome
            if let refusal = reaction.refusal {
                sayRefused(request, refusal)
                answer = .refused(refusal)
            } else {
                if !refusalsSaid.isEmpty { sayAnsweredAgain(request) }
                answer = .answered
            }
            let onWireAt = inFlight.remove(at: index).onWireAt
            count(request.device) {
                $0.transactions += 1
                if case .refused = answer { $0.exceptions += 1 }
                // From the end of the request on the wire; a pseudo-terminal answers before a real line could.
                $0.latency.record(max(.zero, now - onWireAt))
            }
            outcome = answer
        }
        return outcome
    }

    /// How often the same refusal of a device's request is said again while it lasts: a device that refuses every
    /// poll (a profile whose registers are not the device's) logged a line a poll (from a trial).
    static var refusalRepeatedEvery: Duration { .seconds(600) }

    /// Says a refusal once, then every `refusalRepeatedEvery` with how many came meanwhile.
    private func sayRefused(_ request: LineRequest, _ refusal: String) {
        guard repeatedPurposes.contains(request.purpose) else {
            return logger.warning("device \(request.device): \(request.purpose) refused: \(refusal)")
        }
        guard let device = index(of: request.device) else { return }
        let found = refusalsSaid.firstIndex { $0.device == device && $0.purpose == request.purpose }
        if let found, refusalsSaid[found].text == refusal, clock.now - refusalsSaid[found].at < Self.refusalRepeatedEvery {
            refusalsSaid[found].since += 1
            return
        }
        let repeated = found.map { refusalsSaid[$0].since > 0 && refusalsSaid[$0].text == refusal
            ? " (\(refusalsSaid[$0].since) times since it was last said)" : "" } ?? ""
        logger.warning("device \(request.device): \(request.purpose) refused: \(refusal)\(repeated)")
        let said = RefusalSaid(device: device, purpose: request.purpose, text: refusal, at: clock.now, since: 0)
        if let found { refusalsSaid[found] = said } else { refusalsSaid.append(said) }
    }

    /// Says that a request refused before is answered again.
    private func sayAnsweredAgain(_ request: LineRequest) {
        guard let device = index(of: request.device),
              let found = refusalsSaid.firstIndex(where: { $0.device == device && $0.purpose == request.purpose })
        else { return }
        let said = refusalsSaid.remove(at: found)
        let times = said.since > 0 ? " (refused \(said.since + 1) times in a row)" : ""
        logger.notice("device \(request.device): \(request.purpose) answered again\(times)")
    }

    /// Commits what was read, then sends the acknowledgements that depended on the commit.
    private func commitPending() async {
        guard !pending.isEmpty else { return }
        // The memory-loss faults `take` adds are made again at each attempt: not counted as waiting.
        committing = pending.events.count
        let (events, cursors, afterCommit) = pending.take(at: clock.date)
        let committed = await committer.commit(events, cursors: cursors)
        committing = 0
        guard committed else {
            // Nothing is acknowledged: devices keep their data; what was read waits here for the next commit.
            pending.restore(events: events, cursors: cursors, at: clock.date)
            if let dropped = pending.trim() {
                logger.critical("""
                    bus \(config.id): the outbox keeps refusing commits; \(dropped.events) oldest events held in memory \
                    dropped (\(dropped.ratings) ratings among them)
                    """)
            }
            return
        }
        pending.committed()
        guard let link else { return }
        for request in afterCommit where self.link != nil {
            // Its answer, equal to it, would be taken for the echo and the write wait out its timeout (at most starts:
            // a pad with ratings waiting); held back, as a failed commit's are, the next poll asks again.
            if paced, request.answerMayEqualIt, echo.stillLearning { continue }
            _ = await exchange(request, on: link)
        }
    }

    /// One lookup for all of a device's counts at a time.
    private func count(_ device: String, _ update: (inout DeviceCounters) -> Void) {
        guard let index = index(of: device) else { return }
        update(&counters[index])
    }

    /// A device's place in `devices`; the one looked up last is compared first (a short id compares in one step,
    /// where a hash of it costs a dozen times that, and a transaction looks its device up several times).
    private func index(of id: String) -> Int? {
        if lastLookedUp < devices.count, devices[lastLookedUp].id == id { return lastLookedUp }
        guard let index = deviceIndices[id] else { return nil }
        lastLookedUp = index
        return index
    }

    private func dropLink(_ message: String) {
        link?.close()
        link = nil
        // What the next link's adapter does is learnt again.
        echo = EchoFilter()
        publishEchoVerdict()
        inbox.waker = nil
        inbox.refuse(because: "bus \(config.id) lost its link: \(message)")
        refusalsSaid.removeAll()
        releaseHeld(because: "the link was lost (\(message))")
        // A link that breaks as soon as it is open (a peer that accepts and closes at once, or answers once and
        // closes) is retried less and less often, like one that cannot be opened; where no device answered on it,
        // its devices are unreachable. One that worked a while is reopened after the first pause: a while is the
        // pause it last waited, or `workedAWhile` when that is shorter (after a long outage, 30 s: from a trial, a
        // second unplug five seconds after the replug left the bus unpolled and its devices "online" for 30 s).
        let lived = clock.now - linkOpenedAt
        if lived >= Self.maximumReopenDelay || (linkHeard && lived >= min(reopenDelay, Self.workedAWhile)) {
            reopenAttempts = 0
        } else if !linkHeard {
            pending.add(events: health.unreachable(devices, reason: message, at: clock.date))
        }
        reporter.lost(message, retry: reopenDelay)
        publishLineDown()
        reopenAt = clock.now + nextReopenDelay()
    }
}

/// The queue of commands of one bus: filled from any thread, emptied by the bus between two requests.
final class CommandInbox: Sendable {
    private struct State {
        var queue: [QueuedCommand] = []
        /// Why commands are refused at once (link down, bus stopped); nil while they are taken. Before the start
        /// commands wait: the bus carries them out once its link is open.
        var refusal: String?
        var closed = false
        /// The link a waiting bus reads: woken when a command comes.
        var waker: (any BusLink)?
    }

    private let state = Mutex(State())

    /// The link to wake when a command comes or the bus must stop.
    var waker: (any BusLink)? {
        get { state.withLock { $0.waker } }
        set { state.withLock { $0.waker = newValue } }
    }

    /// Wakes the bus from a read so it looks at its queue (or its stop signal).
    func wake() { waker?.wake() }


    /// Queues a command; returns the refusal instead when the bus cannot take it now.
    func append(_ command: QueuedCommand) -> String? {
        let refusal = state.withLock { state -> String? in
            // While the link is down, or before the start and after the stop, nobody would carry it out soon.
            if let refusal = state.refusal { return refusal }
            state.queue.append(command)
            return nil
        }
        if refusal == nil { wake() }
        return refusal
    }

    /// Whether a command waits that may go now: not one to a device in `held`.
    func hasWaiting(besides held: [String]) -> Bool {
        state.withLock { state in state.queue.contains { !held.contains($0.device) } }
    }

    /// The oldest command that may go now: not one to a device in `held`.
    func next(besides held: [String]) -> QueuedCommand? {
        state.withLock { state in
            state.queue.firstIndex { !held.contains($0.device) }.map { state.queue.remove(at: $0) }
        }
    }

    func open() { state.withLock { if !$0.closed { $0.refusal = nil } } }

    func reopen() { open() }

    /// Refuses what waits and what comes, until `reopen`.
    func refuse(because reason: String) {
        let waiting = state.withLock { state -> [QueuedCommand] in
            state.refusal = reason
            defer { state.queue = [] }
            return state.queue
        }
        for command in waiting { command.completion(.failure(GatewayError(.portUnavailable, "\(command.device): \(reason)"))) }
    }

    func close(because reason: String) {
        state.withLock { $0.closed = true }
        refuse(because: reason)
    }
}

/// A command waiting for its turn on the bus.
struct QueuedCommand: Sendable {
    var command: HallCommand
    var device: String
    var completion: @Sendable (Result<Void, GatewayError>) -> Void
}

/// A command's caller's outcome, given once: by the bus, or at once when the caller is cancelled.
final class OnceOutcome: Sendable {
    private let state = Mutex<(waiter: CheckedContinuation<Void, any Error>?, result: Result<Void, GatewayError>?, given: Bool)>(
        (nil, nil, false))

    func wait(_ waiter: CheckedContinuation<Void, any Error>) {
        let ready = state.withLock { state -> Result<Void, GatewayError>? in
            if let result = state.result {
                state.result = nil
                state.given = true
                return result
            }
            state.waiter = waiter
            return nil
        }
        if let ready { waiter.resume(with: ready.mapError { $0 as any Error }) }
    }

    func resume(_ result: Result<Void, GatewayError>) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            guard !state.given, state.result == nil else { return nil }
            guard let waiter = state.waiter else {
                state.result = result
                return nil
            }
            state.waiter = nil
            state.given = true
            return waiter
        }
        waiter?.resume(with: result.mapError { $0 as any Error })
    }
}

/// A command sent and answered, waiting for its device's verdict.
struct HeldCommand {
    var command: QueuedCommand
    var key: Int
    /// Polls of its device it may wait for the verdict, and how many of them are left.
    var polls: Int
    var pollsLeft: Int
}

/// When each device is due for its next poll; a silent device is probed with backoff.
struct PollSchedule {
    private struct Entry {
        var interval: Duration?
        /// When the next poll is due, in nanoseconds of the bus's clock: compared for every device at every poll,
        /// where a `Duration` comparison is a call into the standard library.
        var due: Int64 = 0
        var backoff: Duration?
    }

    /// The longest pause between two probes of a silent device, unless its poll interval is longer.
    static let maximumBackoff = Duration.seconds(30)

    private var entries: [Entry]

    /// Devices by their place in the bus's configuration, each with its poll interval (nil: not polled).
    init(intervals: [Duration?]) {
        entries = intervals.map { Entry(interval: $0) }
    }

    /// The place of the polled device whose turn is earliest, if it is due; ties go in configuration order.
    func due(at time: Duration) -> Int? {
        let now = Self.nanoseconds(time)
        var best: Int?
        for index in entries.indices where entries[index].interval != nil && entries[index].due <= now {
            if best.map({ entries[index].due < entries[$0].due }) ?? true { best = index }
        }
        return best
    }

    /// The places of up to `limit` polled devices that are due, earliest turn first (ties in configuration order).
    func due(at time: Duration, limit: Int) -> [Int] {
        let now = Self.nanoseconds(time)
        return Array(entries.indices.filter { entries[$0].interval != nil && entries[$0].due <= now }
            .sorted { (entries[$0].due, $0) < (entries[$1].due, $1) }
            .prefix(limit))
    }

    /// When the next poll is due, if any device is polled at all.
    var nextDue: Duration? { entries.filter { $0.interval != nil }.map(\.due).min().map { .nanoseconds($0) } }

    /// A time on the bus's clock in nanoseconds, the far future (`Int64.max / 2` seconds) included.
    private static func nanoseconds(_ time: Duration) -> Int64 {
        let (seconds, attoseconds) = time.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (total, carried) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
        return overflow || carried ? (seconds < 0 ? .min : .max) : total
    }

    /// Books a poll: the next one `interval` after this one started; a device that is offline is probed at a
    /// doubling interval instead, so it does not take the line from the ones that answer.
    mutating func polled(_ index: Int, startedAt: Duration, answered: Bool, offline: Bool, at now: Duration) {
        guard let interval = entries[index].interval else { return }
        if answered || !offline {
            entries[index].backoff = nil
            // Never in the past: a device polled as fast as possible still waits for the others' turn.
            entries[index].due = Self.nanoseconds(max(startedAt + interval, now))
            return
        }
        // A device polled less often than the longest backoff is probed no more often than it was polled.
        let longest = max(Self.maximumBackoff, interval)
        let backoff = min(max((entries[index].backoff ?? max(interval, .milliseconds(500))) * 2, interval), longest)
        entries[index].backoff = backoff
        entries[index].due = Self.nanoseconds(now + backoff)
    }
}

/// What a bus has read and not committed yet, with the acknowledgements that wait for the commit; and, while the
/// outbox refuses commits, the exact tally of ratings it had to drop from memory.
struct PendingCommit {
    private(set) var events: [CloudEvent] = []
    private(set) var cursors: [DeviceCursor] = []
    private(set) var afterCommit: [LineRequest] = []
    /// Since when the outbox refuses commits, while it does.
    private var refusingSince: Date?
    /// Ratings dropped from memory per source while the outbox refused commits, not yet reported: how many, and the
    /// range of their numbers (a number counted back in leaves it as it was: the ones lost are still within it).
    private var memoryLosses: [String: (since: Date, count: Int64, numbers: ClosedRange<Int64>?)] = [:]
    /// Subjects of the sources with memory losses, for the fault events.
    private var subjects: [String: String?] = [:]

    /// An event as the outbox tells them apart: an id is unique within its source only (two pads may draw one boot id).
    private struct Key: Hashable {
        var source: String
        var id: String
    }

    /// The events held and those taken by a commit under way: a device repeats what it was not acknowledged (an FF 68
    /// pad about once a second), and while the outbox refuses commits each repeat would be held again, filling the
    /// memory bound with copies and counting them as lost ratings when trimmed.
    private var held: Set<Key> = []
    /// Ratings trimmed from memory and tallied as lost, until a commit succeeds: one the device repeats (an FF 68 pad
    /// does until acknowledged, within seconds) is held again and no longer lost. The newest `rememberedTrims` of them:
    /// a full disk for days trims on, and a Modbus pad never repeats one (an FF 68 pad that does after 10,000 later
    /// trims is counted lost and stored too).
    private var trimmedRatings: Set<Key> = []
    private var trimmedOrder: [Key] = []
    static let rememberedTrims = 10_000

    var isEmpty: Bool { events.isEmpty && cursors.isEmpty && afterCommit.isEmpty && memoryLosses.isEmpty }

    mutating func add(events: [CloudEvent] = [], cursors: [DeviceCursor] = [], afterCommit: [LineRequest] = []) {
        // One event: the outbox keeps its first copy too.
        for event in events where held.insert(Key(source: event.source, id: event.id)).inserted {
            self.events.append(event)
            if trimmedRatings.remove(Key(source: event.source, id: event.id)) != nil { countBackIn(event) }
        }
        // A device's cursors are written in order, the last one stays: only that one is held.
        for cursor in cursors {
            self.cursors.removeAll { $0.device == cursor.device }
            self.cursors.append(cursor)
        }
        self.afterCommit += afterCommit
    }

    /// Everything to commit now, the tallied memory losses included as faults.
    mutating func take(at time: Date) -> (events: [CloudEvent], cursors: [DeviceCursor], afterCommit: [LineRequest]) {
        // `held` keeps the taken ones: a repeat read while the commit is under way is no new event.
        defer {
            events = []
            cursors = []
            afterCommit = []
        }
        return (events + memoryLossFaults(at: time), cursors, afterCommit)
    }

    /// The commit failed: the events and cursors wait for the next one; the acknowledgements are dropped (the
    /// devices repeat, or the next poll asks again).
    mutating func restore(events failed: [CloudEvent], cursors failedCursors: [DeviceCursor], at time: Date) {
        refusingSince = refusingSince ?? time
        // Still in `held`: nothing read meanwhile doubled them.
        events = failed.filter { !$0.id.hasPrefix("ratings-lost-memory-") } + events
        let newer = cursors
        cursors = []
        add(cursors: failedCursors + newer)
    }

    mutating func committed() {
        refusingSince = nil
        memoryLosses = [:]
        trimmedRatings = []
        trimmedOrder = []
        held = Set(events.map { Key(source: $0.source, id: $0.id) })
    }

    /// Past the memory bound, the oldest held events go; the ratings among them (and the counts of `ratings-lost`
    /// faults among them) are tallied per source, so the loss reaches the store exactly once a commit succeeds.
    mutating func trim() -> (events: Int, ratings: Int)? {
        let excess = events.count - BusCommitter.maximumUncommitted
        guard excess > 0 else { return nil }
        let dropped = events.prefix(excess)
        events.removeFirst(excess)
        held.subtract(dropped.map { Key(source: $0.source, id: $0.id) })
        var ratings = 0
        for event in dropped {
            var loss = memoryLosses[event.source] ?? (since: refusingSince ?? Date(), count: 0, numbers: nil)
            switch event.data {
            case .rating(let rating):
                loss.count += 1
                let number = rating.deviceCounter ?? 0
                loss.numbers = loss.numbers.map { min($0.lowerBound, number)...max($0.upperBound, number) } ?? number...number
                ratings += 1
                rememberTrimmed(Key(source: event.source, id: event.id))
            case .deviceFault(let fault) where fault.fault == "ratings-lost":
                loss.count += fault.count ?? 0
            default:
                continue
            }
            memoryLosses[event.source] = loss
            subjects[event.source] = event.subject
        }
        return (excess, ratings)
    }

    /// How many trimmed ratings it would know again.
    var trimmedRatingsRemembered: Int { trimmedRatings.count }

    private mutating func rememberTrimmed(_ key: Key) {
        guard trimmedRatings.insert(key).inserted else { return }
        trimmedOrder.append(key)
        // Dropped a batch at a time: the oldest half once twice as many are held.
        if trimmedOrder.count >= 2 * Self.rememberedTrims {
            trimmedRatings.subtract(trimmedOrder.prefix(Self.rememberedTrims))
            trimmedOrder.removeFirst(Self.rememberedTrims)
        }
    }

    /// A rating tallied as lost is held again: no longer lost.
    private mutating func countBackIn(_ event: CloudEvent) {
        guard case .rating = event.data, var loss = memoryLosses[event.source] else { return }
        loss.count -= 1
        memoryLosses[event.source] = loss
    }

    private func memoryLossFaults(at time: Date) -> [CloudEvent] {
        memoryLosses.sorted { $0.key < $1.key }.compactMap { source, loss -> CloudEvent? in
            guard loss.count > 0 else { return nil }
            let seconds = Int(time.timeIntervalSince(loss.since))
            let numbers = loss.numbers.map { " (numbers between \($0.lowerBound) and \($0.upperBound))" } ?? ""
            let fault = DeviceFault(
                fault: "ratings-lost",
                detail: "\(loss.count) ratings lost\(numbers): the outbox refused commits for \(seconds) s (disk full?) "
                    + "and the gateway holds at most \(BusCommitter.maximumUncommitted) events per bus in memory",
                count: loss.count)
            return CloudEvent(
                id: "ratings-lost-memory-\(UUID().uuidString.lowercased())", source: source, type: HallEventType.deviceFault,
                time: time, subject: subjects[source] ?? nil, data: .deviceFault(fault))
        }
    }
}

/// Two-wire RS-485 adapters without echo suppression return what we wrote: each frame we wrote is dropped when it
/// comes back whole, in the order written; anything else (a reply that merely starts like our request, as every
/// Onbon frame does with its preamble) is handed on untouched.
///
/// An echo is expected until shortly after the frame left (`until`). What counts is when the bytes could have
/// arrived, not when the engine read them: on a loaded machine the read comes late, and an echo read late is still
/// our own frame, not a key press.
///
/// A device's answer can equal our request (a Modbus write of one register is answered with the request itself; an
/// FF 68 pad repeats a frame we acknowledged), so the filter learns whether the line echoes at all. A frame of ours
/// back whole before an answer equal to it could have been complete is an echo: the line echoes. Echoes that did not
/// come (`missesBeforeNoEcho` in a row) mean it does not, and from then on nothing is dropped. Until it is clear, an
/// answer equal to our request is taken for the echo, as before. A copy of a request answered with itself is no proof
/// either way: on a pseudo-terminal a simulator answers faster than any wire allows, and, taken for an echo that came,
/// an acknowledgement after every poll kept the polls' misses from ever adding up (every answer eaten for good).
struct EchoFilter {
    /// Frames of ours whose echo did not come, before the line is taken not to echo.
    static let missesBeforeNoEcho = 3

    /// Whether the line echoes what we write; nil until it is clear.
    private(set) var lineEchoes: Bool?
    private var misses = 0
    /// Frames sent whose copy would prove something.
    private var provingFramesSent = 0
    /// The frames that tell have not all been sent yet, the line not known. Echoes that come, but too late to prove
    /// anything (a USB adapter's latency), can keep the verdict open for good: then no longer learning.
    var stillLearning: Bool { lineEchoes == nil && provingFramesSent < Self.missesBeforeNoEcho }
    /// Our frames whose echo is expected, each with the time before which a whole copy can only be its echo, the end
    /// of its window, and whether a copy proves anything (not of a request answered with itself).
    private var frames: [(bytes: [UInt8], onlyEchoBefore: Duration, until: Duration, proves: Bool)] = []
    /// On a line known to echo, how long past its window an echo is still waited for: an echo can come late (a
    /// simulator on a loaded machine), and taken for a device's frame it would be answered (an FF 68 caller's
    /// acknowledgement comes back equal to its frame). Before the line is known, the window decides.
    static let lateEchoGrace: Duration = .seconds(1)
    private var grace: Duration { lineEchoes == true ? Self.lateEchoGrace : .zero }
    /// Received bytes that so far match the expected echo, held until it is clear whether they are our echo.
    private var held: [UInt8] = []

    /// We wrote `bytes` at `now`; its echo, if the line echoes, comes before `deadline`. A device's answer equal to
    /// it cannot be complete before `onlyEchoBefore` (our frame's wire time, the frame gap, then its own).
    /// `answerMayEqualIt`: the device answers with these very bytes.
    mutating func expect(_ bytes: [UInt8], at now: Duration, until deadline: Duration, onlyEchoBefore: Duration,
                         answerMayEqualIt: Bool = false) {
        guard lineEchoes != false else { return }
        // Each frame past its own window (a line wrongly taken to echo, its devices silent, would otherwise pile them
        // up); not one whose echo is arriving.
        let expired = frames.prefix { now > $0.until + grace }.count
        if expired > 0, held.isEmpty {
            frames.removeFirst(expired)
            missed()
        }
        frames.append((bytes, onlyEchoBefore, deadline, !answerMayEqualIt))
        if !answerMayEqualIt { provingFramesSent += 1 }
    }

    /// `bytes`, read at `now`, with our echoes taken out; they arrived after `earliest` (when the read before
    /// returned).
    mutating func filter(_ bytes: [UInt8], arrivedAfter earliest: Duration, readAt now: Duration) -> [UInt8] {
        guard !frames.isEmpty || !held.isEmpty else { return bytes }
        if let last = frames.last, earliest > last.until + grace { return giveBack(bytes[...]) }
        var input = bytes[...]
        while let byte = input.first, let expected = frames.first {
            guard byte == expected.bytes[held.count] else { return giveBack(input) }
            held.append(byte)
            input = input.dropFirst()
            if held.count == expected.bytes.count {
                if expected.proves {
                    if now < expected.onlyEchoBefore { lineEchoes = true }
                    // In a row: an echo read late (a loaded machine) is still one that came.
                    misses = 0
                }
                held = []
                frames.removeFirst()
            }
        }
        return Array(input)
    }

    /// The echo expected did not come: the bytes held, and the rest, are the devices'.
    private mutating func giveBack(_ rest: ArraySlice<UInt8>) -> [UInt8] {
        defer {
            held = []
            frames = []
        }
        if !frames.isEmpty { missed() }
        return held + rest
    }

    /// Also once the line was taken to echo: an echoing adapter echoes every frame, so echoes that stop coming mean
    /// the proof was wrong (a device that answered faster than a wire allows, as a simulator on a pseudo-terminal
    /// can) or the adapter was changed; otherwise every answer equal to its request would be eaten from then on.
    private mutating func missed() {
        guard lineEchoes != false else { return }
        misses += 1
        if misses >= Self.missesBeforeNoEcho { lineEchoes = false }
    }
}
