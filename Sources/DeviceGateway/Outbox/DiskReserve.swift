import Foundation
import GRDB
import Logging
import Synchronization

/// Room kept on the outbox's disk against a full one: a file of allocated blocks beside the outbox, given back when
/// SQLite says the disk is full, so that the hall goes on — commits, ticket numbers, a start — while a technician makes
/// room (from a trial: a gateway restarted on a full disk did not start, ticket numbers were refused, and commands
/// answered `done` waited in memory until a kill lost them). Made again once the disk has room for it twice over.
final class DiskReserve: Sendable {
    let path: String
    let bytes: Int64
    private let logger: Logger
    /// Why the file is missing, while it is. The file changes under this lock too: a write giving it back and the
    /// gateway's minute keeping it do not cross.
    private struct Missing {
        /// When it was given back.
        var givenBackAt: Date?
        /// The free bytes when it was last found missing with no room to make it (given back, or never made).
        var noRoomWith: Int64?
    }
    private let missing = Mutex(Missing())
    /// Whether it was said that the disk has no room for it: once a run.
    private let noRoomSaid = Mutex(false)

    /// The reserve's file beside the outbox at `outboxPath`.
    static func path(beside outboxPath: String) -> String { outboxPath + ".reserve" }

    /// A second file, a quarter of its size, given back only at a stop: the gateway's own events still waiting then
    /// (calls answered `done` on a disk full past the reserve) are committed, not lost (from the second ext4 trial: two
    /// calls lost so at a SIGTERM).
    let stopPath: String
    var stopBytes: Int64 { bytes / 4 }
    static func stopPath(beside outboxPath: String) -> String { outboxPath + ".stop-reserve" }

    init(beside outboxPath: String, bytes: Int64, logger: Logger) {
        path = Self.path(beside: outboxPath)
        stopPath = Self.stopPath(beside: outboxPath)
        self.bytes = bytes
        self.logger = logger
    }

    private var folder: String { (path as NSString).deletingLastPathComponent }

    /// When it was given back, while it has not been kept again: the disk is full but for it.
    var givenBackAt: Date? { missing.withLock { $0.givenBackAt } }

    /// The free bytes on its disk when it was last found missing without room to make it again (a run before gave it
    /// back, or the disk never had room): nil while it is kept.
    var missingForRoom: Int64? { missing.withLock { $0.noRoomWith } }

    /// The free space a reserve of `bytes` is made with: twice its size, so that making it never fills the disk.
    static func room(for bytes: Int64) -> Int64 { bytes * 2 }

    /// Makes the files when they are missing and the disk has room for each twice over: the reserve, then the stop's.
    func keep() {
        guard bytes > 0 else { return }
        defer { keepStopPart() }
        var free: Int64?
        var givenBackBefore = false
        let made = missing.withLock { missing -> Bool in
            givenBackBefore = missing.givenBackAt != nil
            guard !FileManager.default.fileExists(atPath: path) else {
                missing.noRoomWith = nil
                return false
            }
            free = DiskSpace.free(at: folder)
            guard let free, free >= Self.room(for: bytes), Self.allocate(path, bytes: bytes) else {
                // Also when the file could not be allocated though the figure said there was room.
                missing.noRoomWith = free ?? 0
                return false
            }
            missing = Missing()
            return true
        }
        if made {
            logger.notice("outbox: \(DiskSpace.megabytes(bytes)) kept in reserve against a full disk (\(path))")
        } else if let free, free < Self.room(for: bytes), !givenBackBefore,
                  !noRoomSaid.withLock({ said in defer { said = true }; return said }) {
            // From a second read: a small disk had no reserve, and nothing said so. Not after the giving back, whose
            // critical line said it (from a trial: the two lines 11 s apart read as a contradiction).
            logger.warning("""
                outbox: no room for a reserve of \(DiskSpace.megabytes(bytes)) against a full disk (\(DiskSpace.megabytes(free)) \
                free on the disk holding \(folder)); it is kept once there is room for it twice over
                """)
        }
    }

    /// Only beside the reserve: a disk without room for it is not made fuller.
    private func keepStopPart() {
        let made = missing.withLock { _ in
            guard FileManager.default.fileExists(atPath: path), !FileManager.default.fileExists(atPath: stopPath),
                  let free = DiskSpace.free(at: folder),
                  free >= Self.room(for: stopBytes)
            else { return false }
            return Self.allocate(stopPath, bytes: stopBytes)
        }
        if made {
            logger.notice("outbox: \(DiskSpace.megabytes(stopBytes)) kept for a stop on a full disk (\(stopPath))")
        }
    }

    /// Gives back the stop's file when the disk is full past the reserve (the gateway's own events wait at its stop);
    /// not for another refusal (a lock, an I/O error), which room does not mend. True when it was given back.
    func giveBackAtStop() -> Bool {
        let removed = missing.withLock { missing in
            // Given back by this run, or missing at its start (a run before gave it back).
            (missing.givenBackAt != nil || !FileManager.default.fileExists(atPath: path))
                && (DiskSpace.free(at: folder) ?? 0) < Outbox.fullDiskBelowBytes
                && (try? FileManager.default.removeItem(atPath: stopPath)) != nil
        }
        if removed {
            logger.critical("""
                the disk holding \(folder) is full past the outbox's reserve: the \(DiskSpace.megabytes(stopBytes)) kept \
                for a stop is given back for the gateway's own events still waiting; make room on the disk
                """)
        }
        return removed
    }

    /// Whether `error` says the disk holding `folder` is full, with less than `room` left: SQLite's own code, or the
    /// shared-memory file it could not grow (a tmpfs says a full disk that way), not any I/O error (a dying card).
    static func isFullDisk(_ error: any Error, at folder: String, room: Int64 = Outbox.fullDiskBelowBytes) -> Bool {
        guard let error = error as? DatabaseError,
              error.resultCode == .SQLITE_FULL || error.extendedResultCode == .SQLITE_IOERR_SHMSIZE
        else { return false }
        return (DiskSpace.free(at: folder) ?? 0) < room
    }

    /// Gives the room back when `error` says the disk is full; true when the write that met it is worth trying once
    /// more: the file was removed now, or by a write queued beside this one.
    func giveBack(after error: any Error) -> Bool {
        guard bytes > 0, Self.isFullDisk(error, at: folder, room: Swift.max(bytes, Outbox.fullDiskBelowBytes)) else { return false }
        let (removed, earlier) = missing.withLock { missing -> (Bool, Bool) in
            if missing.givenBackAt != nil { return (false, true) }
            guard (try? FileManager.default.removeItem(atPath: path)) != nil else { return (false, false) }
            missing.givenBackAt = Date()
            return (true, false)
        }
        if removed {
            logger.critical("""
                the disk holding \(folder) is full: the outbox's reserve of \(DiskSpace.megabytes(bytes)) is given back so \
                that the hall goes on; make room on the disk (the reserve is kept again once there is room for it twice over)
                """)
        }
        return removed || earlier
    }

    /// A file of `bytes` whose blocks are allocated (zeros alone take none on a compressing filesystem).
    private static func allocate(_ path: String, bytes: Int64) -> Bool {
        let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        guard posix_fallocate(descriptor, 0, off_t(bytes)) == 0 else {
            unlink(path)
            return false
        }
        return true
    }

    /// `bytes` as the gateway's lines say a size: `4 MB`, `0.8 MB`.
}
