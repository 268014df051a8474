@testable import DeviceGateway
import Foundation
import Testing

/// docs/adding-a-family.md says which files a family is; these tests keep that true.
@Suite struct FamilyRegistrationTests {
    static let sources = repositoryRoot + "/Sources/DeviceGateway"

    /// The Swift files under `folder`; none is a mistake (a folder renamed would make every check pass).
    static func swiftFiles(under folder: String) throws -> [String] {
        let enumerator = try #require(FileManager.default.enumerator(atPath: folder))
        let files = enumerator.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.map { folder + "/" + $0 }
        #expect(!files.isEmpty, "no Swift file under \(folder)")
        return files
    }

    /// The file's lines without comments and without what one-line string literals say (a help text may name a
    /// family).
    static func code(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            .map { line in
                let code = String(line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
                return code.replacing(/"(?:[^"\\]|\\.)*"/, with: "\"\"")
            }
    }

    /// The names of the family enums' cases: `modbusEvaluator`, `ff68`, …
    static var caseNames: [String] { ProfileFamily.allCases.map { "\($0)" } + LineProtocol.allCases.map { "\($0)" } }

    /// The types a family's files declare: its codec's (`Sources/Protocols/<Family>/`: a folder named as the start
    /// of a kind's or line protocol's name, not the shared `Ratings` or `Text`) and the drivers'. Top-level ones: a
    /// family's own nested types are reached through these.
    static func familyTypes() throws -> Set<String> {
        let declaration = /(?m)^(?:public |package |final |indirect )*(?:struct|enum|class|actor|protocol|typealias) (\w+)/
        let protocols = repositoryRoot + "/Sources/Protocols"
        var files: [String] = []
        for folder in try FileManager.default.contentsOfDirectory(atPath: protocols).sorted() {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: protocols + "/" + folder, isDirectory: &isFolder), isFolder.boolValue,
                  caseNames.contains(where: { $0.lowercased().hasPrefix(folder.lowercased()) })
            else { continue }
            files += try swiftFiles(under: protocols + "/" + folder)
        }
        files += try swiftFiles(under: sources + "/Drivers").filter { $0.hasSuffix("Driver.swift") }
        var types: Set<String> = []
        for file in files {
            for match in try String(contentsOfFile: file, encoding: .utf8).matches(of: declaration) {
                types.insert(String(match.output.1))
            }
        }
        return types
    }

    /// From a new contributor's trial: a list of family words written here did not know the new family's codec, and
    /// its frame type named in the engine passed. The names come from the families' files and enums.
    @Test func theEngineNamesNoFamily() throws {
        let types = try Self.familyTypes()
        #expect(types.contains("FF68Frame") && types.contains("ModbusEvaluatorDriver"), "\(types.sorted())")
        let kinds = Self.caseNames
        // Simple word boundaries: by Unicode's, `FF68Frame.self` is one word.
        let families = try Regex("\\b(" + types.sorted().joined(separator: "|") + ")\\b|\\.(" + kinds.joined(separator: "|") + ")\\b")
            .wordBoundaryKind(.simple)
        var named: [String] = []
        for file in try Self.swiftFiles(under: Self.sources + "/Engine") {
            for (number, line) in try Self.code(file).enumerated() where line.contains(families) {
                named.append("\(file.split(separator: "/").last!):\(number + 1): \(line.trimmingCharacters(in: .whitespaces))")
            }
        }
        #expect(named.isEmpty, "the engine knows families:\n\(named.joined(separator: "\n"))")
    }

    @Test func theProfileKindsAndLineProtocolsAreNamedOnlyInTheDocumentedFiles() throws {
        let doc = try String(contentsOfFile: repositoryRoot + "/docs/adding-a-family.md", encoding: .utf8)
        let list = try #require(doc.firstRange(of: "<!-- family-files")
            .flatMap { start in doc.firstRange(of: "<!-- end family-files -->").map { doc[start.upperBound..<$0.lowerBound] } })
        let named = list.matches(of: /`(Sources\/[^`]+)`/).map { String($0.output.1) }
        let documented = named.filter { $0.hasSuffix(".swift") && !$0.contains("<") }
        #expect(documented.count >= 6 && named.count > documented.count, "\(named)")
        for file in named {
            // `Sources/Protocols/<Family>/`: the folder it goes in.
            let path = file.components(separatedBy: "<").first ?? file
            #expect(FileManager.default.fileExists(atPath: repositoryRoot + "/" + path), "the guide names \(file)")
        }
        // A `case` of a kind or a line protocol is a switch a new family must join (or a kind built), a comparison
        // with one, or one looked for in a list, a rule of that family's (from a new contributor's trial:
        // `line == .escPos` in the configuration's checks passed). The names come from the enums (a kind's case in
        // `DeviceProfile` is named as in `ProfileFamily`), so a new family's are checked too.
        let alternatives = Self.caseNames.joined(separator: "|")
        let names = try Regex(
            "(case\\b.*|[=!]=\\s*|\\s=\\s*|contains\\(\\s*|\\[\\s*|LineProtocol|ProfileFamily)\\.(" + alternatives + ")\\b"
        ).wordBoundaryKind(.simple)
        var strays: [String] = []
        for module in ["DeviceGateway", "LocalAPI", "gatewayd"] {
            let folder = repositoryRoot + "/Sources/" + module
            for file in try Self.swiftFiles(under: folder) {
                let relative = "Sources/\(module)/" + file.dropFirst(folder.count + 1)
                guard !documented.contains(relative), !relative.hasPrefix("Sources/DeviceGateway/Drivers/") else { continue }
                for (number, line) in try Self.code(file).enumerated() where line.contains(names) {
                    strays.append("\(relative):\(number + 1): \(line.trimmingCharacters(in: .whitespaces))")
                }
            }
        }
        #expect(strays.isEmpty, "a family is more files than docs/adding-a-family.md says:\n\(strays.joined(separator: "\n"))")
    }

    @Test func everyFamilyHasAProfileFromWhichTheRegistryBuildsABus() async throws {
        let folder = try TemporaryDirectory()
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        let library = ProfileLibrary(directory: profilesDirectory)
        var built: Set<String> = []
        for file in try FileManager.default.contentsOfDirectory(atPath: profilesDirectory) where file.hasSuffix(".yaml") {
            let text = try String(contentsOfFile: profilesDirectory + "/" + file, encoding: .utf8)
            guard let family = text.firstMatch(of: /\nfamily: ([a-z0-9-]+)/)?.output.1 else { continue }
            let loaded = try library.load(named: String(file.dropLast(5)))
            let device = DeviceConfig(id: "d", profile: String(file.dropLast(5)), bus: "b", address: 1, window: nil)
            let transport: BusConfig.Transport = loaded.profile.lineProtocol == nil
                ? .modbusTCP(host: "127.0.0.1", port: 1502) : .serial(SerialSettings(port: folder.file("tty")))
            _ = try DriverRegistry.bus(
                for: BusConfig(id: "b", transport: transport),
                members: [DriverRegistry.Member(device: device, profile: loaded.profile, pollInterval: loaded.pollInterval)],
                hallId: "h", outbox: outbox, logger: CapturedLog().logger, onCommit: { _ in })
            built.insert(String(family))
        }
        let families = Set(ProfileFamily.allCases.map(\.rawValue))
        #expect(built == families, "no devices/*.yaml declares family: \(families.subtracting(built).sorted()): add a model's profile")
    }
}
