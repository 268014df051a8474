import DeviceGateway
import Foundation

/// A capture written by `gatewayd trace --save`, read back by `decode --file` and the mocks: JSON Lines, a header
/// line `{"capture":"hall-gateway-trace","version":1,"bus":…}` then one record per line
/// `{"time":"…","direction":"out"|"in","stream":"modbus-rtu-requests","hex":"01 03 …"}`.
struct TraceCapture {
    /// One write or read on the line.
    struct Record: Codable {
        var time: Date
        /// `out`: the gateway (or the technician's laptop) wrote; `in`: it read.
        var direction: String
        var stream: WireInspector.Stream
        var hex: String

        var bytes: [UInt8] { WireInspector.bytes(fromHex: hex) ?? [] }
    }

    struct Header: Codable {
        var capture: String
        var version: Int
        var bus: String
        var line: String?
        /// The hall's time zone (IANA name): `decode --file` shows the times as `trace` showed them.
        var timeZone: String?
        /// On an FF 68 bus, who sits at each address (decimal): host and device frames can be the same bytes.
        var ff68Roles: [String: WireInspector.FF68Role]?
    }

    static let marker = "hall-gateway-trace"

    var bus: String
    /// The hall's, when the capture names it; else this machine's (captures older than the field).
    var timeZone: TimeZone
    var ff68Roles: [UInt8: WireInspector.FF68Role]
    var records: [Record]

    /// The capture in `path`; throws when it is not one (then `decode` reads the file as raw bytes).
    static func read(path: String) throws -> TraceCapture {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var lines = text.split(separator: "\n").makeIterator()
        guard let first = lines.next(),
            let header = try? decoder.decode(Header.self, from: Data(first.utf8)), header.capture == marker
        else { throw CocoaError(.fileReadCorruptFile) }
        var records: [Record] = []
        while let line = lines.next() {
            records.append(try decoder.decode(Record.self, from: Data(line.utf8)))
        }
        return TraceCapture(
            bus: header.bus, timeZone: header.timeZone.flatMap(TimeZone.init(identifier:)) ?? .current,
            ff68Roles: Dictionary(
                (header.ff68Roles ?? [:]).compactMap { key, role in UInt8(key).map { ($0, role) } },
                uniquingKeysWith: { first, _ in first }),
            records: records)
    }

    /// The header line for a new capture.
    static func headerLine(
        bus: String, line: String?, timeZone: TimeZone, ff68Roles: [UInt8: WireInspector.FF68Role] = [:]
    ) -> String {
        let header = Header(
            capture: marker, version: 1, bus: bus, line: line, timeZone: timeZone.identifier,
            ff68Roles: ff68Roles.isEmpty
                ? nil : Dictionary(uniqueKeysWithValues: ff68Roles.map { (String($0.key), $0.value) }))
        return String(decoding: (try? encoder.encode(header)) ?? Data(), as: UTF8.self)
    }

    /// One record as its line.
    static func line(_ record: Record) -> String {
        String(decoding: (try? encoder.encode(record)) ?? Data(), as: UTF8.self)
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(timeText(date, fractionDigits: 6, zone: true))
        }
        return encoder
    }

    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            guard let date = formatter.date(from: text) ?? EventTime.parse(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: text))
            }
            return date
        }
        return decoder
    }

    /// `12:03:04.123456` (local clock), or the full RFC 3339 stamp with `zone`; the fraction cut, never rounded up,
    /// so an answer is never stamped before the request it followed.
    static func timeText(
        _ date: Date, fractionDigits: Int = 3, zone: Bool = false, timeZone: TimeZone = .current
    ) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = timeZone
        formatter.formatOptions = zone ? [.withInternetDateTime] : [.withTime, .withColonSeparatorInTime]
        // ISO8601DateFormatter rounds to milliseconds: the whole seconds come from it, the fraction from the date.
        // To the nearest microsecond, as the API wrote it; the milliseconds shown are cut, never rounded up.
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        let seconds = micros.quotientAndRemainder(dividingBy: 1_000_000)
        let (whole, fraction) = seconds.remainder < 0 ? (seconds.quotient - 1, seconds.remainder + 1_000_000) : seconds
        var text = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(whole)))
        let digits = fractionDigits == 6 ? String(format: ".%06lld", fraction) : String(format: ".%03lld", fraction / 1000)
        // After the seconds: HH:MM:SS, or the date and time before the zone.
        let secondsEnd = text.index(text.startIndex, offsetBy: zone ? 19 : 8, limitedBy: text.endIndex) ?? text.endIndex
        text.insert(contentsOf: digits, at: secondsEnd)
        return text
    }
}
