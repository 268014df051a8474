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

    /// An issue of `file`, at a place in it when known.
    public init(file: String, line: Int? = nil, column: Int? = nil, key: String = "", message: String) {
        (self.file, self.line, self.column, self.key, self.message) = (file, line, column, key, message)
    }

    /// `file:line:column: key: message`, the form editors and CI logs link.
    public var description: String {
        var location = file
        if let line { location += ":\(line)" + (column.map { ":\($0)" } ?? "") }
        return key.isEmpty ? "\(location): \(message)" : "\(location): \(key): \(message)"
    }
}

/// A configuration that could not be used; lists every problem found, not just the first.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    /// The problems, in file order: each file's by line and column, files in the order they were first named.
    public var issues: [ConfigIssue]

    /// An error of `issues`, put in file order: the order in which they were found follows the reading, not the file
    /// (from a trial: a misspelt key was said after a problem further down).
    public init(issues: [ConfigIssue]) {
        var files: [String] = []
        for issue in issues where !files.contains(issue.file) { files.append(issue.file) }
        self.issues = issues.enumerated().sorted { first, second in
            let (a, b) = (first.element, second.element)
            let order = (files.firstIndex(of: a.file)!, a.line ?? 0, a.column ?? 0, first.offset)
            return order < (files.firstIndex(of: b.file)!, b.line ?? 0, b.column ?? 0, second.offset)
        }.map(\.element)
    }

    public var description: String { issues.map(\.description).joined(separator: "\n") }
}
