import Dispatch

/// A serial executor on a dispatch queue of its own.
///
/// A bus actor runs on one of these so its blocking C calls (libmodbus waits up to the response
/// timeout) never occupy the two threads of Swift's cooperative pool.
public final class BusExecutor: SerialExecutor {
    private let queue: DispatchQueue

    public init(label: String) {
        queue = DispatchQueue(label: label)
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async {
            job.runSynchronously(on: self.asUnownedSerialExecutor())
        }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }
}
