import DeviceGateway
import Foundation

/// The backlog every forwarding benchmark starts from: a busy hall's ratings, committed as the buses would.
enum BenchmarkBacklog {
    /// One rating as a pad in a busy hall sends it: 40 windows, mostly 非常满意.
    static func rating(_ number: Int) -> CloudEvent {
        let pad = number % 40 + 1
        let levels = [5, 5, 5, 5, 5, 5, 5, 4, 4, 3, 5, 5, 5, 4, 5, 5, 2, 5, 5, 1]
        let level = levels[number % levels.count]
        let labels = [1: "非常不满意", 2: "不满意", 3: "基本满意", 4: "满意", 5: "非常满意"]
        let rating = RatingSubmitted(
            window: "\(pad)", staffId: String(format: "S%04d", pad), level: level, levelLabel: labels[level]!,
            key: level, keyLabel: labels[level]!, scale: "five-level", deviceCounter: Int64(number / 40 + 1))
        let time = Date(timeIntervalSince1970: 1_780_000_000 + Double(number) * 3.1)
        return CloudEvent(
            id: "rating-1a2b-\(number / 40 + 1)", source: EventSource.device(hall: "bench-hall", device: "pad-\(pad)"),
            type: HallEventType.ratingSubmitted, time: time, subject: EventSource.windowSubject("\(pad)"),
            data: .rating(rating))
    }

    /// Commits `events` ratings to `outbox`, 1,000 per commit; returns how long that took.
    static func fill(_ outbox: Outbox, events: Int) async throws -> Duration {
        let started = ContinuousClock.now
        var committed = 0
        while committed < events {
            let count = min(1_000, events - committed)
            try await outbox.commit((committed..<committed + count).map(rating))
            committed += count
        }
        return ContinuousClock.now - started
    }
}
