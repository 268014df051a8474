import Foundation
import Yams
import Protocols

#if canImport(Glibc)
import Glibc
#endif

/// Reads a gateway configuration file and checks it against the device profiles it names.
public enum ConfigLoader {
    /// Loads and checks `path`, against the profiles in `profilesOverride` instead of the file's `profiles` when
    /// given; `checkingFiles` also reports the password, token and certificate files this user cannot read. Every
    /// problem found is reported at once in the thrown `ConfigError`.
    public static func load(path: String, profilesOverride: String? = nil, checkingFiles: Bool = false)
        throws(ConfigError) -> (GatewayConfig, ProfileLibrary)
    {
        let text = try readText(path)
        let folder = (path as NSString).deletingLastPathComponent
        return try parse(
            text, file: path, relativeTo: folder.isEmpty ? "." : folder, profilesOverride: profilesOverride,
            checkingFiles: checkingFiles)
    }

    /// The text of the file at `path`.
    private static func readText(_ path: String) throws(ConfigError) -> String {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            // Who may, said to whom may not (from an operator's trial: a technician outside the group got no hint).
            let denied = ((error as? CocoaError)?.underlying as? POSIXError)?.code == .EACCES
            let hint = denied ? " to user \(SystemUser.name) (run it as the gateway's user or a member of its group, or with sudo)" : ""
            throw ConfigError(issues: [ConfigIssue(file: path, key: "", message: "cannot read: \(describe(error))\(hint)")])
        }
        // Decoded here, not by Foundation: its error for another encoding ("isn't in the correct format") names no fix.
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(issues: [ConfigIssue(
                file: path, key: "", message: "is not UTF-8 text (saved as GBK or GB18030?): save it as UTF-8")])
        }
        return text
    }

    /// Parses configuration text; relative paths in it are resolved against `folder`.
    public static func parse(
        _ text: String, file: String, relativeTo folder: String, profilesOverride: String? = nil,
        checkingFiles: Bool = false
    ) throws(ConfigError) -> (GatewayConfig, ProfileLibrary) {
        let reader = YAMLReader(file: file, checksFiles: checkingFiles)
        guard let root = reader.compose(text), let top = reader.fields(root, "") else {
            throw ConfigError(issues: reader.issues)
        }
        let hall = parseHall(top.value("hall", required: true), reader)
        let stateDirectory = resolve(top.string("state-directory") ?? "var", against: folder)
        let configuredProfiles = top.string("profiles")
        let profilesDirectory = profilesOverride ?? resolve(configuredProfiles ?? "devices", against: folder)
        let busItems = top.value("buses", required: true).flatMap { reader.items($0, "buses") } ?? []
        let buses = busItems.compactMap { parseBus($0.node, $0.path, reader) }
        let deviceItems = top.value("devices", required: true).flatMap { reader.items($0, "devices") } ?? []
        let devices = deviceItems.compactMap { parseDevice($0.node, $0.path, reader) }
        let sinkItems = top.value("sinks").flatMap { reader.items($0, "sinks") }
        let sinks = sinkItems?.compactMap {
            parseSink($0.node, $0.path, reader, folder: folder, stateDirectory: stateDirectory)
        }
            ?? [SinkConfig(name: "local", kind: .sqlite(path: GatewayConfig.localStorePath(in: stateDirectory)))]
        let outbox = top.value("outbox").flatMap { parseOutbox($0, reader) } ?? OutboxPolicy()
        // 0 turns the heartbeat off.
        let heartbeat = top.int("heartbeat-seconds", in: 0...86_400) ?? 60
        let api = top.value("api").flatMap { parseAPI($0, reader, folder: folder) } ?? APISettings()
        let terminalItems = top.value("terminals").flatMap { reader.items($0, "terminals") } ?? []
        let terminals = terminalItems.compactMap { item -> TerminalConfig? in
            guard let fields = reader.fields(item.node, item.path) else { return nil }
            let id = fields.id("id", required: true)
            let window = fields.string("window", required: true)
            let scales = RatingScale.standard.map(\.name)
            let scale = fields.choice("scale", scales, required: true)
            fields.rejectUnknownKeys()
            guard let id, let window, let scale else { return nil }
            return TerminalConfig(id: id, window: window, scale: scale)
        }
        let hallDay = parseHallDay(hours: top.value("hours"), tickets: top.value("tickets"), reader,
                                   timeZone: hall?.timeZone ?? TimeZone(identifier: "Asia/Shanghai") ?? .gmt)
        let mqttCommands = top.value("commands").flatMap { parseCommands($0, reader, folder: folder) }
        var services: [String] = []
        for item in top.value("services").flatMap({ reader.items($0, "services") }) ?? [] {
            guard let text = reader.string(item.node, item.path) else { continue }
            let service = text.trimmingCharacters(in: .whitespaces)
            do throws(CommandInvalid) {
                try CommandCenter.checkField(service, "service", longest: CommandCenter.longestService)
            } catch {
                reader.report(item.node, item.path, error.message)
                continue
            }
            if services.contains(service) {
                reader.report(item.node, item.path, "'\(service)' is listed twice")
            }
            services.append(service)
        }
        top.rejectUnknownKeys()

        let library = ProfileLibrary(directory: profilesDirectory)
        // A bus named but broken is no unknown bus to its devices: its own error is said once.
        let namedBuses = busItems.compactMap { $0.node.mapping?["id"]?.string }
        checkReferences(devices: devices, items: deviceItems, buses: buses, namedBuses: namedBuses, library: library,
                        reader: reader)
        checkUnique(busItems, key: "id", what: "bus id", reader: reader)
        checkSerialPorts(busItems, reader: reader)
        checkUnique(deviceItems + terminalItems, key: "id", what: "device id", reader: reader)
        // A sink without a name is named after its type.
        checkUnique(sinkItems ?? [], key: "name", orElse: "type", what: "sink name", reader: reader)

        guard reader.issues.isEmpty, let hall else { throw ConfigError(issues: reader.issues) }
        var config = GatewayConfig(hall: hall, stateDirectory: stateDirectory, profilesDirectory: profilesDirectory,
                                   buses: buses, devices: devices, sinks: sinks, outbox: outbox,
                                   heartbeatInterval: heartbeat == 0 ? nil : .seconds(heartbeat))
        config.api = api
        config.hallDay = hallDay
        config.terminals = terminals
        config.mqttCommands = mqttCommands
        config.services = services
        return (config, library)
    }

    /// A file that holds only `sinks:`, as a hall's configuration writes it: the demo hall delivering to a central
    /// store. Checked here, so that a problem is said at its own line; returned as YAML for the demo's configuration,
    /// with every file it names made absolute (they are taken from this file's folder, the demo's are not).
    public static func loadSinks(path: String) throws(ConfigError) -> String {
        let text = try readText(path)
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let folder = (absolute as NSString).deletingLastPathComponent
        // Its files are checked now: the demo runs as the user who wrote them.
        let reader = YAMLReader(file: path, checksFiles: true)
        guard let root = reader.compose(text), let top = reader.fields(root, "") else {
            throw ConfigError(issues: reader.issues)
        }
        // Said once, not as an unknown key per section.
        let hallKeys = ["hall", "buses", "devices"].filter { root.mapping?[$0] != nil }
        if !hallKeys.isEmpty {
            throw ConfigError(issues: [ConfigIssue(
                file: path, key: "",
                message: "this is a hall's configuration (it has " + hallKeys.map { "\($0):" }.joined(separator: ", ")
                    + "): run it with --config, or copy its sinks: into a file of their own for the demo")])
        }
        let items = top.value("sinks", required: true).flatMap { reader.items($0, "sinks") } ?? []
        for item in items {
            _ = parseSink(item.node, item.path, reader, folder: folder, stateDirectory: "var")
        }
        checkUnique(items, key: "name", orElse: "type", what: "sink name", reader: reader)
        top.rejectUnknownKeys()
        guard reader.issues.isEmpty, var sinks = root.mapping?["sinks"]?.sequence else {
            throw ConfigError(issues: reader.issues)
        }
        // The keys `parseSink` resolves against the configuration's folder.
        let fileKeys = ["path", "password-file", "token-file", "ca-file", "certificate-file", "key-file"]
        for index in sinks.indices {
            guard var sink = sinks[index].mapping else { continue }
            for key in fileKeys {
                if let value = sink[key]?.string { sink[key] = Node(resolve(value, against: folder)) }
            }
            sinks[index] = .mapping(sink)
        }
        do {
            let yaml = try Yams.serialize(node: .mapping(["sinks": .sequence(sinks)]), allowUnicode: true)
            // A value ending in blank lines ends the document with `...`: the demo's keys come after it.
            return yaml.hasSuffix("\n...\n") ? String(yaml.dropLast(4)) : yaml
        } catch {
            throw ConfigError(issues: [ConfigIssue(file: path, key: "sinks", message: "cannot be written again: \(error)")])
        }
    }

    /// `api: {listen: 127.0.0.1:8420, token-file: /etc/hall-gateway/api-token}`, or `api: off`.
    private static func parseAPI(_ node: Node, _ reader: YAMLReader, folder: String) -> APISettings? {
        var settings = APISettings()
        if case .scalar(let scalar) = node, scalar.string == "off" {
            settings.enabled = false
            return settings
        }
        guard let fields = reader.fields(node, "api") else { return nil }
        if let listen = fields.string("listen") {
            let separator = listen.lastIndex(of: ":")
            let host = separator.map { String(listen[..<$0]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")) }
            if let separator, let host, !host.isEmpty, let port = Int(listen[listen.index(after: separator)...]),
               (0...65535).contains(port) {
                settings.host = host
                settings.port = port
            } else {
                reader.report(fields.value("listen"), "api.listen", "'\(listen)' is not HOST:PORT (e.g. 127.0.0.1:8420)")
            }
        }
        settings.tokenFile = fields.file("token-file", relativeTo: folder)
        // As `run` reads it: a file it would refuse is not OK here either.
        if reader.checksFiles, let file = settings.tokenFile, let text = try? String(contentsOfFile: file, encoding: .utf8),
           case .failure(let problem) = APISettings.token(inFile: text) {
            reader.report(fields.value("token-file"), "api.token-file", "\(file): \(problem)")
        }
        fields.rejectUnknownKeys()
        if !APISettings.isLoopback(settings.host), settings.tokenFile == nil {
            reader.report(fields.value("listen"), "api.listen",
                          "listening on \(settings.host), beyond this machine, needs api.token-file: the bearer token clients must send")
        }
        return settings
    }

    private static func parseOutbox(_ node: Node, _ reader: YAMLReader) -> OutboxPolicy? {
        guard let fields = reader.fields(node, "outbox") else { return nil }
        let megabytes = fields.int("max-size-mb", in: 1...1_000_000)
        let hours = fields.int("retention-hours", in: 1...87_600) ?? 168
        fields.rejectUnknownKeys()
        return OutboxPolicy(maximumBytes: megabytes.map { Int64($0) * 1_048_576 }, retention: .seconds(hours * 3600))
    }

    private static func parseHall(_ node: Node?, _ reader: YAMLReader) -> Hall? {
        guard let node, let fields = reader.fields(node, "hall") else { return nil }
        let id = fields.id("id", required: true)
        var timeZone = TimeZone(identifier: "Asia/Shanghai") ?? TimeZone(secondsFromGMT: 8 * 3600) ?? .gmt
        if let name = fields.string("timezone") {
            switch hallTimeZone(named: name) {
            case .success(let zone): timeZone = zone
            case .failure(let problem): reader.report(fields.value("timezone"), "hall.timezone", problem.message)
            }
        }
        fields.rejectUnknownKeys()
        return id.map { Hall(id: $0, timeZone: timeZone) }
    }

    /// Why `timezone:` is refused.
    struct TimeZoneProblem: Error {
        let message: String
    }

    /// A hall's time zone by its tz database name (Asia/Shanghai, PRC), or UTC. Not an abbreviation: Foundation takes
    /// `CST`, which a Chinese box's `date` prints, as US Central time (from an installer's trial: boards switched on at
    /// midnight); not `Etc/GMT+8`, which is UTC−08:00 (the tz database inverts the sign of those).
    static func hallTimeZone(named name: String) -> Result<TimeZone, TimeZoneProblem> {
        let example = "name the hall's region as the tz database does, e.g. Asia/Shanghai (or Asia/Urumqi, UTC)"
        func offset(_ zone: TimeZone) -> String {
            let minutes = zone.secondsFromGMT() / 60
            return "UTC\(minutes < 0 ? "−" : "+")" + String(format: "%02d:%02d", abs(minutes) / 60, abs(minutes) % 60)
        }
        if name.hasPrefix("Etc/GMT"), name.count > 7, let zone = TimeZone(identifier: name) {
            return .failure(TimeZoneProblem(message: """
                '\(name)' is \(offset(zone)), not what it seems (the tz database inverts the sign of Etc/GMT zones): \
                \(example)
                """))
        }
        guard let zone = TimeZone(identifier: name) else {
            return .failure(TimeZoneProblem(message: "unknown time zone '\(name)': \(example)"))
        }
        // Foundation's own table of abbreviations, and GMT+8 or UTC-05:00: not the tz database's names (PRC is one).
        let abbreviation = !["UTC", "GMT"].contains(name) && TimeZone.abbreviationDictionary[name] != nil
        guard abbreviation || name.range(of: #"^(GMT|UTC)[+-]"#, options: .regularExpression) != nil else {
            return .success(zone)
        }
        return .failure(TimeZoneProblem(message: """
            '\(name)' is no region (read as \(offset(zone))): an abbreviation is shared (CST is China Standard Time and \
            US Central time) and an offset follows no region's rules: \(example)
            """))
    }

    private static func parseBus(_ node: Node, _ path: String, _ reader: YAMLReader) -> BusConfig? {
        guard let fields = reader.fields(node, path) else { return nil }
        let id = fields.id("id", required: true)
        let kind = fields.choice("transport", ["modbus-rtu", "modbus-tcp", "serial"], required: true)
        let timeout = fields.int("response-timeout-ms", in: 10...10_000) ?? 500
        let interval = fields.int("poll-interval-ms", in: 0...3_600_000) ?? 500
        var transport: BusConfig.Transport?
        var requestsInFlight = 1
        switch kind {
        case "modbus-rtu", "serial":
            let port = fields.string("port", required: true)
            var baud = fields.int("baud", in: 300...921_600) ?? 9600
            if !SerialSettings.supportedBauds.contains(baud) {
                let supported = SerialSettings.supportedBauds.map(String.init).joined(separator: ", ")
                reader.report(fields.value("baud"), fields.keyPath("baud"), "\(baud) baud is not supported (\(supported))")
                baud = 9600
            }
            let parity = fields.choice("parity", SerialSettings.Parity.allCases.map(\.rawValue)) ?? "none"
            let dataBits = fields.int("data-bits", in: 7...8) ?? 8
            let stopBits = fields.int("stop-bits", in: 1...2) ?? 1
            if let port {
                let settings = SerialSettings(port: port, baud: baud, parity: .init(rawValue: parity) ?? .none,
                                              dataBits: dataBits, stopBits: stopBits)
                transport = kind == "serial" ? .serial(settings) : .modbusRTU(settings)
            }
        case "modbus-tcp":
            let host = fields.string("host", required: true)
            let port = fields.int("tcp-port", in: 1...65535) ?? 502
            requestsInFlight = fields.int("requests-in-flight", in: 1...32) ?? 1
            if let host { transport = .modbusTCP(host: host, port: port) }
        default:
            break
        }
        // A transport not known has no keys to hold the others to: the transport alone is said (from a trial:
        // `modbus_rtu` was followed by 'port: unknown key', 'baud: unknown key').
        if kind != nil || fields.value("transport") == nil { fields.rejectUnknownKeys() }
        guard let id, let transport else { return nil }
        return BusConfig(id: id, transport: transport, responseTimeout: .milliseconds(timeout),
                         pollInterval: .milliseconds(interval), requestsInFlight: requestsInFlight)
    }

    private static func parseDevice(_ node: Node, _ path: String, _ reader: YAMLReader) -> DeviceConfig? {
        guard let fields = reader.fields(node, path) else { return nil }
        let id = fields.id("id", required: true)
        let profile = fields.string("profile", required: true)
        let bus = fields.string("bus", required: true)
        let address = fields.int("address", in: 1...247, required: true)
        let window = fields.string("window")
        var templates = DisplayTemplates()
        // A board's own wording of calls and pauses: {call: "请{ticket}号到{window}号窗口", pause: "暂停服务"}.
        if let node = fields.value("templates"), let entries = reader.fields(node, fields.keyPath("templates")) {
            templates = DisplayTemplates(call: entries.string("call"), recall: entries.string("recall"),
                                         pause: entries.string("pause"))
            for problem in templates.problems {
                reader.report(entries.value(problem.key), entries.keyPath(problem.key), problem.message)
            }
            entries.rejectUnknownKeys()
        }
        fields.rejectUnknownKeys()
        guard let id, let profile, let bus, let address else { return nil }
        return DeviceConfig(id: id, profile: profile, bus: bus, address: address, window: window, templates: templates)
    }

    private static func parseSink(_ node: Node, _ path: String, _ reader: YAMLReader, folder: String,
                                  stateDirectory: String) -> SinkConfig? {
        let outboxPath = GatewayConfig.outboxPath(in: stateDirectory)
        guard let fields = reader.fields(node, path) else { return nil }
        let type = fields.choice("type", ["sqlite", "http", "postgres", "mqtt"], required: true)
        let name = fields.id("name") ?? type
        // PostgreSQL takes a batch as one statement: 1,000 rows a batch drained fastest (docs/benchmarks.md).
        let batchSize = fields.int("batch-size", in: 1...10_000) ?? (type == "postgres" ? 1_000 : 500)
        let maximumRetryDelay = Duration.milliseconds(fields.int("max-retry-delay-ms", in: 100...3_600_000) ?? 60_000)
        let timeout = Duration.milliseconds(fields.int("timeout-ms", in: 100...600_000) ?? 30_000)
        func file(_ key: String) -> String? { fields.file(key, relativeTo: folder) }
        func tls() -> TLSSettings {
            TLSSettings(caFile: file("ca-file"), certificateFile: file("certificate-file"), keyFile: file("key-file"))
        }
        var kind: SinkConfig.Kind?
        var retention: Duration?
        switch type {
        case "sqlite":
            // Beside the outbox unless told: the state directory is where the gateway's user may write.
            let store = fields.string("path").map { resolve($0, against: folder) }
                ?? GatewayConfig.localStorePath(in: stateDirectory)
            // Both keep an `event` table: in one file the store would take the outbox's for its own.
            if isSameFile(store, outboxPath) {
                reader.report(fields.value("path"), fields.keyPath("path"),
                              "the outbox's own file; the local event store needs a file of its own")
            }
            kind = .sqlite(path: store)
            // The local store is not the central one: a small box keeps the months it can (about 650 bytes an event).
            retention = fields.int("retention-days", in: 1...36_500).map { .seconds($0 * 86_400) }
        case "http":
            if let url = fields.string("url", required: true) {
                if !(url.hasPrefix("http://") || url.hasPrefix("https://")) || URL(string: url)?.host == nil {
                    reader.report(fields.value("url"), fields.keyPath("url"), "'\(url)' is not an http:// or https:// URL")
                }
                kind = .http(HTTPSinkConfig(url: url, tokenFile: fields.secretFile("token-file", relativeTo: folder), tls: tls(), timeout: timeout))
            }
        case "postgres":
            let host = fields.string("host", required: true)
            let port = fields.int("port", in: 1...65535) ?? 5432
            let database = fields.string("database", required: true)
            let user = fields.string("user", required: true)
            let mode = fields.choice("tls-mode", PostgresSinkConfig.TLSMode.allCases.map(\.rawValue)) ?? "disable"
            let table = fields.string("table") ?? "hall_events"
            if table.range(of: "^[a-z_][a-z0-9_]{0,62}$", options: .regularExpression) == nil {
                reader.report(fields.value("table"), fields.keyPath("table"),
                              "'\(table)' is not a plain table name (lower-case letters, digits, _)")
            }
            if let host, let database, let user {
                kind = .postgres(PostgresSinkConfig(
                    host: host, port: port, database: database, user: user, passwordFile: fields.secretFile("password-file", relativeTo: folder),
                    tlsMode: PostgresSinkConfig.TLSMode(rawValue: mode) ?? .disable, tls: tls(), table: table,
                    timeout: timeout))
            }
        case "mqtt":
            let host = fields.string("host", required: true)
            let useTLS = fields.bool("tls") ?? false
            let port = fields.int("port", in: 1...65535) ?? (useTLS ? 8883 : 1883)
            let clientId = fields.string("client-id")
            let topic = fields.string("topic") ?? "halls/{hall}/events/{type}"
            let keepAlive = fields.int("keepalive-seconds", in: 5...3600) ?? 30
            let settings = tls()
            if !useTLS, settings != TLSSettings() {
                reader.report(fields.value("ca-file") ?? fields.value("certificate-file"), fields.keyPath("tls"),
                              "certificate files are given but tls is not true")
            }
            if let host {
                kind = .mqtt(MQTTSinkConfig(
                    host: host, port: port, clientId: clientId, topic: topic,
                    username: fields.string("username"), passwordFile: fields.secretFile("password-file", relativeTo: folder),
                    tls: useTLS ? settings : nil, keepAlive: .seconds(keepAlive), timeout: timeout))
            }
        default:
            break
        }
        // A type not known has no keys to hold the others to: the type alone is said.
        if type != nil || fields.value("type") == nil { fields.rejectUnknownKeys() }
        guard let name, let kind else { return nil }
        return SinkConfig(name: name, kind: kind, batchSize: batchSize, maximumRetryDelay: maximumRetryDelay,
                          retention: retention)
    }

    private static func checkReferences(
        devices: [DeviceConfig], items: [(node: Node, path: String)], buses: [BusConfig], namedBuses: [String],
        library: ProfileLibrary, reader: YAMLReader
    ) {
        // Checked on the raw entries, so a device with another error still gets these checked too.
        let busIds = namedBuses
        var lineProtocols: [String: [(protocol: LineProtocol?, profile: String, item: (node: Node, path: String))]] = [:]
        var brokenProfiles: Set<String> = []
        for item in items {
            guard let mapping = item.node.mapping else { continue }
            if let bus = mapping["bus"]?.string, !busIds.contains(bus) {
                reader.report(mapping["bus"], "\(item.path).bus",
                              "unknown bus '\(bus)' (buses: \(busIds.joined(separator: ", ")))")
            }
            if let profile = mapping["profile"]?.string {
                do {
                    let loaded = try library.profile(named: profile)
                    if let busId = mapping["bus"]?.string, let bus = buses.first(where: { $0.id == busId }) {
                        checkTransport(loaded, on: bus, node: mapping["bus"], path: "\(item.path).bus", reader: reader)
                        lineProtocols[busId, default: []].append((loaded.lineProtocol, profile, item))
                    }
                } catch {
                    // Said once, at its first device: a hall of 100 pads would get 100 copies of one YAML error.
                    guard brokenProfiles.insert(profile).inserted else { continue }
                    var isFolder: ObjCBool = false
                    if !FileManager.default.fileExists(atPath: library.directory, isDirectory: &isFolder) || !isFolder.boolValue {
                        reader.report(mapping["profile"], "\(item.path).profile",
                                      "the profile folder \(library.directory) does not exist (profiles:)")
                        brokenProfiles.formUnion(items.compactMap { $0.node.mapping?["profile"]?.string })
                    } else if error.issues.count > 1 {
                        // Each of its problems on a line of its own, at its place in the profile.
                        reader.report(mapping["profile"], "\(item.path).profile",
                                      "profile \(profile) has \(error.issues.count) problems, listed at its file")
                        reader.report(error.issues)
                    } else {
                        reader.report(mapping["profile"], "\(item.path).profile", error.description)
                    }
                }
            }
        }
        // One protocol per serial line: a decoder cannot frame two protocols interleaved on one wire.
        for (busId, members) in lineProtocols {
            guard let first = members.first, let firstProtocol = first.protocol else { continue }
            for member in members.dropFirst() where member.protocol != nil && member.protocol != firstProtocol {
                reader.report(member.item.node.mapping?["profile"], "\(member.item.path).profile",
                              "profile \(member.profile) speaks \(member.protocol!.rawValue) but bus \(busId) already "
                                + "carries \(firstProtocol.rawValue) (\(first.profile)); give it its own serial bus")
            }
            if firstProtocol.deviceHasALineOfItsOwn, members.count > 1 {
                reader.report(members[1].item.node, members[1].item.path,
                              "bus \(busId): an \(firstProtocol.rawValue) device has a line of its own (RS-232 is point to point)")
            }
        }
        var seen: [String: String] = [:]
        for device in devices {
            let slot = "\(device.bus)#\(device.address)"
            if let other = seen[slot] {
                let item = items.first { $0.node.mapping?["id"]?.string == device.id }
                reader.report(item?.node.mapping?["address"], "\(item?.path ?? "devices").address",
                              "address \(device.address) on bus \(device.bus) is already used by \(other)")
            }
            seen[slot] = device.id
        }
    }

    private static func checkTransport(_ profile: DeviceProfile, on bus: BusConfig, node: Node?, path: String,
                                       reader: YAMLReader) {
        switch (profile.lineProtocol, bus.transport) {
        case (nil, .serial):
            reader.report(node, path, "\(profile.model) is a Modbus device but bus \(bus.id) is a raw serial line "
                            + "(use transport modbus-rtu)")
        case (let line?, .modbusRTU), (let line?, .modbusTCP):
            reader.report(node, path, "\(profile.model) speaks \(line.rawValue) but bus \(bus.id) is Modbus "
                            + "(use transport serial)")
        default:
            break
        }
    }

    /// Reports an id used before at its second (third, …) use: the line a technician most likely just added.
    private static func checkUnique(
        _ items: [(node: Node, path: String)], key: String, orElse fallbackKey: String? = nil, what: String,
        reader: YAMLReader
    ) {
        var seen: Set<String> = []
        for item in items {
            guard let mapping = item.node.mapping,
                let node = mapping[key] ?? fallbackKey.flatMap({ mapping[$0] }), let id = node.string
            else { continue }
            if !seen.insert(id).inserted { reader.report(node, "\(item.path).\(key)", "\(what) '\(id)' is used twice") }
        }
    }

    /// Reports a serial port given to a second bus, at that bus. Modbus TCP buses to one host and port are left
    /// alone: a gateway may open two connections to one server.
    private static func checkSerialPorts(_ items: [(node: Node, path: String)], reader: YAMLReader) {
        var buses: [String: (bus: String, port: String)] = [:]
        for item in items {
            guard let mapping = item.node.mapping, let transport = mapping["transport"]?.string,
                ["serial", "modbus-rtu"].contains(transport), let node = mapping["port"], let port = node.string
            else { continue }
            let line = lineIdentity(port)
            if let owner = buses[line] {
                let same = owner.port == port ? "" : " (\(owner.port) is the same line)"
                reader.report(node, "\(item.path).port", "\(port) is already the port of bus \(owner.bus)\(same): "
                                + "two masters on one line would talk over each other")
            } else {
                buses[line] = (mapping["id"]?.string ?? item.path, port)
            }
        }
    }

    /// What tells two port names apart: the device itself when it exists (a name under /dev/serial/by-id and
    /// /dev/ttyUSB0 are one line), else the path.
    private static func lineIdentity(_ port: String) -> String {
        var status = stat()
        if stat(port, &status) == 0, (status.st_mode & S_IFMT) == S_IFCHR { return "device \(status.st_rdev)" }
        return (port as NSString).standardizingPath
    }

    /// Why `id` cannot name a hall, bus, device, sink or terminal, or nil when it can. Ids go into event sources
    /// (`/halls/<hall>/devices/<device>`, a URI), MQTT topics and the central table, where a space or a slash
    /// breaks them.
    static func idProblem(_ id: String) -> String? {
        let reason = "(it becomes part of event sources, MQTT topics and the central table)"
        let punctuation: Set<Character> = ["-", "_", "."]
        guard id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || punctuation.contains($0)) }) else {
            return "'\(id)' may hold only letters, digits, '-', '_' and '.' \(reason)"
        }
        if id.count > 64 { return "'\(id)' is \(id.count) characters long, more than 64 \(reason)" }
        if let first = id.first, first == "." || first == "-" {
            return "'\(id)' may not start with '\(first)' \(reason)"
        }
        return nil
    }

    /// Whether two paths name one file, compared as standardized absolute paths: a relative one is taken from the
    /// current folder, as the gateway will open it.
    static func isSameFile(_ one: String, _ other: String) -> Bool {
        func standardized(_ path: String) -> String {
            let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
            return (absolute as NSString).standardizingPath
        }
        return standardized(one) == standardized(other)
    }

    /// `path` as written, or within `folder` when relative; without `.` steps (`./state` in `.` is `state`), so
    /// paths print as a technician would write them. `..` is kept: through a symbolic link it is not the parent.
    static func resolve(_ path: String, against folder: String) -> String {
        let joined = path.hasPrefix("/") ? path : folder + "/" + path
        let steps = joined.split(separator: "/").filter { $0 != "." }
        let normal = (joined.hasPrefix("/") ? "/" : "") + steps.joined(separator: "/")
        return normal.isEmpty ? "." : normal
    }
}

/// A one-line description of a Foundation or POSIX error, without the framework's boilerplate.
func describe(_ error: any Error) -> String {
    if let cocoa = error as? CocoaError, let underlying = cocoa.underlying as? POSIXError {
        return SystemError.words(errno: underlying.code.rawValue)
    }
    if let cocoa = error as? CocoaError, cocoa.code == .fileReadNoSuchFile {
        return "no such file"
    }
    return "\(error)"
}
