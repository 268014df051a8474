@testable import DeviceGateway
import Foundation
import Logging
import MockDevices
import Protocols
import Synchronization
import Testing

/// A Modbus TCP bus with several polls in flight (`requests-in-flight`): answers told apart by transaction id, in
/// virtual time over an in-memory line and against libmodbus's server over a real socket.
@Suite struct RequestsInFlightTests {
    let folder: TemporaryDirectory
    let outbox: Outbox

    init() throws {
        folder = try TemporaryDirectory()
        outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
    }

    /// Pads behind a simulated Modbus TCP endpoint: each answers after its own delay, so answers to requests sent
    /// together come back in another order than asked.
    final class Pads: Sendable {
        let units: [UInt8: MockModbusEvaluator]
        let answering: Mutex<Set<UInt8>>

        init(_ count: Int, silent: Set<UInt8> = []) {
            units = Dictionary(uniqueKeysWithValues: (1...UInt8(count)).map {
                ($0, MockModbusEvaluator(staffId: "S-\($0)", bootId: 0x1000 + UInt32($0)))
            })
            answering = Mutex(Set(units.keys).subtracting(silent))
        }

        /// The later the unit id, the sooner the answer.
        static func turnaround(of unit: UInt8) -> Duration { .milliseconds(20 - Int(unit)) }

        var responder: SimulatedLine.Responder {
            { [self] written, _ in
                var decoder = ModbusTCPDecoder(role: .server)
                return decoder.decode(written).compactMap { frame -> (after: Duration, bytes: [UInt8])? in
                    guard let pad = units[frame.unitId], answering.withLock({ $0.contains(frame.unitId) }),
                          case .request(let request) = frame.message, let response = pad.answer(request)
                    else { return nil }
                    let reply = ModbusTCPFrame(transactionId: frame.transactionId, unitId: frame.unitId, response: response)
                    return (Self.turnaround(of: frame.unitId), (try? reply.encode()) ?? [])
                }
            }
        }
    }

    func engine(_ line: SimulatedLine, pads: Int, inFlight: Int, responseTimeout: Duration = .milliseconds(50),
                logger: Logger = CapturedLog().logger) throws
        -> BusEngine<ModbusDriver>
    {
        guard case .modbusEvaluator(let profile) = try ProfileLibrary(directory: profilesDirectory)
            .profile(named: "modbus-evaluator-3key")
        else { throw GatewayError(.profileMismatch, "modbus-evaluator-3key is not a Modbus pad") }
        let devices = (1...pads).map {
            DeviceConfig(id: "eval-\($0)", profile: "modbus-evaluator-3key", bus: "lan", address: $0, window: "\($0)")
        }
        let config = BusConfig(id: "lan", transport: .modbusTCP(host: "simulated", port: 502),
                               responseTimeout: responseTimeout, pollInterval: .milliseconds(100),
                               requestsInFlight: inFlight)
        let driver = ModbusDriver(members: devices.map { ($0, .pad(profile)) }, framing: .tcp, hallId: "h",
                                  pollInterval: config.pollInterval, responseTimeout: config.responseTimeout)
        return BusEngine(config: config, opener: line, clock: line, timing: .instant, hallId: "h", driver: driver,
                         outbox: outbox, logger: logger, onCommit: { _ in })
    }

    /// The staff id of every rating in the outbox, by device.
    func ratingStaff() async throws -> [String: [String]] {
        var staff: [String: [String]] = [:]
        for event in try await outbox.entries(after: 0, limit: 10_000) where event.type == HallEventType.ratingSubmitted {
            let data = try #require(event.json.data(using: .utf8))
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let rating = try #require(object["data"] as? [String: Any])
            let device = try #require(event.source.split(separator: "/").last.map(String.init))
            staff[device, default: []].append(try #require(rating["staffId"] as? String))
        }
        return staff
    }

    @Test func answersInAnotherOrderGoToTheirOwnRequestsAndASilentPadCostsOneTimeout() async throws {
        let stop = StopSignal()
        let pads = Pads(8, silent: [8])
        for (unit, pad) in pads.units { for _ in 0..<Int(unit) { pad.press(.satisfied) } }
        let line = SimulatedLine(end: .seconds(5), stop: stop, responder: pads.responder)
        let bus = try engine(line, pads: 8, inFlight: 4)
        await bus.run(until: stop)

        // The first write carries the polls of the first four pads, before any answer.
        var decoder = ModbusTCPDecoder(role: .server)
        let first = try #require(line.written.first)
        #expect(decoder.decode(first.bytes).map(\.unitId) == [1, 2, 3, 4])
        #expect(line.log.dropFirst().first?.direction == .toGateway)

        // Unit 4 answered first, yet every pad's ratings carry its own staff id: matched by transaction id.
        let staff = try await ratingStaff()
        for unit in 1...7 {
            #expect(staff["eval-\(unit)"] == Array(repeating: "S-\(unit)", count: unit), "eval-\(unit)")
            let pad = try #require(pads.units[UInt8(unit)])
            #expect(pad.acknowledged == pad.counter, "eval-\(unit) acknowledged after the commit")
        }
        #expect(staff["eval-8"] == nil)

        let states = await bus.deviceStates()
        for state in states.prefix(7) {
            #expect(state.online == true)
            #expect(state.counters.timeouts == 0, "\(state.device) is not charged with its neighbour's silence")
            #expect(state.counters.transactions >= 20)
            // Each answer's latency is its own pad's turnaround, not that of the answer read before it.
            let unit = try #require(UInt8(state.device.dropFirst("eval-".count)))
            let latency = state.counters.latency
            #expect(latency.sumMilliseconds / Double(latency.count) == Double(Pads.turnaround(of: unit) / .milliseconds(1)),
                    "\(state.device)")
        }
        let silent = try #require(states.last)
        #expect(silent.online == false)
        #expect(silent.counters.timeouts >= 3 && silent.counters.transactions == 0)

        // The answering pads are polled every 100 ms; a round that waits for the silent pad adds its 50 ms timeout.
        let pollsOfUnit5 = line.written.flatMap { record -> [Duration] in
            var decoder = ModbusTCPDecoder(role: .server)
            return decoder.decode(record.bytes).filter { $0.unitId == 5 && $0.message.isRead }.map { _ in record.time }
        }
        let gaps = zip(pollsOfUnit5.dropFirst(), pollsOfUnit5).map { $0 - $1 }
        #expect(gaps.count >= 40)
        #expect(try #require(gaps.max()) <= .milliseconds(150), "\(gaps)")
    }

    @Test(arguments: [Set<UInt8>(), [1]])
    func aPeerThatAnswersOnlyTheFirstOfABurstIsPolledOneAtATime(silent: Set<UInt8>) async throws {
        let stop = StopSignal()
        let pads = Pads(4, silent: silent)
        for pad in pads.units.values { pad.press(.satisfied) }
        // Like pymodbus 3.8.6's server: of the requests that arrive together, only the first is answered.
        let line = SimulatedLine(end: .seconds(3), stop: stop) { written, time in
            var decoder = ModbusTCPDecoder(role: .server)
            guard let first = decoder.decode(written).first, let bytes = try? first.encode() else { return [] }
            return pads.responder(bytes, time)
        }
        let log = CapturedLog()
        let bus = try engine(line, pads: 4, inFlight: 4, logger: log.logger)
        await bus.run(until: stop)

        var decoder = ModbusTCPDecoder(role: .server)
        let burst = try #require(line.written.first)
        #expect(decoder.decode(burst.bytes).count == 4)
        #expect(line.written.dropFirst().allSatisfy { decoder.decode($0.bytes).count == 1 }, "one at a time after it")
        let warnings = log.text.split(separator: "\n").filter { $0.contains("answered only the first of 4 requests") }
        #expect(warnings.count == 1, "\(log.text)")
        let staff = try await ratingStaff()
        let answering = (1...4).filter { !silent.contains(UInt8($0)) }
        #expect(staff.keys.sorted() == answering.map { "eval-\($0)" }, "every pad that answers, even behind a silent first")
        #expect(staff.values.allSatisfy { $0.count == 1 })
        let states = await bus.deviceStates()
        #expect(states.map(\.online) == (1...4).map { !silent.contains(UInt8($0)) })
        if silent.isEmpty {
            #expect(states.map(\.counters.timeouts) == [0, 1, 1, 1], "the burst's three dropped requests")
        }
    }

    @Test func withOneInFlightEachPollWaitsForItsAnswer() async throws {
        let stop = StopSignal()
        let pads = Pads(4)
        let line = SimulatedLine(end: .seconds(1), stop: stop, responder: pads.responder)
        let bus = try engine(line, pads: 4, inFlight: 1)
        await bus.run(until: stop)

        var decoder = ModbusTCPDecoder(role: .server)
        #expect(line.written.allSatisfy { decoder.decode($0.bytes).count == 1 })
        let directions = line.log.map(\.direction)
        #expect(zip(directions, directions.dropFirst()).allSatisfy { $0 != $1 }, "request, answer, request, answer…")
    }

    /// One at a time on a connection to several pads: refusals counted for their pad, a silent pad back online, and
    /// the ratings in an answer read as the stop came committed and acknowledged.
    @Test func withOneInFlightEveryAnswerCountsUpToTheOneReadAsTheStopCame() async throws {
        let stop = StopSignal()
        let pads = Pads(4, silent: [3])
        for (unit, pad) in pads.units { for _ in 0..<Int(unit) { pad.press(.satisfied) } }
        let busyUnit: UInt8 = 2
        let busyFrom: Duration = .milliseconds(400), busyUntil: Duration = .milliseconds(600)
        let line = SimulatedLine(end: .milliseconds(2_110), stop: stop) { written, time in
            var decoder = ModbusTCPDecoder(role: .server)
            guard let frame = decoder.decode(written).first else { return [] }
            guard frame.unitId == busyUnit, time >= busyFrom, time < busyUntil, case .request(let request) = frame.message
            else { return pads.responder(written, time) }
            let refusal = ModbusTCPFrame(transactionId: frame.transactionId, unitId: frame.unitId,
                                         response: .exception(function: request.functionCode, code: .serverDeviceBusy))
            return [(after: .milliseconds(5), bytes: (try? refusal.encode()) ?? [])]
        }
        // Pad 3 comes back at 500 ms; pad 1 is rated again just before the poll whose answer arrives after the stop.
        line.at(.milliseconds(500)) { pads.answering.withLock { _ = $0.insert(3) } }
        line.at(.milliseconds(2_050)) { pads.units[1]?.press(.dissatisfied) }
        let log = CapturedLog()
        let bus = try engine(line, pads: 4, inFlight: 1, logger: log.logger)
        await bus.run(until: stop)

        let lastAnswer = try #require(line.log.last { $0.direction == .toGateway })
        var decoder = ModbusTCPDecoder(role: .server)
        let lastRequest = try #require(line.written.last { $0.time <= lastAnswer.time })
        #expect(decoder.decode(lastRequest.bytes).map(\.unitId) == [1])
        #expect(lastAnswer.time > .milliseconds(2_110),
                "the last answer came after the stop: \(line.log.suffix(6).map { ($0.time, $0.direction) })")

        let staff = try await ratingStaff()
        #expect(staff["eval-1"] == ["S-1", "S-1"], "the rating in the answer read as the stop came is committed")
        for unit in 2...4 { #expect(staff["eval-\(unit)"] == Array(repeating: "S-\(unit)", count: unit), "eval-\(unit)") }
        for (unit, pad) in pads.units { #expect(pad.acknowledged == pad.counter, "eval-\(unit) acknowledged after the commit") }

        let states = await bus.deviceStates()
        #expect(states.map(\.online) == [true, true, true, true], "pad 3 back online")
        #expect(states[Int(busyUnit) - 1].counters.timeouts == 0, "a refusal is an answer")
        // Said once while it lasted, and its end once.
        #expect(log.text.split(separator: "\n").filter { $0.contains("eval-2: poll refused: Modbus exception 6") }.count == 1,
                "\(log.text)")
        #expect(log.text.contains("eval-2: poll answered again (refused 2 times in a row)"), "\(log.text)")
        #expect(states.map(\.counters.exceptions) == [0, 2, 0, 0])
        let events = try await outbox.entries(after: 0, limit: 10_000)
        #expect(events.filter { $0.type == HallEventType.deviceOnline && $0.source.hasSuffix("/eval-3") }.count == 1)
    }

    /// The acknowledgement follows the commit of what the poll read, not the pause until the next poll.
    @Test func aRatingReadBeforeAPauseIsAcknowledgedAtOnce() async throws {
        let stop = StopSignal()
        let pads = Pads(1)
        let line = SimulatedLine(end: .seconds(1), stop: stop, responder: pads.responder)
        line.at(.milliseconds(250)) { pads.units[1]?.press(.satisfied) }
        let bus = try engine(line, pads: 1, inFlight: 1)
        await bus.run(until: stop)

        let acknowledgement = try #require(line.written.first { record in
            var decoder = ModbusTCPDecoder(role: .server)
            return decoder.decode(record.bytes).contains { !$0.message.isRead }
        })
        let answer = try #require(line.log.last { $0.direction == .toGateway && $0.time <= acknowledgement.time })
        #expect(acknowledgement.time == answer.time, "acknowledged at \(acknowledgement.time), read at \(answer.time)")
        #expect(try await ratingStaff()["eval-1"] == ["S-1"])
    }

    @Test func anAnswerSplitAcrossSegmentsComingApartIsStillOneAnswer() async throws {
        // A peer that writes the MBAP header and the PDU apart, the second segment retransmitted 80 ms later: on TCP
        // the frame's length says where it ends, and a pause is not the end of a frame as on a serial line.
        let stop = StopSignal()
        let pads = Pads(1)
        let line = SimulatedLine(end: .seconds(1), stop: stop) { written, time in
            pads.responder(written, time).flatMap { answer in
                [(after: .milliseconds(5), bytes: Array(answer.bytes.prefix(7))),
                 (after: .milliseconds(85), bytes: Array(answer.bytes.dropFirst(7)))]
            }
        }
        let bus = try engine(line, pads: 1, inFlight: 1, responseTimeout: .milliseconds(300))
        await bus.run(until: stop)

        let state = try #require(await bus.deviceStates().first)
        #expect(state.online == true)
        #expect(state.counters.transactions >= 5 && state.counters.timeouts == 0, "\(state.counters)")
        let lineGarbage = bus.lineCounters().garbageBytes
        #expect(state.counters.garbageBytes == 0 && lineGarbage == 0)
    }

    @Test(.timeLimit(.minutes(1))) func libmodbusServerAnswersPollsSentTogether() async throws {
        let pads = (1...8).map { MockModbusEvaluator(staffId: "0\($0)") }
        var units: [Int: any MockModbusUnit] = [:]
        for (index, pad) in pads.enumerated() { units[index + 1] = pad }
        let server = try MockModbusServer.tcp(units: units)
        defer { server.stop() }
        let port = try #require(server.endpoint.tcpPort)
        let yaml = configuration(port: port, pads: 8, bus: "requests-in-flight: 4, response-timeout-ms: 1000, poll-interval-ms: 20")
        let (config, profiles) = try ConfigLoader.parse(yaml, file: "test.yaml", relativeTo: folder.path)
        #expect(config.buses.first?.requestsInFlight == 4)
        let log = CapturedLog()
        let gateway = try Gateway(config: config, profiles: profiles, logger: log.logger)
        // How many requests each write of the bus carried, from the tap `gatewayd trace` reads.
        let burstSizes = Mutex<[Int]>([])
        let token = BusTap.shared.subscribe(outbox: gateway.outbox, bus: "lan") { record in
            var decoder = ModbusTCPDecoder(role: .server)
            if record.direction == .sent { burstSizes.withLock { $0.append(decoder.decode(record.bytes).count) } }
        }
        defer { BusTap.shared.unsubscribe(token) }
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        for (index, pad) in pads.enumerated() {
            pad.press(.satisfied)
            if index.isMultiple(of: 2) { pad.press(.dissatisfied) }
        }
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        let arrived = await eventually { (try? await ratings(in: store).count) == 12 }
        let acknowledged = await eventually { pads.allSatisfy { $0.acknowledged == $0.counter } }
        let states = await gateway.deviceStates()
        stop.stop()
        await running.value

        #expect(arrived && acknowledged, "log:\n\(log.text)")
        let stored = try await ratings(in: store)
        #expect(Set(stored.map(\.event.id)).count == 12, "each rating once")
        for (index, _) in pads.enumerated() {
            let mine = stored.filter { $0.event.source.hasSuffix("/eval-\(index + 1)") }
            #expect(mine.count == (index.isMultiple(of: 2) ? 2 : 1))
            #expect(mine.allSatisfy { $0.rating.staffId == "0\(index + 1)" })
        }
        #expect(states.allSatisfy { $0.online == true && $0.counters.timeouts == 0 && $0.counters.transactions > 0 })
        #expect(burstSizes.withLock { $0 }.contains(4), "polls went out four to a write")
        #expect(!log.text.contains("answered only the first"), "libmodbus answered every request of a burst")
    }
}

extension RequestsInFlightTests {
    /// The gateway's YAML for one modbus-tcp bus `lan` at 127.0.0.1:`port` with pads `eval-1`… at unit ids 1….
    func configuration(port: Int, pads: Int, bus: String) -> String {
        let devices = (1...pads).map {
            "  - {id: eval-\($0), profile: modbus-evaluator-3key, bus: lan, address: \($0), window: \"\($0)\"}"
        }
        return """
            hall: {id: test-hall, timezone: Asia/Shanghai}
            state-directory: \(folder.path)/state
            profiles: \(profilesDirectory)
            buses:
              - {id: lan, transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(port), \(bus)}
            devices:
            \(devices.joined(separator: "\n"))
            sinks:
              - {type: sqlite, path: \(folder.path)/events.sqlite}

            """
    }

    @Test(.timeLimit(.minutes(1))) func pymodbusServerDropsABurstAndTheBusGoesOnOneAtATime() async throws {
        let pads = (1...4).map { MockModbusEvaluator(staffId: "P-\($0)") }
        for (index, pad) in pads.enumerated() { for _ in 0...index { pad.press(.satisfied) } }
        // pymodbus holds the pads' registers as they are now; it stores the gateway's acknowledgements.
        var units: [String: [Int]] = [:]
        for (index, pad) in pads.enumerated() { units["\(index + 1)"] = pad.registers.map(Int.init) }
        let json = try #require(String(data: try JSONSerialization.data(withJSONObject: units), encoding: .utf8))
        let server = try PythonService("pymodbus_tcp_server.py", [json])
        defer { server.stop() }
        let port = try await server.port("port")

        let (config, profiles) = try ConfigLoader.parse(
            configuration(port: port, pads: 4, bus: "requests-in-flight: 4, response-timeout-ms: 1000, poll-interval-ms: 50"),
            file: "test.yaml", relativeTo: folder.path)
        let log = CapturedLog()
        let gateway = try Gateway(config: config, profiles: profiles, logger: log.logger)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        let store = try SQLiteEventStore(name: "reader", path: folder.file("events.sqlite"))
        let arrived = await eventually { (try? await ratings(in: store).count) == 10 }
        let online = await eventually { await gateway.deviceStates().allSatisfy { $0.online == true } }
        stop.stop()
        await running.value

        #expect(arrived && online, "log:\n\(log.text)")
        let warnings = log.text.split(separator: "\n").filter { $0.contains("answered only the first of 4 requests") }
        #expect(warnings.count == 1, "log:\n\(log.text)")
        let stored = try await ratings(in: store)
        #expect(Set(stored.map(\.event.id)).count == 10, "each rating once")
        for index in 0..<4 {
            let mine = stored.filter { $0.event.source.hasSuffix("/eval-\(index + 1)") }
            #expect(mine.count == index + 1)
            #expect(mine.allSatisfy { $0.rating.staffId == "P-\(index + 1)" })
        }
    }
}

extension ModbusMessage {
    /// Whether this is a read of holding registers (a poll).
    fileprivate var isRead: Bool {
        if case .request(.readHoldingRegisters) = self { return true }
        return false
    }
}
