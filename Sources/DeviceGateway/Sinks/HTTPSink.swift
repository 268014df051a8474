import AsyncHTTPClient
import Foundation
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// POSTs batches as `application/cloudevents-batch+json` to a central store's URL.
///
/// The body is the events' committed JSON joined into an array, never decoded and encoded again. The
/// answer decides what the forwarder does: 2xx delivered; 408, 429 (with its `Retry-After`), 5xx, no
/// connection, timeouts and TLS failures are retried; 401, 403 and 404 are retried too (a token or URL
/// to fix, not events to put aside); any other 4xx refuses the batch for good. TLS is always verified.
public final class HTTPSink: EventSink {
    /// The sink's name, which keys its delivery cursor in the outbox.
    public let name: String
    private let url: String
    /// The URL without credentials, as messages name it.
    private let target: String
    private let host: String
    private let port: Int
    private let usesTLS: Bool
    private let tokenFile: String?
    private let caFile: String?
    private let trustedIssuers: [[SSLCertificateName]]
    private let hasClientCertificate: Bool
    private let headers: HTTPHeaders
    /// The bearer token, and whether the store refused it: then the file is read again before the next
    /// attempt, so a replaced token file needs no restart.
    private let token: Mutex<(value: String?, refused: Bool)>
    private let timeout: Duration
    private let client: HTTPClient
    private let isShutDown = Atomic(false)
    private let logger: Logger

    /// Creates the sink; connections are made on the first delivery.
    ///
    /// Throws when no retry can help: a URL that is not http(s), an unreadable or empty token file,
    /// unreadable certificate or key files.
    public init(name: String, config: HTTPSinkConfig, hallId: String, logger: Logger) throws {
        self.name = name
        self.url = config.url
        self.timeout = config.timeout
        self.tokenFile = config.tokenFile
        self.caFile = config.tls.caFile
        self.logger = logger
        guard var components = URLComponents(string: config.url), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty
        else {
            // Up to its query, which may hold a key.
            let shown = config.url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
            throw SinkError(.unavailable, "http sink \(name): '\(shown)' is not an http:// or https:// URL")
        }
        // Messages name the store without what may authenticate to it: userinfo, and a query (`?code=…`).
        components.user = nil
        components.password = nil
        let hadQuery = components.query != nil
        components.query = nil
        components.fragment = nil
        self.target = (components.string ?? "\(scheme)://\(host)") + (hadQuery ? "?…" : "")
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        self.usesTLS = scheme == "https"
        self.port = components.port ?? (usesTLS ? 443 : 80)

        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/cloudevents-batch+json")
        headers.add(name: "User-Agent", value: "hall-gateway (hall \(hallId))")
        self.headers = headers
        self.token = Mutex((try config.tokenFile.map { try Self.readToken($0, sink: name) }, false))

        var tls: TLSConfiguration?
        var trustedIssuers: [[SSLCertificateName]] = []
        if usesTLS {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .fullVerification
            if let caFile = config.tls.caFile {
                let authorities = try Self.certificates(caFile, what: "CA file", sink: name)
                configuration.trustRoots = .certificates(authorities)
                trustedIssuers = authorities.map(\.subjectName)
            }
            switch (config.tls.certificateFile, config.tls.keyFile) {
            case (let certificateFile?, let keyFile?):
                configuration.certificateChain = try Self.certificates(
                    certificateFile, what: "client certificate file", sink: name
                ).map { .certificate($0) }
                configuration.privateKey = .privateKey(try Self.privateKey(keyFile, sink: name))
            case (nil, nil):
                break
            default:
                throw SinkError(
                    .unavailable,
                    "http sink \(name): a client certificate needs both certificate-file and key-file")
            }
            tls = configuration
        }
        self.trustedIssuers = trustedIssuers
        self.hasClientCertificate = config.tls.certificateFile != nil

        var configuration = HTTPClient.Configuration(
            tlsConfiguration: tls, redirectConfiguration: .disallow,
            timeout: .init(connect: TimeAmount(config.timeout), read: TimeAmount(config.timeout)))
        // The forwarder retries with backoff; the pool retrying behind it would only hide the reason.
        configuration.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    deinit {
        // AsyncHTTPClient traps in debug builds when a client goes away running; shutdown() is the normal path.
        if !isShutDown.load(ordering: .acquiring) { _ = client.shutdown() }
    }

    /// POSTs the batch; returns once the store answered 2xx, throws `SinkError` otherwise.
    public func deliver(_ batch: [OutboundEvent]) async throws {
        guard !batch.isEmpty else { return }
        var body = ByteBufferAllocator().buffer(capacity: batch.reduce(2) { $0 + $1.json.utf8.count + 1 })
        body.writeStaticString("[")
        for (index, event) in batch.enumerated() {
            if index > 0 { body.writeStaticString(",") }
            body.writeString(event.json)
        }
        body.writeStaticString("]")
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers = headers
        if let token = currentToken() { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        request.body = .bytes(body)

        let answer: Answer
        do {
            answer = try await withTimeout { [request] in try await self.post(request) }
        } catch {
            throw SinkError(.unavailable, "http POST \(target): \(await explain(error))")
        }
        try judge(answer)
        logger.debug("http sink \(name): \(batch.count) events delivered",
                     metadata: ["http.status": "\(answer.status)"])
    }

    /// Closes the client's connections; deliveries after this fail.
    public func shutdown() async {
        guard !isShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        try? await client.shutdown()
    }

    // MARK: The exchange

    /// What the store answered: enough to decide and to explain.
    private struct Answer: Sendable {
        var status: Int
        var reason: String
        var retryAfter: String?
        var location: String?
        var body: String
    }

    private struct TimedOut: Error {}

    /// Sends the request and reads the answer, body included (which also frees the connection for reuse).
    private func post(_ request: HTTPClientRequest) async throws -> Answer {
        let response = try await client.execute(request, deadline: .now() + TimeAmount(timeout))
        var start = ByteBuffer()
        for try await chunk in response.body where start.readableBytes < 1024 {
            start.writeImmutableBuffer(chunk)
        }
        return Answer(
            status: Int(response.status.code), reason: response.status.reasonPhrase,
            retryAfter: response.headers.first(name: "Retry-After"), location: response.headers.first(name: "Location"),
            body: String(buffer: start))
    }

    /// Runs `operation` within the sink's timeout, the answer's body included (a store dripping its answer
    /// byte by byte never runs into a read timeout, so the whole exchange has one deadline).
    private func withTimeout<Result: Sendable>(
        _ operation: @escaping @Sendable () async throws -> Result
    ) async throws -> Result {
        let timeout = self.timeout
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let result = first else { throw TimedOut() }
            return result
        }
    }

    /// Turns an answer that is not 2xx into the error that tells the forwarder what to do.
    private func judge(_ answer: Answer) throws {
        let status = "\(answer.status)\(answer.reason.isEmpty ? "" : " " + answer.reason)"
        let said = Self.oneLine(answer.body).map { ": \($0)" } ?? ""
        let prefix = "http POST \(target): \(status)"
        switch answer.status {
        case 207:
            // Multi-Status: part of the batch may not be stored, and no per-event answer is agreed for the gateway to
            // read. Counted as stored, those events would be lost; retried, the store keeps each event once.
            throw SinkError(.unavailable, """
                \(prefix), the store may have taken only part of the batch; a batch counts as stored on any other \
                2xx, so it is retried\(said)
                """)
        case 200..<300:
            return
        case 401:
            token.withLock { $0.refused = true }
            let check = tokenFile.map {
                "check the bearer token in \($0) (wrong or expired?); the file is read again for the next attempt"
            } ?? "the store wants a bearer token: set token-file"
            throw SinkError(.unavailable, "\(prefix), the store did not accept the token; \(check)\(said)")
        case 403:
            let token = tokenFile.map { "the token in \($0)" } ?? "no token"
            let check = "check the token and the url"
            throw SinkError(.unavailable, "\(prefix), the store does not let \(token) post here; \(check)\(said)")
        case 404:
            throw SinkError(.unavailable, "\(prefix), nothing receives batches at this URL; check the url\(said)")
        case 408:
            throw SinkError(.unavailable, "\(prefix), the store gave up waiting for the batch\(said)")
        case 429, 503:
            // RFC 9110 gives both a Retry-After: the store's own pause is kept.
            let delay = Self.retryAfter(answer.retryAfter)
            let wait = delay.map { ", asks to wait \($0.components.seconds) s" } ?? ""
            let what = answer.status == 429 ? "overloaded" : "unavailable"
            throw SinkError(.unavailable, "\(prefix), the store is \(what)\(wait)\(said)", retryAfter: delay)
        case 300..<400:
            let location = answer.location.map { " to \($0)" } ?? ""
            throw SinkError(
                .unavailable,
                "\(prefix)\(location): redirects are not followed (a POST must not turn into a GET); "
                    + "put the final URL in the url")
        case 405, 415, 421, 426:
            // The endpoint, not the events: a wrong URL, a proxy, a store that wants another protocol.
            throw SinkError(.unavailable, "\(prefix), the store does not take batches this way; check the url\(said)")
        case 400..<500:
            throw SinkError(.rejected, "\(prefix)\(said)")
        default:
            throw SinkError(.unavailable, "\(prefix)\(said)")
        }
    }

    /// The token to send: after a 401, what the token file holds now (a small file, read on a rare path).
    private func currentToken() -> String? {
        guard let tokenFile, token.withLock({ $0.refused }) else { return token.withLock { $0.value } }
        let fresh = try? Self.readToken(tokenFile, sink: name)
        return token.withLock { token in
            token.value = fresh ?? token.value
            token.refused = false
            return token.value
        }
    }

    /// The first ~200 characters of a body, on one line; nil when there is nothing to show.
    static func oneLine(_ text: String) -> String? {
        let flat = text.split(whereSeparator: { $0.isNewline || $0 == "\t" }).joined(separator: " ")
            .trimmingCharacters(in: .whitespaces)
        guard !flat.isEmpty else { return nil }
        return flat.count > 200 ? String(flat.prefix(200)) + "…" : flat
    }

    /// `Retry-After` in seconds or as an HTTP-date (RFC 9110 §10.2.3), as a delay from `now`.
    static func retryAfter(_ value: String?, now: Date = Date()) -> Duration? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Int(value) { return seconds >= 0 ? .seconds(seconds) : nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        // IMF-fixdate first; the two obsolete forms RFC 9110 still asks recipients to accept.
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: value) {
                return .seconds(max(0, Int(date.timeIntervalSince(now).rounded(.up))))
            }
        }
        return nil
    }

    // MARK: Explaining failures

    /// A connection the store ended before its answer was whole, or began.
    static let closedBeforeAnswering = "the store closed the connection before answering"

    /// One line on why no answer came: timeout, connection, TLS.
    private func explain(_ error: any Error) async -> String {
        let within = "within \(Self.format(timeout))"
        if error is TimedOut { return "no complete answer \(within); the store is slow or hangs" }
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout:
                return "no complete answer \(within); the store is slow or hangs"
            case .connectTimeout: return "no connection to \(host):\(port) \(within)"
            case .tlsHandshakeTimeout: return "TLS handshake with \(host):\(port) not finished \(within)"
            case .remoteConnectionClosed: return Self.closedBeforeAnswering
            default: return "\(error)"
            }
        }
        // NIO's words for a connection that ended before the answer was whole (from a trial of a store's reset:
        // "stream ended at an unexpected time").
        if let error = error as? HTTPParserError, error == .invalidEOFState { return Self.closedBeforeAnswering }
        if let error = error as? NIOConnectionError {
            if error.dnsAError != nil || error.dnsAAAAError != nil, error.connectionErrors.isEmpty {
                return "cannot resolve the host name \(host)"
            }
            let reason = error.connectionErrors.first.map { Self.describe($0.error) } ?? "no address to connect to"
            return "cannot connect to \(host):\(port): \(reason)"
        }
        if let error = error as? IOError {
            switch error.errnoCode {
            case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH:
                return "cannot connect to \(host):\(port): \(Self.describe(error))"
            default: return Self.describe(error)
            }
        }
        if let error = error as? ChannelError, case .connectTimeout = error {
            return "no connection to \(host):\(port) \(within)"
        }
        if let error = error as? NIOSSLExtraError, error == .failedToValidateHostname {
            let names = await serverCertificate().map { Self.names(of: $0) } ?? "other host names"
            return "TLS: the store's certificate is for \(names), not for \(host) (the host in the url); "
                + "use a URL with a name the certificate holds, or give the store a certificate for \(host)"
        }
        if let error = error as? BoringSSLError {
            // TLS 1.3: the server's alert about the client certificate arrives after the client's handshake.
            return await explainHandshake(error)
        }
        if let error = error as? NIOSSLError {
            switch error {
            case .handshakeFailed(let failure):
                return await explainHandshake(failure)
            case .uncleanShutdown:
                return "TLS: the store closed the connection without a TLS close (unclean shutdown)"
            default:
                return "TLS: \(error)"
            }
        }
        return Self.oneLine("\(error)") ?? "unknown error"
    }

    private func explainHandshake(_ failure: BoringSSLError) async -> String {
        let text = "\(failure)"
        let reasons = text.matches(of: /OPENSSL_internal:([A-Z0-9_]+)/).map { String($0.output.1) }
        let trust = caFile.map { "the CA file \($0)" } ?? "the system trust store"
        if reasons.contains("CERTIFICATE_VERIFY_FAILED") {
            guard let certificate = await serverCertificate() else {
                return "TLS: the store's certificate did not verify against \(trust) (CERTIFICATE_VERIFY_FAILED)"
            }
            let subject = Self.commonName(certificate.subjectName).map { " (\($0))" } ?? ""
            let now = time(nil)
            if certificate.subjectName == certificate.issuerName {
                return "TLS: the store's certificate\(subject) is self-signed, not issued by a CA in \(trust); "
                    + "give the store a certificate from a trusted CA"
            }
            if certificate.notValidAfter < now {
                return "TLS: the store's certificate\(subject) expired on \(Self.format(certificate.notValidAfter)); "
                    + "the store needs a renewed certificate"
            }
            if certificate.notValidBefore > now {
                return "TLS: the store's certificate\(subject) is not valid before "
                    + "\(Self.format(certificate.notValidBefore)); check the clocks of the gateway and the store"
            }
            let issuer = Self.commonName(certificate.issuerName) ?? "an unnamed issuer"
            if caFile == nil || !trustedIssuers.contains(certificate.issuerName) {
                return "TLS: the store's certificate\(subject) is issued by '\(issuer)', not by a trusted CA "
                    + "(\(trust)); set ca-file to the store's CA"
            }
            return "TLS: the store's certificate\(subject) from '\(issuer)' did not verify against \(trust) "
                + "(CERTIFICATE_VERIFY_FAILED: missing intermediate or bad signature?)"
        }
        if reasons.contains("WRONG_VERSION_NUMBER") || reasons.contains("PACKET_LENGTH_TOO_LONG") {
            return "TLS: \(host):\(port) does not speak TLS; is the url meant to be http://?"
        }
        if let alert = reasons.first(where: { $0.contains("ALERT") }) {
            if alert.contains("CERTIFICATE_REQUIRED"), !hasClientCertificate {
                return "TLS: the store asks for a client certificate (\(alert)); set certificate-file and key-file"
            }
            let certificateAlerts = ["CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE", "BAD_CERTIFICATE", "UNKNOWN_CA",
                                     "CERTIFICATE_EXPIRED", "CERTIFICATE_UNKNOWN", "ACCESS_DENIED"]
            let hint = certificateAlerts.contains(where: alert.contains)
                ? "; does it want a client certificate from another CA? check certificate-file and key-file" : ""
            return "TLS: the store refused the handshake (\(alert))\(hint)"
        }
        if let reason = reasons.first { return "TLS handshake failed: \(reason)" }
        return "TLS handshake failed: \(Self.oneLine(text) ?? "unknown reason")"
    }

    /// The store's leaf certificate, read over a connection that verifies nothing, only to name why the real
    /// one was refused. Nil when the store cannot be reached within a few seconds.
    private func serverCertificate() async -> NIOSSLCertificate? {
        do {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            let context = try NIOSSLContext(configuration: configuration)
            let serverName = host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
            let group = MultiThreadedEventLoopGroup.singleton
            let promise = group.any().makePromise(of: NIOSSLCertificate.self)
            let limit = TimeAmount(min(timeout, .seconds(5)))
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(limit)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            NIOSSLClientHandler(context: context, serverHostname: serverName),
                            PeerCertificateCatcher(promise: promise))
                    }
                }
                .connect(host: host, port: port).get()
            let timer = channel.eventLoop.scheduleTask(in: limit) { promise.fail(TimedOut()) }
            defer {
                timer.cancel()
                channel.close(promise: nil)
            }
            return try await promise.futureResult.get()
        } catch {
            return nil
        }
    }

    private static func names(of certificate: NIOSSLCertificate) -> String {
        var names: [String] = []
        for name in certificate._subjectAlternativeNames() where name.nameType == .dnsName {
            names.append(String(decoding: name.contents, as: UTF8.self))
        }
        if names.isEmpty, let commonName = commonName(certificate.subjectName) { names.append(commonName) }
        return names.isEmpty ? "other host names" : names.joined(separator: ", ")
    }

    private static func commonName(_ name: [SSLCertificateName]) -> String? {
        name.first { $0.type == .commonName }?.value
    }

    private static func describe(_ error: any Error) -> String {
        guard let error = error as? IOError else { return oneLine("\(error)") ?? "unknown error" }
        switch error.errnoCode {
        case ECONNREFUSED: return "connection refused (nothing listens there?)"
        case ECONNRESET: return "connection reset by the store"
        case EPIPE: return "the store closed the connection (broken pipe)"
        case EHOSTUNREACH, ENETUNREACH: return "no route to the host (network down?)"
        case ETIMEDOUT: return "connection timed out"
        default: return String(cString: strerror(error.errnoCode)).lowercased()
        }
    }

    private static func format(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
    }

    private static func format(_ time: time_t) -> String {
        Date(timeIntervalSince1970: TimeInterval(time)).formatted(Date.ISO8601FormatStyle())
    }

    // MARK: Files

    private static func readable(_ path: String, what: String, sink: String) throws {
        if let reason = ReadableFile.problem(path) {
            throw SinkError(.unavailable, "http sink \(sink): cannot read the \(what) \(path): \(reason)")
        }
    }

    private static func readToken(_ path: String, sink: String) throws -> String {
        switch ReadableFile.secret(path) {
        case .success(let text):
            let token = text.trimmingCharacters(in: .whitespaces)
            guard !token.contains(where: { $0.asciiValue.map { $0 < 0x20 } ?? false }) else {
                throw SinkError(.unavailable, "http sink \(sink): the token file \(path) holds control characters")
            }
            return token
        case .failure(let problem):
            throw SinkError(.unavailable, "http sink \(sink): \(problem.message("token file"))")
        }
    }

    private static func certificates(_ path: String, what: String, sink: String) throws -> [NIOSSLCertificate] {
        try readable(path, what: what, sink: sink)
        do {
            let certificates = try NIOSSLCertificate.fromPEMFile(path)
            guard !certificates.isEmpty else { throw NIOSSLError.failedToLoadCertificate }
            return certificates
        } catch {
            throw SinkError(.unavailable, "http sink \(sink): the \(what) \(path) holds no PEM certificate")
        }
    }

    private static func privateKey(_ path: String, sink: String) throws -> NIOSSLPrivateKey {
        try readable(path, what: "key file", sink: sink)
        do {
            return try NIOSSLPrivateKey(file: path, format: .pem)
        } catch {
            throw SinkError(
                .unavailable, "http sink \(sink): the key file \(path) holds no PEM private key (or it is encrypted)")
        }
    }
}

/// Hands over the peer's certificate once the TLS handshake completed (the first user event after it).
private final class PeerCertificateCatcher: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let promise: EventLoopPromise<NIOSSLCertificate>

    init(promise: EventLoopPromise<NIOSSLCertificate>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate() {
            promise.succeed(certificate)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }
}
