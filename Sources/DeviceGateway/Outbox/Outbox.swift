public import Foundation
import GRDB
import Synchronization
public import Logging

/// Where a device's events were consumed up to: the pad's power-up and its rating counter.
public struct DeviceCursor: Sendable, Equatable {
    /// The device id.
    public var device: String
    /// The value the device drew at its last power-up.
    public var bootId: UInt32
    /// Ratings consumed since that power-up, counted without wrapping.
    public var consumed: Int64
    /// Times the device restarted its counter under the same boot id (a weak random source at power-up):
    /// part of the event ids, so the ratings of each restart stay apart.
    public var restarts: Int
    /// Whether the pad powered up without the staff id set through the gateway and has not shown it since: committed
    /// with the read that found it, so that a stop or a crash before the write-back does not forget it.
    public var staffOwed: Bool

    /// Creates a cursor.
    public init(device: String, bootId: UInt32, consumed: Int64, restarts: Int = 0, staffOwed: Bool = false) {
        self.device = device
        self.bootId = bootId
        self.consumed = consumed
        self.restarts = restarts
        self.staffOwed = staffOwed
    }
}

/// How much disk the outbox may take, and how long delivered events are kept.
public struct OutboxPolicy: Sendable, Equatable {
    /// The disk budget of the database file. At it, the oldest events are dropped (those every sink
    /// holds first), each undelivered one counted in the drop log: the hall never stops for a full backlog.
    public var maximumBytes: Int64?
    /// Events every sink confirmed are pruned once they are this old (their ids still catch re-reads till then).
    public var retention: Duration
    /// Event stores on this box that keep copies of the events (the local `sqlite` sinks): a salvage takes from them
    /// the undelivered events it cannot read back.
    public var localCopies: [String] = []
    /// Room kept beside the outbox against a full disk, given back when the disk is full (`DiskReserve`); 0: none.
    public var reserveBytes: Int64
    /// The free space the reserve is made with (`DiskReserve.room(for:)`).
    public var roomForReserve: Int64 { DiskReserve.room(for: reserveBytes) }

    /// Creates a policy.
    public init(maximumBytes: Int64? = nil, retention: Duration = .seconds(7 * 24 * 3600),
                reserveBytes: Int64 = 4 * 1_048_576) {
        self.maximumBytes = maximumBytes
        self.retention = retention
        self.reserveBytes = reserveBytes
    }
}

/// Events dropped undelivered because the outbox reached its disk budget.
public struct DropRecord: Sendable, Equatable, Codable {
    /// The record's number in the outbox's drop log (increasing; a salvage carries the log as far as it can read it).
    public var id: Int64
    /// When they were dropped.
    public var droppedAt: Date
    /// How many.
    public var count: Int
    /// Per source, the sequence numbers dropped: the central store sees exactly these as gaps.
    public var ranges: [SequenceRange]
}

/// A run of one source's sequence numbers.
public struct SequenceRange: Sendable, Equatable, Codable {
    public var source: String
    public var first: Int64
    public var last: Int64
    public var count: Int
}

/// What a sink has and has not received, from the outbox's books.
public struct SinkReport: Sendable, Equatable, Codable {
    public var sink: String
    /// Events committed and not yet confirmed by the sink.
    public var backlog: Int
    /// Commit time of the oldest of them.
    public var oldestUnforwardedAt: Date?
    /// Events the sink confirmed since the outbox was created.
    public var sent: Int64
    /// Delivery attempts that failed.
    public var failed: Int64
    /// Events the sink refused for good, kept in the outbox's put-aside table.
    public var putAside: Int64
    public var lastSuccessAt: Date?
    public var lastError: String?
    public var lastErrorAt: Date?

    /// Its last delivery failed: an error recorded after its last success, or with none.
    public var isFailing: Bool {
        lastError != nil && (lastErrorAt ?? .distantFuture) > (lastSuccessAt ?? .distantPast)
    }
}

/// An event a sink refused for good, kept with the reason.
public struct PutAsideEvent: Sendable, Equatable, Codable {
    public var sink: String
    public var source: String
    public var id: String
    public var type: String
    public var reason: String
    public var putAsideAt: Date
    public var json: String
    /// When a technician asked for it to be sent again (`gatewayd outbox resend`), until the sink answers.
    public var resendAskedAt: Date?
}

/// What a salvage of a damaged outbox found.
public struct SalvageReport: Sendable, Equatable, Codable {
    /// Where the damaged file was moved.
    public var damagedPath: String
    /// Events read back and queued for every sink again.
    public var recovered: Int
    /// Events every sink had confirmed, not needed again.
    public var alreadyDelivered: Int
    /// Rows that could not be read (positions that failed, or whole ranges when the index is broken).
    public var unreadable: Int
    /// Why the file was judged damaged.
    public var damage: String
    /// Of the unreadable rows, those some sink had not confirmed (nil in a report from before it was counted).
    public var unreadableUndelivered: Int?
    /// Per source, the sequence numbers after the last one read back that every sink had, up to the source's counter,
    /// that were not read back: a store that lacks any of them has lost it. Empty when every unreadable row had been
    /// delivered everywhere (from a trial: the central store saw gaps the salvage did not explain).
    public var notReadBack: [SequenceRange]?
    /// Undelivered events not read back but found in a local event store on this box, queued again from there (some
    /// may have been delivered: the stores keep one).
    public var takenFromLocalStore: Int?
    /// A local event store that could not be read for them, and why.
    public var localStoreUnread: String?
}

/// Opens an existing SQLite file for reading only (or, `writable`, for a CLI's one change): a CLI pointed at the
/// wrong file must not create one.
func readOnlyDatabase(at path: String, missing: String, writable: Bool = false) throws -> DatabaseQueue {
    guard FileManager.default.fileExists(atPath: path) else { throw GatewayError(.storeMissing, missing) }
    var configuration = Configuration()
    configuration.readonly = !writable
    configuration.busyMode = .timeout(10)
    return try DatabaseQueue(path: path, configuration: configuration)
}

/// The durable outbox: every accepted event is committed here before anything else happens to it.
///
/// SQLite in WAL mode with `synchronous=FULL` (NORMAL may lose a committed transaction on power loss).
/// Events and device cursors commit in one transaction, so a crash either keeps both or neither, and
/// a re-read after the crash produces the same ids, which the unique (source, id) key ignores.
public final class Outbox: Sendable {
    /// Internal for the tests of its connections' settings.
    let database: any DatabaseWriter
    /// The database file.
    public let path: String
    public let policy: OutboxPolicy
    /// What was recovered from a damaged outbox at start-up, if it was damaged.
    public let salvage: SalvageReport?
    /// Room given back when the disk is full; nil for a copy opened to read or salvage into.
    private let reserve: DiskReserve?

    /// The steps of a salvage, after which a test cuts the power.
    enum SalvageStep { case written, completed, movedAside }

    /// Opens (or creates) the outbox. A damaged file is salvaged: every readable event of it that some sink had not
    /// confirmed is queued again in a fresh outbox, which replaces it; the damaged file is moved aside and reported.
    ///
    /// The fresh outbox is written beside the damaged one and put in its place only once complete, so a power cut
    /// at any moment leaves either the damaged file, salvaged again at the next start, or the complete salvage.
    public static func open(path: String, policy: OutboxPolicy = OutboxPolicy(), logger: Logger) throws -> Outbox {
        let reserve = DiskReserve(beside: path, bytes: policy.reserveBytes, logger: logger)
        let outbox: Outbox
        do {
            do {
                outbox = try open(path: path, policy: policy, logger: logger, cutPowerAfter: nil, reserve: reserve)
            } catch {
                // Opening writes (a clean stop removed the write-ahead log, which GRDB makes again, not empty).
                guard reserve.giveBack(after: error) else { throw error }
                outbox = try open(path: path, policy: policy, logger: logger, cutPowerAfter: nil, reserve: reserve)
            }
        } catch {
            throw problem(opening: path, error)
        }
        reserve.keep()
        return outbox
    }

    /// What stopped the outbox from opening, with the file and what to check.
    static func problem(opening path: String, _ error: any Error) -> GatewayError {
        if let error = error as? GatewayError { return error }
        let folder = (path as NSString).deletingLastPathComponent
        var what = GatewayError.oneLine("\(error)")
        if let database = error as? DatabaseError {
            what = describe(database)
            switch database.resultCode.primaryResultCode {
            case _ where DiskReserve.isFullDisk(database, at: folder):
                what += ": the disk holding \(folder) is full"
                // From a trial: a salvage with no room said only that.
                if FileManager.default.fileExists(atPath: path + ".salvaging"),
                   let size = try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64 {
                    what += "; the outbox is damaged, and its salvage writes a fresh copy beside it: make about "
                        + "\(max(1, size / 1_048_576)) MB of room"
                }
            case .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_AUTH:
                what += ": \(folder) and the files in it must be writable by the gateway's user"
            default: break
            }
        }
        return GatewayError(.storeMissing, "cannot open the outbox \(path): \(what)")
    }

    /// What a technician reading the outbox at `path` is told when SQLite finds it damaged; nil for other errors.
    public static func damage(at path: String, _ error: any Error) -> String? {
        guard let error = error as? DatabaseError, error.resultCode.primaryResultCode == .SQLITE_CORRUPT else { return nil }
        return "the outbox \(path) is damaged (\(describe(error))): the gateway's next start salvages it, its readable "
            + "events queued again and the damaged file kept beside"
    }

    /// SQLite's own words and its code, on one line (of any database the gateway reads).
    static func describe(_ error: DatabaseError) -> String {
        "\(GatewayError.oneLine(error.message ?? "\(error.resultCode)")) (SQLite error \(error.resultCode.primaryResultCode.rawValue))"
    }

    static func open(path: String, policy: OutboxPolicy, logger: Logger, cutPowerAfter cut: SalvageStep?,
                     reserve: DiskReserve? = nil) throws -> Outbox
    {
        try WritableDatabase.check(path, what: "the outbox", folderName: "the state directory")
        let salvaging = path + ".salvaging", salvaged = path + ".salvaged"
        if FileManager.default.fileExists(atPath: salvaged) {
            let aside = try putInPlace(salvaged, of: path, aside: salvageReport(of: path)?.damagedPath)
            logger.critical(
                """
                outbox \(path): a salvage cut short at its end is completed (the damaged file \
                \(aside.map { "moved to \($0)" } ?? "was moved aside already"))
                """, metadata: ["outbox.path": "\(path)"])
        }
        // Begun and cut short: the damaged file is still in place and is salvaged again.
        try removeDatabase(salvaging)
        do {
            // A report not yet committed as an event (a stop or power cut right after the salvage) is committed now.
            return try Outbox(path: path, policy: policy, salvage: salvageReport(of: path), reserve: reserve)
        } catch let error as DatabaseError
            where [.SQLITE_CORRUPT, .SQLITE_NOTADB].contains(error.resultCode.primaryResultCode)
        {
            // Only a damaged file is salvaged: a full disk, a read-only file or a lock is reported as it is.
            let damage = GatewayError.oneLine("\(error)")
            logger.critical("outbox \(path) is damaged (\(damage)); salvaging it into a fresh one",
                            metadata: ["outbox.path": "\(path)"])
            var report: SalvageReport
            do {
                let fresh = try Outbox(path: salvaging, policy: policy, salvage: nil)
                report = try fresh.salvage(from: path, damage: damage)
                if cut == .written { throw PowerCut() }
                try fresh.closeWholly()
            }
            report.damagedPath = damagedName(of: path)
            // Kept until its event is committed: a salvage finished at the next start is still reported.
            try JSONEncoder().encode(report).write(to: URL(fileURLWithPath: reportPath(of: path)), options: .atomic)
            try FileManager.default.moveItem(atPath: salvaging, toPath: salvaged)
            if cut == .completed { throw PowerCut() }
            _ = try putInPlace(salvaged, of: path, aside: report.damagedPath, cutPowerAfterMovingAside: cut == .movedAside)
            logger.critical(
                """
                outbox salvage from \(report.damagedPath): \(report.recovered) events queued again for delivery, \
                \(report.alreadyDelivered) were already delivered everywhere, \(report.unreadable) rows unreadable\
                \(Self.unreadableSummary(report))
                """, metadata: ["outbox.path": "\(path)"])
            return try Outbox(path: path, policy: policy, salvage: report, reserve: reserve)
        }
    }

    struct PowerCut: Error {}

    /// Where a damaged outbox is put aside: named by when, in UTC (`outbox.sqlite.damaged-20261206T011106Z`; from a
    /// trial: a technician read the seconds since 1970 as a number).
    private static func damagedName(of path: String) -> String {
        "\(path).damaged-" + Date().formatted(.iso8601.dateSeparator(.omitted).timeSeparator(.omitted))
    }

    /// Less free than this on the outbox's disk is a full one: SQLite cannot add the pages of the next commit.
    public static let fullDiskBelowBytes: Int64 = 1_048_576

    /// Whether the reserve against a full disk is kept beside the outbox at `path` (what a reader sees: the gateway
    /// gave it back on a full disk, or found no room to make it, while it is missing).
    public static func reserveKept(beside path: String) -> Bool {
        FileManager.default.fileExists(atPath: DiskReserve.path(beside: path))
    }

    /// The damaged outboxes salvages set aside beside `path`, kept for inspection.
    public static func damagedOutboxes(beside path: String) -> [String] {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { name in
            name.hasPrefix(url.lastPathComponent + ".damaged-") && !name.hasSuffix("-wal") && !name.hasSuffix("-shm")
        }.sorted().map { (folder as NSString).appendingPathComponent($0) }
    }

    /// Moves the damaged file (with its journal files) aside and the complete salvage into its place; returns where
    /// the damaged file went (nil: it had been moved already).
    private static func putInPlace(
        _ salvaged: String, of path: String, aside: String?, cutPowerAfterMovingAside: Bool = false
    ) throws -> String? {
        let aside = aside ?? damagedName(of: path)
        var moved = false
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
            moved = true
        }
        if cutPowerAfterMovingAside { throw PowerCut() }
        try FileManager.default.moveItem(atPath: salvaged, toPath: path)
        return moved ? aside : nil
    }

    private static func reportPath(of path: String) -> String { path + ".salvage-report.json" }

    private static func salvageReport(of path: String) -> SalvageReport? {
        guard let data = FileManager.default.contents(atPath: reportPath(of: path)) else { return nil }
        return try? JSONDecoder().decode(SalvageReport.self, from: data)
    }

    /// The salvage's event is committed: its report is no longer needed at a start.
    public func salvageReported() {
        try? FileManager.default.removeItem(atPath: Self.reportPath(of: path))
    }

    private static func removeDatabase(_ path: String) throws {
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.removeItem(atPath: path + suffix)
        }
    }

    /// Writes everything into the database file itself and closes it, so the file alone can be moved.
    private func closeWholly() throws {
        _ = try database.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
        try (database as? DatabasePool)?.close()
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.removeItem(atPath: path + suffix)
        }
    }

    /// Opens an existing outbox read-only (the technician's CLI), or `writable` for one change the running daemon
    /// may share (a resend asked for): nothing is created or migrated.
    public static func openForReading(path: String, writable: Bool = false) throws -> Outbox {
        let queue: DatabaseQueue
        let tables: [String]
        do {
            queue = try readOnlyDatabase(
                at: path, missing: "no outbox at \(path): has the gateway run with this state directory?", writable: writable)
            tables = try queue.read { db in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") }
        } catch let error as DatabaseError {
            throw GatewayError(.storeMissing, damage(at: path, error) ?? "cannot read the outbox \(path): \(describe(error))")
        }
        guard Set(["event", "sink_cursor", "sink_state", "put_aside"]).isSubset(of: tables) else {
            throw GatewayError(.storeMissing, "\(path) is not a hall gateway outbox (or one from an older version)")
        }
        return Outbox(database: queue, path: path)
    }

    private init(database: any DatabaseWriter, path: String) {
        self.database = database
        self.path = path
        self.policy = OutboxPolicy()
        self.salvage = nil
        self.reserve = nil
    }

    private init(path: String, policy: OutboxPolicy, salvage: SalvageReport?, reserve: DiskReserve? = nil) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try WritableDatabase.prepare(db)
            if let budget = policy.maximumBytes {
                // The WAL counts against the budget too: checkpoint and truncate it at a quarter of it (4 MB at most).
                let walBytes = min(budget / 4, 4 * 1_048_576)
                try db.execute(sql: "PRAGMA journal_size_limit = \(walBytes)")
                try db.execute(sql: "PRAGMA wal_autocheckpoint = \(max(16, walBytes / 4096))")
            }
        }
        // Checked read-only first: opening for writes writes into the file (GRDB's set-up of the write-ahead log,
        // checkpointed at the close), and a damaged one is kept as it was found (from a trial: its pages changed).
        let checkedBefore = try Self.checkedReadOnly(path)
        let pool = try DatabasePool(path: path, configuration: configuration)
        if !checkedBefore {
            let check = try pool.read { db in try String.fetchOne(db, sql: "PRAGMA quick_check") }
            guard check == "ok" else { throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: check) }
        }
        try Self.migrator.migrate(pool)
        self.database = pool
        self.path = path
        self.policy = policy
        self.salvage = salvage
        self.reserve = reserve
    }

    /// SQLite's quick check of an existing file through a read-only connection: false when there is no file or it
    /// cannot be opened read-only (no room for its shared-memory file), then checked once opened; throws when it is
    /// damaged.
    private static func checkedReadOnly(_ path: String) throws -> Bool {
        guard FileManager.default.fileExists(atPath: path) else { return false }
        let check: String?
        do {
            check = try readOnlyDatabase(at: path, missing: path).read { db in
                try String.fetchOne(db, sql: "PRAGMA quick_check")
            }
        } catch let error as DatabaseError
            where [.SQLITE_CORRUPT, .SQLITE_NOTADB].contains(error.resultCode.primaryResultCode) {
            throw error
        } catch {
            return false
        }
        guard check == "ok" else { throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: check) }
        return true
    }

    /// When the reserve against a full disk was given back, while it has not been kept again: the outbox lives on it.
    public var reserveGivenBackAt: Date? {
        reserve?.givenBackAt
    }

    /// The free bytes on the outbox's disk when its reserve was last found missing without room to make it again: a
    /// run before gave it back (its start cannot tell), or the disk never had room. Nil while it is kept.
    public var reserveMissingForRoom: Int64? {
        reserve?.missingForRoom
    }

    /// Gives back the room kept for a stop: the gateway's own events wait at its stop, the disk full past the reserve.
    /// True when it was given back.
    public func giveBackStopReserve() -> Bool {
        reserve?.giveBackAtStop() ?? false
    }

    /// Keeps the reserve against a full disk, made again once the disk has room (the gateway asks every minute).
    public func keepReserve() {
        reserve?.keep()
    }

    /// A write; on a full disk the reserve is given back and the write tried once more.
    private func writeWithReserve<T: Sendable>(_ updates: @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await database.write(updates)
        } catch {
            guard reserve?.giveBack(after: error) == true else { throw error }
            return try await database.write(updates)
        }
    }

    /// `writeWithReserve`, from a caller that may block.
    private func writeWithReserveBlocking<T>(_ updates: (Database) throws -> T) throws -> T {
        do {
            return try database.write(updates)
        } catch {
            guard reserve?.giveBack(after: error) == true else { throw error }
            return try database.write(updates)
        }
    }

    static var migrator: DatabaseMigrator {
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
        // The attributes sinks index travel as columns, so forwarding never decodes JSON.
        migrator.registerMigration("v2-forwarding") { db in
            try db.execute(
                sql: """
                    ALTER TABLE event ADD COLUMN time TEXT NOT NULL DEFAULT '';
                    ALTER TABLE event ADD COLUMN subject TEXT;
                    ALTER TABLE event ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE event ADD COLUMN committed_at REAL NOT NULL DEFAULT 0;
                    UPDATE event SET time = json_extract(json, '$.time'), subject = json_extract(json, '$.subject'),
                                     sequence = CAST(json_extract(json, '$.sequence') AS INTEGER),
                                     committed_at = CAST(strftime('%s', json_extract(json, '$.time')) AS REAL);
                    CREATE TABLE sink_state (
                        sink TEXT PRIMARY KEY,
                        sent INTEGER NOT NULL DEFAULT 0,
                        failed INTEGER NOT NULL DEFAULT 0,
                        put_aside INTEGER NOT NULL DEFAULT 0,
                        last_success_at REAL,
                        last_error TEXT,
                        last_error_at REAL
                    );
                    CREATE TABLE put_aside (
                        sink TEXT NOT NULL,
                        position INTEGER NOT NULL,
                        source TEXT NOT NULL,
                        id TEXT NOT NULL,
                        type TEXT NOT NULL,
                        reason TEXT NOT NULL,
                        put_aside_at REAL NOT NULL,
                        json TEXT NOT NULL,
                        PRIMARY KEY (sink, position)
                    );
                    -- What the events take, kept by triggers so the disk budget costs no table scan.
                    CREATE TABLE stored_size (bytes INTEGER NOT NULL);
                    INSERT INTO stored_size (bytes) SELECT coalesce(sum(length(CAST(json AS BLOB)) + length(source) + length(id) + 64), 0) FROM event;
                    CREATE TRIGGER event_stored AFTER INSERT ON event BEGIN
                        UPDATE stored_size SET bytes = bytes + length(CAST(NEW.json AS BLOB)) + length(NEW.source) + length(NEW.id) + 64;
                    END;
                    CREATE TRIGGER event_removed AFTER DELETE ON event BEGIN
                        UPDATE stored_size SET bytes = bytes - length(CAST(OLD.json AS BLOB)) - length(OLD.source) - length(OLD.id) - 64;
                    END;
                    CREATE TABLE drop_log (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        dropped_at REAL NOT NULL,
                        count INTEGER NOT NULL,
                        ranges TEXT NOT NULL,
                        reported INTEGER NOT NULL DEFAULT 0
                    );
                    """)
        }
        migrator.registerMigration("v3-restarts") { db in
            try db.execute(sql: "ALTER TABLE device_cursor ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0")
        }
        // What the running gateway believes about each device, with its wire counters, for the CLI.
        migrator.registerMigration("v4-device-status") { db in
            try db.execute(sql: """
                CREATE TABLE device_status (
                    device TEXT PRIMARY KEY, bus TEXT NOT NULL, online INTEGER, last_seen REAL, offline_reason TEXT,
                    counters TEXT NOT NULL, updated_at REAL NOT NULL)
                """)
        }
        // The gateway's ticket numbers per hall day and prefix, so a restart continues the day's count.
        migrator.registerMigration("v5-ticket-counters") { db in
            try db.execute(sql: """
                CREATE TABLE ticket_counter (day TEXT NOT NULL, prefix TEXT NOT NULL, number INTEGER NOT NULL,
                    PRIMARY KEY (day, prefix))
                """)
        }
        // Commands' results by the client's idempotency key, so a repeat after a restart is answered, not run.
        migrator.registerMigration("v6-command-keys") { db in
            try db.execute(sql: """
                CREATE TABLE command_key (key TEXT PRIMARY KEY, result TEXT NOT NULL, created_at REAL NOT NULL);
                CREATE INDEX command_key_created ON command_key (created_at);
                """)
        }
        // The request a key was first used for, so the key sent with another request is refused, not answered.
        migrator.registerMigration("v7-command-key-requests") { db in
            try db.execute(sql: "ALTER TABLE command_key ADD COLUMN request TEXT")
        }
        // The hall days whose pre-opening run (counters cleared, device check) happened, so a restart before opening
        // does not clear the day's ticket numbers again.
        migrator.registerMigration("v8-hall-day-checks") { db in
            try db.execute(sql: "CREATE TABLE hall_day_check (day TEXT PRIMARY KEY, checked_at REAL NOT NULL)")
        }
        // The latest time the gateway wrote down under its clock, kept apart from the rows a run under a clock that is
        // behind overwrites: the next start compares its clock with it.
        migrator.registerMigration("v9-recorded-clock") { db in
            try db.execute(sql: """
                CREATE TABLE recorded_clock (id INTEGER PRIMARY KEY CHECK (id = 1), latest REAL NOT NULL);
                INSERT INTO recorded_clock (id, latest)
                    SELECT 1, latest FROM (SELECT max(recorded) AS latest FROM (
                        SELECT max(updated_at) AS recorded FROM device_status
                        UNION ALL SELECT max(checked_at) FROM hall_day_check))
                    WHERE latest IS NOT NULL;
                """)
        }
        // A technician asks for put-aside events to be offered to their sink again, once its fault is fixed.
        migrator.registerMigration("v10-put-aside-resend") { db in
            try db.execute(sql: "ALTER TABLE put_aside ADD COLUMN resend_asked_at REAL")
        }
        // MQTT commands the broker was told were received, kept until they ran: libmosquitto acknowledges a message
        // before the gateway sees it, so a crash would otherwise lose every command received and not yet run.
        migrator.registerMigration("v11-held-commands") { db in
            try db.execute(sql: "CREATE TABLE held_command (seq INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL)")
        }
        // The staff id the queue system set on a pad that keeps none itself (FF 68): its ratings carry it after a restart.
        migrator.registerMigration("v12-pad-staff") { db in
            try db.execute(sql: "CREATE TABLE pad_staff (device TEXT PRIMARY KEY, staff TEXT NOT NULL)")
        }
        // A ticket being printed, with the event to commit if the gateway dies before its own: the printed ticket's
        // number would otherwise reach the central store never, and a retry of its request would print another.
        // `committed`: its own event is in (set in the commit's transaction); `draft` is then that event.
        migrator.registerMigration("v13-unsettled-commands") { db in
            try db.execute(sql: """
                CREATE TABLE unsettled_command (source TEXT NOT NULL, id TEXT NOT NULL, key TEXT, request TEXT,
                                                draft TEXT NOT NULL, committed INTEGER NOT NULL DEFAULT 0,
                                                PRIMARY KEY (source, id))
                """)
        }
        // When a held MQTT command was received: one held across a long stop is too old to run at the start.
        migrator.registerMigration("v14-held-command-time") { db in
            try db.execute(sql: "ALTER TABLE held_command ADD COLUMN received_at REAL")
        }
        // The last openings and closings told, with their result: their events are pruned, a restart weeks later
        // within the same closing must not tell it again (the store would see a gap where it drops the repeat).
        migrator.registerMigration("v15-hall-day-events") { db in
            try db.execute(sql: "CREATE TABLE hall_day_event (id TEXT PRIMARY KEY, result TEXT NOT NULL, told_at REAL NOT NULL)")
        }
        // Idempotency keys kept by their fingerprint (from a security trial: a key may hold what a person typed); the
        // ones kept before, within their day, are found again under it.
        migrator.registerMigration(keyFingerprintsMigration) { db in try fingerprintKeys(in: db) }
        // Boards a call or a text after closing holds on, until when: a restart within the hold keeps them on (from a
        // night trial: a restart at 20:10 switched off the board a late citizen was being served under).
        migrator.registerMigration("v17-board-holds") { db in
            try db.execute(sql: "CREATE TABLE board_hold (board TEXT PRIMARY KEY, until REAL NOT NULL)")
        }
        // What each board was last sent to show (JSON of `ShownOnBoard`), with its state: `status` says it, and a restart
        // goes on from it (a board back from a power cut after a restart came back blank).
        migrator.registerMigration("v18-board-last-shown") { db in
            try db.execute(sql: "ALTER TABLE device_status ADD COLUMN last_shown TEXT")
        }
        // A staff id owed to a pad that powered up without it (from a second read: a stop or a crash between the
        // power-up read's commit and the write-back forgot it).
        migrator.registerMigration("v19-staff-owed") { db in
            try db.execute(sql: "ALTER TABLE device_cursor ADD COLUMN staff_owed INTEGER NOT NULL DEFAULT 0")
        }
        return migrator
    }

    static let keyFingerprintsMigration = "v16-command-key-fingerprints"

    /// Replaces every idempotency key kept as the client's text by its fingerprint; with `unlessShapedAsOne`, only
    /// those that are not 16 hex digits (a damaged file whose migrations cannot be read).
    private static func fingerprintKeys(in db: Database, unlessShapedAsOne: Bool = false) throws {
        for table in ["command_key", "unsettled_command"] {
            for key in try String.fetchAll(db, sql: "SELECT DISTINCT key FROM \(table) WHERE key IS NOT NULL")
            where !(unlessShapedAsOne && key.wholeMatch(of: /[0-9a-f]{16}/) != nil) {
                try db.execute(sql: "UPDATE OR REPLACE \(table) SET key = ? WHERE key = ?",
                               arguments: [Fingerprint.padded(key), key])
            }
        }
    }

    // MARK: Committing

    /// Commits events and the cursors that consume them in one transaction.
    ///
    /// Returns the events that were new, each with its `sequence` assigned; known ids are skipped.
    /// Past the disk budget, the oldest events make room (see `OutboxPolicy`). A cancelled caller's events are
    /// committed all the same: what the gateway accepted is never dropped by a cancellation.
    /// `settlingDrafts`: the events are commands' own (the gateway's), whose drafts (`recordUnsettled`) they settle.
    @discardableResult
    public func commit(_ events: [CloudEvent], cursors: [DeviceCursor] = [], settlingDrafts: Bool = false) async throws
        -> [CloudEvent] {
        // In a task of its own: GRDB refuses the async work of a cancelled task.
        try await Task { try await write(events, cursors: cursors, settlingDrafts: settlingDrafts) }.value
    }

    private func write(_ events: [CloudEvent], cursors: [DeviceCursor], settlingDrafts: Bool) async throws -> [CloudEvent] {
        let now = Date().timeIntervalSince1970
        let budget = policy.maximumBytes
        return try await writeWithReserve { db in
            var inserted: [CloudEvent] = []
            for event in events {
                if let stored = try Self.insert(event, committedAt: now, in: db) { inserted.append(stored) }
                if settlingDrafts { try Self.settleDraft(of: event, in: db) }
            }
            for cursor in cursors {
                try db.cachedStatement(
                    sql: """
                        INSERT OR REPLACE INTO device_cursor (device, boot_id, consumed, restarts, staff_owed)
                        VALUES (?, ?, ?, ?, ?)
                        """
                ).execute(arguments: [cursor.device, Int64(cursor.bootId), cursor.consumed, cursor.restarts, cursor.staffOwed])
            }
            if let budget { try Self.keepWithin(budget: budget, db: db, now: now) }
            return inserted
        }
    }

    /// In the transaction that commits a command's own event: its draft is done with, or, for a keyed command, kept
    /// as that event until the key's result is (`recordCommandResult`).
    private static func settleDraft(of event: CloudEvent, in db: Database) throws {
        // Most own events (heartbeats, checks) have none: no JSON made for them.
        let keyed = try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT key IS NOT NULL FROM unsettled_command WHERE source = ? AND id = ?"),
            arguments: [event.source, event.id])
        switch keyed {
        case nil: return
        case false?:
            try db.cachedStatement(sql: "DELETE FROM unsettled_command WHERE source = ? AND id = ?")
                .execute(arguments: [event.source, event.id])
        case true?:
            try db.cachedStatement(sql: "UPDATE unsettled_command SET committed = 1, draft = ? WHERE source = ? AND id = ?")
                .execute(arguments: [try event.jsonLine(), event.source, event.id])
        }
    }

    /// Inserts one event with the next sequence of its source, unless its (source, id) is known.
    private static func insert(_ event: CloudEvent, committedAt: TimeInterval, in db: Database) throws -> CloudEvent? {
        let known = try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT 1 FROM event WHERE source = ? AND id = ?"),
            arguments: [event.source, event.id])
        if known == true { return nil }
        let last = try Int64.fetchOne(
            db.cachedStatement(sql: "SELECT last FROM source_sequence WHERE source = ?"), arguments: [event.source]) ?? 0
        var event = event
        event.sequence = CloudEvent.sequenceString(last + 1)
        try db.cachedStatement(sql: "INSERT OR REPLACE INTO source_sequence (source, last) VALUES (?, ?)")
            .execute(arguments: [event.source, last + 1])
        try db.cachedStatement(
            sql: """
                INSERT INTO event (source, id, type, json, time, subject, sequence, committed_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: [event.source, event.id, event.type, try event.jsonLine(), event.time, event.subject,
                              last + 1, committedAt])
        return event
    }

    /// Share of the budget the events' own bytes may take: SQLite's index on (source, id), partly filled pages
    /// and the WAL take the rest, so that the files on disk stay within the budget (0.4 until the held commands and the
    /// pads' staff took two more tables: a 1 MB budget went 15 KB over).
    static let eventShareOfBudget = 0.38

    /// Drops the oldest events until they take under 90 % of their share of the budget: delivered ones first,
    /// then undelivered ones, each of those counted in the drop log with its source and sequence.
    private static func keepWithin(budget: Int64, db: Database, now: TimeInterval) throws {
        let allowed = Int64(Double(budget) * eventShareOfBudget)
        func storedBytes() throws -> Int64 { try Int64.fetchOne(db, sql: "SELECT bytes FROM stored_size") ?? 0 }
        var stored = try storedBytes()
        guard stored > allowed else { return }
        let target = allowed * 9 / 10
        let delivered = try deliveredByAll(db)
        var dropped: [String: SequenceRange] = [:]
        var droppedCount = 0
        while stored > target {
            let rows = try Int64.fetchOne(db, sql: "SELECT count(*) FROM event") ?? 0
            guard rows > 0 else { break }
            let perRow = max(1, stored / rows)
            let count = max(1, (stored - target + perRow - 1) / perRow)
            let victims = try Row.fetchAll(
                db, sql: "SELECT position, source, sequence FROM event ORDER BY position LIMIT ?", arguments: [count])
            for victim in victims where (victim[0] as Int64) > delivered {
                let source: String = victim[1]
                let sequence: Int64 = victim[2]
                var range = dropped[source] ?? SequenceRange(source: source, first: sequence, last: sequence, count: 0)
                range.first = min(range.first, sequence)
                range.last = max(range.last, sequence)
                range.count += 1
                dropped[source] = range
                droppedCount += 1
            }
            let lastVictim: Int64 = victims.last?[0] ?? 0
            try db.execute(sql: "DELETE FROM event WHERE position <= ?", arguments: [lastVictim])
            stored = try storedBytes()
        }
        guard droppedCount > 0 else { return }
        let ranges = dropped.values.sorted { $0.source < $1.source }
        let json = String(decoding: try JSONEncoder().encode(ranges), as: UTF8.self)
        try db.execute(sql: "INSERT INTO drop_log (dropped_at, count, ranges) VALUES (?, ?, ?)",
                       arguments: [now, droppedCount, json])
    }

    /// The position every sink has confirmed (events at or before it are needed by no sink).
    private static func deliveredByAll(_ db: Database) throws -> Int64 {
        // A sink that has never confirmed anything has a cursor row only once it delivered; until then 0.
        let sinks = try String.fetchAll(db, sql: "SELECT sink FROM sink_state")
        guard !sinks.isEmpty else { return 0 }
        return try Int64.fetchOne(
            db, sql: "SELECT min(coalesce(c.position, 0)) FROM sink_state s LEFT JOIN sink_cursor c ON c.sink = s.sink"
        ) ?? 0
    }

    /// Drops not yet reported as an event: `report` builds that event, committed with the marks in one transaction.
    public func reportDrops(_ report: @Sendable ([DropRecord]) -> CloudEvent) async throws -> CloudEvent? {
        let now = Date().timeIntervalSince1970
        return try await writeWithReserve { db in
            let rows = try Row.fetchAll(db, sql: "SELECT id, dropped_at, count, ranges FROM drop_log WHERE reported = 0 ORDER BY id")
            guard !rows.isEmpty else { return nil }
            let records = try rows.map { row in
                DropRecord(
                    id: row[0], droppedAt: Date(timeIntervalSince1970: row[1]), count: row[2],
                    ranges: try JSONDecoder().decode([SequenceRange].self, from: Data((row[3] as String).utf8)))
            }
            let event = try Self.insert(report(records), committedAt: now, in: db)
            try db.execute(sql: "UPDATE drop_log SET reported = 1 WHERE id <= ?", arguments: [rows.last![0] as Int64])
            return event
        }
    }

    /// The id of the event reporting `records`: the same for the same drops (a report committed again is one),
    /// another for any other drops, also after a salvage started the drop log again at 1 (the store would otherwise
    /// take the new report for the old one and drop it). What was dropped tells them apart: an event's sequence
    /// number is never given twice.
    public static func dropReportId(_ records: [DropRecord]) -> String {
        let dropped = records.flatMap(\.ranges).map { "\($0.source) \($0.first) \($0.last);" }.joined()
        let first = records.first?.id ?? 0
        return "events-dropped-\(first)-\(records.last?.id ?? first)-\(Fingerprint.of(dropped))"
    }

    /// Every drop since the outbox was created: events lost to the disk budget, exactly.
    public func dropTotal() async throws -> Int {
        try await database.read { db in try Int.fetchOne(db, sql: "SELECT coalesce(sum(count), 0) FROM drop_log") ?? 0 }
    }

    /// The committed cursor of a device, if it was ever read.
    public func cursor(device: String) async throws -> DeviceCursor? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT boot_id, consumed, restarts, staff_owed FROM device_cursor WHERE device = ?",
                             arguments: [device])
                .map {
                    DeviceCursor(device: device, bootId: UInt32(truncatingIfNeeded: $0[0] as Int64), consumed: $0[1],
                                 restarts: $0[2], staffOwed: $0[3])
                }
        }
    }

    // MARK: Forwarding

    /// Makes the configured sinks known, so that nothing is pruned before each of them has it. A sink no
    /// longer configured stops holding events back; its cursor is kept in case it comes back.
    public func register(sinks: [String]) async throws {
        try await writeWithReserve { db in
            let known = try String.fetchAll(db, sql: "SELECT sink FROM sink_state")
            for sink in known where !sinks.contains(sink) {
                try db.execute(sql: "DELETE FROM sink_state WHERE sink = ?", arguments: [sink])
            }
            for sink in sinks {
                try db.execute(sql: "INSERT OR IGNORE INTO sink_state (sink) VALUES (?)", arguments: [sink])
            }
        }
    }

    /// The JSON of the event `id` of `source`, while the outbox holds it.
    public func json(ofEvent id: String, source: String) async throws -> String? {
        try await database.read { db in
            try String.fetchOne(db, sql: "SELECT json FROM event WHERE source = ? AND id = ?", arguments: [source, id])
        }
    }

    /// Up to `limit` events after `position`, in commit order.
    public func entries(after position: Int64, limit: Int) async throws -> [OutboundEvent] {
        try await database.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT position, source, id, type, time, subject, sequence, json FROM event
                        WHERE position > ? ORDER BY position LIMIT ?
                        """),
                arguments: [position, limit]
            ).map { row in
                OutboundEvent(position: row[0], source: row[1], id: row[2], type: row[3], time: row[4],
                              subject: row[5], sequence: row[6], json: row[7])
            }
        }
    }

    /// The position a sink has confirmed delivery through (0: nothing yet).
    public func deliveredPosition(sink: String) async throws -> Int64 {
        try await database.read { db in
            try Int64.fetchOne(db, sql: "SELECT position FROM sink_cursor WHERE sink = ?", arguments: [sink]) ?? 0
        }
    }

    /// Records that a sink holds every event through `position`, `count` of them just now.
    public func markDelivered(sink: String, through position: Int64, count: Int) async throws {
        let now = Date().timeIntervalSince1970
        try await writeWithReserve { db in
            try Self.advance(sink: sink, to: position, db: db)
            try db.execute(
                sql: """
                    INSERT INTO sink_state (sink, sent, last_success_at) VALUES (?, ?, ?)
                    ON CONFLICT (sink) DO UPDATE SET sent = sent + excluded.sent, last_success_at = excluded.last_success_at
                    """, arguments: [sink, count, now])
        }
    }

    private static func advance(sink: String, to position: Int64, db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO sink_cursor (sink, position) VALUES (?, ?)
                ON CONFLICT (sink) DO UPDATE SET position = max(position, excluded.position)
                """, arguments: [sink, position])
    }

    /// Records a failed delivery attempt and its reason.
    public func recordFailure(sink: String, reason: String) async throws {
        let now = Date().timeIntervalSince1970
        try await writeWithReserve { db in
            try db.execute(
                sql: """
                    INSERT INTO sink_state (sink, failed, last_error, last_error_at) VALUES (?, 1, ?, ?)
                    ON CONFLICT (sink) DO UPDATE SET failed = failed + 1, last_error = excluded.last_error,
                                                     last_error_at = excluded.last_error_at
                    """, arguments: [sink, reason, now])
        }
    }

    /// Keeps events a sink refused for good, with the reason, and moves the sink's cursor past them.
    public func putAside(_ events: [OutboundEvent], sink: String, reason: String) async throws {
        guard let last = events.last else { return }
        let now = Date().timeIntervalSince1970
        try await writeWithReserve { db in
            for event in events {
                try db.execute(
                    sql: """
                        INSERT OR REPLACE INTO put_aside (sink, position, source, id, type, reason, put_aside_at, json)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [sink, event.position, event.source, event.id, event.type, reason, now, event.json])
            }
            try Self.advance(sink: sink, to: last.position, db: db)
            try db.execute(
                sql: """
                    INSERT INTO sink_state (sink, put_aside, last_error, last_error_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT (sink) DO UPDATE SET put_aside = put_aside + excluded.put_aside,
                        last_error = excluded.last_error, last_error_at = excluded.last_error_at
                    """, arguments: [sink, events.count, reason, now])
        }
    }

    /// The events a sink refused, newest last.
    public func putAsideEvents(sink: String? = nil) async throws -> [PutAsideEvent] {
        try await database.read { db in
            let resend = try db.columns(in: "put_aside").contains { $0.name == "resend_asked_at" }
            return try Row.fetchAll(
                db,
                sql: """
                    SELECT sink, source, id, type, reason, put_aside_at, json, \(resend ? "resend_asked_at" : "NULL")
                    FROM put_aside WHERE ?1 IS NULL OR sink = ?1 ORDER BY put_aside_at, position
                    """, arguments: [sink]
            ).map { row in
                PutAsideEvent(sink: row[0], source: row[1], id: row[2], type: row[3], reason: row[4],
                              putAsideAt: Date(timeIntervalSince1970: row[5]), json: row[6],
                              resendAskedAt: (row[7] as Double?).map(Date.init(timeIntervalSince1970:)))
            }
        }
    }

    /// Asks for put-aside events to be offered to their sink again: all of them, those of `sink`, or those with
    /// `ids`. Returns how many were asked for; the sink's forwarder sends them once its backlog is delivered.
    public func askResend(sink: String?, ids: [String]) async throws -> Int {
        let now = Date().timeIntervalSince1970
        return try await writeWithReserve { db in
            guard try db.columns(in: "put_aside").contains(where: { $0.name == "resend_asked_at" }) else {
                throw GatewayError(.storeMissing, "the outbox \(self.path) is from an older version: start the gateway "
                                   + "once to bring it up to date")
            }
            let idsJSON = String(decoding: try JSONEncoder().encode(ids), as: UTF8.self)
            try db.execute(
                sql: """
                    UPDATE put_aside SET resend_asked_at = ?
                    WHERE (?2 IS NULL OR sink = ?2) AND (?3 = '[]' OR id IN (SELECT value FROM json_each(?3)))
                    """, arguments: [now, sink, idsJSON])
            return db.changesCount
        }
    }

    /// Up to `limit` put-aside events of `sink` asked to be sent again, oldest first, as they are delivered.
    public func resendAsked(sink: String, limit: Int) async throws -> [OutboundEvent] {
        try await database.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT position, source, id, type, json_extract(json, '$.time'), json_extract(json, '$.subject'),
                           CAST(json_extract(json, '$.sequence') AS INTEGER), json
                    FROM put_aside WHERE sink = ? AND resend_asked_at IS NOT NULL ORDER BY position LIMIT ?
                    """, arguments: [sink, limit]
            ).map { row in
                OutboundEvent(position: row[0], source: row[1], id: row[2], type: row[3], time: row[4],
                              subject: row[5], sequence: row[6], json: row[7])
            }
        }
    }

    /// The sink took put-aside events sent again: they are no longer held for it, and count as sent.
    public func resent(_ events: [OutboundEvent], sink: String) async throws {
        let now = Date().timeIntervalSince1970
        try await writeWithReserve { db in
            for event in events {
                try db.execute(sql: "DELETE FROM put_aside WHERE sink = ? AND position = ?", arguments: [sink, event.position])
            }
            try db.execute(
                sql: """
                    UPDATE sink_state SET put_aside = max(put_aside - ?2, 0), sent = sent + ?2, last_success_at = ?3
                    WHERE sink = ?1
                    """, arguments: [sink, events.count, now])
        }
    }

    /// The sink refused put-aside events sent again: they stay put aside with the new reason, no longer asked for.
    public func refusedAgain(_ events: [OutboundEvent], sink: String, reason: String) async throws {
        let now = Date().timeIntervalSince1970
        try await writeWithReserve { db in
            for event in events {
                try db.execute(
                    sql: """
                        UPDATE put_aside SET reason = ?, put_aside_at = ?, resend_asked_at = NULL
                        WHERE sink = ? AND position = ?
                        """, arguments: [reason, now, sink, event.position])
            }
            try db.execute(
                sql: "UPDATE sink_state SET last_error = ?, last_error_at = ? WHERE sink = ?",
                arguments: [reason, now, sink])
        }
    }

    /// The books of every sink the outbox knows (or of `sinks`, in that order).
    public func sinkReports(_ sinks: [String]? = nil) async throws -> [SinkReport] {
        try await database.read { db in
            let names = try sinks ?? String.fetchAll(db, sql: "SELECT sink FROM sink_state ORDER BY sink")
            return try names.map { sink in
                let position = try Int64.fetchOne(
                    db, sql: "SELECT position FROM sink_cursor WHERE sink = ?", arguments: [sink]) ?? 0
                let pending = try Row.fetchOne(
                    db, sql: "SELECT count(*), min(committed_at) FROM event WHERE position > ?", arguments: [position])
                let state = try Row.fetchOne(
                    db, sql: """
                        SELECT sent, failed, put_aside, last_success_at, last_error, last_error_at
                        FROM sink_state WHERE sink = ?
                        """, arguments: [sink])
                return SinkReport(
                    sink: sink, backlog: pending?[0] ?? 0,
                    oldestUnforwardedAt: (pending?[1] as Double?).map(Date.init(timeIntervalSince1970:)),
                    sent: state?[0] ?? 0, failed: state?[1] ?? 0, putAside: state?[2] ?? 0,
                    lastSuccessAt: (state?[3] as Double?).map(Date.init(timeIntervalSince1970:)),
                    lastError: state?[4],
                    lastErrorAt: (state?[5] as Double?).map(Date.init(timeIntervalSince1970:)))
            }
        }
    }

    /// Records what the gateway believes about its devices now (the CLI's `status` reads it while the daemon runs),
    /// at `clock`'s reading.
    public func recordDeviceStates(_ states: [DeviceState], clock: any HallClock) async throws {
        let encoder = JSONEncoder()
        let rows = try states.map { state in
            (state, String(decoding: try encoder.encode(state.counters), as: UTF8.self),
             try state.lastShown.map { String(decoding: try encoder.encode($0), as: UTF8.self) })
        }
        try await writeWithReserve { db in
            // Read in the write, as every recorded time is: writes run one at a time, so a reading taken before a
            // clock step cannot land after the reset that followed the step and raise the mark again.
            let time = clock.now
            for (state, counters, lastShown) in rows {
                try db.cachedStatement(sql: """
                    INSERT OR REPLACE INTO device_status
                        (device, bus, online, last_seen, offline_reason, counters, updated_at, last_shown)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """).execute(arguments: [
                        state.device, state.bus, state.online, state.lastSeen?.timeIntervalSince1970, state.offlineReason,
                        counters, time.timeIntervalSince1970, lastShown,
                    ])
            }
            try Self.raiseRecordedTime(db, to: time)
        }
    }

    /// Writes what `device` was last sent over its states' record, as `current` reads it in the write (writes run one
    /// at a time: the last writes the newest); before the first record of its states, those write it.
    public func recordLastShown(of device: String, current: @escaping @Sendable () -> ShownOnBoard?) async throws {
        try await writeWithReserve { db in
            let lastShown = try current().map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
            try db.execute(sql: "UPDATE device_status SET last_shown = ? WHERE device = ?", arguments: [lastShown, device])
        }
    }

    /// The latest instant the gateway wrote down under its clock (its devices' states, every 2 s while it runs; a day's
    /// check), never lowered by a later record under a clock that is behind; nil for a new outbox.
    public func lastRecordedTime() async throws -> Date? {
        try await database.read(Self.recordedTime)
    }

    private static func recordedTime(_ db: Database) throws -> Date? {
        try Double.fetchOne(db, sql: "SELECT latest FROM recorded_clock").map { Date(timeIntervalSince1970: $0) }
    }

    /// Makes `clock`'s reading the latest recorded: the clock now reads right (synchronised or set), and a time
    /// recorded under a clock that ran ahead must not hold the next start.
    public func resetRecordedTime(clock: any HallClock) async throws {
        try await writeWithReserve { db in
            try db.execute(sql: "INSERT OR REPLACE INTO recorded_clock (id, latest) VALUES (1, ?)",
                           arguments: [clock.now.timeIntervalSince1970])
        }
    }

    private static func raiseRecordedTime(_ db: Database, to time: Date) throws {
        try db.execute(sql: """
            INSERT INTO recorded_clock (id, latest) VALUES (1, ?)
            ON CONFLICT (id) DO UPDATE SET latest = max(latest, excluded.latest)
            """, arguments: [time.timeIntervalSince1970])
    }

    /// The ticket numbers last issued on `day` (YYYY-MM-DD), by prefix.
    public func ticketNumbers(day: String) async throws -> [String: Int] {
        try await database.read { db in
            Dictionary(uniqueKeysWithValues: try Row.fetchAll(
                db, sql: "SELECT prefix, number FROM ticket_counter WHERE day = ?", arguments: [day]
            ).map { ($0[0] as String, $0[1] as Int) })
        }
    }

    /// The latest day (YYYY-MM-DD) ticket numbers were saved for.
    public func newestTicketDay() async throws -> String? {
        try await database.read { db in try String.fetchOne(db, sql: "SELECT max(day) FROM ticket_counter") }
    }

    /// Records the last ticket number issued on `day` for `prefix`; older days are forgotten.
    public func saveTicketNumber(day: String, prefix: String, number: Int) async throws {
        try await writeWithReserve { db in
            try db.execute(sql: "DELETE FROM ticket_counter WHERE day < ?", arguments: [day])
            // Two tickets saved at once may commit out of order: the higher number stays.
            try db.execute(sql: """
                INSERT INTO ticket_counter (day, prefix, number) VALUES (?, ?, ?)
                ON CONFLICT (day, prefix) DO UPDATE SET number = max(number, excluded.number)
                """, arguments: [day, prefix, number])
        }
    }

    /// Records that the pre-opening run of `day` (YYYY-MM-DD) starts, at `clock`'s reading; false when it ran already
    /// that day (the gateway restarted before opening). Older days are forgotten.
    public func beginDayCheck(day: String, clock: any HallClock) async throws -> Bool {
        try await writeWithReserve { db in
            let time = clock.now
            try db.execute(sql: "DELETE FROM hall_day_check WHERE day < ?", arguments: [day])
            try db.execute(sql: "INSERT OR IGNORE INTO hall_day_check (day, checked_at) VALUES (?, ?)",
                           arguments: [day, time.timeIntervalSince1970])
            let begun = db.changesCount > 0
            try Self.raiseRecordedTime(db, to: time)
            return begun
        }
    }

    /// The result an opening's or closing's event (`id`) was told with, if it was.
    public func hallDayEventResult(id: String) async throws -> String? {
        try await database.read { db in
            try String.fetchOne(db, sql: "SELECT result FROM hall_day_event WHERE id = ?", arguments: [id])
        }
    }

    /// Notes that the opening's or closing's event `id` was told with `result`; the last 50 are kept.
    public func recordHallDayEvent(id: String, result: String) async throws {
        try await writeWithReserve { db in
            try db.execute(sql: "INSERT OR REPLACE INTO hall_day_event (id, result, told_at) VALUES (?, ?, ?)",
                           arguments: [id, result, Date().timeIntervalSince1970])
            try db.execute(sql: """
                DELETE FROM hall_day_event WHERE id NOT IN (SELECT id FROM hall_day_event ORDER BY told_at DESC LIMIT 50)
                """)
        }
    }

    /// Notes that `board` is held on after closing until `until`.
    public func recordBoardHold(_ board: String, until: Date) async throws {
        try await writeWithReserve { db in
            try db.execute(sql: "INSERT OR REPLACE INTO board_hold (board, until) VALUES (?, ?)",
                           arguments: [board, until.timeIntervalSince1970])
        }
    }

    /// Forgets the hold on `board` (nil: every board's).
    public func forgetBoardHold(_ board: String?) async throws {
        try await writeWithReserve { db in
            if let board {
                try db.execute(sql: "DELETE FROM board_hold WHERE board = ?", arguments: [board])
            } else {
                try db.execute(sql: "DELETE FROM board_hold")
            }
        }
    }

    /// The boards held on after closing, with when their holds end.
    public func boardHolds() async throws -> [String: Date] {
        try await database.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT board, until FROM board_hold")
            return Dictionary(rows.map { ($0[0] as String, Date(timeIntervalSince1970: $0[1] as Double)) },
                              uniquingKeysWith: { first, _ in first })
        }
    }

    /// Keeps the staff id set on `device` (none: forgets it).
    public func record(staff: String?, device: String) async throws {
        try await writeWithReserve { db in
            if let staff {
                try db.execute(sql: "INSERT OR REPLACE INTO pad_staff (device, staff) VALUES (?, ?)", arguments: [device, staff])
            } else {
                try db.execute(sql: "DELETE FROM pad_staff WHERE device = ?", arguments: [device])
            }
        }
    }

    /// The staff ids set on pads, by device.
    public func padStaff() async throws -> [String: String] {
        try await database.read { db in
            Dictionary(try Row.fetchAll(db, sql: "SELECT device, staff FROM pad_staff").map { ($0[0], $0[1]) },
                       uniquingKeysWith: { first, _ in first })
        }
    }

    /// How the gateway's last run ended: whether it stopped as asked (its `hall.gateway.stopped` is the newest of
    /// `source`'s events, the gateway's own; not after a power cut, a kill or a crash), and the latest time it recorded
    /// (its devices' states, every 2 s while it ran); nil when the outbox keeps none of its events. Synchronous: read at
    /// the start, before the start commits anything.
    public func lastRun(source: String) throws -> (stoppedCleanly: Bool, lastRecorded: Date?)? {
        try database.read { db in
            // By number, not position: a salvage queues the events it took from the local store behind the rest.
            guard let type = try String.fetchOne(
                db, sql: "SELECT type FROM event WHERE source = ? ORDER BY sequence DESC, position DESC LIMIT 1",
                arguments: [source])
            else { return nil }
            return (type == HallEventType.gatewayStopped, try Self.recordedTime(db))
        }
    }

    /// Keeps a command received over MQTT until `release`; returns its number. Synchronous: called on the network
    /// thread before the message is handed on, so that it is on disk before anything can run it.
    public func hold(command payload: [UInt8], at time: Date = Date()) throws -> Int64 {
        try writeWithReserveBlocking { db in
            try db.execute(sql: "INSERT INTO held_command (payload, received_at) VALUES (?, ?)",
                           arguments: [Data(payload), time.timeIntervalSince1970])
            return db.lastInsertedRowID
        }
    }

    /// Forgets a held command: it ran (or was refused) and its result went out.
    public func release(command seq: Int64) async throws {
        try await writeWithReserve { db in
            try db.execute(sql: "DELETE FROM held_command WHERE seq = ?", arguments: [seq])
        }
    }

    /// The commands held and not released: received before a crash, not run. Oldest first.
    public func heldCommands() async throws -> [(seq: Int64, payload: [UInt8], receivedAt: Date?)] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, payload, received_at FROM held_command ORDER BY seq").map {
                ($0[0], [UInt8]($0[1] as Data), ($0[2] as Double?).map(Date.init(timeIntervalSince1970:)))
            }
        }
    }

    /// The request and result (JSON) of the command run for idempotency `key`, if it is kept (the request is nil for
    /// a key kept by an older version). Kept until `forgetCommandKeys`: not judged by the clock here, which may have
    /// been set forward a moment ago, before the keys recorded under the old time were moved.
    public func commandResult(key: String) async throws -> (request: String?, result: String)? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT request, result FROM command_key WHERE key = ?",
                             arguments: [Fingerprint.padded(key)]).map { ($0[0], $0[1]) }
        }
    }

    /// Forgets the idempotency keys recorded before `time`.
    func forgetCommandKeys(before time: Date) async throws {
        try await writeWithReserve { db in try Self.forgetCommandKeys(before: time, in: db) }
    }

    /// `forgetCommandKeys`, while the gateway starts.
    func forgetCommandKeysBlocking(before time: Date) throws {
        try writeWithReserveBlocking { db in try Self.forgetCommandKeys(before: time, in: db) }
    }

    private static func forgetCommandKeys(before time: Date, in db: Database) throws {
        try db.execute(sql: "DELETE FROM command_key WHERE created_at < ?", arguments: [time.timeIntervalSince1970])
    }

    /// The wall clock was set forward: the idempotency keys this run recorded under the old time are moved to the new
    /// one, so that their day of retries is a day of real time (a box booted with a wrong clock and corrected by NTP
    /// would otherwise forget them at once, and run a retry again). Keys of runs before are not: their time was that
    /// of their own clock. A clock set back leaves them younger than they are, kept for longer: harmless, not moved.
    func clockWasSet(_ step: WallClockWatch.Step) async throws {
        guard step.seconds > 0 else { return }
        try await writeWithReserve { db in
            try db.execute(sql: "UPDATE command_key SET created_at = created_at + ? WHERE created_at BETWEEN ? AND ?",
                           arguments: [step.seconds, step.runStarted.timeIntervalSince1970,
                                       step.unsetReading.timeIntervalSince1970])
        }
    }

    /// Keeps the request and result (JSON) of the command run for `key`, recorded at `time` (nil: now, read in the
    /// write, so that a step of the clock is either before it, and it carries the new time, or after, and it is moved).
    public func recordCommandResult(key: String, request: String, json: String, at time: Date? = nil) async throws {
        try await writeWithReserve { db in
            try Self.keep(key: Fingerprint.padded(key), request: request, json: json, at: time ?? Date(), in: db)
            // Its command is settled once its own event is committed too (else the next start commits the draft).
            try db.execute(sql: "DELETE FROM unsettled_command WHERE key = ? AND committed = 1",
                           arguments: [Fingerprint.padded(key)])
        }
    }

    /// Keeps `draft`, the event of a command under way as it stands if the gateway dies before the command's own
    /// event is committed; with the idempotency key and request it ran for. Replaces an earlier draft of it.
    public func recordUnsettled(_ draft: CloudEvent, key: String?, request: String?) async throws {
        let json = try draft.jsonLine()
        try await writeWithReserve { db in
            try db.execute(sql: "INSERT OR REPLACE INTO unsettled_command (source, id, key, request, draft) VALUES (?, ?, ?, ?, ?)",
                           arguments: [draft.source, draft.id, key.map(Fingerprint.padded), request, json])
        }
    }

    /// The ids of the commands under way or not yet settled (`recordUnsettled`), oldest first.
    public func unsettledCommands() throws -> [String] {
        try database.read { db in try String.fetchAll(db, sql: "SELECT id FROM unsettled_command ORDER BY rowid") }
    }

    /// Settles the commands a gateway that stopped without warning left under way, before anything else runs: each
    /// draft whose own event was never committed is (its time that of the draft), and a keyed command's result is
    /// kept for its key, from its own event or the draft, so that a retry gets it instead of running again. Returns
    /// the drafts committed, and how many records could not be read (dropped). Synchronous: the daemon calls it while
    /// it starts, before the API and MQTT take commands.
    public func settleInterrupted(at time: Date = Date()) throws
        -> (committed: [CloudEvent], unreadable: Int) {
        try writeWithReserveBlocking { db in
            var committed: [CloudEvent] = []
            var unreadable = 0
            let rows = try Row.fetchAll(db, sql: "SELECT source, id, key, request, draft, committed FROM unsettled_command")
            for row in rows {
                let (source, id, key, request): (String, String, String?, String?) = (row[0], row[1], row[2], row[3])
                try db.execute(sql: "DELETE FROM unsettled_command WHERE source = ? AND id = ?", arguments: [source, id])
                guard let draftJSON = row[4] as String?, let event = try? CloudEvent.decode(json: Data(draftJSON.utf8)) else {
                    unreadable += 1
                    continue
                }
                if row[5] as Int64? != 1, let inserted = try Self.insert(event, committedAt: time.timeIntervalSince1970, in: db) {
                    committed.append(inserted)
                }
                guard let key, let request, case .command(let executed) = event.data else { continue }
                let known = try Bool.fetchOne(db, sql: "SELECT 1 FROM command_key WHERE key = ?", arguments: [key]) ?? false
                guard !known else { continue }
                let result = CommandResult(
                    id: executed.commandId, command: executed.command, window: executed.window, ticket: executed.ticket,
                    status: CommandResult.Status(rawValue: executed.result) ?? .refused, devices: executed.devices, eventId: id)
                try Self.keep(key: key, request: request, json: String(decoding: try JSONEncoder().encode(result), as: UTF8.self),
                              at: time, in: db)
            }
            return (committed, unreadable)
        }
    }

    /// Keeps a command's result under its key's fingerprint (`stored`): keys come from clients, and one may hold
    /// what a person typed.
    private static func keep(key stored: String, request: String, json: String, at time: Date, in db: Database) throws {
        try db.execute(sql: "INSERT OR REPLACE INTO command_key (key, request, result, created_at) VALUES (?, ?, ?, ?)",
                       arguments: [stored, request, json, time.timeIntervalSince1970])
    }

    /// The device states last recorded, and when.
    public func deviceStates() async throws -> [(state: DeviceState, updatedAt: Date)] {
        try await database.read { db in
            // A file last written before v18, read by `status` without migrating it: no last shown.
            let lastShown = try db.columns(in: "device_status").contains { $0.name == "last_shown" } ? "last_shown" : "NULL"
            return try Row.fetchAll(db, sql: """
                SELECT device, bus, online, last_seen, offline_reason, counters, updated_at, \(lastShown) FROM device_status
                ORDER BY bus, device
                """).map { row in
                let decoder = JSONDecoder()
                let counters = try decoder.decode(DeviceCounters.self, from: Data((row[5] as String).utf8))
                var state = DeviceState(device: row[0], bus: row[1], online: row[2],
                                        lastSeen: (row[3] as Double?).map(Date.init(timeIntervalSince1970:)),
                                        offlineReason: row[4], counters: counters)
                // One that cannot be read (a later version's) is not known: the states are read all the same.
                state.lastShown = (row[7] as String?).flatMap { try? decoder.decode(ShownOnBoard.self, from: Data($0.utf8)) }
                return (state, Date(timeIntervalSince1970: row[6]))
            }
        }
    }

    /// How many events a sink has not confirmed yet.
    public func backlog(sink: String) async throws -> Int {
        try await sinkReports([sink]).first?.backlog ?? 0
    }

    /// How many events were ever committed: the event table's autoincrement counter, which pruning and drops at
    /// the disk budget leave alone.
    public func committedTotal() async throws -> Int64 {
        try await database.read { db in
            try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'event'") ?? 0
        }
    }

    /// How many events the outbox holds.
    public func count() async throws -> Int {
        try await database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM event") ?? 0 }
    }

    /// The bytes the database's live pages take (the disk budget's measure).
    public func usedBytes() async throws -> Int64 {
        try await database.read { db in
            let pageSize = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
            let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            let free = try Int64.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
            return (pages - free) * pageSize
        }
    }

    /// Deletes events every sink has confirmed once they are older than the retention. Returns how many.
    /// A transaction per `batch` events: after days of downtime a whole week may be due at once, and the
    /// commits of new events must not wait behind its deletion on a slow SD card.
    @discardableResult
    public func prune(now: Date = Date(), batch: Int = 1000) async throws -> Int {
        let cutoff = now.timeIntervalSince1970 - Double(policy.retention.components.seconds)
        let batch = max(batch, 1)
        var pruned = 0
        while true {
            let deleted = try await writeWithReserve { db in
                let delivered = try Self.deliveredByAll(db)
                try db.execute(sql: """
                    DELETE FROM event WHERE position IN
                        (SELECT position FROM event WHERE position <= ? AND committed_at < ? ORDER BY position LIMIT ?)
                    """, arguments: [delivered, cutoff, batch])
                return db.changesCount
            }
            pruned += deleted
            if deleted < batch { return pruned }
        }
    }

    // MARK: Salvage

    /// Per source, the numbers not read back among those after the last read back that every sink had, up to its
    /// counter: one range a source, from its first to its last such number, `count` of them (as a drop report's). A
    /// source's undelivered events are the last it numbered, and at most `unreadable` of them were lost: a source
    /// whose delivered rows were pruned is not reported from 1, but its last few may be.
    static func notReadBack(counters: [String: Int64], deliveredThrough: [String: Int64],
                            readUndelivered: [String: Set<Int64>], unreadable: Int) -> [SequenceRange] {
        var ranges: [SequenceRange] = []
        for (source, last) in counters.sorted(by: { $0.key < $1.key }) {
            let read = readUndelivered[source] ?? []
            let from = max((deliveredThrough[source] ?? 0) + 1, last - Int64(read.count + unreadable) + 1)
            guard from <= last else { continue }
            let missing = (from...last).filter { !read.contains($0) }
            if let first = missing.first, let end = missing.last {
                ranges.append(SequenceRange(source: source, first: first, last: end, count: missing.count))
            }
        }
        return ranges
    }

    /// What the unreadable rows mean for the stores, for the salvage's log line: nothing when none was unreadable.
    static func unreadableSummary(_ report: SalvageReport) -> String {
        guard report.unreadable > 0, let undelivered = report.unreadableUndelivered else { return "" }
        guard undelivered > 0 else { return ", all of them delivered everywhere before" }
        let ranges = report.notReadBack ?? []
        let named = ranges.prefix(8).map { range in
            "\(range.source) \(range.first)" + (range.last > range.first ? "–\(range.last)" : "")
                + (range.count < range.last - range.first + 1 ? " (\(range.count) of them)" : "")
        }
        let taken = report.takenFromLocalStore ?? 0
        let lost = ranges.isEmpty
            ? (taken > 0 ? "" : "; which events they held cannot be told (the sources' counters are unreadable)")
            : "; not read back, lost to a store that lacks them: " + named.joined(separator: ", ")
                + (ranges.count > 8 ? " and \(ranges.count - 8) more sources" : "")
        return ", \(undelivered) of them not delivered everywhere"
            + (taken > 0 ? "; \(taken) events queued again from the local event store" : "")
            + (report.localStoreUnread.map { "; the local event store could not be read: \($0)" } ?? "") + lost
    }

    /// The events of `ranges` that a local event store in `stores` holds and that were not read back, as JSON; and
    /// why a store could not be read. Only from a store that is this outbox's: within and beside each range, an event
    /// that was read back must be there under the same id (one at least), and no number held twice (a store kept when
    /// the state directory was emptied holds both histories under the same numbers). From `since` on: the store's
    /// time index, not every event of a source over its retention.
    static func copies(of ranges: [SequenceRange], readIds: [String: [Int64: String]], since: String?,
                       in stores: [String]) -> (found: [String], unread: [String]) {
        var found: [String] = []
        var unread: [String] = []
        var taken: Set<String> = []
        let sequence = "json_extract(json, '$.sequence')"
        for path in stores where !ranges.isEmpty && FileManager.default.fileExists(atPath: path) {
            do {
                let store = try readOnlyDatabase(at: path, missing: path)
                for range in ranges {
                    var arguments: StatementArguments = [range.source, CloudEvent.sequenceString(range.first - 1),
                                                         CloudEvent.sequenceString(range.last + 1)]
                    if let since { arguments += [since] }
                    let rows = try store.read { db in
                        try Row.fetchAll(db, sql: """
                            SELECT id, json, \(sequence) FROM event WHERE source = ? AND \(sequence) BETWEEN ? AND ?
                            \(since == nil ? "" : "AND time >= ?")
                            """, arguments: arguments)
                    }
                    var held: [Int64: [(id: String, json: String)]] = [:]
                    for row in rows {
                        if let id = row[0] as String?, let json = row[1] as String?,
                           let number = (row[2] as String?).flatMap({ Int64($0) }) { held[number, default: []].append((id, json)) }
                    }
                    let known = readIds[range.source] ?? [:]
                    var (agrees, disagrees) = (false, false)
                    for number in (range.first - 1)...(range.last + 1) {
                        let here = held[number] ?? []
                        if here.count > 1 { disagrees = true }
                        if let read = known[number], let id = here.first?.id {
                            if id == read { agrees = true } else { disagrees = true }
                        }
                    }
                    guard agrees, !disagrees else { continue }
                    for number in range.first...range.last where known[number] == nil {
                        if let event = held[number]?.first, taken.insert("\(range.source) \(number)").inserted {
                            found.append(event.json)
                        }
                    }
                }
            } catch {
                unread.append("\(path): \(GatewayError.oneLine("\(error)"))")
            }
        }
        return (found, unread)
    }

    /// Reads what it can of a damaged outbox and queues again every event some sink had not confirmed.
    /// Events keep their ids and sequence numbers; each source's counter continues after the highest seen.
    func salvage(from damagedPath: String, damage: String) throws -> SalvageReport {
        var report = SalvageReport(damagedPath: damagedPath, recovered: 0, alreadyDelivered: 0, unreadable: 0,
                                   damage: damage)
        var configuration = Configuration()
        configuration.readonly = true
        let damaged: DatabaseQueue
        do {
            damaged = try DatabaseQueue(path: damagedPath, configuration: configuration)
        } catch {
            (report.unreadable, report.unreadableUndelivered) = (-1, -1)
            return report
        }
        // The sinks' cursors: an event at or before the lowest is held by every sink. A registered sink that
        // never delivered has no cursor and holds nothing; when the books cannot be read, nothing is assumed held.
        let delivered: Int64 = (try? damaged.read { db in try Self.deliveredByAll(db) }) ?? 0
        let columns = (try? damaged.read { db in try db.columns(in: "event").map(\.name) }) ?? []
        let hasColumns = columns.contains("committed_at")
        let highest: Int64? = (try? damaged.read { db in
            try Int64.fetchOne(db, sql: "SELECT max(position) FROM event")
        }) ?? (try? damaged.read { db in
            try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'event'")
        }) ?? nil

        let columnsRead = hasColumns ? "position, json, committed_at" : "position, json, 0"
        // One row by `=`: a range of one steps on to the next row to end the scan, and the row before a damaged page
        // failed with it (from a trial: an undelivered event lost, its row readable).
        let selectRange = "SELECT \(columnsRead) FROM event WHERE position BETWEEN ? AND ? ORDER BY position"
        let selectOne = "SELECT \(columnsRead) FROM event WHERE position = ?"
        var rows: [(json: String, event: CloudEvent, committedAt: Double)] = []
        // Every sequence number seen, delivered rows included: the counters must continue past all of them.
        var highestSequence: [String: Int64] = [:]
        // Per source, the highest number read that every sink had, and the numbers read that some sink had not.
        var deliveredThrough: [String: Int64] = [:]
        var readUndelivered: [String: Set<Int64>] = [:]
        var readIds: [String: [Int64: String]] = [:]
        // RFC 3339 UTC with milliseconds: in order as text.
        var (newestDelivered, oldestUndelivered): (String?, String?) = (nil, nil)
        var unreadableUndelivered = 0
        func unreadableRow(at position: Int64?) {
            report.unreadable += 1
            if (position ?? .max) > delivered { unreadableUndelivered += 1 }
        }
        func read(_ range: ClosedRange<Int64>) -> Bool {
            do {
                let found = try damaged.read { db in
                    range.count == 1
                        ? try Row.fetchAll(db, sql: selectOne, arguments: [range.lowerBound])
                        : try Row.fetchAll(db, sql: selectRange, arguments: [range.lowerBound, range.upperBound])
                }
                for row in found {
                    // Optional reads: a damaged page may hold NULLs or values of the wrong type.
                    guard let position = row[0] as Int64?, let json = row[1] as String?,
                          let event = try? CloudEvent.decode(json: Data(json.utf8))
                    else {
                        unreadableRow(at: row[0] as Int64?)
                        continue
                    }
                    let sequence = event.sequence.flatMap { Int64($0) } ?? 0
                    highestSequence[event.source] = max(highestSequence[event.source] ?? 0, sequence)
                    readIds[event.source, default: [:]][sequence] = event.id
                    if position <= delivered {
                        report.alreadyDelivered += 1
                        deliveredThrough[event.source] = max(deliveredThrough[event.source] ?? 0, sequence)
                        newestDelivered = Swift.max(newestDelivered ?? event.time, event.time)
                    } else {
                        rows.append((json, event, (row[2] as Double?) ?? 0))
                        readUndelivered[event.source, default: []].insert(sequence)
                        oldestUndelivered = Swift.min(oldestUndelivered ?? event.time, event.time)
                    }
                }
                return true
            } catch {
                return false
            }
        }
        // Chunks first; a chunk that fails is read row by row, so one bad page costs only its rows.
        var start: Int64 = 1
        let chunk: Int64 = 1000
        while start <= highest ?? 0 {
            let range = start...min(highest ?? 0, start + chunk - 1)
            if !read(range) {
                for position in range where !read(position...position) { unreadableRow(at: position) }
            }
            start += chunk
        }
        // Sequence counters continue after everything the damaged file numbered, read or not.
        let counters = (try? damaged.read { old in
            try Row.fetchAll(old, sql: "SELECT source, last FROM source_sequence")
        }) ?? []
        for row in counters {
            guard let source = row[0] as String?, let last = row[1] as Int64? else { continue }
            highestSequence[source] = max(highestSequence[source] ?? 0, last)
        }
        func notReadBack() -> [SequenceRange] {
            unreadableUndelivered == 0 ? [] : Self.notReadBack(
                counters: highestSequence, deliveredThrough: deliveredThrough, readUndelivered: readUndelivered,
                unreadable: unreadableUndelivered)
        }
        // What a local event store on this box holds of the rest (from a trial: the central store lost what the
        // gateway's own local store had). The lost were committed after the newest delivered or the oldest undelivered
        // event read; a day's margin for a clock set back.
        let since = [newestDelivered, oldestUndelivered].compactMap { $0 }.min()
            .flatMap(EventTime.parse).map { EventTime.format($0.addingTimeInterval(-86_400)) }
        let (found, unread) = Self.copies(of: notReadBack(), readIds: readIds, since: since, in: policy.localCopies)
        let copies = found.compactMap { json in (try? CloudEvent.decode(json: Data(json.utf8))).map { (json, $0) } }
        report.unreadableUndelivered = unreadableUndelivered
        report.localStoreUnread = unread.isEmpty ? nil : unread.joined(separator: "; ")
        // Whatever columns the damaged file's version had: one it lacks reads as nil.
        let cursors = (try? damaged.read { db in try Row.fetchAll(db, sql: "SELECT * FROM device_cursor") }) ?? []
        // Not retried on a full disk: it fills the report as it goes (and a copy being salvaged into has no reserve).
        try database.write { db in
            // With its original id, sequence number and JSON: the stores know it by them.
            func keep(_ json: String, _ event: CloudEvent, committedAt: Double) throws -> Bool {
                try db.execute(
                    sql: """
                        INSERT OR IGNORE INTO event (source, id, type, json, time, subject, sequence, committed_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [event.source, event.id, event.type, json, event.time, event.subject,
                                event.sequence.flatMap { Int64($0) } ?? 0, committedAt])
                return db.changesCount > 0
            }
            for (json, event, committedAt) in rows where try keep(json, event, committedAt: committedAt) {
                report.recovered += 1
            }
            var taken = 0
            for (json, event) in copies where try keep(json, event, committedAt: Date().timeIntervalSince1970) {
                taken += 1
                readUndelivered[event.source, default: []].insert(event.sequence.flatMap { Int64($0) } ?? 0)
            }
            report.takenFromLocalStore = taken
            report.notReadBack = notReadBack()
            for (source, last) in highestSequence {
                try db.execute(
                    sql: """
                        INSERT INTO source_sequence (source, last) VALUES (?, ?)
                        ON CONFLICT (source) DO UPDATE SET last = max(last, excluded.last)
                        """, arguments: [source, last])
            }
            for row in cursors {
                guard let device = row["device"] as String?, let boot = row["boot_id"] as Int64?,
                      let consumed = row["consumed"] as Int64?
                else { continue }
                try db.execute(
                    sql: """
                        INSERT OR REPLACE INTO device_cursor (device, boot_id, consumed, restarts, staff_owed)
                        VALUES (?, ?, ?, ?, ?)
                        """,
                    arguments: [device, boot, consumed, (row["restarts"] as Int64?) ?? 0,
                                (row["staff_owed"] as Bool?) ?? false])
            }
            // What else the books hold, as far as it can be read: the drop log (reports not yet sent, the total, its
            // numbering), the commands' idempotency keys (a command retried after the salvage must not run twice) and
            // drafts, the day's ticket numbers (no second A001) and the hall days already checked. What the sinks put
            // aside stays in the damaged file: its positions would collide with the new file's.
            let carried: [(select: String, insert: String)] = [
                ("SELECT id, dropped_at, count, ranges, reported FROM drop_log",
                 "INSERT OR IGNORE INTO drop_log (id, dropped_at, count, ranges, reported) VALUES (?, ?, ?, ?, ?)"),
                ("SELECT key, request, result, created_at FROM command_key",
                 "INSERT OR IGNORE INTO command_key (key, request, result, created_at) VALUES (?, ?, ?, ?)"),
                // A ticket being printed when the power went: its draft is settled at the start as any other's.
                ("SELECT source, id, key, request, draft, committed FROM unsettled_command",
                 "INSERT OR IGNORE INTO unsettled_command (source, id, key, request, draft, committed) VALUES (?, ?, ?, ?, ?, ?)"),
                ("SELECT day, prefix, number FROM ticket_counter",
                 "INSERT OR REPLACE INTO ticket_counter (day, prefix, number) VALUES (?, ?, ?)"),
                ("SELECT id, result, told_at FROM hall_day_event",
                 "INSERT OR IGNORE INTO hall_day_event (id, result, told_at) VALUES (?, ?, ?)"),
                // A board held on after closing stays on through a restart that salvaged the file.
                ("SELECT board, until FROM board_hold", "INSERT OR REPLACE INTO board_hold (board, until) VALUES (?, ?)"),
                // And what each board was last sent, shown again after a power cut (none from a file before v18).
                ("SELECT device, bus, online, last_seen, offline_reason, counters, updated_at, last_shown FROM device_status",
                 """
                    INSERT OR REPLACE INTO device_status
                        (device, bus, online, last_seen, offline_reason, counters, updated_at, last_shown)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """),
                ("SELECT day, checked_at FROM hall_day_check",
                 "INSERT OR IGNORE INTO hall_day_check (day, checked_at) VALUES (?, ?)"),
                ("SELECT id, latest FROM recorded_clock",
                 "INSERT OR REPLACE INTO recorded_clock (id, latest) VALUES (?, ?)"),
                // A damaged file from before the mark: its latest rows instead.
                ("""
                    SELECT 1, max(recorded) FROM (SELECT max(updated_at) AS recorded FROM device_status
                                                  UNION ALL SELECT max(checked_at) FROM hall_day_check)
                    """,
                 "INSERT OR IGNORE INTO recorded_clock (id, latest) VALUES (?, ?)"),
            ]
            for (select, insert) in carried {
                for row in (try? damaged.read { old in try Row.fetchAll(old, sql: select) }) ?? [] {
                    try? db.execute(sql: insert, arguments: StatementArguments(row.databaseValues))
                }
            }
            // Keys a damaged file from before the fingerprints kept as text: found again under their fingerprint.
            let fingerprinted = try? damaged.read { old in
                try Bool.fetchOne(old, sql: "SELECT 1 FROM grdb_migrations WHERE identifier = ?",
                                  arguments: [Self.keyFingerprintsMigration]) ?? false
            }
            switch fingerprinted {
            case false?: try Self.fingerprintKeys(in: db)
            case nil: try Self.fingerprintKeys(in: db, unlessShapedAsOne: true)
            case true?: break
            }
        }
        // Not even the extent of the event table could be read: how much is lost cannot be told (-1).
        if highest == nil { (report.unreadable, report.unreadableUndelivered) = (-1, -1) }
        return report
    }
}
