public import ArgumentParser
import AsyncHTTPClient
import DeviceGateway
import LocalAPI
import Foundation
public import Logging
import MockDevices
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import UnixSignals

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway: a hall's configuration, or with no --config the simulated demo hall.")

    @Option(help: "The hall's configuration file. Without it: the demo hall, simulated, with its store under ./var/.")
    var config: String?

    @Option(help: "Where the device profiles are (default: the config's `profiles`, or ./devices for the demo).")
    var profiles: String?

    @Option(help: ArgumentHelp(
        "The demo hall only: deliver its events to the sinks listed in this file instead of its local store.",
        discussion: "The file holds a `sinks:` list as a hall's configuration writes it (a central PostgreSQL, HTTP "
            + "or MQTT store; list a `sqlite` sink too to keep the local one).",
        valueName: "file"))
    var sinks: String?

    @Option(help: "The local API's port, instead of the configuration's (0: any free port).")
    var apiPort: Int?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        // From a trial: 70000 listened on 4464, the port the kernel took it for.
        if let apiPort, !(0...65535).contains(apiPort) {
            throw ValidationError("--api-port \(apiPort): 1 to 65535 (0: any free port)")
        }
    }

    func run() async throws {
        // Files the gateway makes (outbox, event store, lock) are its user's and its group's: ratings name staff.
        umask(0o027)
        let level = logLevel
        GatewayLogHandler.bootstrap(level: level)
        let logger = Logger(label: "gatewayd")

        // One gateway per state directory, taken before anything is written: a second demo would rewrite the first
        // one's configuration file.
        func lockState(_ directory: String) throws {
            do {
                try StateLock.take(in: directory)
            } catch {
                logger.critical("cannot start: \(error)")
                throw ExitCode(1)
            }
        }
        var demo: DemoHall?
        /// The demo hall's configuration as written for the CLI; the API's port is added once it listens.
        var demoConfiguration: String?
        let loaded: (GatewayConfig, ProfileLibrary)
        do {
            if let config {
                if sinks != nil {
                    printError("--sinks is for the demo hall; a hall's sinks are in its configuration (\(config))")
                    throw ExitCode(2)
                }
                if DemoProfiles.isDemoConfiguration(config) {
                    printError("\(config): \(DemoProfiles.notAHallsConfiguration)")
                    throw ExitCode(2)
                }
                loaded = try ConfigLoader.load(path: config, profilesOverride: profiles)
                // Its refusal stamped in the hall's zone, as every later line is.
                GatewayLogHandler.use(timeZone: loaded.0.hall.timeZone)
                try lockState(loaded.0.stateDirectory)
            } else {
                // Read before anything starts: a broken file is said alone, as a broken configuration is.
                let demoSinks = try sinks.map { path throws(ConfigError) in try ConfigLoader.loadSinks(path: path) }
                if let zone = TimeZone(identifier: DemoHall.timeZone) { GatewayLogHandler.use(timeZone: zone) }
                try lockState(DemoHall.stateDirectory)
                let hall = try DemoHall()
                demo = hall
                let profilesFolder = try profiles ?? DemoProfiles.locate()
                let text = hall.configuration(
                    stateDirectory: DemoHall.stateDirectory, profiles: profilesFolder,
                    eventStore: DemoHall.stateDirectory + "/events.sqlite", sinks: demoSinks)
                loaded = try ConfigLoader.parse(text, file: "(demo hall)", relativeTo: FileManager.default.currentDirectoryPath)
                demoConfiguration = DemoProfiles.writeConfiguration(of: hall, profiles: profilesFolder, sinks: demoSinks)
            }
        } catch let error as ConfigError {
            printError(error.description)
            throw ExitCode(2)
        }
        var (gatewayConfig, library) = loaded
        if let apiPort { gatewayConfig.api.port = apiPort }
        let timeZone = gatewayConfig.hall.timeZone
        GatewayLogHandler.use(timeZone: timeZone)
        for warning in gatewayConfig.securityWarnings(file: config) { logger.warning("\(warning)") }
        // Logged only now: every line, the first too, is stamped in the hall's zone.
        if let demo {
            logger.info("""
                demo hall: \(demo.pads.count) Modbus pads and \(demo.windowBoards.count) window boards, \
                \(DemoHall.ff68Windows.count) FF 68 pads and callers, a ticket printer, an Onbon call board; \
                stop with Ctrl-C
                """)
        }
        let eventLog = logger
        let gateway: Gateway
        do {
            gateway = try Gateway(config: gatewayConfig, profiles: library, logger: logger) { events in
                for event in events {
                    let line = GatewayLogHandler.eventLine(event, timeZone: timeZone)
                    if EventSummary.needsAttention(event) { eventLog.warning("\(line)") } else { eventLog.info("\(line)") }
                }
            }
        } catch {
            // A log line like every other, so that a service manager's journal keeps it with its level.
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        // The demo's queue system talks to this gateway's own API, on the port it bound.
        let (ports, listening) = AsyncStream.makeStream(of: Int.self, bufferingPolicy: .bufferingNewest(1))
        // The gateway and the MQTT commands start once the API listens: one whose port is taken does not start.
        let (apiReady, apiListens) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let (mqttReady, mqttListens) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        // One command center for every door (HTTP, MQTT): an idempotency key in flight is seen by both.
        let metrics = GatewayMetrics()
        let commands = CommandCenter(gateway: gateway, onFinished: metrics.record)
        let gatewayService: any Service = gatewayConfig.api.enabled
            ? OnceTheAPIListens(service: gateway, apiReady: apiReady) : gateway
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: gatewayService, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "gateway")
        ]
        if gatewayConfig.api.enabled {
            let token: String
            do {
                token = try APIToken.resolve(gatewayConfig.api, stateDirectory: gatewayConfig.stateDirectory)
            } catch {
                // A log line like the other reasons not to start, with its time and level for the journal.
                logger.critical("cannot start: \(error.message)")
                throw ExitCode(2)
            }
            // An API that cannot listen stops the gateway: the queue system could not reach it, and the CLI would
            // hand its token to whatever holds the port.
            services.append(.init(service: APIService(gateway: gateway, commands: commands, metrics: metrics,
                                                      settings: gatewayConfig.api, token: token, logger: logger,
                                                      onListening: { [demoConfiguration, host = gatewayConfig.api.host] port in
                                                          // From a trial: a demo on --api-port left the CLI asking
                                                          // 8420 (and handing its token to whatever listened there).
                                                          if let demoConfiguration {
                                                              DemoProfiles.write(demoConfiguration + "api: {listen: \"\(host):\(port)\"}\n")
                                                          }
                                                          apiListens.yield()
                                                          mqttListens.yield()
                                                          listening.yield(port)
                                                      }),
                                  successTerminationBehavior: .ignore,
                                  failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: "api"))
        } else {
            listening.finish()
        }
        if let mqtt = gatewayConfig.mqttCommands {
            // The queue system's commands over MQTT; a broker away is retried, files that cannot be read are not.
            do {
                let mqttCommands = try MQTTCommands(config: mqtt, gateway: gateway, commands: commands, logger: logger)
                let service: any Service = gatewayConfig.api.enabled
                    ? OnceTheAPIListens(service: mqttCommands, apiReady: mqttReady) : mqttCommands
                services.append(.init(service: service, successTerminationBehavior: .ignore,
                                      failureTerminationBehavior: .ignore, serviceName: "mqtt commands"))
            } catch {
                printError("commands.mqtt: \(error)")
                throw ExitCode(2)
            }
        }
        var demoServices: [(name: String, service: any Service)] = []
        if let demo {
            demoServices.append(("demo citizens", CitizenSimulation(hall: demo)))
            if gatewayConfig.api.enabled, let token = APIToken.read(gatewayConfig.api, stateDirectory: gatewayConfig.stateDirectory) {
                demoServices.append(("demo queue system", QueueSimulation(host: gatewayConfig.api.host, ports: ports,
                                                                          token: Secret(token), logger: logger)))
            }
        }
        services += demoServices.map {
            .init(service: $0.service, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: $0.name)
        }
        // Started under nohup, SIGHUP comes ignored: the technician meant the gateway to outlive the terminal.
        let stopSignals: [UnixSignal] = Self.isIgnored(SIGHUP) ? [.sigterm, .sigint] : [.sigterm, .sigint, .sighup]
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: stopSignals,
                                 logger: GatewayLogHandler.serviceGroupLogger(level: level)))
        do {
            try await group.run()
        } catch is APIUnavailable {
            // Said in its critical line already.
            demo?.stop()
            throw ExitCode(1)
        } catch {
            // ServiceLifecycle's own text is a file, a line and an error code: one line a technician can act on.
            printError("gatewayd: stopped on a failure: \(Self.explain(error))")
            demo?.stop()
            throw ExitCode(1)
        }
        demo?.stop()
    }

    /// Why the service group ended: the service that finished out of turn, or the error a service threw.
    /// Whether `signal` was ignored when the process started (ServiceLifecycle ignores the ones it watches later).
    static func isIgnored(_ signal: Int32) -> Bool {
        var current = sigaction()
        guard sigaction(signal, nil, &current) == 0 else { return false }
        return unsafeBitCast(current.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
    }

    static func explain(_ error: any Error) -> String {
        guard let groupError = error as? ServiceGroupError else { return "\(error)" }
        // The service's name (set above, never its fields) is in the description only.
        let text = "\(groupError)"
        if groupError.errorCode == .serviceFinishedUnexpectedly,
           let start = text.range(of: "Service failed("), let end = text[start.upperBound...].lastIndex(of: ")") {
            return "the \(text[start.upperBound..<end]) service ended before it was asked to stop"
        }
        return "\(groupError.errorCode)"
    }
}

/// A service started once the API listens: a gateway whose API port is taken does not start, so it must not poll a
/// device, deliver an event or take a command before the port is known to be its own.
struct OnceTheAPIListens: Service {
    let service: any Service
    let apiReady: AsyncStream<Void>

    func run() async throws {
        let listens = await cancelWhenGracefulShutdown { await apiReady.first { true } != nil }
        guard listens else { return }
        try await service.run()
    }
}

/// The demo hall's citizens, as a service that ends with the gateway.
struct CitizenSimulation: Service {
    let hall: DemoHall

    func run() async throws {
        await cancelWhenGracefulShutdown {
            async let citizens: Void = hall.simulateCitizens()
            async let staff: Void = hall.simulateStaff()
            _ = await (citizens, staff)
        }
    }
}

/// The demo hall's queue system, a client of the local API like a real one: a ticket issued every few seconds and
/// called soon after at a window (its board or its caller's LED, and the hall's call board).
struct QueueSimulation: Service {
    let host: String
    let ports: AsyncStream<Int>
    let token: Secret
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var listening = ports.makeAsyncIterator()
            guard let port = await listening.next() else {
                logger.warning("demo queue system: the API is not listening; no tickets, no calls")
                return
            }
            let api = "http://\(host):\(port)"
            while true {
                do { try await Task.sleep(for: .seconds(5)) } catch { return }
                // Numbered by the gateway (the demo's `tickets:`), so no number comes twice in a day across restarts.
                let issued = await post(api, "/v1/tickets", #"{"prefix": "A", "service": "社保业务", "waitingAhead": \#(Int.random(in: 0...9))}"#)
                guard let ticket = issued?.ticket else { continue }
                let window = (DemoHall.boardWindows + DemoHall.ff68Windows).randomElement() ?? "1"
                await post(api, "/v1/windows/\(window)/call", #"{"ticket": "\#(ticket)"}"#)
            }
        }
    }

    /// The part of a command's answer the queue system reads.
    private struct Answer: Decodable {
        var ticket: String?
    }

    @discardableResult
    private func post(_ api: String, _ path: String, _ json: String) async -> Answer? {
        var request = HTTPClientRequest(url: api + path)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token.value)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: json))
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let body = String(buffer: try await response.body.collect(upTo: 1 << 16))
            guard response.status == .ok, body.contains(#""status":"done""#) else {
                logger.warning("demo queue system: POST \(path): \(response.status.code) \(body)")
                return nil
            }
            return try? JSONDecoder().decode(Answer.self, from: Data(body.utf8))
        } catch {
            logger.warning("demo queue system: POST \(path): \(error)")
            return nil
        }
    }
}

/// Finds `devices/` for the demo: the working folder, or the checkout the binary was built in.
enum DemoProfiles {
    /// Where the running demo hall's configuration is written, for the CLI run beside it without `--config`.
    static let configurationPath = "var/demo-hall.yaml"
    /// The first line of that file, by which it is known under any path.
    static let header = "# The demo hall as `gatewayd run` started it; the CLI reads it when given no --config."

    /// Why a configuration the demo wrote is neither run nor passed by `config check`.
    static let notAHallsConfiguration = """
        the configuration a run of the demo hall wrote: its ports were that run's pseudo-terminals (the same names may \
        now be other terminals); start the demo with gatewayd run and no --config
        """

    /// Whether the file at `path` is one `gatewayd run` wrote for its demo hall: its ports are pseudo-terminals that
    /// exist only while that run lasts.
    static func isDemoConfiguration(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let start = (try? handle.read(upToCount: header.utf8.count)) ?? Data()
        return start.elementsEqual(header.utf8)
    }

    /// What in `config`, read from `path` as a demo's configuration, is not what `gatewayd run` writes for its demo:
    /// an API beyond loopback, a token file, or, for one found in the folder a command runs in rather than given, a
    /// state directory other than the file's own folder (whose api-token the CLI would send). Nil when it is the
    /// demo's own.
    static func notTheDemosOwn(_ config: GatewayConfig, writtenAt path: String, foundHere: Bool) -> String? {
        func real(_ path: String) -> String { URL(fileURLWithPath: path).resolvingSymlinksInPath().path }
        if !APISettings.isLoopback(config.api.host) { return "its API is at \(config.api.host), beyond this machine" }
        if config.api.tokenFile != nil { return "it names a token file" }
        let folder = (path as NSString).deletingLastPathComponent
        if foundHere, real(config.stateDirectory) != real(folder.isEmpty ? "." : folder) {
            return "its state directory is \(config.stateDirectory), not the folder it is in"
        }
        return nil
    }

    /// Writes the demo hall's configuration with absolute paths, so that `gatewayd probe`, `printer status`, `scan`
    /// and the rest find its devices as they would a real hall's.
    /// Returns the text written.
    @discardableResult
    static func writeConfiguration(of hall: DemoHall, profiles: String, sinks: String?) -> String {
        let here = FileManager.default.currentDirectoryPath
        let absolute = profiles.hasPrefix("/") ? profiles : here + "/" + profiles
        let text = header + "\n"
            + hall.configuration(stateDirectory: here + "/var", profiles: absolute, eventStore: here + "/var/events.sqlite",
                                 sinks: sinks)
        write(text)
        return text
    }

    /// Writes `text` as the demo hall's configuration.
    static func write(_ text: String) {
        try? FileManager.default.createDirectory(atPath: "var", withIntermediateDirectories: true)
        try? text.write(toFile: configurationPath, atomically: true, encoding: .utf8)
    }

    /// The profiles beside the program or where the README installs them; says so and exits 2 when there are none.
    static func locate() throws(ExitCode) -> String {
        let marker = "modbus-evaluator-3key.yaml"
        var candidates = [FileManager.default.currentDirectoryPath + "/devices"]
        // The kernel's name for the program: an argument list can be empty (a preloaded library that took it).
        let program = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments.first ?? "."
        var folder = URL(fileURLWithPath: program).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(folder.appendingPathComponent("devices").path)
            folder = folder.deletingLastPathComponent()
        }
        // Where the README installs them.
        candidates.append("/usr/share/hall-gateway/devices")
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: "\($0)/\(marker)") }) {
            return found
        }
        // Its reason in one line, not the usage (from a docs trial).
        printError("cannot find the device profiles (devices/\(marker) in this folder, beside the program or in "
                   + "/usr/share/hall-gateway): pass --profiles DIR")
        throw ExitCode(CLIExit.usage)
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

extension DemoHall {
    /// Where the demo keeps its state: `./var`, beside the folder it runs in.
    static let stateDirectory = "var"
}
