import Synchronization

/// Tells long-running loops to finish their current cycle and return.
///
/// Loops are not cancelled mid-cycle: a cycle that read ratings must also commit them.
public final class StopSignal: Sendable {
    private let stopped = Mutex(false)

    /// Creates a signal that has not fired.
    public init() {}

    /// Whether `stop()` was called.
    public var isStopped: Bool { stopped.withLock { $0 } }

    /// Asks every loop watching this signal to stop.
    public func stop() { stopped.withLock { $0 = true } }

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
