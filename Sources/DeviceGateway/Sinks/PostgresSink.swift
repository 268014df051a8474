import Foundation
public import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization

/// The central PostgreSQL store: one row per event in a table the gateway creates and migrates itself,
/// keyed (`source`, `id`) so that a replayed batch changes nothing.
///
/// A batch is one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` inside an explicit transaction:
/// the batch counts as delivered only once `COMMIT` answered, i.e. once the server made it durable.
/// Connections come from postgres-nio's pool; after any failure of the server the pool is dropped and the
/// next delivery starts afresh with one direct connection that checks (and if needed migrates) the table,
/// so its error says exactly why the server cannot be reached.
public actor PostgresSink: EventSink {
    /// The version of the table layout this gateway writes; see `migrationSteps`.
    static let schemaVersion = 1

    /// The sink's name, which keys its delivery cursor in the outbox.
    public nonisolated let name: String
    /// `host:port/database`, as every error names the store.
    public nonisolated let endpoint: String
    private let config: PostgresSinkConfig
    private var clientConfiguration: PostgresClient.Configuration
    private var connectionConfiguration: PostgresConnection.Configuration
    private let logger: Logger
    private let backgroundLogger: Logger
    private var pool: Pool?
    private var generation = 0
    /// The pool generation for which the table was found at the current version.
    private var migratedGeneration: Int?
    /// The password file, read again with each new pool.
    private var passwordFile: PasswordFileWatch?

    /// A pool and the task running it.
    private struct Pool {
        let client: PostgresClient
        let runner: Task<Void, Never>
        let generation: Int
    }

    /// Creates the sink; connections are made on the first delivery.
    ///
    /// Throws when no retry can help: an unreadable password, CA, certificate or key file, or a table name
    /// that is not a plain lower-case identifier.
    public init(name: String, config: PostgresSinkConfig, hallId: String, logger: Logger) throws {
        let endpoint = "\(config.host):\(config.port)/\(config.database)"
        func failure(_ message: String) -> SinkError { SinkError(.rejected, "postgres \(endpoint): \(message)") }
        guard config.table.range(of: "^[a-z_][a-z0-9_]{0,62}$", options: .regularExpression) != nil else {
            throw failure("'\(config.table)' is not a plain table name (lower-case letters, digits, _)")
        }
        let password = try config.passwordFile.map { path in
            switch ReadableFile.secret(path) {
            case .success(let text): return text
            case .failure(let problem): throw failure(problem.message("password file"))
            }
        }

        let clientTLS: PostgresClient.Configuration.TLS
        let connectionTLS: PostgresConnection.Configuration.TLS
        switch config.tlsMode {
        case .disable:
            clientTLS = .disable
            connectionTLS = .disable
        case .verifyFull:
            let tls = try Self.tlsConfiguration(config.tls, failure: failure)
            let context: NIOSSLContext
            do {
                context = try NIOSSLContext(configuration: tls)
            } catch {
                throw failure("cannot set up TLS with the given certificate files: \(error)")
            }
            clientTLS = .require(tls)
            connectionTLS = .require(context)
        }

        var clientConfiguration = PostgresClient.Configuration(
            host: config.host, port: config.port, username: config.user, password: password,
            database: config.database, tls: clientTLS)
        clientConfiguration.options.connectTimeout = config.timeout
        // The forwarder delivers one batch at a time: one connection does, a second covers a slow release.
        clientConfiguration.options.maximumConnections = 2
        clientConfiguration.options.connectionIdleTimeout = .seconds(300)
        var connectionConfiguration = PostgresConnection.Configuration(
            host: config.host, port: config.port, username: config.user, password: password,
            database: config.database, tls: connectionTLS)
        connectionConfiguration.options.connectTimeout = TimeAmount(config.timeout)

        self.name = name
        self.endpoint = endpoint
        self.config = config
        passwordFile = config.passwordFile.map { PasswordFileWatch(path: $0, password: password) }
        self.clientConfiguration = clientConfiguration
        self.connectionConfiguration = connectionConfiguration
        self.logger = logger
        // The pool logs every failed connection attempt; the forwarder already reports the failure once.
        var backgroundLogger = logger
        backgroundLogger.logLevel = max(logger.logLevel, .warning)
        self.backgroundLogger = backgroundLogger
    }

    /// Verified TLS: the system's trust store, or only the CAs of `caFile`; a client certificate when given.
    private static func tlsConfiguration(
        _ settings: TLSSettings, failure: (String) -> SinkError
    ) throws -> TLSConfiguration {
        func readable(_ path: String, _ what: String) throws {
            if let reason = ReadableFile.problem(path) { throw failure("cannot read \(what) \(path): \(reason)") }
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .fullVerification
        if let caFile = settings.caFile {
            try readable(caFile, "CA file")
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw failure("CA file \(caFile) holds no PEM certificate: \(error)")
            }
        }
        switch (settings.certificateFile, settings.keyFile) {
        case (nil, nil):
            break
        case (let certificateFile?, let keyFile?):
            try readable(certificateFile, "certificate file")
            try readable(keyFile, "key file")
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
            } catch {
                throw failure("certificate file \(certificateFile) holds no PEM certificate: \(error)")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            } catch {
                throw failure("key file \(keyFile) holds no PEM private key: \(error)")
            }
        default:
            throw failure("a client certificate needs both certificate-file and key-file")
        }
        return tls
    }

    // MARK: Delivering

    /// Stores a batch in one transaction; throws `SinkError` (see `sinkError(_:endpoint:)`).
    public func deliver(_ batch: [OutboundEvent]) async throws {
        guard !batch.isEmpty else { return }
        let pool = currentPool()
        let needsMigration = migratedGeneration != pool.generation
        let query = Self.insertQuery(batch, table: config.table)
        do {
            let probe: @Sendable () async throws -> Void = { [connectionConfiguration, logger] in
                try await Self.probe(connectionConfiguration, logger: logger)
            }
            let finished = try await Self.withDeadline(
                config.timeout, probeAfter: config.timeout / 3, probe: probe
            ) { [self, connectionConfiguration, logger] in
                if needsMigration {
                    try await Self.migrate(
                        table: config.table, configuration: connectionConfiguration, endpoint: endpoint, logger: logger)
                    await markMigrated(pool.generation)
                }
                try await pool.client.withConnection { connection in
                    try await connection.query("BEGIN", logger: logger)
                    do {
                        try await connection.query(query, logger: logger)
                    } catch {
                        // The connection goes back to the pool: it must not stay in an aborted transaction.
                        _ = try? await connection.query("ROLLBACK", logger: logger)
                        throw error
                    }
                    // Only COMMIT's answer says the rows are durable; the INSERT's does not.
                    try await connection.query("COMMIT", logger: logger)
                }
            }
            guard finished else {
                throw SinkError(.unavailable, "postgres \(endpoint): no answer within \(Self.seconds(config.timeout))")
            }
        } catch {
            let failure = Self.sinkError(error, endpoint: endpoint)
            if failure.code == .unavailable {
                // A fresh pool next time, which checks the table again (it may have been dropped or restored):
                // the old pool may hold dead connections or be backing off for a minute. Not waited for: the
                // delivery has used its time.
                drop(pool)
            }
            throw failure
        }
    }

    /// Closes the pool and its connections.
    public func shutdown() async {
        guard let pool else { return }
        drop(pool)
        await pool.runner.value
    }

    /// The pool to deliver with, started when there is none.
    private func currentPool() -> Pool {
        if let pool { return pool }
        if generation > 0 { readPasswordAgain() }
        generation += 1
        let client = PostgresClient(configuration: clientConfiguration, backgroundLogger: backgroundLogger)
        // Detached: `PostgresClient.run` ends at the service group's graceful shutdown, which a child task would see,
        // closing the pool under the forwarder's last batch at a stop; the pool ends when this sink drops it.
        let pool = Pool(client: client, runner: Task.detached { await client.run() }, generation: generation)
        self.pool = pool
        return pool
    }

    /// A new pool follows a failure: the password file is read again, so that a password changed on the server and
    /// in the file is taken without a restart (from an operator's trial: the sink failed with the old one until then).
    private func readPasswordAgain() {
        let (endpoint, logger) = (endpoint, logger)
        guard let password = passwordFile?.changed(warn: { logger.warning("postgres \(endpoint): \($0)") }) else { return }
        clientConfiguration.password = password
        connectionConfiguration.password = password
        logger.notice("postgres \(endpoint): the password file \(config.passwordFile ?? "") changed: the new password is used")
    }

    /// Closes a pool (its connections, the ones a hung query waits on included).
    private func drop(_ dropped: Pool) {
        if pool?.generation == dropped.generation { pool = nil }
        dropped.runner.cancel()
    }

    private func markMigrated(_ generation: Int) {
        if pool?.generation == generation { migratedGeneration = generation }
    }

    /// The batch as one statement: one array per column, `unnest`ed on the server.
    static func insertQuery(_ batch: [OutboundEvent], table: String) -> PostgresQuery {
        var sources: [String] = [], ids: [String] = [], types: [String] = [], times: [String] = []
        var subjects: [String] = [], sequences: [Int64] = [], halls: [String] = [], events: [String] = []
        sources.reserveCapacity(batch.count)
        ids.reserveCapacity(batch.count)
        types.reserveCapacity(batch.count)
        times.reserveCapacity(batch.count)
        subjects.reserveCapacity(batch.count)
        sequences.reserveCapacity(batch.count)
        halls.reserveCapacity(batch.count)
        events.reserveCapacity(batch.count)
        for event in batch {
            sources.append(event.source)
            ids.append(event.id)
            types.append(event.type)
            times.append(event.time)
            // Arrays of optionals do not encode; CloudEvents forbids an empty subject, so "" stands for none.
            subjects.append(event.subject ?? "")
            sequences.append(event.sequence)
            halls.append(event.hall ?? "")
            events.append(event.json)
        }
        return """
            INSERT INTO \(unescaped: table) (source, id, type, "time", subject, sequence, hall, event)
            SELECT source, id, type, "time"::timestamptz, NULLIF(subject, ''), sequence, NULLIF(hall, ''), event::jsonb
            FROM unnest(\(sources)::text[], \(ids)::text[], \(types)::text[], \(times)::text[], \(subjects)::text[],
                        \(sequences)::int8[], \(halls)::text[], \(events)::text[])
                AS batch(source, id, type, "time", subject, sequence, hall, event)
            ON CONFLICT (source, id) DO NOTHING
            """
    }

    // MARK: The table

    /// The layout, step by step; step N brings a table from version N-1 to N. Every statement is idempotent,
    /// so a table created by hand beforehand (partitioned, say) only gets what it lacks.
    static func migrationSteps(table: String) -> [[String]] {
        [
            [
                """
                CREATE TABLE IF NOT EXISTS \(table) (
                    source text NOT NULL,
                    id text NOT NULL,
                    type text NOT NULL,
                    "time" timestamptz NOT NULL,
                    subject text,
                    sequence bigint NOT NULL,
                    hall text,
                    event jsonb NOT NULL,
                    received_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (source, id)
                )
                """,
                "CREATE INDEX IF NOT EXISTS \(table)_hall_time ON \(table) (hall, \"time\")",
                "CREATE INDEX IF NOT EXISTS \(table)_time ON \(table) USING brin (\"time\")",
                """
                CREATE OR REPLACE VIEW \(table)_gaps AS
                SELECT hall, source, previous + 1 AS first_missing, sequence - 1 AS last_missing,
                       sequence - previous - 1 AS missing
                FROM (SELECT hall, source, sequence,
                             coalesce(lag(sequence) OVER (PARTITION BY hall, source ORDER BY sequence), 0) AS previous
                      FROM \(table)) AS numbered
                WHERE sequence > previous + 1
                """,
            ],
        ]
    }

    /// Brings the table to `schemaVersion` over a connection of its own, which also tells precisely why
    /// the server cannot be reached. Fast when nothing is to do; otherwise under a transaction-scoped
    /// advisory lock, so that a province's gateways starting together create the table once.
    static func migrate(
        table: String, configuration: PostgresConnection.Configuration, endpoint: String, logger: Logger
    ) async throws {
        let connection = try await PostgresConnection.connect(
            configuration: configuration, id: nextConnectionID(), logger: logger)
        // Past the deadline the delivery is cancelled: a server that stopped answering must not keep this open.
        try await withTaskCancellationHandler {
            try await migrateTable(table, on: connection, endpoint: endpoint, logger: logger)
        } onCancel: {
            let closing: EventLoopFuture<Void> = connection.close()
            _ = closing
        }
    }

    private static func migrateTable(
        _ table: String, on connection: PostgresConnection, endpoint: String, logger: Logger
    ) async throws {
        do {
            if try await currentVersion(of: table, on: connection, logger: logger) < schemaVersion {
                try await connection.query("BEGIN", logger: logger)
                // One lock for the gateway's schema: the version table itself is created under it too.
                try await connection.query("SELECT pg_advisory_xact_lock(\(advisoryLockKey))", logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS hall_gateway_schema (
                        table_name text PRIMARY KEY,
                        version integer NOT NULL,
                        migrated_at timestamptz NOT NULL DEFAULT now()
                    )
                    """, logger: logger)
                let found = try await currentVersion(of: table, on: connection, logger: logger)
                if found < schemaVersion {
                    for step in migrationSteps(table: table)[found...] {
                        for statement in step {
                            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                        }
                    }
                    try await connection.query(
                        """
                        INSERT INTO hall_gateway_schema (table_name, version) VALUES (\(table), \(schemaVersion))
                        ON CONFLICT (table_name) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()
                        """, logger: logger)
                    let what = found == 0 ? "created" : "migrated from version \(found)"
                    logger.notice("postgres \(endpoint): table \(table) \(what) at schema version \(schemaVersion)")
                }
                try await connection.query("COMMIT", logger: logger)
            }
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }

    /// The version the table is at: 0 when the table or its version row is missing.
    private static func currentVersion(
        of table: String, on connection: PostgresConnection, logger: Logger
    ) async throws -> Int {
        let rows = try await connection.query(
            """
            SELECT to_regclass('hall_gateway_schema') IS NOT NULL, to_regclass(\(table)) IS NOT NULL
            """, logger: logger)
        var schemaTable = false, eventTable = false
        for try await (hasSchema, hasTable) in rows.decode((Bool, Bool).self) {
            schemaTable = hasSchema
            eventTable = hasTable
        }
        guard schemaTable, eventTable else { return 0 }
        let versions = try await connection.query(
            "SELECT version FROM hall_gateway_schema WHERE table_name = \(table)", logger: logger)
        var version = 0
        for try await found in versions.decode(Int.self) { version = found }
        return version
    }

    /// The advisory lock key of the gateway's schema migrations (an arbitrary constant: "hallgw01").
    static let advisoryLockKey: Int64 = 0x6861_6C6C_6777_3031

    private static let connectionIDs = Atomic<Int>(0)

    private static func nextConnectionID() -> Int {
        connectionIDs.add(1, ordering: .relaxed).newValue
    }

    // MARK: Errors and time

    /// The server's detail as reasons and logs show it: a key that exists, a value out of range. "Failing row contains
    /// (…)" is the whole event again, so it is left out; the message names the constraint.
    static func shownDetail(_ detail: String) -> String? {
        if detail.hasPrefix("Failing row contains") { return nil }
        return detail.count > 200 ? String(detail.prefix(200)) + "…" : detail
    }

    /// The forwarder's view of a failure: data the server refuses for good (SQLSTATE classes 22 and 23) is
    /// rejected; everything else (connection refused, reset, timeout, server shutting down, wrong password,
    /// missing privilege) is retried, since the batch itself is fine.
    static func sinkError(_ error: any Error, endpoint: String) -> SinkError {
        let prefix = "postgres \(endpoint): "
        if let error = error as? SinkError { return error }
        guard let psql = error as? PSQLError else {
            return SinkError(.unavailable, prefix + describe(error))
        }
        switch psql.code {
        case .server:
            let state = psql.serverInfo?[.sqlState] ?? "?????"
            let message = psql.serverInfo?[.message] ?? "error"
            let detail = psql.serverInfo?[.detail].flatMap(shownDetail).map { " (\($0))" } ?? ""
            // 23514 is also "no partition of the table for this row": the store's layout, not the event.
            if state == "23514", message.contains("partition") {
                return SinkError(.unavailable, prefix + "no partition takes the events: \(message) [SQLSTATE \(state)]")
            }
            if state.hasPrefix("22") || state.hasPrefix("23") {
                return SinkError(.rejected, prefix + "refused the events: \(message)\(detail) [SQLSTATE \(state)]")
            }
            if state.hasPrefix("57P") {
                return SinkError(.unavailable, prefix + "server shutting down: \(message) [SQLSTATE \(state)]")
            }
            return SinkError(.unavailable, prefix + "\(message)\(detail) [SQLSTATE \(state)]")
        case .connectionError:
            return SinkError(.unavailable, prefix + (psql.underlying.map(describe) ?? "connection failed"))
        case .serverClosedConnection, .uncleanShutdown:
            return SinkError(.unavailable, prefix + "the server closed the connection")
        case .clientClosedConnection, .poolClosed:
            return SinkError(.unavailable, prefix + "connection closed while the batch was sent")
        case .sslUnsupported:
            return SinkError(.unavailable, prefix + "the server does not offer TLS (tls-mode verify-full)")
        case .failedToAddSSLHandler:
            return SinkError(.unavailable, prefix + "TLS set-up failed: \(psql.underlying.map(describe) ?? "")")
        case .authMechanismRequiresPassword:
            return SinkError(.unavailable, prefix + "the server asks for a password: set password-file")
        case .unsupportedAuthMechanism:
            return SinkError(.unavailable, prefix + "the server asks for an authentication method this gateway lacks")
        default:
            return SinkError(.unavailable, prefix + "\(psql.code)" + (psql.underlying.map { ": " + describe($0) } ?? ""))
        }
    }

    /// A network or TLS error in a technician's words: "connection refused", not a type dump.
    static func describe(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let dns = error.dnsAError ?? error.dnsAAAAError {
                // getaddrinfo's words, not NIO's type dump (from a docs trial).
                let words = (dns as? SocketAddressError.UnknownHost)?.errorDescription.lowercased() ?? "\(dns)"
                return "cannot resolve \(error.host): \(words)"
            }
            if let first = error.connectionErrors.first { return describe(first.error) }
            return "cannot connect to \(error.host):\(error.port)"
        }
        if let error = error as? IOError {
            return String(cString: strerror(error.errnoCode)).lowercased()
        }
        if let error = error as? ChannelError {
            switch error {
            case .connectTimeout(let timeout):
                return "no answer to the connection within \(seconds(.nanoseconds(timeout.nanoseconds)))"
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed, .inputClosed:
                return "the connection was closed"
            default:
                return "\(error)"
            }
        }
        if let error = error as? NIOSSLError {
            guard case .handshakeFailed(let cause) = error else { return "TLS: \(error)" }
            // BoringSSL's reason is the word after "OPENSSL_internal:"; the rest is a source path.
            let text = "\(cause)"
            let reason = text.range(of: "OPENSSL_internal:[A-Z0-9_]+", options: .regularExpression)
                .map { String(text[$0].dropFirst("OPENSSL_internal:".count)) }
            if reason == "CERTIFICATE_VERIFY_FAILED" {
                return "TLS: the server's certificate did not verify (not from a trusted CA, expired, or not "
                    + "for this host name)"
            }
            return "TLS handshake failed: \(reason ?? text)"
        }
        if let error = error as? NIOSSLExtraError { return "TLS: \(error)" }
        if error is CancellationError { return "delivery cancelled" }
        // The pool's own errors (its module is not ours to import): it gave up connecting, or it was closed.
        let text = "\(error)"
        if text.contains("CircuitBreakerTripped") { return "no connection could be made for a minute" }
        if text.contains("poolShutdown") { return "connection pool closed while the batch was sent" }
        return "\(error)"
    }

    /// "5 s", "1.5 s".
    static func seconds(_ duration: Duration) -> String {
        let value = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }

    /// Connects once on a connection of our own and closes it; throws why it cannot connect.
    static func probe(_ configuration: PostgresConnection.Configuration, logger: Logger) async throws {
        let connection = try await PostgresConnection.connect(
            configuration: configuration, id: nextConnectionID(), logger: logger)
        try? await connection.close()
    }

    /// Runs `work`, waiting at most `timeout`; returns false when the time ran out.
    ///
    /// The work runs in a task of its own, so that a server that stops answering cannot hold the caller:
    /// its connection is closed when the caller drops the pool, which ends the task. When the work is
    /// still running after `probeAfter`, `probe` runs beside it: the pool keeps retrying a refused
    /// connection quietly until the deadline, and the probe's own connection says at once why it fails.
    static func withDeadline(
        _ timeout: Duration, probeAfter: Duration? = nil, probe: (@Sendable () async throws -> Void)? = nil,
        _ work: @escaping @Sendable () async throws -> Void
    ) async throws -> Bool {
        let race = Race()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                race.start(continuation)
                let worker = Task {
                    do {
                        try await work()
                        race.finish(.success(true))
                    } catch {
                        race.finish(.failure(error))
                    }
                }
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    if race.finish(.success(false)) { worker.cancel() }
                }
                let prober = Task {
                    guard let probe, let probeAfter else { return }
                    do { try await Task.sleep(for: probeAfter) } catch { return }
                    do {
                        try await probe()
                    } catch {
                        if !Task.isCancelled, race.finish(.failure(error)) { worker.cancel() }
                    }
                }
                race.onFinish {
                    timer.cancel()
                    prober.cancel()
                }
            }
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }
}

/// The first of work, timer and cancellation to finish resumes the caller; the others find it done.
private final class Race: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Bool, any Error>?
        var outcome: Result<Bool, any Error>?
        var finished = false
        var onFinish: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<Bool, any Error>) {
        let early = state.withLock { state -> Result<Bool, any Error>? in
            if let outcome = state.outcome { return outcome }
            state.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func onFinish(_ action: @escaping @Sendable () -> Void) {
        let runNow = state.withLock { state -> Bool in
            if state.finished { return true }
            state.onFinish = action
            return false
        }
        if runNow { action() }
    }

    /// Returns whether this call was the first to finish.
    @discardableResult
    func finish(_ outcome: Result<Bool, any Error>) -> Bool {
        let (first, continuation, action) = state.withLock {
            state -> (Bool, CheckedContinuation<Bool, any Error>?, (@Sendable () -> Void)?) in
            guard !state.finished else { return (false, nil, nil) }
            state.finished = true
            state.outcome = outcome
            let continuation = state.continuation
            state.continuation = nil
            let action = state.onFinish
            state.onFinish = nil
            return (true, continuation, action)
        }
        continuation?.resume(with: outcome)
        action?()
        return first
    }
}
