import DeviceGateway
import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The HTTP sink against a real CloudEvents receiver (the Python SDK reads every event), through a fault
/// proxy for the store's misbehaviours, and over TLS with a local CA.
@Suite struct HTTPSinkTests {
    let folder: TemporaryDirectory
    let token = "hall-test-token-7f3a"
    let tokenFile: String

    init() throws {
        folder = try TemporaryDirectory()
        tokenFile = folder.file("token")
        try "\(token)\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
    }

    // MARK: Delivery and the token

    @Test func aBatchArrivesAndTheCloudEventsSDKReadsEveryEvent() async throws {
        let receiver = try await Receiver.start(folder: folder, token: token)
        defer { receiver.stop() }
        let sink = try makeSink(receiver.url, tokenFile: tokenFile)
        let batch = try outbound((1...5).map { rating("r\($0)") })
        await #expect(throws: Never.self) { try await sink.deliver(batch) }
        await sink.shutdown()
        #expect(try await receiver.stats() == ReceiverStats(rows: 5, batches: 1, invalid: 0))
    }

    @Test func aMissingOrWrongTokenIsRetriedWithAMessageAboutTheToken() async throws {
        let receiver = try await Receiver.start(folder: folder, token: token)
        defer { receiver.stop() }
        let batch = try outbound([rating("r1")])

        let anonymous = try makeSink(receiver.url)
        let withoutToken = try await failure { try await anonymous.deliver(batch) }
        await anonymous.shutdown()
        #expect(withoutToken.code == .unavailable, "a token to fix, not events to put aside")
        #expect(withoutToken.message.hasPrefix("http POST \(receiver.url): 401"))
        #expect(withoutToken.message.contains("set token-file"))

        let wrongFile = folder.file("old-token")
        try "expired-token\n".write(toFile: wrongFile, atomically: true, encoding: .utf8)
        let wrong = try makeSink(receiver.url, tokenFile: wrongFile)
        let withWrongToken = try await failure { try await wrong.deliver(batch) }
        #expect(withWrongToken.code == .unavailable)
        #expect(withWrongToken.message.contains("401"))
        #expect(withWrongToken.message.contains("check the bearer token in \(wrongFile)"))
        #expect(try await receiver.stats().rows == 0)

        // The technician replaces the token file: the next attempt sends the new token, no restart needed.
        try "\(token)\n".write(toFile: wrongFile, atomically: true, encoding: .utf8)
        await #expect(throws: Never.self) { try await wrong.deliver(batch) }
        await wrong.shutdown()
        #expect(try await receiver.stats().rows == 1)
    }

    @Test func aTokenFileThatCannotBeReadStopsTheSinkAtStart() throws {
        let missing = folder.file("no-such-token")
        let error = try #require(throws: SinkError.self) {
            try makeSink("https://store.example/events", tokenFile: missing)
        }
        #expect(error.message == "http sink central: cannot read the token file \(missing): no such file")

        let empty = folder.file("empty-token")
        try "\n".write(toFile: empty, atomically: true, encoding: .utf8)
        let emptyError = try #require(throws: SinkError.self) {
            try makeSink("https://store.example/events", tokenFile: empty)
        }
        #expect(emptyError.message == "http sink central: the token file \(empty) is empty (leave the key out for none)")
    }

    @Test func aStoreThatIsNotListeningIsRetriedSayingConnectionRefused() async throws {
        let port = try await Receiver.start(folder: folder, token: token).stopAndKeepPort()
        let url = "http://127.0.0.1:\(port)/events"
        let sink = try makeSink(url, timeout: .seconds(2))
        let error = try await failure { try await sink.deliver(try outbound([rating("r1")])) }
        await sink.shutdown()
        #expect(error.code == .unavailable)
        #expect(error.message
                == "http POST \(url): cannot connect to 127.0.0.1:\(port): connection refused (nothing listens there?)")

        // A receiver that takes its key in the query: the key is not in the message (log, outbox, API).
        let keyed = try makeSink("http://ingest:s3cret-pass@127.0.0.1:\(port)/events?code=s3cret-key#part", timeout: .seconds(2))
        let keyedError = try await failure { try await keyed.deliver(try outbound([rating("r1")])) }
        await keyed.shutdown()
        #expect(keyedError.message.hasPrefix("http POST http://127.0.0.1:\(port)/events?…: cannot connect"), "\(keyedError.message)")
        #expect(!keyedError.message.contains("s3cret"))
    }

    // MARK: Faults of the store, through the proxy

    @Test func eachFaultOfTheStoreIsRetriedOrRefusedAsItShouldBeThenEverythingArrivesOnce() async throws {
        let receiver = try await Receiver.start(folder: folder, token: token)
        defer { receiver.stop() }
        let proxy = try await FaultProxy.start(target: receiver.port)
        defer { proxy.stop() }
        let batch = try outbound((1...3).map { rating("r\($0)") })
        let noCompleteAnswer = "no complete answer within 2 s; the store is slow or hangs"
        /// A fresh sink per case, so that no connection opened under an earlier mode is reused.
        func attempt(_ mode: String) async throws -> (error: SinkError, seconds: Double) {
            try await proxy.set(mode)
            let sink = try makeSink(proxy.url, tokenFile: tokenFile, timeout: .seconds(2))
            let started = ContinuousClock.now
            let error = try await failure { try await sink.deliver(batch) }
            let elapsed = ContinuousClock.now - started
            await sink.shutdown()
            return (error, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }

        let hang = try await attempt("hang")
        #expect(hang.error.code == .unavailable)
        #expect(hang.error.message == "http POST \(proxy.url): \(noCompleteAnswer)")
        #expect(hang.seconds < 4, "bounded by the 2 s timeout")

        let reset = try await attempt("reset")
        #expect(reset.error.code == .unavailable)
        // The reset reaches the client as a reset, or as an end of stream when it lands before the request is read.
        #expect(["connection reset by the store", "the store closed the connection before answering"]
            .map { "http POST \(proxy.url): \($0)" }.contains(reset.error.message), "\(reset.error.message)")

        // An answer cut off halfway: NIO says "stream ended at an unexpected time" (from a trial).
        let cut = try await attempt("cut")
        #expect(cut.error.code == .unavailable)
        #expect(cut.error.message == "http POST \(proxy.url): the store closed the connection before answering",
                "\(cut.error.message)")

        let serverError = try await attempt("status 500")
        #expect(serverError.error.code == .unavailable)
        #expect(serverError.error.message
                == "http POST \(proxy.url): 500 Internal Server Error: fault proxy: status 500")

        let overloaded = try await attempt("status 429 retry-after 7")
        #expect(overloaded.error.code == .unavailable)
        #expect(overloaded.error.retryAfter == .seconds(7))
        #expect(overloaded.error.message.contains("429 Too Many Requests, the store is overloaded, asks to wait 7 s"))
        // A 503's Retry-After is the store's pause too (RFC 9110; from a second read: only 429's was kept).
        let down = try await attempt("status 503 retry-after 120")
        #expect(down.error.retryAfter == .seconds(120))
        #expect(down.error.message.contains("503 Service Unavailable, the store is unavailable, asks to wait 120 s"),
                "\(down.error.message)")

        let later = Date().addingTimeInterval(30)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let overloadedUntil = try await attempt("status 429 retry-after \(formatter.string(from: later))")
        let delay = try #require(overloadedUntil.error.retryAfter, "an HTTP-date Retry-After is understood too")
        #expect(delay >= .seconds(27) && delay <= .seconds(31))

        // Part of a batch may be missing: not counted as stored (the carried-over note: 207 counted as all stored).
        let partly = try await attempt("status 207")
        #expect(partly.error.code == .unavailable)
        #expect(partly.error.message == "http POST \(proxy.url): 207 Multi-Status, the store may have taken only part "
                + "of the batch; a batch counts as stored on any other 2xx, so it is retried: fault proxy: status 207")

        let refused = try await attempt("status 400")
        #expect(refused.error.code == .rejected, "a 400 puts the refused events aside")
        #expect(refused.error.message == "http POST \(proxy.url): 400 Bad Request: fault proxy: status 400")

        let slow = try await attempt("slow")
        #expect(slow.error.code == .unavailable)
        #expect(slow.error.message == "http POST \(proxy.url): \(noCompleteAnswer)")
        #expect(slow.seconds < 4, "an answer dripping at 1 byte/s is bounded by the 2 s timeout too")

        let counts = try await proxy.counts()
        for mode in ["hang", "reset", "status 500", "status 429 retry-after 7", "status 207", "status 400", "slow"] {
            #expect(counts[mode] == 1, "the proxy served one request in mode \(mode): \(counts)")
        }
        // Only the slow mode forwarded the batch: the store kept it, its answer came too late.
        #expect(try await receiver.stats() == ReceiverStats(rows: 3, batches: 1, invalid: 0))

        // Back to normal: the whole outbox arrives, and replays change nothing.
        try await proxy.set("pass")
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        try await outbox.commit((1...50).map { rating("e\($0)") })
        let config = SinkConfig(name: "central", kind: .http(HTTPSinkConfig(url: proxy.url, tokenFile: tokenFile)),
                                batchSize: 20)
        let sink = try SinkFactory.make(config, hallId: "test-hall", logger: CapturedLog().logger)
        let forwarder = Forwarder(outbox: outbox, sink: sink, config: config, logger: CapturedLog().logger)
        let drained = try await forwarder.drain()
        #expect(drained == 50)
        #expect(try await outbox.backlog(sink: "central") == 0)
        #expect(try await receiver.stats() == ReceiverStats(rows: 53, batches: 4, invalid: 0))
        let replay = try await outbox.entries(after: 0, limit: 20)
        for _ in 1...3 { try await sink.deliver(replay) }
        await sink.shutdown()
        #expect(try await receiver.stats() == ReceiverStats(rows: 53, batches: 7, invalid: 0), "replays store nothing twice")
    }

    @Test func onlyTheEventTheStoreRefusesIsPutAsideAndTheForwarderGoesOn() async throws {
        let receiver = try await Receiver.start(folder: folder, token: token, arguments: ["--reject-id", "poison"])
        defer { receiver.stop() }
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        try await outbox.commit((1...30).map { rating($0 == 13 ? "poison-13" : "e\($0)") })
        let config = SinkConfig(name: "central", kind: .http(HTTPSinkConfig(url: receiver.url, tokenFile: tokenFile)),
                                batchSize: 8)
        try await outbox.register(sinks: ["central"])
        let log = CapturedLog()
        let sink = try SinkFactory.make(config, hallId: "test-hall", logger: log.logger)
        let forwarder = Forwarder(outbox: outbox, sink: sink, config: config, logger: log.logger)
        let stop = StopSignal()
        let running = Task { await forwarder.run(until: stop) }

        let drained = await eventually { (try? await outbox.backlog(sink: "central")) == 0 }
        #expect(drained)
        let aside = try await outbox.putAsideEvents(sink: "central")
        #expect(aside.map(\.id) == ["poison-13"])
        #expect(aside.first?.reason.contains("400 Bad Request: invalid batch: event 'poison-13'") == true,
                "\(aside.first?.reason ?? "")")
        #expect(try await receiver.stats().rows == 29, "every other event arrived")

        try await outbox.commit((31...35).map { rating("e\($0)") })
        let goesOn = await eventually { (try? await receiver.stats().rows) == 34 }
        #expect(goesOn, "the forwarder keeps delivering after putting one event aside")
        stop.stop()
        await running.value
        #expect(log.text.contains("refused event poison-13"))
    }

    // MARK: TLS

    @Test func aCertificateFromTheConfiguredCAForTheRightHostPasses() async throws {
        let certificates = try await makeCertificates()
        let receiver = try await Receiver.start(folder: folder, token: token, certificate: "server", in: certificates)
        defer { receiver.stop() }
        for host in ["127.0.0.1", "localhost"] {
            let url = "https://\(host):\(receiver.port)/events"
            let sink = try makeSink(url, tokenFile: tokenFile, tls: TLSSettings(caFile: certificates + "/ca.pem"))
            await #expect(throws: Never.self, "over \(host)") { try await sink.deliver(try outbound([rating(host)])) }
            await sink.shutdown()
        }
    }

    @Test(arguments: [
        ("other-host", "the store's certificate is for other.example.test, not for 127.0.0.1"),
        ("self-signed", "the store's certificate (localhost) is self-signed"),
        ("expired", "the store's certificate (127.0.0.1) expired on 2020-12-31T00:00:00Z"),
    ])
    func aCertificateThatMustNotPassIsRefusedSayingWhy(certificate: String, reason: String) async throws {
        let certificates = try await makeCertificates()
        let receiver = try await Receiver.start(folder: folder, token: token, certificate: certificate,
                                                in: certificates)
        defer { receiver.stop() }
        let url = "https://127.0.0.1:\(receiver.port)/events"
        let sink = try makeSink(url, tokenFile: tokenFile, tls: TLSSettings(caFile: certificates + "/ca.pem"))
        let error = try await failure { try await sink.deliver(try outbound([rating("r1")])) }
        await sink.shutdown()
        #expect(error.code == .unavailable)
        #expect(error.message.hasPrefix("http POST \(url): TLS: \(reason)"), "\(error.message)")
    }

    @Test func aCertificateFromACANotTrustedIsRefusedSayingSo() async throws {
        let certificates = try await makeCertificates()
        let receiver = try await Receiver.start(folder: folder, token: token, certificate: "server", in: certificates)
        defer { receiver.stop() }
        let url = "https://127.0.0.1:\(receiver.port)/events"
        let sink = try makeSink(url, tokenFile: tokenFile)
        let error = try await failure { try await sink.deliver(try outbound([rating("r1")])) }
        await sink.shutdown()
        #expect(error.code == .unavailable)
        #expect(error.message == """
            http POST \(url): TLS: the store's certificate (127.0.0.1) is issued by 'Hall gateway test CA', \
            not by a trusted CA (the system trust store); set ca-file to the store's CA
            """)
    }

    @Test func aStoreThatAsksForAClientCertificateGetsTheConfiguredOne() async throws {
        let certificates = try await makeCertificates()
        let receiver = try await Receiver.start(folder: folder, token: token, certificate: "server", in: certificates,
                                                arguments: ["--tls-client-ca", certificates + "/ca.pem"])
        defer { receiver.stop() }
        let ca = certificates + "/ca.pem"
        let without = try makeSink(receiver.url, tokenFile: tokenFile, tls: TLSSettings(caFile: ca))
        let refused = try await failure { try await without.deliver(try outbound([rating("r1")])) }
        await without.shutdown()
        #expect(refused.code == .unavailable)
        #expect(refused.message.hasPrefix("http POST \(receiver.url): TLS: the store asks for a client certificate"))
        #expect(refused.message.hasSuffix("; set certificate-file and key-file"))

        let client = TLSSettings(caFile: ca, certificateFile: certificates + "/client.pem",
                                 keyFile: certificates + "/client.key")
        let with = try makeSink(receiver.url, tokenFile: tokenFile, tls: client)
        await #expect(throws: Never.self) { try await with.deliver(try outbound([rating("r1")])) }
        await with.shutdown()
    }

    // MARK: Helpers

    /// An HTTP sink named `central`; a short timeout keeps the failing cases fast.
    func makeSink(_ url: String, tokenFile: String? = nil, tls: TLSSettings = TLSSettings(),
              timeout: Duration = .seconds(5)) throws -> HTTPSink {
        let config = HTTPSinkConfig(url: url, tokenFile: tokenFile, tls: tls, timeout: timeout)
        return try HTTPSink(name: "central", config: config, hallId: "test-hall", logger: CapturedLog().logger)
    }

    func rating(_ id: String) -> CloudEvent {
        CloudEvent(
            id: id, source: "/halls/test-hall/devices/eval-w01", type: HallEventType.ratingSubmitted, time: Date(),
            subject: "window/1",
            data: .rating(RatingSubmitted(window: "1", staffId: "0101", level: 4, levelLabel: "满意", key: 1,
                                          keyLabel: "满意", scale: "three-key", deviceCounter: 1)))
    }

    /// The test certificates (`scripts/make_test_certs.py`) in a folder of this test.
    func makeCertificates() async throws -> String {
        let path = folder.file("certs")
        let result = try await run("/usr/bin/env", ["python3", repositoryRoot + "/scripts/make_test_certs.py", path])
        try #require(result.status == 0, "make_test_certs.py failed: \(result.standardError)")
        return path
    }
}

/// The error a delivery threw, which must be a `SinkError`.
private func failure(_ body: () async throws -> Void) async throws -> SinkError {
    do {
        try await body()
    } catch let error as SinkError {
        return error
    } catch {
        Issue.record("not a SinkError: \(error)")
        throw error
    }
    throw ServiceError(description: "the delivery succeeded, a failure was expected")
}

/// What the receiver holds: rows in its table, batches stored, batches refused as invalid.
struct ReceiverStats: Codable, Equatable {
    var rows: Int
    var batches: Int
    var invalid: Int
}


/// `scripts/cloudevents_receiver.py`, plain HTTP or HTTPS with one of the test certificates.
struct Receiver {
    let service: PythonService
    let port: Int
    let scheme: String
    var url: String { "\(scheme)://127.0.0.1:\(port)/events" }

    static func start(folder: TemporaryDirectory, token: String, certificate: String? = nil,
                      in certificates: String = "", arguments: [String] = []) async throws -> Receiver {
        var options = ["--port", "0", "--db", folder.file("receiver-\(UUID().uuidString).sqlite"), "--token", token]
        if let certificate {
            options += ["--tls-cert", "\(certificates)/\(certificate).pem",
                        "--tls-key", "\(certificates)/\(certificate).key"]
        }
        let service = try PythonService("cloudevents_receiver.py", options + arguments)
        return Receiver(service: service, port: try await service.port("PORT"),
                        scheme: certificate == nil ? "http" : "https")
    }

    func stop() { service.stop() }

    /// Stops the receiver; its port is then (almost certainly) one nothing listens on.
    func stopAndKeepPort() async throws -> Int {
        try await service.stopAndWait()
        return port
    }

    func stats() async throws -> ReceiverStats {
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/stats")!)
        return try JSONDecoder().decode(ReceiverStats.self, from: data)
    }
}
