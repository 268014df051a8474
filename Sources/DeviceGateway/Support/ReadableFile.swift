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
}

/// The user this process runs as.
public enum SystemUser {
    /// Its name (`hall-gateway`), or its number when it has none.
    public static var name: String {
        guard let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name else { return "\(geteuid())" }
        return String(cString: name)
    }
}
