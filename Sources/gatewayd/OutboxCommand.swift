import ArgumentParser
import DeviceGateway
import Foundation

struct OutboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox", abstract: "Look into the outbox: what each sink has not received yet.",
        subcommands: [Status.self])

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Backlog and oldest unforwarded event per sink, last success, last error, what was put aside.",
            discussion: "Reads the outbox read-only; works while the daemon runs. Exit status 0, or 1 if the outbox "
                + "cannot be read.")

        @Option(help: "The hall's configuration: its state directory and sinks.")
        var config: String?

        @Option(help: "The outbox file (default: <state-directory>/outbox.sqlite, or var/outbox.sqlite).")
        var outbox: String?

        @Flag(help: "One JSON document instead of tables.")
        var json = false

        func run() async throws {
            var path = outbox ?? "var/outbox.sqlite"
            var sinks: [String]?
            var budget: Int64?
            var timeZone = TimeZone(identifier: "Asia/Shanghai")!
            if let config {
                do {
                    let (loaded, _) = try ConfigLoader.load(path: config)
                    if outbox == nil { path = (loaded.stateDirectory as NSString).appendingPathComponent("outbox.sqlite") }
                    sinks = loaded.sinks.map(\.name)
                    budget = loaded.outbox.maximumBytes
                    timeZone = loaded.hall.timeZone
                } catch {
                    printError(error.description)
                    throw ExitCode(2)
                }
            }
            let report: OutboxReport
            do {
                let reader = try Outbox.openForReading(path: path)
                report = OutboxReport(
                    outbox: path, events: try await reader.count(), usedBytes: try await reader.usedBytes(),
                    maximumBytes: budget, dropped: try await reader.dropTotal(),
                    sinks: try await reader.sinkReports(sinks), putAside: try await reader.putAsideEvents())
            } catch {
                printError("\(error)")
                throw ExitCode(1)
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                encoder.dateEncodingStrategy = .custom { date, encoder in
                    var container = encoder.singleValueContainer()
                    try container.encode(EventTime.format(date))
                }
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(report.text(timeZone: timeZone, now: Date()))
            }
        }
    }
}

/// What `gatewayd outbox status` shows.
struct OutboxReport: Encodable {
    var outbox: String
    var events: Int
    var usedBytes: Int64
    var maximumBytes: Int64?
    var dropped: Int
    var sinks: [SinkReport]
    var putAside: [PutAsideEvent]

    func text(timeZone: TimeZone, now: Date) -> String {
        func megabytes(_ bytes: Int64) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }
        func time(_ date: Date?) -> String {
            guard let date else { return "-" }
            let style = Date.VerbatimFormatStyle(
                format: "\(year: .defaultDigits)-\(month: .twoDigits)-\(day: .twoDigits) \(hour: .twoDigits(clock: .twentyFourHour, hourCycle: .zeroBased)):\(minute: .twoDigits):\(second: .twoDigits)",
                timeZone: timeZone, calendar: Calendar(identifier: .gregorian))
            return date.formatted(style)
        }
        func age(_ date: Date?) -> String {
            guard let date else { return "" }
            let seconds = Int(now.timeIntervalSince(date))
            switch seconds {
            case ..<120: return " (\(max(0, seconds)) s ago)"
            case ..<7200: return " (\(seconds / 60) min ago)"
            case ..<172_800: return " (\(seconds / 3600) h ago)"
            default: return " (\(seconds / 86400) days ago)"
            }
        }
        var lines = [
            "outbox \(outbox): \(events) events held, \(megabytes(usedBytes))"
                + (maximumBytes.map { " of a \(megabytes($0)) budget" } ?? "")
                + ", \(dropped) dropped undelivered at the budget"
        ]
        let header = ["sink", "backlog", "oldest unforwarded", "sent", "failed", "put aside", "last success", "last error"]
        let rows = sinks.map { sink in
            [
                sink.sink, "\(sink.backlog)", time(sink.oldestUnforwardedAt) + age(sink.oldestUnforwardedAt), "\(sink.sent)",
                "\(sink.failed)", "\(sink.putAside)", time(sink.lastSuccessAt),
                sink.lastError.map { "\(time(sink.lastErrorAt)) \($0)" } ?? "-",
            ]
        }
        lines += table([header] + rows)
        if !putAside.isEmpty {
            lines.append("")
            lines.append("put aside (refused by the sink for good, kept here):")
            lines += table([["sink", "when", "source", "id", "reason"]] + putAside.map {
                [$0.sink, time($0.putAsideAt), $0.source, $0.id, $0.reason]
            })
        }
        return lines.joined(separator: "\n")
    }

    /// Columns padded to their widest cell (Chinese characters count double on a terminal).
    private func table(_ rows: [[String]]) -> [String] {
        func width(_ text: String) -> Int { text.unicodeScalars.reduce(0) { $0 + ($1.value >= 0x1100 ? 2 : 1) } }
        let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { width($0[column]) }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - width(cell))
            }.joined(separator: "  ")
        }
    }
}
