public import Foundation
import Synchronization

/// What the gateway does at the moments of the hall's day. `HallDay` calls one at a time, in time order.
public protocol HallDayActions: Sendable {
    /// Before the day's first opening (by the configured lead time): clear the ticket counters (排号机清空号码),
    /// run the device check and commit its report as an event. `day` holds the year, month and day in the hall's
    /// time zone.
    func beforeOpening(day: DateComponents) async
    /// The hall opens, or reopens after a break: boards on, showing the normal display (`greeting`). Called again
    /// after each break, so it must be harmless on boards that are already on; `greeting` is false when the gateway
    /// (re)started while the hall was open: boards keep the calls they show, unless the gateway never saw this
    /// opening. `since`: the opening this is (the same for a restart within it), nil when the schedule cannot tell.
    func opened(greeting: Bool, since: Date?) async
    /// A short break starts (午休): the hall reopens at `reopensAt` the same day. Boards stay on; a gateway may
    /// show 「午休」 and the reopening time. The default does nothing.
    func breakStarted(reopensAt: Date) async
    /// The hall closes for the day (or for a break longer than the longest break): boards off (下班关闭). `since`:
    /// the closing this is (the same for a restart before the next opening), nil when the schedule cannot tell.
    func closed(since: Date?) async
    /// The day holds its actions: at the start the clock reads `reads`, a day before the gateway last recorded
    /// anything (`lastRecorded`), and nothing synchronises it. The default does nothing.
    func clockDoubted(reads: Date, lastRecorded: Date) async
    /// The hold is over, for `reason`; the clock reads `reads`. The default does nothing.
    func clockTrusted(reads: Date, because reason: ClockTrust) async
}

/// Why a clock that read a day before the last run is trusted now.
public enum ClockTrust: Sendable, Equatable {
    /// NTP keeps it.
    case synchronised
    /// It was set (by hand, or by an NTP client that steps it) since the start: someone made it read what it reads.
    case set
    /// It reads the day last recorded, or later.
    case pastLastRecorded
}

extension HallDayActions {
    /// Does nothing: the boards keep their display over the break.
    public func breakStarted(reopensAt: Date) async {}
    public func clockDoubted(reads: Date, lastRecorded: Date) async {}
    public func clockTrusted(reads: Date, because reason: ClockTrust) async {}
}

/// Whether the hall is open, on a short break, or closed, at one instant.
public enum HallState: Sendable, Equatable {
    /// Open for service.
    case open
    /// Closed for a break that ends at `reopensAt` the same day (lunch).
    case onBreak(reopensAt: Date)
    /// Closed: before opening, after closing, on a holiday, or over a break longer than the longest break.
    case closed
}

/// The hall's day as a pure function of time: what state the hall is in, whether the pre-opening check is due, and
/// when something next changes. `HallDay` drives it; it is public so status output can say what comes next.
public struct HallDaySchedule: Sendable, Equatable {
    /// The opening hours.
    public var hours: OpeningHours
    /// How long before the day's first opening `beforeOpening` runs.
    public var checkLead: Duration
    /// A closing followed by a reopening the same day within this is a break (boards stay on), not a closing.
    public var longestBreak: Duration

    /// Creates a schedule.
    public init(hours: OpeningHours, checkLead: Duration = .seconds(15 * 60),
                longestBreak: Duration = .seconds(2 * 3600)) {
        self.hours = hours
        self.checkLead = checkLead
        self.longestBreak = longestBreak
    }

    /// The hall's state at `instant`.
    public func state(at instant: Date) -> HallState {
        if hours.isOpen(at: instant) { return .open }
        let periods = hours.openPeriods(on: hours.day(of: instant))
        if let previous = periods.last(where: { $0.end <= instant }),
           let next = periods.first(where: { $0.start > instant }),
           next.start.timeIntervalSince(previous.end) <= longestBreak.timeInterval {
            return .onBreak(reopensAt: next.start)
        }
        return .closed
    }

    /// When the state at `instant` began: the opening of the period it is in, else the last closing before it (nil:
    /// none within 400 days). A restart within one state tells the same instant, so it names that opening or closing.
    public func stateBegan(at instant: Date) -> Date? {
        var day = hours.day(of: instant)
        for _ in 0..<400 {
            let periods = hours.openPeriods(on: day)
            if let open = periods.last(where: { $0.start <= instant && instant < $0.end }) { return open.start }
            if let closing = periods.last(where: { $0.end <= instant })?.end { return closing }
            day = day.adding(days: -1)
        }
        return nil
    }

    /// The day whose pre-opening check is due at `instant`: its first opening is at or after `instant`, by at most
    /// the lead time. Nil once the day has opened (by more than a late wake-up's few seconds: with no lead the check
    /// falls due at the opening itself), so a gateway started mid-day does not clear its counters.
    public func checkDue(at instant: Date) -> HallDate? {
        guard let start = hours.nextDayStart(notBefore: instant.addingTimeInterval(-Self.lateWake)),
              start.date.addingTimeInterval(-checkLead.timeInterval) <= instant
        else { return nil }
        return start.day
    }

    /// How late a sleep may wake and still find a check due at the instant it slept until.
    static let lateWake: TimeInterval = 5

    /// The first instant strictly after `instant` at which the state changes or a check falls due; nil when the
    /// hall never opens again within 400 days.
    public func nextChange(after instant: Date) -> Date? {
        let transition = hours.nextTransition(after: instant)?.date
        var check: Date?
        var from = instant
        // The first day start whose check time is still ahead; a check already passed was done or is skipped.
        while let start = hours.nextDayStart(notBefore: from) {
            let checkTime = start.date.addingTimeInterval(-checkLead.timeInterval)
            if checkTime > instant {
                check = checkTime
                break
            }
            from = hours.date(start.day.adding(days: 1), .midnight)
        }
        return [transition, check].compactMap { $0 }.min()
    }
}

extension HallDaySchedule {
    /// Where the day stands at `now`, in hall time, as `gatewayd status` says it: `open until 12:00`, `on a break
    /// until 13:30 (boards on)`, `closed; opens at 2026-12-07 09:00, the check at 08:45`.
    public func describe(at now: Date, timeZone: TimeZone) -> String {
        func minute(_ date: Date) -> String { HallTime.text(date, timeZone: timeZone) }
        // Today's times by the clock alone; another day's with its date.
        func at(_ date: Date) -> String {
            minute(date).prefix(10) == minute(now).prefix(10) ? String(minute(date).suffix(5)) : minute(date)
        }
        switch state(at: now) {
        case .open:
            return "open" + (hours.nextTransition(after: now).map { " until \(at($0.date))" } ?? "")
        case .onBreak(let reopensAt):
            return "on a break until \(at(reopensAt)) (boards on)"
        case .closed:
            guard let opening = hours.nextTransition(after: now)?.date else { return "closed; no opening within 400 days" }
            let check = opening.addingTimeInterval(-checkLead.timeInterval)
            if hours.nextDayStart(notBefore: now)?.date == opening, checkLead > .zero, check > now {
                // The check's date only when it is not the opening's (an opening just after midnight).
                let checkAt = minute(check).prefix(10) == minute(opening).prefix(10) ? String(minute(check).suffix(5)) : minute(check)
                return "closed; opens at \(at(opening)), the check at \(checkAt)"
            }
            return "closed; opens at \(at(opening))"
        }
    }
}

/// Runs the hall's working day: the device check before opening, boards on at opening, off after closing.
///
/// - At the day's first opening minus `checkLead` (15 min by default), on open days only: `beforeOpening`.
/// - At each opening: `opened`. At each closing: `closed`, unless the hall reopens the same day within
///   `longestBreak` (2 h by default): then it is a break (午休), `breakStarted(reopensAt:)` is called, boards stay
///   on, and the reopening calls `opened` again. Halls keep their boards on over lunch so citizens see when
///   service resumes; `longestBreak: .zero` turns them off at every closing.
/// - Started mid-day, it calls `opened` (or `breakStarted`, or `closed`) for the state at that instant, and
///   `beforeOpening` only if the day has not opened yet: counters already in use are not cleared.
/// - After a wall-clock jump forward it acts on the state at the new instant, skipping what was missed, by the
///   same rule. After a jump backward within the hall's day, over changes it carried out, it repeats nothing: it
///   waits for the next change after the new instant. A jump back to an earlier day, or to before the instant it
///   started or jumped forward to (changes it never carried out), acts on the state at the new instant, as a jump
///   forward does: the boards of the day it left are not left on over the night of the one it came back to, nor off
///   for the rest of a day after a mistaken jump to the evening. `clockWasSet` tells it of a jump; the wait under
///   way ends at once.
/// - Started on a clock that reads a day before the one the gateway last recorded (`lastRecorded`), with nothing
///   synchronising it (a box whose clock battery died boots at 1970 or at an old date), it does nothing until the
///   clock is synchronised, set (`clockWasSet`) or past that day: boards switched off in service and a check of the
///   wrong day would follow from it. Then it acts as if started at that instant. A clock kept by NTP is trusted
///   whatever it reads.
public actor HallDay {
    /// The day's rules.
    public nonisolated let schedule: HallDaySchedule
    private let clock: any HallClock
    private let actions: any HallDayActions
    private let lastRecorded: Date?
    /// Whether the clock was set since the start: what it reads then is someone's doing, trusted.
    private var setSinceStart = false
    /// The wait under way in `run`, for `clockWasSet` to end.
    private var waiter: Waiter?

    /// How often a held day looks at the clock again.
    static let clockRecheck: TimeInterval = 30

    /// Creates a hall day over `hours`, calling `actions` at the moments `clock` reaches. `lastRecorded`: the
    /// latest instant the gateway wrote down under its clock before this start, if any.
    public init(hours: OpeningHours, checkLead: Duration = .seconds(15 * 60),
                longestBreak: Duration = .seconds(2 * 3600), clock: any HallClock = SystemHallClock(),
                lastRecorded: Date? = nil, actions: any HallDayActions) {
        schedule = HallDaySchedule(hours: hours, checkLead: checkLead, longestBreak: longestBreak)
        self.clock = clock
        self.lastRecorded = lastRecorded
        self.actions = actions
    }

    /// Runs the day until `stop` fires (or the task is cancelled). An action under way finishes first: only the
    /// waits between actions are interrupted.
    public func run(until stop: StopSignal) async {
        let waiter = Waiter(clock: clock)
        self.waiter = waiter
        stop.onStop { waiter.stop() }
        await withTaskCancellationHandler {
            var state: HallState?
            var checkedDay: HallDate?
            guard var now = await trustedNow(waiter: waiter, stop: stop) else { return }
            // The last instant acted on, and since when every change up to it was: a start or a jump forward acts on
            // the state at its instant only, skipping the changes before it.
            var actedAt = now
            var walkedSince = now
            var deadline: Date?
            while !stop.isStopped, !Task.isCancelled {
                if now < actedAt {
                    // A closing at 24:00 is acted on at the next day's first instant: it belongs to the day it ends.
                    let actedDay = schedule.hours.day(of: actedAt.addingTimeInterval(-0.001))
                    if now >= walkedSince, schedule.hours.day(of: now) == actedDay {
                        // Set back within the day, over changes done: they stay done; the next one is due again.
                        deadline = schedule.nextChange(after: now)
                        await waiter.sleep(until: deadline ?? .distantFuture)
                        now = clock.now
                        continue
                    }
                    walkedSince = now
                } else if let deadline, now.timeIntervalSince(deadline) > HallDaySchedule.lateWake {
                    walkedSince = now
                }
                actedAt = now
                // The check first: counters are cleared before boards show the opening display.
                if let day = schedule.checkDue(at: now), day != checkedDay {
                    checkedDay = day
                    await actions.beforeOpening(day: day.dateComponents)
                }
                let current = schedule.state(at: now)
                if current != state {
                    let first = state == nil
                    state = current
                    switch current {
                    case .open: await actions.opened(greeting: !first, since: schedule.stateBegan(at: now))
                    case .onBreak(let reopensAt): await actions.breakStarted(reopensAt: reopensAt)
                    case .closed: await actions.closed(since: schedule.stateBegan(at: now))
                    }
                }
                // No change ahead (a hall that never opens): wait for the stop.
                deadline = schedule.nextChange(after: now)
                await waiter.sleep(until: deadline ?? .distantFuture)
                now = clock.now
            }
        } onCancel: {
            waiter.stop()
        }
    }

    /// The wall clock was set (a step seen against the monotonic clock): a day held for the clock goes on at its next
    /// look, and a day under way looks at the clock at once (a wait for a change that the step moved would end late,
    /// or a day late after a step back).
    public func clockWasSet() {
        setSinceStart = true
        waiter?.interrupt()
    }

    /// The clock's reading once it can be trusted (at once, unless it is behind); nil when stopped before.
    private func trustedNow(waiter: Waiter, stop: StopSignal) async -> Date? {
        // Whether it is synchronised first: NTP stepping the clock and synchronising it between the two readings
        // would otherwise have the old reading trusted.
        var trust = self.trust()
        var now = clock.now
        guard let lastRecorded, isBehind(now, trust) else { return now }
        await actions.clockDoubted(reads: now, lastRecorded: lastRecorded)
        while isBehind(now, trust) {
            if stop.isStopped || Task.isCancelled { return nil }
            await waiter.sleep(until: now.addingTimeInterval(Self.clockRecheck))
            trust = self.trust()
            now = clock.now
        }
        await actions.clockTrusted(reads: now, because: trust ?? .pastLastRecorded)
        return now
    }

    /// Why the clock is trusted whatever it reads, if it is.
    private func trust() -> ClockTrust? {
        clock.isSynchronised ? .synchronised : setSinceStart ? .set : nil
    }

    /// Whether `now` is on a day before the last recorded one, on a clock not trusted otherwise.
    private func isBehind(_ now: Date, _ trust: ClockTrust?) -> Bool {
        guard let lastRecorded, trust == nil else { return false }
        return schedule.hours.day(of: now) < schedule.hours.day(of: lastRecorded)
    }
}

/// One interruptible wait at a time: `stop()` cancels the wait under way and makes later ones return at once;
/// `interrupt()` ends the wait under way, or the next one if none is.
private final class Waiter: Sendable {
    private let clock: any HallClock
    private let current = Mutex<(task: Task<Void, Never>?, stopped: Bool, interrupted: Bool)>((nil, false, false))

    init(clock: any HallClock) { self.clock = clock }

    func stop() {
        let task = current.withLock { current in
            current.stopped = true
            return current.task
        }
        task?.cancel()
    }

    func interrupt() {
        let task = current.withLock { current in
            if current.task == nil { current.interrupted = true }
            return current.task
        }
        task?.cancel()
    }

    func sleep(until deadline: Date) async {
        // Made under the lock: an interruption that comes once the sleep is under way finds it to cancel.
        let task = current.withLock { current -> Task<Void, Never>? in
            defer { current.interrupted = false }
            if current.stopped || current.interrupted { return nil }
            current.task = Task { [clock] in _ = try? await clock.sleep(until: deadline) }
            return current.task
        }
        guard let task else { return }
        await task.value
        current.withLock { $0.task = nil }
    }
}
