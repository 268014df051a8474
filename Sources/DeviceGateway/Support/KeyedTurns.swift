import Synchronization

/// Work on one key at a time, in the order it asked: the switching of one board (a hall day's turn, a call after
/// closing, a hold's end) waits for the switching under way on it, so that a switch-off decided before a call cannot
/// land after it. Different keys do not wait for each other.
final class KeyedTurns: Sendable {
    /// Per key taken, the work waiting for it.
    private let waiting = Mutex<[String: [CheckedContinuation<Void, Never>]]>([:])

    /// How much work waits for `key`'s turn; nil while nothing has it. For tests that line work up.
    func waiting(on key: String) -> Int? { waiting.withLock { $0[key]?.count } }

    /// Runs `body` once the work on `key` before it is done.
    func run<T>(on key: String, _ body: () async throws -> T) async rethrows -> T {
        await take(key)
        defer { give(key) }
        return try await body()
    }

    private func take(_ key: String) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let free = waiting.withLock { waiting in
                guard waiting[key] != nil else {
                    waiting[key] = []
                    return true
                }
                waiting[key]?.append(continuation)
                return false
            }
            if free { continuation.resume() }
        }
    }

    private func give(_ key: String) {
        let next = waiting.withLock { waiting -> CheckedContinuation<Void, Never>? in
            guard let queue = waiting[key], let first = queue.first else {
                waiting[key] = nil
                return nil
            }
            waiting[key] = Array(queue.dropFirst())
            return first
        }
        next?.resume()
    }
}
