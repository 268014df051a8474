import ArgumentParser
import DeviceGateway
import Foundation

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show events from the local event store.",
        discussion: "Newest --limit events matching the filters, oldest first. --json prints one CloudEvent per line.")

    @Option(help: "Only events at or after this time: RFC 3339 (2026-11-24T08:00:00+08:00) or an age (30s, 15m, 2h, 1d).")
    var since: String?

    @Option(help: "Only this event type, or a prefix ending in * (hall.device.*).")
    var type: String?

    @Option(help: "At most this many events (the newest).")
    var limit: Int = 100

    @Flag(help: "One CloudEvent (JSON format) per line.")
    var json = false

    @Option(help: "The event store (default: the config's sqlite sink, or var/events.sqlite).")
    var store: String?

    @Option(help: "The hall's configuration, for the store path and the time zone.")
    var config: String?

    func validate() throws {
        guard limit > 0 else { throw ValidationError("--limit must be at least 1") }
        if let since, Self.parseSince(since, now: Date()) == nil {
            throw ValidationError("--since '\(since)': expected RFC 3339 time or an age like 15m, 2h, 1d")
        }
    }

    func run() async throws {
        var storePath = store ?? "var/events.sqlite"
        var timeZone = TimeZone(identifier: "Asia/Shanghai")!
        if let config {
            do {
                let (loaded, _) = try ConfigLoader.load(path: config)
                timeZone = loaded.hall.timeZone
                if store == nil, let path = loaded.sinks.lazy.compactMap(\.sqlitePath).first { storePath = path }
            } catch {
                printError(error.description)
                throw ExitCode(2)
            }
        }
        let reader: SQLiteEventStore
        do {
            reader = try SQLiteEventStore.openForReading(path: storePath)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        let events = try await reader.events(
            since: since.flatMap { Self.parseSince($0, now: Date()) }, type: type, limit: limit)
        for event in events {
            print(json ? try event.jsonLine() : EventSummary.line(event, timeZone: timeZone))
        }
    }

    static func parseSince(_ text: String, now: Date) -> Date? {
        if let date = EventTime.parse(text) { return date }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let unit = text.last.flatMap({ units[$0] }), let amount = Double(text.dropLast()), amount >= 0 else {
            return nil
        }
        return now.addingTimeInterval(-amount * unit)
    }
}
