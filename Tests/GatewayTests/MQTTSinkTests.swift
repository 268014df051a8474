@testable import DeviceGateway
import Foundation
import Glibc
import Testing

/// The MQTT sink against real mosquitto brokers, checked with Debian's `mosquitto_sub`.
@Suite struct MQTTSinkTests {
    let host: String
    let port: Int
    /// Unique per test, so topics and client ids never meet those of a test running beside it.
    let hall = "mqtt-" + UUID().uuidString.prefix(8).lowercased()

    init() throws {
        host = try #require(ProcessInfo.processInfo.environment["HALL_TEST_MQTT_HOST"],
                            "run through scripts/test-services.sh")
        let port = try #require(ProcessInfo.processInfo.environment["HALL_TEST_MQTT_PORT"])
        self.port = try #require(Int(port))
    }

    func config(port: Int? = nil, topic: String = "halls/{hall}/events/{type}", timeout: Duration = .seconds(10),
                username: String? = nil, passwordFile: String? = nil, tls: TLSSettings? = nil) -> MQTTSinkConfig {
        MQTTSinkConfig(host: host, port: port ?? self.port, clientId: "\(hall)-sink", topic: topic,
                       username: username, passwordFile: passwordFile, tls: tls, timeout: timeout)
    }

    @Test func everyEventOfABatchArrivesOnItsTemplatedTopicWithItsJSONIntact() async throws {
        let subscriber = try await MQTTSessionSubscriber(port: port, clientId: "\(hall)-sub", filter: "halls/\(hall)/#")
        let sink = try MQTTSink(name: "central", config: config(topic: "halls/{hall}/{device}/{type}"),
                                hallId: hall, logger: CapturedLog().logger)
        let fault = CloudEvent(
            id: "fault-1", source: "/halls/\(hall)", type: HallEventType.deviceFault, time: Date(), subject: nil,
            data: .deviceFault(DeviceFault(fault: "bus-silent", detail: "no answer on line 1 for 30 s")))
        let batch = try outbound(mqttRatings(hall: hall, device: "eval-w01", count: 3) + [fault]
                                 + mqttRatings(hall: hall, device: "eval-w02", count: 2, prefix: "r"))
        try await sink.deliver(batch)
        await sink.shutdown()

        let received = try await subscriber.collect(batch.count)
        let rating = "hall.rating.submitted"
        #expect(received.map(\.topic) == [
            "halls/\(hall)/eval-w01/\(rating)", "halls/\(hall)/eval-w01/\(rating)", "halls/\(hall)/eval-w01/\(rating)",
            "halls/\(hall)/gateway/hall.device.fault",
            "halls/\(hall)/eval-w02/\(rating)", "halls/\(hall)/eval-w02/\(rating)",
        ])
        #expect(received.map(\.payload) == batch.map(\.json), "the CloudEvent JSON as committed, byte for byte")
        let decoded = try CloudEvent.decode(json: Data(try #require(received.first).payload.utf8))
        #expect(decoded.id == "e1" && decoded.source == "/halls/\(hall)/devices/eval-w01")
    }

    @Test func drainingAnOutboxPublishesEveryEventOnceInOrder() async throws {
        let folder = try TemporaryDirectory()
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        try await outbox.commit(mqttRatings(hall: hall, device: "eval-w03", count: 250))
        let subscriber = try await MQTTSessionSubscriber(port: port, clientId: "\(hall)-sub", filter: "halls/\(hall)/#")
        let mqtt = config(topic: "halls/{hall}/from{source}")
        let sink = try MQTTSink(name: "central", config: mqtt, hallId: hall, logger: CapturedLog().logger)
        let forwarder = Forwarder(outbox: outbox, sink: sink, config: SinkConfig(name: "central", kind: .mqtt(mqtt),
                                                                                 batchSize: 100),
                                  logger: CapturedLog().logger)
        #expect(try await forwarder.drain() == 250)
        await sink.shutdown()
        #expect(try await outbox.backlog(sink: "central") == 0)

        let received = try await subscriber.collect(250)
        #expect(Set(received.map(\.topic)) == ["halls/\(hall)/from/halls/\(hall)/devices/eval-w03"])
        let ids = try received.map { try CloudEvent.decode(json: Data($0.payload.utf8)).id }
        #expect(ids == (1...250).map { "e\($0)" })
    }

    @Test func anUnreachableBrokerIsUnavailableWithinTheTimeoutNamingHostAndPort() async throws {
        let closedPort = try unusedMQTTPort()
        let sink = try MQTTSink(name: "central", config: config(port: closedPort, timeout: .seconds(2)), hallId: hall,
                                logger: CapturedLog().logger)
        let batch = try outbound(mqttRatings(hall: hall, device: "eval-w01", count: 2))
        for _ in 1...2 {
            let started = ContinuousClock.now
            let error = try await #require(throws: SinkError.self) { try await sink.deliver(batch) }
            #expect(ContinuousClock.now - started < .seconds(3))
            #expect(error.code == .unavailable)
            #expect(error.message.contains("mqtt 127.0.0.1:\(closedPort)"), "\(error.message)")
            #expect(error.message.contains("Connection refused"), "\(error.message)")
        }
        await sink.shutdown()
    }

    @Test func aTLSConnectionToAClosedPortIsRefusedAtOnceAndStopsAtOnce() async throws {
        // libmosquitto 2.0 takes a refused TCP connect under TLS for a handshake under way: silent until the timeout.
        let closedPort = try unusedMQTTPort()
        let tls = config(port: closedPort, timeout: .seconds(20), tls: TLSSettings())
        let sink = try MQTTSink(name: "central", config: tls, hallId: hall, logger: CapturedLog().logger)
        let batch = try outbound(mqttRatings(hall: hall, device: "eval-w01", count: 2))
        let started = ContinuousClock.now
        let error = try await #require(throws: SinkError.self) { try await sink.deliver(batch) }
        #expect(ContinuousClock.now - started < .seconds(5), "not the 20 s timeout")
        #expect(error.code == .unavailable)
        #expect(error.message.contains("mqtt 127.0.0.1:\(closedPort)") && error.message.contains("Connection refused"),
                "\(error.message)")
        let stopping = ContinuousClock.now
        await sink.shutdown()
        #expect(ContinuousClock.now - stopping < .seconds(1))
    }

    @Test func tlsToABrokerWithoutTLSSaysSoInATechniciansWords() async throws {
        let sink = try MQTTSink(name: "central", config: config(timeout: .seconds(10), tls: TLSSettings()),
                                hallId: hall, logger: CapturedLog().logger)
        let error = try await #require(throws: SinkError.self) {
            try await sink.deliver(try outbound(mqttRatings(hall: hall, device: "eval-w01", count: 1)))
        }
        #expect(error.message.contains("the broker at 127.0.0.1:\(port) does not speak TLS"), "\(error.message)")
        await sink.shutdown()
    }

    @Test func aBrokerThatNeverAnswersIsATimeoutNotAHang() async throws {
        // A listening socket nobody accepts on: TCP connects, CONNECT goes unanswered.
        let silent = try UnansweringListener()
        let sink = try MQTTSink(name: "central", config: config(port: silent.port, timeout: .seconds(1)), hallId: hall,
                                logger: CapturedLog().logger)
        let started = ContinuousClock.now
        let error = try await #require(throws: SinkError.self) {
            try await sink.deliver(try outbound(mqttRatings(hall: hall, device: "eval-w01", count: 1)))
        }
        #expect(ContinuousClock.now - started < .seconds(2.5))
        #expect(error.code == .unavailable)
        #expect(error.message.contains("mqtt 127.0.0.1:\(silent.port)") && error.message.contains("1 s"),
                "\(error.message)")
        await sink.shutdown()
    }

    @Test func aRestartedBrokerTakesTheNextBatchAfterTheSinkReconnects() async throws {
        let broker = try PrivateMosquitto()
        try await broker.start()
        let sink = try MQTTSink(name: "central", config: config(port: broker.port), hallId: hall,
                                logger: CapturedLog().logger)
        let first = try outbound(mqttRatings(hall: hall, device: "eval-w01", count: 5))
        let second = try outbound(mqttRatings(hall: hall, device: "eval-w01", count: 5, prefix: "s"))
        let before = try await MQTTSessionSubscriber(port: broker.port, clientId: "\(hall)-sub1",
                                                     filter: "halls/\(hall)/#")
        try await sink.deliver(first)
        #expect(try await before.collect(5).map(\.payload) == first.map(\.json))

        try await broker.stop()
        let outage = try await #require(throws: SinkError.self) { try await sink.deliver(second) }
        #expect(outage.code == .unavailable && outage.message.contains("127.0.0.1:\(broker.port)"), "\(outage.message)")
        // A broker gone is not taken for one that drops the gateway at each publish.
        #expect(outage.message.contains("cannot connect"), "\(outage.message)")

        try await broker.start()
        let after = try await MQTTSessionSubscriber(port: broker.port, clientId: "\(hall)-sub2",
                                                    filter: "halls/\(hall)/#")
        try await sink.deliver(second)
        await sink.shutdown()
        // Messages queued during the outage may go out first on reconnecting: the set is what counts.
        #expect(Set(try await after.collect(5).map(\.payload)) == Set(second.map(\.json)))
    }

    @Test func aForwarderWaitingOutItsBackoffDeliversAsSoonAsTheSinkHasConnectedAgain() async throws {
        // From a soak: mosquitto back from an outage got its first batch 38 s later, 16 s of them connected, while the
        // forwarder waited out its backoff. Here that backoff is ten minutes: only the reconnection can end it in time.
        // The sink as the daemon has it, built by a `DeferredSink` (which first hid the reconnection from the forwarder).
        let broker = try PrivateMosquitto()
        let folder = try TemporaryDirectory()
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        try await outbox.commit(mqttRatings(hall: hall, device: "eval-w04", count: 20))
        let log = CapturedLog()
        let central = SinkConfig(name: "central", kind: .mqtt(config(port: broker.port, timeout: .seconds(5))),
                                 maximumRetryDelay: .seconds(3600))
        var forwarder = Forwarder(outbox: outbox, sink: DeferredSink(config: central, hallId: hall, logger: log.logger),
                                  config: central, logger: log.logger)
        forwarder.firstRetryDelay = .seconds(600)
        let stop = StopSignal()
        let running = Task { [forwarder] in await forwarder.run(until: stop) }
        let failed = await eventually { log.text.contains("sink central: delivery failed, 20 events kept in the outbox") }
        do { try await broker.start() } catch {
            stop.stop()
            await running.value
            throw error
        }
        let delivered = await eventually(timeout: .seconds(60)) { (try? await outbox.backlog(sink: "central")) == 0 }
        stop.stop()
        await running.value
        try await broker.stop()

        #expect(failed, "\(log.text)")
        #expect(delivered, "\(log.text)")
    }

    @Test func aBrokerThatDropsTheGatewayAtEveryPublishIsNotHammeredAndIsNamedAsTheCause() async throws {
        // EMQX and AWS IoT close the connection of a client whose publish they deny, and mosquitto that of a client
        // whose id a second client took. The forwarder and the sink at their defaults.
        let proxy = try await FaultProxy.start(target: port)
        defer { proxy.stop() }
        try await proxy.set("drop-after-answer")
        let folder = try TemporaryDirectory()
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        try await outbox.commit(mqttRatings(hall: hall, device: "eval-w05", count: 20))
        let log = CapturedLog()
        let central = SinkConfig(name: "central", kind: .mqtt(config(port: proxy.port)))
        let forwarder = Forwarder(outbox: outbox, sink: DeferredSink(config: central, hallId: hall, logger: log.logger),
                                  config: central, logger: log.logger)
        let stop = StopSignal()
        let running = Task { [forwarder] in await forwarder.run(until: stop) }
        var connections: [ContinuousClock.Instant] = []
        let sixth = await eventually(timeout: .seconds(60)) {
            let count = (try? await proxy.counts())?["drop-after-answer"] ?? 0
            while connections.count < count { connections.append(.now) }
            return count >= 6
        }
        try await proxy.set("pass")
        let delivered = await eventually(timeout: .seconds(60)) { (try? await outbox.backlog(sink: "central")) == 0 }
        stop.stop()
        await running.value

        try #require(sixth, "\(log.text)")
        let spread = connections[5] - connections[0]
        // Reconnecting at once after each drop would make six connections in a few seconds; the client's backoff
        // (1 s doubling, not reset by a connection that did not hold) spreads them over 11 or more.
        #expect(spread >= .seconds(8), "\(connections.map { $0 - connections[0] })\n\(log.text)")
        let failures = log.text.split(separator: "\n").filter { $0.contains("sink central: delivery failed") }
        #expect(failures.count == 1, "one line for one cause: \(failures)")
        #expect(failures.first?.contains("""
            connected, but each connection was lost before the broker acknowledged, within 10 s (does the broker close \
            a client whose publish it denies, or has another client taken the id '\(hall)-sink'?)
            """) == true, "\(failures)")
        #expect(delivered, "the backlog once the broker takes the publishes: \(log.text)")
    }

    @Test func theUsernameAndPasswordFileAreUsedAndARefusalIsReportedAtOnce() async throws {
        let broker = try PrivateMosquitto(config: "allow_anonymous false\npassword_file {folder}/passwords\n")
        let made = try await run("/usr/bin/mosquitto_passwd",
                                 ["-b", "-c", broker.folder.file("passwords"), "gateway", "s3cret"])
        try #require(made.status == 0, "\(made.standardError)")
        try await broker.start()
        try "s3cret\n".write(toFile: broker.folder.file("good"), atomically: true, encoding: .utf8)
        try "wrong\n".write(toFile: broker.folder.file("bad"), atomically: true, encoding: .utf8)
        let batch = try outbound(mqttRatings(hall: hall, device: "eval-w01", count: 2))

        let refused = try MQTTSink(name: "refused", config: config(port: broker.port, timeout: .seconds(10),
                                                                    username: "gateway",
                                                                    passwordFile: broker.folder.file("bad")),
                                   hallId: hall, logger: CapturedLog().logger)
        let started = ContinuousClock.now
        let error = try await #require(throws: SinkError.self) { try await refused.deliver(batch) }
        #expect(ContinuousClock.now - started < .seconds(5), "the broker's answer, not the timeout")
        #expect(error.code == .unavailable)
        #expect(error.message.contains("127.0.0.1:\(broker.port)") && error.message.contains("not authorised"),
                "\(error.message)")
        // The password changed in its file (a rotation on the broker's side, then in the file): the next delivery
        // takes it, without a restart.
        try "s3cret\n".write(toFile: broker.folder.file("bad"), atomically: true, encoding: .utf8)
        try await refused.deliver(batch)
        await refused.shutdown()

        let subscriber = try await MQTTSessionSubscriber(port: broker.port, clientId: "\(hall)-sub",
                                                         filter: "halls/\(hall)/#",
                                                         extra: ["-u", "gateway", "-P", "s3cret"])
        let sink = try MQTTSink(name: "central", config: config(port: broker.port, username: "gateway",
                                                                passwordFile: broker.folder.file("good")),
                                hallId: hall, logger: CapturedLog().logger)
        try await sink.deliver(batch)
        await sink.shutdown()
        #expect(try await subscriber.collect(2).map(\.payload) == batch.map(\.json))
    }

    @Test func tlsVerifiesTheBrokerAgainstTheGivenCertificateAuthority() async throws {
        let broker = try PrivateMosquitto(config: """
            cafile {folder}/ca.pem
            certfile {folder}/server.pem
            keyfile {folder}/server.key
            allow_anonymous true
            """)
        try await makeMQTTCertificates(in: broker.folder)
        try await broker.start()
        let batch = try outbound(mqttRatings(hall: hall, device: "eval-w01", count: 2))

        let otherAuthority = TLSSettings(caFile: broker.folder.file("other-ca.pem"))
        let untrusting = try MQTTSink(name: "untrusting", config: config(port: broker.port, tls: otherAuthority),
                                      hallId: hall, logger: CapturedLog().logger)
        let error = try await #require(throws: SinkError.self) { try await untrusting.deliver(batch) }
        #expect(error.code == .unavailable)
        #expect(error.message.contains("127.0.0.1:\(broker.port)")
                && error.message.contains("certificate verify failed"),
                "\(error.message)")
        await untrusting.shutdown()

        let subscriber = try await MQTTSessionSubscriber(port: broker.port, clientId: "\(hall)-sub",
                                                         filter: "halls/\(hall)/#",
                                                         extra: ["--cafile", broker.folder.file("ca.pem")])
        let sink = try MQTTSink(name: "central", config: config(port: broker.port,
                                                                tls: TLSSettings(caFile: broker.folder.file("ca.pem"))),
                                hallId: hall, logger: CapturedLog().logger)
        try await sink.deliver(batch)
        await sink.shutdown()
        #expect(try await subscriber.collect(2).map(\.payload) == batch.map(\.json))
    }

    @Test func whatNoRetryCanFixFailsAtStartAndATopicBrokersRefuseIsRejected() async throws {
        let folder = try TemporaryDirectory()
        let refusals: [(config: MQTTSinkConfig, names: String)] = [
            (config(topic: "halls/+/{type}"), "halls/+/{type}"),
            (config(tls: TLSSettings(caFile: folder.file("missing-ca.pem"))), folder.file("missing-ca.pem")),
            (config(username: "gateway", passwordFile: folder.file("missing")), folder.file("missing")),
        ]
        for (config, names) in refusals {
            let error = try #require(throws: SinkError.self) {
                try MQTTSink(name: "central", config: config, hallId: hall, logger: CapturedLog().logger)
            }
            #expect(error.message.contains(names) && error.message.contains("127.0.0.1:\(port)"), "\(error.message)")
        }
        let sink = try MQTTSink(name: "central", config: config(topic: "halls/{hall}/{device}"), hallId: hall,
                                logger: CapturedLog().logger)
        let batch = try outbound(mqttRatings(hall: hall, device: "pad#7", count: 1))
        let error = try await #require(throws: SinkError.self) { try await sink.deliver(batch) }
        #expect(error.code == .rejected && error.message.contains("halls/\(hall)/pad#7"), "\(error.message)")
        await sink.shutdown()
    }
}

/// Rating events of one pad, numbered from 1.
private func mqttRatings(hall: String, device: String, count: Int, prefix: String = "e") -> [CloudEvent] {
    (1...count).map { number in
        CloudEvent(
            id: "\(prefix)\(number)", source: "/halls/\(hall)/devices/\(device)", type: HallEventType.ratingSubmitted,
            time: Date(), subject: "window/1",
            data: .rating(RatingSubmitted(window: "1", staffId: "0101", level: 5, levelLabel: "非常满意", key: 1,
                                          keyLabel: "满意", scale: "five-level", deviceCounter: Int64(number))))
    }
}

/// `mosquitto_sub` with a persistent session: subscribed (and gone) before anything is published,
/// so the broker keeps every matching message for it and `collect` reads them without a race.
private struct MQTTSessionSubscriber {
    let arguments: [String]

    init(port: Int, clientId: String, filter: String, extra: [String] = []) async throws {
        arguments = ["-h", "127.0.0.1", "-p", "\(port)", "-c", "-i", clientId, "-q", "1", "-t", filter] + extra
        let subscribed = try await run("/usr/bin/mosquitto_sub", arguments + ["-E"])
        try #require(subscribed.status == 0, "mosquitto_sub could not subscribe: \(subscribed.standardError)")
    }

    /// The first `count` messages as `(topic, payload)`; fewer if they do not come within 15 s.
    func collect(_ count: Int) async throws -> [(topic: String, payload: String)] {
        let result = try await run("/usr/bin/mosquitto_sub", arguments + ["-v", "-C", "\(count)", "-W", "15"])
        let messages = result.standardOutput.split(separator: "\n").map { line in
            let space = line.firstIndex(of: " ") ?? line.endIndex
            return (topic: String(line[..<space]), payload: String(line[space...].dropFirst()))
        }
        #expect(messages.count == count, "mosquitto_sub: \(result.standardError)")
        return messages
    }
}

/// A mosquitto of the test's own on a free loopback port, for stopping and starting it at will.
private final class PrivateMosquitto: @unchecked Sendable {
    let folder: TemporaryDirectory
    let port: Int
    private var process: ChildProcess?

    /// `config` is added to the listener line; `{folder}` in it names the broker's folder.
    init(config: String = "allow_anonymous true\n") throws {
        folder = try TemporaryDirectory()
        port = try unusedMQTTPort()
        let text = "listener \(port) 127.0.0.1\npersistence false\nlog_dest stderr\n"
            + config.replacingOccurrences(of: "{folder}", with: folder.path) + "\n"
        try text.write(toFile: folder.file("mosquitto.conf"), atomically: true, encoding: .utf8)
    }

    func start() async throws {
        let process = try ChildProcess("/usr/sbin/mosquitto", ["-c", folder.file("mosquitto.conf")])
        self.process = process
        let port = port
        _ = await eventually(timeout: .seconds(10)) { mqttPortAccepts(port: port) || !process.process.isRunning }
        if !process.process.isRunning {
            let result = try await process.wait()
            Issue.record("mosquitto did not start: \(result.standardError)")
        }
        try #require(mqttPortAccepts(port: port), "mosquitto does not listen on 127.0.0.1:\(port)")
    }

    /// Kills the broker: a crash, as far as its clients can tell. (A child of the test process inherits a
    /// signal mask with SIGTERM blocked, and mosquitto restores that mask around its poll: it never exits.)
    func stop() async throws {
        let process = try #require(process)
        kill(process.process.processIdentifier, SIGKILL)
        _ = try await process.wait(timeout: .seconds(10))
        self.process = nil
    }

    deinit {
        if let process, process.process.isRunning { kill(process.process.processIdentifier, SIGKILL) }
    }
}

/// A CA, a server certificate it issued for 127.0.0.1, and a second CA that issued nothing.
private func makeMQTTCertificates(in folder: TemporaryDirectory) async throws {
    let commands: [[String]] = [
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=hall test CA", "-keyout", folder.file("ca.key"), "-out", folder.file("ca.pem")],
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=other CA", "-keyout", folder.file("other-ca.key"), "-out", folder.file("other-ca.pem")],
        ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", folder.file("server.key"),
         "-out", folder.file("server.csr")],
        ["x509", "-req", "-in", folder.file("server.csr"), "-CA", folder.file("ca.pem"),
         "-CAkey", folder.file("ca.key"),
         "-CAcreateserial", "-days", "2", "-copy_extensions", "copy", "-out", folder.file("server.pem")],
    ]
    for arguments in commands {
        let result = try await run("/usr/bin/openssl", arguments)
        try #require(result.status == 0, "openssl \(arguments[0]): \(result.standardError)")
    }
    // The broker may read its key after dropping root for the mosquitto user.
    try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: folder.file("server.key"))
}

/// A loopback port nothing listens on (free when asked; a race with other processes is unlikely).
/// A loopback port nobody listens on (bound and released at once).
func unusedMQTTPort() throws -> Int {
    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(socket >= 0)
    defer { close(socket) }
    var address = mqttLoopback(port: 0)
    let bound = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
    }
    try #require(bound == 0 && named == 0)
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether something accepts TCP connections on the loopback port.
private func mqttPortAccepts(port: Int) -> Bool {
    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socket >= 0 else { return false }
    defer { close(socket) }
    var address = mqttLoopback(port: port)
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    } == 0
}

private func mqttLoopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

/// A TCP listener that never accepts: connections complete in the kernel and then hear nothing.
private final class UnansweringListener: Sendable {
    let port: Int
    private let socket: Int32

    init() throws {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(socket >= 0)
        self.socket = socket
        var address = mqttLoopback(port: 0)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        try #require(bound == 0 && named == 0 && listen(socket, 8) == 0)
    }

    deinit { close(socket) }
}
