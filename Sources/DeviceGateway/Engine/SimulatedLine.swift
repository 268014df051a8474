public import Foundation
import Synchronization

/// A bus line in memory with a virtual clock, for testing the engine deterministically (as swift-nio tests
/// handlers on an embedded channel): time moves only when the engine waits, the devices are closures that
/// answer written frames after a given delay, and every byte on the line is logged with its virtual time.
///
/// It is at once the bus's `LinkOpener`, its `BusLink` and its `BusClock`. Once time reaches `end`, it fires `stop`:
/// the engine finishes the request in flight, commits and returns.
public final class SimulatedLine: LinkOpener, BusClock, BusLink, Sendable {
    /// What devices say to a frame the gateway wrote: chunks of bytes, each delivered `after` the frame's last
    /// byte left the gateway (so a device's turnaround and its answer's own wire time are the caller's to add). A
    /// frame written while the line still sends the one before goes out after it, as from a UART's buffer.
    public typealias Responder = @Sendable (_ frame: [UInt8], _ at: Duration) -> [(after: Duration, bytes: [UInt8])]

    /// A frame on the wire, as the log keeps it.
    public struct Record: Sendable, Equatable {
        public enum Direction: Sendable, Equatable { case fromGateway, toGateway }
        public var time: Duration
        public var direction: Direction
        public var bytes: [UInt8]
    }

    private struct State {
        var now: Duration = .zero
        var deliveries: [(time: Duration, bytes: [UInt8])] = []
        var actions: [(time: Duration, action: @Sendable () -> Void)] = []
        var log: [Record] = []
        var plugged = true
        var openCount = 0
        var openAttempts: [Duration] = []
        var hangUpAfterWrites: Int?
        var linkGeneration = 0
        var responder: Responder
        /// When the last frame written has left the line.
        var sendingUntil: Duration = .zero
        var echoing = false
        var echoDelay: Duration = .zero
        /// How long after its bytes arrived a read returns: a loaded machine's engine reads late.
        var readDelay: Duration = .zero
        /// A wake came while an action ran: the read in progress returns.
        var woken = false
    }

    private let state: Mutex<State>
    private let timing: LineTiming
    private let end: Duration
    private let stop: StopSignal
    private let origin: Date
    public let executor: any SerialExecutor = BusExecutor(label: "simulated-line")

    /// A line whose devices answer through `responder`; `timing` gives written bytes their wire time.
    public init(timing: LineTiming = .instant, end: Duration, stop: StopSignal,
                origin: Date = Date(timeIntervalSince1970: 1_790_000_000), responder: @escaping Responder) {
        state = Mutex(State(responder: responder))
        self.timing = timing
        self.end = end
        self.stop = stop
        self.origin = origin
    }

    // MARK: What tests do

    /// Runs `action` when virtual time reaches `time` (a key press, an unplugged cable, a command).
    public func at(_ time: Duration, _ action: @escaping @Sendable () -> Void) {
        state.withLock { $0.actions.append((time, action)) }
    }

    /// Bytes a device sends unprompted, arriving at `time`.
    public func deliver(_ bytes: [UInt8], at time: Duration) {
        state.withLock { $0.deliveries.append((time, bytes)) }
    }

    /// Unplugs the line (reads and writes fail, opening fails) or plugs it back.
    public func setPlugged(_ plugged: Bool) {
        state.withLock {
            $0.plugged = plugged
            if !plugged { $0.linkGeneration += 1 }
        }
    }

    /// While set, a link opened takes `writes` frames (and their answers) and then breaks, as a peer that accepts a
    /// connection and closes it (0: at once); nil: links last.
    public func setHangingUp(afterWrites writes: Int?) { state.withLock { $0.hangUpAfterWrites = writes } }

    /// Replaces how the devices answer.
    public func setResponder(_ responder: @escaping Responder) { state.withLock { $0.responder = responder } }

    /// Whether every written frame comes straight back, as on a two-wire adapter without echo suppression.
    public func setEchoing(_ echoing: Bool) { state.withLock { $0.echoing = echoing } }

    /// Makes the echo come `delay` after the frame has left, as from a simulator's thread on a loaded machine.
    public func setEchoDelay(_ delay: Duration) { state.withLock { $0.echoDelay = delay } }

    /// Makes every read return `delay` after the bytes it returns arrived, as on a machine too busy to run the
    /// engine at once: what arrived meanwhile comes in the same read.
    public func setReadDelay(_ delay: Duration) { state.withLock { $0.readDelay = delay } }

    /// Every frame written and delivered so far, in time order.
    public var log: [Record] { state.withLock { $0.log } }

    /// The frames the gateway wrote.
    public var written: [Record] { log.filter { $0.direction == .fromGateway } }

    /// How many times the link was opened.
    public var openCount: Int { state.withLock { $0.openCount } }

    /// When the engine tried to open the link, successfully or not.
    public var openAttempts: [Duration] { state.withLock { $0.openAttempts } }

    // MARK: BusClock

    public var now: Duration { state.withLock { $0.now } }
    public var date: Date { origin.addingTimeInterval(Double(now / .microseconds(1)) / 1_000_000) }

    public nonisolated(nonsending) func sleep(until deadline: Duration, stop: StopSignal) async {
        advance(to: deadline)
    }

    public func sleepOnThisThread(until deadline: Duration) { advance(to: deadline) }

    // MARK: LinkOpener

    public var endpoint: String { "simulated" }

    public nonisolated(nonsending) func open() async throws(GatewayError) -> any BusLink {
        let opened = state.withLock { state -> (generation: Int, writes: Int?)? in
            state.openAttempts.append(state.now)
            guard state.plugged else { return nil }
            state.openCount += 1
            return (state.linkGeneration, state.hangUpAfterWrites)
        }
        guard let opened else { throw GatewayError(.portUnavailable, "cannot open simulated: no such device") }
        return SimulatedLink(line: self, generation: opened.generation, writesBeforeHangUp: opened.writes)
    }

    // MARK: BusLink (through SimulatedLink, which knows whether it outlived an unplug)

    public nonisolated(nonsending) func write(_ bytes: [UInt8]) async throws(GatewayError) {
        let responses = state.withLock { state -> [(Duration, [UInt8])] in
            state.log.append(Record(time: state.now, direction: .fromGateway, bytes: bytes))
            // As a UART: the frame goes on the wire after what the line is still sending.
            let sent = max(state.now, state.sendingUntil)
            let onWire = timing.wireTime(characters: bytes.count)
            state.sendingUntil = sent + onWire
            var responses = state.responder(bytes, sent).map { (sent + onWire + $0.after, $0.bytes) }
            if state.echoing { responses.insert((sent + onWire + state.echoDelay, bytes), at: 0) }
            return responses
        }
        state.withLock { $0.deliveries += responses.map { (time: $0.0, bytes: $0.1) } }
    }

    public nonisolated(nonsending) func read(until deadline: Duration) async throws(GatewayError) -> [UInt8] {
        while true {
            let next = state.withLock { state -> (time: Duration, isAction: Bool)? in
                let delivery = state.deliveries.map(\.time).min()
                let action = state.actions.map(\.time).min()
                switch (delivery, action) {
                case (nil, nil): return nil
                case (let d?, nil): return (d, false)
                case (nil, let a?): return (a, true)
                case (let d?, let a?): return a <= d ? (a, true) : (d, false)
                }
            }
            guard let next, next.time <= deadline else {
                advance(to: deadline)
                return []
            }
            if next.isAction {
                advance(to: next.time)
                if state.withLock({ let woken = $0.woken; $0.woken = false; return woken }) { return [] }
                continue
            }
            let bytes = state.withLock { state in
                state.now = max(state.now, next.time + state.readDelay)
                let due = state.deliveries.filter { $0.time <= state.now }.sorted { $0.time < $1.time }
                state.deliveries.removeAll { $0.time <= state.now }
                let bytes = due.flatMap(\.bytes)
                state.log.append(Record(time: state.now, direction: .toGateway, bytes: bytes))
                return bytes
            }
            if next.time >= end { stop.stop() }
            return bytes
        }
    }

    public func discardInput() {
        state.withLock { state in state.deliveries.removeAll { $0.time <= state.now } }
    }

    public func close() {}

    public func wake() { state.withLock { $0.woken = true } }

    /// Moves virtual time to `time`, running the actions due on the way; at `end` the engine is told to stop.
    private func advance(to time: Duration) {
        while true {
            let action = state.withLock { state -> (@Sendable () -> Void)? in
                guard let index = state.actions.indices.filter({ state.actions[$0].time <= time })
                    .min(by: { state.actions[$0].time < state.actions[$1].time })
                else { return nil }
                let action = state.actions.remove(at: index)
                state.now = max(state.now, action.time)
                return action.action
            }
            guard let action else { break }
            action()
        }
        state.withLock { $0.now = max($0.now, time) }
        if time >= end { stop.stop() }
    }

    fileprivate func isCurrent(_ generation: Int) -> Bool {
        state.withLock { $0.plugged && $0.linkGeneration == generation }
    }
}

/// One opening of a simulated line: unplugging the line breaks it for good, as a USB adapter's file descriptor.
private final class SimulatedLink: BusLink {
    let line: SimulatedLine
    let generation: Int
    /// Frames the peer takes before it hangs up; nil: it does not.
    let writesBeforeHangUp: Int?
    private let writes = Mutex(0)

    init(line: SimulatedLine, generation: Int, writesBeforeHangUp: Int?) {
        self.line = line
        self.generation = generation
        self.writesBeforeHangUp = writesBeforeHangUp
    }

    var endpoint: String { line.endpoint }

    private var hungUp: Bool { writesBeforeHangUp.map { allowed in writes.withLock { $0 } > allowed } ?? false }

    nonisolated(nonsending) func write(_ bytes: [UInt8]) async throws(GatewayError) {
        writes.withLock { $0 += 1 }
        guard line.isCurrent(generation), !hungUp else { throw GatewayError(.portUnavailable, "simulated hung up") }
        try await line.write(bytes)
    }

    nonisolated(nonsending) func read(until deadline: Duration) async throws(GatewayError) -> [UInt8] {
        // Once the peer took its last frame, the read after its answer finds the connection closed.
        guard line.isCurrent(generation), !hungUp, writesBeforeHangUp != 0 else {
            throw GatewayError(.portUnavailable, "simulated hung up")
        }
        let bytes = try await line.read(until: deadline)
        guard line.isCurrent(generation) else { throw GatewayError(.portUnavailable, "simulated hung up") }
        return bytes
    }

    func discardInput() { line.discardInput() }

    func close() {}

    func wake() { line.wake() }
}
