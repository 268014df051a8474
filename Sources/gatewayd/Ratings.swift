public import ArgumentParser
public import DeviceGateway
import Foundation
import Protocols

/// 评价统计: the day's (or month's) ratings from the local event store, per window, staff member or pad.
struct Ratings: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Count the ratings of a day or a month in the local event store, per window, staff member or pad.",
        discussion: """
            Per level of the national scale (非常满意 5 … 非常不满意 1) and 满意率, the share of levels 5 and 4 among \
            all, as docs/central-store.md counts it; days are the hall's (its time zone). With a configuration, the \
            pads that gave no rating in the period are named: a pad whose ratings stopped is a pad to look at.
            """)

    @Option(help: "The day, YYYY-MM-DD in the hall's time zone (default: today).")
    var day: String?

    @Option(help: "The month, YYYY-MM, instead of a day.")
    var month: String?

    @Option(help: "Count per window, staff (the staff id the pad showed) or pad.")
    var by: SQLiteEventStore.RatingGroup = .window

    @Option(help: "The event store (default: the config's sqlite sink, or var/events.sqlite).")
    var store: String?

    @Flag(help: "The counts as one JSON object.")
    var json = false

    // Not the daemon's options: the store is read directly, whether the daemon runs or not.
    @Option(help: "The hall's configuration: its time zone, event store and pads (default: $HALL_GATEWAY_CONFIG).")
    var config: String?

    func validate() throws {
        if day != nil, month != nil { throw ValidationError("--day and --month: give one of them") }
        for (option, text, form, isMonth) in [("--day", day, "YYYY-MM-DD", false), ("--month", month, "YYYY-MM", true)] {
            guard let text else { continue }
            guard Self.isWritten(text, asMonth: isMonth) else { throw ValidationError("\(option) '\(text)': expected \(form)") }
            if Self.period(day: isMonth ? nil : text, month: isMonth ? text : nil, now: Date(), timeZone: .gmt) == nil {
                throw ValidationError("\(option) '\(text)': there is no such \(isMonth ? "month" : "day")")
            }
        }
    }

    func run() async throws {
        let hall = try DaemonOptions.parse(config.map { ["--config", $0] } ?? []).load()
        let reader = try hall.eventStore(given: store, command: "its ratings are in the central store")
        guard let period = Self.period(day: day, month: month, now: Date(), timeZone: hall.timeZone) else {
            // Valid on the calendar, skipped by the hall's clocks (Pacific/Apia left out 2011-12-30).
            printError("\(day.map { "--day '\($0)'" } ?? "--month '\(month ?? "")'") is no \(month == nil ? "day" : "month") of the hall's time zone, \(hall.timeZone.identifier)")
            throw ExitCode(CLIExit.usage)
        }
        let counted = try await reader.ratings(from: period.start, to: period.end, by: by)
        // By the pad each rating came from, whatever the rows are: one pad of two on a window, or a terminal beside it,
        // would hide a dead one.
        let ratedPads = by == .pad ? counted : try await reader.ratings(from: period.start, to: period.end, by: .pad)
        let rows = counted.map { Row(key: $0.key ?? "(none shown)", levels: $0.levels) }
            .sorted { $0.key.compare($1.key, options: .numeric) == .orderedAscending }
        let total = Row(key: "all", levels: rows.reduce(into: [:]) { all, row in all.merge(row.levels, uniquingKeysWith: +) })
        let silent = silentPads(hall, rated: Set(ratedPads.compactMap(\.key)))
        if json {
            try Output.printJSON(Report(day: month == nil ? period.name : nil, month: month == nil ? nil : period.name,
                                        from: EventTime.format(period.start), until: EventTime.format(period.end),
                                        timeZone: hall.timeZone.identifier, store: reader.path,
                                        by: by.rawValue, rows: rows.map(Report.Counts.init), all: Report.Counts(total),
                                        padsWithoutRatings: silent))
            return
        }
        print("ratings \(month == nil ? "on" : "in") \(period.name), hall time \(hall.timeZone.identifier), from \(reader.path)")
        if rows.isEmpty {
            print("no ratings")
        } else {
            let levels = NationalRatingLevel.allCases.reversed().map(\.rawValue)
            let header = [by.rawValue, "ratings"] + levels.map { NationalRatingLevel(rawValue: $0)?.label ?? "\($0)" } + ["满意率"]
            let lines = (rows + [total]).map { row in
                [row.key, "\(row.ratings)"] + levels.map { "\(row.levels[$0] ?? 0)" } + [row.satisfaction]
            }
            Output.table([header] + lines).forEach { print($0) }
            print("满意率: 非常满意 and 满意 (levels 5 and 4) among all ratings")
        }
        if let silent, !silent.isEmpty {
            print("no ratings from: " + silent.map { pad in pad.window.map { "\(pad.pad) (window \($0))" } ?? pad.pad }
                .joined(separator: ", "))
        }
    }

    /// The configured pads and networked terminals that gave no rating (`rated`: those that did); nil without a
    /// configuration.
    private func silentPads(_ hall: HallContext, rated: Set<String>) -> [Report.Pad]? {
        guard let config = hall.config, let library = hall.library else { return nil }
        let pads = config.devices.filter { device in
            (try? library.load(named: device.profile)).map { DeviceRole.of($0.profile, window: device.window) } == .pad
        }.map { Report.Pad(pad: $0.id, window: $0.window) }
        // Networked terminals rate as pads do (from a trial: a silent tablet went unnamed).
        let terminals = config.terminals.map { Report.Pad(pad: $0.id, window: $0.window) }
        return (pads + terminals).filter { !rated.contains($0.pad) }
    }

    /// One window's, staff member's or pad's counts.
    struct Row {
        let key: String
        let levels: [Int: Int]
        var ratings: Int { levels.values.reduce(0, +) }
        var satisfactionPercent: Double? {
            ratings == 0 ? nil : Double((levels[5] ?? 0) + (levels[4] ?? 0)) * 100 / Double(ratings)
        }
        var satisfaction: String { satisfactionPercent.map { String(format: "%.1f %%", $0) } ?? "-" }
    }

    struct Report: Encodable {
        struct Counts: Encodable {
            let key: String
            let ratings: Int
            /// By level, "5" … "1".
            let levels: [String: Int]
            let satisfactionPercent: Double?

            init(_ row: Row) {
                key = row.key
                ratings = row.ratings
                levels = Dictionary(uniqueKeysWithValues: (1...5).map { ("\($0)", row.levels[$0] ?? 0) })
                satisfactionPercent = row.satisfactionPercent.map { ($0 * 10).rounded() / 10 }
            }
        }

        struct Pad: Encodable {
            let pad: String
            let window: String?
        }

        /// The day (YYYY-MM-DD) or the month (YYYY-MM) counted, in the hall's time zone.
        let day: String?
        let month: String?
        /// Its first instant and the next period's, RFC 3339 in UTC.
        let from: String
        let until: String
        let timeZone: String
        let store: String
        let by: String
        let rows: [Counts]
        let all: Counts
        let padsWithoutRatings: [Pad]?
    }

    /// Digits only, 4-2-2 for a day, 4-2 for a month: not 2026-12-4, +2026-12 or 12026-12-04.
    static func isWritten(_ text: String, asMonth: Bool) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        return parts.map(\.count) == (asMonth ? [4, 2] : [4, 2, 2]) && parts.allSatisfy { $0.allSatisfy { ("0"..."9").contains($0) } }
    }

    /// The day or month asked for (today without either) in `timeZone`: its first instant, the next one's, and its
    /// name (2026-12-04, 2026-12).
    static func period(day: String?, month: String?, now: Date, timeZone: TimeZone) -> (start: Date, end: Date, name: String)? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        if let text = day ?? month, !isWritten(text, asMonth: month != nil) { return nil }
        let numbers = (day ?? month)?.split(separator: "-").compactMap { Int($0) }
        let first = numbers.map { DateComponents(year: $0[0], month: $0[1], day: month == nil ? $0[2] : 1) }
            ?? calendar.dateComponents([.year, .month, .day], from: now)
        // Not rolled over: 2026-02-30 is a typo, not 2 March. The end is the next one's start of day: where a DST change
        // skips midnight, a day starts at 01:00 and a day after that start would take an hour of the next.
        guard let start = calendar.date(from: first), calendar.dateComponents([.year, .month, .day], from: start) == first,
              let next = calendar.date(byAdding: month == nil ? .day : .month, value: 1, to: start)
        else { return nil }
        let end = calendar.startOfDay(for: next)
        let name = String(format: "%04d-%02d", first.year ?? 0, first.month ?? 0)
            + (month == nil ? String(format: "-%02d", first.day ?? 0) : "")
        return (start, end, name)
    }
}

extension SQLiteEventStore.RatingGroup: ExpressibleByArgument {}
