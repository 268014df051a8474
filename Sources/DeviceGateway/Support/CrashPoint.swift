import Foundation

/// Fault injection for the crash tests: `HALL_GATEWAY_CRASH_AT=before-commit` (or `after-commit`)
/// makes the process kill itself with SIGKILL at that point of the first cycle that read a rating;
/// `after-printing`, once a ticket is printed and before its event is committed.
/// Unset in production, where `reached` is a single comparison.
enum CrashPoint: String {
    case beforeCommit = "before-commit"
    case afterCommit = "after-commit"
    case afterPrinting = "after-printing"

    private static let armed = ProcessInfo.processInfo.environment["HALL_GATEWAY_CRASH_AT"].flatMap(CrashPoint.init)

    static func reached(_ point: CrashPoint, withRatings events: [CloudEvent]) {
        guard armed == point, events.contains(where: { $0.type == HallEventType.ratingSubmitted }) else { return }
        kill(getpid(), SIGKILL)
    }

    static func reached(_ point: CrashPoint) {
        guard armed == point else { return }
        kill(getpid(), SIGKILL)
    }
}
