import Foundation
import DeviceGateway

/// How the CLI writes tables and times for a technician.
enum Output {
    /// Columns padded to their widest cell (Chinese characters count double on a terminal).
    static func table(_ rows: [[String]]) -> [String] {
        func width(_ text: String) -> Int { text.unicodeScalars.reduce(0) { $0 + ($1.value >= 0x1100 ? 2 : 1) } }
        let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { width($0[column]) }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - width(cell))
            }.joined(separator: "  ")
        }
    }

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
    guard let date else { return "-" }
    let style = Date.VerbatimFormatStyle(
        format: "\(year: .defaultDigits)-\(month: .twoDigits)-\(day: .twoDigits) \(hour: .twoDigits(clock: .twentyFourHour, hourCycle: .zeroBased)):\(minute: .twoDigits):\(second: .twoDigits)",
        timeZone: timeZone, calendar: Calendar(identifier: .gregorian))
    return date.formatted(style)
}
