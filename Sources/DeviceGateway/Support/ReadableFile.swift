import Foundation

/// The files a configuration names for the gateway to read (passwords, tokens, certificates, keys).
public enum ReadableFile {
    /// Why this process cannot read `path`, in the words a technician acts on (`no such file`, `is a directory`,
    /// `not readable by user hall-gateway`); nil when it can. One wording for `config check` and for the sinks at run time.
    public static func problem(_ path: String) -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return "no such file" }
        if isDirectory.boolValue { return "is a directory" }
        return FileManager.default.isReadableFile(atPath: path) ? nil : "not readable by user \(SystemUser.name)"
    }

    /// A password or token file's secret: its one line without the editor's line end. An empty file is refused
    /// (a provisioning script that wrote an unset variable), not sent as an empty password. One reading for
    /// `config check` and for the sinks and MQTT commands at run time.
    public static func secret(_ path: String) -> Result<String, SecretProblem> {
        if let problem = problem(path) { return .failure(SecretProblem(path: path, unreadable: problem)) }
        guard let data = FileManager.default.contents(atPath: path) else {
            return .failure(SecretProblem(path: path, unreadable: "not readable by user \(SystemUser.name)"))
        }
        guard var text = String(validating: data, as: UTF8.self) else {
            return .failure(SecretProblem(path: path, content: "is not UTF-8 text"))
        }
        while text.last?.isNewline == true { text.removeLast() }
        if text.allSatisfy(\.isWhitespace) {
            return .failure(SecretProblem(path: path, content: "is empty (leave the key out for none)"))
        }
        if text.contains(where: { $0.isNewline }) {
            return .failure(SecretProblem(path: path, content: "holds more than one line"))
        }
        return .success(text)
    }

    /// Why a secret file cannot be used, in a technician's words.
    public struct SecretProblem: Error {
        var path: String
        var unreadable: String?
        var content: String?

        init(path: String, unreadable: String) { (self.path, self.unreadable) = (path, unreadable) }
        init(path: String, content: String) { (self.path, self.content) = (path, content) }

        /// `cannot read the password file /etc/p: no such file`, `the token file /etc/t is empty (…)`.
        public func message(_ what: String) -> String {
            if let unreadable { return "cannot read the \(what) \(path): \(unreadable)" }
            return "the \(what) \(path) \(content ?? "")"
        }
    }
}

/// The user this process runs as.
public enum SystemUser {
    /// Its name (`hall-gateway`), or its number when it has none.
    public static var name: String {
        guard let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name else { return "\(geteuid())" }
        return String(cString: name)
    }
}

/// A password file read again after a store refused the password, so that one changed in the file is taken without a
/// restart (from an operator's trial); one that cannot be read is said once while it lasts, and the one before stays.
struct PasswordFileWatch: Sendable {
    let path: String
    /// The password in use.
    private(set) var password: String?
    private var problemSaid: String?

    init(path: String, password: String?) {
        self.path = path
        self.password = password
    }

    /// The password when the file now holds another one; nil when it is the same or cannot be read (`warn` gets the
    /// problem, once).
    mutating func changed(warn: (String) -> Void) -> String? {
        switch ReadableFile.secret(path) {
        case .success(let text):
            problemSaid = nil
            guard text != password else { return nil }
            password = text
            return text
        case .failure(let problem):
            let message = problem.message("password file")
            if problemSaid != message { warn("\(message); the password read before is used") }
            problemSaid = message
            return nil
        }
    }
}

/// The room left on a filesystem.
public enum DiskSpace {
    /// Bytes an unprivileged user may still write on the filesystem holding `path` (a file or folder); nil when it
    /// cannot be told. A gateway run as root writes on into ext4's blocks kept for root, which statvfs cannot tell from
    /// those ext4 keeps for itself: the lower figure, the same for every user.
    public static func free(at path: String) -> Int64? {
        var disk = statvfs()
        guard statvfs(path, &disk) == 0 else { return nil }
        return Int64(disk.f_bavail) * Int64(disk.f_frsize)
    }

    /// `bytes` as the gateway says disk sizes: "0.8 MB", "8 MB".
    public static func megabytes(_ bytes: Int64) -> String {
        String(format: "%g MB", (Double(bytes) / 1_048_576 * 10).rounded() / 10)
    }
}
