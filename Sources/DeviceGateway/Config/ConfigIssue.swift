/// One problem in a configuration or profile file, located for the technician who has to fix it.
public struct ConfigIssue: Sendable, Equatable, Encodable, CustomStringConvertible {
    /// The file, as given.
    public var file: String
    /// 1-based line, or nil when the problem is the file as a whole.
    public var line: Int?
    /// 1-based column.
    public var column: Int?
    /// The offending key as a path, e.g. `buses[1].baud`.
    public var key: String
    /// What is wrong and, where possible, what would be right.
    public var message: String

    /// `file:line:column: key: message`, the form editors and CI logs link.
    public var description: String {
        var location = file
        if let line { location += ":\(line)" + (column.map { ":\($0)" } ?? "") }
        return key.isEmpty ? "\(location): \(message)" : "\(location): \(key): \(message)"
    }
}

/// A configuration that could not be used; lists every problem found, not just the first.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    /// The problems, in file order.
    public var issues: [ConfigIssue]

    public var description: String { issues.map(\.description).joined(separator: "\n") }
}
