import DeviceGateway
import Foundation
import Glibc
import Logging
import MockDevices
import Testing

/// The PostgreSQL sink against the real PostgreSQL of `scripts/test-services.sh`, looked at with psql as
/// the central store's administrator would. Each test has a table of its own.
@Suite struct PostgresSinkTests {
    let folder: TemporaryDirectory
    let central: CentralDatabase

    init() throws {
        folder = try TemporaryDirectory()
        central = try CentralDatabase(folder: folder)
    }

    @Test func theTableIsCreatedOnTheFirstDelivery() async throws {
        let table = CentralDatabase.uniqueTable()
        #expect(try await central.value("SELECT to_regclass('\(table)') IS NULL") == "t")
        let sink = try central.sink(table: table)
        try await sink.deliver(outbound([rating(1)]))
        await sink.shutdown()

        #expect(try await central.value("SELECT count(*) FROM \(table)") == "1")
        #expect(try await central.value("SELECT version FROM hall_gateway_schema WHERE table_name = '\(table)'") == "1")
        #expect(try await central.value("SELECT to_regclass('\(table)_gaps') IS NOT NULL") == "t")
        let indexes = try await central.rows("SELECT indexname FROM pg_indexes WHERE tablename = '\(table)' ORDER BY 1")
        #expect(indexes.map(\.[0]) == ["\(table)_hall_time", "\(table)_pkey", "\(table)_time"])
    }

    @Test func gatewaysStartingTogetherCreateTheTableOnce() async throws {
        let table = CentralDatabase.uniqueTable()
        let sinks = try (1...12).map { _ in try central.sink(table: table) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, sink) in sinks.enumerated() {
                group.addTask { try await sink.deliver(outbound([rating(1, pad: "pad-\(index)")])) }
            }
            try await group.waitForAll()
        }
        for sink in sinks { await sink.shutdown() }
        #expect(try await central.value("SELECT count(*) FROM \(table)") == "12")
        #expect(try await central.value("SELECT count(*) FROM hall_gateway_schema WHERE table_name = '\(table)'") == "1")
    }

    @Test func eventsAreStoredWithTheirColumns() async throws {
        let table = CentralDatabase.uniqueTable()
        let sink = try central.sink(table: table)
        let rated = rating(7, pad: "pad-3", level: 4, time: Date(timeIntervalSince1970: 1_780_000_000.125))
        let offline = CloudEvent(
            id: "offline-1", source: "/halls/hall-9/devices/pad-3", type: HallEventType.deviceOffline,
            time: Date(timeIntervalSince1970: 1_780_000_060), subject: nil,
            data: .deviceStatus(DeviceStatusChanged(device: "pad-3", bus: "rs485-1", address: 3, reason: "no answer")))
        let batch = try outbound([rated, offline])
        try await sink.deliver(batch)
        await sink.shutdown()

        let rows = try await central.rows("""
            SELECT source, id, type, to_char("time" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                   coalesce(subject, '<none>'), sequence, hall, event->'data'->>'level',
                   received_at > now() - interval '5 minutes'
            FROM \(table) ORDER BY sequence
            """)
        #expect(rows == [
            ["/halls/hall-9/devices/pad-3", rated.id, "hall.rating.submitted", rated.time, "window/3", "1", "hall-9",
             "4", "t"],
            ["/halls/hall-9/devices/pad-3", "offline-1", "hall.device.offline", offline.time, "<none>", "2", "hall-9",
             "", "t"],
        ])
        // The jsonb column holds the whole event, the outbox's sequence included.
        let stored = try await central.rows("SELECT event::text FROM \(table) ORDER BY sequence").map {
            try CloudEvent.decode(json: Data($0[0].utf8))
        }
        #expect(stored == batch.map { try? CloudEvent.decode(json: Data($0.json.utf8)) })
    }

    @Test func aBatchReplayedThreeTimesChangesNoRow() async throws {
        let table = CentralDatabase.uniqueTable()
        let sink = try central.sink(table: table)
        let batch = try outbound((1...50).map { rating($0) })
        try await sink.deliver(batch)
        let fingerprint = "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY source, id)) FROM \(table) AS t"
        let before = try await central.rows(fingerprint)
        for _ in 1...3 { try await sink.deliver(batch) }
        // A replay overlapping new events stores only the new ones.
        try await sink.deliver(Array(batch[40...]) + (try outbound((51...60).map { rating($0) })).map { event in
            var event = event
            event.sequence += 50
            return event
        })
        await sink.shutdown()

        #expect(before[0][0] == "50")
        #expect(try await central.rows("SELECT count(*), md5(string_agg(t::text, ',' ORDER BY source, id)) "
            + "FROM \(table) AS t WHERE sequence <= 50") == before, "received_at and every column untouched")
        #expect(try await central.value("SELECT count(*) FROM \(table)") == "60")
    }

    @Test func aGapInSequencesShowsInTheGapView() async throws {
        let table = CentralDatabase.uniqueTable()
        let sink = try central.sink(table: table)
        var events: [CloudEvent] = []
        for (pad, sequences) in [("pad-1", [1, 2, 3, 6, 7, 10]), ("pad-2", [1, 2, 3]), ("pad-3", [3, 4])] {
            for sequence in sequences {
                var event = rating(sequence, pad: pad)
                event.sequence = CloudEvent.sequenceString(Int64(sequence))
                events.append(event)
            }
        }
        try await sink.deliver(outbound(events))
        await sink.shutdown()

        let gaps = try await central.rows(
            "SELECT hall, source, first_missing, last_missing, missing FROM \(table)_gaps ORDER BY source, first_missing")
        #expect(gaps == [
            ["hall-9", "/halls/hall-9/devices/pad-1", "4", "5", "2"],
            ["hall-9", "/halls/hall-9/devices/pad-1", "8", "9", "2"],
            ["hall-9", "/halls/hall-9/devices/pad-3", "1", "2", "2"],
        ])
        // The gap query of docs/central-store.md finds the same for the hall.
        let documented = try central.documentedQuery("gaps-of-a-hall", table: table)
        #expect(try await central.rows(documented).map { Array($0[0...3]) } == [
            ["/halls/hall-9/devices/pad-1", "4", "5", "2"],
            ["/halls/hall-9/devices/pad-1", "8", "9", "2"],
            ["/halls/hall-9/devices/pad-3", "1", "2", "2"],
        ])
    }

    @Test func theDocumentedSatisfactionQueryCountsTodayPerWindow() async throws {
        let table = CentralDatabase.uniqueTable()
        let sink = try central.sink(table: table)
        let now = Date()
        // Window 1: 5, 4, 3, 1 → 2 of 4 satisfied; window 2: 5, 5 → 2 of 2; two days ago does not count.
        let events = [
            rating(1, pad: "pad-1", level: 5, time: now), rating(2, pad: "pad-1", level: 4, time: now),
            rating(3, pad: "pad-1", level: 3, time: now), rating(4, pad: "pad-1", level: 1, time: now),
            rating(1, pad: "pad-2", level: 5, time: now), rating(2, pad: "pad-2", level: 5, time: now),
            rating(3, pad: "pad-2", level: 1, time: now.addingTimeInterval(-2 * 86_400)),
        ]
        try await sink.deliver(outbound(events))
        await sink.shutdown()

        let rows = try await central.rows(try central.documentedQuery("satisfaction-today", table: table))
        #expect(rows == [["hall-9", "1", "4", "2", "50.0"], ["hall-9", "2", "2", "2", "100.0"]])
    }

    @Test func theDocumentedPerStaffQueryCountsThisMonthsRatingsOfEachStaffMember() async throws {
        let table = CentralDatabase.uniqueTable()
        let sink = try central.sink(table: table)
        let now = Date()
        // 0231 at two windows: 5, 4, 2 → 2 of 3 satisfied, 1 差评; 0105: 3, 1; a pad that showed nobody: 5;
        // 0231's rating 40 days ago (last month) does not count.
        let events = [
            rating(1, pad: "pad-1", level: 5, time: now, staff: "0231"), rating(2, pad: "pad-1", level: 4, time: now, staff: "0231"),
            rating(1, pad: "pad-2", level: 2, time: now, staff: "0231"), rating(2, pad: "pad-2", level: 3, time: now, staff: "0105"),
            rating(3, pad: "pad-2", level: 1, time: now, staff: "0105"), rating(1, pad: "pad-3", level: 5, time: now, staff: ""),
            rating(3, pad: "pad-1", level: 1, time: now.addingTimeInterval(-40 * 86_400), staff: "0231"),
        ]
        try await sink.deliver(outbound(events))
        await sink.shutdown()

        let rows = try await central.rows(try central.documentedQuery("satisfaction-by-staff", table: table))
        #expect(rows == [
            ["hall-9", "(none shown)", "1", "1", "0", "100.0"],
            ["hall-9", "0105", "2", "0", "1", "0.0"],
            ["hall-9", "0231", "3", "2", "1", "66.7"],
        ])
    }

    @Test func aDataErrorIsRejectedAndOnlyThatEventIsPutAside() async throws {
        let table = CentralDatabase.uniqueTable()
        let sink = try central.sink(table: table)
        var broken = rating(50)
        broken.time = "the third of May"
        let error = try await #require(throws: SinkError.self) { try await sink.deliver(outbound([broken])) }
        #expect(error.code == .rejected)
        #expect(error.message.hasPrefix("postgres \(central.endpoint): refused the events:"), "\(error.message)")
        #expect(error.message.contains("SQLSTATE 22007"), "\(error.message)")

        // Through the forwarder: the batch is split until the one bad event is alone, the rest is stored.
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        try await outbox.commit((1...9).map { $0 == 5 ? broken : rating($0) })
        let config = SinkConfig(name: sink.name, kind: .postgres(try central.config(table: table)), batchSize: 100)
        try await Forwarder(outbox: outbox, sink: sink, config: config, logger: CapturedLog().logger).drain()
        await sink.shutdown()
        #expect(try await central.value("SELECT count(*) FROM \(table)") == "8")
        #expect(try await outbox.putAsideEvents(sink: sink.name).map(\.id) == [broken.id])
        #expect(try await outbox.backlog(sink: sink.name) == 0)
    }

    @Test func aRefusalNamesTheConstraintWithoutCopyingTheEvent() async throws {
        let table = CentralDatabase.uniqueTable()
        let sink = try central.sink(table: table)
        try await sink.deliver(outbound([rating(1)]))
        // The store's own rule, added by its administrator after the table was made.
        _ = try await central.rows("ALTER TABLE \(table) ADD CONSTRAINT no_level_one CHECK (event #>> '{data,level}' IS DISTINCT FROM '1')")
        let error = try await #require(throws: SinkError.self) {
            try await sink.deliver(outbound([rating(2, level: 1)]))
        }
        await sink.shutdown()
        #expect(error.code == .rejected)
        #expect(error.message.contains("violates check constraint \"no_level_one\""), "\(error.message)")
        #expect(error.message.contains("SQLSTATE 23514"), "\(error.message)")
        // PostgreSQL's detail would repeat the whole row: reasons and logs keep to what broke.
        #expect(!error.message.contains("Failing row"), "\(error.message)")
        #expect(error.message.count < 300, "\(error.message)")
    }

    @Test func aHostNameThatCannotBeResolvedIsSaidInWords() async throws {
        // From a docs trial: NIO's type dump ("SocketAddressError.UnknownHost: … (error -2) for host …, port 5432").
        let sink = try PostgresSink(
            name: "central", config: PostgresSinkConfig(host: "central.invalid", database: "central", user: "gateway",
                                                        timeout: .seconds(5)),
            hallId: "hall-9", logger: CapturedLog().logger)
        let error = try await #require(throws: SinkError.self) { try await sink.deliver(outbound([rating(1)])) }
        await sink.shutdown()
        #expect(error.message.hasPrefix("postgres central.invalid:5432/central: cannot resolve central.invalid: "),
                "\(error.message)")
        #expect(!error.message.contains("SocketAddressError") && !error.message.contains("(error -"), "\(error.message)")
    }

    @Test func aStoppedServerIsUnavailableWithinTheTimeoutAndDeliveryResumesAfterItsRestart() async throws {
        // A cluster of this test's own: stopping the shared one would take it away from the other suites.
        let services = try #require(ProcessInfo.processInfo.environment["HALL_TEST_SERVICES"])
        let cluster = folder.file("private-postgres")
        let created = try await run(services, ["pg-private", cluster])
        try #require(created.status == 0, "pg-private: \(created.standardError)")
        let outcome: Result<Void, any Error>
        do {
            let url = created.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
            try await stopAndStart(CentralDatabase(url: url, folder: folder), services: services,
                                   data: cluster + "/pgdata")
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        _ = try? await run(services, ["pg-private-remove", cluster])
        try outcome.get()
    }

    private func stopAndStart(_ central: CentralDatabase, services: String, data: String) async throws {
        let table = CentralDatabase.uniqueTable()
        let sink = try central.sink(table: table, timeout: .seconds(3))
        try await sink.deliver(outbound([rating(1)]))

        let stop = try await run(services, ["pg-stop", data])
        try #require(stop.status == 0, "pg-stop: \(stop.standardError)")
        let started = ContinuousClock.now
        let error = try await #require(throws: SinkError.self) { try await sink.deliver(outbound([rating(2)])) }
        let elapsed = started.duration(to: .now)
        #expect(error.code == .unavailable)
        #expect(elapsed < .seconds(3) + schedulingSlack, "bounded by the 3 s timeout: \(elapsed)")
        // The pooled connection is gone and the pool retries quietly: the probe beside it names the cause.
        #expect(error.message == "postgres \(central.endpoint): connection refused")

        let start = try await run(services, ["pg-start", data])
        try #require(start.status == 0, "pg-start: \(start.standardError)")
        try await sink.deliver(outbound([rating(2)]))
        await sink.shutdown()
        #expect(try await central.value("SELECT count(*) FROM \(table)") == "2")
    }

    @Test func verifyFullTrustsOnlyTheGivenCAAndShowsTheClientCertificate() async throws {
        let services = try #require(ProcessInfo.processInfo.environment["HALL_TEST_SERVICES"])
        let certificates = folder.file("certs")
        let made = try await run("/usr/bin/env", ["python3", repositoryRoot + "/scripts/make_test_certs.py", certificates])
        try #require(made.status == 0, "make_test_certs.py: \(made.standardError)")
        let cluster = folder.file("private-tls-postgres")
        let created = try await run(services, ["pg-private", cluster])
        try #require(created.status == 0, "pg-private: \(created.standardError)")
        let outcome: Result<Void, any Error>
        do {
            let url = created.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
            try await checkTLS(url: url, cluster: cluster, certificates: certificates, services: services)
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        _ = try? await run(services, ["pg-private-remove", cluster])
        try outcome.get()
    }

    /// Turns the cluster into one that accepts only TLS with a client certificate of the test CA, then delivers.
    private func checkTLS(url: String, cluster: String, certificates: String, services: String) async throws {
        let data = cluster + "/pgdata"
        let owner = try FileManager.default.attributesOfItem(atPath: data)[.ownerAccountID]
        for file in ["server.pem", "server.key", "ca.pem"] {
            try FileManager.default.copyItem(atPath: certificates + "/" + file, toPath: data + "/" + file)
            // The server reads its key only when it owns it and nobody else may read it.
            try FileManager.default.setAttributes(
                [.ownerAccountID: owner as Any, .posixPermissions: 0o600], ofItemAtPath: data + "/" + file)
        }
        let settings = "\nssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.pem'\n"
        let handle = try #require(FileHandle(forWritingAtPath: data + "/postgresql.conf"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(settings.utf8))
        try handle.close()
        // TCP only over TLS, with a certificate of the CA and the password.
        let rules = try String(contentsOfFile: data + "/pg_hba.conf", encoding: .utf8).split(separator: "\n")
            .map { $0.hasPrefix("host ") ? "hostssl " + $0.dropFirst(5) + " clientcert=verify-ca" : String($0) }
        try (rules.joined(separator: "\n") + "\n").write(toFile: data + "/pg_hba.conf", atomically: false, encoding: .utf8)
        for command in ["pg-stop", "pg-start"] {
            let result = try await run(services, [command, data])
            try #require(result.status == 0, "\(command): \(result.standardError)")
        }

        let central = try CentralDatabase(url: url, folder: folder, socketFolder: cluster + "/pgsocket")
        let table = CentralDatabase.uniqueTable()
        func sink(_ mode: PostgresSinkConfig.TLSMode, _ tls: TLSSettings) throws -> PostgresSink {
            var config = try central.config(table: table, timeout: .seconds(5))
            config.tlsMode = mode
            config.tls = tls
            return try PostgresSink(name: "central", config: config, hallId: "hall-9", logger: CapturedLog().logger)
        }
        let trusted = TLSSettings(caFile: certificates + "/ca.pem", certificateFile: certificates + "/client.pem",
                                  keyFile: certificates + "/client.key")
        let verified = try sink(.verifyFull, trusted)
        try await verified.deliver(outbound([rating(1)]))
        // The pool's connection, still open, as the server sees it.
        let seen = try await central.rows("""
            SELECT s.ssl, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'gateway'
            """)
        #expect(seen.count == 1 && seen[0][0] == "t", "\(seen)")
        #expect(seen.first?.last?.contains("hall gateway test-hall") == true, "\(seen)")
        await verified.shutdown()

        let failures: [(PostgresSinkConfig.TLSMode, TLSSettings, String)] = [
            (.verifyFull, TLSSettings(caFile: certificates + "/self-signed.pem", certificateFile: certificates
                                      + "/client.pem", keyFile: certificates + "/client.key"),
             "TLS: the server's certificate did not verify"),
            (.verifyFull, TLSSettings(caFile: certificates + "/ca.pem"), "requires a valid client certificate"),
            (.disable, TLSSettings(), "no encryption"),
        ]
        for (mode, tls, reason) in failures {
            let refused = try sink(mode, tls)
            let error = try await #require(throws: SinkError.self) { try await refused.deliver(outbound([rating(2)])) }
            await refused.shutdown()
            #expect(error.code == .unavailable)
            #expect(error.message.hasPrefix("postgres \(central.endpoint): "), "\(error.message)")
            #expect(error.message.contains(reason), "\(error.message)")
        }
        #expect(try await central.value("SELECT count(*) FROM \(table)") == "1")
    }

    @Test func aTablePartitionedByHandIsUsedAsItIs() async throws {
        let table = CentralDatabase.uniqueTable()
        _ = try await central.rows(try central.documentedQuery("partitioned-table", table: table))
        let sink = try central.sink(table: table)
        let batch = try outbound((1...40).map { rating($0, pad: "pad-\($0 % 8)") })
        try await sink.deliver(batch)
        try await sink.deliver(batch)
        await sink.shutdown()

        #expect(try await central.value("SELECT count(*) FROM \(table)") == "40")
        #expect(try await central.value("SELECT count(DISTINCT tableoid) > 1 FROM \(table)") == "t")
        #expect(try await central.value("SELECT count(*) FROM pg_inherits WHERE inhparent = '\(table)'::regclass") == "32")
        #expect(try await central.value("SELECT relkind FROM pg_class WHERE relname = '\(table)_hall_time'") == "I",
                "the migration added the indexes to every partition")
        // Numbered 1…40 across the pads: pad-1 has 1, 9, 17, 25, 33, so four gaps.
        #expect(try await central.value(
            "SELECT count(*) FROM \(table)_gaps WHERE source = '/halls/hall-9/devices/pad-1'") == "4")
    }

    @Test func aRoleWithOnlyTheDocumentedGrantsDeliversToWhatTheOwnerSetUpAsTheGatewayWouldHave() async throws {
        // The integrator's trial: the documented grants alone failed with "permission denied for schema public".
        let table = CentralDatabase.uniqueTable()
        let role = "gateway_\(UInt32.random(in: 0...UInt32.max))"
        let password = "pw-\(UInt64.random(in: 0...UInt64.max))"
        let script = try ["the-table", "gaps-view", "least-privilege"]
            .map { try central.documentedQuery($0, table: table) }.joined(separator: "\n")
            .replacingOccurrences(of: "gateway_hall_0571", with: role)
            .replacingOccurrences(of: "change-me", with: password)
        _ = try await central.rows(script)
        let passwordFile = folder.file("\(role)-password")
        try password.write(toFile: passwordFile, atomically: true, encoding: .utf8)
        var config = try central.config(table: table)
        config.user = role
        config.passwordFile = passwordFile
        let sink = try PostgresSink(name: "central", config: config, hallId: "hall-9", logger: CapturedLog().logger)
        try await sink.deliver(outbound([rating(1), rating(2)]))
        try await sink.deliver(outbound([rating(2), rating(3)]))
        await sink.shutdown()
        #expect(try await central.value("SELECT count(*) FROM \(table)") == "3")

        // What the owner set up from the docs is what the gateway creates itself.
        let created = CentralDatabase.uniqueTable()
        let creating = try central.sink(table: created)
        try await creating.deliver(outbound([rating(1)]))
        await creating.shutdown()
        func layout(_ table: String) async throws -> [String] {
            let columns = try await central.rows("""
                SELECT column_name, data_type, is_nullable, coalesce(column_default, '') FROM information_schema.columns
                WHERE table_name = '\(table)' ORDER BY ordinal_position
                """).map { $0.joined(separator: " ") }
            let indexes = try await central.rows(
                "SELECT indexdef FROM pg_indexes WHERE tablename = '\(table)' ORDER BY indexname").map(\.[0])
            let view = try await central.rows("SELECT pg_get_viewdef('\(table)_gaps')").map { $0.joined() }
            return (columns + indexes + view).map { $0.replacingOccurrences(of: table, with: "T") }
        }
        #expect(try await layout(table) == layout(created))
        _ = try await central.rows("""
            DROP TABLE \(table) CASCADE; REVOKE ALL ON hall_gateway_schema FROM \(role); DROP ROLE \(role)
            """)
    }

    @Test func aPasswordChangedOnTheServerAndInItsFileIsTakenWithoutARestart() async throws {
        // From an operator's trial: after a rotation the sink kept failing with the old password until a restart.
        let table = CentralDatabase.uniqueTable()
        let role = "gateway_\(UInt32.random(in: 0...UInt32.max))"
        let script = try ["the-table", "gaps-view", "least-privilege"]
            .map { try central.documentedQuery($0, table: table) }.joined(separator: "\n")
            .replacingOccurrences(of: "gateway_hall_0571", with: role)
            .replacingOccurrences(of: "change-me", with: "first-password")
        _ = try await central.rows(script)
        let passwordFile = folder.file("\(role)-password")
        try "first-password\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        var config = try central.config(table: table)
        config.user = role
        config.passwordFile = passwordFile
        let log = CapturedLog()
        let sink = try PostgresSink(name: "central", config: config, hallId: "hall-9", logger: log.logger)
        try await sink.deliver(outbound([rating(1)]))

        // The administrator changes it on the server; the gateway's sessions end (a restart of the server, or their
        // idle timeout: the sink's own shutdown closes them here, as the test's role may not end other sessions).
        _ = try await central.rows("ALTER ROLE \(role) PASSWORD 'second-password'")
        await sink.shutdown()
        let refused = await #expect(throws: SinkError.self) { try await sink.deliver(outbound([rating(2)])) }
        #expect(refused?.message.contains("password authentication failed") == true, "\(String(describing: refused))")
        // Then in the file, as the README says: the next delivery takes it.
        try "second-password\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        try await sink.deliver(outbound([rating(2), rating(3)]))
        await sink.shutdown()
        #expect(try await central.value("SELECT count(*) FROM \(table)") == "3")
        #expect(log.text.contains("the password file \(passwordFile) changed: the new password is used"), "\(log.text)")
        _ = try await central.rows("""
            DROP TABLE \(table) CASCADE; REVOKE ALL ON hall_gateway_schema FROM \(role); DROP ROLE \(role)
            """)
    }

    @Test func aStopWhileTheStoreTakesABatchLetsTheBatchFinish() async throws {
        // The trial: one stop in three cut the last batch ("connection pool closed while the batch was sent"): the
        // pool ran under the gateway's graceful shutdown and closed at its first moment.
        let table = CentralDatabase.uniqueTable()
        let creating = try central.sink(table: table)
        try await creating.deliver(outbound([rating(1)]))
        await creating.shutdown()
        // A store that takes two seconds over every batch.
        _ = try await central.rows("""
            CREATE FUNCTION \(table)_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;
            CREATE TRIGGER \(table)_slow BEFORE INSERT ON \(table) FOR EACH STATEMENT EXECUTE FUNCTION \(table)_slow();
            """)
        let server = try MockModbusServer.rtu(units: [4: MockModbusEvaluator(staffId: "0104")])
        defer { server.stop() }
        let config = try CLITests.hallFile(folder, """
            buses:
              - {id: line-a, transport: modbus-rtu, port: \(try #require(server.endpoint.devicePath))}
            devices:
              - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "4"}
            sinks:
              - {type: postgres, name: central, host: \(central.host), port: \(central.port), database: \(central.database), \
            user: \(central.user), password-file: \(central.passwordFile), table: \(table), timeout-ms: 10000}
            """)
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        let inserting = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'INSERT INTO \(table) %'"
        try #require(await eventually(timeout: .seconds(15)) { (try? await central.value(inserting)) == "1" },
                     "a batch under way: \(daemon.output)")
        daemon.interrupt()
        let stopped = try await daemon.wait(timeout: .seconds(30))
        #expect(stopped.status == 0, "\(stopped.standardOutput)")
        #expect(!stopped.standardOutput.contains("delivery failed"), "\(stopped.standardOutput)")
        let outbox = try Outbox.openForReading(path: folder.file("state/outbox.sqlite"))
        #expect(try await outbox.backlog(sink: "central") == 0, "everything went before the stop ended")
    }

    @Test func theDocumentedRetentionDeletesOnlyOldEvents() async throws {
        let table = CentralDatabase.uniqueTable()
        let sink = try central.sink(table: table)
        let old = Date().addingTimeInterval(-4 * 365 * 86_400)
        try await sink.deliver(outbound([rating(1, time: old), rating(2, time: old), rating(3)]))
        await sink.shutdown()
        _ = try await central.rows(try central.documentedQuery("retention", table: table))
        #expect(try await central.rows("SELECT id FROM \(table)") == [["rating-beef-3"]])
    }

    @Test func aServerThatNeverAnswersCostsTheTimeoutNotMore() async throws {
        let silent = try SilentListener()
        let config = PostgresSinkConfig(
            host: "127.0.0.1", port: silent.port, database: "central", user: "gateway", table: "hall_events",
            timeout: .seconds(1))
        let sink = try PostgresSink(name: "central", config: config, hallId: "hall-9", logger: CapturedLog().logger)
        let started = ContinuousClock.now
        let error = try await #require(throws: SinkError.self) { try await sink.deliver(outbound([rating(1)])) }
        let elapsed = started.duration(to: .now)
        await sink.shutdown()
        #expect(error.code == .unavailable)
        // The deadline or the connection's own timeout, whichever fires first, both at 1 s.
        #expect(error.message.hasPrefix("postgres 127.0.0.1:\(silent.port)/central: no answer"), "\(error.message)")
        #expect(error.message.hasSuffix("within 1 s"), "\(error.message)")
        #expect(elapsed < .seconds(1) + schedulingSlack)
    }

    @Test func aStatementThatWaitsPastTheTimeoutIsUnavailableAfterTheTimeout() async throws {
        let table = CentralDatabase.uniqueTable()
        // The table is made by a sink with time to spare: on a loaded machine the first delivery may take a while.
        let maker = try central.sink(table: table, timeout: .seconds(30))
        try await maker.deliver(outbound([rating(1)]))
        await maker.shutdown()
        let sink = try central.sink(table: table, timeout: .seconds(2))
        // Another session holds the table for 30 s: the INSERT waits, the server answers nothing meanwhile.
        let holder = try ChildProcess("/usr/bin/psql", [
            central.url, "-X", "-q", "-c", "BEGIN", "-c", "LOCK TABLE \(table) IN ACCESS EXCLUSIVE MODE",
            "-c", "SELECT pg_sleep(30)",
        ])
        let locked = "SELECT count(*) FROM pg_locks WHERE relation = '\(table)'::regclass AND granted"
        let releaseLock = "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE relation = '\(table)'::regclass"
            + " AND mode = 'AccessExclusiveLock' AND granted"
        let outcome: Result<(SinkError, Duration), any Error>
        do {
            try #require(try await eventually { try await central.value(locked) == "1" }, "psql took the lock")
            let started = ContinuousClock.now
            let error = try await #require(throws: SinkError.self) { try await sink.deliver(outbound([rating(2)])) }
            outcome = .success((error, started.duration(to: .now)))
        } catch {
            outcome = .failure(error)
        }
        _ = try await central.rows(releaseLock)
        _ = try await holder.wait(timeout: .seconds(10))

        let (error, elapsed) = try outcome.get()
        #expect(error.code == .unavailable)
        #expect(error.message == "postgres \(central.endpoint): no answer within 2 s")
        #expect(elapsed >= .seconds(2) && elapsed < .seconds(2) + schedulingSlack, "\(elapsed)")
        // The waiting connection was dropped with its pool; a fresh one delivers.
        try await sink.deliver(outbound([rating(2)]))
        await sink.shutdown()
        #expect(try await central.value("SELECT count(*) FROM \(table)") == "2")
    }

    @Test func aDroppedTableIsCreatedAgain() async throws {
        let table = CentralDatabase.uniqueTable()
        let sink = try central.sink(table: table)
        try await sink.deliver(outbound([rating(1)]))
        _ = try await central.rows("DROP TABLE \(table) CASCADE")

        let error = try await #require(throws: SinkError.self) { try await sink.deliver(outbound([rating(2)])) }
        #expect(error.code == .unavailable, "nothing is wrong with the events")
        #expect(error.message.contains("\(table)\" does not exist"), "\(error.message)")
        try await sink.deliver(outbound([rating(2)]))
        await sink.shutdown()
        #expect(try await central.value("SELECT count(*) FROM \(table)") == "1")
        #expect(try await central.value("SELECT to_regclass('\(table)_gaps') IS NOT NULL") == "t")
    }

    @Test func anUnreadablePasswordFileFailsAtStartWithItsPath() throws {
        var config = try central.config(table: "hall_events")
        config.passwordFile = folder.file("missing-password")
        let error = try #require(throws: SinkError.self) {
            try PostgresSink(name: "central", config: config, hallId: "hall-9", logger: CapturedLog().logger)
        }
        #expect(error.message == "postgres \(central.endpoint): cannot read the password file \(folder.file("missing-password")): no such file")
    }

    @Test func aDrainedOutboxIsInTheStoreOnce() async throws {
        let table = CentralDatabase.uniqueTable()
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        for first in stride(from: 1, through: 2_500, by: 500) {
            try await outbox.commit((first..<first + 500).map { rating($0, pad: "pad-\($0 % 4)") })
        }
        let sink = try central.sink(table: table)
        let config = SinkConfig(name: sink.name, kind: .postgres(try central.config(table: table)), batchSize: 1_000)
        let forwarder = Forwarder(outbox: outbox, sink: sink, config: config, logger: CapturedLog().logger)
        #expect(try await forwarder.drain() == 2_500)
        // A crash before the cursor moved: the last batch is delivered again.
        try await sink.deliver(try await outbox.entries(after: 2_000, limit: 1_000))
        await sink.shutdown()

        #expect(try await outbox.backlog(sink: sink.name) == 0)
        #expect(try await central.rows("SELECT count(*), count(DISTINCT (source, id)) FROM \(table)") == [["2500", "2500"]])
        #expect(try await central.value("SELECT count(*) FROM \(table)_gaps") == "0")
    }

    /// A rating from a pad of hall-9; the pad's window is the number after "pad-".
    /// `staff`: the staff id the pad showed; nil for the pad's own default (S0 and its window), "" for none.
    func rating(_ counter: Int, pad: String = "pad-1", level: Int = 5, time: Date = Date(), staff: String? = nil) -> CloudEvent {
        let window = String(pad.split(separator: "-").last ?? "1")
        let staffId = staff.map { $0.isEmpty ? nil : $0 } ?? "S0\(window)"
        let labels = [1: "非常不满意", 2: "不满意", 3: "基本满意", 4: "满意", 5: "非常满意"]
        return CloudEvent(
            id: "rating-beef-\(counter)", source: "/halls/hall-9/devices/\(pad)", type: HallEventType.ratingSubmitted,
            time: time, subject: "window/\(window)",
            data: .rating(RatingSubmitted(window: window, staffId: staffId, level: level,
                                          levelLabel: labels[level]!, key: level, keyLabel: labels[level]!,
                                          scale: "five-level", deviceCounter: Int64(counter))))
    }
}

/// What a timing bound allows beyond the sink's timeout: other suites running in parallel may hold the two
/// threads of the concurrency pool for a while.
/// A hang would be the 30 s the lock is held, or forever.
let schedulingSlack = Duration.seconds(10)

/// The test services' PostgreSQL: its address from `HALL_TEST_POSTGRES_URL`, its password in a file as a
/// gateway's configuration has it (with the trailing newline an editor leaves).
struct CentralDatabase {
    let url: String
    let host: String
    let port: Int
    let user: String
    let database: String
    let passwordFile: String
    let socketFolder: String?

    var endpoint: String { "\(host):\(port)/\(database)" }

    /// The shared test server.
    init(folder: TemporaryDirectory) throws {
        try self.init(url: try #require(ProcessInfo.processInfo.environment["HALL_TEST_POSTGRES_URL"]), folder: folder)
    }

    /// With `socketFolder`, psql connects over that Unix socket as postgres (local trust): for a cluster whose
    /// TCP connections need a client certificate.
    init(url: String, folder: TemporaryDirectory, socketFolder: String? = nil) throws {
        self.url = url
        self.socketFolder = socketFolder
        let components = try #require(URLComponents(string: url))
        host = try #require(components.host)
        port = components.port ?? 5432
        user = try #require(components.user)
        database = String(components.path.dropFirst())
        passwordFile = folder.file("postgres-password-\(port)")
        try ((components.password ?? "") + "\n").write(toFile: passwordFile, atomically: true, encoding: .utf8)
    }

    /// A table name no other test uses.
    static func uniqueTable() -> String { "hall_events_\(UInt64.random(in: 0...UInt64.max) % 1_000_000_000_000)" }

    func config(table: String, timeout: Duration = .seconds(10)) throws -> PostgresSinkConfig {
        PostgresSinkConfig(host: host, port: port, database: database, user: user, passwordFile: passwordFile,
                           table: table, timeout: timeout)
    }

    func sink(table: String, timeout: Duration = .seconds(10)) throws -> PostgresSink {
        try PostgresSink(name: "central", config: config(table: table, timeout: timeout), hallId: "hall-9",
                         logger: CapturedLog().logger)
    }

    /// Runs SQL with psql; rows of `|`-separated fields.
    func rows(_ sql: String) async throws -> [[String]] {
        let target = socketFolder.map { ["-h", $0, "-p", "\(port)", "-U", "postgres", "-d", database] } ?? [url]
        let result = try await run("/usr/bin/psql", target + ["-X", "-q", "-t", "-A", "-F", "|", "-v", "ON_ERROR_STOP=1",
                                                             "-c", sql])
        try #require(result.status == 0, "psql: \(result.standardError)")
        return result.standardOutput.split(separator: "\n").map {
            $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        }
    }

    /// The single value a query returns.
    func value(_ sql: String) async throws -> String? { try await rows(sql).first?.first }

    /// The SQL block of docs/central-store.md that starts with `-- <name>`, on `table` instead of hall_events.
    func documentedQuery(_ name: String, table: String) throws -> String {
        let document = try String(contentsOfFile: repositoryRoot + "/docs/central-store.md", encoding: .utf8)
        let blocks = document.components(separatedBy: "```sql\n").dropFirst().map {
            $0.components(separatedBy: "```")[0]
        }
        let block = try #require(blocks.first { $0.hasPrefix("-- \(name)") }, "no SQL block '-- \(name)' in the docs")
        return block.replacingOccurrences(of: "hall_events", with: table)
            .replacingOccurrences(of: "'<hall>'", with: "'hall-9'")
    }
}

/// A TCP port that accepts connections and never answers: a hung server.
final class SilentListener: Sendable {
    let port: Int
    private let socketDescriptor: Int32

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(descriptor >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        let listening = bound == 0 && listen(descriptor, 16) == 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        socketDescriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
        try #require(listening, "cannot listen on 127.0.0.1")
    }

    deinit { close(socketDescriptor) }
}
