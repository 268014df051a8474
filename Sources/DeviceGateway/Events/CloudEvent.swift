public import Foundation

/// A CloudEvents 1.0 event in the JSON event format: the one shared format every event leaves in.
///
/// `source` + `id` is unique: sinks are idempotent on it. `sequence` is the CloudEvents sequence
/// extension, a per-source counter assigned when the outbox commits the event, zero-padded so that
/// it orders as a string too; a gap in it tells the central store an event is missing.
public struct CloudEvent: Sendable, Equatable, Codable {
    /// The CloudEvents version this envelope follows.
    public static let specVersion = "1.0"

    public var specversion: String
    public var id: String
    public var source: String
    public var type: String
    public var time: String
    public var subject: String?
    public var datacontenttype: String
    public var sequence: String?
    public var data: EventData

    /// Creates an event; `time` is formatted as RFC 3339 UTC with milliseconds.
    public init(id: String, source: String, type: String, time: Date, subject: String?, data: EventData) {
        self.specversion = Self.specVersion
        self.id = id
        self.source = source
        self.type = type
        self.time = EventTime.format(time)
        self.subject = subject
        self.datacontenttype = "application/json"
        self.sequence = nil
        self.data = data
    }

    enum CodingKeys: String, CodingKey {
        case specversion, id, source, type, time, subject, datacontenttype, sequence, data
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        specversion = try container.decode(String.self, forKey: .specversion)
        id = try container.decode(String.self, forKey: .id)
        source = try container.decode(String.self, forKey: .source)
        type = try container.decode(String.self, forKey: .type)
        time = try container.decode(String.self, forKey: .time)
        subject = try container.decodeIfPresent(String.self, forKey: .subject)
        datacontenttype = try container.decode(String.self, forKey: .datacontenttype)
        sequence = try container.decodeIfPresent(String.self, forKey: .sequence)
        data = try EventData(type: type, from: container)
    }

    /// The sequence extension's string for a per-source counter.
    public static func sequenceString(_ value: Int64) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, 12 - digits.count)) + digits
    }

    /// One line of JSON (the CloudEvents JSON format), keys sorted so equal events encode equally.
    public func jsonLine() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// Decodes one event from its JSON form.
    public static func decode(json: some DataProtocol) throws -> CloudEvent {
        try JSONDecoder().decode(CloudEvent.self, from: Data(json))
    }
}

/// RFC 3339 timestamps as events carry them: UTC, milliseconds, `Z`. Fixed width, so they sort as strings.
public enum EventTime {
    /// Formats a date. Half a microsecond on: a time parsed from its milliseconds is a hair under them in binary, and
    /// is written as the same milliseconds again, not one less (from a trial: each restart took one off a time kept).
    public static func format(_ date: Date) -> String {
        date.addingTimeInterval(0.000_000_5).formatted(
            Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(secondsFromGMT: 0)!)
        )
    }

    /// Parses an RFC 3339 timestamp with or without fractional seconds.
    public static func parse(_ text: String) -> Date? {
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return date }
        return try? Date.ISO8601FormatStyle().parse(text)
    }
}

/// How events name where they come from.
public enum EventSource {
    /// The `source` of a device's events: `/halls/<hall>/devices/<device>`.
    public static func device(hall: String, device: String) -> String { "/halls/\(hall)/devices/\(device)" }

    /// The device a device's `source` names (its last part); the gateway's own events give `gateway`.
    public static func deviceId(of source: String) -> String {
        source.split(separator: "/").last.map(String.init) ?? source
    }

    /// The `source` of the gateway's own events: `/halls/<hall>/gateway`.
    public static func gateway(hall: String) -> String { "/halls/\(hall)/gateway" }

    /// The `subject` naming a service window.
    public static func windowSubject(_ window: String) -> String { "window/\(window)" }
}
