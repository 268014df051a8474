import Foundation
import Logging
import Synchronization

/// The pre-opening check the hall regulations ask for (设备检查): every device answers, printers have paper, the
/// outbox and the sinks are healthy. One implementation: the gateway runs it before opening each day, and the
/// CLI's `check` asks the running gateway for it.
public struct DeviceCheckReport: Sendable, Equatable, Codable {
    /// Whether nothing needs a technician.
    public var passed: Bool
    /// One line per thing to fix, saying what and where.
    public var problems: [String]
    /// One line per thing to see to that does not fail the check: a device not heard since the gateway started (one
    /// that speaks only when used, an FF 68 pad or a QSystem box, stays here until someone uses it), a printer's paper
    /// near its end.
    public var warnings: [String]
    /// Devices checked, and devices that answer.
    public var devicesChecked: Int
    public var devicesAnswering: Int
    /// Asked for (`POST /v1/check`, `gatewayd check`) rather than run by the hall's day before opening.
    public var onDemand: Bool

    /// A report.
    public init(passed: Bool, problems: [String], warnings: [String] = [], devicesChecked: Int, devicesAnswering: Int,
                onDemand: Bool = false) {
        self.passed = passed
        self.problems = problems
        self.warnings = warnings
        self.devicesChecked = devicesChecked
        self.devicesAnswering = devicesAnswering
        self.onDemand = onDemand
    }

    /// What the check failed for, each thing once: every problem's line up to its first colon (the device, sink or
    /// outbox it names; ids hold no colon), so that a backlog's count or a reason changing inside a line is no new
    /// verdict; a printer's whole line, since what it reports (paper-out, cover-open, …) is the news.
    var failing: Set<Substring> {
        Set(problems.map { $0.hasPrefix("printer ") ? Substring($0) : $0.prefix { $0 != ":" } })
    }

    private enum CodingKeys: String, CodingKey {
        case passed, problems, warnings, devicesChecked, devicesAnswering, onDemand
    }

    /// Reads a report, also one stored before reports had warnings.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        passed = try container.decode(Bool.self, forKey: .passed)
        problems = try container.decode([String].self, forKey: .problems)
        warnings = try container.decodeIfPresent([String].self, forKey: .warnings) ?? []
        devicesChecked = try container.decode(Int.self, forKey: .devicesChecked)
        devicesAnswering = try container.decode(Int.self, forKey: .devicesAnswering)
        onDemand = try container.decodeIfPresent(Bool.self, forKey: .onDemand) ?? false
    }
}

extension Gateway {
    /// Returns once every device has been heard or reported silent since the start, or once each bus has had time to
    /// find a silent device silent (its misses at its pace): a check run just after a start would otherwise pass a
    /// dead device as not heard yet. Devices that only speak when used are never heard: their bus waits its time.
    func awaitFirstPolls() async {
        let started = ContinuousClock.now
        let waits = Dictionary(uniqueKeysWithValues: config.buses.map { bus in
            let devices = config.devices.count { $0.bus == bus.id }
            return (bus.id, (bus.pollInterval + bus.responseTimeout * devices) * (DeviceHealth.missesBeforeOffline + 1))
        })
        while true {
            let elapsed = ContinuousClock.now - started
            let waiting = await deviceStates().filter { state in
                guard state.online == nil else { return false }
                let wait = waits[state.bus] ?? .zero
                // One its bus has begun to find silent is waited for up to three times as long: on a loaded machine
                // the misses come late, and a dead board must not pass as merely not heard yet.
                return elapsed < wait || (state.counters.timeouts > 0 && elapsed < wait * 3)
            }
            if waiting.isEmpty { return }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Checks every device, printer, the outbox and the sinks as they stand now.
    public func deviceCheck() async -> DeviceCheckReport {
        await deviceCheck(of: await deviceStates())
    }

    /// The check of `states`, read once by a caller that shows them beside the report; the same for `sinks` (the
    /// outbox's `sinkReports`, read here when nil).
    public func deviceCheck(of states: [DeviceState], sinks: Result<[SinkReport], any Error>? = nil) async -> DeviceCheckReport {
        // Room made since the gateway's last minute is seen now, not a minute later.
        outbox.keepReserve()
        var problems: [String] = []
        var warnings: [String] = []
        for state in states where state.online != true {
            let bus = config.buses.first { $0.id == state.bus }
            let line = bus.map { " on \(Self.describe($0.transport))" } ?? ""
            if state.online == false {
                // "does not answer" only for silence (from a docs trial: said of a board whose address held a pad).
                let words = state.answersWhileOffline ? "is out of service" : "does not answer"
                problems.append("\(state.device) \(words)\(line): \(state.offlineReason ?? "offline")")
            } else {
                warnings.append(
                    "\(state.device) has not been heard from since the gateway started\(line): use it once to confirm it")
            }
        }
        // Dark while the hall needs it lit, as `status` says it (from a trial: the check passed it). Held after closing,
        // a call shown again lights it until the hold ends; a power command would keep it on until the opening.
        let held = afterClosingHolds()
        for state in states where state.online == true && state.condition == "screen-off" {
            let remedy = held[state.device] != nil
                ? "show its call or text again (a recall) to switch it on for late-call-minutes more"
                : #"switch it on (POST /v1/devices/\#(state.device)/power {"on": true})"#
            problems.append("\(state.device) is dark: its screen is off while the hall needs it lit (its own key or a "
                            + "power cut): \(remedy)")
        }
        // A printer that does not answer is listed above; the condition it last reported is no news of it now.
        let silent = Set(states.filter { $0.online == false }.map(\.device))
        for (printer, condition) in printerConditions() where condition != "online" && !silent.contains(printer) {
            if PrinterDriver.prints(condition) {
                // Near the end of its roll: it prints, but a roll near its end before opening runs out in the morning
                // (a duty officer's trial).
                warnings.append("printer \(printer): paper near its end: load a new roll")
            } else {
                problems.append("printer \(printer): \(condition)")
            }
        }
        do {
            let reports = if let sinks { try sinks.get() } else { try await outbox.sinkReports(config.sinks.map(\.name)) }
            for sink in reports {
                if sink.isFailing, sink.backlog > 0 {
                    problems.append("sink \(sink.sink): \(sink.backlog) events waiting; last error: \(sink.lastError ?? "")")
                }
            }
        } catch {
            problems.append("the outbox cannot be read: \(error)")
        }
        if let givenBack = outbox.reserveGivenBackAt {
            let folder = (outbox.path as NSString).deletingLastPathComponent
            let since = HallTime.text(givenBack, timeZone: config.hall.timeZone, toTheSecond: false)
            // From a trial: "lives on its reserve" beside "the outbox cannot be written" once the reserve was used up.
            let usedUp = (DiskSpace.free(at: folder) ?? 0) < Outbox.fullDiskBelowBytes
            problems.append("the disk holding \(folder) is full: "
                            + (usedUp ? "the outbox's reserve, given back at \(since), is used up"
                                      : "the outbox lives on its reserve since \(since)")
                            + "; make room on the disk")
        } else if let free = outbox.reserveMissingForRoom {
            // From a trial: a start after the reserve was given back forgot it, and the check passed on a full disk.
            let folder = (outbox.path as NSString).deletingLastPathComponent
            // The figure after the colon: the text before it is the problem's key, one verdict however it changes.
            problems.append("the disk holding \(folder) has no room for the outbox's reserve against a full disk: "
                            + "\(DiskSpace.megabytes(free)) free, \(DiskSpace.megabytes(outbox.policy.roomForReserve)) "
                            + "needed; make room on the disk")
        }
        // The salvage was said in the log and to the central store; the file it set aside waits for a technician.
        for damaged in Outbox.damagedOutboxes(beside: outbox.path) {
            warnings.append("a damaged outbox the gateway salvaged at a start is kept as \(damaged) (what it could not "
                            + "read: gatewayd outbox status): remove it once looked at")
        }
        let answering = states.filter { $0.online == true }.count
        return DeviceCheckReport(passed: problems.isEmpty, problems: problems, warnings: warnings,
                                 devicesChecked: states.count, devicesAnswering: answering)
    }

    /// Commits a check asked for as a `hall.gateway.device_check` event when what it fails for differs from the last
    /// check committed since the start (the day's, or one asked for): a board fixed after the morning's check failed
    /// reaches the central store when the technician checks again, and a monitor asking every minute adds nothing
    /// while nothing changes. Returns the event's id, and whether it waits in memory for the outbox (a full disk); for a
    /// verdict told already, the earlier event's while it still waits, nil once committed.
    public func reportCheckOnDemand(_ report: DeviceCheckReport) async -> (id: String, waiting: Bool)? {
        var report = report
        report.onDemand = true
        let id = "device-check-\(UUID().uuidString.lowercased())"
        let (queued, waiting) = await commitCheck(report, id: id, onlyWhenNew: true)
        if let waiting { return (waiting, true) }
        return queued ? (id, false) : nil
    }

    static func describe(_ transport: BusConfig.Transport) -> String {
        switch transport {
        case .modbusRTU(let serial), .serial(let serial): serial.port
        case .modbusTCP(let host, let port): "\(host):\(port)"
        }
    }
}

/// What a check failed for, as the central store was last told it.
struct CheckVerdict: Equatable {
    var passed: Bool
    var failing: Set<Substring>

    init(_ report: DeviceCheckReport) {
        passed = report.passed
        failing = report.failing
    }
}

/// What the hall's day last asked of the boards (an opening, a break, a closing), recorded before it is carried out,
/// and which boards took it: a board that answers again after it is switched as it asks.
struct BoardsTurn: Sendable {
    var on: Bool
    /// What a board shows once on: the welcome, the break's text; nil: what it showed (a restart within an opening).
    var text: String?
    var switched: Set<String> = []
    /// The boards this turn has tried to switch, whatever came of it: a board on them is expected as the turn asks.
    var tried: Set<String> = []
    /// Told apart from the turn before: a board switched under a turn that has since changed is switched again.
    var generation: Int
}

/// What a board was last sent to show, in memory.
struct BoardShown: Sendable, Equatable {
    /// The generation of the turn it was sent in; nil before this run's first turn (one kept from before this start).
    var turn: Int?
    /// What shows it again; nil for a text of the queue system's kept from before this start (its words are not), and
    /// after a command not sent because the board was offline (it may have lost what it showed; `shown` says so).
    var command: HallCommand?
    var shown: ShownOnBoard
    /// Its place among this run's sends to boards, 1 and up; 0 for one kept from before this start. Commands to a
    /// board may end out of order (a Modbus board's acknowledgement held for a later poll).
    var sequence = 0
}

/// The day's first turn in a run (an opening or a closing, `generation`, begun at `since`).
struct FirstTurn: Sendable {
    var since: Date
    var generation: Int

    /// Whether `entry`, sent before this turn was known, was sent in it: sent since it began (before a restart within
    /// it too), or in this run whatever its clock read (from a second read: calls sent while the day was held for a
    /// clock that booted at 1970 were not).
    func takes(_ entry: BoardShown) -> Bool { entry.sequence > 0 || entry.shown.at >= since }
}

/// Per board, what its commands to show something came to.
struct BoardSends: Sendable {
    /// The last whose frames went out (taken, or unconfirmed), marked when a later command found the board offline:
    /// what a command not sent, or refused, leaves the board's entry at.
    var lastOut: BoardShown?
    /// The latest command not sent, by its sequence, and whether it found the board offline: a command before it whose
    /// frames go out after its refusal is marked as the entry that refusal put back.
    var lastNotSent: (sequence: Int, offline: Bool)?
}

/// Which boards answer again, from one look at the devices' states to the next: answering after they were offline,
/// or first heard after a turn that did not reach them; not one first heard that the turn at the start reached (a
/// restart would switch every board twice).
struct BoardsWatch {
    let boards: Set<String>
    private var offline: Set<String> = []
    private var unheard: Set<String>

    init(boards: Set<String>) {
        self.boards = boards
        unheard = boards
    }

    /// The boards back in `states`; `switched`: those the day's latest turn reached (nil: no turn yet).
    mutating func back(in states: [DeviceState], switched: Set<String>?) -> [String] {
        let mine = states.filter { boards.contains($0.device) }
        let back = mine.filter { state in
            state.online == true && (offline.contains(state.device)
                || (unheard.contains(state.device) && switched.map { !$0.contains(state.device) } == true))
        }
        offline = Set(mine.filter { $0.online == false }.map(\.device))
        unheard = Set(mine.filter { $0.online == nil }.map(\.device))
        return back.map(\.device).sorted()
    }
}

/// A board switched on by a call or a text after closing, until the hold after the last.
struct LateCall: Sendable {
    /// Which call's wait this is: a later call replaces it.
    var id: UUID
    /// The closed turn it came in: the hall opening meanwhile ends it.
    var generation: Int
    /// When the hold ends, on the monotonic clock: a step of the wall clock does not lengthen it.
    var ends: ContinuousClock.Instant
    /// When it ends on the hall's clock, as `gatewayd status` says it.
    var until: Date
    var switchOff: Task<Void, Never>
}

/// What the gateway does at the turns of the hall's day.
struct GatewayHallActions: HallDayActions {
    let gateway: Gateway
    let counters: TicketCounters?
    /// What boards show while the hall is open and nothing is called.
    static let welcome = "欢迎光临"

    func beforeOpening(day: DateComponents) async {
        let date = String(format: "%04d-%02d-%02d", day.year ?? 0, day.month ?? 0, day.day ?? 0)
        // Once a day: cleared again after a restart before opening, the counters would issue numbers twice.
        do {
            guard try await gateway.outbox.beginDayCheck(day: date, clock: gateway.hallClock) else {
                gateway.logger.notice("hall day \(date): checked before opening already; ticket counters kept")
                return
            }
        } catch {
            gateway.logger.error("hall day \(date): cannot record the check before opening (\(error)); running it")
        }
        if let counters {
            do {
                let issued = try await counters.reset()
                if !issued.isEmpty {
                    let numbers = issued.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                    gateway.logger.notice(
                        "hall day \(date): tickets issued before the check (\(numbers)) keep their numbers; numbering goes on")
                }
            } catch {
                gateway.logger.error("hall day \(date): ticket counters not started: \(error.message)")
            }
        }
        await gateway.awaitFirstPolls()
        let report = await gateway.deviceCheck()
        if report.passed {
            // What it does not fail for is said too: a roll near its end at 08:45 runs out by ten.
            let toSeeTo = report.warnings.isEmpty ? "" : "; to see to: " + report.warnings.joined(separator: "; ")
            gateway.logger.notice("hall day \(date): device check passed, \(report.devicesChecked) devices\(toSeeTo)")
        } else {
            let problems = report.problems.joined(separator: "; ")
            let count = report.problems.count == 1 ? "1 problem" : "\(report.problems.count) problems"
            gateway.logger.warning("hall day \(date): device check found \(count): \(problems)")
        }
        await gateway.commitCheck(report, id: "device-check-\(date)", onlyWhenNew: false)
    }

    func opened(greeting: Bool, since: Date?) async {
        var greeting = greeting
        if !greeting, let since, await !told(Self.eventId("boards-on", since: since)) {
            // Started in an opening it did not see (down since the evening before): boards still show the last day's
            // call or the night's test text, which no citizen of today was given (from a night technician's trial).
            greeting = true
            gateway.logger.notice("hall day: started in an opening that went by without the gateway: boards show the welcome")
        }
        await switchBoards(on: true, greeting: greeting, name: "boards-on", since: since)
    }

    /// Whether the opening's or closing's event `id` was told (a read that fails: taken as not).
    private func told(_ id: String) async -> Bool {
        (try? await gateway.outbox.hallDayEventResult(id: id)) != nil
    }

    /// The id of the opening's or closing's event (`boards-on`, `boards-off`) that began at `since`.
    static func eventId(_ name: String, since: Date) -> String { "\(name)-" + utcInstant(since) }

    /// A short break (午休): boards stay on and say when the windows open again, instead of the last call (from a duty
    /// officer's trial: 「请A002号到1号窗口」 all through lunch). The reopening's welcome replaces it.
    func breakStarted(reopensAt: Date) async {
        let reopening = hallTime(reopensAt).suffix(5)
        let text = Self.breakText(reopensAt: reopening)
        let outcomes = await apply(on: true, text: text)
        let failed = outcomes.filter { $0.result != CommandResult.Status.done.rawValue }
        if failed.isEmpty {
            gateway.logger.notice("hall day: break until \(reopening): boards show 「\(text)」")
        } else {
            gateway.logger.warning(
                "hall day: break: not shown on \(failed.map { "\($0.device): \($0.detail ?? $0.result)" }.joined(separator: "; "))")
        }
    }

    /// What boards show over a break: 「午休 13:30恢复办理」 when the hall reopens after lunch (by 15:00), 「暂停办理
    /// 16:30恢复」 at another time of day. By the reopening, which a restart within the break reads the same.
    static func breakText(reopensAt time: Substring) -> String {
        ("12:00"..."15:00").contains(time) ? "午休 \(time)恢复办理" : "暂停办理 \(time)恢复"
    }

    func clockDoubted(reads: Date, lastRecorded: Date) async {
        // A clock that is right already (it ran ahead on the last run) is released by a step the gateway can see.
        let reason = """
            the system clock reads \(hallTime(reads)), a day before the gateway last ran (\(hallTime(lastRecorded))), \
            and nothing synchronises it; boards are not switched and no check runs until the clock is synchronised \
            (NTP), set (timedatectl set-time; a right clock stepped by a few seconds counts) or reaches \
            \(hallTime(lastRecorded).prefix(10))
            """
        gateway.holdHallDay(because: reason)
        gateway.logger.error("hall day held: \(reason)")
    }

    func clockTrusted(reads: Date, because reason: ClockTrust) async {
        gateway.holdHallDay(because: nil)
        do {
            try await gateway.outbox.resetRecordedTime(clock: gateway.hallClock)
        } catch {
            gateway.logger.warning("outbox: the time the clock was trusted at is not recorded: \(error)")
        }
        let why = switch reason {
        case .synchronised: "is synchronised"
        case .set: "was set"
        case .pastLastRecorded: "reads the day the gateway last ran, or later"
        }
        gateway.logger.notice("hall day goes on: the clock \(why): \(hallTime(reads))")
    }

    /// An instant as the hall's wall clock shows it, to the minute.
    private func hallTime(_ instant: Date) -> String {
        HallTime.text(instant, timeZone: gateway.config.hall.timeZone)
    }

    func closed(since: Date?) async { await switchBoards(on: false, greeting: false, name: "boards-off", since: since) }

    /// Every board, window and hall alike: switched by its own screen on/off command where it has one (an Onbon BX, a
    /// Modbus board whose profile names a power register), else blanked after closing; the welcome shown at opening.
    /// Committed like a command.
    private func switchBoards(on: Bool, greeting: Bool, name: String, since: Date?) async {
        let outcomes = await apply(on: on, text: on && greeting ? Self.welcome : nil, since: since)
        let status = outcomes.compactMap { CommandResult.Status(rawValue: $0.result) }.max() ?? .done
        // Named after the opening or closing it is: a restart within it switches the boards again, and the central
        // store hears of that opening once (from a trial: every start outside hours committed one more closing),
        // unless this time it went better than it was told (then under an id of this run's).
        let named = since.map { Self.eventId(name, since: $0) } ?? "\(name)-" + UUID().uuidString.lowercased()
        var id = named
        if since != nil, let told = try? await gateway.outbox.hallDayEventResult(id: named) {
            guard (CommandResult.Status(rawValue: told) ?? .refused) > status else { return }
            id += "-\(UUID().uuidString.lowercased().prefix(8))"
        }
        await gateway.commitOwn(CloudEvent(
            id: id, source: EventSource.gateway(hall: gateway.config.hall.id),
            type: name == "boards-on" ? HallEventType.hallOpened : HallEventType.hallClosed, time: Date(), subject: nil,
            data: .command(CommandExecuted(commandId: id, command: name, window: nil, ticket: nil, result: status.rawValue,
                                           devices: outcomes))))
        if since != nil {
            do {
                try await gateway.outbox.recordHallDayEvent(id: named, result: status.rawValue)
            } catch {
                gateway.logger.warning("outbox: the hall day's \(name) is not noted as told (\(error)); a restart before the next may tell it again")
            }
        }
    }

    /// Records a turn (boards `on`, showing `text`) as the day's latest and switches every board as it asks. All at
    /// once, as a command's devices: a board that takes its time (waiting for its acknowledgement) does not hold the
    /// others; on one bus the frames queue in order anyway. Recorded first, so that a board answering again meanwhile
    /// is switched as this turn asks.
    /// `since`: when the opening or closing began; the first turn of a run takes what the boards were sent since
    /// (before a restart within it too) as sent in it.
    private func apply(on: Bool, text: String?, since: Date? = nil) async -> [CommandExecuted.DeviceOutcome] {
        let (generation, first) = gateway.boardsTurn.withLock { current in
            let generation = (current?.generation ?? 0) + 1
            defer { current = BoardsTurn(on: on, text: text, generation: generation) }
            return (generation, current == nil)
        }
        if first, let since { gateway.boardsShownSince(since, turn: generation) }
        await gateway.resumeLateCalls(on: on, turn: generation)
        let boards = gateway.boards
        let outcomes = await withTaskGroup(of: (Int, CommandExecuted.DeviceOutcome).self) { group in
            for (index, board) in boards.enumerated() {
                group.addTask {
                    await (index, gateway.boardTurns.run(on: board) {
                        let outcome = await switchInTurn(board, generation: generation, on: on, text: text)
                        // In the board's turn, as each is done: one first heard meanwhile is not switched a second time.
                        gateway.boardsTurn.withLock { current in
                            guard current?.generation == generation else { return }
                            current?.tried.insert(board)
                            if outcome.result == CommandResult.Status.done.rawValue { current?.switched.insert(board) }
                        }
                        return outcome
                    })
                }
            }
            var outcomes: [(Int, CommandExecuted.DeviceOutcome)] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes.sorted { $0.0 < $1.0 }.map(\.1)
        }
        return outcomes
    }

    /// Switches `board` as the turn `generation` asks, in its turn.
    private func switchInTurn(_ board: String, generation: Int, on: Bool, text: String?) async -> CommandExecuted.DeviceOutcome {
        // A call after closing that came first keeps its board on until its hold ends; switched on again, for a hold
        // from before a restart: the board may have lost power meanwhile (from a trial).
        let held = gateway.lateCalls.withLock({ $0[board]?.generation }) == generation
        let byHand = gateway.poweredOnByHand.withLock({ $0[board] }) == generation
        // Switched on without a text of the turn's (a restart within the opening, or within a hold): shown again what
        // it was sent since the turn began, before the restart too; the hall's power may have gone with the gateway's
        // (from a second read: the boards came back lit and blank).
        let shown = gateway.shown(on: board, inTurn: generation)
        if !on, held || byHand {
            var kept = await switchBoard(board, on: true, text: nil, showingAgain: shown)
            if kept.result == CommandResult.Status.done.rawValue {
                kept.detail = held ? "kept on for a call or text after closing" : "kept on: switched on by hand after closing"
            }
            return kept
        }
        return await switchBoard(board, on: on, text: text, showingAgain: on && text == nil ? shown : nil)
    }

    /// Boards that answer again after the hall's last turn (from a trial: one silent at the closing, or power-cycled in
    /// the night and back with its screen on, stayed lit until the gateway restarted; one silent at the opening stayed
    /// dark): after a closing each is switched off again, and after an opening or a break's start one that missed it is
    /// switched on and shows the turn's text. A turn that comes meanwhile is followed: the board is switched again.
    func boardsAnswerAgain(_ boards: [String]) async {
        await withTaskGroup(of: Void.self) { group in
            for board in boards {
                group.addTask { await switchAgain(board) }
            }
        }
    }

    private func switchAgain(_ board: String) async {
        await gateway.boardTurns.run(on: board) { await switchAgainInItsTurn(board) }
    }

    private func switchAgainInItsTurn(_ board: String) async {
        // Twice at most: the turn it missed (one that went silent is no longer switched by it: back from a power cut in
        // hours it may be dark and blank), then the one that came while it was switched.
        for _ in 0..<2 {
            guard let turn = gateway.boardsTurn.withLock({ $0 }), !(turn.on && turn.switched.contains(board)) else { return }
            // Switched off by hand in hours: dark as meant (after closing, it is switched off anyway).
            if turn.on, gateway.poweredOffByHand.withLock({ $0[board] }) == turn.generation { return }
            // Held on after closing for a call or a text (switched off when its hold ends, not before), or switched on
            // by hand: on as meant, also when it comes back from a power cut (from a trial: a held board back dark
            // stayed dark over the late citizen until the next call).
            let held = !turn.on && gateway.lateCalls.withLock({ $0[board]?.generation }) == turn.generation
            // What was shown on it since the turn: a board back from a power cut may have lost it (came back blank).
            let shown = gateway.shown(on: board, inTurn: turn.generation)
            if held || !turn.on && gateway.poweredOnByHand.withLock({ $0[board] }) == turn.generation {
                let outcome = await switchBoard(board, on: true, text: nil, showingAgain: shown)
                let why = held ? "held on after closing for a call or a text" : "as it was switched on by hand after closing"
                if outcome.result == CommandResult.Status.done.rawValue {
                    gateway.logger.notice("hall day: \(board) answers again: switched on again, \(why)\(Self.shownAgainNote(shown))")
                } else {
                    gateway.logger.warning("hall day: \(board) answers again but was not switched on again (\(why)): \(outcome.detail ?? outcome.result)")
                }
                return
            }
            // A call the queue system showed on it since the turn stays: the board is switched on under it, and shown it
            // again. Not one that cannot be (its words not kept, a later command not sent): the turn's text instead
            // (from a second read: the board came back blank where one without a call got the welcome).
            let called = shown?.command != nil
            let outcome = await switchBoard(board, on: turn.on, text: called ? nil : turn.text, showingAgain: turn.on ? shown : nil)
            let current = gateway.boardsTurn.withLock { current in
                if current?.generation == turn.generation, outcome.result == CommandResult.Status.done.rawValue {
                    current?.switched.insert(board)
                }
                return current?.generation
            }
            if current != turn.generation { continue }
            let what = turn.on ? "on" + ((called ? nil : turn.text).map { ", 「\($0)」" } ?? "") : "off"
            if outcome.result == CommandResult.Status.done.rawValue {
                let again = turn.on ? Self.shownAgainNote(shown) : ""
                gateway.logger.notice("hall day: \(board) answers again: switched \(what), as the hall's day asks\(again)")
            } else {
                gateway.logger.warning("hall day: \(board) answers again but was not switched \(what): \(outcome.detail ?? outcome.result)")
            }
            return
        }
    }

    /// What the log adds of the call or text a board that answers again is shown again, or why not (from a trial: a
    /// board back blank, nothing said).
    private static func shownAgainNote(_ shown: BoardShown?) -> String {
        guard let shown else { return "" }
        if shown.command != nil { return shown.shown.text.map { "; shown again 「\($0)」" } ?? "; shown again its last text" }
        if shown.shown.laterCommandNotSent { return "; nothing older shown again (a later command found it offline)" }
        return "; its last text is not shown again (its words are not kept)"
    }

    /// The hold after the last call after closing on `board` is over: switched off again, as the closing asked, unless
    /// the hall opened meanwhile (the opening showed its welcome) or a later call holds it (`id` is no longer its).
    func lateCallsOver(on board: String, id: UUID) async {
        await gateway.boardTurns.run(on: board) { await lateCallsOverInItsTurn(on: board, id: id) }
    }

    private func lateCallsOverInItsTurn(on board: String, id: UUID) async {
        let generation = gateway.lateCalls.withLock { calls -> Int? in
            guard let call = calls[board], call.id == id else { return nil }
            calls[board] = nil
            return call.generation
        }
        guard let generation else { return }
        await gateway.forgetHold(on: board)
        guard let turn = gateway.boardsTurn.withLock({ $0 }), !turn.on, turn.generation == generation else {
            gateway.logger.info("hall day: \(board)'s hold after closing is over; the hall has opened since: left as the opening put it")
            return
        }
        let minutes = (gateway.config.hallDay?.lateCallHold.components.seconds ?? 0) / 60
        let outcome = await switchBoard(board, on: false, text: nil)
        if outcome.result == CommandResult.Status.done.rawValue {
            let blanked = outcome.detail.map { " (\($0))" } ?? ""
            gateway.logger.notice(
                "hall day: \(board) switched off again\(blanked), \(minutes) min after its last call or text after closing")
        } else {
            gateway.logger.warning(
                "hall day: \(board) not switched off again after its last call or text after closing: \(outcome.detail ?? outcome.result)")
        }
    }

    /// `2026-12-02T01:00:00Z`: spelt out, so that an id made from it stays the same across versions of Foundation.
    static func utcInstant(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0,
                      c.minute ?? 0, c.second ?? 0)
    }

    private func switchBoard(_ board: String, on: Bool, text: String?, showingAgain shown: BoardShown? = nil) async
        -> CommandExecuted.DeviceOutcome
    {
        // A call in hours does not wait for the board's turn: one shown while the board is switched on is not written
        // over by the turn's text or by what was shown before it.
        let before = gateway.boardsShown.withLock { $0[board] }
        func nothingShownMeanwhile() -> Bool { gateway.boardsShown.withLock { $0[board] } == before }
        do {
            var detail: String?
            do {
                try await gateway.carryOut(.power(on: on), on: board)
            } catch let error as GatewayError where error.code == .commandRejected {
                detail = on ? nil : "blanked: \(error.message)"
                if !on { try await gateway.carryOut(.clear, on: board) }
            }
            if on, let text, nothingShownMeanwhile() {
                try await gateway.carryOut(.showText(text), on: board, hallDaysText: true)
            }
            if on, let shown, let command = shown.command, nothingShownMeanwhile() {
                // Shown again, steady: a recall blinks once, when the queue system asks.
                let again = if case .recall(let ticket, let window) = command { HallCommand.call(ticket: ticket, window: window) } else { command }
                try await gateway.carryOut(again, on: board, showingAgain: shown)
            }
            return .init(device: board, result: CommandResult.Status.done.rawValue, detail: detail)
        } catch {
            let status = (error as? GatewayError).map(CommandCenter.status(of:)) ?? .refused
            return .init(device: board, result: status.rawValue, detail: "\(error)")
        }
    }
}
