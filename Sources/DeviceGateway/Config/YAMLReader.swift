import Yams

/// Walks a YAML document and collects every problem with its line, column and key path.
///
/// Each `Fields` view checks a mapping's keys against the ones read from it, so a misspelt key
/// (`baudrate:` for `baud:`) is reported instead of silently ignored.
final class YAMLReader {
    let file: String
    /// Whether the files the configuration names (passwords, tokens, certificates) are checked for readability
    /// here: by `config check`, not by every command that reads the hall (they may be the gateway user's alone).
    let checksFiles: Bool
    private(set) var issues: [ConfigIssue] = []

    init(file: String, checksFiles: Bool = false) {
        self.file = file
        self.checksFiles = checksFiles
    }

    /// Parses the text; a syntax error becomes an issue and the result is nil.
    func compose(_ text: String) -> Node? {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                report(nil, "", "the file is empty")
                return nil
            }
            return node
        } catch let error as YamlError {
            switch error {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
                issues.append(ConfigIssue(file: file, line: mark.line, column: mark.column, key: "",
                                          message: "YAML syntax: \(problem)"))
            case .duplicatedKeysInMapping(let duplicates, let context):
                // Yams names the mapping's start and prints the whole file: say where each key comes again.
                for key in duplicates.sorted() {
                    let places = Self.lines(defining: key, in: text, from: context.mark.line)
                    let again = places.dropFirst().first
                    issues.append(ConfigIssue(
                        file: file, line: again?.line ?? context.mark.line, column: again?.column ?? context.mark.column,
                        key: key, message: "given twice in one mapping\(places.first.map { " (first at line \($0.line))" } ?? ""); keep one"))
                }
            default:
                report(nil, "", "YAML: \(error)")
            }
            return nil
        } catch {
            report(nil, "", "YAML: \(error)")
            return nil
        }
    }

    /// Where lines from `first` on (1-based) set `key:`, as a block key or a list item's first key.
    static func lines(defining key: String, in text: String, from first: Int) -> [(line: Int, column: Int)] {
        var found: [(line: Int, column: Int)] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where index + 1 >= first {
            let indent = line.prefix { $0 == " " || $0 == "-" }
            if line.dropFirst(indent.count).hasPrefix(key + ":") { found.append((index + 1, indent.count + 1)) }
        }
        return found
    }

    /// Another file's problems, as they are (a profile's, found while reading the configuration that names it).
    func report(_ others: [ConfigIssue]) { issues += others }

    func report(_ node: Node?, _ key: String, _ message: String) {
        issues.append(ConfigIssue(file: file, line: node?.mark?.line, column: node?.mark?.column,
                                  key: key, message: message))
    }

    /// The keys of a mapping, or nil (reported) when the node is not one.
    func fields(_ node: Node, _ path: String) -> Fields? {
        guard let mapping = node.mapping else {
            report(node, path, "expected a mapping of keys")
            return nil
        }
        return Fields(reader: self, node: node, mapping: mapping, path: path)
    }

    /// The items of a sequence, or nil (reported) when the node is not one.
    func items(_ node: Node, _ path: String) -> [(node: Node, path: String)]? {
        guard let sequence = node.sequence else {
            report(node, path, "expected a list")
            return nil
        }
        return sequence.enumerated().map { ($1, "\(path)[\($0)]") }
    }

    func string(_ node: Node, _ path: String) -> String? {
        guard let scalar = node.scalar else {
            report(node, path, "expected a text value")
            return nil
        }
        guard !scalar.string.isEmpty else {
            report(node, path, "is empty; give it a value or leave the key out")
            return nil
        }
        return scalar.string
    }

    func int(_ node: Node, _ path: String, in range: ClosedRange<Int>) -> Int? {
        // Wire codes read best in hex, as the protocol documents write them: `0x11`.
        func parse(_ text: String) -> Int? {
            text.lowercased().hasPrefix("0x") ? Int(text.dropFirst(2), radix: 16) : Int(text)
        }
        guard let value = node.scalar.flatMap({ parse($0.string) }) else {
            report(node, path, "expected a whole number, found '\(node.scalar?.string ?? "a structure")'")
            return nil
        }
        guard range.contains(value) else {
            report(node, path, "\(value) is out of range \(range.lowerBound)…\(range.upperBound)")
            return nil
        }
        return value
    }

    func bool(_ node: Node, _ path: String) -> Bool? {
        switch node.scalar?.string {
        case "true", "yes": return true
        case "false", "no": return false
        default:
            report(node, path, "expected true or false, found '\(node.scalar?.string ?? "a structure")'")
            return nil
        }
    }

    func double(_ node: Node, _ path: String) -> Double? {
        guard let value = node.scalar.flatMap({ Double($0.string) }), value.isFinite else {
            report(node, path, "expected a number, found '\(node.scalar?.string ?? "a structure")'")
            return nil
        }
        return value
    }

    func choice(_ node: Node, _ path: String, _ allowed: [String]) -> String? {
        guard let value = string(node, path) else { return nil }
        guard allowed.contains(value) else {
            report(node, path, "'\(value)' is not one of: \(allowed.joined(separator: ", "))")
            return nil
        }
        return value
    }

    /// A view of one mapping that remembers which keys were read.
    final class Fields {
        let reader: YAMLReader
        let node: Node
        let path: String
        private let entries: [(key: String, keyNode: Node, value: Node)]
        private var read: Set<String> = []

        fileprivate init(reader: YAMLReader, node: Node, mapping: Node.Mapping, path: String) {
            self.reader = reader
            self.node = node
            self.path = path
            self.entries = mapping.map { ($0.key.scalar?.string ?? "", $0.key, $0.value) }
        }

        func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

        /// The value under `key`; a missing required key is reported at the mapping.
        func value(_ key: String, required: Bool = false) -> Node? {
            read.insert(key)
            if let entry = entries.first(where: { $0.key == key }) { return entry.value }
            if required { reader.report(node, keyPath(key), "missing (required)") }
            return nil
        }

        func string(_ key: String, required: Bool = false) -> String? {
            value(key, required: required).flatMap { reader.string($0, keyPath(key)) }
        }

        /// An id of the hall, a bus, a device, a sink or a terminal; one of a shape that would break the event sources,
        /// topics and tables it goes into is reported, and still returned so what refers to it is checked too.
        func id(_ key: String, required: Bool = false) -> String? {
            guard let node = value(key, required: required), let id = reader.string(node, keyPath(key)) else {
                return nil
            }
            if let problem = ConfigLoader.idProblem(id) { reader.report(node, keyPath(key), problem) }
            return id
        }

        func int(_ key: String, in range: ClosedRange<Int>, required: Bool = false) -> Int? {
            value(key, required: required).flatMap { reader.int($0, keyPath(key), in: range) }
        }

        func bool(_ key: String, required: Bool = false) -> Bool? {
            value(key, required: required).flatMap { reader.bool($0, keyPath(key)) }
        }

        func double(_ key: String, required: Bool = false) -> Double? {
            value(key, required: required).flatMap { reader.double($0, keyPath(key)) }
        }

        /// A file for the gateway to read, resolved against `folder`; one that cannot be read is reported at its
        /// value when the reader checks files.
        func file(_ key: String, relativeTo folder: String) -> String? {
            guard let node = value(key), let text = reader.string(node, keyPath(key)) else { return nil }
            let path = ConfigLoader.resolve(text, against: folder)
            if reader.checksFiles, let problem = ReadableFile.problem(path) {
                reader.report(node, keyPath(key), "cannot read \(path): \(problem)")
            }
            return path
        }

        /// A password or token file: `file`, and when the reader checks files, a secret it can send.
        func secretFile(_ key: String, relativeTo folder: String) -> String? {
            guard let path = file(key, relativeTo: folder) else { return nil }
            // Unreadable is reported by `file` already.
            if reader.checksFiles, ReadableFile.problem(path) == nil, case .failure(let problem) = ReadableFile.secret(path) {
                reader.report(value(key), keyPath(key), problem.message("file"))
            }
            return path
        }

        func choice(_ key: String, _ allowed: [String], required: Bool = false) -> String? {
            value(key, required: required).flatMap { reader.choice($0, keyPath(key), allowed) }
        }

        /// Levenshtein distance, for the few short keys of one mapping.
        static func editDistance(_ a: String, _ b: String) -> Int {
            let (a, b) = (Array(a), Array(b))
            var previous = Array(0...b.count)
            for (i, x) in a.enumerated() {
                var current = [i + 1]
                for (j, y) in b.enumerated() {
                    current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
                }
                previous = current
            }
            return previous[b.count]
        }

        /// Reports every key that was never read: a typo, or a setting this version does not know.
        func rejectUnknownKeys() {
            for entry in entries where !read.contains(entry.key) {
                let known = read.sorted().joined(separator: ", ")
                // A near miss of a key this mapping takes and does not have is most likely it, misspelt.
                let meant = read.filter { key in !entries.contains { $0.key == key } }
                    .map { ($0, Self.editDistance($0.lowercased(), entry.key.lowercased())) }
                    .filter { $0.1 <= ($0.0.count >= 5 ? 2 : 1) }
                    .min { ($0.1, $0.0) < ($1.1, $1.0) }?.0
                let hint = meant.map { "; did you mean '\($0)'?" } ?? ""
                reader.report(entry.keyNode, keyPath(entry.key), "unknown key\(hint) (known here: \(known))")
            }
        }
    }
}
