public import Foundation

/// A calendar date in the hall's time zone, without a time: `2026-10-01`.
///
/// Holidays, 调休 working days and daily ticket counters are keyed by it, so a hall's day is the same
/// whatever the gateway box's own time zone is.
public struct HallDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The year, e.g. 2026.
    public let year: Int
    /// The month, 1–12.
    public let month: Int
    /// The day of the month, 1–31.
    public let day: Int

    /// Creates a date; nil when it does not exist (2026-02-30).
    public init?(year: Int, month: Int, day: Int) {
        let components = DateComponents(year: year, month: month, day: day)
        // A round trip through the calendar rejects 2026-02-30 (which Calendar would roll into March).
        guard let date = Self.calendar.date(from: components),
              Self.calendar.dateComponents([.year, .month, .day], from: date) == components
        else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// Parses `YYYY-MM-DD`; nil for any other form or a date that does not exist.
    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              parts.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2])
        else { return nil }
        self.init(year: year, month: month, day: day)
    }

    /// The date `instant` falls on in `timeZone`.
    public init(of instant: Date, in timeZone: TimeZone) {
        var calendar = Self.calendar
        calendar.timeZone = timeZone
        let components = calendar.dateComponents([.year, .month, .day], from: instant)
        self.year = components.year ?? 1970
        self.month = components.month ?? 1
        self.day = components.day ?? 1
    }

    /// `YYYY-MM-DD`.
    public var description: String {
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))"
    }

    /// Year, month and day as components (no calendar, no time zone), the form `HallDayActions` receives.
    public var dateComponents: DateComponents { DateComponents(year: year, month: month, day: day) }

    /// The day of the week.
    public var weekday: Weekday {
        // Calendar numbers Sunday 1 … Saturday 7; ours is ISO, Monday 1 … Sunday 7.
        let calendarWeekday = Self.calendar.component(.weekday, from: noonUTC)
        return Weekday(rawValue: (calendarWeekday + 5) % 7 + 1) ?? .monday
    }

    /// The date `count` days later (earlier when negative).
    public func adding(days count: Int) -> HallDate {
        let moved = Self.calendar.date(byAdding: .day, value: count, to: noonUTC) ?? noonUTC
        return HallDate(of: moved, in: Self.calendar.timeZone)
    }

    public static func < (lhs: HallDate, rhs: HallDate) -> Bool {
        (lhs.year, lhs.month, lhs.day) < (rhs.year, rhs.month, rhs.day)
    }

    /// Date arithmetic happens in UTC, which has no daylight saving: a day is always a day.
    static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .gmt
        return calendar
    }()

    private var noonUTC: Date {
        Self.calendar.date(from: DateComponents(year: year, month: month, day: day, hour: 12)) ?? .distantPast
    }
}

/// A day of the week, numbered as ISO 8601 does (Monday 1 … Sunday 7).
public enum Weekday: Int, Sendable, Hashable, CaseIterable, Comparable, CustomStringConvertible {
    case monday = 1, tuesday, wednesday, thursday, friday, saturday, sunday

    /// The lower-case English name used in configuration files: `monday`.
    public var description: String {
        switch self {
        case .monday: "monday"
        case .tuesday: "tuesday"
        case .wednesday: "wednesday"
        case .thursday: "thursday"
        case .friday: "friday"
        case .saturday: "saturday"
        case .sunday: "sunday"
        }
    }

    /// The weekday with this configuration name, or nil.
    public init?(name: String) {
        guard let found = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = found
    }

    public static func < (lhs: Weekday, rhs: Weekday) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A time of day on the hall's wall clock, to the minute: `09:00`; `24:00` is the end of the day.
public struct TimeOfDay: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Minutes since midnight, 0…1440.
    public let minutes: Int

    /// 00:00, the start of the day.
    public static let midnight = TimeOfDay(minutes: 0)

    private init(minutes: Int) { self.minutes = minutes }

    /// Creates a time; nil outside 00:00…24:00.
    public init?(hour: Int, minute: Int) {
        guard (0...24).contains(hour), (0...59).contains(minute), hour * 60 + minute <= 1440 else { return nil }
        self.minutes = hour * 60 + minute
    }

    /// Parses `HH:MM` (`9:00` is accepted too).
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...2).contains(parts[0].count), parts[1].count == 2,
              let hour = Int(parts[0]), let minute = Int(parts[1]), !parts[0].hasPrefix("+"), !parts[1].hasPrefix("+")
        else { return nil }
        self.init(hour: hour, minute: minute)
    }

    /// `HH:MM`.
    public var description: String {
        let hour = minutes / 60, minute = minutes % 60
        return (hour < 10 ? "0" : "") + "\(hour):" + (minute < 10 ? "0" : "") + "\(minute)"
    }

    public static func < (lhs: TimeOfDay, rhs: TimeOfDay) -> Bool { lhs.minutes < rhs.minutes }
}

/// One stretch of a day the hall is open: `09:00-12:00`. It lies within one day (halls do not work overnight).
public struct OpenInterval: Sendable, Hashable, CustomStringConvertible {
    /// When the doors open.
    public let opens: TimeOfDay
    /// When they close; after `opens`.
    public let closes: TimeOfDay

    /// Creates an interval; nil unless `opens` is before `closes`.
    public init?(opens: TimeOfDay, closes: TimeOfDay) {
        guard opens < closes else { return nil }
        self.opens = opens
        self.closes = closes
    }

    fileprivate init(merging first: OpenInterval, _ second: OpenInterval) {
        opens = min(first.opens, second.opens)
        closes = max(first.closes, second.closes)
    }

    /// Parses `HH:MM-HH:MM`; nil when malformed or when it does not close after it opens.
    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2,
              let opens = TimeOfDay(String(parts[0]).trimmingCharacters(in: .whitespaces)),
              let closes = TimeOfDay(String(parts[1]).trimmingCharacters(in: .whitespaces))
        else { return nil }
        self.init(opens: opens, closes: closes)
    }

    /// `HH:MM-HH:MM`.
    public var description: String { "\(opens)-\(closes)" }
}

/// The hall's opening hours: per weekday zero or more intervals (a lunch break is two intervals), holidays
/// closed all day, and 调休 working days (a weekend date worked with a given weekday's hours), all read on the
/// wall clock of the hall's time zone.
///
/// Instants are computed with `Calendar` in that zone, never by adding 86,400 seconds, so a zone with
/// daylight saving still opens at 09:00 local time on the day the clocks change.
public struct OpeningHours: Sendable, Equatable {
    /// Whether the hall opens or closes at a `Transition`.
    public enum Change: Sendable, Equatable {
        case opens, closes
    }

    /// A moment the hall opens or closes.
    public struct Transition: Sendable, Equatable {
        /// Opens or closes.
        public var change: Change
        /// The instant.
        public var date: Date
        /// The hall's day it belongs to.
        public var day: HallDate

        /// Creates a transition.
        public init(change: Change, date: Date, day: HallDate) {
            self.change = change
            self.date = date
            self.day = day
        }
    }

    /// How far ahead the searches look: a hall closed for longer than this is treated as never opening again.
    static let horizonDays = 400

    /// The zone of the hall's wall clock.
    public let timeZone: TimeZone
    /// Each weekday's intervals, sorted, overlapping or touching ones merged; a missing weekday is closed.
    public let weekly: [Weekday: [OpenInterval]]
    /// Dates closed all day, whatever their weekday.
    public let holidays: Set<HallDate>
    /// 调休: dates worked with another weekday's hours (a Sunday worked as a Monday).
    public let workingDays: [HallDate: Weekday]

    /// Creates opening hours. Intervals are sorted and overlapping ones merged; a date that is both a holiday and
    /// a working day is a holiday.
    public init(timeZone: TimeZone, weekly: [Weekday: [OpenInterval]], holidays: Set<HallDate> = [],
                workingDays: [HallDate: Weekday] = [:]) {
        self.timeZone = timeZone
        self.weekly = weekly.compactMapValues { intervals in
            let merged = Self.merge(intervals)
            return merged.isEmpty ? nil : merged
        }
        self.holidays = holidays
        self.workingDays = workingDays
    }

    /// The intervals of one date: none on a holiday, the named weekday's on a working day, else its weekday's.
    public func intervals(on day: HallDate) -> [OpenInterval] {
        if holidays.contains(day) { return [] }
        return weekly[workingDays[day] ?? day.weekday] ?? []
    }

    /// The date `instant` falls on in the hall's time zone.
    public func day(of instant: Date) -> HallDate { HallDate(of: instant, in: timeZone) }

    /// The instant of `time` on `day`, on the hall's wall clock.
    public func date(_ day: HallDate, _ time: TimeOfDay) -> Date {
        if time.minutes == 1440 { return date(day.adding(days: 1), TimeOfDay.midnight) }
        var components = day.dateComponents
        components.hour = time.minutes / 60
        components.minute = time.minutes % 60
        // A valid Gregorian date and time always resolves; the fallback only keeps this total.
        let resolved = calendar.date(from: components) ?? .distantFuture
        // A time the clocks skip (02:30 on the night daylight saving starts) is resolved past the gap (03:30); the
        // hall's clocks reach it at the change itself (03:00).
        let resolvedTime = calendar.dateComponents([.hour, .minute], from: resolved)
        if resolvedTime.hour != components.hour || resolvedTime.minute != components.minute,
           let change = timeZone.nextDaylightSavingTimeTransition(after: resolved.addingTimeInterval(-3 * 3600)),
           change < resolved {
            return change
        }
        return resolved
    }

    /// The open periods of `day` as instants, in order.
    public func openPeriods(on day: HallDate) -> [DateInterval] {
        intervals(on: day).map { DateInterval(start: date(day, $0.opens), end: date(day, $0.closes)) }
    }

    /// Whether the hall is open at `instant` (open at the opening minute, closed at the closing one).
    public func isOpen(at instant: Date) -> Bool {
        openPeriods(on: day(of: instant)).contains { $0.start <= instant && instant < $0.end }
    }

    /// The first opening or closing strictly after `instant`; nil when the hall does not open within 400 days.
    public func nextTransition(after instant: Date) -> Transition? {
        transitions(after: instant, limit: 1).first
    }

    /// The openings and closings strictly after `instant` and not after `end`, in order.
    public func transitions(after instant: Date, through end: Date) -> [Transition] {
        var found: [Transition] = []
        var day = day(of: instant)
        while date(day, TimeOfDay.midnight) <= end {
            for period in openPeriods(on: day) {
                for (change, date) in [(Change.opens, period.start), (.closes, period.end)]
                where date > instant && date <= end {
                    found.append(Transition(change: change, date: date, day: day))
                }
            }
            day = day.adding(days: 1)
        }
        return found
    }

    /// The instant `day` first opens (the "day start"), or nil when it is closed all day.
    public func dayStart(of day: HallDate) -> Date? { openPeriods(on: day).first?.start }

    /// The first day start at or after `instant`, with its day; nil when none within 400 days.
    public func nextDayStart(notBefore instant: Date) -> (day: HallDate, date: Date)? {
        var day = day(of: instant)
        for _ in 0..<Self.horizonDays {
            if let start = dayStart(of: day), start >= instant { return (day, start) }
            day = day.adding(days: 1)
        }
        return nil
    }

    private func transitions(after instant: Date, limit: Int) -> [Transition] {
        var found: [Transition] = []
        var day = day(of: instant)
        for _ in 0..<Self.horizonDays {
            for period in openPeriods(on: day) {
                if period.start > instant { found.append(Transition(change: .opens, date: period.start, day: day)) }
                if period.end > instant { found.append(Transition(change: .closes, date: period.end, day: day)) }
                if found.count >= limit { return Array(found.prefix(limit)) }
            }
            day = day.adding(days: 1)
        }
        return found
    }

    private var calendar: Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return calendar
    }

    private static func merge(_ intervals: [OpenInterval]) -> [OpenInterval] {
        var merged: [OpenInterval] = []
        for interval in intervals.sorted(by: { $0.opens < $1.opens }) {
            if let last = merged.last, interval.opens <= last.closes {
                merged[merged.count - 1] = OpenInterval(merging: last, interval)
            } else {
                merged.append(interval)
            }
        }
        return merged
    }
}
