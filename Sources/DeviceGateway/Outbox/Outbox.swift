import Foundation
import GRDB
public import Logging

/// Where a device's events were consumed up to: the pad's power-up and its rating counter.
public struct DeviceCursor: Sendable, Equatable {
    /// The device id.
    public var device: String
    /// The value the device drew at its last power-up.
    public var bootId: UInt32
    /// Ratings consumed since that power-up, counted without wrapping.
    public var consumed: Int64

    /// Creates a cursor.
    public init(device: String, bootId: UInt32, consumed: Int64) {
        self.device = device
        self.bootId = bootId
        self.consumed = consumed
    }
}

/// An event as the outbox holds it: its position orders delivery.
public struct OutboxEntry: Sendable, Equatable {
    public var position: Int64
    public var event: CloudEvent
}

/// The durable outbox: every accepted event is committed here before anything else happens to it.
///
/// SQLite in WAL mode with `synchronous=FULL` (NORMAL may lose a committed transaction on power loss).
/// Events and device cursors commit in one transaction, so a crash either keeps both or neither, and
/// a re-read after the crash produces the same ids, which the unique (source, id) key ignores.
public final class Outbox: Sendable {
    private let pool: DatabasePool
    /// The database file.
    public let path: String

    /// Opens (or creates) the outbox. A damaged file is moved aside, reported, and a fresh one opened.
    public static func open(path: String, logger: Logger) throws -> Outbox {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        do {
            return try Outbox(path: path)
        } catch {
            let aside = "\(path).damaged-\(Int(Date().timeIntervalSince1970))"
            for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
                try FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
            }
            logger.critical(
                "outbox \(path) is damaged (\(error)); moved it to \(aside) and started a fresh one",
                metadata: ["outbox.path": "\(path)"])
            return try Outbox(path: path)
        }
    }

    private init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        self.path = path
        let check = try pool.read { db in try String.fetchOne(db, sql: "PRAGMA quick_check") }
        guard check == "ok" else { throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: check) }
        try Self.migrator.migrate(pool)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE event (
                        position INTEGER PRIMARY KEY AUTOINCREMENT,
                        source TEXT NOT NULL,
                        id TEXT NOT NULL,
                        type TEXT NOT NULL,
                        json TEXT NOT NULL,
                        UNIQUE (source, id)
                    );
                    CREATE TABLE source_sequence (source TEXT PRIMARY KEY, last INTEGER NOT NULL);
                    CREATE TABLE device_cursor (device TEXT PRIMARY KEY, boot_id INTEGER NOT NULL,
                                                consumed INTEGER NOT NULL);
                    CREATE TABLE sink_cursor (sink TEXT PRIMARY KEY, position INTEGER NOT NULL);
                    """)
        }
        return migrator
    }

    /// Commits events and the cursors that consume them in one transaction.
    ///
    /// Returns the events that were new, each with its `sequence` assigned; known ids are skipped.
    @discardableResult
    public func commit(_ events: [CloudEvent], cursors: [DeviceCursor] = []) async throws -> [CloudEvent] {
        try await pool.write { db in
            var inserted: [CloudEvent] = []
            for var event in events {
                let known = try Bool.fetchOne(
                    db, sql: "SELECT 1 FROM event WHERE source = ? AND id = ?", arguments: [event.source, event.id])
                if known == true { continue }
                let last = try Int64.fetchOne(
                    db, sql: "SELECT last FROM source_sequence WHERE source = ?", arguments: [event.source]) ?? 0
                try db.execute(
                    sql: "INSERT OR REPLACE INTO source_sequence (source, last) VALUES (?, ?)",
                    arguments: [event.source, last + 1])
                event.sequence = CloudEvent.sequenceString(last + 1)
                try db.execute(
                    sql: "INSERT INTO event (source, id, type, json) VALUES (?, ?, ?, ?)",
                    arguments: [event.source, event.id, event.type, try event.jsonLine()])
                inserted.append(event)
            }
            for cursor in cursors {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO device_cursor (device, boot_id, consumed) VALUES (?, ?, ?)",
                    arguments: [cursor.device, Int64(cursor.bootId), cursor.consumed])
            }
            return inserted
        }
    }

    /// The committed cursor of a device, if it was ever read.
    public func cursor(device: String) async throws -> DeviceCursor? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT boot_id, consumed FROM device_cursor WHERE device = ?",
                             arguments: [device])
                .map { DeviceCursor(device: device, bootId: UInt32(truncatingIfNeeded: $0[0] as Int64), consumed: $0[1]) }
        }
    }

    /// Up to `limit` events after `position`, in commit order.
    public func entries(after position: Int64, limit: Int) async throws -> [OutboxEntry] {
        try await pool.read { db in
            try Row.fetchAll(
                db, sql: "SELECT position, json FROM event WHERE position > ? ORDER BY position LIMIT ?",
                arguments: [position, limit]
            ).map { row in
                OutboxEntry(position: row[0], event: try CloudEvent.decode(json: Data((row[1] as String).utf8)))
            }
        }
    }

    /// The position a sink has confirmed delivery through (0: nothing yet).
    public func deliveredPosition(sink: String) async throws -> Int64 {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT position FROM sink_cursor WHERE sink = ?", arguments: [sink]) ?? 0
        }
    }

    /// Records that a sink holds every event through `position`.
    public func markDelivered(sink: String, through position: Int64) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO sink_cursor (sink, position) VALUES (?, ?)",
                           arguments: [sink, position])
        }
    }

    /// Deletes events every sink has confirmed, but keeps the newest `keep` of them so that a late
    /// duplicate (same source and id) is still recognised. Returns how many were deleted.
    @discardableResult
    public func prune(sinks: [String], keep: Int = 10_000) async throws -> Int {
        try await pool.write { db in
            var delivered = Int64.max
            for sink in sinks {
                let position = try Int64.fetchOne(
                    db, sql: "SELECT position FROM sink_cursor WHERE sink = ?", arguments: [sink]) ?? 0
                delivered = min(delivered, position)
            }
            let newest = try Int64.fetchOne(db, sql: "SELECT max(position) FROM event") ?? 0
            let limit = min(delivered, newest - Int64(keep))
            guard limit > 0 else { return 0 }
            try db.execute(sql: "DELETE FROM event WHERE position <= ?", arguments: [limit])
            return db.changesCount
        }
    }

    /// How many events a sink has not confirmed yet.
    public func backlog(sink: String) async throws -> Int {
        try await pool.read { db in
            try Int.fetchOne(
                db,
                sql: "SELECT count(*) FROM event WHERE position > coalesce((SELECT position FROM sink_cursor WHERE sink = ?), 0)",
                arguments: [sink]) ?? 0
        }
    }
}
