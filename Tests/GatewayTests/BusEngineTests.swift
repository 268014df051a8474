@testable import DeviceGateway
import Foundation
import GRDB
import MockDevices
import Protocols
import Synchronization
import Testing

/// Devices of the tests' tiny line protocol (see `TinyDriver`) behind a simulated line: they answer the poll
/// `05 ADDR` with `02 ADDR S 0 03` and a display command `11 ADDR text 00` with `02 ADDR A 0 03`, after `turnaround`.
final class TinyDevices: Sendable {
    private let answering: Mutex<Set<UInt8>>
    private let refusing: Mutex<Set<UInt8>>
    private let refusingPolls = Mutex<Set<UInt8>>([])
    private let garbling = Mutex<Set<UInt8>>([])
    let turnaround: Duration

    init(answering: Set<UInt8>, turnaround: Duration = .milliseconds(5)) {
        self.answering = Mutex(answering)
        refusing = Mutex([])
        self.turnaround = turnaround
    }

    func setAnswering(_ address: UInt8, _ on: Bool) {
        answering.withLock { if on { $0.insert(address) } else { $0.remove(address) } }
    }

    func setRefusing(_ address: UInt8) { refusing.withLock { _ = $0.insert(address) } }

    /// Polls of `address` get bytes that make no frame, as from a device at another baud rate.
    func setGarbling(_ address: UInt8) { garbling.withLock { _ = $0.insert(address) } }

    /// Polls of `address` get a refusal (`R`), as a device whose registers are not the profile's refuses every read.
    func setRefusingPolls(_ address: UInt8, _ on: Bool) {
        refusingPolls.withLock { if on { $0.insert(address) } else { $0.remove(address) } }
    }

    var responder: SimulatedLine.Responder {
        { [self] frame, _ in
            guard frame.count >= 2, answering.withLock({ $0.contains(frame[1]) }) else { return [] }
            switch frame[0] {
            case 0x05 where garbling.withLock({ $0.contains(frame[1]) }):
                return [(turnaround, [0x55, 0xFE, 0x55, 0xFE, 0x55])]
            case 0x05:
                let kind = refusingPolls.withLock { $0.contains(frame[1]) } ? UInt8(ascii: "R") : UInt8(ascii: "S")
                return [(turnaround, [0x02, frame[1], kind, 0, 0x03])]
            case 0x11:
                let kind = refusing.withLock { $0.contains(frame[1]) } ? UInt8(ascii: "R") : UInt8(ascii: "A")
                return [(turnaround, [0x02, frame[1], kind, 4, 0x03])]
            default: return []
            }
        }
    }
}

/// The engine in virtual time over an in-memory line: scheduling, timeouts, backoff, the quiet gap and echo
/// suppression, deterministic and fast.
@Suite struct BusEngineTests {
    let folder: TemporaryDirectory
    let outbox: Outbox

    init() throws {
        folder = try TemporaryDirectory()
        outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
    }

    static func devices(_ count: Int) -> [DeviceConfig] {
        (1...count).map { DeviceConfig(id: "caller-\($0)", profile: "tiny", bus: "line", address: $0, window: "\($0)") }
    }

    func engine(_ line: SimulatedLine, devices: [DeviceConfig], unprompted: Set<String> = [],
                timing: LineTiming = .instant, responseTimeout: Duration = .milliseconds(100),
                pollInterval: Duration = .milliseconds(100), pollIntervals: [String: Duration?] = [:],
                confirmsAtPoll: Int? = nil, log: CapturedLog = CapturedLog()
    ) -> BusEngine<TinyDriver> {
        var driver = TinyDriver(devices: devices)
        driver.unprompted = unprompted
        driver.confirmsAtPoll = confirmsAtPoll
        return BusEngine(
            config: BusConfig(id: "line", transport: .serial(SerialSettings(port: "simulated")),
                              responseTimeout: responseTimeout, pollInterval: pollInterval),
            opener: line, clock: line, timing: timing, hallId: "h", driver: driver, pollIntervals: pollIntervals,
            outbox: outbox, logger: log.logger, onCommit: { _ in })
    }

    func statusEvents(of device: String) async throws -> [String] {
        try await outbox.entries(after: 0, limit: 10_000)
            .filter { $0.type.hasPrefix("hall.device.o") && $0.source.hasSuffix("/\(device)") }.map(\.type)
    }

    /// When each poll of `address` was written.
    static func polls(of address: UInt8, in line: SimulatedLine) -> [Duration] {
        line.written.filter { $0.bytes == [0x05, address] }.map(\.time)
    }

    @Test func aSilentDeviceGoesOfflineAfterItsMissesAndOnlineWhenItAnswersAgain() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2])
        let line = SimulatedLine(end: .seconds(60), stop: stop, responder: devices.responder)
        line.at(.seconds(2)) { devices.setAnswering(2, false) }
        line.at(.seconds(20)) { devices.setAnswering(2, true) }
        let bus = engine(line, devices: Self.devices(2))
        await bus.run(until: stop)

        #expect(try await statusEvents(of: "caller-2") == [HallEventType.deviceOnline, HallEventType.deviceOffline,
                                                          HallEventType.deviceOnline])
        #expect(try await statusEvents(of: "caller-1") == [HallEventType.deviceOnline])
        let polls = Self.polls(of: 2, in: line)
        // Silent from 2 s: three misses at the poll interval, then probes at a doubling interval, the last of them
        // answered within one backoff period of its return at 20 s.
        let silent = polls.filter { $0 > .seconds(2) && $0 < .seconds(20) }
        let gaps = zip(silent.dropFirst(), silent).map { $0 - $1 }
        #expect(gaps.count >= 4)
        #expect(gaps.suffix(3).allSatisfy { $0 >= .seconds(1) }, "probes of a silent device back off: \(gaps)")
        #expect(zip(gaps.suffix(3).dropFirst(), gaps.suffix(3)).allSatisfy { $0 >= $1 })
        let states = await bus.deviceStates()
        #expect(states.map(\.online) == [true, true])
        let silentCounters = try #require(states.last?.counters)
        #expect(silentCounters.timeouts == silent.count)
        #expect(silentCounters.transactions == polls.count - silent.count)
        #expect(silentCounters.latency.count == silentCounters.transactions)
        #expect(silentCounters.latency.quantile(0.99) == 5, "answers after the devices' 5 ms turnaround")
    }

    @Test func anUnpluggedLineIsReopenedWithBackoffAndItsDevicesComeBack() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2])
        let line = SimulatedLine(end: .seconds(40), stop: stop, responder: devices.responder)
        line.at(.seconds(1)) { line.setPlugged(false) }
        line.at(.seconds(20)) { line.setPlugged(true) }
        let log = CapturedLog()
        let bus = engine(line, devices: Self.devices(2), log: log)
        let refused = Mutex<String?>(nil)
        // What `gatewayd status` and `trace` say of the line: down in the outage, with why; nothing once it is back.
        let down = Mutex<[String?]>([])
        line.at(.seconds(10)) {
            down.withLock { $0.append(bus.lineDown()) }
            bus.submit(.clear, to: "caller-1") { result in
                if case .failure(let error) = result { refused.withLock { $0 = error.message } }
            }
        }
        line.at(.seconds(35)) { down.withLock { $0.append(bus.lineDown()) } }
        await bus.run(until: stop)
        #expect(down.withLock { $0 } == ["cannot open simulated: no such device", nil])

        for device in ["caller-1", "caller-2"] {
            #expect(try await statusEvents(of: device) == [HallEventType.deviceOnline, HallEventType.deviceOffline,
                                                          HallEventType.deviceOnline])
        }
        #expect(line.openCount == 2, "opened at the start and once after the replug")
        let refusal = try #require(refused.withLock { $0 }, "a command while the line is down is refused at once")
        #expect(refusal.contains("is down") && refusal.contains("no such device"))
        // Tried 0.5 s after the loss, then 1, 2, 4, 8 s … apart, so the replug at 20 s is noticed within one period.
        let attempts = line.openAttempts.filter { $0 >= .seconds(1) }
        let gaps = zip(attempts.dropFirst(), attempts).map { $0 - $1 }
        #expect(attempts.first == .milliseconds(1500), "\(attempts)")
        #expect(gaps == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16)], "each pause doubles: \(gaps)")
        let after = Self.polls(of: 1, in: line).filter { $0 >= .seconds(20) }
        let first = try #require(after.first)
        #expect(first < .seconds(20) + .seconds(16))
        #expect(after.count > 10, "polled again after the replug")
        // One line for the outage, one for its end (README): not one for the hang-up and another for the open.
        let said = log.text.split(separator: "\n").filter { $0.contains("bus line: ") }
        #expect(said == [
            "error bus line: simulated hung up, then cannot open simulated: no such device; retrying, first in 1.0 seconds, then less often",
            "notice bus line: simulated is open again",
        ], "\(said)")
    }

    @Test func aPeerThatClosesEachConnectionAtOnceIsSaidOnceNotAtEachRetry() {
        // From a docs trial: "… closed the connection; … is open again" at notice at each retry.
        let log = CapturedLog()
        var reporter = ConnectionReporter(busId: "lan-1", logger: log.logger)
        reporter.opened("10.20.0.31:502")
        for _ in 0..<5 {
            reporter.lost("10.20.0.31:502 closed the connection", retry: .seconds(1))
            reporter.opened("10.20.0.31:502")
        }
        let line = "notice bus lan-1: 10.20.0.31:502 closed the connection; 10.20.0.31:502 is open again"
        #expect(log.text.split(separator: "\n").filter { $0.contains("bus lan-1") } == [Substring(line)], "\(log.text)")
        // Said again once its time is up, with how often meanwhile.
        reporter.flapSaidEvery = .zero
        reporter.lost("10.20.0.31:502 closed the connection", retry: .seconds(1))
        reporter.opened("10.20.0.31:502")
        #expect(log.text.split(separator: "\n").last == Substring(line + " (4 more times since it was last said)"),
                "\(log.text)")
    }

    @Test func aLinkThatWorkedAfterALongOutageIsReopenedAfterTheFirstPauseWhenItDropsAgain() async throws {
        // From a trial: after a long outage the pause had grown to 30 s; a second unplug five seconds after the replug
        // left the bus unpolled for 30 s, its devices "online", and nothing logged.
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2])
        let line = SimulatedLine(end: .seconds(100), stop: stop, responder: devices.responder)
        line.at(.seconds(1)) { line.setPlugged(false) }
        line.at(.seconds(40)) { line.setPlugged(true) }
        // Reopened at 62.5 s (pauses 0.5, 1, 2, 4, 8, 16, then 30 s); unplugged again for 0.3 s at 70 s.
        line.at(.seconds(70)) { line.setPlugged(false) }
        line.at(.milliseconds(70_300)) { line.setPlugged(true) }
        let bus = engine(line, devices: Self.devices(2))
        await bus.run(until: stop)

        let attempts = line.openAttempts.filter { $0 >= .seconds(41) }
        #expect(attempts.first == .milliseconds(62_500), "\(line.openAttempts)")
        let afterSecondUnplug = try #require(attempts.first { $0 > .seconds(70) }, "\(line.openAttempts)")
        #expect(afterSecondUnplug <= .milliseconds(71_000), "the first pause again: \(line.openAttempts)")
        let polled = Self.polls(of: 1, in: line).filter { $0 > .milliseconds(70_300) }
        #expect(try #require(polled.first) < .seconds(72), "polled again within the first pause and a try or two")
    }

    @Test func aDeviceRefusingEveryPollIsSaidOnceAndWhenItAnswersAgain() async throws {
        // From a trial: a pad refusing its poll logged a warning at every poll, twice a second, without end.
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2])
        devices.setRefusingPolls(1, true)
        let line = SimulatedLine(end: .seconds(1300), stop: stop, responder: devices.responder)
        line.at(.seconds(1200)) { devices.setRefusingPolls(1, false) }
        let log = CapturedLog()
        let bus = engine(line, devices: Self.devices(2), log: log)
        await bus.run(until: stop)

        let said = log.text.split(separator: "\n").filter { $0.contains("device caller-1: status") }
        let refusals = Self.polls(of: 1, in: line).filter { $0 < .seconds(1200) }.count
        #expect(refusals > 10_000)
        #expect(said.count == 3, "\(said)")
        #expect(said.first == "warning device caller-1: status refused: refused with code 0", "\(said)")
        // Said again once ten minutes passed, with the count of those not said; then its end, once.
        #expect(said.dropFirst().first?.hasPrefix("warning device caller-1: status refused: refused with code 0 (") == true,
                "\(said)")
        #expect(said.last?.hasPrefix("notice device caller-1: status answered again (refused ") == true, "\(said)")
    }

    @Test func aDeviceAnsweringGarbageIsOfflineWithAHintAtTheBaudRate() async throws {
        // From a trial: a pad at another baud rate was "no answer to poll" while its garbage counter climbed.
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2])
        devices.setGarbling(1)
        let line = SimulatedLine(end: .seconds(5), stop: stop, responder: devices.responder)
        let bus = engine(line, devices: Self.devices(2))
        await bus.run(until: stop)

        let states = await bus.deviceStates()
        #expect(states.map(\.online) == [false, true])
        #expect(states.first?.offlineReason == "no answer to status within 0.1 seconds; what came back was no frame "
                + "(a wrong baud rate or parity? A and B wires swapped? two devices at one address?)", "\(states)")
        #expect(states.last?.offlineReason == nil)
    }

    @Test func aDeviceOfflineWithItsLineIsToldApartFromOneSilentByItself() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1])
        let line = SimulatedLine(end: .seconds(10), stop: stop, responder: devices.responder)
        line.at(.seconds(5)) { line.setPlugged(false) }
        let bus = engine(line, devices: Self.devices(2))
        await bus.run(until: stop)

        // What picks a ticket printer reads this: one offline with its line is tried once the line is back.
        let states = await bus.deviceStates()
        #expect(states.map(\.online) == [false, false])
        #expect(states.map(\.offlineByLine) == [true, false], "caller-2 was silent before the line went")
        #expect(states.first?.offlineReason?.contains("no such device") == true, "\(states)")
        #expect(states.last?.offlineReason?.contains("no answer") == true, "\(states)")
        // The line's loss is said for it too, first: with the line down it is what to fix (from a trial).
        #expect(states.last?.offlineReason?.hasPrefix("its bus is down (cannot open simulated: no such device); before that, no answer")
                == true, "\(states)")
    }

    @Test func aLinkThatBreaksAsSoonAsItOpensIsRetriedWithBackoffAndItsDevicesAreOffline() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2])
        let line = SimulatedLine(end: .seconds(60), stop: stop, responder: devices.responder)
        // A peer that accepts and closes at once (another master holds the device's one connection) from 1 s to 20 s.
        line.at(.seconds(1)) {
            line.setHangingUp(afterWrites: 0)
            line.setPlugged(false)
            line.setPlugged(true)
        }
        line.at(.seconds(20)) { line.setHangingUp(afterWrites: nil) }
        // Two devices polled, one that only speaks unprompted: reachable as its line is.
        let bus = engine(line, devices: Self.devices(3), unprompted: ["caller-3"])
        await bus.run(until: stop)

        let attempts = line.openAttempts.filter { $0 > .seconds(1) }
        let gaps = zip(attempts.dropFirst(), attempts).map { $0 - $1 }
        // The link that worked for a second is reopened after the first pause; every one that broke at once doubles it.
        #expect(gaps == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16)], "\(attempts)")
        for device in ["caller-1", "caller-2"] {
            #expect(try await statusEvents(of: device) == [HallEventType.deviceOnline, HallEventType.deviceOffline,
                                                          HallEventType.deviceOnline], "\(device): offline once")
        }
        // Not online at every brief opening: only once a link reads without breaking.
        #expect(try await statusEvents(of: "caller-3") == [HallEventType.deviceOffline, HallEventType.deviceOnline])
        #expect(try #require(Self.polls(of: 1, in: line).last) > .seconds(50), "polled again once the peer works")
    }

    @Test func aPeerThatAnswersOncePerConnectionIsNotReconnectedAtEveryPause() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1])
        let line = SimulatedLine(end: .seconds(60), stop: stop, responder: devices.responder)
        line.setHangingUp(afterWrites: 1)
        let bus = engine(line, devices: Self.devices(1))
        await bus.run(until: stop)

        // Each connection answers one poll and closes: it worked, but not for as long as the pause before it.
        let attempts = line.openAttempts
        let gaps = zip(attempts.dropFirst(), attempts).map { $0 - $1 }
        #expect(attempts.count == 7, "pauses of 0.5, 1, 2, 4, 8 and 16 s within the minute: \(attempts)")
        let pauses: [Duration] = [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16)]
        // Each connection lasts until the next poll, 100 ms on, finds it closed; then the pause.
        #expect(gaps == pauses.map { $0 + .milliseconds(100) }, "\(gaps)")
        #expect(try await statusEvents(of: "caller-1") == [HallEventType.deviceOnline], "it answers every time")
    }

    @Test func aDeviceThatIsNeverPolledIsOnlineAgainWithItsLineAndTakesCommands() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2])
        let line = SimulatedLine(end: .seconds(40), stop: stop, responder: devices.responder)
        line.at(.seconds(1)) { line.setPlugged(false) }
        line.at(.seconds(20)) { line.setPlugged(true) }
        let bus = engine(line, devices: Self.devices(2), unprompted: ["caller-2"])
        let result = Mutex<Result<Void, GatewayError>?>(nil)
        line.at(.seconds(36)) {
            bus.submit(.clear, to: "caller-2") { outcome in result.withLock { $0 = outcome } }
        }
        await bus.run(until: stop)

        // Never heard before the loss: offline with its line, online with it, as far as the gateway can tell.
        #expect(try await statusEvents(of: "caller-2") == [HallEventType.deviceOffline, HallEventType.deviceOnline])
        let outcome = try #require(result.withLock { $0 }, "the command was carried out or refused")
        #expect(throws: Never.self, "a command to it is sent, not refused as offline") { try outcome.get() }
        #expect(line.written.contains { $0.bytes.first == 0x11 && $0.bytes.dropFirst().first == 2 && $0.time >= .seconds(36) })
        let states = await bus.deviceStates()
        #expect(states.map(\.online) == [true, true])
    }

    @Test func aCommandOvertakesTheQueueOfPolls() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: Set(1...10))
        let line = SimulatedLine(end: .seconds(3), stop: stop, responder: devices.responder)
        // Polled as fast as the line allows: there is always a poll waiting.
        let bus = engine(line, devices: Self.devices(10), pollInterval: .zero)
        let done = Mutex<Result<Void, GatewayError>?>(nil)
        line.at(.milliseconds(1001)) {
            bus.submit(.showText("请A023号到7号窗口"), to: "caller-7") { result in done.withLock { $0 = result } }
        }
        await bus.run(until: stop)

        let written = line.written
        let next = try #require(written.firstIndex { $0.time >= .milliseconds(1001) })
        #expect(written[next].bytes.starts(with: [0x11, 7]), "the command is the first frame after the one in flight")
        #expect(written[next].time - .milliseconds(1001) <= devices.turnaround, "it waited for one transaction at most")
        #expect(try #require(done.withLock { $0 }).failure == nil, "and it succeeded")
    }

    @Test func aDeadDeviceDelaysTheOthersByAtMostItsTimeoutPerBackoffPeriod() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: Set(1...9))
        let line = SimulatedLine(end: .seconds(120), stop: stop, responder: devices.responder)
        let bus = engine(line, devices: Self.devices(10), responseTimeout: .milliseconds(100), pollInterval: .zero)
        await bus.run(until: stop)

        let cycle = devices.turnaround * 9
        for address in UInt8(1)...9 {
            let polls = Self.polls(of: address, in: line)
            let gaps = zip(polls.dropFirst(), polls).map { $0 - $1 }
            #expect(try #require(gaps.max()) <= cycle + .milliseconds(100), "caller-\(address) waits for one timeout at most")
        }
        let probes = Self.polls(of: 10, in: line)
        let gaps = zip(probes.dropFirst(), probes).map { $0 - $1 }
        // After three misses in a row, probes back off to one per 30 s: the dead device costs 100 ms of every 30 s.
        #expect(gaps.suffix(2).allSatisfy { $0 >= .seconds(16) }, "\(gaps)")
        #expect((1...3).contains(probes.filter { $0 > .seconds(60) }.count), "still probed, seldom: \(probes)")
        let states = await bus.deviceStates()
        #expect(states.last?.online == false)
        #expect(states.last?.offlineReason?.contains("no answer") == true)
        #expect(states.last?.offlineByLine == false, "silent by itself, on a working line")
    }

    @Test func aSilentDevicePolledSeldomIsNotProbedMoreOftenThanItWasPolled() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1])
        let line = SimulatedLine(end: .seconds(600), stop: stop, responder: devices.responder)
        // A device the profile polls once a minute (a board's temperature, say), silent from the start.
        let bus = engine(line, devices: Self.devices(2), pollIntervals: ["caller-2": .seconds(60)])
        await bus.run(until: stop)

        let probes = Self.polls(of: 2, in: line)
        let gaps = zip(probes.dropFirst(), probes).map { $0 - $1 }
        #expect(probes.count >= 5, "\(probes)")
        #expect(gaps.allSatisfy { $0 >= .seconds(60) }, "a probe every 30 s would be twice its polls: \(gaps)")
        #expect(await bus.deviceStates().last?.online == false)
    }

    @Test func aCommandToAnOfflineDeviceAnswersAtOnceWithTheReason() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1])
        let line = SimulatedLine(end: .seconds(10), stop: stop, responder: devices.responder)
        let bus = engine(line, devices: Self.devices(2))
        let result = Mutex<(Result<Void, GatewayError>, Duration)?>(nil)
        line.at(.seconds(5)) {
            bus.submit(.clear, to: "caller-2") { outcome in result.withLock { $0 = (outcome, line.now) } }
        }
        await bus.run(until: stop)

        let (outcome, at) = try #require(result.withLock { $0 })
        let error = try #require(outcome.failure, "the command to an offline device failed")
        #expect(error.message.contains("caller-2 is offline") && error.message.contains("no answer"))
        // Taken between two requests: an idle bus is woken by it.
        #expect(at - .seconds(5) <= devices.turnaround, "refused without waiting for a timeout")
        #expect(!line.written.contains { $0.bytes.starts(with: [0x11, 2]) }, "nothing was sent to it")
    }

    @Test func aCommandTheDeviceConfirmsOnALaterPollIsDoneAtThatPoll() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2])
        let line = SimulatedLine(end: .seconds(3), stop: stop, responder: devices.responder)
        let bus = engine(line, devices: Self.devices(2), confirmsAtPoll: 2)
        let done = Mutex<[(text: String, result: Result<Void, GatewayError>, at: Duration)]>([])
        // A second command to it comes while the first waits: it goes once the first is confirmed (a board would
        // otherwise take the second text before showing the first).
        for (time, text) in [(1001, "A023"), (1002, "B007")] {
            line.at(.milliseconds(time)) {
                bus.submit(.showText(text), to: "caller-1") { result in done.withLock { $0.append((text, result, line.now)) } }
            }
        }
        await bus.run(until: stop)

        let outcomes = done.withLock { $0 }
        #expect(outcomes.map(\.text) == ["A023", "B007"], "each completed once, in order")
        #expect(outcomes.allSatisfy { $0.result.failure == nil }, "confirmed: done")
        let first = try #require(outcomes.first)
        let sent = line.written.filter { $0.bytes.starts(with: [0x11, 1]) }.map(\.time)
        try #require(sent.count == 2)
        let secondPoll = try #require(Self.polls(of: 1, in: line).filter { $0 > sent[0] }.dropFirst().first)
        #expect(first.at >= secondPoll && first.at <= secondPoll + devices.turnaround, "done at its second poll's answer, not before")
        #expect(sent[1] >= first.at, "the second command went out after the first was confirmed")
        // Meanwhile the bus went on polling, the other device too.
        #expect(Self.polls(of: 2, in: line).contains { $0 > sent[0] && $0 < secondPoll })
    }

    @Test func aCallerCancelledWhileItsCommandIsHeldIsAnsweredAtOnce() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1])
        let sending = Mutex<Task<Void, any Error>?>(nil)
        // Cancelled once its frame is on the line: the device confirms only at its 100th poll, the bus gives up
        // after 1 s; the caller hears at once.
        let line = SimulatedLine(end: .seconds(3), stop: stop) { frame, time in
            if frame.starts(with: [0x11, 1]) { sending.withLock { $0?.cancel() } }
            return devices.responder(frame, time)
        }
        let bus = engine(line, devices: Self.devices(1), confirmsAtPoll: 100)
        sending.withLock { $0 = Task { try await bus.send(.clear, to: "caller-1") } }
        await bus.run(until: stop)

        let task = try #require(sending.withLock { $0 })
        let error = await #expect(throws: GatewayError.self) { try await task.value }
        #expect(error?.code == .unconfirmed)
        #expect(error?.message == "caller-1: clear was cancelled under way: it may still be carried out")
    }

    @Test func aCommandTheDeviceNeverConfirmsEndsWithTheReason() async throws {
        let outcomes = Mutex<[String: (Result<Void, GatewayError>, Duration)]>([:])
        let completions = Mutex(0)
        var lines: [String: SimulatedLine] = [:]
        // Silent after taking it; answering without ever confirming; the gateway stopped; the line lost: what a
        // technician reads in each case.
        for ending in ["silent", "unconfirming", "stopped", "unplugged"] {
            let stop = StopSignal()
            let devices = TinyDevices(answering: [1])
            let line = SimulatedLine(end: ending == "stopped" ? .milliseconds(1100) : .seconds(4), stop: stop,
                                     responder: devices.responder)
            lines[ending] = line
            let bus = engine(line, devices: Self.devices(1), confirmsAtPoll: 100)
            line.at(.milliseconds(1001)) {
                bus.submit(.clear, to: "caller-1") { result in
                    completions.withLock { $0 += 1 }
                    outcomes.withLock { $0[ending] = (result, line.now) }
                }
            }
            line.at(.milliseconds(1030)) {
                if ending == "silent" { devices.setAnswering(1, false) }
                if ending == "unplugged" { line.setPlugged(false) }
            }
            await bus.run(until: stop)
        }

        #expect(completions.withLock { $0 } == 4, "each command completed once")
        let silent = try #require(outcomes.withLock { $0["silent"] })
        // Offline after three polls missed: no verdict will come.
        #expect(silent.0.failure?.code == .unconfirmed)
        #expect(silent.0.failure?.message == "caller-1 took clear but it stopped answering before it acknowledged: it may show it")
        #expect(silent.1 < .milliseconds(1700), "at its third miss: \(silent.1)")
        // The driver waits three polls for its verdict, the bus two more.
        let unconfirming = try #require(outcomes.withLock { $0["unconfirming"] })
        #expect(unconfirming.0.failure?.code == .deviceTimeout)
        #expect(unconfirming.0.failure?.message == "caller-1: no acknowledgement of clear in 5 polls: it may not show it")
        let polled = Self.polls(of: 1, in: try #require(lines["unconfirming"]))
        let fifthPoll = try #require(polled.filter { $0 > .milliseconds(1001) }.dropFirst(4).first)
        #expect(unconfirming.1 >= fifthPoll && unconfirming.1 <= fifthPoll + .milliseconds(10), "at its fifth poll")
        let stopped = try #require(outcomes.withLock { $0["stopped"] })
        #expect(stopped.0.failure?.code == .unconfirmed)
        #expect(stopped.0.failure?.message == "caller-1 took clear but the gateway stopped before it acknowledged: it may show it")
        let unplugged = try #require(outcomes.withLock { $0["unplugged"] })
        #expect(unplugged.0.failure?.code == .unconfirmed)
        #expect(unplugged.0.failure?.message.hasPrefix("caller-1 took clear but the link was lost") == true, "\(unplugged.0)")
        #expect(unplugged.1 < .milliseconds(1200), "at the loss, not at the deadline: \(unplugged.1)")
    }

    /// From a second read: a link lost after a command's first frames went out was said `portUnavailable`, as if
    /// nothing had been sent, and the gateway took the board as still showing what it showed before. It is
    /// `unconfirmed`, as a timeout after them is.
    @Test func aLinkLostAfterACommandsFirstFrameSaysItMayHaveBeenCarriedOut() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1])
        // The last frame's answer takes 50 ms: the link is lost while the gateway waits for it.
        let line = SimulatedLine(end: .seconds(2), stop: stop) { frame, sent in
            let answers = devices.responder(frame, sent)
            return frame.dropLast().last == UInt8(ascii: "#") ? answers.map { (.milliseconds(50), $0.bytes) } : answers
        }
        var driver = TinyDriver(devices: Self.devices(1))
        driver.framesPerCommand = 2
        let bus = BusEngine(
            config: BusConfig(id: "line", transport: .serial(SerialSettings(port: "simulated")),
                              responseTimeout: .milliseconds(100), pollInterval: .milliseconds(100)),
            opener: line, clock: line, timing: .instant, hallId: "h", driver: driver, outbox: outbox,
            logger: CapturedLog().logger, onCommit: { _ in })
        let result = Mutex<Result<Void, GatewayError>?>(nil)
        line.at(.milliseconds(1020)) { bus.submit(.clear, to: "caller-1") { outcome in result.withLock { $0 = outcome } } }
        line.at(.milliseconds(1050)) { line.setPlugged(false) }
        await bus.run(until: stop)

        let outcome = try #require(result.withLock { $0 }, "the command completed")
        let frames = line.log.filter { $0.direction == .fromGateway && $0.bytes.first == 0x11 }.map(\.time)
        #expect(frames == [.milliseconds(1020), .milliseconds(1025)], "both frames went out before the loss: \(frames)")
        #expect(outcome.failure?.code == .unconfirmed, "\(outcome)")
        #expect(outcome.failure?.message.hasPrefix("caller-1: ") == true
                && outcome.failure?.message.hasSuffix(", after its clear frame 1 went out: it may have been carried out") == true,
                "\(outcome)")
    }

    @Test func aRefusalIsTheCommandsResultAndCounted() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1])
        devices.setRefusing(1)
        let line = SimulatedLine(end: .seconds(2), stop: stop, responder: devices.responder)
        let bus = engine(line, devices: Self.devices(1))
        let result = Mutex<Result<Void, GatewayError>?>(nil)
        line.at(.seconds(1)) { bus.submit(.clear, to: "caller-1") { outcome in result.withLock { $0 = outcome } } }
        await bus.run(until: stop)

        let outcome = try #require(result.withLock { $0 }, "the command completed")
        let error = try #require(outcome.failure, "a refused command fails")
        #expect(error.message == "caller-1 refused clear: refused with code 4")
        #expect(await bus.deviceStates().first?.counters.exceptions == 1)
    }

    @Test func aFrameInterruptedByTheQuietGapIsNotCompletedByTheNextBytes() async throws {
        let stop = StopSignal()
        let origin = Date(timeIntervalSince1970: 1_790_000_000)
        let line = SimulatedLine(end: .seconds(3), stop: stop, origin: origin, responder: { _, _ in [] })
        // Within the gap, two pieces make one key frame; after it, the first piece is garbage.
        line.deliver([0x02, 0x01, UInt8(ascii: "K")], at: .milliseconds(1000))
        line.deliver([7, 0x03], at: .milliseconds(1030))
        line.deliver([0x02, 0x01, UInt8(ascii: "K")], at: .milliseconds(2000))
        line.deliver([8, 0x03], at: .milliseconds(2200))
        let bus = engine(line, devices: Self.devices(1), unprompted: ["caller-1"])
        await bus.run(until: stop)

        let keys = try await outbox.entries(after: 0, limit: 100).filter { $0.type == HallEventType.callerKeyPressed }
        #expect(keys.map(\.id) == ["key-caller-1-7"])
        #expect(bus.lineCounters().garbageBytes == 5)
        #expect(line.written.map(\.bytes) == [[0x06, 0x01]], "only the whole frame was acknowledged, after its commit")
        let lastSeen = try #require(await bus.deviceStates().first?.lastSeen)
        #expect(lastSeen == origin.addingTimeInterval(1.03), "an unprompted device reports when it was last heard")
    }

    @Test func eachDeviceIsPolledAtItsProfilesIntervalAndTheOthersAtTheBuses() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2, 3])
        let line = SimulatedLine(end: .seconds(10), stop: stop, responder: devices.responder)
        let bus = engine(line, devices: Self.devices(3), pollInterval: .milliseconds(500),
                         pollIntervals: ["caller-1": .milliseconds(100), "caller-2": .seconds(2)])
        await bus.run(until: stop)

        for (address, interval) in [(UInt8(1), Duration.milliseconds(100)), (2, .seconds(2)), (3, .milliseconds(500))] {
            let polls = Self.polls(of: address, in: line)
            let gaps = Set(zip(polls.dropFirst(), polls).map { $0 - $1 })
            // Each poll is due its interval after the last one started; on this instant line nothing delays it.
            #expect(gaps == [interval], "caller-\(address): \(gaps)")
        }
    }

    @Test func onAnRTULineEveryFrameWaitsThreeAndAHalfCharactersAfterTheLastOneHeardOrSent() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2])
        let timing = LineTiming.serial(SerialSettings(port: "x", baud: 9600), silenceBetweenFrames: true)
        #expect(timing.frameGap == timing.characterTime * 7 / 2 && timing.frameGap > .microseconds(3640),
                "3.5 characters of 10 bits at 9600 baud: \(timing.frameGap)")
        let line = SimulatedLine(timing: timing, end: .seconds(2), stop: stop, responder: devices.responder)
        let bus = engine(line, devices: Self.devices(2), timing: timing, pollInterval: .zero)
        line.at(.seconds(1)) { bus.submit(.call(ticket: "A001", window: "1"), to: "caller-1") { _ in } }
        await bus.run(until: stop)

        var lineFree: Duration?
        var checked = 0
        for record in line.log {
            switch record.direction {
            case .toGateway:
                lineFree = record.time + timing.frameGap
            case .fromGateway:
                if let lineFree {
                    // As fast as the line allows, and no faster: exactly the gap.
                    #expect(record.time == lineFree, "frame at \(record.time), line free at \(lineFree)")
                    checked += 1
                }
                lineFree = record.time + timing.wireTime(characters: record.bytes.count) + timing.frameGap
            }
        }
        #expect(checked > 100, "polled as fast as the line allows: \(checked) frames")
        #expect(line.written.contains { $0.bytes.first == 0x11 }, "the command went out too")
    }

    @Test func ourEchoOnATwoWireLineIsDroppedAndTheAnswersStillCount() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2], turnaround: .milliseconds(8))
        let line = SimulatedLine(timing: .serial(SerialSettings(port: "x"), silenceBetweenFrames: false), end: .seconds(5), stop: stop,
                                 responder: devices.responder)
        line.setEchoing(true)
        let bus = engine(line, devices: Self.devices(2), timing: .serial(SerialSettings(port: "x"), silenceBetweenFrames: false))
        await bus.run(until: stop)

        let states = await bus.deviceStates()
        #expect(states.map(\.online) == [true, true])
        #expect(states.allSatisfy { $0.counters.garbageBytes == 0 && $0.counters.timeouts == 0 })
        #expect(bus.lineCounters().garbageBytes == 0)
        #expect(bus.lineEchoes() == true, "what status shows of the line")
    }

    /// Two tiny devices behind a paced serial line whose adapter echoes what the gateway writes, for five seconds.
    func echoingLineOfTwo() -> (line: SimulatedLine, timing: LineTiming, stop: StopSignal) {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1, 2], turnaround: .milliseconds(8))
        let timing = LineTiming.serial(SerialSettings(port: "x"), silenceBetweenFrames: false)
        let line = SimulatedLine(timing: timing, end: .seconds(5), stop: stop, responder: devices.responder)
        line.setEchoing(true)
        return (line, timing, stop)
    }

    /// What status says of a line's adapter is what was learnt since the line was opened: nothing while it is down.
    @Test func theEchoVerdictIsForgottenWhenTheLineIsLost() async throws {
        let (line, timing, stop) = echoingLineOfTwo()
        let bus = engine(line, devices: Self.devices(2), timing: timing)
        let verdicts = Mutex<[Bool?]>([])
        line.at(.seconds(2)) { verdicts.withLock { $0.append(bus.lineEchoes()) } }
        line.at(.seconds(3)) { line.setPlugged(false) }
        line.at(.seconds(4)) { verdicts.withLock { $0.append(bus.lineEchoes()) } }
        await bus.run(until: stop)

        #expect(verdicts.withLock { $0 } == [true, nil])
    }

    /// Modbus RTU pads behind a simulated serial line: reads of their registers, and the write of the acknowledge
    /// register, answered with the request itself as function 06 is.
    func rtuPads(_ pads: [UInt8: MockModbusEvaluator], echoing: Bool) throws
        -> (line: SimulatedLine, bus: BusEngine<ModbusDriver>, stop: StopSignal)
    {
        let stop = StopSignal()
        let timing = LineTiming.serial(SerialSettings(port: "x"), silenceBetweenFrames: true)
        let line = SimulatedLine(timing: timing, end: .seconds(5), stop: stop) { written, _ in
            var decoder = ModbusRTUDecoder(role: .server)
            return decoder.decode(written).compactMap { frame -> (after: Duration, bytes: [UInt8])? in
                guard let pad = pads[frame.address], case .request(let request) = frame.message,
                      let response = pad.answer(request)
                else { return nil }
                return (.milliseconds(10), (try? ModbusRTUFrame(address: frame.address, response: response).encode()) ?? [])
            }
        }
        line.setEchoing(echoing)
        guard case .modbusEvaluator(let profile) = try ProfileLibrary(directory: profilesDirectory)
            .profile(named: "modbus-evaluator-3key")
        else { throw GatewayError(.profileMismatch, "modbus-evaluator-3key is not a Modbus pad") }
        let devices = pads.keys.sorted().map {
            DeviceConfig(id: "eval-\($0)", profile: "modbus-evaluator-3key", bus: "rs485", address: Int($0), window: "\($0)")
        }
        let config = BusConfig(id: "rs485", transport: .modbusRTU(SerialSettings(port: "x")),
                               responseTimeout: .milliseconds(300), pollInterval: .milliseconds(200))
        let driver = ModbusDriver(members: devices.map { ($0, .pad(profile)) }, framing: .rtu, hallId: "h",
                                  pollInterval: config.pollInterval, responseTimeout: config.responseTimeout)
        let bus = BusEngine(config: config, opener: line, clock: line, timing: timing, hallId: "h", driver: driver,
                            outbox: outbox, logger: CapturedLog().logger, onCommit: { _ in })
        return (line, bus, stop)
    }

    @Test(arguments: [false, true])
    func anAnswerEqualToTheRequestIsNotTakenForAnEcho(echoing: Bool) async throws {
        let pads = [UInt8(1): MockModbusEvaluator(staffId: "0101"), 2: MockModbusEvaluator(staffId: "0102")]
        let (line, bus, stop) = try rtuPads(pads, echoing: echoing)
        // Ratings all along: each is acknowledged by a write of one register, answered with the request's own bytes.
        for second in 1...4 {
            line.at(.seconds(second)) { for pad in pads.values { pad.press(.satisfied) } }
        }
        await bus.run(until: stop)

        let ratings = try await outbox.entries(after: 0, limit: 100).filter { $0.type == HallEventType.ratingSubmitted }
        #expect(ratings.count == 8)
        for (address, pad) in pads {
            #expect(pad.counter == 4 && pad.acknowledged == 4, "eval-\(address) acknowledged every rating")
        }
        let states = await bus.deviceStates()
        // A write answered counts as a transaction; none waits out the 300 ms timeout.
        #expect(states.allSatisfy { $0.counters.timeouts == 0 && $0.counters.garbageBytes == 0 }, "\(states)")
        #expect(bus.lineCounters().garbageBytes == 0)
        #expect(bus.lineEchoes() == echoing, "what status shows of the line")
    }

    /// Found at most starts on one line (closing-25): a pad with ratings waiting is acknowledged before the polls have
    /// told whether the line echoes, the answer, equal to the request, is taken for the echo, and the write waits out
    /// its timeout: a timeout on a healthy pad in the counters a technician reads.
    @Test(arguments: [false, true])
    func aPadWithRatingsWaitingAtAStartIsAcknowledgedWithoutATimeout(echoing: Bool) async throws {
        let pads = [UInt8(1): MockModbusEvaluator(staffId: "0101"), 2: MockModbusEvaluator(staffId: "0102")]
        for pad in pads.values { pad.press(.satisfied); pad.press(.basicallySatisfied) }
        let (line, bus, stop) = try rtuPads(pads, echoing: echoing)
        let acknowledgedBy = Mutex<Bool?>(nil)
        line.at(.seconds(1)) { acknowledgedBy.withLock { $0 = pads.values.allSatisfy { $0.acknowledged == 2 } } }
        await bus.run(until: stop)

        let ratings = try await outbox.entries(after: 0, limit: 100).filter { $0.type == HallEventType.ratingSubmitted }
        #expect(ratings.count == 4)
        #expect(acknowledgedBy.withLock { $0 } == true, "both pads acknowledged within a second of the start")
        let states = await bus.deviceStates()
        #expect(states.allSatisfy { $0.counters.timeouts == 0 }, "\(states.map { ($0.device, $0.counters.timeouts) })")
        #expect(bus.lineEchoes() == echoing)
    }

    @Test func ourEchoReadLateOnALoadedMachineIsStillOurs() async throws {
        let (line, timing, stop) = echoingLineOfTwo()
        // Longer than the echo is expected (the frame's wire time and the 50 ms quiet gap): the echo and the answer
        // behind it come in one late read.
        line.setReadDelay(.milliseconds(80))
        let bus = engine(line, devices: Self.devices(2), timing: timing)
        await bus.run(until: stop)

        let states = await bus.deviceStates()
        #expect(states.map(\.online) == [true, true])
        #expect(states.allSatisfy { $0.counters.transactions > 10 && $0.counters.timeouts == 0 })
        #expect(states.allSatisfy { $0.counters.garbageBytes == 0 }, "our polls read late are not taken for garbage")
        #expect(bus.lineCounters().garbageBytes == 0)
    }

    /// Found in a full run: on a two-wire FF 68 line whose echoes came late, the filter gave up on them, and each
    /// acknowledgement of a caller's key (the frame itself) came back as another press of it, acknowledged again:
    /// about 190 acknowledgements for one key, and no end to them.
    @Test func lateEchoesOfAnAcknowledgementDoNotFeedMoreAcknowledgements() async throws {
        let stop = StopSignal()
        let timing = LineTiming.serial(SerialSettings(port: "x"), silenceBetweenFrames: false)
        let line = SimulatedLine(timing: timing, end: .seconds(10), stop: stop) { _, _ in [] }
        line.setEchoing(true)
        // Later than an echo's window (the frame's wire time and the 50 ms quiet gap): never proven to be echoes.
        line.setEchoDelay(.milliseconds(100))
        let library = ProfileLibrary(directory: profilesDirectory)
        guard case .ff68Caller(let callerProfile) = try library.profile(named: "ff68-caller"),
              case .ff68Evaluator(let padProfile) = try library.profile(named: "ff68-evaluator")
        else { throw GatewayError(.profileMismatch, "ff68-caller or ff68-evaluator is not an FF 68 profile") }
        let caller = DeviceConfig(id: "caller-w03", profile: "ff68-caller", bus: "ff68", address: 33, window: "3")
        let pad = DeviceConfig(id: "eval-w03", profile: "ff68-evaluator", bus: "ff68", address: 3, window: "3")
        let callNext = FF68Frame.callerKeyPress(address: 33, action: .callNext).encode()
        // Two keys: the same one twice in five seconds is the pad's repeat.
        let ratings = [FF68Frame.evaluatorKeyPress(address: 3, key: 2), FF68Frame.evaluatorKeyPress(address: 3, key: 3)]
        // Each frame read between a write and its late echo, so that the echo comes after a read past its window.
        line.deliver(callNext, at: .seconds(1))
        line.deliver(ratings[0].encode(), at: .milliseconds(1080))
        line.deliver(callNext, at: .seconds(3))
        line.deliver(ratings[1].encode(), at: .milliseconds(3080))
        let bus = BusEngine(
            config: BusConfig(id: "ff68", transport: .serial(SerialSettings(port: "x")), pollInterval: .milliseconds(100)),
            opener: line, clock: line, timing: timing, hallId: "h",
            driver: FF68Driver(members: [(caller, .caller(callerProfile)), (pad, .evaluator(padProfile))], hallId: "h"),
            outbox: outbox, logger: CapturedLog().logger, onCommit: { _ in })
        await bus.run(until: stop)

        let acknowledgements = line.written.map(\.bytes)
        #expect(acknowledgements.filter { $0 == callNext }.count == 2, "one acknowledgement a press, not one an echo")
        for rating in ratings { #expect(acknowledgements.filter { $0 == rating.acknowledgement.encode() }.count == 1) }
        #expect(acknowledgements.count == 4, "\(acknowledgements.count) frames written for four key presses")
        let events = try await outbox.entries(after: 0, limit: 100)
        #expect(events.filter { $0.type == HallEventType.callerKeyPressed }.count == 2)
        #expect(events.filter { $0.type == HallEventType.ratingSubmitted }.count == 2)
        // A press is named by its first sighting's time as events write it: no run of digits a PII scanner takes for
        // a mobile number, as the millisecond count it was (ff68-eval-w03-1765012345678).
        let presses = events.filter { [HallEventType.ratingSubmitted, HallEventType.callerKeyPressed].contains($0.type) }
        for event in presses {
            #expect(event.id.wholeMatch(of: /ff68-(eval|caller)-w03-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil,
                    "\(event.id)")
        }
    }

    /// A QSystem box's red lamp is `01 ADDR 31 07`, byte for byte the box's `call` key: heard back on a two-wire
    /// line past the echo filter (here: another box's key between the write and its late echo), a pause called the
    /// next citizen.
    @Test func aBoxsLampFrameHeardBackIsNotItsKey() async throws {
        let stop = StopSignal()
        let timing = LineTiming.serial(SerialSettings(port: "x"), silenceBetweenFrames: false)
        let line = SimulatedLine(timing: timing, end: .seconds(4), stop: stop) { _, _ in [] }
        line.setEchoing(true)
        line.setEchoDelay(.milliseconds(100))
        guard case .qsystemBox(let profile) = try ProfileLibrary(directory: profilesDirectory).profile(named: "qsystem-box")
        else { throw GatewayError(.profileMismatch, "qsystem-box is not a QSystem box profile") }
        let boxes = [5, 6].map {
            DeviceConfig(id: "box-w0\($0)", profile: "qsystem-box", bus: "qs", address: $0, window: "\($0)")
        }
        let bus = BusEngine(
            config: BusConfig(id: "qs", transport: .serial(SerialSettings(port: "x")), pollInterval: .milliseconds(100)),
            opener: line, clock: line, timing: timing, hallId: "h",
            driver: QSystemDriver(members: boxes.map { ($0, .box(profile)) }, hallId: "h"),
            outbox: outbox, logger: CapturedLog().logger, onCommit: { _ in })
        // The pause goes out as the bus starts; box 6's finish comes 60 ms on, before the lamp frame's late echo.
        let paused = Mutex<Result<Void, GatewayError>?>(nil)
        line.at(.zero) { bus.submit(.pause(window: "5"), to: "box-w05") { outcome in paused.withLock { $0 = outcome } } }
        line.deliver(QSystemKeyFrame(address: 6, key: .finish).encode(), at: .milliseconds(60))
        // Box 5's call key, pressed for real two seconds later.
        line.deliver(QSystemKeyFrame(address: 5, key: .call).encode(), at: .seconds(2))
        await bus.run(until: stop)

        #expect(throws: Never.self) { try #require(paused.withLock { $0 }).get() }
        let red = QSystemSignalFrame(address: 5, signal: .red).encode()
        #expect(red == QSystemKeyFrame(address: 5, key: .call).encode(), "the lamp's frame is the key's")
        #expect(line.written.map(\.bytes) == [red])
        #expect(try #require(line.written.first).time < .milliseconds(60), "the lamp frame went out before box 6 spoke")
        let keys = try await outbox.entries(after: 0, limit: 100).filter { $0.type == HallEventType.callerKeyPressed }
        #expect(keys.map(\.source) == ["/halls/h/devices/box-w06", "/halls/h/devices/box-w05"],
                "box 6's finish and box 5's real call; not the lamp heard back")
    }

    @Test func aBusCancelledAsItReadsAKeyPressStillCommitsIt() async throws {
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1])
        let line = SimulatedLine(end: .seconds(5), stop: stop, responder: devices.responder)
        let bus = engine(line, devices: Self.devices(1))
        // The task is cancelled while the engine reads the key press, before it commits it.
        let running = Mutex<Task<Void, Never>?>(nil)
        line.deliver([0x02, 1, UInt8(ascii: "K"), 7, 0x03], at: .seconds(1))
        line.at(.seconds(1)) { running.withLock { $0?.cancel() } }
        running.withLock { $0 = Task { await bus.run(until: stop) } }
        await running.withLock { $0 }?.value

        #expect(line.now < .seconds(5), "the cancelled bus stopped before the line's end")
        let keys = try await outbox.entries(after: 0, limit: 100).filter { $0.type == HallEventType.callerKeyPressed }
        #expect(keys.map(\.id) == ["key-caller-1-7"], "what was read is committed, cancelled or not")
    }

    @Test func aTicketsStatusRequestWaitsForItsAnswerFromWhenTheTicketHasLeftTheLine() async throws {
        // At 2400 baud a ticket takes over a second on the wire; its status request, written right after it, goes out
        // only then. Timed from write(), its answer was "late" and a printed ticket was reported as failed.
        let stop = StopSignal()
        let settings = SerialSettings(port: "x", baud: 2400)
        let timing = LineTiming.serial(settings, silenceBetweenFrames: false)
        let line = SimulatedLine(timing: timing, end: .seconds(6), stop: stop) { frame, _ in
            frame.count == 3 && frame.starts(with: [0x10, 0x04]) ? [(.milliseconds(2), [0x12])] : []
        }
        guard case .escPosPrinter(let profile) = try ProfileLibrary(directory: profilesDirectory).profile(named: "escpos-80mm")
        else { throw GatewayError(.profileMismatch, "escpos-80mm is not a printer") }
        let printer = DeviceConfig(id: "printer-1", profile: "escpos-80mm", bus: "kiosk", address: 1, window: nil)
        let bus = BusEngine(
            config: BusConfig(id: "kiosk", transport: .serial(settings), responseTimeout: .milliseconds(500),
                              pollInterval: .seconds(10)),
            opener: line, clock: line, timing: timing, hallId: "h",
            driver: PrinterDriver(device: printer, profile: profile, hallId: "h"),
            outbox: outbox, logger: CapturedLog().logger, onCommit: { _ in })
        let printed = Mutex<Result<Void, GatewayError>?>(nil)
        line.at(.seconds(1)) {
            bus.submit(HallCommand.printTicket(.init(number: "A023", service: "社保业务", waitingAhead: 5, issuedAt: "09:30",
                                          qrPayload: "https://hall.example/q/A023")), to: "printer-1") { result in
                printed.withLock { $0 = result }
            }
        }
        await bus.run(until: stop)

        let ticket = try #require(line.written.first { $0.time >= .seconds(1) })
        #expect(timing.wireTime(characters: ticket.bytes.count) > .milliseconds(500), "a ticket longer than the timeout")
        let result = try #require(printed.withLock { $0 })
        #expect(result.failure == nil, "the printed ticket is a success: \(String(describing: result.failure))")
        #expect(await bus.deviceStates().first?.counters.timeouts == 0)
    }

    @Test func bytesDroppedBeforeACommandAreCountedAsGarbage() async throws {
        // A command that clears the line first (an Onbon board's) dropped a partial frame without counting it.
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1])
        let line = SimulatedLine(end: .seconds(3), stop: stop, responder: devices.responder)
        var driver = TinyDriver(devices: Self.devices(1))
        driver.commandsDiscardStaleInput = true
        let bus = BusEngine(
            config: BusConfig(id: "line", transport: .serial(SerialSettings(port: "simulated")),
                              responseTimeout: .milliseconds(100), pollInterval: .seconds(10)),
            opener: line, clock: line, timing: .instant, hallId: "h", driver: driver, outbox: outbox,
            logger: CapturedLog().logger, onCommit: { _ in })
        // The start of a frame, then nothing: the command comes before the line has been quiet long enough to drop it.
        line.deliver([0x02, 1], at: .milliseconds(1000))
        line.at(.milliseconds(1010)) { bus.submit(.showText("A023"), to: "caller-1") { _ in } }
        await bus.run(until: stop)

        let deviceGarbage = await bus.deviceStates().map(\.counters.garbageBytes).reduce(0, +)
        #expect(deviceGarbage + bus.lineCounters().garbageBytes == 2)
    }

    @Test(arguments: [("device_cursor", "cannot read where caller-1 was left from the outbox"),
                      ("pad_staff", "cannot read the pads' staff ids from the outbox")])
    func anOutboxThatCannotBeReadHoldsTheBusUntilItCan(table: String, complaint: String) async throws {
        // Met without its cursor, a pad restarted under its boot id would give ids its first power-up used, dropped
        // as known; met without its staff id, a pad's first read would forget a write-back owed to it. A bus that
        // cannot read either polls none of its devices until it can.
        let stop = StopSignal()
        let devices = TinyDevices(answering: [1])
        let line = SimulatedLine(end: .seconds(5), stop: stop, responder: devices.responder)
        let log = CapturedLog()
        let bus = BusEngine(
            config: BusConfig(id: "line", transport: .serial(SerialSettings(port: "simulated")),
                              responseTimeout: .milliseconds(100), pollInterval: .milliseconds(100)),
            opener: line, clock: line, timing: .instant, hallId: "h", driver: TinyDriver(devices: Self.devices(1)),
            outbox: outbox, logger: log.logger, onCommit: { _ in })
        let other = try DatabaseQueue(path: folder.file("outbox.sqlite"))
        try await other.write { try $0.execute(sql: "ALTER TABLE \(table) RENAME TO \(table)_away") }
        line.at(.seconds(2)) {
            try? other.inDatabase { try $0.execute(sql: "ALTER TABLE \(table)_away RENAME TO \(table)") }
        }
        await bus.run(until: stop)

        #expect(log.text.components(separatedBy: complaint).count == 2, "said once: \(log.text)")
        let firstPoll = try #require(Self.polls(of: 1, in: line).first)
        #expect(firstPoll >= .seconds(2), "no device polled before the outbox was read")
    }

    @Test(.timeLimit(.minutes(1))) func aCancelledBusStops() async throws {
        let log = CapturedLog()
        let clock = SystemBusClock()
        let settings = SerialSettings(port: folder.file("ttyUSB-unplugged"))
        let bus = BusEngine(
            config: BusConfig(id: "line", transport: .serial(settings)),
            opener: SerialLinkOpener(settings: settings, clock: clock, label: "bus.line"), clock: clock,
            timing: .serial(settings, silenceBetweenFrames: false), hallId: "h", driver: TinyDriver(devices: Self.devices(1)),
            outbox: outbox, logger: log.logger, onCommit: { _ in })
        let running = Task { await bus.run(until: StopSignal()) }
        #expect(await eventually { log.text.contains("no such device") })
        running.cancel()
        _ = await running.value
        #expect(log.text.contains("bus line stopped"), "\(log.text)")
    }
}

extension Result where Failure == GatewayError {
    /// The error, if it failed.
    var failure: GatewayError? {
        if case .failure(let error) = self { error } else { nil }
    }
}

/// The gateway as swift-service-lifecycle runs it: cancelled, it stops, with what it read committed.
@Suite struct GatewayCancellationTests {
    @Test(.timeLimit(.minutes(1))) func aCancelledGatewayStopsWithWhatItReadCommitted() async throws {
        let bus = try MockFF68Bus()
        defer { bus.stop() }
        let folder = try TemporaryDirectory()
        let gateway = try testGateway(
            buses: "  - {id: ff68, transport: serial, port: \(bus.devicePath), poll-interval-ms: 100}",
            devices: "  - {id: eval-w03, profile: ff68-evaluator, bus: ff68, address: 3, window: \"3\"}", folder: folder)
        let running = Task { try await gateway.run() }
        bus.pressEvaluatorKey(3, address: 3)
        // Echoed only after the commit.
        #expect(await eventually { bus.acknowledged.count == 1 })
        running.cancel()
        try await running.value
        let entries = try await gateway.outbox.entries(after: 0, limit: 100)
        #expect(entries.filter { $0.type == HallEventType.ratingSubmitted }.count == 1)
    }
}

/// A serial line whose reads block the bus's thread, as a real one does, until their deadline or a wake; it keeps how
/// each read ended.
final class BlockingLine: LinkOpener, BusLink, Sendable {
    private struct State {
        var readNumber = 0
        var reading = false
        var woken = false
        var endedByWake: Set<Int> = []
        var idleReadsWaitedOut = 0
    }

    private let state = Mutex(State())
    private let condition = NSCondition()
    let executor: any SerialExecutor = BusExecutor(label: "blocking-line")
    /// The bus's clock: a read's deadline is on it.
    let clock = SystemBusClock()
    let endpoint = "blocking"
    var readsBlock: Bool { true }

    /// The read under way, if one is.
    var readUnderWay: Int? { state.withLock { $0.reading ? $0.readNumber : nil } }

    func endedByWake(_ read: Int) -> Bool { state.withLock { $0.endedByWake.contains(read) } }

    /// Reads of an idle line (a deadline of half a second or more) that ran to their deadline. A short read that does
    /// is the bus letting a question in: under load its loop may come round to one before the question is taken.
    var idleReadsWaitedOut: Int { state.withLock { $0.idleReadsWaitedOut } }

    nonisolated(nonsending) func open() async throws(GatewayError) -> any BusLink { self }
    nonisolated(nonsending) func write(_ bytes: [UInt8]) async throws(GatewayError) {}

    nonisolated(nonsending) func read(until deadline: Duration) async throws(GatewayError) -> [UInt8] {
        let number = state.withLock { state in
            state.readNumber += 1
            state.reading = true
            return state.readNumber
        }
        let idle = deadline - clock.now >= .milliseconds(500)
        blockThisThread(until: deadline)
        state.withLock { state in
            if state.woken { state.endedByWake.insert(number) } else if idle { state.idleReadsWaitedOut += 1 }
            state.woken = false
            state.reading = false
        }
        return []
    }

    /// As a serial line's poll(2): the bus's own thread waits here.
    private func blockThisThread(until deadline: Duration) {
        condition.lock()
        while !state.withLock({ $0.woken }), clock.now < deadline {
            _ = condition.wait(until: Date().addingTimeInterval(Double((deadline - clock.now) / .milliseconds(1)) / 1000))
        }
        condition.unlock()
    }

    func wake() {
        condition.lock()
        state.withLock { $0.woken = true }
        condition.broadcast()
        condition.unlock()
    }

    func discardInput() {}
    func close() {}
}

@Suite struct BusQuestionTests {
    /// `gatewayd status` asks every bus through the gateway's `any Bus`: an idle serial bus is woken from its read,
    /// not waited for (up to a second a line, found on the demo hall: 0.4-2.8 s for GET /v1/devices). Its line
    /// counters are read without it (a synchronous requirement of an actor is called on its executor: it must be
    /// nonisolated, or this would not compile without `await`).
    @Test func aBusBlockedInAReadIsWokenForItsStatesNotWaitedFor() async throws {
        let folder = try TemporaryDirectory()
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        let line = BlockingLine()
        let devices = BusEngineTests.devices(1)
        var driver = TinyDriver(devices: devices)
        driver.unprompted = ["caller-1"]
        let engine = BusEngine(
            config: BusConfig(id: "line", transport: .serial(SerialSettings(port: "blocking"))),
            opener: line, clock: line.clock, timing: .instant, hallId: "h", driver: driver,
            outbox: outbox, logger: CapturedLog().logger, onCommit: { _ in })
        let stop = StopSignal()
        let running = Task { await engine.run(until: stop) }
        let bus: any Bus = engine
        var read: Int?
        #expect(await eventually { read = line.readUnderWay; return read != nil })
        let waitedOut = line.idleReadsWaitedOut
        let states = await bus.deviceStates()
        let counters = bus.lineCounters()
        let waitedOutMeanwhile = line.idleReadsWaitedOut - waitedOut
        stop.stop()
        _ = await running.value

        #expect(states.map(\.device) == ["caller-1"])
        #expect(counters.garbageBytes == 0)
        let question = try #require(read)
        #expect(line.endedByWake(question), "the read under way when the question came was woken, not waited out")
        #expect(waitedOutMeanwhile == 0, "woken, the bus let the question in before reading again")
    }
}

@Suite struct EchoFilterTests {
    let write: [UInt8] = [0x01, 0x06, 0x00, 0x09, 0x00, 0x04, 0xD9, 0xCB]
    let poll: [UInt8] = [0x01, 0x03, 0x00, 0x00, 0x00, 0x20, 0x44, 0x12]

    /// A filter that saw the write's echo back whole before an equal answer could be complete: an echoing line.
    func filterTakingTheLineToEcho() -> EchoFilter {
        var filter = EchoFilter()
        filter.expect(write, at: .zero, until: .milliseconds(10), onlyEchoBefore: .milliseconds(20))
        #expect(filter.filter(write, arrivedAfter: .zero, readAt: .milliseconds(1)) == [])
        #expect(filter.lineEchoes == true)
        return filter
    }

    /// Found in a trial: a pad simulator on a pseudo-terminal answered a write faster than any wire allows, the line
    /// was taken to echo, and every acknowledgement's answer was eaten as our echo for ten minutes after.
    @Test func aLineTakenToEchoWhoseEchoesStopHandsAnswersEqualToTheRequestOnAgain() {
        var filter = filterTakingTheLineToEcho()
        // Then three polls whose echo never comes, only their answers.
        var now = Duration.milliseconds(100)
        for _ in 1...EchoFilter.missesBeforeNoEcho {
            filter.expect(poll, at: now, until: now + .milliseconds(10), onlyEchoBefore: now + .milliseconds(20))
            #expect(filter.filter([0x01, 0x03, 0x40], arrivedAfter: now, readAt: now + .milliseconds(30))
                == [0x01, 0x03, 0x40])
            now += .milliseconds(100)
        }
        #expect(filter.lineEchoes == false)
        filter.expect(write, at: now, until: now + .milliseconds(10), onlyEchoBefore: now + .milliseconds(20))
        #expect(filter.filter(write, arrivedAfter: now, readAt: now + .milliseconds(30)) == write,
                "the pad's answer to the write")
    }

    /// Found by a probe of a busy pad: a simulator on a pseudo-terminal answered each acknowledgement (a write of one
    /// register, answered with itself) faster than a wire allows, and one followed every poll: each answer was taken
    /// for an echo that came, the polls' misses never added up, and every acknowledgement timed out for good. Such a
    /// copy proves nothing either way: the polls tell.
    @Test func aWriteAnsweredWithItselfAfterEveryPollLeavesThePollsToTell() {
        var filter = EchoFilter()
        var now = Duration.zero
        var eaten = 0
        for _ in 1...EchoFilter.missesBeforeNoEcho {
            filter.expect(poll, at: now, until: now + .milliseconds(10), onlyEchoBefore: now + .milliseconds(20))
            #expect(filter.filter([0x01, 0x03, 0x40], arrivedAfter: now, readAt: now + .milliseconds(1)) == [0x01, 0x03, 0x40])
            now += .milliseconds(50)
            filter.expect(write, at: now, until: now + .milliseconds(10), onlyEchoBefore: now + .milliseconds(20),
                          answerMayEqualIt: true)
            // Answered at once, as no wire could.
            if filter.filter(write, arrivedAfter: now, readAt: now + .milliseconds(1)).isEmpty { eaten += 1 }
            #expect(filter.lineEchoes != true)
            now += .milliseconds(50)
        }
        #expect(filter.lineEchoes == false)
        #expect(eaten < EchoFilter.missesBeforeNoEcho, "the answers eaten before the polls told")
        filter.expect(write, at: now, until: now + .milliseconds(10), onlyEchoBefore: now + .milliseconds(20),
                      answerMayEqualIt: true)
        #expect(filter.filter(write, arrivedAfter: now, readAt: now + .milliseconds(1)) == write, "the pad's answer to the write")
    }

    /// A line wrongly taken to echo whose devices say nothing: each frame's expectation ends a second past its own
    /// window, so the filter learns the line does not echo, rather than keeping every frame to eat a later answer.
    @Test func aLineTakenToEchoWhoseDevicesAreSilentIsLearntNotToEcho() {
        var filter = filterTakingTheLineToEcho()
        // Polled every 300 ms for eight seconds, nothing comes back: no echo, no answer.
        var now = Duration.milliseconds(300)
        while now < .seconds(8) {
            filter.expect(poll, at: now, until: now + .milliseconds(60), onlyEchoBefore: now + .milliseconds(20))
            #expect(filter.filter([], arrivedAfter: now, readAt: now + .milliseconds(300)) == [])
            now += .milliseconds(300)
        }
        #expect(filter.lineEchoes == false)
        filter.expect(write, at: now, until: now + .milliseconds(60), onlyEchoBefore: now + .milliseconds(20))
        #expect(filter.filter(write, arrivedAfter: now, readAt: now + .milliseconds(30)) == write, "the pad's answer to the write")
    }

    /// On a line known to echo, an echo that comes after a read past its window is still ours: given to the driver,
    /// an FF 68 caller's acknowledgement would read as another press of its key.
    @Test func aLateEchoOnALineKnownToEchoIsStillOurs() {
        var filter = EchoFilter()
        let acknowledgement = FF68Frame.callerKeyPress(address: 33, action: .callNext).encode()
        filter.expect(acknowledgement, at: .zero, until: .milliseconds(60), onlyEchoBefore: .milliseconds(25))
        #expect(filter.filter(acknowledgement, arrivedAfter: .zero, readAt: .milliseconds(11)) == [])
        #expect(filter.lineEchoes == true)
        var now = Duration.seconds(1)
        for _ in 0...EchoFilter.missesBeforeNoEcho {
            filter.expect(acknowledgement, at: now, until: now + .milliseconds(60), onlyEchoBefore: now + .milliseconds(25))
            // A read that returns past the window with nothing, then the echo.
            #expect(filter.filter([], arrivedAfter: now, readAt: now + .milliseconds(70)) == [])
            #expect(filter.filter(acknowledgement, arrivedAfter: now + .milliseconds(70), readAt: now + .milliseconds(150))
                == [], "the late echo is dropped")
            now += .seconds(1)
        }
        #expect(filter.lineEchoes == true)
    }
}

@Suite struct FF68DriverTests {
    let library: ProfileLibrary
    init() { library = ProfileLibrary(directory: profilesDirectory) }

    let caller = DeviceConfig(id: "caller-w03", profile: "ff68-caller", bus: "ff68", address: 33, window: "3")

    func driver() throws -> FF68Driver {
        guard case .ff68Evaluator(let padProfile) = try library.profile(named: "ff68-evaluator"),
              case .ff68Caller(let callerProfile) = try library.profile(named: "ff68-caller")
        else { throw GatewayError(.profileMismatch, "ff68-evaluator or ff68-caller is not an FF 68 profile") }
        let pad = DeviceConfig(id: "eval-w03", profile: "ff68-evaluator", bus: "ff68", address: 3, window: "3")
        return FF68Driver(members: [(pad, .evaluator(padProfile)), (caller, .caller(callerProfile))], hallId: "h")
    }

    /// On a two-wire line whose echo the filter let through, our acknowledgement (FUNC 01) comes back from the pad's
    /// address between the pad's key frame and its repeat: the repeat is still the same rating.
    @Test func aRepeatAfterOurAcknowledgementHeardBackIsTheSameRating() throws {
        var driver = try driver()
        let key = FF68Frame.evaluatorKeyPress(address: 3, key: 2)
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        let first = driver.handle(key, inFlight: nil, at: start)
        _ = driver.handle(key.acknowledgement, inFlight: nil, at: start.addingTimeInterval(0.02))
        let again = driver.handle(key, inFlight: nil, at: start.addingTimeInterval(0.3))
        let ratings = (first.events + again.events).filter { $0.type == HallEventType.ratingSubmitted }
        #expect(ratings.count == 2 && Set(ratings.map(\.id)).count == 1, "\(ratings.map(\.id)): one press, one event id")
        #expect(again.afterCommit.map(\.bytes) == [key.acknowledgement.encode()], "the repeat is acknowledged")
    }

    /// A caller's display heard back on a two-wire line is not a key: not answered, and the key's repeat keeps its id.
    @Test func aCallersDisplayHeardBackIsNotAKey() throws {
        var driver = try driver()
        let key = FF68Frame.callerKeyPress(address: 33, action: .callNext)
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        let first = driver.handle(key, inFlight: nil, at: start)
        // A call, then a clear; the call's display and the beep of a recall are heard back after them.
        let call = try driver.requests(for: .call(ticket: "A013", window: "3"), to: caller)
        _ = try driver.requests(for: .clear, to: caller)
        let recall = try driver.requests(for: .recall(ticket: "A013", window: "3"), to: caller)
        var decoder = FF68Decoder()
        let heardBack = decoder.decode(try #require(call.first).bytes + recall.map(\.bytes).joined())
        #expect(heardBack.count == 3, "the display, the recall's display and its beep")
        for frame in heardBack {
            let echo = driver.handle(frame, inFlight: nil, at: start.addingTimeInterval(0.02))
            #expect(echo.events.isEmpty && echo.afterCommit.isEmpty, "\(frame): our frame is neither a key nor answered")
            #expect(echo.from == nil, "our frame heard back is no sign of the caller")
        }
        let again = driver.handle(key, inFlight: nil, at: start.addingTimeInterval(0.3))
        let keys = (first.events + again.events).filter { $0.type == HallEventType.callerKeyPressed }
        #expect(keys.count == 2 && Set(keys.map(\.id)).count == 1, "\(keys.map(\.id)): one press, one event id")
    }

    /// While the outbox refuses commits (a full disk) nothing is acknowledged and the pad repeats its frame about once
    /// a second: what the bus holds in memory is the one rating, not a copy a repeat (from a vendor's trial: copies
    /// filled the bound of 100,000 events and were counted as lost ratings when trimmed).
    @Test func aRatingRepeatedWhileTheOutboxRefusesCommitsIsHeldInMemoryOnce() throws {
        var driver = try driver()
        var pending = PendingCommit()
        let key = FF68Frame.evaluatorKeyPress(address: 3, key: 2)
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        for second in 0..<600 {
            let reaction = driver.handle(key, inFlight: nil, at: start.addingTimeInterval(Double(second)))
            pending.add(events: reaction.events, cursors: reaction.cursors, afterCommit: reaction.afterCommit)
            // Each commit attempt fails: what was taken is held again.
            let taken = pending.take(at: start)
            pending.restore(events: taken.events, cursors: taken.cursors, at: start)
        }
        #expect(pending.events.count == 1, "\(pending.events.count) events held for one key press")
        #expect(pending.cursors.count == 1)
        // Another press is another rating, held beside the first; the pad's cursor is its latest.
        let other = FF68Frame.evaluatorKeyPress(address: 3, key: 3)
        let reaction = driver.handle(other, inFlight: nil, at: start.addingTimeInterval(601))
        pending.add(events: reaction.events, cursors: reaction.cursors)
        #expect(pending.events.count == 2)
        #expect(pending.cursors == reaction.cursors)
        // An id is unique within its source only: two Modbus pads that drew one boot id give `rating-1234-7` each.
        let sameId = ["/halls/h/devices/eval-w01", "/halls/h/devices/eval-w02"].map { source in
            CloudEvent(id: "rating-1234-7", source: source, type: HallEventType.ratingSubmitted, time: start, subject: nil,
                       data: .deviceStatus(DeviceStatusChanged(device: "d", bus: "b", address: 1, reason: "")))
        }
        pending.add(events: sameId)
        #expect(pending.events.count == 4, "both pads' ratings are held")
    }

    /// Past the memory bound the oldest events held go and their ratings are tallied as lost; a rating the pad then
    /// repeats is held again and no longer counted lost (from a second read: it was stored and counted lost).
    @Test func aRatingTrimmedFromMemoryAndRepeatedIsNotCountedLost() throws {
        var driver = try driver()
        var pending = PendingCommit()
        let key = FF68Frame.evaluatorKeyPress(address: 3, key: 2)
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        let first = driver.handle(key, inFlight: nil, at: start)
        pending.add(events: first.events, cursors: first.cursors)
        // A full disk for long on a busy bus: memory fills behind the rating.
        pending.add(events: (0..<BusCommitter.maximumUncommitted).map { number in
            CloudEvent(id: "e\(number)", source: "/halls/h/devices/other", type: HallEventType.deviceOnline, time: start,
                       subject: nil, data: .deviceStatus(DeviceStatusChanged(device: "other", bus: "b", address: 1, reason: "")))
        })
        let taken = pending.take(at: start)
        pending.restore(events: taken.events, cursors: taken.cursors, at: start)
        #expect(pending.trim()?.ratings == 1, "the rating, the oldest, is trimmed and tallied")
        let again = driver.handle(key, inFlight: nil, at: start.addingTimeInterval(1))
        pending.add(events: again.events, cursors: again.cursors)
        let next = pending.take(at: start.addingTimeInterval(2))
        #expect(next.events.filter { $0.type == HallEventType.ratingSubmitted }.count == 1)
        #expect(!next.events.contains { $0.data.fault?.fault == "ratings-lost" }, "held again, not lost")
    }

    /// From reading the long-lived state: past the memory bound, each rating trimmed was remembered (to know a
    /// repeat) and its number kept until a commit, without end on a disk full for days. The loss stays exact; what is
    /// remembered is bounded.
    @Test func ratingsTrimmedForDaysAreCountedExactlyInBoundedMemory() throws {
        var pending = PendingCommit()
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        let trimmed = 3 * PendingCommit.rememberedTrims
        pending.add(events: (1...trimmed).map { number in
            CloudEvent(id: "r\(number)", source: "/halls/h/devices/eval-w01", type: HallEventType.ratingSubmitted, time: start,
                       subject: "window/1",
                       data: .rating(RatingSubmitted(window: "1", staffId: "0101", level: 4, levelLabel: "满意", key: 1,
                                                     keyLabel: "满意", scale: "three-key", deviceCounter: Int64(number))))
        } + (0..<BusCommitter.maximumUncommitted).map { number in
            CloudEvent(id: "e\(number)", source: "/halls/h/devices/other", type: HallEventType.deviceOnline, time: start,
                       subject: nil, data: .deviceStatus(DeviceStatusChanged(device: "other", bus: "b", address: 1, reason: "")))
        })
        let taken = pending.take(at: start)
        pending.restore(events: taken.events, cursors: taken.cursors, at: start)
        #expect(pending.trim()?.ratings == trimmed)
        #expect(pending.trimmedRatingsRemembered <= 2 * PendingCommit.rememberedTrims)
        let faults = pending.take(at: start.addingTimeInterval(60)).events.compactMap { $0.data.fault }
            .filter { $0.fault == "ratings-lost" }
        #expect(faults.map(\.count) == [Int64(trimmed)])
        #expect(faults.first?.detail.hasPrefix("\(trimmed) ratings lost (numbers between 1 and \(trimmed))") == true,
                "\(faults)")
    }

    /// Our FUNC 01 acknowledgement heard back is no sign of the pad (an unplugged pad would look alive).
    @Test func ourAcknowledgementHeardBackIsNoSignOfThePad() throws {
        var driver = try driver()
        let key = FF68Frame.evaluatorKeyPress(address: 3, key: 2)
        #expect(driver.handle(key.acknowledgement, inFlight: nil, at: Date(timeIntervalSince1970: 1_790_000_000)).from == nil)
    }

    /// A clock set back while a pad repeats does not hold its acknowledgement back for as long as the step.
    @Test func aRepeatAfterTheClockWasSetBackIsAcknowledged() throws {
        var driver = try driver()
        let key = FF68Frame.evaluatorKeyPress(address: 3, key: 2)
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        #expect(!driver.handle(key, inFlight: nil, at: start).afterCommit.isEmpty)
        // The acknowledgement was lost; NTP steps the clock five minutes back before the repeat.
        #expect(!driver.handle(key, inFlight: nil, at: start.addingTimeInterval(-300 + 0.3)).afterCommit.isEmpty)
    }

    /// A lost acknowledgement costs one repeat; the echo of one just sent is not answered.
    @Test func aRepeatIsAcknowledgedAgainOnlyAfterTheSpacing() throws {
        var driver = try driver()
        let key = FF68Frame.evaluatorKeyPress(address: 3, key: 3)
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        func acknowledged(after seconds: Double) -> Bool {
            !driver.handle(key, inFlight: nil, at: start.addingTimeInterval(seconds)).afterCommit.isEmpty
        }
        #expect(acknowledged(after: 0))
        #expect(!acknowledged(after: 0.05), "inside 200 ms of the acknowledgement")
        #expect(acknowledged(after: 0.3), "the pad's repeat 300 ms on")
        #expect(!acknowledged(after: 0.6), "inside 400 ms of the second")
        #expect(acknowledged(after: 0.9))
        // The spacing stops doubling at 1.6 s: a pad that keeps repeating is still answered.
        #expect(acknowledged(after: 1.7) && acknowledged(after: 3.4) && acknowledged(after: 5.1))
        #expect(!acknowledged(after: 6.6), "inside 1.6 s of the last")
        #expect(acknowledged(after: 6.8))
    }
}
