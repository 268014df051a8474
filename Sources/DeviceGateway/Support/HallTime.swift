public import Foundation

/// An instant as the hall reads it, in its time zone: `2026-12-05 19:07`, or `2026-12-05 19:07:31` to the second.
public enum HallTime {
    public static func text(_ date: Date, timeZone: TimeZone, toTheSecond: Bool = false) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let minute = String(format: "%04d-%02d-%02d %02d:%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0,
                            c.minute ?? 0)
        return toTheSecond ? minute + String(format: ":%02d", c.second ?? 0) : minute
    }
}
