import DeviceGateway
import Foundation
import MockDevices
import Testing

/// The gatewayd process killed with SIGKILL around the commit of a rating, then started again.
@Suite struct CrashTests {
    let folder: TemporaryDirectory
    let pad = MockModbusEvaluator(staffId: "0420")
    let server: MockModbusServer
    let configPath: String

    init() throws {
        folder = try TemporaryDirectory()
        server = try .rtu(units: [3: pad])
        guard case .rtu(let port) = server.endpoint else { preconditionFailure("an RTU server has a device path") }
        configPath = folder.file("hall.yaml")
        try """
            hall: {id: crash-hall}
            state-directory: state
            profiles: \(profilesDirectory)
            buses:
              - {id: line-a, transport: modbus-rtu, port: \(port), response-timeout-ms: 200, poll-interval-ms: 50}
            devices:
              - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 3, window: "4"}
            sinks:
              - {type: sqlite, path: events.sqlite}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func storedRatings() async throws -> [RatingSubmitted] {
        guard FileManager.default.fileExists(atPath: folder.file("events.sqlite")) else { return [] }
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        return try await ratings(in: store).map(\.rating)
    }

    func runUntilKilled(at point: String) async throws {
        let child = try ChildProcess(gatewaydPath, ["run", "--config", configPath],
                                     environment: ["HALL_GATEWAY_CRASH_AT": point])
        let result = try await child.wait(timeout: .seconds(30))
        #expect(result.terminatedBySignal && result.status == SIGKILL, "the gateway should have been killed: \(result)")
    }

    /// Starts the gateway again, waits for `count` ratings, then stops it with SIGINT or SIGTERM.
    func restartAndCollect(expecting count: Int, stopWithTerminate: Bool = false) async throws -> ProcessResult {
        let child = try ChildProcess(gatewaydPath, ["run", "--config", configPath])
        let arrived = await eventually { (try? await storedRatings().count) ?? 0 >= count }
        // A few more poll cycles read the pad again: a duplicate would show up now.
        let answered = server.requestsAnswered
        #expect(await eventually { server.requestsAnswered >= answered + 5 })
        if stopWithTerminate { child.process.terminate() } else { child.interrupt() }
        let result = try await child.wait()
        #expect(arrived, "\(result.standardOutput)\n\(result.standardError)")
        return result
    }

    @Test func killedBetweenReadingAndCommittingTheRatingIsReadAgainAndStoredOnce() async throws {
        defer { server.stop() }
        pad.press(.dissatisfied)
        pad.press(.satisfied)
        try await runUntilKilled(at: "before-commit")
        #expect(try await storedRatings().isEmpty, "nothing was committed before the kill")
        #expect(pad.acknowledged == 0, "the pad must not be acknowledged before the commit")

        let result = try await restartAndCollect(expecting: 2)
        #expect(result.status == 0 && !result.terminatedBySignal, "SIGINT ends the gateway with status 0")
        let stored = try await storedRatings()
        #expect(stored.map(\.level) == [2, 4])
        #expect(stored.map(\.deviceCounter) == [1, 2])
        #expect(pad.acknowledged == 2)
    }

    @Test func killedAfterCommittingButBeforeAcknowledgingIsNotStoredTwice() async throws {
        defer { server.stop() }
        pad.press(.basicallySatisfied)
        try await runUntilKilled(at: "after-commit")
        #expect(pad.acknowledged == 0, "killed before the acknowledgement was written")

        pad.press(.satisfied)
        let result = try await restartAndCollect(expecting: 2, stopWithTerminate: true)
        #expect(result.status == 0 && !result.terminatedBySignal, "SIGTERM ends the gateway with status 0")
        let stored = try await storedRatings()
        #expect(stored.map(\.level) == [3, 4], "the re-read rating is recognised by its id")
        #expect(pad.acknowledged == 2)
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        let sequences = try await store.events(type: "hall.rating.submitted").compactMap(\.sequence)
        #expect(Set(sequences).count == 2, "each rating got one sequence number")
    }
}
