import Foundation
import GRDB

#if canImport(Glibc)
import Glibc
#endif

/// Says at the start what would otherwise fail at every write: SQLite opens a file it may not write read-only
/// without a word (a first run as root leaves the files root's), and a folder that cannot be made.
enum WritableDatabase {
    /// SQLite's page cache of each connection, in KiB. At SQLite's default (2,000 KiB a connection) the writers'
    /// caches of the outbox and the event store took 5 MB of the demo hall's heap within its first 40 minutes; the
    /// kernel's page cache keeps the files' pages anyway. The writer's holds a large commit's pages (500 events commit
    /// as fast as at the default; 512 KiB was slower); a reader's starts over after each write in WAL mode.
    static let writerPageCacheKiB = 1024
    static let readerPageCacheKiB = 256

    /// The settings every connection of the gateway's own databases starts with.
    static func prepare(_ db: Database) throws {
        try db.execute(sql: "PRAGMA synchronous = FULL")
        try db.execute(sql: "PRAGMA cache_size = -\(db.configuration.readonly ? readerPageCacheKiB : writerPageCacheKiB)")
    }

    /// Throws one line naming the file and what to do when the SQLite database at `path`, its journal files or its
    /// folder cannot be written by this process's user; makes the folder when it is missing. `what` names the
    /// database ("the outbox"), `folderName` its folder ("the state directory").
    static func check(_ path: String, what: String, folderName: String) throws(GatewayError) {
        let folder = (path as NSString).deletingLastPathComponent
        let user = SystemUser.name
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw GatewayError(.storeMissing, "\(folderName) \(folder) does not exist and user \(user) cannot make "
                               + "it: create it and give it to the gateway's user")
        }
        for file in [folder, path, path + "-wal", path + "-shm"]
        where FileManager.default.fileExists(atPath: file) && access(file, W_OK) != 0 {
            if errno == EROFS {
                throw GatewayError(.storeMissing, "\(file) is on a read-only filesystem (a disk remounted read-only after "
                                   + "errors?): \(what) needs a writable one")
            }
            let owner = (try? FileManager.default.attributesOfItem(atPath: file))?[.ownerAccountName] as? String
            throw GatewayError(.storeMissing, "\(file) belongs to \(owner ?? "another user") and user \(user) may not "
                               + "write it: give \(folderName) and its files to the gateway's user (chown -R)")
        }
    }
}
