import Foundation

/// Another process that has a serial port open.
public struct PortHolder: Sendable, Equatable {
    public let pid: Int32
    /// Its command line, program name without its folder (`python3 holder.py`, `minicom -D /dev/ttyUSB0`).
    public let command: String
    /// Whether it is a gateway (the daemon, or its tools opening the line directly).
    public let isGateway: Bool

    /// `python3 holder.py (pid 9605)`.
    public var description: String { "\(command) (pid \(pid))" }

    /// The other processes with `path` open, read from /proc/<pid>/fd: only those this user may look into (all of
    /// them as root).
    public static func of(_ path: String) -> [PortHolder] {
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let own = getpid()
        let files = FileManager.default
        let pseudoTerminal = target.hasPrefix("/dev/pts/") ? Int(target.dropFirst("/dev/pts/".count)) : nil
        return ((try? files.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry -> PortHolder? in
            func opened(_ fd: String) -> String? { try? files.destinationOfSymbolicLink(atPath: "/proc/\(entry)/fd/\(fd)") }
            guard let pid = Int32(entry), pid != own,
                  let fds = try? files.contentsOfDirectory(atPath: "/proc/\(entry)/fd"),
                  fds.contains(where: { opened($0) == target })
            else { return nil }
            // A pseudo-terminal's other end (a simulator, socat) may hold this side open too: that is the device.
            if let pseudoTerminal, fds.contains(where: { fd in
                ["/dev/ptmx", "/dev/pts/ptmx"].contains(opened(fd))
                    && (try? String(contentsOfFile: "/proc/\(entry)/fdinfo/\(fd)", encoding: .utf8))?
                        .contains("tty-index:\t\(pseudoTerminal)\n") == true
            }) { return nil }
            let name = (try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            let arguments = (FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") ?? Data())
                .split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            let command = arguments.isEmpty
                ? name : ([(arguments[0] as NSString).lastPathComponent] + arguments.dropFirst()).joined(separator: " ")
            return PortHolder(pid: pid, command: command.count > 60 ? String(command.prefix(59)) + "…" : command,
                              isGateway: name == "gatewayd")
        }
    }
}
