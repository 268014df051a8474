public import Foundation
import GRDB
public import Logging
import Synchronization

/// The embedded default store: the hall's events in a local SQLite file, one row per (source, id).
public final class SQLiteEventStore: EventSink {
    public let name: String
    /// The database file.
    public let path: String
    /// Internal for the tests of its connections' settings.
    let database: any DatabaseWriter
    /// How long an event is kept, by its time; nil: for ever.
    let retention: Duration?
    /// When events past the retention were last looked for, and whether a clock not synchronised was said.
    private let pruning = Mutex<(at: ContinuousClock.Instant?, waitSaid: Bool)>((nil, false))
    /// Whether the wall clock can be trusted to delete by: one set a year ahead would delete everything.
    private let clockIsRight: @Sendable () -> Bool
    private let logger: Logger

    /// Opens the store for writing, creating it if needed; with a `retention`, events older are deleted once an hour,
    /// while `clockIsRight`.
    public init(name: String, path: String, retention: Duration? = nil,
                clockIsRight: @escaping @Sendable () -> Bool = { SystemHallClock().isSynchronised },
                logger: Logger = Logger(label: "hall-gateway")) throws {
        try WritableDatabase.check(path, what: "the local event store", folderName: "the folder")
        self.name = name
        self.path = path
        self.retention = retention
        self.clockIsRight = clockIsRight
        self.logger = logger
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in try WritableDatabase.prepare(db) }
        let pool = try DatabasePool(path: path, configuration: configuration)
        database = pool
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE event (
                        source TEXT NOT NULL,
                        id TEXT NOT NULL,
                        type TEXT NOT NULL,
                        time TEXT NOT NULL,
                        subject TEXT,
                        json TEXT NOT NULL,
                        PRIMARY KEY (source, id)
                    );
                    CREATE INDEX event_time ON event (time);
                    """)
        }
        try migrator.migrate(pool)
    }

    private init(name: String, path: String, database: any DatabaseWriter) {
        self.name = name
        self.path = path
        self.database = database
        retention = nil
        clockIsRight = { false }
        logger = Logger(label: "hall-gateway")
    }

    /// Opens an existing store read-only: nothing is created, migrated or written, whatever file it is.
    public static func openForReading(path: String) throws -> SQLiteEventStore {
        let queue: DatabaseQueue
        let columns: Set<String>
        do {
            queue = try readOnlyDatabase(
                at: path, missing: "no event store at \(path): has the gateway run here? (--store PATH)")
            columns = try queue.read { db in
                try db.tableExists("event") ? Set(try db.columns(in: "event").map(\.name)) : []
            }
        } catch let error as DatabaseError {
            // SQLite's words without the statement it ran: `file is not a database` for a file given by mistake.
            throw GatewayError(.storeMissing, "cannot read the event store \(path): \(Outbox.describe(error))")
        }
        guard columns.isSuperset(of: ["source", "id", "type", "time", "json"]) else {
            throw GatewayError(.storeMissing, "\(path) is not a hall gateway event store (it has no event table of ours)")
        }
        return SQLiteEventStore(name: "reader", path: path, database: queue)
    }

    public func deliver(_ batch: [OutboundEvent]) async throws {
        // Before the batch: a full disk gets the room back first.
        await pruneWhenDue()
        try await database.write { db in
            let statement = try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO event (source, id, type, time, subject, json) VALUES (?, ?, ?, ?, ?, ?)")
            for event in batch {
                try statement.execute(arguments: [event.source, event.id, event.type, event.time, event.subject, event.json])
            }
        }
    }

    /// Once an hour, with a clock that is right: the events past the retention go, said in the log; a failure is said
    /// and does not fail the delivery.
    private func pruneWhenDue() async {
        let due = pruning.withLock { pruning in
            guard retention != nil, pruning.at.map({ ContinuousClock.now - $0 >= .seconds(3600) }) ?? true else { return false }
            pruning.at = .now
            return true
        }
        guard due else { return }
        guard clockIsRight() else {
            let say = pruning.withLock { pruning in
                defer { pruning.waitSaid = true }
                return !pruning.waitSaid
            }
            if say { logger.notice("sink \(name): its retention waits for a synchronised clock (NTP): nothing deleted until then") }
            return
        }
        pruning.withLock { $0.waitSaid = false }
        do {
            let deleted = try await prune()
            if deleted > 0 { logger.notice("sink \(name): \(deleted) events past its retention deleted from \(path)") }
        } catch {
            logger.warning("sink \(name): events past its retention not deleted: \(error)")
        }
    }

    /// Deletes the events older than the retention, a thousand to a transaction (the first pass after a long run
    /// without one may be months). Returns how many.
    @discardableResult
    func prune(now: Date = Date()) async throws -> Int {
        guard let retention else { return 0 }
        // Event times are ISO 8601 in UTC with milliseconds: they sort as text.
        let cutoff = EventTime.format(now.addingTimeInterval(-Double(retention.components.seconds)))
        var pruned = 0
        while true {
            let deleted = try await database.write { db in
                try db.execute(sql: """
                    DELETE FROM event WHERE rowid IN (SELECT rowid FROM event WHERE time < ? ORDER BY time LIMIT 1000)
                    """, arguments: [cutoff])
                return db.changesCount
            }
            pruned += deleted
            // A stop is not held by a first pass of months.
            if deleted < 1000 || Task.isCancelled { return pruned }
        }
    }

    /// The newest `limit` events at or after `since` whose type matches, oldest first.
    ///
    /// `type` is an exact type, or a prefix ending in `*` (`hall.device.*`).
    /// `types`: any of them (an exact type, or a prefix ending in `*`); empty: every type.
    public func events(since: Date? = nil, types: [String] = [], limit: Int = 100) async throws -> [CloudEvent] {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let since {
            conditions.append("time >= ?")
            arguments += [EventTime.format(since)]
        }
        if !types.isEmpty {
            var anyType: [String] = []
            for type in types {
                if type.hasSuffix("*") {
                    anyType.append("substr(type, 1, ?) = ?")
                    let prefix = String(type.dropLast())
                    arguments += [prefix.utf8.count, prefix]
                } else {
                    anyType.append("type = ?")
                    arguments += [type]
                }
            }
            conditions.append("(" + anyType.joined(separator: " OR ") + ")")
        }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        arguments += [limit]
        let sql = "SELECT json FROM (SELECT json, time, rowid FROM event \(filter) ORDER BY time DESC, rowid DESC LIMIT ?) "
            + "ORDER BY time, rowid"
        let finalArguments = arguments
        return try await database.read { db in
            try String.fetchAll(db, sql: sql, arguments: finalArguments).map {
                try CloudEvent.decode(json: Data($0.utf8))
            }
        }
    }

    /// What the ratings are counted by.
    public enum RatingGroup: String, Sendable, CaseIterable {
        case window, staff, pad
    }

    /// The ratings given from `start` up to `end`, per window, staff member shown or pad (nil: a rating whose pad
    /// showed nobody), each with how many of each level (5 非常满意 … 1 非常不满意).
    public func ratings(from start: Date, to end: Date, by group: RatingGroup) async throws -> [(key: String?, levels: [Int: Int])] {
        let key = switch group {
        case .window: "json_extract(json, '$.data.window')"
        case .staff: "json_extract(json, '$.data.staffId')"
        case .pad: "source"
        }
        let sql = """
            SELECT \(key), CAST(json_extract(json, '$.data.level') AS INTEGER), count(*) FROM event
            WHERE type = ? AND time >= ? AND time < ? GROUP BY 1, 2
            """
        let arguments: StatementArguments = [HallEventType.ratingSubmitted, EventTime.format(start), EventTime.format(end)]
        let rows = try await database.read { db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { ($0[0] as String?, $0[1] as Int? ?? 0, $0[2] as Int) }
        }
        var tallies: [String?: [Int: Int]] = [:]
        for (key, level, count) in rows {
            // A pad by its device id, the end of its source (/halls/<hall>/devices/<device>).
            let key = group == .pad ? key.map(EventSource.deviceId) : key
            tallies[key, default: [:]][level, default: 0] += count
        }
        return tallies.map { (key: $0.key, levels: $0.value) }
    }

    /// How many events the store holds.
    public func count() async throws -> Int {
        try await database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM event") ?? 0 }
    }
}
