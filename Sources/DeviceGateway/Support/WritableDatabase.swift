import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Says at the start what would otherwise fail at every write: SQLite opens a file it may not write read-only
/// without a word (a first run as root leaves the files root's), and a folder that cannot be made.
enum WritableDatabase {
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
