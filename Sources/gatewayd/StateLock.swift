import DeviceGateway
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One gateway per state directory: a second `gatewayd run` on the same hall would share its outbox and put a
/// second master on every line. The lock is the kernel's (`flock`), so it ends with the process however it ends.
enum StateLock {
    /// Takes the lock in `directory` for the life of the process; throws a one-line reason when another gateway
    /// holds it or another user's lock file is in the way. A directory that cannot be written is left to the outbox
    /// to report.
    static func take(in directory: String) throws(GatewayError) {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = path(in: directory)
        // Not through a symbolic link: whoever can write the state directory would have a run as root overwrite the
        // file it points to with a pid.
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o640)
        var status = stat()
        guard descriptor >= 0, fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            // nil: opened, and not a regular file.
            let failure: Int32? = descriptor >= 0 ? nil : errno
            if descriptor >= 0 { close(descriptor) }
            switch failure {
            case EACCES:
                // A lock file another user left (a run as root) would leave the lock untaken: said, like the outbox's.
                throw GatewayError(
                    .storeMissing,
                    "\(path) belongs to another user and this one may not open it: give the state directory and its "
                        + "files to the gateway's user (chown -R)")
            case ELOOP, nil:
                throw GatewayError(.storeMissing, "\(path) is not a plain file (a symbolic link?): remove it")
            default:
                // A directory that cannot be written: the outbox says so, with what to do.
                return
            }
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            close(descriptor)
            throw GatewayError(
                .storeMissing,
                "another gateway\(holder.map { $0.isEmpty ? "" : " (pid \($0))" } ?? "") runs on \(directory): "
                    + "stop it first (two would poll the same lines and share one outbox)")
        }
        // Kept open, never closed: the lock is held until the process ends.
        let pid = "\(getpid())\n"
        _ = ftruncate(descriptor, 0)
        _ = pid.withCString { write(descriptor, $0, strlen($0)) }
    }

    /// The lock file of `directory`, which its running gateway keeps open.
    static func path(in directory: String) -> String { directory + "/gatewayd.lock" }
}
