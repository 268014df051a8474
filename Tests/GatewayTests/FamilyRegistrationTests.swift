@testable import DeviceGateway
import Foundation
import Testing

/// docs/adding-a-family.md says which files a family is; these tests keep that true.
@Suite struct FamilyRegistrationTests {
    static let sources = repositoryRoot + "/Sources/DeviceGateway"

    static func swiftFiles(under folder: String) throws -> [String] {
        let enumerator = try #require(FileManager.default.enumerator(atPath: folder))
        return enumerator.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.map { folder + "/" + $0 }
    }

    /// The file's lines without comments.
    static func code(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            .map { line in String(line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? "") }
    }

    @Test func theEngineNamesNoFamily() throws {
        let families = /\b(Modbus|FF68|QSystem|Onbon|EscPos|Printer|Ticket)\w*/
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
        let documented = list.matches(of: /`(Sources\/DeviceGateway\/[^`<]+\.swift)`/).map { String($0.output.1) }
        #expect(!documented.isEmpty)
        for file in documented {
            #expect(FileManager.default.fileExists(atPath: repositoryRoot + "/" + file), "the guide names \(file)")
        }
        // A `case` of a kind or a line protocol is a switch a new family must join (or a kind built). The names come
        // from the enums (a kind's case in `DeviceProfile` is named as in `ProfileFamily`), so a new family's are
        // checked too; less `qsystemBox`, also an inspector stream's name.
        let caseNames = ProfileFamily.allCases.map { "\($0)" } + LineProtocol.allCases.map { "\($0)" }
        let names = try Regex("case\\b.*\\.(" + caseNames.filter { $0 != "qsystemBox" }.joined(separator: "|") + ")\\b")
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
        #expect(built == Set(ProfileFamily.allCases.map(\.rawValue)))
    }
}
