import DeviceGateway
import Foundation

/// The CLI's exit statuses (docs/cli.md): what a script or a systemd timer can act on.
enum CLIExit {
    /// All well.
    static let ok: Int32 = 0
    /// A check or a device failed, or the input held garbage (`decode`).
    static let failed: Int32 = 1
    /// Wrong usage or a broken configuration.
    static let usage: Int32 = 2
    /// The daemon is needed and does not answer.
    static let daemonUnreachable: Int32 = 3
    /// A port or file the command needs cannot be opened (permissions, busy, missing).
    static let portUnavailable: Int32 = 4
}

/// How the CLI writes tables and times for a technician.
enum Output {
    /// `1 device`, `2 devices`; `plural` where an s does not make it.
    static func counted(_ count: Int, _ noun: String, plural: String? = nil) -> String {
        "\(count) " + (count == 1 ? noun : plural ?? noun + "s")
    }

    /// Columns padded to their widest cell (Chinese characters count double on a terminal).
    static func table(_ rows: [[String]]) -> [String] { table(rows) { _, _, _ in nil } }

    /// Whether standard output is a terminal that takes colour: a tty, `NO_COLOR` unset, `TERM` not `dumb`.
    static let colour: Bool = {
        let environment = ProcessInfo.processInfo.environment
        if let noColour = environment["NO_COLOR"], !noColour.isEmpty { return false }
        if environment["TERM"] == "dumb" { return false }
        return isatty(STDOUT_FILENO) == 1
    }()

    /// Whether standard output is a terminal (for refreshing in place).
    static let isTerminal: Bool = isatty(STDOUT_FILENO) == 1

    /// A colour for a cell or a word; nothing when piped or `NO_COLOR` is set.
    enum Colour: String {
        case red = "31", green = "32", yellow = "33", dim = "2", bold = "1"
    }

    /// `text` in `colour` on a terminal, as is otherwise.
    static func paint(_ text: String, _ colour: Colour) -> String {
        self.colour && !text.isEmpty ? "\u{1B}[\(colour.rawValue)m\(text)\u{1B}[0m" : text
    }

    /// A table whose cells may be painted: widths from the plain text, a cell padded after its colour ends. A row ends
    /// with its last non-empty cell, unpadded (from a docs trial: rows whose last cells were empty ended in spaces).
    static func table(_ rows: [[String]], paint: (_ row: Int, _ column: Int, _ cell: String) -> Colour?) -> [String] {
        func width(_ text: String) -> Int { text.unicodeScalars.reduce(0) { $0 + ($1.value >= 0x1100 ? 2 : 1) } }
        let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { width($0[column]) }.max() ?? 0 }
        return rows.enumerated().map { index, row in
            let used = (row.lastIndex { !$0.isEmpty } ?? 0) + 1
            return row.prefix(used).enumerated().map { column, cell in
                let padding = column == used - 1 ? "" : String(repeating: " ", count: widths[column] - width(cell))
                return (paint(index, column, cell).map { self.paint(cell, $0) } ?? cell) + padding
            }.joined(separator: "  ")
        }
    }

    /// Prints `value` as one JSON document (pretty) or one line (`compact`).
    static func printJSON(_ value: some Encodable, compact: Bool = false) throws {
        let encoder = jsonEncoder
        if compact { encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes] }
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// Writes at once (stdout is buffered when piped; a follower must see each line as it comes).
    static func flush() { fflush(nil) }

    /// How long ago, in the largest unit that keeps it short.
    static func age(_ date: Date, now: Date) -> String {
        let seconds = Int(now.timeIntervalSince(date))
        switch seconds {
        case ..<120: return "\(max(0, seconds)) s ago"
        case ..<7200: return "\(seconds / 60) min ago"
        case ..<172_800: return "\(seconds / 3600) h ago"
        default: return "\(seconds / 86400) days ago"
        }
    }

    /// A JSON encoder for reports: sorted keys, times as the events write them.
    static var jsonEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(EventTime.format(date))
        }
        return encoder
    }
}

/// A time in the hall's time zone, `-` for none.
func hallTime(_ date: Date?, timeZone: TimeZone) -> String {
    date.map { HallTime.text($0, timeZone: timeZone, toTheSecond: true) } ?? "-"
}
