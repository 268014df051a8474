import Foundation
import GRDB
import Logging
import Synchronization

/// Room kept on the outbox's disk against a full one: a file of zeros beside the outbox, given back when SQLite says
/// the disk is full, so that the hall goes on — commits, ticket numbers, a start — while a technician makes room
/// (from a trial: a gateway restarted on a full disk did not start, ticket numbers were refused, and commands answered
/// `done` waited in memory until a kill lost them). Made again once the disk has room for it twice over.
final class DiskReserve: Sendable {
    let path: String
    let bytes: Int64
    private let logger: Logger
    /// When it was given back, until it is kept again: the disk is full but for it.
    let givenBackAt = Mutex<Date?>(nil)

    init(beside outboxPath: String, bytes: Int64, logger: Logger) {
        path = outboxPath + ".reserve"
        self.bytes = bytes
        self.logger = logger
    }

    private var folder: String { (path as NSString).deletingLastPathComponent }

    /// Makes the file when it is missing and the disk has room for it twice over.
    func keep() {
        guard bytes > 0, !FileManager.default.fileExists(atPath: path),
              let free = DiskSpace.free(at: folder), free >= bytes * 2 else { return }
        // Written, not sparse: the blocks must be the outbox's to take when it needs them.
        guard FileManager.default.createFile(atPath: path, contents: Data(count: Int(bytes))) else {
            try? FileManager.default.removeItem(atPath: path)
            return
        }
        givenBackAt.withLock { $0 = nil }
        logger.notice("outbox: \(Self.megabytes(bytes)) kept in reserve against a full disk (\(path))")
    }

    /// Whether `error` says the disk is full: SQLite's own code, or an I/O error with no room left (a tmpfs refuses
    /// to grow the shared-memory file that way).
    static func isFullDisk(_ error: any Error, at folder: String) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        switch error.resultCode.primaryResultCode {
        case .SQLITE_FULL: return true
        case .SQLITE_IOERR: return (DiskSpace.free(at: folder) ?? .max) < 65_536
        default: return false
        }
    }

    /// Removes the file when `error` says the disk is full; true when there was one, and the write that met the full
    /// disk is worth trying again.
    func giveBack(after error: any Error) -> Bool {
        guard Self.isFullDisk(error, at: folder) else { return false }
        guard (try? FileManager.default.removeItem(atPath: path)) != nil else { return false }
        givenBackAt.withLock { $0 = Date() }
        logger.critical("""
            the disk holding \(folder) is full: the outbox's reserve of \(Self.megabytes(bytes)) is given back so that \
            the hall goes on; make room on the disk (the reserve is kept again once there is room for it twice over)
            """)
        return true
    }

    private static func megabytes(_ bytes: Int64) -> String {
        String(format: "%g MB", (Double(bytes) / 1_048_576 * 10).rounded() / 10)
    }
}
