import ArgumentParser
import DeviceGateway
import Foundation

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show events from the local event store, or follow the running gateway's live stream.",
        discussion: """
            Newest --limit events matching the filters, oldest first. --json prints one CloudEvent per line. \
            --follow asks the running daemon (its local API) for every event it commits from now on (from \
            --after POSITION instead, to replay), one line each, until interrupted; exit 3 when the daemon does not \
            answer.
            """)

    // Unconditional: `--since -5m` is an age to a technician, not an unknown option.
    @Option(parsing: .unconditional,
            help: "Only events at or after this time: RFC 3339 (2026-11-24T08:00:00+08:00) or an age (30s, 15m, 2h, 1d); with --follow, those first, then the new ones.")
    var since: String?

    // Repeated or a comma list: from a duty officer's trial, a second --type replaced the first, a list matched nothing.
    @Option(help: "Only events of this type, or a prefix ending in * (hall.device.*); repeat it or list them with commas for any of several.")
    var type: [String] = []

    /// The `--type` filters, each list split.
    var types: [String] {
        type.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    @Option(help: "At most this many events (the newest).")
    var limit: Int = 100

    @Flag(help: "One CloudEvent (JSON format) per line.")
    var json = false

    @Option(help: "The event store (default: the config's sqlite sink, or var/events.sqlite).")
    var store: String?

    @OptionGroup var daemon: DaemonOptions

    @Flag(name: [.customShort("f"), .long], help: "Follow the running gateway: each event as it is committed.")
    var follow = false

    @Option(help: "With --follow: start after this outbox position instead of now (0: from the oldest kept).")
    var after: Int64?

    @Option(help: "With --follow: seconds between polls of the daemon.")
    var interval: Double = 0.5

    func validate() throws {
        guard limit > 0 else { throw ValidationError("--limit must be at least 1") }
        if let since, Self.parseSince(since, now: Date()) == nil {
            throw ValidationError("--since '\(since)': expected RFC 3339 time or an age like 15m, 2h, 1d")
        }
        // From an installer's trial: `--type hall.ratings.*` printed nothing, exit 0, read as "no ratings came".
        for filter in types where !HallEventType.all.contains(where: { Self.matches($0, filter) }) {
            throw ValidationError("""
                --type '\(filter)' matches no event type (a family ends in *: hall.device.*); the types: \
                \(HallEventType.all.joined(separator: ", "))
                """)
        }
    }

    func run() async throws {
        let hall = try daemon.load()
        let timeZone = hall.timeZone
        if follow {
            try await followDaemon(hall)
            return
        }
        let reader = try hall.eventStore(given: store, command: "gatewayd events --follow asks the running gateway")
        let events = try await reader.events(
            since: since.flatMap { Self.parseSince($0, now: Date()) }, types: types, limit: limit)
        if !json, !events.isEmpty { sayZone(hall) }
        for event in events {
            print(json ? try event.jsonLine() : EventSummary.line(event, timeZone: timeZone))
        }
    }

    /// The lines' times carry no zone: said once, on standard error so that a pipe gets the lines alone. Without a
    /// configuration it is a guess, said as one: a store copied from another hall would read in the wrong zone.
    private func sayZone(_ hall: HallContext) {
        let timeZone = hall.timeZone
        let zone = "\(timeZone.identifier) (UTC\(GatewayLogHandler.stamp(Date(), timeZone: timeZone).suffix(6)))"
        printError(hall.config == nil
            ? "no configuration: times are in \(zone), the default hall zone (--config for the hall's own)"
            : "times are hall time, \(zone)")
    }

    /// Polls `/v1/events?after=` and prints what is new, filtered as asked, at once (also when piped).
    private func followDaemon(_ hall: HallContext) async throws {
        let client = hall.client()
        let timeZone = hall.timeZone
        let since = since.flatMap { Self.parseSince($0, now: Date()) }
        var position: Int64
        // With --since, what the outbox holds up to now comes first, filtered by time as without --follow; what comes
        // later is shown whatever its time (one held in memory while the disk was full, or stamped before a clock step).
        var backlogEnd: Int64 = 0
        do throws(DaemonError) {
            if let after {
                position = after
            } else if since != nil {
                backlogEnd = try await Self.endPosition(client)
                position = 0
            } else {
                position = try await Self.endPosition(client)
            }
        } catch {
            printError(error.description)
            throw error.exitCode
        }
        if !json {
            printError("following the gateway at \(client.baseURL) from event position \(position); Ctrl-C ends")
            sayZone(hall)
        }
        var lostSince: Date?
        while true {
            let page: EventPage
            do {
                page = try await client.get("/v1/events?after=\(position)&limit=1000", as: EventPage.self)
                if lostSince != nil {
                    printError("the gateway answers again")
                    lostSince = nil
                }
            } catch {
                // A restart of the daemon is not the end of following it; a minute without it is.
                guard error.kind == .unreachable else {
                    printError(error.description)
                    throw error.exitCode
                }
                let first = lostSince ?? Date()
                if lostSince == nil { printError("\(error.description); waiting for it") }
                lostSince = first
                if Date().timeIntervalSince(first) > 60 { throw ExitCode(CLIExit.daemonUnreachable) }
                try await Task.sleep(for: .seconds(max(interval, 1)))
                continue
            }
            for entry in page.events {
                let event = entry.event
                if !types.isEmpty, !types.contains(where: { Self.matches(event.type, $0) }) { continue }
                if let since, entry.position <= backlogEnd, let time = EventTime.parse(event.time), time < since { continue }
                print(json ? try event.jsonLine() : EventSummary.line(event, timeZone: timeZone))
            }
            Output.flush()
            position = max(position, page.next)
            if page.events.count < 1000 { try await Task.sleep(for: .seconds(interval)) }
        }
    }

    /// The newest position the daemon holds: a binary search on `after` (an empty page means at or past the end).
    static func endPosition(_ client: DaemonClient) async throws(DaemonError) -> Int64 {
        // Asked from the start first: a refusal then names no position of the search (from a trial: after=549755813888).
        guard let first = try await client.get("/v1/events?after=0&limit=1", as: EventPositions.self).events.first else {
            return 0
        }
        var low: Int64 = first.position
        var high: Int64 = 1 << 40
        while low < high {
            let middle = low + (high - low) / 2
            let page = try await client.get("/v1/events?after=\(middle)&limit=1", as: EventPositions.self)
            if page.events.isEmpty { high = middle } else { low = middle + 1 }
        }
        return low
    }

    /// `hall.device.*` matches by prefix, anything else exactly.
    static func matches(_ type: String, _ filter: String) -> Bool {
        filter.hasSuffix("*") ? type.hasPrefix(filter.dropLast()) : type == filter
    }

    static func parseSince(_ text: String, now: Date) -> Date? {
        if let date = EventTime.parse(text) { return date }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        // "-5m" is read as "5m": an age always looks back.
        let age = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        guard let unit = age.last.flatMap({ units[$0] }), let amount = Double(age.dropLast()), amount >= 0 else {
            return nil
        }
        return now.addingTimeInterval(-amount * unit)
    }
}

/// A page of `GET /v1/events`.
struct EventPage: Decodable {
    struct Entry: Decodable {
        var position: Int64
        var event: CloudEvent
    }
    var events: [Entry]
    var next: Int64
}

/// A page of `GET /v1/events` read for its positions only.
struct EventPositions: Decodable {
    struct Entry: Decodable { var position: Int64 }
    var events: [Entry]
}
