public import Logging
public import Foundation
import Synchronization
public import ServiceLifecycle

/// The gateway: buses polling devices into the outbox, forwarders moving the outbox to the sinks.
///
/// A `Service`: on graceful shutdown (SIGINT/SIGTERM through a `ServiceGroup`) the buses finish and
/// commit the cycle in flight, the forwarders deliver what is committed, then `run()` returns.
public final class Gateway: Service {
    public let config: GatewayConfig
    public let outbox: Outbox
    private let buses: [any Bus]
    private let running = Mutex(false)
    /// Whether `run` is under way: its buses started and not stopped.
    public var isRunning: Bool { running.withLock { $0 } }
    /// How the last write of the devices' states (every 2 s) went: the sign that the outbox takes writes, read by the
    /// readiness probe, which anyone on the machine may ask as often as it likes.
    private let statesWritten = Mutex<(at: ContinuousClock.Instant?, problem: String?)>((nil, nil))
    /// The hall day's last turn (an opening, a break, a closing), for the boards that answer again after it.
    let boardsTurn = Mutex<BoardsTurn?>(nil)
    /// Per board, the text or call last shown on it and the turn (its generation) it was shown in: a board that answers
    /// again after an opening it missed is not given the welcome over a call the queue system sent it meanwhile, and
    /// one back from a power cut is shown the call again (it may have lost it). Kept in the outbox with the devices'
    /// states: a restart within the opening or a hold goes on from it.
    let boardsShown = Mutex<[String: BoardShown]>([:])
    /// Per board, the last of those whose frames went out and the latest not sent.
    private let boardsSent = Mutex<[String: BoardSends]>([:])
    /// The sequence of this run's last send to a board (`BoardShown.sequence`).
    private let boardSendsCount = Mutex(0)
    /// The day's first turn in this run, once it came: what was sent before it is taken into it.
    private let firstTurn = Mutex<FirstTurn?>(nil)
    /// Boards a call or a text switched on after closing (延时服务, a technician's test), each with the wait that
    /// switches it off again.
    let lateCalls = Mutex<[String: LateCall]>([:])
    /// Per board, the turn in which someone switched it on by a power command: after closing it is on as they meant,
    /// and neither held nor said dark.
    let poweredOnByHand = Mutex<[String: Int]>([:])
    /// Per board, the turn in which someone switched it off by a power command: dark as they meant until the hall's
    /// day switches it again, or a call after closing lights it.
    let poweredOffByHand = Mutex<[String: Int]>([:])
    /// One switching of a board at a time: its hall day's turns, a call or text after closing, its hold's end.
    let boardTurns = KeyedTurns()
    /// A board's commands one at a time, each from its numbering until the bus carried it out.
    let boardSends = KeyedTurns()
    /// The window and hall boards, which the hall's day switches.
    var boards: [String] { config.devices.filter { [.windowBoard, .hallBoard].contains(roles[$0.id]) }.map(\.id) }
    /// Why the outbox takes no writes, as its last write of the devices' states found (or one not made for 30 s: a
    /// long prune or another process's lock takes up to 10); nil when it does, or the gateway does not run.
    public var outboxWriteProblem: String? {
        let (at, problem) = statesWritten.withLock { $0 }
        if let problem { return problem }
        guard let at, case let age = ContinuousClock.now - at, age > .seconds(30) else { return nil }
        return "its last write was \(age.components.seconds) s ago (the gateway's writes are held up)"
    }
    /// What each configured device is to the hall, by device id.
    public let roles: [String: DeviceRole]
    /// Devices that say only on a later poll whether they took a command (`DeviceProfile.acknowledgesOnLaterPoll`).
    public let acknowledgingOnLaterPoll: Set<String>
    private let forwarders: [Forwarder]
    let logger: Logger
    private let printers: PrinterConditions
    /// The gateway's ticket numbers (`tickets:` in the configuration), nil when the queue system numbers tickets.
    public let tickets: TicketCounters?
    /// The wall clock of the hall's day, the ticket days and the records of the outbox's books.
    public let hallClock: any HallClock
    private let onCommit: BusCommitter.Observer
    private let startedAt = Date()
    /// Whether the run before this one stopped as asked (nil: not known), for this run's first heartbeat.
    private let previousRunStoppedCleanly: Bool?
    private let started = ContinuousClock.now
    /// Why the hall's day holds its actions (a clock behind the last run, unsynchronised), while it does.
    private let hallDayHold = Mutex<String?>(nil)
    /// The verdict of the check last committed as an event since the start, and that event's id; taken before
    /// `ownWaiting`.
    private let checkVerdictReported = Mutex<(verdict: CheckVerdict, id: String)?>(nil)
    /// The gateway's own events the outbox refused (a full disk), oldest first.
    private let ownWaiting = Mutex<[CloudEvent]>([])
    private let ownRefusals = CommitRefusals()
    /// Names this run's heartbeats: `heartbeat-<run>-<n>`.
    private let runId = String(UInt32.random(in: 0...UInt32.max), radix: 16)

    /// Sets up the outbox, sinks and buses. Fails only for what makes the whole gateway useless
    /// (an outbox that cannot be written, a profile that cannot be read); a missing port is not that.
    public init(config: GatewayConfig, profiles: ProfileLibrary, logger: Logger, hallClock: any HallClock = SystemHallClock(),
                onCommit: @escaping BusCommitter.Observer = { _ in }) throws {
        self.config = config
        self.logger = logger
        self.hallClock = hallClock
        let printers = PrinterConditions()
        self.printers = printers
        // Printers' conditions are kept from their events: the day's check and the choice of a printer read them.
        let onCommit: BusCommitter.Observer = { events in
            printers.take(events)
            onCommit(events)
        }
        self.onCommit = onCommit
        var outboxPolicy = config.outbox
        outboxPolicy.localCopies = config.sinks.compactMap { sink in
            if case .sqlite(let path) = sink.kind { path } else { nil }
        }
        let outbox = try Outbox.open(path: config.outboxPath, policy: outboxPolicy, logger: logger)
        self.outbox = outbox
        Self.warnIfTheDiskIsSmallerThanTheBudget(config, outbox: outbox.path, logger: logger)
        // Before the start commits anything of its own. From an installer's trial: after a kill -9 nothing said that the
        // run before had ended uncleanly (its heartbeats stopped; no `hall.gateway.stopped`).
        do {
            let lastRun = try outbox.lastRun(source: EventSource.gateway(hall: config.hall.id))
            previousRunStoppedCleanly = lastRun?.stoppedCleanly
            if let lastRun, !lastRun.stoppedCleanly {
                let last = lastRun.lastRecorded.map { "; its last record: \(HallTime.text($0, timeZone: config.hall.timeZone, toTheSecond: true))" }
                // A stop on a full disk cannot record itself either (from a trial: taken for a crash).
                logger.warning("the gateway's last run did not record a clean stop (a power cut, a kill, a crash, or a disk too full to record it)\(last ?? "")")
            }
        } catch {
            previousRunStoppedCleanly = nil
            logger.warning("outbox: cannot read how the last run stopped: \(error)")
        }
        do {
            // Before any look-up: a key from before a stop of days is no longer answered (the minute's forgetting
            // comes a minute into the run).
            try outbox.forgetCommandKeysBlocking(before: Date() - CommandCenter.keptKeys)
        } catch {
            logger.warning("outbox: forgetting idempotency keys older than a day failed: \(error)")
        }
        Self.settleInterruptedCommands(outbox, logger: logger)
        tickets = config.hallDay?.tickets.map {
            TicketCounters(settings: $0, timeZone: config.hall.timeZone, clock: hallClock, store: OutboxTicketStore(outbox: outbox))
        }
        forwarders = config.sinks.map { sink in
            Forwarder(outbox: outbox, sink: DeferredSink(config: sink, hallId: config.hall.id, logger: logger),
                      config: sink, logger: logger)
        }
        var profileCache: [String: LoadedProfile] = [:]
        var roles: [String: DeviceRole] = [:]
        var acknowledgingOnLaterPoll: Set<String> = []
        buses = try config.buses.compactMap { bus in
            let members = try config.devices.filter { $0.bus == bus.id }.map { device in
                let loaded = try profileCache[device.profile] ?? profiles.load(named: device.profile)
                profileCache[device.profile] = loaded
                roles[device.id] = DeviceRole.of(loaded.profile, window: device.window)
                if let missing = loaded.profile.withoutWindow(device) { logger.warning("\(missing)") }
                if loaded.profile.acknowledgesOnLaterPoll { acknowledgingOnLaterPoll.insert(device.id) }
                return DriverRegistry.Member(device: device, profile: loaded.profile, pollInterval: loaded.pollInterval,
                                             identify: loaded.identify)
            }
            guard !members.isEmpty else {
                // Nothing to poll; opening the port would only hold it from a technician's tools.
                logger.warning("bus \(bus.id) has no devices in the configuration; its port is left closed")
                return nil
            }
            return try DriverRegistry.bus(for: bus, members: members, hallId: config.hall.id, outbox: outbox,
                                          logger: logger, onCommit: onCommit)
        }
        self.roles = roles
        self.acknowledgingOnLaterPoll = acknowledgingOnLaterPoll
    }

    /// Before any command can come in: what the last run left under way (a ticket being printed) gets its event.
    private static func settleInterruptedCommands(_ outbox: Outbox, logger: Logger) {
        do {
            let settled = try outbox.settleInterrupted()
            if settled.unreadable > 0 {
                logger.error("outbox: \(settled.unreadable) records of tickets being printed when the gateway stopped could not be read; dropped")
            }
            for event in settled.committed {
                guard case .command(let executed) = event.data else { continue }
                let ticket = executed.ticket ?? "?"
                guard event.type == HallEventType.ticketIssued else {
                    logger.warning("ticket \(ticket): no printer printed it; its event, not committed when the gateway stopped, is now (\(event.id))")
                    continue
                }
                let printer = executed.devices.last?.device ?? "its printer"
                logger.warning("""
                    ticket \(ticket) was being printed on \(printer) when the gateway stopped: committed as issued \
                    (event \(event.id)); whether it came out is not known, check \(printer)
                    """)
            }
        } catch {
            logger.error("outbox: cannot settle what the gateway was doing when it last stopped (\(error)); tried again at the next start")
        }
    }

    /// Carries out a command on a device, on the bus that owns it (commands go before that bus's polls). A board that
    /// acknowledges on a later poll has carried it out once it acknowledged, not when it took the writes: until then
    /// the command is not done.
    ///
    /// A call, a recall or a text to a board the hall's closing switched off switches it on first, and off again
    /// `late-call-minutes` after the last (延时服务; a technician's test at night).
    public func send(_ command: HallCommand, to deviceId: String) async throws {
        if case .power = command {
            // Someone switched it as they meant, in the hall's turn of the moment: a hold after closing would switch it
            // again (from a trial: off by hand, still "on after closing" in status, then "switched off again").
            let asked = boardsTurn.withLock { $0 }
            try await boardTurns.run(on: deviceId) {
                // A turn came while it waited for the board (the closing switching it off first): meant for the hall
                // as it was, it is not carried out over the turn (a switch-on just before closing kept the board on
                // all night).
                let turn = boardsTurn.withLock { $0 }
                guard turn?.generation == asked?.generation else {
                    let which = turn?.on == false ? "closing" : "opening or break"
                    throw GatewayError(.commandRejected, """
                        \(deviceId): the hall's \(which) switched the board meanwhile; \(command.name) not sent: send it \
                        again if it is still meant
                        """)
                }
                // Noted first: the screen going dark under the command is as meant, not a board found dark.
                let offBefore = poweredOffByHand.withLock { $0[deviceId] }
                if command == .power(on: false) { poweredOffByHand.withLock { $0[deviceId] = turn?.generation } }
                do {
                    try await carryOut(command, on: deviceId)
                } catch let error as GatewayError where [.commandRejected, .deviceOffline, .portUnavailable, .deviceError].contains(error.code) {
                    // Not taken: the board is as it was. Unconfirmed, it may well be dark as meant.
                    poweredOffByHand.withLock { $0[deviceId] = offBefore }
                    throw error
                }
                await endLateCall(on: deviceId)
                poweredOnByHand.withLock { $0[deviceId] = command == .power(on: true) ? turn?.generation : nil }
                if command == .power(on: true) { poweredOffByHand.withLock { $0[deviceId] = nil } }
                // On by hand after closing: on through a restart too, until the opening (from a trial: a late citizen
                // was served under it when a restart switched it off). Not once an opening came while it was carried
                // out: the opening forgot every note, and one written now would keep the board on the next night.
                if command == .power(on: true), turn?.on == false,
                   boardsTurn.withLock({ $0?.generation }) == turn?.generation {
                    await noteHold(on: deviceId, until: Self.onByHand)
                }
            }
            return
        }
        if case .pause = command, isDarkAfterClosing(deviceId) {
            // Nobody is there to see it; a board without a power command, only blanked at the closing, would show it
            // all night (from a second read).
            logger.info("hall day: a pause after closing on \(deviceId) is not sent: the closing switched the board off")
            return
        }
        guard afterClosingTurn(command, to: deviceId) != nil else {
            if command.shows, afterClosingHold(for: deviceId) == .zero {
                logger.notice("hall day: a \(command.name) after closing on \(deviceId) is not shown: the board stays off (late-call-minutes: 0)")
            }
            return try await carryOut(command, on: deviceId)
        }
        try await boardTurns.run(on: deviceId) {
            // Looked at again in its turn: the hall may have opened meanwhile.
            guard let turn = afterClosingTurn(command, to: deviceId) else { return try await carryOut(command, on: deviceId) }
            // Each time: a board under a hold may have been switched off since (its own key, a power cycle put right).
            do {
                try await carryOut(.power(on: true), on: deviceId)
            } catch let error as GatewayError where error.code == .commandRejected {
                // No power command: it was blanked at the closing, and shows what it is sent as it is.
            }
            // Held from here, whatever becomes of the command: the board is lit.
            await holdLateCall(command, on: deviceId, turn: turn)
            try await carryOut(command, on: deviceId)
        }
    }

    /// Carries out a command on the bus that owns the device, as the hall's day asks it: no after-closing rule.
    /// `hallDaysText`: a text is the hall day's own (the welcome, a break's), its words kept as shown. `earlier`: what
    /// `command` shows again (after a power cut), kept as it was sent, by whom and when.
    func carryOut(_ command: HallCommand, on deviceId: String, hallDaysText: Bool = false, showingAgain earlier: BoardShown? = nil)
        async throws
    {
        guard let bus = bus(of: deviceId) else {
            throw GatewayError(.deviceError, "no device \(deviceId) in hall \(config.hall.id)")
        }
        // A board's only: a caller's LED shows three digits, not a board's wording.
        guard boards.contains(deviceId) else { return try await bus.send(command, to: deviceId) }
        // A board's commands one at a time in its turn, which lasts until the bus carried each out (the bus holds the
        // next for its verdict anyway): numbered as they reach the bus, two calls sent at once cannot list one while
        // the board shows the other, and a switch of the hall's day keeps its place among them.
        do {
            try await boardSends.run(on: deviceId) {
                // Cancelled while it waited for the turn: not sent, not numbered.
                try Task.checkCancellation()
                // A screen switched or dimmed shows no new text.
                guard command.setsDisplay else { return try await bus.send(command, to: deviceId) }
                try await send(command, toBoard: deviceId, on: bus, hallDaysText: hallDaysText, showingAgain: earlier)
            }
        } catch {
            if command.setsDisplay { await recordLastShown(of: deviceId) }
            throw error
        }
        // Into the outbox before the sender hears of it, after the turn: the write reads what is newest then.
        if command.setsDisplay { await recordLastShown(of: deviceId) }
    }

    /// Sends a command that sets what `board` shows, in its turn: what it is meant to show is noted before it goes
    /// out, and what it was last sent follows what went out.
    private func send(_ command: HallCommand, toBoard deviceId: String, on bus: any Bus, hallDaysText: Bool,
                      showingAgain earlier: BoardShown?) async throws {
        // Before it is sent: what the hall means the board to show, also when the send times out (an older call must
        // not come back on a board back from a power cut); not one the board cannot take (too long, not its charset).
        let templates = config.devices.first { $0.id == deviceId }?.templates ?? DisplayTemplates()
        let turn = boardsTurn.withLock { $0?.generation }
        let sequence = boardSendsCount.withLock { count in
            count += 1
            return count
        }
        let entry = earlier.map { BoardShown(turn: turn, command: $0.command, shown: $0.shown, sequence: sequence) }
            ?? BoardShown(
                turn: turn, command: command,
                shown: ShownOnBoard(command, templates: templates, hallDaysText: hallDaysText, at: hallClock.now),
                sequence: sequence)
        boardsShown.withLock { $0[deviceId] = entry }
        do {
            try await bus.send(command, to: deviceId)
        } catch let error as GatewayError where [.commandRejected, .deviceOffline, .portUnavailable].contains(error.code) {
            // Not sent, or refused: the board shows what it was last sent (not an earlier command that was not sent
            // either). Not sent, it may have lost that too (offline: a power cut), and nothing older is shown on it
            // again (from a trial: a call refused as offline was shown when the board came back, and status listed it
            // as sent); a call shown again is still its own.
            guard earlier == nil || error.code == .commandRejected else { throw error }
            // Not marked for a line that is down (a cable, a converter restarting, the stop): the board may well show it.
            let offline = error.code == .deviceOffline
            let sent = boardsSent.withLock { sends in
                if sequence > sends[deviceId]?.lastNotSent?.sequence ?? 0 {
                    sends[deviceId, default: BoardSends()].lastNotSent = (sequence, offline)
                }
                if offline {
                    sends[deviceId]?.lastOut?.command = nil
                    sends[deviceId]?.lastOut?.shown.laterCommandNotSent = true
                }
                return sends[deviceId]?.lastOut
            }
            boardsShown.withLock { shown in
                if shown[deviceId] == entry { shown[deviceId] = sent }
            }
            throw error
        } catch let cancelled as CancellationError {
            // Cancelled before the bus took it: not sent at all; the board shows what it was last sent.
            let sent = boardsSent.withLock { $0[deviceId]?.lastOut }
            boardsShown.withLock { shown in
                if shown[deviceId] == entry { shown[deviceId] = sent }
            }
            throw cancelled
        } catch {
            // Its frames went out unconfirmed (no answer, the link lost after them): it may show it.
            framesWentOut(entry, to: deviceId)
            throw error
        }
        framesWentOut(entry, to: deviceId)
    }

    /// `entry`'s frames went out to `board`: the last sent to it, unless a later command's went out before; and listed
    /// where a later command's refusal put back an older one (from a fourth read: a call held for a Modbus board's
    /// later acknowledgement, ending after the next call was refused, left the call before it listed, and shown again
    /// when the line came back).
    private func framesWentOut(_ entry: BoardShown, to board: String) {
        var entry = entry
        // Sent before the day's first turn in this run, and taken into it since (from the tests: listed without it, a
        // board back from a power cut was not shown it again).
        if entry.turn == nil, let first = firstTurn.withLock({ $0 }), first.takes(entry) { entry.turn = first.generation }
        let listed = boardsSent.withLock { sends -> BoardShown? in
            if let last = sends[board]?.lastOut, last.sequence > entry.sequence { return nil }
            if let notSent = sends[board]?.lastNotSent, notSent.sequence > entry.sequence, notSent.offline {
                entry.command = nil
                entry.shown.laterCommandNotSent = true
            }
            sends[board, default: BoardSends()].lastOut = entry
            return entry
        }
        guard let listed else { return }
        boardsShown.withLock { shown in
            if shown[board]?.sequence ?? 0 <= listed.sequence { shown[board] = listed }
        }
    }

    /// Writes what `board` was last sent into the outbox now, not with the next round of the devices' states (from a
    /// second read: a power cut within 2 s of a call brought back the call before it).
    private func recordLastShown(of board: String) async {
        do {
            try await outbox.recordLastShown(of: board) { self.boardsShown.withLock { $0[board]?.shown } }
        } catch {
            // A full disk is reported by the commits that matter; the states' next round writes it.
            logger.debug("outbox: what \(board) was last sent is not recorded: \(error)")
        }
    }

    /// What the outbox kept of what each board was last sent, for this run to go on from: not shown since the turn
    /// this run begins with until that turn finds it sent within its time (`boardsShownSince`).
    private func restoreBoardsShown() async {
        do {
            let kept = try await outbox.deviceStates().compactMap { record -> (String, ShownOnBoard)? in
                guard boards.contains(record.state.device), let shown = record.state.lastShown else { return nil }
                return (record.state.device, shown)
            }
            boardsShown.withLock { boardsShown in
                // Not over one sent since the start (a command held for the outbox is carried out at once).
                for (board, shown) in kept where boardsShown[board] == nil {
                    let entry = BoardShown(turn: nil, command: shown.showingAgain, shown: shown)
                    boardsShown[board] = entry
                    boardsSent.withLock { $0[board, default: BoardSends()].lastOut = entry }
                }
            }
        } catch {
            logger.warning("outbox: what the boards were last sent before this start cannot be read (\(error)); a board back from a power cut is shown its next call")
        }
    }

    /// What `board` was sent in the turn `generation`; nil when nothing since it began.
    func shown(on board: String, inTurn generation: Int) -> BoardShown? {
        boardsShown.withLock { $0[board] }.flatMap { $0.turn == generation ? $0 : nil }
    }

    /// The day's first turn in this run, `generation`, began at `since` (an opening or a closing): what a board was sent
    /// before it is taken into it as `FirstTurn.takes` says.
    func boardsShownSince(_ since: Date, turn generation: Int) {
        let first = FirstTurn(since: since, generation: generation)
        firstTurn.withLock { $0 = first }
        boardsShown.withLock { shown in
            for (board, entry) in shown where entry.turn == nil && first.takes(entry) { shown[board]?.turn = generation }
        }
        // The last sent too, which a refused command puts back (from a fourth read: back without its turn, a board back
        // from a power cut was given the welcome over its call).
        boardsSent.withLock { sends in
            for (board, sent) in sends where sent.lastOut.map({ $0.turn == nil && first.takes($0) }) == true {
                sends[board]?.lastOut?.turn = generation
            }
        }
    }

    /// The closed turn in which `command` to `deviceId` asks a board the hall day switched off to show something (a
    /// call or recall: 延时服务, citizens still queued at the closing are called after it; a text: the queue system's,
    /// a technician's test), nil when it does not.
    private func afterClosingTurn(_ command: HallCommand, to deviceId: String) -> Int? {
        guard let hold = config.hallDay?.lateCallHold, hold > .zero, isRunning, boards.contains(deviceId) else { return nil }
        guard command.shows else { return nil }
        return closedTurn(of: deviceId)
    }

    /// The closed turn `board` is off in, nil when it is on: the hall open, or switched on by hand since the closing.
    private func closedTurn(of board: String) -> Int? {
        guard let turn = boardsTurn.withLock({ $0.flatMap { $0.on ? nil : $0.generation } }),
              poweredOnByHand.withLock({ $0[board] }) != turn
        else { return nil }
        return turn
    }

    /// Whether `board` is off as the hall's closing left it: neither held on for a call or a text nor switched on by hand.
    public func isDarkAfterClosing(_ board: String) -> Bool {
        guard isRunning, boards.contains(board), let turn = closedTurn(of: board) else { return false }
        return lateCalls.withLock { $0[board]?.generation } != turn
    }

    /// Whether `board`'s screen should be lit now: the hall open and its turn has switched the board, or after
    /// closing a call or a text holding it, or a hand's switch-on; not after a hand's switch-off since the day's last
    /// turn. Without a turn (no `hours:`, or the day held for the clock) nobody knows: not expected.
    func expectsScreenOn(_ board: String) -> Bool {
        guard let turn = boardsTurn.withLock({ $0 }), poweredOffByHand.withLock({ $0[board] }) != turn.generation else {
            return false
        }
        // Not while the opening is still switching it: its screen comes on with the acknowledgement.
        return turn.on ? turn.tried.contains(board) : !isDarkAfterClosing(board)
    }

    /// Ends the hold after closing on `board`, if any: its switch-off is not needed any more.
    private func endLateCall(on board: String) async {
        lateCalls.withLock { calls in
            calls[board]?.switchOff.cancel()
            calls[board] = nil
        }
        // Also one noted before this start and not resumed yet (the day held for the clock).
        await forgetHold(on: board)
    }

    /// The end noted for a board switched on by hand after closing: none before the opening.
    static let onByHand = Date.distantFuture

    /// Forgets the hold on `board` noted for a restart.
    func forgetHold(on board: String) async {
        do {
            try await outbox.forgetBoardHold(board)
        } catch {
            logger.warning("outbox: \(board)'s hold after closing is not forgotten (\(error)); a restart within it keeps it on until it ends")
        }
    }

    /// At a turn of the hall's day (boards `on` or off): after a closing, holds noted before a restart go on for what
    /// is left of each (at most `late-call-minutes`), and boards switched on by hand stay on, so that a restart does
    /// not darken a board a late citizen is served under; an opening or a break forgets them. A hold noted before an opening the gateway did not see ended
    /// before the next closing: holds are hours long at most.
    func resumeLateCalls(on: Bool, turn: Int) async {
        guard !on else {
            // Never resumed: what the next closing finds must be its own.
            try? await outbox.forgetBoardHold(nil)
            return
        }
        let noted: [String: Date]
        do {
            noted = try await outbox.boardHolds()
        } catch {
            logger.warning("outbox: boards held on after closing before this start cannot be read (\(error)): switched off")
            return
        }
        let now = hallClock.now
        let byHand = noted.filter { boards.contains($0.key) && $0.value == Self.onByHand }.keys.sorted()
        poweredOnByHand.withLock { for board in byHand { $0[board] = turn } }
        if !byHand.isEmpty {
            logger.notice("hall day: kept on after closing, switched on by hand before this start: \(byHand.joined(separator: ", "))")
        }
        let hold = config.hallDay?.lateCallHold ?? .zero
        let resumed = lateCalls.withLock { calls -> [(board: String, until: Date)] in
            guard isRunning, hold > .zero else { return [] }
            return noted.filter {
                boards.contains($0.key) && $0.value > now && $0.value != Self.onByHand && calls[$0.key] == nil
            }.map { board, until in
                let left = min(Duration.seconds(until.timeIntervalSince(now)), hold)
                calls[board] = lateCall(on: board, turn: turn, ends: .now + left, until: now.addingTimeInterval(left.timeInterval))
                return (board, now.addingTimeInterval(left.timeInterval))
            }
        }
        for (board, until) in resumed.sorted(by: { $0.board < $1.board }) {
            logger.notice("""
                hall day: \(board) kept on after closing until \(HallTime.text(until, timeZone: config.hall.timeZone).suffix(5)), \
                held for a call or a text before this start
                """)
        }
    }

    /// How long `board` will stay on if it is given a call or a text now, when the hall's closing switched it off
    /// (`late-call-minutes`; zero: it stays off); nil when it is on as the hall day asks.
    public func afterClosingHold(for board: String) -> Duration? {
        guard isRunning, boards.contains(board), closedTurn(of: board) != nil else { return nil }
        return config.hallDay?.lateCallHold ?? .zero
    }

    /// Keeps `board` on until the hold after its last late call has passed, then switches it off again, unless the
    /// hall has opened since (from a duty officer's trial: a call after closing went to a dark board and was `done`).
    private func holdLateCall(_ command: HallCommand, on board: String, turn: Int) async {
        guard let hold = config.hallDay?.lateCallHold else { return }
        let until = hallClock.now.addingTimeInterval(hold.timeInterval)
        let first = lateCalls.withLock { calls -> Bool? in
            // Not after the run's end cancelled the holds: a wait nobody would cancel.
            guard isRunning else { return nil }
            let previous = calls[board]
            previous?.switchOff.cancel()
            calls[board] = lateCall(on: board, turn: turn, ends: ContinuousClock.now + hold, until: until)
            // Lit for the call: a hand's switch-off before it no longer says the board is meant dark.
            poweredOffByHand.withLock { $0[board] = nil }
            return previous?.generation != turn
        }
        if first != nil { await noteHold(on: board, until: until) }
        if first == true {
            logger.notice("""
                hall day: a \(command.name) after closing on \(board): switched on for it; off again \
                \(hold.components.seconds / 60) min after the last
                """)
        }
    }

    /// A hold on `board` ending at `ends`, waited for on the hall's clock until `until` (a virtual clock in tests).
    private func lateCall(on board: String, turn: Int, ends: ContinuousClock.Instant, until: Date) -> LateCall {
        let actions = GatewayHallActions(gateway: self, counters: tickets)
        let id = UUID()
        return LateCall(id: id, generation: turn, ends: ends, until: until, switchOff: Task { [hallClock] in
            guard (try? await hallClock.sleep(until: until)) != nil, !Task.isCancelled else { return }
            await actions.lateCallsOver(on: board, id: id)
        })
    }

    /// The wall clock was stepped: each hold waits again for what is left of it, not for the instant it named (set
    /// back 8 hours at night, a board would stay lit 8 hours more), and is noted for a restart by the new clock.
    private func rearmLateCalls() {
        let rearmed = lateCalls.withLock { calls in
            calls.map { board, call in
                call.switchOff.cancel()
                let again = lateCall(on: board, turn: call.generation, ends: call.ends,
                                     until: hallClock.now.addingTimeInterval((call.ends - .now).timeInterval))
                calls[board] = again
                return (board: board, again: again)
            }
        }
        // In each board's turn, which a command waiting for its acknowledgement may hold: not in the caller's.
        for (board, again) in rearmed {
            Task {
                await boardTurns.run(on: board) {
                    // Not one ended or replaced meanwhile: its own note is what counts.
                    guard lateCalls.withLock({ $0[board]?.id }) == again.id else { return }
                    await noteHold(on: board, until: again.until)
                }
            }
        }
    }

    /// Notes the hold on `board` for a restart within it.
    private func noteHold(on board: String, until: Date) async {
        do {
            try await outbox.recordBoardHold(board, until: until)
        } catch {
            logger.warning("outbox: \(board)'s hold after closing is not noted (\(error)); a restart within it switches it off")
        }
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
        running.withLock { $0 = true }
        // The first write is waited for as any later one; after the run, the buses' stop is the reason, not a write.
        statesWritten.withLock { $0 = (ContinuousClock.now, nil) }
        defer {
            running.withLock { $0 = false }
            statesWritten.withLock { $0 = (nil, nil) }
            let held = lateCalls.withLock { calls in
                for call in calls.values { call.switchOff.cancel() }
                defer { calls = [:] }
                return calls.keys.sorted()
            }
            let byHand = onByHandAfterClosing()
            if !byHand.isEmpty {
                logger.warning("hall day: left lit by this stop, switched on by hand after closing: \(byHand.joined(separator: ", ")) (a start before the opening keeps them on)")
            }
            if !held.isEmpty {
                // From a trial: a stop during 延时服务 left the boards lit all night without a word. A start within
                // a hold keeps its board on until it ends; a later one switches them as the hall's day asks.
                logger.warning("""
                    hall day: left lit by this stop, held on after closing for a call or a text: \(held.joined(separator: ", ")) \
                    (a start within the hold keeps them on until it ends, a later one switches them off)
                    """)
            }
        }
        let sinksRecorded = await recordSinks()
        if !sinksRecorded {
            logger.error("outbox: cannot record the configured sinks yet; delivered events are not pruned until it can")
        }
        let (busesWord, devicesWord) = (buses.count == 1 ? "bus" : "buses", config.devices.count == 1 ? "device" : "devices")
        // Before the line below, which is what a watcher waits for (deploy/test-unit.sh).
        if hallClock is SystemHallClock, let problem = SystemHallClock.ntpStateUnreadable {
            logger.warning("clock: cannot read whether NTP keeps it right (\(problem)): taken as not synchronised")
        }
        logger.info(
            "gateway for hall \(config.hall.id): \(buses.count) \(busesWord), \(config.devices.count) \(devicesWord), outbox \(outbox.path)")
        // Read before this run records anything: a clock that boots behind is told by the last run's records.
        var lastRecorded: Date?
        if config.hallDay?.hours != nil {
            do {
                lastRecorded = try await outbox.lastRecordedTime()
            } catch {
                logger.warning("hall day: cannot read when the gateway last ran (\(error)); the clock is taken as it reads")
            }
        }
        if !boards.isEmpty { await restoreBoardsShown() }
        let hallDay = config.hallDay.flatMap { hallDay in
            hallDay.hours.map { hours in
                HallDay(hours: hours, checkLead: hallDay.checkBeforeOpening, longestBreak: hallDay.longestBreak,
                        clock: hallClock, lastRecorded: lastRecorded,
                        actions: GatewayHallActions(gateway: self, counters: tickets))
            }
        }
        var uncommitted = 0
        await withTaskGroup(of: Void.self) { group in
            for forwarder in forwarders {
                group.addTask { await forwarder.run(until: forwardersStop) }
            }
            // Stopped before `hall.gateway.stopped` is told: no heartbeat after it, and the last round of the books (a
            // drop report, the devices' final states) before it, so that the next start finds it the run's last word.
            let ownStop = StopSignal()
            let beating = config.heartbeatInterval.map { interval in
                Task { await self.beat(every: interval, until: ownStop) }
            }
            let maintaining = Task { await self.maintain(until: ownStop, sinksRecorded: sinksRecorded, hallDay: hallDay) }
            uncommitted = await withTaskGroup(of: Int.self) { busGroup in
                for bus in buses {
                    busGroup.addTask(executorPreference: bus.preferredTaskExecutor) { await bus.run(until: stop) }
                }
                if let hallDay {
                    busGroup.addTask {
                        await hallDay.run(until: stop)
                        return 0
                    }
                }
                return await busGroup.reduce(0, +)
            }
            ownStop.stop()
            await beating?.value
            await maintaining.value
            // The central store hears of a stop: from a trial, a stop left every device "online" until it came back
            // online, with nothing between.
            await commitOwn(await heartbeat(stopping: true))
            // Every cycle is committed; let the forwarders deliver it before returning.
            forwardersStop.stop()
        }
        var ownUncommitted = await commitOwnWaiting()
        // The disk filled past the reserve: the room kept for a stop takes what fits, a few events at a time.
        if ownUncommitted > 0, outbox.giveBackStopReserve() { ownUncommitted = await commitOwnWaiting(batch: 8) }
        uncommitted += ownUncommitted
        if uncommitted == 0 {
            logger.info("gateway stopped; everything read is committed")
        } else {
            logger.critical("gateway stopped; \(uncommitted) events could not be committed (the outbox refused them, see above)")
            // The devices keep what they can; the gateway's own events (a ticket, a call answered done) are gone: named,
            // from a trial in which only their count was said.
            let lost = ownWaiting.withLock { $0 }
            if !lost.isEmpty {
                logger.critical("""
                    the gateway's own events not committed at the stop (a printed ticket whose record ahead was kept is \
                    committed at the next start; the others never reach the sinks): \(Self.named(lost))
                    """)
            }
        }
    }

    /// Records the configured sinks in the outbox, which holds back from pruning what each has not confirmed.
    private func recordSinks() async -> Bool {
        do {
            try await outbox.register(sinks: config.sinks.map(\.name))
            return true
        } catch {
            logger.debug("outbox: configured sinks not recorded: \(error)")
            return false
        }
    }

    /// The gateway's own events: the salvage of a damaged outbox, drops at the disk budget; and pruning.
    private func maintain(until stop: StopSignal, sinksRecorded: Bool, hallDay: HallDay?) async {
        var sinksRecorded = sinksRecorded
        if let salvage = outbox.salvage {
            // Named after the damaged file: reported again after a stop before it was committed, it counts once.
            await commitOwn(CloudEvent(
                id: "outbox-recovered-\((salvage.damagedPath as NSString).lastPathComponent)",
                source: EventSource.gateway(hall: config.hall.id), type: HallEventType.outboxRecovered, time: Date(),
                subject: nil, data: .outboxRecovered(.init(salvage))))
        }
        var sincePrune = Duration.zero
        // From the start: a step before this loop began is seen at its first round, before any key is forgotten.
        var wallClock = WallClockWatch(wall: startedAt, monotonic: started)
        // Steps whose keys are not moved yet (the outbox refused the write), in order: no key is forgotten meanwhile.
        var stepsToMoveKeysFor: [WallClockWatch.Step] = []
        // Boards that answer again are switched beside this loop, one batch after another: its rounds (the device
        // states' record, which readiness watches) do not wait for their acknowledgements.
        var boardsWatch = BoardsWatch(boards: Set(boards))
        let (boardsBack, boardsBackArrive) = AsyncStream.makeStream(of: [String].self)
        let switchingBack = Task {
            let actions = GatewayHallActions(gateway: self, counters: tickets)
            for await back in boardsBack { await actions.boardsAnswerAgain(back) }
        }
        while !stop.isStopped {
            if let step = wallClock.step() {
                // Tickets are the worry only going back: a day's numbers are not issued again.
                let forward = step.seconds > 0
                logger.warning("""
                    the wall clock was set \(forward ? "forward" : "back") by \(WallClockWatch.describe(abs(step.seconds))) \
                    (NTP or by hand): events from now on carry the new time\(forward ? "" : "; ticket numbers do not go back a day")
                    """)
                stepsToMoveKeysFor.append(step)
                // Set by someone: what it reads now is trusted, a time recorded under it when it ran ahead is not.
                await hallDay?.clockWasSet()
                rearmLateCalls()
                do {
                    try await outbox.resetRecordedTime(clock: hallClock)
                } catch {
                    logger.warning("outbox: the time the clock was set to is not recorded: \(error)")
                }
            }
            while let step = stepsToMoveKeysFor.first {
                do {
                    try await outbox.clockWasSet(step)
                    stepsToMoveKeysFor.removeFirst()
                } catch {
                    logger.warning("""
                        outbox: the idempotency keys kept before the clock was set are not moved to its new time yet \
                        (\(error)); tried again every 2 s, and no key is forgotten until they are
                        """)
                    break
                }
            }
            _ = await commitOwnWaiting()
            await reportDrops()
            let states = await deviceStates()
            await recordDeviceStates(states)
            // A board sent something while they were read: its own write may have come before theirs.
            for board in boards where boardsShown.withLock({ $0[board]?.shown }) != states.first(where: { $0.device == board })?.lastShown {
                await recordLastShown(of: board)
            }
            // A board that went silent may have lost power: the turn's switching of it holds no longer.
            let silent = Set(states.filter { $0.online == false }.map(\.device)).intersection(boards)
            if !silent.isEmpty { boardsTurn.withLock { $0?.switched.subtract(silent) } }
            let back = boardsWatch.back(in: states, switched: boardsTurn.withLock { $0?.switched })
            if hallDay != nil, !back.isEmpty { boardsBackArrive.yield(back) }
            if !sinksRecorded, await recordSinks() {
                sinksRecorded = true
                logger.notice("outbox: the configured sinks are recorded")
            }
            if sincePrune >= .seconds(60) {
                sincePrune = .zero
                do {
                    // By the earlier of the clock and what it would read but for a step this loop has yet to see.
                    if stepsToMoveKeysFor.isEmpty {
                        try await outbox.forgetCommandKeys(before: wallClock.earliestReading() - CommandCenter.keptKeys)
                    }
                } catch {
                    logger.warning("outbox: forgetting idempotency keys older than a day failed: \(error)")
                }
                // Not before: a sink added to the configuration would not hold back what it has yet to receive.
                if sinksRecorded {
                    outbox.keepReserve()
                    do {
                        try await outbox.prune()
                    } catch {
                        logger.warning("outbox: pruning delivered events failed: \(error)")
                    }
                }
            }
            await stop.sleep(for: .seconds(2))
            sincePrune += .seconds(2)
        }
        await reportDrops()
        await recordDeviceStates(await deviceStates())
        boardsBackArrive.finish()
        await switchingBack.value
    }

    /// Writes the devices' states and counters into the outbox's books, where `gatewayd status` reads them.
    private func recordDeviceStates(_ states: [DeviceState]) async {
        do {
            try await outbox.recordDeviceStates(states, clock: hallClock)
            statesWritten.withLock { $0 = (ContinuousClock.now, nil) }
        } catch {
            // A full disk is reported by the commits that matter; the books wait for the next round.
            logger.debug("outbox: device states not recorded: \(error)")
            statesWritten.withLock { $0.problem = "\(error)" }
        }
    }

    private func reportDrops() async {
        let source = EventSource.gateway(hall: config.hall.id)
        let budget = config.outbox.maximumBytes ?? 0
        do {
            let event = try await outbox.reportDrops { records in
                let ranges = records.flatMap(\.ranges)
                let count = records.reduce(0) { $0 + $1.count }
                return CloudEvent(
                    id: Outbox.dropReportId(records), source: source, type: HallEventType.eventsDropped,
                    time: Date(), subject: nil,
                    data: .eventsDropped(EventsDropped(count: count, ranges: ranges, policy: "drop-oldest",
                                                       maximumBytes: budget)))
            }
            if let event, case .eventsDropped(let dropped) = event.data {
                logger.critical("""
                    outbox reached its disk budget of \(budget / 1_048_576) MB: \(dropped.count) undelivered \
                    events dropped, oldest first (\(dropped.ranges.map { "\($0.source) #\($0.first)–\($0.last)" }
                    .joined(separator: ", ")))
                    """)
                onCommit([event])
            }
        } catch {
            logger.error("outbox: cannot report dropped events yet: \(error)")
        }
    }

    /// Commits a heartbeat now and every `interval`: one event the central side can alarm on when it stops.
    private func beat(every interval: Duration, until stop: StopSignal) async {
        var number = 0
        while !stop.isStopped {
            number += 1
            await commitOwn(await heartbeat(number: number))
            await stop.sleep(for: interval)
        }
    }

    /// Events read by the buses or made by the gateway and not yet committed: above 0 for more than a moment, the
    /// outbox refuses commits (a full disk), and they wait in memory.
    public func uncommittedEvents() async -> Int {
        ownWaiting.withLock { $0.count } + (await askEveryBus { await $0.uncommittedEventCount() }).reduce(0, +)
    }

    /// Has each failing sink tried again now rather than at its backoff's end (not a pause its store asked for), and
    /// waits up to `limit` for those attempts: a technician's check after fixing the central store's link says how
    /// delivery stands now.
    public func retryFailingSinksNow(waitingUpTo limit: Duration) async {
        let asked = forwarders.compactMap { forwarder in forwarder.attempts.ask().map { (forwarder.attempts, $0) } }
        let until = ContinuousClock.now + limit
        while ContinuousClock.now < until, asked.contains(where: { attempts, begun in !attempts.endedSince(begun) }) {
            do { try await Task.sleep(for: .milliseconds(20)) } catch { return }
        }
    }

    /// What each bus believes about its devices, with their wire counters, in configuration order.
    public func deviceStates() async -> [DeviceState] {
        let conditions = printers.all
        let shown = boardsShown.withLock { $0 }
        return (await askEveryBus { await $0.deviceStates() }).flatMap { $0 }.map { state in
            var state = state
            state.lastShown = shown[state.device]?.shown
            // What a silent board's last read said is no word on its screen now.
            guard state.online == true else {
                state.screenOn = nil
                return state
            }
            // A printer that answers but cannot print: online, and not fine (from a trial: status said only "online").
            if let condition = conditions[state.device], condition != "online" {
                // "online, offline" would read as nonsense: the printer's own offline switch.
                state.condition = condition == "offline" ? "printer-offline" : condition
            }
            // A board that answers with its screen dark while the hall needs it lit (its own key, a power cut): no
            // citizen sees a call on it. Dark after closing, or switched off by hand, it is as meant.
            if state.screenOn == false, boards.contains(state.device), expectsScreenOn(state.device) {
                state.condition = "screen-off"
            }
            return state
        }
    }

    /// Whether `board`'s screen was lit when its last command was carried out (the command's own read-back); nil
    /// when its reads do not tell. Read without waiting for the bus: a command's result is not held up by it.
    func screenAfterCommand(of board: String) -> Bool? {
        bus(of: board)?.screenAfterCommand(of: board)
    }

    /// The bus that owns the configured device `deviceId`.
    private func bus(of deviceId: String) -> (any Bus)? {
        guard let device = config.devices.first(where: { $0.id == deviceId }) else { return nil }
        return buses.first { $0.config.id == device.bus }
    }

    /// Each bus's answer, in configuration order. Asked all at once: a bus answers between two of its transactions,
    /// and one waiting out a silent device's timeout or printing a ticket must not hold the others' answers behind
    /// it: asked in turn, the waits add up.
    private func askEveryBus<Answer: Sendable>(_ question: @escaping @Sendable (any Bus) async -> Answer) async -> [Answer] {
        await withTaskGroup(of: (Int, Answer).self) { group in
            for (index, bus) in buses.enumerated() { group.addTask { (index, await question(bus)) } }
            var answers: [(Int, Answer)] = []
            for await answer in group { answers.append(answer) }
            return answers.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    /// What each bus heard that belongs to no device (unprompted frames, noise, checksum failures while nothing was
    /// asked), in configuration order: on a line of devices that only speak unprompted, all of its garbage. And
    /// whether the line echoes what the gateway writes, and why it is down while it is.
    public func lineCounters() async -> [LineCounters] {
        var lines: [LineCounters] = []
        for bus in buses {
            lines.append(LineCounters(bus: bus.config.id, counters: bus.lineCounters(), echoes: bus.lineEchoes(),
                                      down: bus.lineDown()))
        }
        return lines
    }

    /// Why bus `id`'s line is down, while it is; nil while it is open, or for no such bus.
    public func lineDown(bus id: String) -> String? { buses.first { $0.config.id == id }?.lineDown() }

    /// Whether NTP keeps the clock right, and why the hall's day waits for the clock, while it does.
    public func clockState() -> ClockState {
        ClockState(synchronised: hallClock.isSynchronised, hallDayHeld: hallDayHold.withLock { $0 })
    }

    func holdHallDay(because reason: String?) { hallDayHold.withLock { $0 = reason } }

    /// Where the hall's day stands by this gateway's hours and clock, and what comes next (`open until 12:00`), as
    /// `gatewayd status` says it; nil without `hours:` or while the day is held. The daemon's, not the CLI's: a
    /// configuration edited since the start, or another box's clock, would tell another day.
    public func hallDayOutlook() -> String? {
        guard hallDayHold.withLock({ $0 }) == nil, let settings = config.hallDay, let hours = settings.hours else { return nil }
        let schedule = HallDaySchedule(hours: hours, checkLead: settings.checkBeforeOpening, longestBreak: settings.longestBreak)
        let now = hallClock.now
        // A board lit at night is explained: a call or a test after closing holds it on.
        let held = afterClosingHolds().sorted { $0.key < $1.key }.map { board, until in
            "\(board) until " + HallTime.text(until, timeZone: config.hall.timeZone).suffix(5)
        }
        // And one switched on by hand (from a trial: flagged dark, with nothing saying why it should be lit).
        let byHand = onByHandAfterClosing()
        return schedule.describe(at: now, timeZone: config.hall.timeZone)
            + (held.isEmpty ? "" : "; on after closing for a call or a text: " + held.joined(separator: ", "))
            + (byHand.isEmpty ? "" : "; on after closing, switched on by hand: " + byHand.joined(separator: ", "))
    }

    /// The boards someone switched on by a power command since the closing, in order.
    func onByHandAfterClosing() -> [String] {
        guard let closedTurn = boardsTurn.withLock({ $0.flatMap { $0.on ? nil : $0.generation } }) else { return [] }
        return poweredOnByHand.withLock { $0.filter { $0.value == closedTurn }.keys.sorted() }
    }

    /// The boards a call or a text after closing holds on, with when each goes off again.
    public func afterClosingHolds() -> [String: Date] {
        let closedTurn = boardsTurn.withLock { $0.flatMap { $0.on ? nil : $0.generation } }
        return lateCalls.withLock { calls in calls.filter { $0.value.generation == closedTurn }.mapValues(\.until) }
    }

    /// The heartbeat as of now.
    public func heartbeat(number: Int = 0, stopping: Bool = false) async -> CloudEvent {
        let states = await deviceStates()
        let reports = (try? await outbox.sinkReports(config.sinks.map(\.name))) ?? []
        let dropped = (try? await outbox.dropTotal()) ?? 0
        let configured = Set(states.map(\.device))
        let beat = GatewayHeartbeat(
            version: GatewayInfo.version, startedAt: EventTime.format(startedAt),
            uptimeSeconds: Int((ContinuousClock.now - started).components.seconds),
            sinks: reports.map {
                SinkBacklog(name: $0.sink, backlog: $0.backlog, oldestUnforwarded: $0.oldestUnforwardedAt.map(EventTime.format))
            },
            devicesOnline: states.filter { $0.online == true }.map(\.device),
            devicesOffline: states.filter { $0.online == false }.map(\.device),
            // Devices on a bus left closed (no devices) cannot exist; those on no running bus are unknown too.
            devicesUnknown: states.filter { $0.online == nil }.map(\.device)
                + config.devices.map(\.id).filter { !configured.contains($0) },
            eventsDropped: dropped, clock: clockState(), previousRunStoppedCleanly: number == 1 ? previousRunStoppedCleanly : nil)
        return CloudEvent(
            id: stopping ? "stopped-\(runId)" : "heartbeat-\(runId)-\(number)", source: EventSource.gateway(hall: config.hall.id),
            type: stopping ? HallEventType.gatewayStopped : HallEventType.gatewayHeartbeat, time: Date(), subject: nil,
            data: .heartbeat(beat))
    }

    /// The budget drops the oldest undelivered events to make room; on a disk with less room than it, the disk is
    /// full first, and then nothing new is committed at all.
    private static func warnIfTheDiskIsSmallerThanTheBudget(_ config: GatewayConfig, outbox: String, logger: Logger) {
        guard let budget = config.outbox.maximumBytes, let free = DiskSpace.free(at: config.stateDirectory) else { return }
        let held = ["", "-wal"].reduce(Int64(0)) { sum, suffix in
            sum + ((try? FileManager.default.attributesOfItem(atPath: outbox + suffix)[.size] as? Int64) ?? 0)
        }
        let room = free + held
        guard room < budget else { return }
        logger.warning("""
            outbox: its budget of \(budget / 1_048_576) MB is more than the \(room / 1_048_576) MB it can have on the disk \
            holding \(config.stateDirectory): the disk would be full before the budget makes room (outbox.max-size-mb)
            """)
    }

    /// Commits one of the gateway's own events (a command's, a heartbeat, the day's check). One the outbox refuses
    /// waits in memory and is committed with the next, or by `maintain` within seconds: once accepted, never dropped.
    func commitOwn(_ event: CloudEvent) async {
        ownWaiting.withLock { $0.append(event) }
        _ = await commitOwnWaiting()
    }

    /// The gateway's own events waiting in memory, oldest first.
    var ownEventsWaiting: [CloudEvent] { ownWaiting.withLock { $0 } }

    /// Commits a check's report as a `hall.gateway.device_check` event and keeps its verdict as the last one told;
    /// with `onlyWhenNew`, only when the verdict differs from it. The verdict and the event's place among the own
    /// events are taken under one lock: two checks at once cannot leave the one told last different from the one kept.
    /// Returns whether the event was queued, and the event carrying the verdict while it still waits in memory (the
    /// outbox refused it): this one, or, for a verdict told already, the earlier one.
    @discardableResult
    func commitCheck(_ report: DeviceCheckReport, id: String, onlyWhenNew: Bool) async -> (queued: Bool, waiting: String?) {
        let verdict = CheckVerdict(report)
        let event = CloudEvent(id: id, source: EventSource.gateway(hall: config.hall.id), type: HallEventType.deviceCheck,
                               time: Date(), subject: nil, data: .deviceCheck(report))
        let told = checkVerdictReported.withLock { last -> String? in
            if onlyWhenNew, let last, last.verdict == verdict { return last.id }
            last = (verdict, id)
            ownWaiting.withLock { $0.append(event) }
            return nil
        }
        // From a trial: "reported already" while the earlier check's event still waited in memory (and a kill lost it).
        if let told { return (false, ownWaiting.withLock { $0.contains { $0.id == told } } ? told : nil) }
        _ = await commitOwnWaiting()
        return (true, ownWaiting.withLock { $0.contains { $0.id == id } } ? id : nil)
    }

    /// Commits the own events waiting, oldest first, up to `batch` in a commit; returns how many still wait.
    private func commitOwnWaiting(batch: Int = .max) async -> Int {
        while true {
            let waiting = ownWaiting.withLock { Array($0.prefix(batch)) }
            guard !waiting.isEmpty else { return 0 }
            do {
                let inserted = try await outbox.commit(waiting, settlingDrafts: true)
                if !inserted.isEmpty { onCommit(inserted) }
                if waiting.contains(where: { $0.type == HallEventType.outboxRecovered }) { outbox.salvageReported() }
                ownRefusals.succeeded(logger, "outbox: the gateway's own events are committed again")
                let committed = Set(waiting.map(\.id))
                ownWaiting.withLock { events in events.removeAll { committed.contains($0.id) } }
            } catch {
                ownRefusals.failed(logger, """
                    outbox: cannot commit \(waiting.last?.type ?? "an event")\
                    \(waiting.count > 1 ? " and \(waiting.count - 1) other events of the gateway" : ""); kept in memory, \
                    tried again every 2 s
                    """, error)
                return ownWaiting.withLock { $0.count }
            }
        }
    }

    /// The gateway's own events in words: each type, with a command's ticket and window (no personal data in either).
    static func named(_ events: [CloudEvent], most: Int = 20) -> String {
        let names = events.prefix(most).map { event -> String in
            guard case .command(let executed) = event.data else { return event.type }
            let ticket = executed.ticket.flatMap { $0.isEmpty ? nil : " \($0)" } ?? ""
            return event.type + ticket + (executed.window.map { " at window \($0)" } ?? "")
        }
        return names.joined(separator: ", ") + (events.count > most ? " and \(events.count - most) more" : "")
    }

    /// Commits one of the gateway's own events; returns whether it was new (false: its id was there already).
    @discardableResult
    func commit(own event: CloudEvent) async throws -> Bool {
        let inserted = try await outbox.commit([event])
        if !inserted.isEmpty { onCommit(inserted) }
        return !inserted.isEmpty
    }
}

/// Notices the wall clock being set: a box that booted with a wrong clock is corrected by NTP in one step, which
/// moves every event's time (the monotonic clock does not move).
struct WallClockWatch {
    private let now: @Sendable () -> Date
    private var wall: Date
    private var monotonic: ContinuousClock.Instant
    /// When the run started, as the clock reads since its last step.
    private var runStarted: Date
    /// A smaller difference is the two clocks' drift and the loop's own delay.
    static let smallestStep: TimeInterval = 2

    /// A watch from the run's start, when the wall clock read `wall` and the monotonic one `monotonic`.
    init(wall: Date, monotonic: ContinuousClock.Instant, now: @escaping @Sendable () -> Date = Date.init) {
        self.now = now
        self.wall = wall
        self.monotonic = monotonic
        runStarted = wall
    }

    /// A step of the wall clock.
    struct Step: Equatable {
        /// Negative: set back.
        var seconds: TimeInterval
        /// What the clock would read now but for the step.
        var unsetReading: Date
        /// When the run started, as the clock read before the step.
        var runStarted: Date
    }

    /// The step since the last call, if there was one.
    mutating func step() -> Step? {
        let wallNow = now(), monotonicNow = ContinuousClock.now
        let unsetReading = wall.addingTimeInterval((monotonicNow - monotonic).timeInterval)
        let seconds = wallNow.timeIntervalSince(unsetReading)
        wall = wallNow
        monotonic = monotonicNow
        guard abs(seconds) >= Self.smallestStep else { return nil }
        defer { runStarted += seconds }
        return Step(seconds: seconds, unsetReading: unsetReading, runStarted: runStarted)
    }

    /// The earlier of what the clock reads now and what it would read but for a step not yet seen: a time to forget
    /// by that a step forward cannot make too late.
    func earliestReading() -> Date {
        min(now(), wall.addingTimeInterval((ContinuousClock.now - monotonic).timeInterval))
    }

    static func describe(_ seconds: TimeInterval) -> String {
        let total = Int(seconds.rounded())
        let (days, hours, minutes, rest) = (total / 86_400, total % 86_400 / 3600, total % 3600 / 60, total % 60)
        return [(days, "d"), (hours, "h"), (minutes, "min"), (rest, "s")].filter { $0.0 > 0 }
            .map { "\($0.0) \($0.1)" }.joined(separator: " ")
    }
}

/// Facts about this build of the gateway.
public enum GatewayInfo {
    /// The version heartbeats and `gatewayd --version` report.
    public static let version = "0.5.0"
}

/// The last condition each printer reported (`online`, `paper-out`, …), by device id.
final class PrinterConditions: Sendable {
    private let conditions = Mutex<[String: String]>([:])

    func take(_ events: [CloudEvent]) {
        for event in events {
            guard case .printerStatus(let status) = event.data else { continue }
            conditions.withLock { $0[EventSource.deviceId(of: event.source)] = status.state }
        }
    }

    var all: [String: String] { conditions.withLock { $0 } }
}

extension Gateway {
    /// The last condition each printer reported, by device id.
    public func printerConditions() -> [String: String] { printers.all }
}

/// The ticket counters' numbers, kept in the outbox's database.
struct OutboxTicketStore: TicketCounterStore {
    let outbox: Outbox

    func load(day: HallDate) async throws -> [String: Int] { try await outbox.ticketNumbers(day: day.description) }

    func save(day: HallDate, prefix: String, number: Int) async throws {
        try await outbox.saveTicketNumber(day: day.description, prefix: prefix, number: number)
    }

    func newestDay() async throws -> HallDate? { try await outbox.newestTicketDay().flatMap(HallDate.init) }
}
