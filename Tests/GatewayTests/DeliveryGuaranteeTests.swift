import AsyncHTTPClient
import DeviceGateway
import Foundation
import MockDevices
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

/// A hall of Modbus pads pressed at a steady pace, with the ground truth of every press.
final class PressingHall: Sendable {
    let pads: [MockModbusEvaluator]
    let server: MockModbusServer
    private let pressed = Mutex<[Int]>([])
    private let pressing = Mutex(false)

    init(padCount: Int) throws {
        pads = (1...padCount).map { MockModbusEvaluator(staffId: String(format: "%04d", 100 + $0)) }
        server = try .tcp(units: Dictionary(uniqueKeysWithValues: pads.enumerated().map { ($0 + 1, $1 as any MockModbusUnit) }))
        port = try #require(server.endpoint.tcpPort)
        pressed.withLock { $0 = Array(repeating: 0, count: padCount) }
    }

    let port: Int

    /// The bus and device lines of a gateway configuration for these pads.
    var configuration: String {
        """
        buses:
          - {id: lan, transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(port), response-timeout-ms: 200, poll-interval-ms: 50}
        devices:
        \(pads.indices.map { "  - {id: eval-w\($0 + 1), profile: modbus-evaluator-3key, bus: lan, address: \($0 + 1), window: \"\($0 + 1)\"}" }.joined(separator: "\n"))
        """
    }

    /// Presses of each pad so far (the ground truth: pad i's ratings are numbered 1…presses[i]).
    var presses: [Int] { pressed.withLock { $0 } }
    var total: Int { presses.reduce(0, +) }

    /// `times` presses at once: no poll can fall between them.
    func press(pad index: Int, times: Int = 1) {
        pressed.withLock { pressed in
            pads[index].press(code: MockModbusEvaluator.Key.allCases[Int.random(in: 0..<3)].rawValue, times: times)
            pressed[index] += times
        }
    }

    /// Citizens at a busy hall: one press somewhere every `interval` (their pace, not a synchronisation),
    /// until `stopPressing()`.
    func startPressing(every interval: Duration) -> Task<Void, Never> {
        pressing.withLock { $0 = true }
        return Task {
            var next = 0
            while pressing.withLock({ $0 }) {
                press(pad: next % pads.count)
                next += 1
                try? await Task.sleep(for: interval)
            }
        }
    }

    func stopPressing() { pressing.withLock { $0 = false } }

    var acknowledgedTotal: Int { pads.reduce(0) { $0 + Int($1.acknowledged) } }
}

/// A PostgreSQL cluster of the test's own, so that stopping it leaves other suites' database alone.
final class PrivatePostgres: Sendable {
    let folder: String
    let url: String
    let script: String

    init(in directory: TemporaryDirectory) async throws {
        script = try #require(ProcessInfo.processInfo.environment["HALL_TEST_SERVICES"],
                              "run the suite through scripts/test-services.sh (make test)")
        folder = directory.file("postgres")
        let created = try await run("/bin/bash", [script, "pg-private", folder])
        try #require(created.status == 0, "\(created.standardError)")
        url = created.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func stop() async throws { try await control("pg-stop") }
    func start() async throws { try await control("pg-start") }

    private func control(_ command: String) async throws {
        let result = try await run("/bin/bash", [script, command, folder + "/pgdata"])
        try #require(result.status == 0, "\(command): \(result.standardError)")
    }
    func remove() async { _ = try? await run("/bin/bash", [script, "pg-private-remove", folder]) }

    /// One value or row per line, columns separated by `|` (psql, an independent client).
    func query(_ sql: String) async throws -> [String] {
        let result = try await run("/usr/bin/psql", [url, "-tAc", sql])
        try #require(result.status == 0, "psql: \(result.standardError)")
        return result.standardOutput.split(separator: "\n").map(String.init)
    }

    /// Rows of `table`, or nil while it does not exist yet (for waiting on; records no issue).
    func rowCount(_ table: String) async -> Int? {
        guard let result = try? await run("/usr/bin/psql", [url, "-tAc", "SELECT count(*) FROM \(table)"]),
              result.status == 0 else { return nil }
        return Int(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The sink lines of a gateway configuration writing into table `table`.
    func sink(table: String, folder: TemporaryDirectory) throws -> String {
        let parts = try #require(URLComponents(string: url))
        let passwordFile = folder.file("pg-password")
        try (parts.password ?? "").write(toFile: passwordFile, atomically: true, encoding: .utf8)
        return """
              - {type: postgres, name: central, host: 127.0.0.1, port: \(parts.port ?? 5432), database: central, \
            user: \(parts.user ?? ""), password-file: \(passwordFile), table: \(table), timeout-ms: 3000, max-retry-delay-ms: 2000}
            """
    }
}

/// What the central table holds for a hall of pressed pads, checked against the ground truth.
struct CentralTally {
    var ratings: [Int: [Int]] = [:]
    var lost: [Int: Int] = [:]
    var gaps: [String]
    var sourcesNotStartingAtOne: [String]

    init(_ postgres: PrivatePostgres, table: String) async throws {
        for line in try await postgres.query(
            "SELECT source, (event->'data'->>'deviceCounter')::int FROM \(table) WHERE type = 'hall.rating.submitted'")
        {
            let fields = line.split(separator: "|")
            let pad = Int(fields[0].split(separator: "-w").last ?? "") ?? 0
            ratings[pad, default: []].append(Int(fields[1]) ?? -1)
        }
        for line in try await postgres.query("""
            SELECT source, sum((event->'data'->>'count')::int) FROM \(table)
            WHERE type = 'hall.device.fault' AND event->'data'->>'fault' = 'ratings-lost' GROUP BY source
            """)
        {
            let fields = line.split(separator: "|")
            lost[Int(fields[0].split(separator: "-w").last ?? "") ?? 0] = Int(fields[1]) ?? 0
        }
        gaps = try await postgres.query("SELECT source, first_missing, last_missing FROM \(table)_gaps")
        sourcesNotStartingAtOne = try await postgres.query(
            "SELECT source FROM \(table) GROUP BY source HAVING min(sequence) <> 1")
    }

    /// Every press is stored once or counted lost, exactly.
    func expectMatches(_ presses: [Int], _ comment: Comment) {
        for (index, count) in presses.enumerated() {
            let stored = ratings[index + 1] ?? []
            #expect(Set(stored).count == stored.count, "pad \(index + 1): a rating stored twice. \(comment)")
            #expect(stored.count + (lost[index + 1] ?? 0) == count,
                    "pad \(index + 1): \(stored.count) stored + \(lost[index + 1] ?? 0) lost ≠ \(count) pressed. \(comment)")
            #expect(stored.allSatisfy { (1...count).contains($0) })
        }
        #expect(gaps.isEmpty, "sequence gaps at the store: \(gaps). \(comment)")
        #expect(sourcesNotStartingAtOne.isEmpty, "sequences that do not start at 1: \(sourcesNotStartingAtOne)")
    }
}

/// A loopback port nothing listens on when asked.
func freeLoopbackPort() async throws -> Int {
    let result = try await run(
        "/usr/bin/env", ["python3", "-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"])
    return try #require(Int(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)))
}

/// Runs a server with SIGINT and SIGTERM unblocked (a test runner's thread may hand them down blocked),
/// so that stopping it is the graceful stop a service manager would give it.
func startServer(_ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
    try ChildProcess("/usr/bin/env", ["python3", "-c", """
        import os, signal, sys
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        os.execvp(sys.argv[1], sys.argv[1:])
        """] + arguments, environment: environment)
}

/// The HTTP store: `scripts/cloudevents_receiver.py` (CloudEvents SDK validation, SQLite keyed by source and id),
/// restartable on the same port with the same database.
final class ReceiverStore: @unchecked Sendable {
    let port: Int
    let database: String
    let token = "soak-token"
    private var child: ChildProcess?

    init(folder: TemporaryDirectory) async throws {
        port = try await freeLoopbackPort()
        database = folder.file("receiver.sqlite")
        try token.write(toFile: folder.file("receiver.token"), atomically: true, encoding: .utf8)
    }

    func start() async throws {
        let child = try startServer(["python3", repositoryRoot + "/scripts/cloudevents_receiver.py", "--port", "\(port)",
                                     "--db", database, "--token", token])
        self.child = child
        try #require(await eventually(timeout: .seconds(20)) { child.output.contains("PORT \(self.port)") },
                     "the receiver did not start")
    }

    func stop() async throws {
        let child = try #require(child)
        child.process.terminate()
        _ = try await child.wait(timeout: .seconds(10))
        self.child = nil
    }

    /// Ratings stored, as (source, deviceCounter), read with SQLite directly.
    func ratings() async throws -> [(source: String, number: Int)] {
        let result = try await run("/usr/bin/env", ["python3", "-c", """
            import json, sqlite3, sys
            for source, text in sqlite3.connect(sys.argv[1]).execute(
                    "SELECT source, json FROM events WHERE type = 'hall.rating.submitted'"):
                print(source, json.loads(text)["data"]["deviceCounter"])
            """, database])
        try #require(result.status == 0, "\(result.standardError)")
        return result.standardOutput.split(separator: "\n").map { line in
            let parts = line.split(separator: " ")
            return (String(parts[0]), Int(parts[1]) ?? -1)
        }
    }
}

/// The MQTT store: a mosquitto of the test's own that keeps sessions across a graceful restart, and a
/// subscriber with a persistent session standing for the consumer that feeds the central database.
final class BrokerStore: @unchecked Sendable {
    let port: Int
    let folder: TemporaryDirectory
    private var broker: ChildProcess?
    private var subscriber: ChildProcess?

    init() async throws {
        folder = try TemporaryDirectory()
        port = try await freeLoopbackPort()
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder.path)
        try """
            listener \(port) 127.0.0.1
            allow_anonymous true
            persistence true
            persistence_location \(folder.path)/
            # A backlog larger than the default 1000 queued messages reaches the consumer whole (README, MQTT).
            max_queued_messages 1000000
            log_dest stderr
            """.write(toFile: folder.file("mosquitto.conf"), atomically: true, encoding: .utf8)
    }

    func start() async throws {
        let broker = try startServer(["/usr/sbin/mosquitto", "-c", folder.file("mosquitto.conf")])
        self.broker = broker
        let port = port
        try #require(await eventually(timeout: .seconds(10)) {
            (try? await run("/usr/bin/mosquitto_pub", ["-p", "\(port)", "-t", "probe", "-m", "1"]))?.status == 0
        }, "mosquitto did not start")
        if subscriber == nil {
            subscriber = try ChildProcess("/usr/bin/mosquitto_sub", [
                "-p", "\(port)", "-c", "-i", "central-consumer", "-q", "1", "-t", "halls/#", "-F", "%p",
            ])
        }
    }

    func stop() async throws {
        let broker = try #require(broker)
        broker.process.terminate()
        _ = try await broker.wait(timeout: .seconds(10))
        self.broker = nil
    }

    /// Distinct ratings the consumer received, as (source, deviceCounter); MQTT may deliver one twice.
    var ratings: [(source: String, number: Int)] {
        var seen: Set<String> = []
        return (subscriber?.output ?? "").split(separator: "\n").compactMap { line in
            guard let event = try? CloudEvent.decode(json: Data(line.utf8)), case .rating(let rating) = event.data,
                  seen.insert(event.source + " " + event.id).inserted else { return nil }
            return (event.source, Int(rating.deviceCounter ?? -1))
        }
    }

    func shutdown() {
        for child in [subscriber, broker].compactMap({ $0 }) where child.process.isRunning {
            kill(child.process.processIdentifier, SIGKILL)
        }
    }
}

/// The promise of the gateway, tried the hard way: killed at random, its store down, its disk full.
/// Long forms: `scripts/delivery-soak.sh`.
@Suite(.serialized) struct DeliveryGuaranteeTests {
    static let environment = ProcessInfo.processInfo.environment
    static let kills = Int(environment["HALL_GATEWAY_SOAK_KILLS"] ?? "") ?? 20
    static let outage = Duration.seconds(Int(environment["HALL_GATEWAY_SOAK_OUTAGE_SECONDS"] ?? "") ?? 20)

    func writeConfiguration(_ hall: PressingHall, sinks: String, folder: TemporaryDirectory,
                            stateDirectory: String? = nil) throws -> String {
        let path = folder.file("hall.yaml")
        try """
            hall: {id: soak-hall}
            state-directory: \(stateDirectory ?? folder.file("state"))
            profiles: \(profilesDirectory)
            heartbeat-seconds: 1
            \(hall.configuration)
            sinks:
            \(sinks)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func killedAtRandomWhileThePadsArePressedEveryRatingReachesPostgreSQLOnce() async throws {
        let folder = try TemporaryDirectory()
        let postgres = try await PrivatePostgres(in: folder)
        let hall = try PressingHall(padCount: 4)
        let config = try writeConfiguration(hall, sinks: try postgres.sink(table: "hall_events", folder: folder),
                                            folder: folder)
        let citizens = hall.startPressing(every: .milliseconds(40))
        var logs: [String] = []
        for round in 1...Self.kills {
            let gateway = try ChildProcess(gatewaydPath, ["run", "--config", config])
            let acknowledgedBefore = hall.acknowledgedTotal
            // Running for real, then killed at a random point of its life: after 1 to 8 ratings were committed
            // and acknowledged in it, wherever the poll/commit/forward cycle then stands.
            let acknowledgements = Int.random(in: 1...8)
            #expect(await eventually(timeout: .seconds(20)) {
                hall.acknowledgedTotal >= acknowledgedBefore + acknowledgements
            })
            kill(gateway.process.processIdentifier, SIGKILL)
            let result = try await gateway.wait()
            #expect(result.terminatedBySignal)
            logs.append(result.standardOutput)
            // A third of the kills take PostgreSQL down and up too.
            if round % 3 == 0 {
                try await postgres.stop()
                try await postgres.start()
            }
        }
        hall.stopPressing()
        await citizens.value
        let last = try ChildProcess(gatewaydPath, ["run", "--config", config])
        // Running before anything is judged: when the killed ones had drained everything already, the interrupt
        // below could otherwise come before the daemon handles it, and end it by the signal (status 2).
        #expect(await eventually(timeout: .seconds(20)) { last.output.contains("gateway for hall soak-hall") })
        let expected = hall.total
        let outbox = try Outbox.openForReading(path: folder.file("state/outbox.sqlite"))
        let drained = await eventually(timeout: .seconds(60)) {
            guard hall.acknowledgedTotal == expected else { return false }
            return (try? await outbox.backlog(sink: "central")) == 0
        }
        last.interrupt()
        let final = try await last.wait()
        #expect(drained, "\(final.standardOutput.suffix(3000))")
        #expect(final.status == 0)
        let tally = try await CentralTally(postgres, table: "hall_events")
        tally.expectMatches(hall.presses, "\(Self.kills) kills, \(expected) presses")
        await postgres.remove()
        hall.server.stop()
    }

    @Test func everyStoreDownForAWhileGetsTheWholeBacklogOnceItIsBack() async throws {
        let folder = try TemporaryDirectory()
        let postgres = try await PrivatePostgres(in: folder)
        let receiver = try await ReceiverStore(folder: folder)
        let broker = try await BrokerStore()
        defer { broker.shutdown() }
        try await receiver.start()
        try await broker.start()
        let hall = try PressingHall(padCount: 4)
        let sinks = try postgres.sink(table: "hall_events", folder: folder) + """

              - {type: http, name: haocha, url: "http://127.0.0.1:\(receiver.port)/events", \
            token-file: \(folder.file("receiver.token")), timeout-ms: 3000, max-retry-delay-ms: 2000}
              - {type: mqtt, name: broker, host: 127.0.0.1, port: \(broker.port), timeout-ms: 3000, max-retry-delay-ms: 2000}
            """
        let config = try writeConfiguration(hall, sinks: sinks, folder: folder)
        let gateway = try ChildProcess(gatewaydPath, ["run", "--config", config])
        let citizens = hall.startPressing(every: .milliseconds(40))
        #expect(await eventually { await postgres.rowCount("hall_events") ?? 0 > 0 && !broker.ratings.isEmpty })
        try await postgres.stop()
        try await receiver.stop()
        try await broker.stop()
        let pressedBeforeOutage = hall.total
        // The outage itself, counted in the hall's work: as many ratings as 25 a second for its length,
        // pressed, committed and acknowledged with every store down.
        let outageRatings = Int(Self.outage.components.seconds) * 25
        #expect(await eventually(timeout: Self.outage * 3) {
            hall.acknowledgedTotal >= pressedBeforeOutage + outageRatings
        })
        let outbox = try Outbox.openForReading(path: folder.file("state/outbox.sqlite"))
        let backlogs = try await outbox.sinkReports(["central", "haocha", "broker"]).map(\.backlog)
        #expect(backlogs.allSatisfy { $0 > 0 }, "events wait in the outbox for each store: \(backlogs)")
        #expect(hall.total > pressedBeforeOutage && hall.acknowledgedTotal > pressedBeforeOutage,
                "the pads are still read and acknowledged: the hall does not notice the outage")
        try await postgres.start()
        try await receiver.start()
        try await broker.start()
        hall.stopPressing()
        await citizens.value
        let expected = hall.total
        let drained = await eventually(timeout: .seconds(60)) {
            guard hall.acknowledgedTotal == expected else { return false }
            return (try? await outbox.sinkReports(["central", "haocha", "broker"]).map(\.backlog)) == [0, 0, 0]
        }
        #expect(drained)
        #expect(await eventually { broker.ratings.count >= expected }, "the MQTT consumer got every rating")
        gateway.interrupt()
        let result = try await gateway.wait()
        #expect(result.status == 0)
        for sink in ["central", "haocha", "broker"] {
            #expect(result.standardOutput.contains("sink \(sink): delivery failed"))
            #expect(result.standardOutput.contains("sink \(sink): delivering again"))
        }
        let tally = try await CentralTally(postgres, table: "hall_events")
        #expect(tally.lost.isEmpty, "nothing may be lost to a store outage: \(tally.lost)")
        tally.expectMatches(hall.presses, "outage of \(Self.outage), backlogs \(backlogs)")
        for (store, ratings) in [("http", try await receiver.ratings()), ("mqtt", broker.ratings)] {
            for (index, presses) in hall.presses.enumerated() {
                let numbers = ratings.filter { $0.source.hasSuffix("/eval-w\(index + 1)") }.map(\.number)
                #expect(numbers.sorted() == Array(1...presses), "\(store) store, pad \(index + 1): each rating once")
            }
        }
        try await receiver.stop()
        await postgres.remove()
        hall.server.stop()
    }

    @Test func aFullDiskAcknowledgesNothingThenEveryRatingHeldIsStoredAndEveryLossIsExact() async throws {
        let folder = try TemporaryDirectory()
        let state = folder.file("state")
        let disk = try await SmallDisk(at: state)
        defer { disk.unmount() }
        let hall = try PressingHall(padCount: 4)
        let config = try writeConfiguration(
            hall, sinks: "  - {type: sqlite, path: \(folder.file("events.sqlite"))}", folder: folder, stateDirectory: state)
        let gateway = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        let citizens = hall.startPressing(every: .milliseconds(25))
        #expect(await eventually { hall.acknowledgedTotal > 10 })
        let api = try #require(await eventually { CLITests.apiURL(gateway) != nil } ? CLITests.apiURL(gateway) : nil)
        let token = try String(contentsOfFile: state + "/api-token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        /// What monitoring sees: the gauge of events waiting in memory for the outbox.
        func uncommitted() async -> Double? {
            var request = HTTPClientRequest(url: api + "/metrics")
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(10)),
                  response.status == .ok, let body = try? await response.body.collect(upTo: 1 << 22),
                  let line = String(buffer: body).split(separator: "\n")
                      .first(where: { $0.hasPrefix("hall_gateway_events_uncommitted ") })
            else { return nil }
            return Double(line.split(separator: " ").last ?? "")
        }

        try await disk.fill()
        let refused = await eventually { gateway.output.contains("outbox commit failed") }
        #expect(refused, "the outbox must have hit the full disk")
        let acknowledgedWhenFull = hall.pads.map(\.acknowledged)
        // A busy hall meanwhile, and one pad pressed 40 times at once: more than its ring of 16 between two polls.
        hall.press(pad: 0, times: 40)
        let pressedWhileFull = hall.total
        #expect(await eventually { hall.total >= pressedWhileFull + 100 })
        #expect(hall.pads.map(\.acknowledged) == acknowledgedWhenFull, "nothing acknowledged while nothing commits")
        // Once a second, a heartbeat the outbox refuses: it waits in memory like what the buses read.
        #expect(await eventually { gateway.output.contains("outbox: cannot commit hall.gateway.heartbeat") })
        // Said once, not once a poll cycle: the disk stays full for seconds here, a minute before it is said again.
        let refusals = gateway.output.split(separator: "\n").filter { $0.contains("outbox commit failed") }
        #expect(refusals.count == 1, "\(refusals.count) lines: \(refusals.prefix(3))")
        #expect(await eventually { (await uncommitted() ?? 0) > 10 }, "events wait in memory, and /metrics says so")
        // The technician's first command says it above the devices, all of which answer.
        let status = try await run(gatewaydPath, ["status", "--config", config, "--api", api])
        #expect(status.status == 1, "\(status.standardOutput)\(status.standardError)")
        #expect(status.standardOutput.contains("the gateway is NOT READY: the outbox cannot be written"),
                "\(status.standardOutput)")
        // The outbox's own status says so too (from an operator's trial: it looked healthy, exit 0).
        let outboxStatus = try await run(gatewaydPath, ["outbox", "status", "--config", config])
        #expect(outboxStatus.status == 1, "\(outboxStatus.standardOutput)\(outboxStatus.standardError)")
        #expect(outboxStatus.standardOutput.contains("the disk holding the outbox is FULL"), "\(outboxStatus.standardOutput)")
        // A check asked for now fails for the outbox; its event is not claimed reported while it waits in memory.
        let check = try await run(gatewaydPath, ["check", "--config", config, "--api", api])
        #expect(check.status == 1, "\(check.standardOutput)\(check.standardError)")
        let waitingLine = "to be reported to the sinks as event "
        let waiting = try #require(check.standardOutput.split(separator: "\n").last { $0.hasPrefix(waitingLine) },
                                   "\(check.standardOutput)")
        #expect(waiting.hasSuffix(": it waits in memory until the outbox takes writes again"))
        let checkEvent = String(waiting.dropFirst(waitingLine.count).prefix { $0 != ":" })
        // Asked again, the same verdict: it waits as the earlier event (from a trial: "reported already" was said while
        // that event waited in memory, and a kill then lost it).
        let again = try await run(gatewaydPath, ["check", "--config", config, "--api", api])
        #expect(again.standardOutput.contains("\n\(waitingLine)\(checkEvent): it waits in memory"), "\(again.standardOutput)")

        try disk.free()
        let freed = ContinuousClock.now
        let resumed = await eventually(timeout: .seconds(10)) {
            zip(hall.pads.map(\.acknowledged), acknowledgedWhenFull).contains { $0 != $1 }
        }
        let resumedAfter = ContinuousClock.now - freed
        #expect(resumed, "commits resume by themselves once space returns")
        #expect(resumedAfter < .seconds(5), "within seconds: \(resumedAfter)")
        hall.stopPressing()
        await citizens.value
        let expected = hall.total
        #expect(await eventually(timeout: .seconds(30)) { hall.acknowledgedTotal == expected })
        #expect(await eventually(timeout: .seconds(30)) {
            (try? await Outbox.openForReading(path: state + "/outbox.sqlite").backlog(sink: "sqlite")) == 0
        })
        #expect(await eventually { await uncommitted() == 0 })
        gateway.interrupt()
        let result = try await gateway.wait()
        #expect(result.status == 0)
        #expect(result.standardOutput.contains("the outbox takes commits again"))
        #expect(result.standardOutput.contains("gateway stopped; everything read is committed"))

        let store = try SQLiteEventStore.openForReading(path: folder.file("events.sqlite"))
        #expect(try await store.events(types: [HallEventType.deviceCheck], limit: 100).contains { $0.id == checkEvent },
                "the check's event reached the store once the disk had room")
        // The heartbeats of the full disk's seconds are there too: none missing from the first to the last.
        let beats = try await store.events(types: [HallEventType.gatewayHeartbeat], limit: 100_000)
            .compactMap { Int($0.id.split(separator: "-").last ?? "") }.sorted()
        #expect(!beats.isEmpty && beats == Array(1...(beats.last ?? 0)), "\(beats)")
        let stored = try await ratings(in: store)
        let faults = try await eventData(store, type: HallEventType.deviceFault) { data -> DeviceFault? in
            if case .deviceFault(let fault) = data, fault.fault == "ratings-lost" { fault } else { nil }
        }
        for (index, presses) in hall.presses.enumerated() {
            let source = "/halls/soak-hall/devices/eval-w\(index + 1)"
            let numbers = stored.filter { $0.event.source == source }.compactMap(\.rating.deviceCounter)
            #expect(Set(numbers).count == numbers.count, "pad \(index + 1): a rating stored twice")
            let lost = presses - numbers.count
            #expect(numbers.allSatisfy { (1...Int64(presses)).contains($0) })
            if index == 0 {
                #expect(lost >= 24, "40 presses at once on a ring of 16: at least 24 cannot be kept, \(lost) were")
            }
        }
        let reportedLost = faults.reduce(0) { $0 + Int($1.count ?? 0) }
        #expect(reportedLost == expected - stored.count,
                "reported lost \(reportedLost) = pressed \(expected) − stored \(stored.count), exactly")
        #expect(faults.allSatisfy { $0.detail.contains("between two polls") }, "\(faults.map(\.detail))")
        hall.server.stop()
    }
}
