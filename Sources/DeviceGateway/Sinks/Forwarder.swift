public import Logging
import Synchronization

/// Moves committed events from the outbox to one sink, in order, at least once.
///
/// The sink's cursor advances only after the sink confirmed a batch, so a crash or a down store
/// loses nothing: delivery resumes from the cursor, and the store ignores what it already holds.
/// A store that is down is retried with exponential backoff and jitter (honouring its `Retry-After`);
/// a batch it refuses for good is split until the refused events are found, and only those it refuses again once it
/// took a later event are put aside.
public struct Forwarder: Sendable {
    public let outbox: Outbox
    public let sink: any EventSink
    public let config: SinkConfig
    let logger: Logger
    /// The first pause after a failure; it doubles up to `config.maximumRetryDelay`.
    public var firstRetryDelay = Duration.seconds(1)
    /// How often an idle forwarder looks for new events.
    var idleInterval = Duration.milliseconds(200)
    /// How long after the stop a healthy sink goes on delivering a backlog: within a service manager's stop timeout
    /// (systemd's 30 s in deploy/), the rest waiting in the outbox for the next start.
    var stopGrace = Duration.seconds(10)
    /// How often a failure that lasts is said again.
    var failureReminder = Duration.seconds(600)
    /// A failing sink's attempts, and a technician's request to try it now rather than at its backoff's end.
    let attempts = DeliveryAttempts()

    /// Creates the forwarder of one sink.
    public init(outbox: Outbox, sink: any EventSink, config: SinkConfig, logger: Logger) {
        self.outbox = outbox
        self.sink = sink
        self.config = config
        var logger = logger
        logger[metadataKey: "sink.name"] = "\(config.name)"
        self.logger = logger
    }

    /// Forwards until `stop` fires; a healthy sink then gets what is left once more, for up to `stopGrace`.
    public func run(until stop: StopSignal) async {
        var failing: String?
        // When the failure was last said: said again every `failureReminder` while it lasts (from a trial: a store
        // down for half an hour left one line, then only heartbeats at info).
        var failureSaid: ContinuousClock.Instant?
        var attempt = 0
        var stoppedAt: ContinuousClock.Instant?
        // The end of a refused run nothing had come after: the events committed since are offered behind it, one by
        // one, rather than joining it (from a trial: a store answering 400 to everything, the hall busy, was sent
        // three requests for each new event, without backoff).
        var refusedRunEnd: Int64?
        forwarding: while true {
            let stopping = stop.isStopped
            // A failing sink gets no last attempt: against a store that hangs it would hold the stop for its timeout,
            // and its events wait in the outbox for the next start anyway.
            if stopping, failing != nil { break }
            attempts.began()
            do {
                if stopping, stoppedAt == nil { stoppedAt = .now }
                while try await forwardBatch(through: refusedRunEnd) == config.batchSize {
                    guard stop.isStopped else { continue }
                    let since = stoppedAt ?? .now
                    stoppedAt = since
                    if ContinuousClock.now - since >= stopGrace {
                        let backlog = (try? await outbox.backlog(sink: sink.name)).map(String.init) ?? "the"
                        logger.notice("sink \(sink.name): stopping; \(backlog) events left wait in the outbox for the next start")
                        break forwarding
                    }
                }
                // One batch asked for again per pass: new events go in between, and a stop is not held up.
                if !stop.isStopped { try await resendAskedBatch() }
                if failing != nil {
                    let backlog = (try? await outbox.backlog(sink: sink.name)) ?? 0
                    logger.notice("sink \(sink.name): delivering again, \(backlog) events left in the backlog")
                }
                failing = nil
                attempt = 0
                refusedRunEnd = nil
                attempts.finished(failing: false)
                if stopping { break }
                await stop.sleep(for: idleInterval)
            } catch {
                let alone = error as? RefusedRunAlone
                let sinkError = alone?.error ?? error as? SinkError
                let outboxFailure = error as? OutboxCannotRecord
                let reason = sinkError?.message ?? outboxFailure?.message ?? "\(error)"
                // The outbox's own failure is not the sink's: not in its books, and a check does not send the batch again.
                if outboxFailure == nil { try? await outbox.recordFailure(sink: sink.name, reason: reason) }
                if failing != reason || failureSaid.map({ ContinuousClock.now - $0 >= failureReminder }) == true {
                    let backlog = (try? await outbox.backlog(sink: sink.name)).map(String.init) ?? "unknown"
                    let kept = "\(backlog) event\(backlog == "1" ? "" : "s") kept in the outbox"
                    let still = failing == reason ? "still " : ""
                    // The store's failure or the outbox's: "delivery failed" before "the store took them" contradicts.
                    logger.error(outboxFailure == nil
                                 ? "sink \(sink.name): delivery \(still)failed, \(kept): \(reason)"
                                 : "sink \(sink.name): \(still)stalled on the outbox, \(kept): \(reason)")
                    failureSaid = .now
                }
                failing = reason
                attempts.finished(failing: outboxFailure == nil, storeAskedToWait: sinkError?.retryAfter != nil)
                if stopping { break }
                attempt += 1
                let delay = retryDelay(attempt: attempt, retryAfter: sinkError?.retryAfter)
                // From a soak: a broker back was given its first batch up to a backoff step later (16 s connected).
                // Only a connection after the failure's: one the attempt made and lost (a broker that drops a client)
                // would otherwise end every backoff, and the sink's own reconnecting is paced.
                let failedOn = sink.connectionUp
                let connectedAgain = { [sink] in
                    guard let failedOn, let up = sink.connectionUp else { return false }
                    return up > 0 && up != failedOn
                }
                if let alone {
                    refusedRunEnd = alone.position
                    await sleep(for: delay, stop) {
                        if attempts.takeRequest() || connectedAgain() { return true }
                        return (try? await outbox.entries(after: alone.position, limit: 1))?.isEmpty == false
                    }
                } else {
                    await sleep(for: delay, stop) { attempts.takeRequest() || connectedAgain() }
                }
            }
        }
        attempts.stopped()
        await sink.shutdown()
    }

    /// Delivers until the outbox holds nothing more for this sink; returns how many events went.
    /// Throws the first failure (no retries): for benchmarks, tests and one-shot drains.
    @discardableResult
    public func drain() async throws -> Int {
        var total = 0
        while true {
            let count: Int
            do { count = try await forwardBatch() } catch let alone as RefusedRunAlone { throw alone.error }
            total += count
            if count < config.batchSize { return total }
        }
    }

    /// A refused run at the end of the backlog: the store has not been offered an event behind it yet.
    private struct RefusedRunAlone: Error {
        var position: Int64
        var error: SinkError
    }

    /// The store answered, but the outbox could not record what it answered (a full disk): the outbox's failure, not
    /// the store's; tried again with backoff like one.
    private struct OutboxCannotRecord: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// Runs `write`, the outbox's record of what the store answered: its failure is the outbox's, said as `what`
    /// failed, its error, and `then`.
    private func recordAnswer(_ what: String, then: String, _ write: () async throws -> Void) async throws {
        do {
            try await write()
        } catch {
            throw OutboxCannotRecord(message: "\(what) (\(GatewayError.oneLine("\(error)"))): \(then)")
        }
    }

    /// Waits out `delay`, or until `worthTrying` (looked at every `idleInterval`): an event committed behind a refused
    /// run, which tells whose fault the refusal is, a sink connected again, or a technician's check goes at once rather
    /// than after a backoff of up to a minute.
    private func sleep(for delay: Duration, _ stop: StopSignal, orUntil worthTrying: () async -> Bool) async {
        let until = ContinuousClock.now + delay
        while !stop.isStopped, ContinuousClock.now < until {
            await stop.sleep(for: min(idleInterval, until - .now))
            if await worthTrying() { return }
        }
    }

    /// Offers a batch of the put-aside events a technician asked to be sent again (`gatewayd outbox resend`), once the
    /// backlog is delivered; what the store refuses again stays put aside with its new reason, no longer asked for. A
    /// store that is down keeps the request for the next attempt.
    private func resendAskedBatch() async throws {
        let asked = try await outbox.resendAsked(sink: sink.name, limit: config.batchSize)
        guard !asked.isEmpty else { return }
        // Ends probed: a store whose fault is not fixed yet gets three requests, not two per event.
        try await offerHalving(asked[...], probingEnds: true) { part, refusal in
            let first = part[part.startIndex]
            let counted = "\(part.count) put-aside event\(part.count == 1 ? "" : "s")"
            guard let refusal else {
                try await recordAnswer("the store took \(counted) sent again, but the outbox cannot record it",
                                       then: "sent again once it can") {
                    try await outbox.resent(Array(part), sink: sink.name)
                }
                logger.notice("sink \(sink.name) took \(counted) sent again")
                return
            }
            try await recordAnswer("the store refuses \(counted) again, but the outbox cannot record it",
                                   then: "offered again once it can") {
                try await outbox.refusedAgain(Array(part), sink: sink.name, reason: refusal)
            }
            let what = part.count == 1 ? "event \(first.id) of \(first.source)" : "\(part.count) events from \(first.id) on"
            logger.error("sink \(sink.name) refused \(what) again; kept put aside: \(refusal)",
                         metadata: ["event.id": "\(first.id)", "event.source": "\(first.source)"])
        }
    }

    /// Exponential backoff with equal jitter: half the delay fixed, half random, so that a province's
    /// gateways do not all come back at the same second after the store restarts.
    public func retryDelay(attempt: Int, retryAfter: Duration?) -> Duration {
        let exponential = firstRetryDelay * (1 << min(attempt - 1, 20))
        let capped = min(exponential, config.maximumRetryDelay)
        let jittered = capped / 2 + capped / 2 * Double.random(in: 0...1)
        guard let retryAfter else { return jittered }
        return max(jittered, min(retryAfter, .seconds(3600)))
    }

    /// Delivers one batch, of events up to `through` when given; returns how many events it held (a full batch: there
    /// may be more).
    private func forwardBatch(through end: Int64? = nil) async throws -> Int {
        let delivered = try await outbox.deliveredPosition(sink: sink.name)
        var batch = try await outbox.entries(after: delivered, limit: config.batchSize)
        // Nothing left of the run (taken, or dropped at the disk budget): the rest goes as any batch.
        if let end, batch.contains(where: { $0.position <= end }) { batch.removeAll { $0.position > end } }
        guard !batch.isEmpty else { return 0 }
        try await deliver(batch[...])
        return batch.count
    }

    /// Delivers a batch; when the store refuses it for good, halves it until the refused events are alone, unless
    /// neither its first nor its last event is taken alone: then the store likely refuses everything now, and halving
    /// would cost it two requests per event at every attempt (a province's gateways at once). Once the store takes a
    /// later event, the refused run is offered again, and only what it refuses then is put aside: that is proof the
    /// refusal is the event's. A refused run with nothing taken after it is followed by up to
    /// `eventsOfferedBehindRefusals` more events, one by one, until the store takes one. When it takes none (or nothing
    /// comes after yet) the fault may be the store's (a proxy answering 400 for it, a column it added): the run is kept
    /// and tried again with backoff, or as soon as an event comes behind it.
    private func deliver(_ batch: ArraySlice<OutboundEvent>) async throws {
        var refused: [(event: OutboundEvent, reason: String)] = []
        try await deliver(batch, refused: &refused, probingEnds: true)
        guard let last = refused.last else { return }
        let behind = try await outbox.entries(after: last.event.position, limit: Self.eventsOfferedBehindRefusals)
        for event in behind {
            // Taken: the run before it is offered again, what is refused again put aside, and the cursor moves past.
            try await deliver([event][...], refused: &refused)
            if refused.isEmpty { return }
        }
        let first = refused[0]
        let what = refused.count == 1 ? "event \(first.event.id)" : "\(refused.count) events in a row from \(first.event.id)"
        let error = SinkError(.unavailable, "the store refuses \(what)"
                                + (behind.isEmpty ? " and nothing came after yet" : " and took none after")
                                + ", so the fault may be its own; kept and tried again: \(first.reason)")
        if behind.isEmpty { throw RefusedRunAlone(position: last.event.position, error: error) }
        throw error
    }

    /// How many events behind a refused run are offered to tell the store's fault from the events': a longer run of
    /// refusals is taken for the store's.
    static let eventsOfferedBehindRefusals = 16

    private func deliver(_ batch: ArraySlice<OutboundEvent>, refused: inout [(event: OutboundEvent, reason: String)],
                         probingEnds: Bool = false) async throws
    {
        guard let last = batch.last else { return }
        do {
            try await sink.deliver(Array(batch))
            // What was refused before this batch is settled first: the cursor moves in order.
            let delivered = try await offerAgain(refused[...])
            refused.removeAll()
            // The store has them: the outbox's failure, not the store's (from a trial on a full disk: "delivery failed"
            // for a batch the store had taken, sent again 23 times).
            try await recordAnswer("the store took \(batch.count + delivered) events, but the outbox cannot record it",
                                   then: "they are sent again once it can") {
                try await outbox.markDelivered(sink: sink.name, through: last.position, count: batch.count + delivered)
            }
        } catch let error as SinkError where error.code == .rejected {
            guard batch.count > 1 else {
                refused.append((last, error.message))
                return
            }
            if probingEnds, batch.count > 2, let first = batch.first, try await !takenAlone(first),
               try await !takenAlone(last) {
                refused += batch.map { ($0, error.message) }
                return
            }
            let middle = batch.startIndex + batch.count / 2
            try await deliver(batch[..<middle], refused: &refused)
            try await deliver(batch[middle...], refused: &refused)
        }
    }

    /// Whether the store takes `event` on its own (sent again with the rest later: the store keeps it once).
    private func takenAlone(_ event: OutboundEvent) async throws -> Bool {
        do {
            try await sink.deliver([event])
            return true
        } catch let error as SinkError where error.code == .rejected {
            return false
        }
    }

    /// Offers a refused run once more, now that the store took an event after it: a store that refused everything
    /// for a while (a proxy answering 400 for it) and came back takes it now. What it refuses again, halved until
    /// alone, is put aside. Returns how many events it took.
    private func offerAgain(_ run: ArraySlice<(event: OutboundEvent, reason: String)>) async throws -> Int {
        guard !run.isEmpty else { return 0 }
        var taken = 0
        try await offerHalving(run.map(\.event)[...], probingEnds: false) { part, refusal in
            guard let refusal else {
                taken += part.count
                return
            }
            let event = part[part.startIndex]
            try await recordAnswer("the store refuses event \(event.id) for good, but the outbox cannot put it aside",
                                   then: "it is offered again once it can") {
                try await outbox.putAside([event], sink: sink.name, reason: refusal)
            }
            logger.error(
                "sink \(sink.name) refused event \(event.id) of \(event.source) for good; put aside: \(refusal)",
                metadata: ["event.id": "\(event.id)", "event.source": "\(event.source)"])
        }
        return taken
    }

    /// Offers `events`, halving what the store refuses for good until it is alone; `settled` gets each part the store
    /// took (no refusal) or refused (its reason): one event, or with `probingEnds` all of them when neither end is
    /// taken alone either.
    private func offerHalving(
        _ events: ArraySlice<OutboundEvent>, probingEnds: Bool,
        _ settled: (ArraySlice<OutboundEvent>, String?) async throws -> Void
    ) async throws {
        do {
            try await sink.deliver(Array(events))
            try await settled(events, nil)
        } catch let error as SinkError where error.code == .rejected {
            if events.count == 1 { return try await settled(events, error.message) }
            if probingEnds, events.count > 2, let first = events.first, let last = events.last,
               try await !takenAlone(first), try await !takenAlone(last) {
                return try await settled(events, error.message)
            }
            let middle = events.startIndex + events.count / 2
            try await offerHalving(events[..<middle], probingEnds: false, settled)
            try await offerHalving(events[middle...], probingEnds: false, settled)
        }
    }
}

/// A forwarder's attempts as others see them, and a technician's request to end a backoff (from a trial: a technician
/// who fixed the central store's link and checked again was told it failed for up to a minute more, the backoff's
/// last step). A pause the store asked for (`Retry-After`) is not cut: a monitor checking every minute would undo it.
final class DeliveryAttempts: Sendable {
    private struct State {
        var failing = false
        var storeAskedToWait = false
        var begun = 0
        /// The number of the attempt that ended last.
        var ended = 0
        var asked = false
        var stopped = false
    }
    private let state = Mutex(State())

    func began() {
        state.withLock { $0.begun += 1 }
    }

    func finished(failing: Bool, storeAskedToWait: Bool = false) {
        state.withLock { state in
            (state.failing, state.storeAskedToWait, state.ended) = (failing, storeAskedToWait, state.begun)
        }
    }

    /// The forwarder ended: nothing is to be waited for.
    func stopped() {
        state.withLock { $0.stopped = true }
    }

    /// Asks for an attempt now when the last one failed and the store did not ask to wait; returns the attempts begun
    /// so far (nil: none is asked for), for `endedSince`: one already under way is not the answer.
    func ask() -> Int? {
        state.withLock { state in
            guard state.failing, !state.storeAskedToWait, !state.stopped else { return nil }
            state.asked = true
            return state.begun
        }
    }

    /// True once, when an attempt was asked for.
    func takeRequest() -> Bool {
        state.withLock { state in
            defer { state.asked = false }
            return state.asked
        }
    }

    /// Whether an attempt begun after the `begun`-th has ended, or the forwarder stopped.
    func endedSince(_ begun: Int) -> Bool {
        state.withLock { $0.stopped || $0.ended > begun }
    }
}
