import ArgumentParser
import AsyncHTTPClient
import DeviceGateway
import Foundation
import LocalAPI
import NIOCore
import NIOHTTP1

/// Where a subcommand finds the running daemon. Add it to a command with `@OptionGroup var daemon: DaemonOptions`;
/// it brings `--config` (also `$HALL_GATEWAY_CONFIG`) and `--api URL`. Without either, the defaults are the ones
/// `gatewayd run` uses without a config (the demo hall): http://127.0.0.1:8420, token in `./var/api-token`.
///
/// ```swift
/// let hall = try daemon.load()                       // exit 2 on a broken config
/// let client = hall.client()
/// switch await client.probe() {                      // is the daemon there? (connection refused: no)
/// case .running: let list = try await client.get("/v1/devices", as: DeviceListBody.self)
/// case .notRunning(let why): …                       // open the port yourself, or exit 3 with `why`
/// }
/// let answer = try await client.post("/v1/check", json: Empty(), as: CheckBody.self)   // throws DaemonError
/// ```
struct DaemonOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "The hall's configuration (default: $HALL_GATEWAY_CONFIG; without either, the demo hall's defaults).",
            valueName: "file"))
    var config: String?

    @Option(
        help: ArgumentHelp(
            "The daemon's local API, instead of the config's api: section (e.g. http://127.0.0.1:8420).",
            valueName: "url"))
    var api: String?

    func validate() throws {
        // From a docs trial: `--api not-a-url` read as "the daemon cannot be reached", with the client's error name.
        guard let api else { return }
        guard let address = URLComponents(string: api), ["http", "https"].contains(address.scheme?.lowercased()),
              address.host?.isEmpty == false
        else { throw ValidationError("--api: '\(api)' is not an http:// URL (e.g. http://127.0.0.1:8420)") }
        if let port = address.port, !(1...65535).contains(port) {
            throw ValidationError("--api: '\(api)': its port must be 1 to 65535")
        }
    }

    /// The config file to use: `--config`, else `$HALL_GATEWAY_CONFIG`, else the demo hall's as `gatewayd run` wrote
    /// it here, else none.
    var configPath: String? { Self.configPath(given: config) }

    /// `config`, else `$HALL_GATEWAY_CONFIG`, else the demo hall's as `gatewayd run` wrote it here, else none: every
    /// command finds the hall the same way.
    static func configPath(given config: String?) -> String? {
        config ?? ProcessInfo.processInfo.environment["HALL_GATEWAY_CONFIG"]
            ?? (FileManager.default.fileExists(atPath: DemoProfiles.configurationPath) ? DemoProfiles.configurationPath : nil)
    }

    /// The hall as the CLI sees it; a broken configuration is reported and exits 2.
    func load() throws -> HallContext {
        guard let path = configPath else { return HallContext(config: nil, library: nil, apiOverride: api) }
        let (hall, library) = try Self.loadHall(path, given: config)
        return HallContext(config: hall, library: library, apiOverride: api, isDemo: DemoProfiles.isDemoConfiguration(path))
    }

    /// The hall at `path` (found from `given` as `configPath(given:)` finds it), as every command loads it: a broken
    /// one, or a demo's configuration that is not the demo's own, is said and exits 2.
    static func loadHall(_ path: String, given: String?) throws -> (GatewayConfig, ProfileLibrary) {
        let loaded: (GatewayConfig, ProfileLibrary)
        do {
            loaded = try ConfigLoader.load(path: path)
        } catch {
            printError(error.description)
            throw ExitCode(CLIExit.usage)
        }
        let foundHere = given == nil && ProcessInfo.processInfo.environment["HALL_GATEWAY_CONFIG"] == nil
        if DemoProfiles.isDemoConfiguration(path),
           let problem = DemoProfiles.notTheDemosOwn(loaded.0, writtenAt: path, foundHere: foundHere) {
            // Found by being in the folder a command runs in: a file anyone could leave there would have the CLI hand
            // a hall's token to the address it names, or open another hall's outbox.
            printError("\(path) reads as the demo hall's configuration, but \(problem): not used; give the hall's own with --config")
            throw ExitCode(CLIExit.usage)
        }
        return loaded
    }
}

/// The loaded configuration (nil: the demo hall's defaults) and where its daemon listens.
struct HallContext: Sendable {
    /// The configuration, when one was given.
    let config: GatewayConfig?
    /// Its device profiles.
    let library: ProfileLibrary?
    /// `--api`, when given.
    let apiOverride: String?
    /// The configuration is one `gatewayd run` wrote for its demo hall (known by its first line, under any path): its
    /// pseudo-terminals live only while that daemon runs.
    var isDemo = false

    /// Refuses to open a port of the demo hall's configuration itself: they are pseudo-terminals of the run that wrote
    /// it, reached only through that run's daemon; once it stops, their names go to the next terminals opened (a
    /// technician's SSH session), which would be written to and made raw. While that run lives (it holds its state
    /// directory's lock open), the command is told to go through it, as for a port a hall's gateway holds (exit 4).
    func refuseDemoPortsWithoutDaemon() throws {
        guard isDemo else { return }
        if let demo = ModbusDirectClient.daemonHolding(StateLock.path(in: stateDirectory)) {
            printError("""
                --direct cannot be used on the demo hall: its ports are its own pseudo-terminals, held by its running \
                gateway (pid \(demo)); drop --direct and the command goes through it (\(baseURL))
                """)
            throw ExitCode(CLIExit.portUnavailable)
        }
        printError("""
            the demo hall's ports are its own pseudo-terminals, reached only through its running daemon (none answers \
            at \(baseURL); the same names may now be other terminals): start it with gatewayd run (with --api-port, \
            give --api too), or give a hall's configuration (--config FILE)
            """)
        throw ExitCode(CLIExit.daemonUnreachable)
    }

    /// The state directory: the config's, or `var` as the demo hall uses.
    var stateDirectory: String { config?.stateDirectory ?? "var" }
    /// The outbox file in the state directory.
    var outboxPath: String { GatewayConfig.outboxPath(in: stateDirectory) }
    /// The local event store to read: `given` (`--store`), else the config's sqlite sink, else the demo hall's
    /// `var/events.sqlite`; opened read-only. A hall that keeps none, or a file that is no store, is said and exits 2.
    func eventStore(given: String?, command: String) throws -> SQLiteEventStore {
        var path = given ?? "var/events.sqlite"
        if given == nil, let config {
            guard let configured = config.sinks.lazy.compactMap(\.sqlitePath).first else {
                // Not another hall's var/events.sqlite, read as this one's.
                printError("""
                    this hall keeps no local event store (no sqlite sink in its configuration): \(command), \
                    --store FILE reads a store
                    """)
                throw ExitCode(CLIExit.usage)
            }
            path = configured
        }
        do {
            return try SQLiteEventStore.openForReading(path: path)
        } catch {
            printError("\(error)")
            throw ExitCode(CLIExit.usage)
        }
    }

    /// The hall's time zone (Asia/Shanghai without a config).
    var timeZone: TimeZone { config?.hall.timeZone ?? TimeZone(identifier: "Asia/Shanghai")! }

    /// The daemon's base URL: `--api`, else the config's `api:` (a wildcard listen address is reached on loopback).
    var baseURL: String {
        if let apiOverride { return apiOverride.hasSuffix("/") ? String(apiOverride.dropLast()) : apiOverride }
        let settings = config?.api ?? APISettings()
        var host = settings.host
        if host == "0.0.0.0" || host == "::" || host.isEmpty { host = "127.0.0.1" }
        if host.contains(":") { host = "[\(host)]" }
        return "http://\(host):\(settings.port)"
    }

    /// Whether the config turns the API off (`api: off`): then there is no daemon to ask.
    var apiDisabled: Bool { apiOverride == nil && config?.api.enabled == false }

    /// A client of the daemon, with the token it would accept (nil: not readable here).
    func client() -> DaemonClient {
        let settings = config?.api ?? APISettings()
        return DaemonClient(
            baseURL: baseURL, token: APIToken.read(settings, stateDirectory: stateDirectory),
            tokenPath: settings.tokenFile ?? (stateDirectory as NSString).appendingPathComponent("api-token"),
            tokenIsTheGatewaysOwn: settings.tokenFile == nil, disabled: apiDisabled, addressIsDefault: config == nil && apiOverride == nil)
    }
}

/// Why a call to the daemon failed.
struct DaemonError: Error, CustomStringConvertible {
    enum Kind: Sendable { case unreachable, unauthorized, refused, badAnswer }
    /// Why: no answer at all, a refused token, or what the daemon answered.
    let kind: Kind
    /// One line for the technician.
    let description: String
    /// The HTTP status, when the daemon answered.
    var status: Int? = nil
    /// The daemon's own words (its problem's detail), when it answered.
    var detail: String? = nil

    /// The exit status for this failure, the same from every command (docs/cli.md): 3 when the daemon does not answer
    /// or refuses the token (a script cannot tell those apart from "gateway down", nor act differently), 2 when it
    /// knows no such device or bus, 1 when it refused or failed what was asked.
    var exitCode: ExitCode {
        switch kind {
        case .unreachable, .unauthorized: ExitCode(CLIExit.daemonUnreachable)
        case .refused where status == 404: ExitCode(CLIExit.usage)
        case .refused, .badAnswer: ExitCode(CLIExit.failed)
        }
    }
}

/// The CLI's client of the running daemon's local API (JSON over HTTP, bearer token).
struct DaemonClient: Sendable {
    /// Whether the daemon answers.
    enum Presence: Sendable {
        case running
        /// Not running (connection refused), unreachable, or the API is off; the reason in words.
        case notRunning(String)
    }

    /// e.g. `http://127.0.0.1:8420`.
    let baseURL: String
    /// The bearer token, nil when the token file cannot be read.
    let token: String?
    /// Where the token was looked for, for the error message.
    let tokenPath: String
    /// The state directory's `api-token`, which is read only as a plain file of its own (not through a link).
    let tokenIsTheGatewaysOwn: Bool
    /// `api: off` in the config.
    let disabled: Bool
    /// No config and no `--api`: the address is the demo hall's, which a hall's daemon may not use.
    let addressIsDefault: Bool

    /// One client for the process: it is never shut down, it lives as long as the CLI. Connections are not retried:
    /// a refused connection means the daemon is not running, at once.
    private static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(2)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// Asks `/healthz`: running, or why not.
    func probe() async -> Presence {
        if disabled { return .notRunning("the configuration turns the local API off (api: off)") }
        do {
            _ = try await request("GET", "/healthz", body: nil, timeout: .seconds(3))
            return .running
        } catch {
            return .notRunning(error.description)
        }
    }

    /// `GET path`, the JSON answer decoded.
    func get<Body: Decodable>(
        _ path: String, as type: Body.Type, timeout: TimeAmount = .seconds(10)
    )
        async throws(DaemonError) -> Body
    {
        try decode(try await request("GET", path, body: nil, timeout: timeout), as: type, path: path)
    }

    /// `POST path` with `json` as its body, the JSON answer decoded.
    func post<Body: Decodable>(
        _ path: String, json: some Encodable, as type: Body.Type,
        timeout: TimeAmount = .seconds(30)
    ) async throws(DaemonError) -> Body {
        let data: Data
        do { data = try JSONEncoder().encode(json) } catch {
            throw DaemonError(kind: .badAnswer, description: "cannot encode the request to \(path): \(error)")
        }
        return try decode(try await request("POST", path, body: data, timeout: timeout), as: type, path: path)
    }

    /// The raw answer's body for a 2xx; anything else is thrown as a `DaemonError` saying what the daemon said.
    func request(_ method: String, _ path: String, body: Data?, timeout: TimeAmount) async throws(DaemonError) -> Data {
        if disabled {
            throw DaemonError(kind: .unreachable, description: "the configuration turns the local API off (api: off)")
        }
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = HTTPMethod(rawValue: method)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let status: Int
        let data: Data
        do {
            let response = try await Self.http.execute(request, timeout: timeout)
            status = Int(response.status.code)
            data = Data(try await response.body.collect(upTo: 16 << 20).readableBytesView)
        } catch {
            throw DaemonError(kind: .unreachable, description: unreachable(error))
        }
        guard (200..<300).contains(status) else { throw failure(status: status, body: data, path: path) }
        return data
    }

    /// What an answer other than 2xx means: a refused token (with where it was read), or the daemon's problem.
    private func failure(status: Int, body: Data, path: String) -> DaemonError {
        guard status == 401 else {
            // The gateway answers every error with a problem document: a 404 without one is another server there.
            if status == 404, (try? JSONSerialization.jsonObject(with: body)) == nil {
                return DaemonError(
                    kind: .refused, description: "\(baseURL)\(path): 404 from a server that is not a hall gateway's API "
                        + "(no problem document came back): is the address right (--api, or api: in the configuration)?",
                    status: status)
            }
            let detail = Self.problem(body)
            return DaemonError(
                kind: .refused, description: "\(baseURL)\(path): \(status) \(detail)", status: status, detail: detail)
        }
        let hint =
            token == nil
            // Missing only when the system says so: a folder the user may not enter hides the file as well (the state
            // directory is 0750), and that wants the gateway's user, not a new file (from a review).
            ? (Self.isMissing(tokenPath)
                ? "no token: \(tokenPath) does not exist (the api: section's token-file, or the state directory's api-token)"
                : tokenIsTheGatewaysOwn && Self.isLink(tokenPath)
                ? "no token: \(tokenPath) is a symbolic link, which is not followed to the gateway's own token: remove it "
                    + "and restart the gateway, which makes its own"
                : "no token: \(tokenPath) cannot be read (run as the gateway's user, or sudo)")
            : "the token in \(tokenPath) is not the daemon's"
        return DaemonError(
            kind: .unauthorized, description: "\(baseURL)\(path): 401 unauthorized: \(hint)", status: status)
    }

    /// `GET path` answered as a stream of lines (JSON Lines), each handed to `onLine` as it arrives; returns when
    /// the daemon ends the answer.
    func streamLines(_ path: String, timeout: TimeAmount, _ onLine: (String) async throws -> Void) async throws {
        if disabled {
            throw DaemonError(kind: .unreachable, description: "the configuration turns the local API off (api: off)")
        }
        var request = HTTPClientRequest(url: baseURL + path)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response: HTTPClientResponse
        do {
            response = try await Self.http.execute(request, timeout: timeout)
        } catch {
            throw DaemonError(kind: .unreachable, description: unreachable(error))
        }
        guard response.status.code == 200 else {
            let body = (try? await response.body.collect(upTo: 1 << 16)).map { Data($0.readableBytesView) } ?? Data()
            throw failure(status: Int(response.status.code), body: body, path: path)
        }
        var pending: [UInt8] = []
        for try await chunk in response.body {
            pending += chunk.readableBytesView
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                try await onLine(line)
            }
        }
    }

    private func decode<Body: Decodable>(_ data: Data, as type: Body.Type, path: String) throws(DaemonError) -> Body {
        do {
            return try Self.jsonDecoder.decode(type, from: data)
        } catch {
            throw DaemonError(kind: .badAnswer, description: "\(baseURL)\(path): unexpected answer: \(error)")
        }
    }

    /// Dates as the API writes them (RFC 3339, with or without fractions).
    static var jsonDecoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = EventTime.parse(text) else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: decoder.codingPath, debugDescription: "not a time: \(text)"))
            }
            return date
        }
        return decoder
    }

    /// Whether `path` does not exist (ENOENT), as opposed to being out of the user's reach.
    static func isMissing(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) != 0 && errno == ENOENT
    }

    static func isLink(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFLNK
    }

    /// An RFC 9457 problem's detail, or the body's first line.
    static func problem(_ data: Data) -> String {
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            if let detail = object["detail"] as? String { return detail }
            if let title = object["title"] as? String { return title }
        }
        return String(decoding: data.prefix(200), as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
    }

    /// "not running" for a refused connection, the error in words otherwise.
    private func unreachable(_ error: any Error) -> String {
        let url = baseURL
        let text = String(describing: error)
        if text.contains("refused") || text.contains("ECONNREFUSED") || text.contains("errno: 111") {
            let hint = addressIsDefault
                ? "; without --config or $HALL_GATEWAY_CONFIG this is the demo hall's address: give the hall's config"
                : ""
            return "the gateway is not running (nothing listens on \(url)\(hint))"
        }
        if text.contains("connectTimeout") || text.contains("deadlineExceeded") {
            return "\(url) does not answer (timed out): is the address right, a firewall in the way?"
        }
        return "\(url) cannot be reached: \(text)"
    }
}
