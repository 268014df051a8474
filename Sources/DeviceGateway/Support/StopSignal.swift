import Synchronization

/// Tells long-running loops to finish their current cycle and return.
///
/// Loops are not cancelled mid-cycle: a cycle that read ratings must also commit them.
public final class StopSignal: Sendable {
    private let stopped = Mutex(false)
    private let observers = Mutex<[@Sendable () -> Void]>([])

    /// Creates a signal that has not fired.
    public init() {}

    /// Whether `stop()` was called.
    public var isStopped: Bool { stopped.withLock { $0 } }

    /// Asks every loop watching this signal to stop.
    public func stop() {
        let first = stopped.withLock { stopped in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        for observer in observers.withLock({ $0 }) { observer() }
    }

    /// Runs `action` when the signal fires (at once if it has): a loop blocked in a read is woken by it.
    public func onStop(_ action: @escaping @Sendable () -> Void) {
        let already = stopped.withLock { stopped in
            if !stopped { observers.withLock { $0.append(action) } }
            return stopped
        }
        if already { action() }
    }

    /// Sleeps for `duration`, or less if the signal fires meanwhile. A cancelled task fires the signal: a loop
    /// watching it finishes its cycle and returns instead of spinning through sleeps that no longer wait.
    public func sleep(for duration: Duration) async {
        if Task.isCancelled { stop() }
        let slice = Duration.milliseconds(50)
        var left = duration
        while left > .zero, !isStopped {
            let step = min(left, slice)
            // A cancelled task must not spin here: cancellation ends the sleep, like the signal does.
            do { try await Task.sleep(for: step) } catch {
                stop()
                return
            }
            left -= step
        }
    }
}
