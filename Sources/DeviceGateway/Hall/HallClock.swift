import CSystemClock
public import Foundation
import Synchronization

/// The wall clock the hall's day runs on: the system's in the gateway, a `ManualHallClock` in tests.
public protocol HallClock: Sendable {
    /// The current instant.
    var now: Date { get }
    /// Returns once `now` has reached `deadline`; throws `CancellationError` when the task is cancelled.
    func sleep(until deadline: Date) async throws
    /// Whether something keeps the clock right (NTP): a clock nobody synchronises may read any date after a boot.
    var isSynchronised: Bool { get }
}

/// The system's wall clock.
public struct SystemHallClock: HallClock {
    /// The longest single sleep: the wall clock may be stepped (NTP, a technician) while we wait, so a long wait
    /// is cut into slices that each look at the clock again.
    static let slice: Duration = .seconds(30)

    /// Creates the system clock.
    public init() {}

    /// `Date()`.
    public var now: Date { Date() }

    /// What the kernel says (`adjtimex`, as `timedatectl` shows it): synchronised once an NTP client (chrony,
    /// systemd-timesyncd, ntpd) has disciplined the clock, until it stops doing so.
    public var isSynchronised: Bool {
        var state = timex()
        let clockState = adjtimex(&state)
        return clockState >= 0 && clockState != TIME_ERROR && state.status & STA_UNSYNC == 0
    }

    /// Why the kernel does not tell the clock's NTP state, if it does not: then `isSynchronised` is false.
    public static var ntpStateUnreadable: String? {
        var state = timex()
        guard adjtimex(&state) < 0 else { return nil }
        let failure = errno
        // systemd's ProtectClock=yes refuses reading too (EPERM), not only setting, as does a SystemCallFilter=
        // without clock_adjtime.
        return "adjtimex: \(String(cString: strerror(failure)))"
            + (failure == EPERM ? "; the service's ProtectClock= or SystemCallFilter= forbids it" : "")
    }

    /// Sleeps until the wall clock reads `deadline` or later.
    public func sleep(until deadline: Date) async throws {
        while true {
            let left = deadline.timeIntervalSince(Date())
            if left <= 0 { return }
            try await Task.sleep(for: min(.milliseconds(Int64((left * 1000).rounded(.up))), Self.slice))
        }
    }
}

/// A clock that only moves when told to, for tests and simulations: `advance(to:)` wakes the sleepers whose
/// deadline has come, and `nextDeadline()` waits until someone sleeps, so a test steps a `HallDay` from one of
/// its deadlines to the next without any real sleep.
public final class ManualHallClock: HallClock {
    private struct Sleeper {
        var id: Int
        var deadline: Date
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Date
        var sleepers: [Sleeper] = []
        var cancelled: Set<Int> = []
        var nextId = 0
        var watchers: [CheckedContinuation<Date, Never>] = []
        var synchronised = true
    }

    private let state: Mutex<State>

    /// Creates a clock reading `now`.
    public init(now: Date) { state = Mutex(State(now: now)) }

    /// The instant the clock reads.
    public var now: Date { state.withLock { $0.now } }

    /// As set by `setSynchronised`; synchronised at first.
    public var isSynchronised: Bool { state.withLock { $0.synchronised } }

    /// Says the clock is (or is no longer) kept right; sleepers notice when they next wake.
    public func setSynchronised(_ synchronised: Bool) { state.withLock { $0.synchronised = synchronised } }

    /// Suspends until `advance` reaches `deadline` (returns at once if the clock already has).
    public func sleep(until deadline: Date) async throws {
        let id = state.withLock { state in
            state.nextId += 1
            return state.nextId
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Outcome { case due, cancelled, waiting([CheckedContinuation<Date, Never>], Date) }
                let outcome = state.withLock { state -> Outcome in
                    // The cancellation handler may have run before we got here.
                    if state.cancelled.remove(id) != nil { return .cancelled }
                    if deadline <= state.now { return .due }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    defer { state.watchers = [] }
                    return .waiting(state.watchers, state.sleepers.map(\.deadline).min() ?? deadline)
                }
                switch outcome {
                case .due: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .waiting(let watchers, let earliest):
                    for watcher in watchers { watcher.resume(returning: earliest) }
                }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else {
                    state.cancelled.insert(id)
                    return nil
                }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// The earliest deadline anyone sleeps until, waiting for a sleeper if there is none yet.
    public func nextDeadline() async -> Date {
        await withCheckedContinuation { (continuation: CheckedContinuation<Date, Never>) in
            let earliest = state.withLock { state -> Date? in
                if let earliest = state.sleepers.map(\.deadline).min() { return earliest }
                state.watchers.append(continuation)
                return nil
            }
            if let earliest { continuation.resume(returning: earliest) }
        }
    }

    /// Sets the clock to `instant` and wakes every sleeper whose deadline is at or before it.
    public func advance(to instant: Date) {
        let due = state.withLock { state -> [Sleeper] in
            state.now = instant
            let due = state.sleepers.filter { $0.deadline <= instant }
            state.sleepers.removeAll { $0.deadline <= instant }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// Moves the clock forward by `duration`.
    public func advance(by duration: Duration) {
        advance(to: now.addingTimeInterval(duration.timeInterval))
    }
}

