import DeviceGateway
import Foundation
import MockDevices
import Protocols
import Testing

@Suite struct ConfigTests {
    let folder: TemporaryDirectory

    init() throws { folder = try TemporaryDirectory() }

    func write(_ text: String, _ name: String = "hall.yaml") throws -> String {
        let path = folder.file(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func issues(_ text: String) throws -> [ConfigIssue] {
        let path = try write(text)
        do {
            _ = try ConfigLoader.load(path: path)
            return []
        } catch {
            return error.issues
        }
    }

    let valid = """
        hall: {id: hall-1, timezone: Asia/Shanghai}
        profiles: \(profilesDirectory)
        buses:
          - id: rs485-1
            transport: modbus-rtu
            port: /dev/ttyUSB0
            baud: 9600
          - {id: lan-1, transport: modbus-tcp, host: 10.0.0.5}
        devices:
          - {id: eval-w01, profile: modbus-evaluator-3key, bus: rs485-1, address: 1, window: "1"}
          - {id: eval-w02, profile: modbus-evaluator-3key, bus: lan-1, address: 1, window: "2"}
        """

    @Test func aValidFileLoadsWithItsDefaults() throws {
        let (config, _) = try ConfigLoader.load(path: try write(valid))
        #expect(config.hall.id == "hall-1")
        #expect(config.buses[0].transport == .modbusRTU(SerialSettings(port: "/dev/ttyUSB0", baud: 9600)))
        #expect(config.buses[1].transport == .modbusTCP(host: "10.0.0.5", port: 502))
        #expect(config.devices.map(\.window) == ["1", "2"])
        #expect(config.sinks == [SinkConfig(name: "local", kind: .sqlite(path: folder.path + "/var/events.sqlite"))])
        #expect(config.stateDirectory == folder.path + "/var")
        #expect(config.buses.map(\.requestsInFlight) == [1, 1], "one request at a time unless asked")
    }

    @Test func theLocalStoreIsKeptInTheStateDirectory() throws {
        // Found by a trial: with the config in /etc and the state in /var/lib, the store went to /etc/…/var, where
        // the gateway's user may not write.
        let state = folder.file("lib/hall-gateway")
        let (config, _) = try ConfigLoader.load(path: try write("state-directory: \(state)\n" + valid))
        #expect(config.sinks == [SinkConfig(name: "local", kind: .sqlite(path: state + "/events.sqlite"))])
        let (named, _) = try ConfigLoader.load(path: try write(
            "state-directory: \(state)\n" + valid + "\nsinks:\n  - {type: sqlite, name: mine}\n"))
        #expect(named.sinks == [SinkConfig(name: "mine", kind: .sqlite(path: state + "/events.sqlite"))])
        // How long it keeps events is the local store's own setting (from an operator's trial: it was never pruned).
        let (kept, _) = try ConfigLoader.load(path: try write(
            "state-directory: \(state)\n" + valid + "\nsinks:\n  - {type: sqlite, retention-days: 400}\n"))
        #expect(kept.sinks.first?.retention == .seconds(400 * 86_400))
        let central = try issues(valid + "\nsinks:\n  - {type: http, url: \"https://c.example/e\", retention-days: 400}\n")
        #expect(central.map(\.key) == ["sinks[0].retention-days"], "\(central)")
    }

    @Test func requestsInFlightIsAModbusTCPSettingWithinItsRange() throws {
        let (config, _) = try ConfigLoader.load(path: try write(valid.replacingOccurrences(
            of: "host: 10.0.0.5}", with: "host: 10.0.0.5, requests-in-flight: 8}")))
        #expect(config.buses[1].requestsInFlight == 8)

        let tooMany = try issues(valid.replacingOccurrences(of: "host: 10.0.0.5}", with: "host: 10.0.0.5, requests-in-flight: 64}"))
        #expect(tooMany.map(\.description).contains { $0.contains("buses[1].requests-in-flight: 64 is out of range 1…32") },
                "\(tooMany)")
        let onSerial = try issues(valid.replacingOccurrences(of: "    baud: 9600", with: "    baud: 9600\n    requests-in-flight: 2"))
        #expect(onSerial.map(\.description).contains { $0.contains("buses[0].requests-in-flight: unknown key") }, "\(onSerial)")
    }

    @Test func everyProblemIsReportedWithItsLineAndKey() throws {
        let broken = valid
            .replacingOccurrences(of: "    baud: 9600", with: "    baudrate: 9600")
            .replacingOccurrences(of: "bus: lan-1, address: 1", with: "bus: lan-9, address: 300")
        let found = try issues(broken)
        let lines = found.map(\.description)
        #expect(found.count == 3, "\(lines)")
        #expect(lines.contains { $0.hasSuffix("hall.yaml:7:5: buses[0].baudrate: unknown key (known here: baud, data-bits, id, parity, poll-interval-ms, port, response-timeout-ms, stop-bits, transport)") }, "\(lines)")
        #expect(lines.contains { $0.contains("hall.yaml:11:73:") && $0.contains("devices[1].address: 300 is out of range 1…247") }, "\(lines)")
        // The device with a bad address still has its bus checked.
        #expect(lines.contains { $0.contains("hall.yaml:11:57: devices[1].bus: unknown bus 'lan-9'") }, "\(lines)")
    }

    /// From a trial: a key reported missing came before the misspelt key that caused it, and a broken profile's
    /// problems after its first lost the configuration's place.
    @Test func aBrokenProfilesProblemsComeInItsOrderEachOnALineAndAMisspeltKeyIsNamed() throws {
        let profiles = try TemporaryDirectory()
        let original = try String(contentsOfFile: profilesDirectory + "/modbus-evaluator-3key.yaml", encoding: .utf8)
        let broken = original.replacingOccurrences(of: "  event-counter: 1", with: "  event-countr: 1")
            .replacingOccurrences(of: "  acknowledge: 5", with: "  acknowledge: 50x")
        try #require(broken != original)
        try broken.write(toFile: profiles.file("modbus-evaluator-3key.yaml"), atomically: true, encoding: .utf8)
        let lines = try issues(valid.replacingOccurrences(of: "profiles: \(profilesDirectory)", with: "profiles: \(profiles.path)"))
            .map(\.description)
        let file = profiles.file("modbus-evaluator-3key.yaml")
        #expect(lines.count == 4, "\(lines)")
        #expect(lines.first?.contains("hall.yaml:10:29: devices[0].profile: profile modbus-evaluator-3key has 3 problems") == true,
                "said once, at its first device: \(lines)")
        let rest = lines.dropFirst().map { $0.replacingOccurrences(of: file, with: "PROFILE") }
        #expect(rest.count == 3 && rest[0].hasPrefix("PROFILE:") && rest[0].contains("registers.event-counter: missing (required)")
                && rest[1].contains("registers.event-countr: unknown key; did you mean 'event-counter'?")
                && rest[2].contains("registers.acknowledge: expected a whole number, found '50x'"), "in the file's order: \(rest)")
    }

    @Test func anEmptyValueIsCalledEmptyNotTheWrongKind() throws {
        let found = try issues(valid.replacingOccurrences(of: #"window: "2""#, with: #"window: """#)).map(\.description)
        #expect(found.count == 1 && found[0].hasSuffix("devices[1].window: is empty; give it a value or leave the key out"),
                "\(found)")
    }

    @Test func unknownBusesProfilesAndDoubleAddressesNameTheKey() throws {
        let broken = valid
            .replacingOccurrences(of: "bus: lan-1, address: 1", with: "bus: lan-2, address: 1")
            .replacingOccurrences(of: "profile: modbus-evaluator-3key, bus: rs485-1", with: "profile: no-such-pad, bus: rs485-1")
        let lines = try issues(broken).map(\.description)
        #expect(lines.contains { $0.contains("hall.yaml:11:57:") && $0.contains("devices[1].bus: unknown bus 'lan-2' (buses: rs485-1, lan-1)") }, "\(lines)")
        #expect(lines.contains { $0.contains("hall.yaml:10:29:") && $0.contains("devices[0].profile") && $0.contains("no profile 'no-such-pad'") }, "\(lines)")

        let twice = valid.replacingOccurrences(of: "bus: lan-1, address: 1", with: "bus: rs485-1, address: 1")
        let twiceLines = try issues(twice).map(\.description)
        #expect(twiceLines.contains { $0.contains("devices[1].address: address 1 on bus rs485-1 is already used by eval-w01") }, "\(twiceLines)")
    }

    /// From a trial: `transport: modbus_rtu` was followed by "unknown key" for each of the bus's keys and "unknown
    /// bus" for each of its devices; `type: postgresql` by six "unknown key" lines.
    @Test func aMistypedTransportOrSinkTypeIsOneError() throws {
        let broken = valid.replacingOccurrences(of: "transport: modbus-rtu", with: "transport: modbus_rtu")
            + "\nsinks:\n  - {type: postgresql, host: db.example, database: central, user: hall}\n"
        let lines = try issues(broken).map(\.description)
        #expect(lines.count == 2, "\(lines)")
        #expect(lines.contains { $0.contains("buses[0].transport") && $0.contains("modbus_rtu") }, "\(lines)")
        #expect(lines.contains { $0.contains("sinks[0].type") && $0.contains("postgresql") }, "\(lines)")
    }

    /// Found in a trial: one YAML error in a profile was reported once per device using it (a hall of 100 pads: 100
    /// lines), and a missing profile folder as a missing file per profile.
    @Test func aBrokenProfileOrAMissingFolderIsReportedOnce() throws {
        let profiles = folder.file("profiles")
        try FileManager.default.createDirectory(atPath: profiles, withIntermediateDirectories: true)
        try "model: x\nfamily: [modbus-evaluator\n".write(
            toFile: profiles + "/modbus-evaluator-3key.yaml", atomically: true, encoding: .utf8)
        let broken = try issues(valid.replacingOccurrences(of: "profiles: \(profilesDirectory)", with: "profiles: \(profiles)"))
        #expect(broken.count == 1, "\(broken)")
        #expect(broken.first?.description.contains("modbus-evaluator-3key.yaml") == true, "\(broken)")

        let missing = try issues(valid.replacingOccurrences(of: "profiles: \(profilesDirectory)", with: "profiles: \(profiles)-gone"))
        #expect(missing.map(\.description) == ["\(folder.file("hall.yaml")):10:29: devices[0].profile: the profile folder \(profiles)-gone does not exist (profiles:)"])
    }

    @Test func aDuplicateIdIsReportedWhereItIsUsedAgain() throws {
        let twice = valid.replacingOccurrences(of: "id: eval-w02", with: "id: eval-w01")
        let lines = try issues(twice).map(\.description)
        #expect(lines == [folder.file("hall.yaml") + ":11:10: devices[1].id: device id 'eval-w01' is used twice"])
    }

    @Test func theCheckCommandReportsTheFilesTheGatewayCannotRead() async throws {
        let passwordFolder = folder.file("password-folder")
        try FileManager.default.createDirectory(atPath: passwordFolder, withIntermediateDirectories: true)
        let token = try write("0123456789abcdef0123456789abcdef\n", "sink-token")
        // A provisioning script that wrote an unset variable: sent, it would fail as a wrong password at the broker.
        let emptyPassword = try write("\n", "mqtt-password")
        let path = try write(
            valid + """

                api: {token-file: missing-api-token}
                sinks:
                  - {type: postgres, host: db.lan, database: hall, user: gateway, password-file: \(passwordFolder)}
                  - {type: http, url: "https://central.lan/events", token-file: \(token), ca-file: missing-ca.pem}
                  - {type: mqtt, host: 127.0.0.1, username: hall, password-file: \(emptyPassword)}
                """)
        // Every other command reads such a hall as it is: the files may be the gateway user's alone.
        _ = try ConfigLoader.load(path: path)

        let result = try await run(gatewaydPath, ["config", "check", path])
        #expect(result.status == 2)
        let lines = result.standardError.split(separator: "\n").map(String.init)
        #expect(
            lines.sorted() == [
                "\(path):12:19: api.token-file: cannot read \(folder.file("missing-api-token")): no such file",
                "\(path):14:82: sinks[0].password-file: cannot read \(passwordFolder): is a directory",
                "\(path):15:\(76 + token.count): sinks[1].ca-file: cannot read \(folder.file("missing-ca.pem")): "
                    + "no such file",
                "\(path):16:66: sinks[2].password-file: the file \(emptyPassword) is empty (leave the key out for none)",
            ], "\(result.standardError)")
    }

    @Test func theCheckRefusesATokenFileTheGatewayWouldRefuse() async throws {
        // An installer's placeholder: `run` refuses it (a short token is guessed), so `config check` says so too.
        let short = try write("changeme\n", "api-token")
        let path = try write(valid + "\napi: {token-file: \(short)}\n")
        let result = try await run(gatewaydPath, ["config", "check", path])
        #expect(result.status == 2, "\(result.standardOutput)")
        #expect(result.standardError.contains("api.token-file: \(short): the token must be at least 16 characters"),
                "\(result.standardError)")
        // `run` says it as a log line, with its time and level, like its other reasons not to start.
        let started = try await run(gatewaydPath, ["run", "--config", path, "--api-port", "0"])
        #expect(started.status == 2, "\(started.standardOutput)")
        #expect(started.standardOutput.contains(
            "critical gatewayd: cannot start: api.token-file \(short): the token must be at least 16 characters"),
            "\(started.standardOutput)")
    }

    @Test func relativePathsAreJoinedWithoutDotSteps() throws {
        let text = valid + "\nstate-directory: ./state\nsinks:\n  - {type: sqlite, path: ../shared/./events.sqlite}\n"
        let (inFolder, _) = try ConfigLoader.parse(text, file: "cfg/hall.yaml", relativeTo: "cfg")
        #expect(inFolder.stateDirectory == "cfg/state")
        #expect(inFolder.sinks.first?.kind == .sqlite(path: "cfg/../shared/events.sqlite"))
        let (here, _) = try ConfigLoader.parse(text, file: "hall.yaml", relativeTo: ".")
        #expect(here.stateDirectory == "state")
    }

    @Test func aKeyGivenTwiceIsNamedWhereItComesAgain() throws {
        let twice = valid + "\nbuses:\n  - {id: rs485-9, transport: serial, port: /dev/ttyUSB9}\n"
        let lines = twice.split(separator: "\n", omittingEmptySubsequences: false)
        let first = try #require(lines.firstIndex { $0.hasPrefix("buses:") }) + 1
        let again = try #require(lines.lastIndex { $0.hasPrefix("buses:") }) + 1
        // One line at the second place, not Yams's dump of the whole file at the mapping's start.
        #expect(try issues(twice).map(\.description) == [
            "\(folder.file("hall.yaml")):\(again):1: buses: given twice in one mapping (first at line \(first)); keep one"
        ])
    }

    @Test func aYAMLSyntaxErrorNamesItsLine() throws {
        let found = try issues("hall: {id: x\nbuses: [\n")
        #expect(found.count == 1)
        #expect(found.first?.line != nil)
        #expect(found.first?.description.contains("YAML syntax") == true)
    }

    @Test func anUnreadableFileSaysSo() {
        #expect(throws: ConfigError.self) { try ConfigLoader.load(path: folder.file("absent.yaml")) }
    }

    @Test func aFileSavedAsGB18030IsNamedNotUTF8() async throws {
        // 窗口评价器 in a comment, as a Windows editor saves it in GB18030: not UTF-8.
        let gb18030: [UInt8] = [0xB4, 0xB0, 0xBF, 0xDA, 0xC6, 0xC0, 0xBC, 0xDB, 0xC6, 0xF7]
        let path = folder.file("hall.yaml")
        try (Data(valid.utf8) + Data("\n# ".utf8) + Data(gb18030) + Data("\n".utf8)).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: ConfigError.self) { try ConfigLoader.load(path: path) }
        let refused = try #require(error)
        #expect(refused.issues.map(\.description) == ["\(path): is not UTF-8 text (saved as GBK or GB18030?): save it as UTF-8"])

        let result = try await run(gatewaydPath, ["config", "check", path])
        #expect(result.status == 2)
        #expect(result.standardError.split(separator: "\n").map(String.init)
                    == ["\(path): is not UTF-8 text (saved as GBK or GB18030?): save it as UTF-8"], "\(result.standardError)")
    }

    /// `gatewayd run --sinks FILE`: the file's sinks go into the demo hall's configuration, its files from its folder.
    @Test func aSinksFileIsTakenWithItsFilesFromItsFolderAndSaidAsAConfigurationIs() throws {
        try FileManager.default.createDirectory(atPath: folder.file("central"), withIntermediateDirectories: true)
        let path = folder.file("central/sinks.yaml")
        // A value that ends in blank lines makes the YAML writer end the document (`...`) before the demo's keys.
        try """
            sinks:
              - {type: postgres, name: central, host: "05432", database: 中心库, user: "yes", password-file: ../pg.password}
              - type: mqtt
                host: broker.example
                client-id: |+
                  gateway-1
            """.appending("\n\n").write(toFile: path, atomically: true, encoding: .utf8)
        try "secret\n".write(toFile: folder.file("pg.password"), atomically: true, encoding: .utf8)
        let yaml = try ConfigLoader.loadSinks(path: path)
        let (config, _) = try ConfigLoader.parse(valid + "\n" + yaml + "heartbeat-seconds: 0\n", file: "demo", relativeTo: "/")
        #expect(config.sinks.map(\.name) == ["central", "mqtt"])
        let central = try #require(config.sinks.first.flatMap { sink -> PostgresSinkConfig? in
            if case .postgres(let settings) = sink.kind { settings } else { nil }
        })
        #expect(central.host == "05432" && central.user == "yes" && central.database == "中心库")
        #expect(central.passwordFile == folder.file("central/../pg.password"))
        #expect(config.heartbeatInterval == nil, "the keys after the sinks are read")

        let gb18030: [UInt8] = [0x23, 0x20, 0xB4, 0xB0, 0xBF, 0xDA, 0x0A]
        try (Data(gb18030) + Data("sinks: []\n".utf8)).write(to: URL(fileURLWithPath: path))
        let refused = #expect(throws: ConfigError.self) { try ConfigLoader.loadSinks(path: path) }
        #expect(refused?.issues.map(\.description) == ["\(path): is not UTF-8 text (saved as GBK or GB18030?): save it as UTF-8"])

        // A hall's whole configuration given for its sinks: one line saying so, not one per section.
        let hall = try write(valid, "whole-hall.yaml")
        let whole = #expect(throws: ConfigError.self) { try ConfigLoader.loadSinks(path: hall) }
        #expect(whole?.issues.map(\.description) == [
            "\(hall): this is a hall's configuration (it has hall:, buses:, devices:): run it with --config, or copy its "
                + "sinks: into a file of their own for the demo",
        ])
    }

    @Test func anAPIBeyondLoopbackNeedsATokenFileAndANameIsNotTakenForLoopback() throws {
        for host in ["127.0.0.1", "127.3.4.5", "localhost", "[::1]"] {
            #expect(try issues(valid + "\napi: {listen: \"\(host):8420\"}\n").isEmpty, "\(host)")
        }
        // From a security trial: 127.example.test resolved to a LAN address, and the API listened there without a token.
        for host in ["0.0.0.0", "10.20.0.5", "127.example.test", "127"] {
            let found = try issues(valid + "\napi: {listen: \"\(host):8420\"}\n")
            #expect(found.map(\.key) == ["api.listen"], "\(host): \(found)")
            #expect(found.first?.message.contains("listening on \(host), beyond this machine, needs api.token-file") == true)
        }
    }

    /// From a security trial: secrets sent in clear text and files open to every user passed `config check` unsaid.
    @Test func configCheckWarnsOfSecretsInClearTextAndFilesOpenToEveryUser() async throws {
        let secret = try write("s3cret-password-of-the-hall\n", "store.password")
        chmod(secret, 0o644)
        let state = folder.file("state")
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        chmod(state, 0o777)
        let path = try write(valid + """

            state-directory: \(state)
            api: {listen: "0.0.0.0:8420", token-file: \(secret)}
            sinks:
              - {type: http, name: haocha, url: "http://10.20.0.9/v1/events", token-file: \(secret)}
              - {type: mqtt, name: broker, host: mq.example.gov.cn, username: hall, password-file: \(secret)}
              - {type: postgres, name: central, host: db.example.gov.cn, database: central, user: hall, password-file: \(secret)}
              - {type: postgres, name: nearby, host: 127.0.0.1, database: central, user: hall, password-file: \(secret)}
              - {type: http, name: secure, url: "https://api.example.gov.cn/v1/events", token-file: \(secret)}
            """)
        chmod(path, 0o666)
        let result = try await run(gatewaydPath, ["config", "check", path])
        #expect(result.status == 0, "warnings, not refusals: \(result.standardError)")
        let warnings = result.standardError.split(separator: "\n").map { String($0.dropFirst("\(path): warning: ".count)) }
        #expect(warnings.first?.hasPrefix("bus rs485-1: /dev/ttyUSB0 is not there now") == true, "\(warnings)")
        #expect(Array(warnings.dropFirst()) == [
            "sink haocha: its token goes to 10.20.0.9 in clear text (http://): use https://",
            "sink broker: its password goes to mq.example.gov.cn in clear text: set tls: true",
            "sink central: its password and the events go to db.example.gov.cn unencrypted (tls-mode: disable): use tls-mode: verify-full",
            "api: the bearer token crosses the network in clear text (the API has no TLS); keep the hall's network closed, "
                + "or listen on loopback behind a TLS proxy",
            "\(secret) can be read by every user of the machine (mode 644): chmod 640 it, owned by the gateway's group",
            "\(path) can be changed by every user of the machine (mode 666): chmod o-w",
            "\(state) can be written by every user of the machine (mode 777): chmod o-w, or another user could put files "
                + "in the gateway's way",
        ], "\(result.standardError)")
        #expect(!result.standardError.contains("s3cret"))
    }

    @Test func aSecondBusOnOneSerialPortIsRefusedAtThatBus() throws {
        let text = valid.replacingOccurrences(
            of: "  - {id: lan-1, transport: modbus-tcp, host: 10.0.0.5}",
            with: "  - {id: lan-1, transport: modbus-tcp, host: 10.0.0.5}\n  - {id: ff68-1, transport: serial, port: /dev/ttyUSB0}")
        let lines = try issues(text).map(\.description)
        #expect(lines == [folder.file("hall.yaml") + ":9:43: buses[2].port: /dev/ttyUSB0 is already the port of bus rs485-1: "
                            + "two masters on one line would talk over each other"])
    }

    @Test func aPortNamedThroughASymlinkIsTheSameLine() throws {
        // As udev names an adapter under /dev/serial/by-id: a link to the tty another bus already has.
        let terminal = try PseudoTerminal()
        try FileManager.default.createDirectory(atPath: folder.file("by-id"), withIntermediateDirectories: true)
        let byId = folder.file("by-id/usb-FTDI_FT232R_A10K3Q2B-if00-port0")
        try FileManager.default.createSymbolicLink(atPath: byId, withDestinationPath: terminal.devicePath)
        let text = valid
            .replacingOccurrences(of: "port: /dev/ttyUSB0", with: "port: \(terminal.devicePath)")
            .replacingOccurrences(
                of: "  - {id: lan-1, transport: modbus-tcp, host: 10.0.0.5}",
                with: "  - {id: lan-1, transport: modbus-tcp, host: 10.0.0.5}\n  - {id: ff68-1, transport: serial, port: \(byId)}")
        let lines = try issues(text).map(\.description)
        #expect(lines == [folder.file("hall.yaml") + ":9:43: buses[2].port: \(byId) is already the port of bus rs485-1 "
                            + "(\(terminal.devicePath) is the same line): two masters on one line would talk over each other"])
    }

    @Test func twoModbusTCPBusesToOneHostAndPortAreAccepted() throws {
        // A Modbus TCP server takes several connections: two buses to it are not two masters on one wire.
        let text = valid.replacingOccurrences(
            of: "  - {id: lan-1, transport: modbus-tcp, host: 10.0.0.5}",
            with: "  - {id: lan-1, transport: modbus-tcp, host: 10.0.0.5}\n  - {id: lan-2, transport: modbus-tcp, host: 10.0.0.5, tcp-port: 502}")
        let (config, _) = try ConfigLoader.load(path: try write(text))
        #expect(config.buses.map(\.id) == ["rs485-1", "lan-1", "lan-2"])
        #expect(config.buses[2].transport == .modbusTCP(host: "10.0.0.5", port: 502))
        #expect(config.buses[1].transport == config.buses[2].transport)
    }

    @Test func aHallIdWithASpaceOrASlashIsRefused() throws {
        let lines = try issues(valid.replacingOccurrences(of: "id: hall-1", with: "id: xh zwfw/2")).map(\.description)
        #expect(lines == [folder.file("hall.yaml") + ":1:12: hall.id: 'xh zwfw/2' may hold only letters, digits, '-', '_' and '.' "
                            + "(it becomes part of event sources, MQTT topics and the central table)"])
    }

    /// Every list of ids is held to the rule; a refused id is still known to what refers to it (no "unknown bus" too).
    @Test(arguments: [
        ("rs485-1", "rs485/1", "buses[0].id: 'rs485/1' may hold only letters, digits, '-', '_' and '.'"),
        ("id: eval-w01", "id: 评价器-w01", "devices[0].id: '评价器-w01' may hold only letters, digits, '-', '_' and '.'"),
        ("id: eval-w02", "id: .eval-w02", "devices[1].id: '.eval-w02' may not start with '.'"),
        ("name: local", "name: local store", "sinks[0].name: 'local store' may hold only letters, digits, '-', '_' and '.'"),
        ("id: tablet-w05", "id: -tablet-w05", "terminals[0].id: '-tablet-w05' may not start with '-'"),
    ])
    func anIdThatWouldBreakASourceTopicOrTableIsRefused(of: String, with: String, message: String) throws {
        let hall = valid + """

            sinks:
              - {type: sqlite, name: local}
            terminals:
              - {id: tablet-w05, window: "5", scale: five-level}
            """
        let lines = try issues(hall.replacingOccurrences(of: of, with: with)).map(\.description)
        #expect(lines.count == 1, "\(lines)")
        let line = try #require(lines.first)
        #expect(line.hasPrefix(folder.file("hall.yaml") + ":"), "names the file: \(line)")
        #expect(line.hasSuffix(": \(message) (it becomes part of event sources, MQTT topics and the central table)"), "\(line)")
    }

    /// From an installer's trial: `CST`, as a Chinese box's `date` prints it, passed the check as US Central time, and
    /// the boards were switched on at midnight.
    @Test(arguments: [
        ("CST", "'CST' is no region (read as UTC−06:00): an abbreviation is shared (CST is China Standard Time and US "
            + "Central time) and an offset follows no region's rules"),
        ("GMT+8", "'GMT+8' is no region (read as UTC+08:00): an abbreviation is shared (CST is China Standard Time and "
            + "US Central time) and an offset follows no region's rules"),
        ("Etc/GMT+8", "'Etc/GMT+8' is UTC−08:00, not what it seems (the tz database inverts the sign of Etc/GMT zones)"),
        ("Asia/Beijing", "unknown time zone 'Asia/Beijing'"),
        ("EST", "'EST' is no region (read as UTC−05:00): an abbreviation is shared (CST is China Standard Time and US "
            + "Central time) and an offset follows no region's rules"),
    ])
    func aTimeZoneThatIsNoRegionIsRefusedWithWhatItWouldBe(name: String, message: String) throws {
        let lines = try issues(valid.replacingOccurrences(of: "timezone: Asia/Shanghai", with: "timezone: \(name)"))
            .map(\.description)
        let example = "name the hall's region as the tz database does, e.g. Asia/Shanghai (or Asia/Urumqi, UTC)"
        #expect(lines == [folder.file("hall.yaml") + ":1:30: hall.timezone: \(message): \(example)"])
    }

    @Test(arguments: [("Asia/Shanghai", 8 * 3600), ("Asia/Urumqi", 6 * 3600), ("PRC", 8 * 3600), ("UTC", 0)])
    func aRegionOrUTCIsTheHallsTime(name: String, secondsFromGMT: Int) throws {
        let (config, _) = try ConfigLoader.load(path: write(valid.replacingOccurrences(
            of: "timezone: Asia/Shanghai", with: "timezone: \(name)")))
        #expect(config.hall.timeZone.secondsFromGMT() == secondsFromGMT)
    }

    @Test func idsOfLettersDigitsDashesUnderscoresAndDotsUpTo64CharactersPass() throws {
        let longest = String(repeating: "w", count: 64)
        let text = valid
            .replacingOccurrences(of: "id: hall-1", with: "id: XH_zwfw.2")
            .replacingOccurrences(of: "id: eval-w02", with: "id: \(longest)")
            // A window is a name for people, not an id.
            .replacingOccurrences(of: "window: \"2\"", with: "window: \"综合 2/B\"")
        let (config, _) = try ConfigLoader.load(path: try write(text))
        #expect(config.hall.id == "XH_zwfw.2")
        #expect(config.devices.map(\.id) == ["eval-w01", longest])
        #expect(config.devices[1].window == "综合 2/B")

        let lines = try issues(valid.replacingOccurrences(of: "id: eval-w02", with: "id: \(longest)w")).map(\.description)
        #expect(lines == [folder.file("hall.yaml") + ":11:10: devices[1].id: '\(longest)w' is 65 characters long, more than 64 "
                            + "(it becomes part of event sources, MQTT topics and the central table)"])
    }

    @Test func aLocalStoreInTheOutboxsOwnFileIsRefused() throws {
        // The state directory written out, the store's path relative to this file's folder: one file all the same.
        let text = valid + "\nstate-directory: \(folder.path)/state\nsinks:\n  - {type: sqlite, path: ./state/outbox.sqlite}\n"
        let lines = try issues(text).map(\.description)
        #expect(lines == [folder.file("hall.yaml") + ":14:26: sinks[0].path: the outbox's own file; "
                            + "the local event store needs a file of its own"])

        // A relative folder is taken from the current one, as the gateway would open the files.
        let here = FileManager.default.currentDirectoryPath
        let relative = valid + "\nstate-directory: \(here)/cfg/state\nsinks:\n  - {type: sqlite, path: state/outbox.sqlite}\n"
        let error = #expect(throws: ConfigError.self) {
            try ConfigLoader.parse(relative, file: "cfg/hall.yaml", relativeTo: "cfg")
        }
        let refused = try #require(error)
        #expect(refused.issues.map(\.description)
                    == ["cfg/hall.yaml:14:26: sinks[0].path: the outbox's own file; the local event store needs a file of its own"])

        // Beside the outbox, in a file of its own, the store is fine.
        let beside = text.replacingOccurrences(of: "./state/outbox.sqlite", with: "./state/events.sqlite")
        let (config, _) = try ConfigLoader.load(path: try write(beside))
        #expect(config.sinks.first?.sqlitePath == folder.path + "/state/events.sqlite")
    }

    @Test func theCheckCommandPrintsEachIssueAndExitsWithStatus2() async throws {
        let path = try write(valid.replacingOccurrences(of: "transport: modbus-tcp", with: "transport: modbus-udp"))
        let result = try await run(gatewaydPath, ["config", "check", path])
        #expect(result.status == 2)
        #expect(result.standardError.contains("\(path):8:28: buses[1].transport: 'modbus-udp' is not one of: modbus-rtu, modbus-tcp"),
                "\(result.standardError)")

        let good = try await run(gatewaydPath, ["config", "check", try write(valid, "good.yaml")])
        #expect(good.status == 0)
        // Its /dev/ttyUSB0 is a warning where it is not plugged in.
        #expect(good.standardOutput.contains("OK (hall hall-1, 2 buses, 2 devices, 1 sink"), "\(good.standardOutput)")

        // The same verdicts for scripts.
        let bad = try await run(gatewaydPath, ["config", "check", "--json", path])
        #expect(bad.status == 2)
        let verdict = try #require(
            try JSONSerialization.jsonObject(with: Data(bad.standardOutput.utf8)) as? [String: Any])
        #expect(verdict["usable"] as? Bool == false)
        let issue = try #require((verdict["issues"] as? [[String: Any]])?.first)
        #expect(issue["line"] as? Int == 8 && issue["column"] as? Int == 28 && issue["key"] as? String == "buses[1].transport")
        let usable = try await run(gatewaydPath, ["config", "check", "--json", try write(valid, "good.yaml")])
        let counts = try #require(
            try JSONSerialization.jsonObject(with: Data(usable.standardOutput.utf8)) as? [String: Any])
        #expect(usable.status == 0 && counts["usable"] as? Bool == true && counts["devices"] as? Int == 2)
    }

    /// The README's example configuration is one the gateway takes (its profiles from this checkout).
    @Test func theReadmesExampleConfigurationLoads() throws {
        let readme = try String(contentsOfFile: repositoryRoot + "/README.md", encoding: .utf8)
        let start = try #require(readme.range(of: "```yaml\nhall:\n  id: xh-zwfw"))
        let end = try #require(readme[start.upperBound...].range(of: "\n```\n"))
        let yaml = String(readme[readme.index(start.lowerBound, offsetBy: "```yaml\n".count)..<end.lowerBound])
            .replacingOccurrences(of: "/usr/share/hall-gateway/devices", with: profilesDirectory)
        let (config, _) = try ConfigLoader.parse(yaml, file: "README.md", relativeTo: folder.path)
        #expect(config.terminals == [TerminalConfig(id: "tablet-w09", window: "9", scale: "five-level")])
        #expect(config.devices.count == 6 && config.sinks.count == 4)
    }

    /// Found by trying it: a mistyped port passed the check, and the gateway then retried it for ever.
    @Test func theCheckWarnsOfASerialPortThatIsNotThereAndStillPasses() async throws {
        let line = try PseudoTerminal()
        let present = try await run(gatewaydPath, ["config", "check", try write(
            valid.replacingOccurrences(of: "/dev/ttyUSB0", with: line.devicePath), "present.yaml")])
        #expect(present.status == 0 && present.standardError.isEmpty, "\(present.standardError)")
        #expect(present.standardOutput.hasSuffix("OK (hall hall-1, 2 buses, 2 devices, 1 sink)\n"), "\(present.standardOutput)")

        let path = try write(valid.replacingOccurrences(of: "/dev/ttyUSB0", with: "/dev/ttyNOPE9"), "absent.yaml")
        let absent = try await run(gatewaydPath, ["config", "check", path])
        #expect(absent.status == 0, "an adapter may be plugged in later")
        #expect(absent.standardError.contains("\(path): warning: bus rs485-1: /dev/ttyNOPE9 is not there now; "
                                              + "the gateway will keep trying it"), "\(absent.standardError)")
        #expect(absent.standardOutput.contains("OK (hall hall-1, 2 buses, 2 devices, 1 sink, 1 warning)"))
        let json = try await run(gatewaydPath, ["config", "check", "--json", path])
        let verdict = try #require(try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        #expect(verdict["usable"] as? Bool == true && (verdict["warnings"] as? [String])?.count == 1, "\(json.standardOutput)")
    }

    /// From a trial: a pad without `window:` passed the check; its ratings carried an empty window.
    @Test func theCheckWarnsOfAPadWithoutAWindowAndStillPasses() async throws {
        let line = try PseudoTerminal()
        let yaml = valid.replacingOccurrences(of: "/dev/ttyUSB0", with: line.devicePath)
            .replacingOccurrences(of: #"address: 1, window: "1"}"#, with: "address: 1}")
        let path = try write(yaml, "windowless.yaml")
        let result = try await run(gatewaydPath, ["config", "check", path])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardError.contains("\(path): warning: device eval-w01 has no window: its ratings carry none"),
                "\(result.standardError)")
        #expect(result.standardOutput.contains(", 1 warning)"), "\(result.standardOutput)")
    }

    @Test func theShippedExampleHallUsesEveryProfileAndPassesTheCheck() async throws {
        let result = try await run(gatewaydPath, ["config", "check", profilesDirectory + "/example-hall.yaml"])
        #expect(result.status == 0, "\(result.standardError)")
        let (config, _) = try ConfigLoader.load(path: profilesDirectory + "/example-hall.yaml")
        // Its serial ports are warnings on a machine without those adapters.
        #expect(result.standardOutput.contains(
            "OK (hall example-hall, \(config.buses.count) buses, \(config.devices.count) devices, 1 sink"), "\(result.standardOutput)")
        let shipped = try FileManager.default.contentsOfDirectory(atPath: profilesDirectory)
            .filter { $0.hasSuffix(".yaml") && $0 != "example-hall.yaml" }.map { String($0.dropLast(5)) }
        let used = Set(config.devices.map(\.profile))
        #expect(used == Set(shipped), """
            every shipped profile is in the example: add a device of \(Set(shipped).subtracting(used).sorted()) to \
            devices/example-hall.yaml\(used.subtracting(shipped).isEmpty ? "" : "; no profile for \(used.subtracting(shipped).sorted())")
            """)
        // A hall copied from it runs its day (from a duty officer's trial: without hours: boards were never switched off).
        #expect(config.hallDay?.hours != nil && config.hallDay?.tickets != nil)
    }

    @Test func aBrokenProfileIsReportedInItsOwnFile() throws {
        let profiles = folder.file("profiles")
        try FileManager.default.createDirectory(atPath: profiles, withIntermediateDirectories: true)
        let original = try String(contentsOfFile: profilesDirectory + "/modbus-evaluator-3key.yaml", encoding: .utf8)
        try original.replacingOccurrences(of: "key-ring: {start: 16, count: 16}", with: "key-ring: {start: 30, count: 16}")
            .write(toFile: profiles + "/modbus-evaluator-3key.yaml", atomically: true, encoding: .utf8)
        let lines = try issues(valid.replacingOccurrences(of: "profiles: \(profilesDirectory)", with: "profiles: profiles"))
            .map(\.description)
        #expect(lines.contains { $0.contains("modbus-evaluator-3key.yaml:") && $0.contains("registers.key-ring: registers 30…45 lie outside the block") }, "\(lines)")
    }

    @Test func aPadProfileWhoseRingWouldGoWrongAfterAWrapOrWhoseAcknowledgementIsNotReadIsRefused() throws {
        let profiles = folder.file("profiles")
        try FileManager.default.createDirectory(atPath: profiles, withIntermediateDirectories: true)
        let original = try String(contentsOfFile: profilesDirectory + "/modbus-evaluator-3key.yaml", encoding: .utf8)
        try original
            .replacingOccurrences(of: "key-ring: {start: 16, count: 16}", with: "key-ring: {start: 16, count: 10}")
            .replacingOccurrences(of: "acknowledge: 5", with: "acknowledge: 40")
            .write(toFile: profiles + "/modbus-evaluator-3key.yaml", atomically: true, encoding: .utf8)
        let lines = try issues(valid.replacingOccurrences(of: "profiles: \(profilesDirectory)", with: "profiles: profiles"))
            .map(\.description)
        #expect(lines.contains { $0.contains("registers.key-ring: a ring of 10 registers: its size must be a power of two") },
                "\(lines)")
        #expect(lines.contains { $0.contains("registers.acknowledge: registers 40…40 lie outside the block") }, "\(lines)")
    }

    @Test func theShippedDemoProfileLoads() throws {
        let profile = try ProfileLibrary(directory: profilesDirectory).profile(named: "modbus-evaluator-3key")
        let evaluator = try #require({ () -> ModbusEvaluatorProfile? in
            if case .modbusEvaluator(let evaluator) = profile { evaluator } else { nil }
        }(), "modbus-evaluator-3key loads as a Modbus pad")
        #expect(evaluator.scale.keys.map(\.label) == ["满意", "基本满意", "不满意"])
        #expect(evaluator.block == RegisterRange(start: 0, count: 32))
    }

    @Test func aDeviceOnTheWrongKindOfBusIsNamed() throws {
        let text = valid.replacingOccurrences(
            of: "  - {id: lan-1, transport: modbus-tcp, host: 10.0.0.5}",
            with: "  - {id: lan-1, transport: modbus-tcp, host: 10.0.0.5}\n  - {id: line-s, transport: serial, port: /dev/ttyUSB3}")
            + "\n  - {id: board-w03, profile: modbus-window-board, bus: line-s, address: 3}\n"
        let lines = try issues(text).map(\.description)
        #expect(lines.contains { $0.contains("devices[2].bus") && $0.contains("modbus-window-board is a Modbus device but bus line-s is a raw serial line") }, "\(lines)")
    }

    /// One serial line speaks one protocol, and a ticket printer's (RS-232) carries that printer alone.
    @Test func aSecondPrinterOrAnotherProtocolOnASerialLineIsRefused() throws {
        let text = valid.replacingOccurrences(
            of: "  - {id: lan-1, transport: modbus-tcp, host: 10.0.0.5}",
            with: "  - {id: lan-1, transport: modbus-tcp, host: 10.0.0.5}\n  - {id: line-p, transport: serial, port: /dev/ttyUSB3}")
            + """

              - {id: printer-1, profile: escpos-80mm, bus: line-p, address: 0}
              - {id: printer-2, profile: escpos-80mm, bus: line-p, address: 1}
              - {id: caller-w03, profile: ff68-caller, bus: line-p, address: 33, window: "3"}

            """
        let lines = try issues(text).map(\.description)
        #expect(lines.contains { $0.contains("devices[3]") && $0.hasSuffix("bus line-p: an ESC/POS device has a line of its own (RS-232 is point to point)") }, "\(lines)")
        #expect(lines.contains { $0.contains("devices[4].profile: profile ff68-caller speaks FF 68 but bus line-p already carries ESC/POS (escpos-80mm); give it its own serial bus") }, "\(lines)")
    }

    @Test func theModbusBoardProfileLoadsItsRegisterMap() throws {
        let profile = try ProfileLibrary(directory: profilesDirectory).profile(named: "modbus-window-board")
        let board = try #require({ () -> ModbusBoardProfile? in
            if case .modbusBoard(let board) = profile { board } else { nil }
        }(), "modbus-window-board loads as a Modbus board")
        #expect(board.text == RegisterRange(start: 16, count: 32))
        #expect(board.textEncoding == .gb18030)
        #expect(board.faultBits.map(\.name) == ["lamp-fault"])
        #expect(board.modes.blink == 2)
        #expect(board.brightnessRegister == 6 && board.powerRegister == 7)
    }

    @Test(arguments: [
        ("brightness: 6", "brightness: 3", "registers.brightness: register 3 is taken by registers.acknowledge: "
            + "give brightness a register of its own"),
        ("power: 7", "power: 20", "registers.power: register 20 is taken by registers.text (16…47): "
            + "give power a register of its own"),
        ("power: 7", "power: 4", "registers.power: register 4 is taken by readings.temperature: "
            + "give power a register of its own"),
        ("power: 7", "power: 6", "registers.power: register 6 is taken by registers.brightness: "
            + "give power a register of its own"),
        ("text: {start: 16, count: 32}", "text: {start: 16, count: 124}",
         "registers.text: 124 registers: the text is written in one Modbus write, which carries at most 123"),
    ])
    func aBoardRegisterMapThatCannotWorkIsRefusedInOneLine(of: String, with: String, message: String) throws {
        let edited = try editedProfiles("modbus-window-board", in: folder, [(of: of, with: with)])
        let library = ProfileLibrary(directory: edited)
        let error = #expect(throws: ConfigError.self) { try library.profile(named: "modbus-window-board") }
        let lines = try #require(error).description.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 1, "\(lines)")
        let line = try #require(lines.first)
        #expect(line.hasPrefix(library.path(of: "modbus-window-board") + ":"), "names the file: \(line)")
        #expect(line.hasSuffix(": " + message), "\(line)")
    }
}
