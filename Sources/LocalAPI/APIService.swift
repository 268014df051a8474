public import DeviceGateway
import Foundation
import Hummingbird
public import Logging
import NIOCore
public import ServiceLifecycle

/// The local API as a service of `gatewayd run`: a port it cannot bind ends it with an error, which stops the gateway.
public struct APIService: Service {
    let api: LocalAPI
    let settings: APISettings
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    /// The API of `gateway` as `settings` say, with `token` and `metrics`; `onListening` gets the port bound.
    public init(gateway: Gateway, commands: CommandCenter, metrics: GatewayMetrics, settings: APISettings,
                token: String, logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in }) {
        api = LocalAPI(gateway: gateway, commands: commands, metrics: metrics, token: token,
                       tokenFile: settings.tokenFile, logger: logger)
        self.settings = settings
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let logger = self.logger
        let address = "\(settings.host):\(settings.port)"
        let onListening = self.onListening
        let host = settings.host
        let application = api.application(host: settings.host, port: settings.port) { port in
            // What listening makes ready (the demo's configuration for the CLI) is, by the time the line is logged.
            await onListening(port)
            logger.info("api: listening on http://\(host):\(port)")
        }
        let grace = Self.requestsGrace
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                // `run`, not `runService`: the latter stops on SIGTERM by itself, out of the gateway's shutdown order.
                group.addTask { try await application.run() }
                // Requests under way get a few seconds to finish; a client that stops sending mid-request must not
                // hold the gateway's stop until a service manager kills it.
                group.addTask {
                    try await gracefulShutdown()
                    try await Task.sleep(for: grace)
                    logger.warning("api: requests still open \(grace) after the stop began; closing them")
                }
                _ = try await group.next()
                group.cancelAll()
            }
        } catch is CancellationError {
            return
        } catch {
            let unavailable = APIUnavailable(description: "api: cannot serve on \(address): \(Self.reason(error))")
            logger.critical("\(unavailable.description)")
            throw unavailable
        }
    }

    /// How long requests under way may take once the gateway stops.
    static let requestsGrace = Duration.seconds(5)

    /// A bind failure in words, without NIO's call and errno decoration.
    static func reason(_ error: any Error) -> String {
        if let error = error as? IOError, error.errnoCode == EADDRINUSE {
            return "the port is in use by another program (a gateway already running, or set api.listen)"
        }
        return "\(error)"
    }
}

/// The API could not serve (its port taken): logged as a critical line when thrown.
public struct APIUnavailable: Error, CustomStringConvertible {
    public let description: String
}

/// The bearer token clients must send.
public enum APIToken {
    /// The token from `settings.tokenFile`, or the one the gateway keeps in `<stateDirectory>/api-token` (made on
    /// first use, readable by its owner only).
    public static func resolve(_ settings: APISettings, stateDirectory: String) throws(GatewayError) -> String {
        if let file = settings.tokenFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw GatewayError(.storeMissing, "api.token-file \(file): cannot be read")
            }
            switch APISettings.token(inFile: text) {
            case .success(let token): return token
            case .failure(let problem): throw GatewayError(.storeMissing, "api.token-file \(file): \(problem)")
            }
        }
        let path = (stateDirectory as NSString).appendingPathComponent("api-token")
        // The gateway's own file only: not another user's, nor one every user could read or write.
        if let (token, status) = try readWithoutLinks(path) {
            guard status.st_uid == geteuid() else {
                throw GatewayError(.storeMissing, "\(path) belongs to another user: remove it, the gateway makes its own "
                                   + "(a token of the hall's choosing goes into api.token-file)")
            }
            guard status.st_mode & 0o007 == 0 else {
                throw GatewayError(.storeMissing, "\(path) can be read or changed by every user of the machine (mode "
                                   + String(status.st_mode & 0o777, radix: 8) + "): remove it, the gateway makes a new "
                                   + "one (give it to the queue system)")
            }
            if !token.isEmpty { return token }
            // Empty (a power cut as it was first written): made again.
            unlink(path)
        }
        var generator = SystemRandomNumberGenerator()
        let token = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        let line = token + "\n"
        try? FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        // Made 0600 at once, never through a link nor over a file another made meanwhile.
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw GatewayError(.storeMissing, "\(path): cannot write the API token: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        let written = line.withCString { write(descriptor, $0, strlen($0)) }
        guard written == line.utf8.count, fsync(descriptor) == 0 else {
            throw GatewayError(.storeMissing, "\(path): cannot write the API token: \(String(cString: strerror(errno)))")
        }
        return token
    }

    /// The trimmed text of the plain file at `path` and its status, read without following a link; nil when there is
    /// no such file. A link, a device or a file this user cannot read is said.
    private static func readWithoutLinks(_ path: String) throws(GatewayError) -> (String, stat)? {
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else {
            let failure = errno
            if failure == ENOENT { return nil }
            if failure == ELOOP {
                throw GatewayError(.storeMissing, "\(path) is a symbolic link: remove it, the gateway makes its own")
            }
            throw GatewayError(.storeMissing, "\(path): cannot be read: \(String(cString: strerror(failure)))")
        }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            throw GatewayError(.storeMissing, "\(path) is not a plain file: remove it, the gateway makes its own")
        }
        let text = String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
        return (text.trimmingCharacters(in: .whitespacesAndNewlines), status)
    }

    /// The token a CLI on this machine sends: the configured file's, or the gateway's own.
    public static func read(_ settings: APISettings, stateDirectory: String) -> String? {
        if let file = settings.tokenFile {
            return (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        // Not through a link: a demo's folder another user made could point it at a hall's token.
        return (try? readWithoutLinks((stateDirectory as NSString).appendingPathComponent("api-token")))??.0
    }
}
