import Foundation
import Yams

/// The hall's working day from the configuration: opening hours (`hours:`) and the gateway's own ticket
/// numbering (`tickets:`).
public struct HallDayConfig: Sendable, Equatable {
    /// The opening hours; nil without an `hours:` section (then no hall day runs: boards and checks are manual).
    public var hours: OpeningHours?
    /// How long before the day's first opening the counters are cleared and the devices checked.
    public var checkBeforeOpening: Duration
    /// A closing followed by a reopening the same day within this is a break: boards stay on (午休).
    public var longestBreak: Duration
    /// How long a board a call or a text switched on after closing (延时服务, a technician's test) stays on after the
    /// last; zero: calls and texts after closing leave boards as the closing left them.
    public var lateCallHold: Duration
    /// The gateway's ticket counters; nil without a `tickets:` section (then numbers come from the queue system).
    public var tickets: TicketSettings?

    /// Creates a hall-day configuration.
    public init(hours: OpeningHours?, checkBeforeOpening: Duration = .seconds(15 * 60),
                longestBreak: Duration = .seconds(2 * 3600), lateCallHold: Duration = .seconds(30 * 60),
                tickets: TicketSettings? = nil) {
        self.hours = hours
        self.checkBeforeOpening = checkBeforeOpening
        self.longestBreak = longestBreak
        self.lateCallHold = lateCallHold
        self.tickets = tickets
    }
}

extension ConfigLoader {
    /// The keys of `hours:` besides weekdays, listed in messages.
    private static let hoursKeys = [
        "holidays", "working-days", "check-before-opening-minutes", "longest-break-minutes", "late-call-minutes",
    ]

    /// Reads the `hours:` and `tickets:` sections (either may be absent); nil when both are. Problems are reported
    /// to `reader` as `file:line:column: key: message`.
    ///
    /// ```yaml
    /// hours:
    ///   monday-friday: ["09:00-12:00", "13:30-17:00"]   # a lunch break is two intervals
    ///   saturday: ["09:00-12:00"]
    ///   sunday: closed                                  # or [], or leave the day out
    ///   holidays: [2026-10-01, 2026-10-02]              # closed all day
    ///   working-days: {2026-10-11: monday}              # 调休: worked with Monday's hours
    ///   check-before-opening-minutes: 15                # 0…720, default 15
    ///   longest-break-minutes: 120                      # 0…720, default 120; 0: boards off at every closing
    ///   late-call-minutes: 30                           # 0…240, default 30: a board a call or text after closing
    ///                                                   # switched on stays on so long after the last; 0: left off
    /// tickets:
    ///   prefixes: [A, B, C]                             # 1–3 capital letters each
    ///   priority-prefixes: [V]                          # 绿色通道
    ///   digits: 3                                       # 1…6, default 3
    /// ```
    static func parseHallDay(hours hoursNode: Node?, tickets ticketsNode: Node?, _ reader: YAMLReader,
                             timeZone: TimeZone) -> HallDayConfig? {
        guard hoursNode != nil || ticketsNode != nil else { return nil }
        var config = HallDayConfig(hours: nil)
        if let hoursNode { parseHours(hoursNode, reader, timeZone: timeZone, into: &config) }
        if let ticketsNode { config.tickets = parseTickets(ticketsNode, reader) }
        return config
    }

    /// Parses text holding `hours:` and `tickets:` only; for tests of this section on its own.
    static func parseHallDay(yaml text: String, file: String, timeZone: TimeZone) throws(ConfigError)
        -> HallDayConfig?
    {
        let reader = YAMLReader(file: file)
        guard let root = reader.compose(text), let top = reader.fields(root, "") else {
            throw ConfigError(issues: reader.issues)
        }
        let config = parseHallDay(hours: top.value("hours"), tickets: top.value("tickets"), reader, timeZone: timeZone)
        top.rejectUnknownKeys()
        guard reader.issues.isEmpty else { throw ConfigError(issues: reader.issues) }
        return config
    }

    private static func parseHours(_ node: Node, _ reader: YAMLReader, timeZone: TimeZone,
                                   into config: inout HallDayConfig) {
        guard let mapping = node.mapping else {
            reader.report(node, "hours", "expected a mapping of weekdays to opening intervals")
            return
        }
        var weekly: [Weekday: [OpenInterval]] = [:]
        var setBy: [Weekday: String] = [:]
        var holidays: Set<HallDate> = []
        var workingDays: [HallDate: Weekday] = [:]
        var workingDayNodes: [HallDate: (node: Node, path: String)] = [:]
        for (keyNode, value) in mapping {
            let key = keyNode.scalar?.string ?? ""
            let path = "hours.\(key)"
            switch key {
            case "holidays":
                for item in reader.items(value, path) ?? [] {
                    guard let date = parseDate(item.node, item.path, reader) else { continue }
                    if !holidays.insert(date).inserted {
                        reader.report(item.node, item.path, "\(date) is listed twice")
                    }
                }
            case "working-days":
                guard let days = value.mapping else {
                    reader.report(value, path, "expected a mapping of dates to weekdays, e.g. {2026-10-11: monday}")
                    continue
                }
                for (dateNode, weekdayNode) in days {
                    let itemPath = "\(path).\(dateNode.scalar?.string ?? "")"
                    guard let date = parseDate(dateNode, itemPath, reader) else { continue }
                    let name = weekdayNode.scalar?.string ?? ""
                    guard let weekday = Weekday(name: name) else {
                        reader.report(weekdayNode, itemPath, "'\(name)' is not a weekday (monday … sunday): the day "
                                        + "whose hours \(date) is worked with")
                        continue
                    }
                    workingDays[date] = weekday
                    workingDayNodes[date] = (dateNode, itemPath)
                }
            case "check-before-opening-minutes":
                if let minutes = reader.int(value, path, in: 0...720) {
                    config.checkBeforeOpening = .seconds(minutes * 60)
                }
            case "longest-break-minutes":
                if let minutes = reader.int(value, path, in: 0...720) { config.longestBreak = .seconds(minutes * 60) }
            case "late-call-minutes":
                if let minutes = reader.int(value, path, in: 0...240) { config.lateCallHold = .seconds(minutes * 60) }
            default:
                guard let days = weekdays(key) else {
                    reader.report(keyNode, path, "unknown weekday or key (weekdays: monday … sunday, or a range "
                                    + "such as monday-friday; other keys: \(hoursKeys.joined(separator: ", ")))")
                    continue
                }
                let intervals = parseIntervals(value, path, reader)
                for day in days {
                    if let earlier = setBy[day] {
                        reader.report(keyNode, path, "\(day) already has its hours from '\(earlier)'")
                    }
                    setBy[day] = key
                    weekly[day] = intervals
                }
            }
        }
        if !weekly.values.contains(where: { !$0.isEmpty }) {
            reader.report(node, "hours", "no weekday has opening hours (e.g. monday-friday: [\"09:00-17:00\"])")
        }
        for (date, weekday) in workingDays.sorted(by: { $0.key < $1.key }) {
            guard let (node, path) = workingDayNodes[date] else { continue }
            if holidays.contains(date) {
                reader.report(node, path, "\(date) is also listed in holidays; it cannot be both")
            } else if weekly[weekday]?.isEmpty ?? true, !weekly.isEmpty {
                reader.report(node, path, "\(date) is worked as \(weekday), which has no opening hours")
            }
        }
        config.hours = OpeningHours(timeZone: timeZone, weekly: weekly, holidays: holidays, workingDays: workingDays)
    }

    /// `monday`, or a range `monday-friday` running from Monday towards Sunday.
    private static func weekdays(_ key: String) -> [Weekday]? {
        if let day = Weekday(name: key) { return [day] }
        let ends = key.split(separator: "-", omittingEmptySubsequences: false)
        guard ends.count == 2, let first = Weekday(name: String(ends[0])), let last = Weekday(name: String(ends[1])),
              first < last
        else { return nil }
        return Weekday.allCases.filter { $0 >= first && $0 <= last }
    }

    /// A list of `HH:MM-HH:MM`, sorted, none overlapping; `closed` or `[]` for a day without hours.
    private static func parseIntervals(_ node: Node, _ path: String, _ reader: YAMLReader) -> [OpenInterval] {
        if node.scalar?.string == "closed" { return [] }
        guard node.sequence != nil else {
            reader.report(node, path, "expected a list of intervals such as [\"09:00-12:00\", \"13:30-17:00\"], "
                            + "or closed")
            return []
        }
        var intervals: [(interval: OpenInterval, node: Node, path: String)] = []
        for item in reader.items(node, path) ?? [] {
            guard let text = reader.string(item.node, item.path) else { continue }
            guard let interval = OpenInterval(text) else {
                let ends = text.split(separator: "-", omittingEmptySubsequences: false).map {
                    TimeOfDay(String($0).trimmingCharacters(in: .whitespaces))
                }
                if ends.count == 2, let opens = ends[0], let closes = ends[1], closes <= opens {
                    reader.report(item.node, item.path, "'\(text)' closes before it opens (an interval lies within "
                                    + "one day, e.g. 09:00-17:00)")
                } else {
                    reader.report(item.node, item.path, "'\(text)' is not an interval HH:MM-HH:MM (e.g. 09:00-12:00)")
                }
                continue
            }
            intervals.append((interval, item.node, item.path))
        }
        let sorted = intervals.sorted { $0.interval.opens < $1.interval.opens }
        for (earlier, later) in zip(sorted, sorted.dropFirst()) where later.interval.opens < earlier.interval.closes {
            reader.report(later.node, later.path, "'\(later.interval)' overlaps '\(earlier.interval)'")
        }
        return sorted.map(\.interval)
    }

    private static func parseDate(_ node: Node, _ path: String, _ reader: YAMLReader) -> HallDate? {
        let text = node.scalar?.string ?? ""
        guard let date = HallDate(text) else {
            reader.report(node, path, "'\(text)' is not a date YYYY-MM-DD (e.g. 2026-10-01)")
            return nil
        }
        return date
    }

    private static func parseTickets(_ node: Node, _ reader: YAMLReader) -> TicketSettings? {
        guard let fields = reader.fields(node, "tickets") else { return nil }
        func prefixes(_ key: String, required: Bool) -> [String] {
            guard let list = fields.value(key, required: required) else { return [] }
            return (reader.items(list, fields.keyPath(key)) ?? []).compactMap { item in
                guard let text = reader.string(item.node, item.path) else { return nil }
                guard text.range(of: "^[A-Z]{1,3}$", options: .regularExpression) != nil else {
                    reader.report(item.node, item.path, "'\(text)' is not a ticket prefix (1 to 3 capital letters, "
                                    + "e.g. A or VIP)")
                    return nil
                }
                return text
            }
        }
        let ordinary = prefixes("prefixes", required: true)
        let priority = prefixes("priority-prefixes", required: false)
        let digits = fields.int("digits", in: 1...6) ?? 3
        fields.rejectUnknownKeys()
        var seen: Set<String> = []
        for prefix in ordinary + priority where !seen.insert(prefix).inserted {
            reader.report(node, "tickets", "prefix '\(prefix)' is given twice")
        }
        if let list = fields.value("prefixes"), list.sequence?.isEmpty == true {
            reader.report(list, fields.keyPath("prefixes"), "no prefix given (e.g. [A, B])")
        }
        return TicketSettings(prefixes: ordinary, priorityPrefixes: priority, digits: digits)
    }
}
