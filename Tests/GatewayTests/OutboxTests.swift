@testable import DeviceGateway
import Foundation
import MockDevices
import Testing

@Suite struct OutboxTests {
    let folder: TemporaryDirectory
    init() throws { folder = try TemporaryDirectory() }

    func rating(_ id: String, device: String = "eval-w01") -> CloudEvent {
        CloudEvent(
            id: id, source: "/halls/h/devices/\(device)", type: HallEventType.ratingSubmitted, time: Date(),
            subject: "window/1",
            data: .rating(RatingSubmitted(window: "1", staffId: "0101", level: 4, levelLabel: "满意", key: 1,
                                          keyLabel: "满意", scale: "three-key", deviceCounter: 1)))
    }

    @Test func aKnownIdIsNotInsertedAgainAndSequencesHaveNoGaps() async throws {
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        let first = try await outbox.commit([rating("a"), rating("b")])
        let again = try await outbox.commit([rating("b"), rating("c"), rating("x", device: "eval-w02")])
        #expect(first.map(\.sequence) == ["000000000001", "000000000002"])
        #expect(again.map(\.id) == ["c", "x"])
        #expect(again.map(\.sequence) == ["000000000003", "000000000001"], "sequences count per source")
        #expect(try await outbox.entries(after: 0, limit: 10).map(\.id) == ["a", "b", "c", "x"])
    }

    func ticket(_ id: String, _ number: String, detail: String?) -> CloudEvent {
        CloudEvent(
            id: id, source: "/halls/h/gateway", type: HallEventType.ticketIssued, time: Date(), subject: nil,
            data: .command(CommandExecuted(commandId: id, command: "issue-ticket", window: nil, ticket: number, service: "",
                                           result: "done", devices: [.init(device: "printer-1", result: "done", detail: detail)])))
    }

    @Test func aTicketsDraftIsCommittedAtTheNextStartOnlyWhenItsOwnEventNeverWas() async throws {
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        try await outbox.register(sinks: ["store"])
        // Printed and committed, no key: settled with the commit; then delivered and pruned.
        try await outbox.recordUnsettled(ticket("command-1", "A001", detail: "stopped"), key: nil, request: nil)
        try await outbox.commit([ticket("command-1", "A001", detail: nil)], settlingDrafts: true)
        // Committed, then killed before its key's result was kept: the result is taken from the event committed.
        try await outbox.recordUnsettled(ticket("key-2", "A002", detail: "stopped"), key: "k-2", request: "ticket prefix A")
        try await outbox.commit([ticket("key-2", "A002", detail: nil)], settlingDrafts: true)
        // Killed before its event: the draft is the event.
        try await outbox.recordUnsettled(ticket("key-3", "A003", detail: "stopped"), key: "k-3", request: "ticket prefix A")
        // Committed and its key's result kept: settled with the key.
        try await outbox.recordUnsettled(ticket("key-4", "A004", detail: "stopped"), key: "k-4", request: "ticket prefix A")
        try await outbox.commit([ticket("key-4", "A004", detail: nil)], settlingDrafts: true)
        try await outbox.recordCommandResult(key: "k-4", request: "ticket prefix A", json: "{}", at: Date())
        #expect(try outbox.unsettledCommands() == ["key-2", "key-3"])
        // Every event delivered and pruned: a settled draft must not come back as a new event.
        let delivered = try await outbox.entries(after: 0, limit: 10)
        try await outbox.markDelivered(sink: "store", through: try #require(delivered.last?.position), count: delivered.count)
        #expect(try await outbox.prune(now: Date().addingTimeInterval(8 * 24 * 3600)) == 3)

        let settled = try outbox.settleInterrupted()
        #expect(settled.committed.map(\.id) == ["key-3"] && settled.unreadable == 0)
        #expect(try outbox.unsettledCommands().isEmpty)
        #expect(try outbox.settleInterrupted().committed.isEmpty, "settled once")
        let committed = try await outbox.entries(after: 0, limit: 10)
        #expect(committed.map(\.id) == ["key-3"] && committed.first?.json.contains("stopped") == true, "\(committed)")
        let second = try #require(try await outbox.commandResult(key: "k-2"))
        #expect(second.request == "ticket prefix A" && second.result.contains(#""ticket":"A002""#) && !second.result.contains("stopped"))
        let third = try #require(try await outbox.commandResult(key: "k-3"))
        #expect(third.result.contains(#""ticket":"A003""#) && third.result.contains("stopped") && third.result.contains(#""status":"done""#))
        #expect(try await outbox.commandResult(key: "k-4")?.result == "{}", "a kept result stays as it was")
    }

    /// A box booted reading 2026-01-01, its clock set right by NTP an hour into the run: the keys of the tickets served
    /// under the wrong time get a day of real time; those of runs before keep theirs (yesterday's, kept under a right
    /// clock, and the last run's, its clock restored at the boot as it read then, as fake-hwclock does); a key recorded
    /// in the moment before the gateway saw the step is neither lost nor moved.
    @Test func aKeysDayOfRetriesIsADayOfRealTimeWhenNTPSetsAWrongClockForward() async throws {
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        let day: TimeInterval = 24 * 3600
        let rightNow = Date(timeIntervalSince1970: 1_796_000_000), wrongStart = Date(timeIntervalSince1970: 1_767_225_600)
        let clock = ManualHallClock(now: wrongStart + 3600)
        var watch = WallClockWatch(wall: wrongStart, monotonic: .now - .seconds(3600), now: { clock.now })
        let noStep = watch.step()
        #expect(noStep == nil, "an hour on both clocks")
        func keep(_ key: String, _ ticket: String, at time: Date) async throws {
            try await outbox.recordCommandResult(key: key, request: "ticket prefix A", json: #"{"ticket":"\#(ticket)"}"#,
                                                 at: time)
        }
        func kept() async throws -> [String] {
            var found: [String] = []
            for key in ["last-run", "before", "k-1", "k-2", "k-3", "k-4"] where try await outbox.commandResult(key: key) != nil { found.append(key) }
            return found
        }
        try await keep("before", "A001", at: rightNow - 20 * 3600)
        try await keep("last-run", "A099", at: wrongStart - 600)
        try await keep("k-1", "A002", at: wrongStart + 600)
        try await keep("k-2", "A003", at: wrongStart + 3000)
        // NTP sets it right; a keyed ticket is served before the gateway's loop sees the step.
        clock.advance(to: rightNow)
        #expect(abs(watch.earliestReading().timeIntervalSince(wrongStart + 3600)) < 60, "forgetting waits for the step")
        try await keep("k-3", "A004", at: rightNow)
        let seen = watch.step()
        let step = try #require(seen)
        #expect(abs(step.seconds - rightNow.timeIntervalSince(wrongStart + 3600)) < 60 && step.runStarted == wrongStart)
        try await outbox.clockWasSet(step)
        try await outbox.forgetCommandKeys(before: watch.earliestReading() - day)
        #expect(try await kept() == ["before", "k-1", "k-2", "k-3"])
        #expect(try await outbox.commandResult(key: "k-1")?.result == #"{"ticket":"A002"}"#, "a retry gets its ticket")
        // Five hours on, the run before's key is a day old; k-1 is a day old 50 minutes before the step (real time).
        try await outbox.forgetCommandKeys(before: rightNow + 5 * 3600 - day)
        #expect(try await kept() == ["k-1", "k-2", "k-3"])
        try await outbox.forgetCommandKeys(before: rightNow - 2999)
        #expect(try await kept() == ["k-2", "k-3"])
        // A technician sets it two days ahead by mistake: this run's keys go with it, none forgotten early.
        clock.advance(to: rightNow + 2 * day)
        let seenSecond = watch.step()
        let second = try #require(seenSecond)
        #expect(abs(second.runStarted.timeIntervalSince(rightNow - 3600)) < 60, "the run's start as the first step left it")
        try await outbox.clockWasSet(second)
        try await outbox.forgetCommandKeys(before: watch.earliestReading() - day)
        #expect(try await kept() == ["k-2", "k-3"])
        // Then a day back, a ticket, and a day forward again: the ticket's key goes with the clock too.
        clock.advance(to: rightNow + day)
        let seenBack = watch.step()
        let back = try #require(seenBack)
        try await outbox.clockWasSet(back)
        try await keep("k-4", "A005", at: clock.now)
        clock.advance(to: rightNow + 2 * day + 600)
        let seenForward = watch.step()
        try await outbox.clockWasSet(try #require(seenForward))
        try await outbox.forgetCommandKeys(before: watch.earliestReading() - day)
        #expect(try await kept() == ["k-2", "k-3", "k-4"])
    }

    /// Keys are forgotten by the gateway's minute; a start after a stop of days forgets those older than a day before
    /// anything looks them up (a held command's, a retry's).
    @Test func aStartForgetsTheKeysOlderThanADayBeforeAnyLookUp() async throws {
        let state = folder.file("state")
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        do {
            let outbox = try Outbox.open(path: state + "/outbox.sqlite", logger: CapturedLog().logger)
            try await outbox.recordCommandResult(key: "friday", request: "ticket prefix A", json: "{}", at: Date() - 3 * 24 * 3600)
            try await outbox.recordCommandResult(key: "this-morning", request: "ticket prefix A", json: "{}", at: Date() - 3600)
        }
        let (config, profiles) = try ConfigLoader.parse("""
            hall: {id: test-hall}
            state-directory: \(state)
            profiles: \(profilesDirectory)
            buses: []
            devices: []
            """, file: "test.yaml", relativeTo: folder.path)
        let gateway = try Gateway(config: config, profiles: profiles, logger: CapturedLog().logger)
        #expect(try await gateway.outbox.commandResult(key: "friday") == nil)
        #expect(try await gateway.outbox.commandResult(key: "this-morning") != nil)
    }

    @Test func theLastRecordedTimeIsTheLatestOfTheDeviceStatesAndTheDayChecksUntilAClockFoundRight() async throws {
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        #expect(try await outbox.lastRecordedTime() == nil, "a new outbox tells nothing")
        let states = [DeviceState(device: "eval-w01", bus: "line-a", online: true, lastSeen: nil)]
        _ = try await outbox.beginDayCheck(day: "2026-12-01", clock: ManualHallClock(now: Date(timeIntervalSince1970: 1_796_000_000)))
        try await outbox.recordDeviceStates(states, clock: ManualHallClock(now: Date(timeIntervalSince1970: 1_796_100_000)))
        #expect(try await outbox.lastRecordedTime() == Date(timeIntervalSince1970: 1_796_100_000))
        // Recorded again under a clock that is now behind (it rewrites the device's row): the latest stays the latest.
        try await outbox.recordDeviceStates(states, clock: ManualHallClock(now: Date(timeIntervalSince1970: 5)))
        #expect(try await outbox.lastRecordedTime() == Date(timeIntervalSince1970: 1_796_100_000))
        _ = try await outbox.beginDayCheck(day: "2026-12-02", clock: ManualHallClock(now: Date(timeIntervalSince1970: 1_796_200_000)))
        #expect(try await outbox.lastRecordedTime() == Date(timeIntervalSince1970: 1_796_200_000))
        // A clock found right (synchronised or set) lowers it: what a clock that ran ahead recorded holds no next start.
        try await outbox.resetRecordedTime(clock: ManualHallClock(now: Date(timeIntervalSince1970: 1_796_150_000)))
        #expect(try await Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger).lastRecordedTime()
                == Date(timeIntervalSince1970: 1_796_150_000))
    }

    @Test func eventsAndCursorsSurviveReopening() async throws {
        let path = folder.file("outbox.sqlite")
        do {
            let outbox = try Outbox.open(path: path, logger: CapturedLog().logger)
            try await outbox.commit([rating("a")], cursors: [DeviceCursor(device: "eval-w01", bootId: 0xDEADBEEF, consumed: 70_000)])
        }
        let reopened = try Outbox.open(path: path, logger: CapturedLog().logger)
        #expect(try await reopened.cursor(device: "eval-w01") == DeviceCursor(device: "eval-w01", bootId: 0xDEADBEEF, consumed: 70_000))
        #expect(try await reopened.backlog(sink: "local") == 1)
        try await reopened.markDelivered(sink: "local", through: 1, count: 1)
        #expect(try await reopened.backlog(sink: "local") == 0)
    }

    @Test func aDamagedOutboxIsMovedAsideReportedAndReplaced() async throws {
        let path = folder.file("outbox.sqlite")
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: path))
        let log = CapturedLog()
        let before = Date()
        let outbox = try Outbox.open(path: path, logger: log.logger)
        try await outbox.commit([rating("a")])
        let aside = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix("outbox.sqlite.damaged-") }
        try #require(aside.count == 1, "the damaged file is kept for inspection")
        // Named by when, in UTC, to the second.
        let when = try Date(String(aside[0].dropFirst("outbox.sqlite.damaged-".count)),
                            strategy: .iso8601.dateSeparator(.omitted).timeSeparator(.omitted))
        #expect(when >= before.addingTimeInterval(-1) && when <= Date(), "\(aside[0])")
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder.file(aside[0]))) == Data(repeating: 0x5A, count: 8192))
        #expect(log.text.contains("critical outbox \(path) is damaged"), "\(log.text)")
    }

    @Test func theEventStoreIgnoresARedeliveredBatchAndFilters() async throws {
        let store = try SQLiteEventStore(name: "local", path: folder.file("events.sqlite"))
        let offline = CloudEvent(
            id: "o1", source: "/halls/h/devices/eval-w01", type: HallEventType.deviceOffline, time: Date(), subject: nil,
            data: .deviceStatus(DeviceStatusChanged(device: "eval-w01", bus: "b", address: 1, reason: "no answer")))
        try await store.deliver(outbound([rating("a"), offline]))
        try await store.deliver(outbound([rating("a"), offline]))
        #expect(try await store.count() == 2)
        #expect(try await store.events(types: ["hall.device.*"]).map(\.id) == ["o1"])
        #expect(try await store.events(types: ["hall.rating.submitted"]).map(\.id) == ["a"])
        // Several: any of them (from a duty officer's trial, a second --type replaced the first).
        #expect(Set(try await store.events(types: ["hall.device.*", "hall.rating.submitted"]).map(\.id)) == ["o1", "a"])
        #expect(try await store.events(types: ["hall.printer.*", "hall.device.offline"]).map(\.id) == ["o1"])
        #expect(try await store.events(since: Date().addingTimeInterval(60)).isEmpty)
        #expect(try await store.events(limit: 1).count == 1)
    }
}

@Suite struct EvaluatorDriverTests {
    let driver: ModbusEvaluatorDriver

    init() throws {
        guard case .modbusEvaluator(let profile) = try ProfileLibrary(directory: profilesDirectory)
            .profile(named: "modbus-evaluator-3key")
        else { throw GatewayError(.profileMismatch, "not an evaluator") }
        driver = ModbusEvaluatorDriver(
            device: DeviceConfig(id: "eval-w03", profile: "modbus-evaluator-3key", bus: "b", address: 3, window: "3"),
            profile: profile, hallId: "h")
    }

    /// Registers as the pad would hold them after `keys` were pressed since power-up.
    func registers(bootId: UInt32, counter: UInt16, ring: [Int: UInt16], acknowledged: UInt16 = 0) -> [UInt16] {
        var registers = [UInt16](repeating: 0, count: 32)
        registers[0] = 0b11
        registers[1] = counter
        registers[3] = UInt16(bootId >> 16)
        registers[4] = UInt16(bootId & 0xFFFF)
        registers[5] = acknowledged
        registers.replaceSubrange(8..<10, with: [0x3033, 0x3033])  // "0303"
        for (slot, key) in ring { registers[16 + slot] = key }
        return registers
    }

    @Test func idsComeFromBootIdAndCounterSoAReReadIsTheSameEvent() throws {
        let regs = registers(bootId: 0xABCD0001, counter: 2, ring: [0: 1, 1: 3])
        let first = driver.interpret(registers: regs, cursor: nil, at: Date())
        let again = driver.interpret(registers: regs, cursor: nil, at: Date().addingTimeInterval(5))
        #expect(first.events.map(\.id) == ["rating-abcd0001-1", "rating-abcd0001-2"])
        #expect(again.events.map(\.id) == first.events.map(\.id))
        #expect(first.cursor == DeviceCursor(device: "eval-w03", bootId: 0xABCD0001, consumed: 2))
        let rating = try #require(first.events[1].data.rating)
        #expect(rating.level == 2 && rating.keyLabel == "不满意" && rating.staffId == "0303" && rating.window == "3")
    }

    @Test func aStaffIdThatIsNoStaffNumberIsLeftOutOfTheRatings() throws {
        // From a trial: a mobile number typed into a pad's staff field reached the events and the log.
        var regs = registers(bootId: 7, counter: 1, ring: [0: 3])
        let phone = Array("13812345678".utf8) + [0]
        regs.replaceSubrange(8..<14, with: stride(from: 0, to: 12, by: 2).map { UInt16(phone[$0]) << 8 | UInt16(phone[$0 + 1]) })
        let reading = driver.interpret(registers: regs, cursor: nil, at: Date())
        let rating = try #require(reading.events.first?.data.rating)
        #expect(rating.staffId == nil && rating.deviceCounter == 1)
        let refused = try #require(reading.staffIdRefused)
        #expect(refused.contains("mobile") && !refused.contains("138"), "\(refused)")
    }

    @Test func theCounterWrapsPast65535WithoutRepeatingIds() {
        let cursor = DeviceCursor(device: "eval-w03", bootId: 7, consumed: 65_535)
        let reading = driver.interpret(registers: registers(bootId: 7, counter: 1, ring: [15: 1, 0: 2]), cursor: cursor, at: Date())
        #expect(reading.events.map(\.id) == ["rating-7-65536", "rating-7-65537"])
        #expect(reading.cursor.consumed == 65_537)
    }

    @Test func aPowerCycledPadStartsFromItsAcknowledgement() {
        let cursor = DeviceCursor(device: "eval-w03", bootId: 7, consumed: 40)
        let reading = driver.interpret(registers: registers(bootId: 8, counter: 1, ring: [0: 2]), cursor: cursor, at: Date())
        #expect(reading.events.map(\.id) == ["rating-8-1"])
    }

    @Test func aPadPowerCycledWhileTheGatewayWasDownKeepsNoneOfItsNewRatingsBehindTheOldAcknowledgement() {
        // Acknowledged 3 before the power cycle; the register kept the 3; five ratings came before the first read.
        let cursor = DeviceCursor(device: "eval-w03", bootId: 7, consumed: 3)
        let reading = driver.interpret(
            registers: registers(bootId: 8, counter: 5, ring: [0: 1, 1: 1, 2: 1, 3: 1, 4: 1], acknowledged: 3),
            cursor: cursor, at: Date())
        #expect(reading.events.map(\.id) == (1...5).map { "rating-8-\($0)" })
        #expect(reading.lost == 0)
        let asMany = driver.interpret(
            registers: registers(bootId: 8, counter: 3, ring: [0: 1, 1: 2, 2: 3], acknowledged: 3), cursor: cursor, at: Date())
        #expect(asMany.events.map(\.id) == (1...3).map { "rating-8-\($0)" }, "as many new ratings as acknowledged before")
    }

    @Test func moreRatingsThanTheRingHoldsAreCountedAsLost() {
        let ring = Dictionary(uniqueKeysWithValues: (0..<16).map { ($0, UInt16(1)) })
        let cursor = DeviceCursor(device: "eval-w03", bootId: 7, consumed: 0)
        let reading = driver.interpret(registers: registers(bootId: 7, counter: 20, ring: ring), cursor: cursor, at: Date())
        #expect(reading.lost == 4)
        #expect(reading.events.count == 16)
        #expect(reading.events.first?.id == "rating-7-5")
    }

    @Test func aPadFirstMetAfterItsCounterWrappedYieldsEveryUnacknowledgedRating() {
        // Acknowledged 65,530, then 9 ratings: the counter wrapped to 3. Ratings 65,531…65,539 sit in slots 10…15, 0…2.
        let ring = Dictionary(uniqueKeysWithValues: (65_531...65_539).map { (($0 - 1) % 16, UInt16($0 % 3 + 1)) })
        let reading = driver.interpret(
            registers: registers(bootId: 9, counter: 3, ring: ring, acknowledged: 65_530), cursor: nil, at: Date())
        #expect(reading.events.map(\.id) == (65_531...65_539).map { "rating-9-\($0)" })
        #expect(reading.lost == 0 && reading.unknownKeys.isEmpty)
        #expect(reading.cursor.consumed == 65_539)
        #expect(UInt16(truncatingIfNeeded: reading.cursor.consumed) == 3, "the acknowledgement written back is the counter")
    }

    @Test func aPadRestartedWithItsOldBootIdYieldsItsNewRatingsUnderIdsOfTheirOwn() {
        let before = DeviceCursor(device: "eval-w03", bootId: 7, consumed: 40)
        let restarted = driver.interpret(
            registers: registers(bootId: 7, counter: 2, ring: [0: 1, 1: 3]), cursor: before, at: Date())
        #expect(restarted.restartedFrom == 40)
        #expect(restarted.events.map(\.id) == ["rating-7.1-1", "rating-7.1-2"], "not the ids of ratings 1 and 2 before")
        #expect(restarted.lost == 0 && restarted.unknownKeys.isEmpty, "no loss, no empty slot taken for a key")
        #expect(restarted.cursor == DeviceCursor(device: "eval-w03", bootId: 7, consumed: 2, restarts: 1))
        let next = driver.interpret(
            registers: registers(bootId: 7, counter: 3, ring: [0: 1, 1: 3, 2: 2], acknowledged: 2), cursor: restarted.cursor,
            at: Date())
        #expect(next.restartedFrom == nil, "reported once")
        #expect(next.events.map(\.id) == ["rating-7.1-3"])
        let staleAcknowledgement = driver.interpret(
            registers: registers(bootId: 7, counter: 1, ring: [0: 2], acknowledged: 40), cursor: before, at: Date())
        #expect(staleAcknowledgement.events.map(\.id) == ["rating-7.1-1"], "an acknowledgement above the new counter is stale")
    }

    @Test func ratingsAcknowledgedPastTheCursorAreTakenElsewhereNotLost() {
        // A state directory restored from a backup: its cursor is at 332, the pad acknowledged up to 351 for the
        // state that was lost, and has 360. From an operator's trial: 19 ratings were reported lost though stored.
        let ring = Dictionary(uniqueKeysWithValues: (0..<16).map { ($0, UInt16(1)) })
        let cursor = DeviceCursor(device: "eval-w03", bootId: 0xABCD0001, consumed: 332)
        let reading = driver.interpret(registers: registers(bootId: 0xABCD0001, counter: 360, ring: ring, acknowledged: 351),
                                       cursor: cursor, at: Date())
        // What the ring holds is read again (same ids: stored once); what it no longer holds was taken there.
        #expect(reading.events.map(\.id) == (345...360).map { "rating-abcd0001-\($0)" })
        #expect(reading.lost == 0)
        #expect(reading.acknowledgedElsewhere == 333...344)
        #expect(reading.cursor.consumed == 360)
        // A register left stale (an acknowledgement that was not written, a restart) keeps nothing from being read.
        let stale = driver.interpret(registers: registers(bootId: 0xABCD0001, counter: 336, ring: ring, acknowledged: 334),
                                     cursor: cursor, at: Date())
        #expect(stale.events.map(\.id) == (333...336).map { "rating-abcd0001-\($0)" })
        #expect(stale.acknowledgedElsewhere == nil && stale.lost == 0)
        // The usual case: the pad acknowledged what this cursor holds, nothing is said.
        let usual = driver.interpret(registers: registers(bootId: 0xABCD0001, counter: 360, ring: ring, acknowledged: 332),
                                     cursor: cursor, at: Date())
        #expect(usual.acknowledgedElsewhere == nil && usual.lost == 12 && usual.events.count == 16)
    }

    @Test func anUnmappedKeyIsReportedNotRated() {
        let reading = driver.interpret(registers: registers(bootId: 7, counter: 1, ring: [0: 9]), cursor: nil, at: Date())
        #expect(reading.events.isEmpty)
        #expect(reading.unknownKeys == [9])
        #expect(reading.cursor.consumed == 1)
    }
}

@Suite struct OutboxPruningTests {
    @Test func onlyEventsEverySinkConfirmedArePrunedAndOnlyPastTheRetention() async throws {
        let folder = try TemporaryDirectory()
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), policy: OutboxPolicy(retention: .seconds(3600)),
                                     logger: CapturedLog().logger)
        try await outbox.register(sinks: ["local", "central"])
        let events = (1...10).map { number in
            CloudEvent(id: "e\(number)", source: "/halls/h/devices/d", type: HallEventType.deviceOnline, time: Date(),
                       subject: nil, data: .deviceStatus(DeviceStatusChanged(device: "d", bus: "b", address: 1, reason: "")))
        }
        try await outbox.commit(events)
        try await outbox.markDelivered(sink: "local", through: 8, count: 8)
        try await outbox.markDelivered(sink: "central", through: 5, count: 5)
        #expect(try await outbox.prune() == 0, "within the retention every id is kept")
        let later = Date().addingTimeInterval(3601)
        #expect(try await outbox.prune(now: later) == 5, "only what both sinks confirmed")
        #expect(try await outbox.entries(after: 0, limit: 100).map(\.id) == ["e6", "e7", "e8", "e9", "e10"])
        #expect(try await outbox.commit([events[9]]).isEmpty, "a kept id is still recognised")
        try await outbox.register(sinks: ["local"])
        #expect(try await outbox.prune(now: later) == 3, "a sink taken out of the configuration holds nothing back")
    }

    @Test func aBacklogDueAtOnceIsPrunedInBatchesAndAllOfItGoes() async throws {
        let folder = try TemporaryDirectory()
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), policy: OutboxPolicy(retention: .seconds(3600)),
                                     logger: CapturedLog().logger)
        try await outbox.register(sinks: ["central"])
        let events = (1...25).map { number in
            CloudEvent(id: "e\(number)", source: "/halls/h/devices/d", type: HallEventType.deviceOnline, time: Date(),
                       subject: nil, data: .deviceStatus(DeviceStatusChanged(device: "d", bus: "b", address: 1, reason: "")))
        }
        try await outbox.commit(events)
        try await outbox.markDelivered(sink: "central", through: 22, count: 22)
        let later = Date().addingTimeInterval(3601)
        #expect(try await outbox.prune(now: later, batch: 4) == 22, "five full batches and a last one of two")
        #expect(try await outbox.entries(after: 0, limit: 100).map(\.id) == ["e23", "e24", "e25"])
        #expect(try await outbox.prune(now: later, batch: 4) == 0)
        #expect(try await outbox.count() == 3)
    }
}

@Suite struct LocalStoreRetentionTests {
    @Test func aLocalStoreKeepsEventsForItsRetentionByTheirTime() async throws {
        let folder = try TemporaryDirectory()
        let log = CapturedLog()
        let store = try SQLiteEventStore(name: "local", path: folder.file("events.sqlite"), retention: .seconds(30 * 86_400),
                                         clockIsRight: { true }, logger: log.logger)
        let now = Date()
        // Events a gateway delivers late (an outage) are judged by their own time, not by when they arrived.
        let events = [400, 31, 29, 0].map { days in
            CloudEvent(id: "\(days)-days-old", source: "/halls/h/devices/d", type: HallEventType.deviceOnline,
                       time: now.addingTimeInterval(-Double(days) * 86_400), subject: nil,
                       data: .deviceStatus(DeviceStatusChanged(device: "d", bus: "b", address: 1, reason: "")))
        }
        try await store.deliver(try outbound(events))
        // Once an hour, before a delivery: the second one deletes what the first brought.
        try await store.deliver([])
        #expect(try await store.events(limit: 100).map(\.id) == ["400-days-old", "31-days-old", "29-days-old", "0-days-old"],
                "within the hour")
        // The next start's first delivery.
        let restarted = try SQLiteEventStore(name: "local", path: folder.file("events.sqlite"), retention: .seconds(30 * 86_400),
                                             clockIsRight: { true }, logger: log.logger)
        try await restarted.deliver([])
        #expect(try await restarted.events(limit: 100).map(\.id) == ["29-days-old", "0-days-old"])
        #expect(log.text.contains("sink local: 2 events past its retention deleted from \(folder.file("events.sqlite"))"),
                "\(log.text)")
        #expect(try await restarted.prune(now: now.addingTimeInterval(2 * 86_400)) == 1, "29 days old is 31 two days later")
    }

    @Test func aClockNotSynchronisedDeletesNothing() async throws {
        // A clock set a year ahead would delete every event: retention waits for NTP.
        let folder = try TemporaryDirectory()
        let log = CapturedLog()
        let store = try SQLiteEventStore(name: "local", path: folder.file("events.sqlite"), retention: .seconds(86_400),
                                         clockIsRight: { false }, logger: log.logger)
        let old = CloudEvent(id: "old", source: "/halls/h/devices/d", type: HallEventType.deviceOnline,
                             time: Date().addingTimeInterval(-400 * 86_400), subject: nil,
                             data: .deviceStatus(DeviceStatusChanged(device: "d", bus: "b", address: 1, reason: "")))
        try await store.deliver(try outbound([old]))
        #expect(try await store.events(limit: 10).map(\.id) == ["old"])
        #expect(log.text.contains("sink local: its retention waits for a synchronised clock (NTP): nothing deleted"), "\(log.text)")
    }
}

@Suite struct ModbusConverterTests {
    /// A Modbus TCP converter answers for an RTU pad behind it that does not (exception 0B): the pad is silent, not
    /// refusing. From a trial: such a pad stayed online for ever, the check passed it and no offline event was made.
    @Test(arguments: [1, 4])
    func aPadTheConverterAnswersForIsOfflineWithTheConvertersWords(requestsInFlight: Int) async throws {
        let folder = try TemporaryDirectory()
        let converter = try MockModbusServer.tcp(units: [1: MockModbusEvaluator(staffId: "0101")], asConverter: true)
        defer { converter.stop() }
        // One request at a time, and pipelined: the batch's path tells the silent from the answered by itself.
        try await runningOnModbusTCP(
            converter, settings: "response-timeout-ms: 200, poll-interval-ms: 50, requests-in-flight: \(requestsInFlight)",
            devices: """
                  - {id: eval-w01, profile: modbus-evaluator-3key, bus: lan, address: 1, window: "1"}
                  - {id: eval-w09, profile: modbus-evaluator-3key, bus: lan, address: 9, window: "9"}
                """,
            folder: folder
        ) { gateway in
            #expect(await eventually {
                let states = await gateway.deviceStates()
                return states.first { $0.device == "eval-w09" }?.online == false
                    && states.first { $0.device == "eval-w01" }?.online == true
            })
            let missing = try #require(await gateway.deviceStates().first { $0.device == "eval-w09" })
            #expect(missing.counters.timeouts >= 3 && missing.counters.exceptions == 0, "\(missing.counters)")
            // The technician's probe says the same, not "answered".
            let probe = try DeviceProbe.run(device: "eval-w09", config: gateway.config,
                                            library: ProfileLibrary(directory: profilesDirectory))
            #expect(!probe.answered)
            #expect(probe.steps.first?.outcome.hasPrefix("no answer: the Modbus gateway answered for it") == true,
                    "\(probe.steps)")
        }
        let store = try SQLiteEventStore.openForReading(path: folder.file("events.sqlite"))
        let offline = try await eventData(store, type: HallEventType.deviceOffline) { data -> DeviceStatusChanged? in
            if case .deviceStatus(let status) = data { status } else { nil }
        }
        #expect(offline.map(\.device) == ["eval-w09"])
        #expect(offline.first?.reason.contains("the Modbus gateway answered for it, exception 11") == true, "\(offline)")
    }
}

extension ModbusConverterTests {
    @Test func aCommandToADeviceTheConverterAnswersForFailsWithTheConvertersWords() async throws {
        let folder = try TemporaryDirectory()
        let converter = try MockModbusServer.tcp(units: [1: MockModbusEvaluator(staffId: "0101")], asConverter: true)
        defer { converter.stop() }
        // Polled seldom: one miss, not yet offline, when the command comes.
        try await runningOnModbusTCP(
            converter, settings: "response-timeout-ms: 200, poll-interval-ms: 60000",
            devices: "  - {id: eval-w09, profile: modbus-evaluator-3key, bus: lan, address: 9, window: \"9\"}", folder: folder
        ) { gateway in
            #expect(await eventually { await gateway.deviceStates().first?.counters.timeouts == 1 })
            let error = await #expect(throws: GatewayError.self) { try await gateway.send(.setStaff("0909"), to: "eval-w09") }
            #expect(error?.message.contains("eval-w09: no answer to ") == true, "\(String(describing: error))")
            #expect(error?.message.contains(": the Modbus gateway answered for it, exception 11") == true,
                    "\(String(describing: error))")
        }
    }
}

@Suite struct PadRestartTests {
    /// A gateway polling `pad` at `unit` over Modbus TCP while `scenario` runs; then its local store's ratings and
    /// device faults.
    func run(_ pad: MockModbusEvaluator, unit: Int, _ scenario: () async -> Void) async throws
        -> (ratings: [(event: CloudEvent, rating: RatingSubmitted)], faults: [DeviceFault])
    {
        let folder = try TemporaryDirectory()
        let server = try MockModbusServer.tcp(units: [unit: pad])
        defer { server.stop() }
        try await runningOnModbusTCP(
            server, settings: "response-timeout-ms: 200, poll-interval-ms: 50",
            devices: "  - {id: eval-w0\(unit), profile: modbus-evaluator-3key, bus: lan, address: \(unit), window: \"\(unit)\"}",
            folder: folder) { _ in await scenario() }
        let store = try SQLiteEventStore.openForReading(path: folder.file("events.sqlite"))
        let faults = try await eventData(store, type: HallEventType.deviceFault) { data -> DeviceFault? in
            if case .deviceFault(let fault) = data { fault } else { nil }
        }
        return (try await ratings(in: store), faults)
    }

    @Test func aPadPowerCycledWithItsOldBootIdGivesItsNewRatingsAndOneRestartReport() async throws {
        let pad = MockModbusEvaluator(staffId: "0505", bootId: 0x5EED)
        let (stored, faults) = try await run(pad, unit: 5) {
            for _ in 0..<5 { pad.press(.satisfied) }
            #expect(await eventually { pad.acknowledged == 5 })
            pad.powerUp(bootId: 0x5EED)  // the same weak random boot id after a power cycle
            pad.press(.dissatisfied)
            pad.press(.basicallySatisfied)
            #expect(await eventually { pad.acknowledged == 2 })
        }
        #expect(stored.map(\.event.id) == (1...5).map { "rating-5eed-\($0)" } + ["rating-5eed.1-1", "rating-5eed.1-2"])
        #expect(stored.suffix(2).map(\.rating.level) == [2, 3])
        #expect(faults.map(\.fault) == ["counter-restarted"], "one restart report, no loss, no key faults: \(faults)")
    }

    @Test func aPadNewlyConfiguredSaysWhatItCouldNotKeepAsBeforeItsFirstRead() async throws {
        // From an operator's trial: the ratings a new pad no longer held were said lost to a stop or a restart.
        let pad = MockModbusEvaluator(staffId: "0707", bootId: 0x7007)
        pad.press(code: MockModbusEvaluator.Key.satisfied.rawValue, times: 20)
        let (stored, faults) = try await run(pad, unit: 7) {
            #expect(await eventually { pad.acknowledged == 20 })
        }
        #expect(stored.count == 16, "the ring's 16")
        #expect(faults.map(\.fault) == ["ratings-lost"] && faults.first?.count == 4, "\(faults)")
        #expect(faults.first?.detail.contains("before this gateway first read it") == true, "\(faults)")
    }

    @Test func aPadFirstMetAfterItsCounterWrappedGivesEveryUnacknowledgedRating() async throws {
        let pad = MockModbusEvaluator(staffId: "0606", bootId: 0xB007)
        // A long life before this gateway: 65,530 ratings acknowledged by another, then 11 more past the wrap.
        pad.press(code: MockModbusEvaluator.Key.satisfied.rawValue, times: 65_530)
        var registers = pad.registers
        registers[MockModbusEvaluator.Register.acknowledge] = 65_530
        pad.accept(writtenRegisters: registers)
        pad.press(code: MockModbusEvaluator.Key.dissatisfied.rawValue, times: 11)
        #expect(pad.counter == 5 && pad.acknowledged == 65_530)
        let (stored, faults) = try await run(pad, unit: 6) {
            #expect(await eventually { pad.acknowledged == 5 })
        }
        #expect(stored.map(\.rating.deviceCounter) == (65_531...65_541).map { Int64($0) })
        #expect(stored.allSatisfy { $0.rating.level == 2 })
        #expect(faults.isEmpty, "nothing lost, no key faults: \(faults)")
    }

    /// From a trial: each restart took a millisecond off when a board was sent its call (its time, read back from its
    /// milliseconds, was written as one less).
    @Test func aBoardsLastShownKeepsItsTimeToTheMillisecondThroughTheOutbox() async throws {
        let folder = try TemporaryDirectory()
        let outbox = try Outbox.open(path: folder.path + "/outbox.sqlite", logger: CapturedLog().logger)
        var state = DeviceState(device: "board-w05", bus: "line-a", online: true, lastSeen: nil)
        let sent = try #require(EventTime.parse("2026-12-02T02:00:00.005Z"))
        state.lastShown = ShownOnBoard(.call(ticket: "A007", window: "5"), templates: DisplayTemplates(), hallDaysText: false, at: sent)
        for _ in 0..<3 {
            try await outbox.recordDeviceStates([state], clock: SystemHallClock())
            state.lastShown = try #require(try await outbox.deviceStates().first?.state.lastShown)
        }
        #expect(state.lastShown.map { EventTime.format($0.at) } == "2026-12-02T02:00:00.005Z")
    }
}
