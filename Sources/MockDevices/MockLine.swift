import Foundation
import Synchronization

/// The device end of a simulated serial line: a pseudo-terminal whose controller side a thread reads,
/// handing each chunk to the simulated devices, which may answer.
///
/// The gateway opens `devicePath` as it would open `/dev/ttyUSB0`.
public final class MockLine: Sendable {
    /// What the devices on the line do with bytes from the host: the bytes to answer, if any.
    public typealias Handler = @Sendable ([UInt8]) -> [UInt8]

    private let terminal: PseudoTerminal
    private let running = Mutex(true)
    private let receivedCount = Mutex(0)
    private let finished = DispatchSemaphore(value: 0)
    /// The line's speed and framing when bytes move at their wire time; nil when they move at once.
    public let pacing: WirePacing?
    /// Present with pacing: every byte to the host goes through it, in order.
    private let transmitter: PacedTransmitter?

    /// The path the gateway opens.
    public var devicePath: String { terminal.devicePath }

    /// Opens a line and starts reading it; `echoing` sends every byte from the host straight back, as a two-wire
    /// RS-485 adapter without echo suppression does.
    ///
    /// With `pacing`, bytes move at the line's wire time: what the host wrote reaches `handler` once its last
    /// character would have arrived, the answer starts `pacing.frameGap` later, and everything sent goes out one
    /// character time per byte. Without it bytes move at once.
    public init(echoing: Bool = false, pacing: WirePacing? = nil, handler: @escaping Handler) throws {
        let terminal = try PseudoTerminal()
        self.terminal = terminal
        self.pacing = pacing
        transmitter = pacing.map { PacedTransmitter(terminal: terminal, pacing: $0) }
        if let pacing, let transmitter {
            Thread.detachNewThread { [self] in pacedLoop(echoing: echoing, handler, pacing, transmitter) }
        } else {
            Thread.detachNewThread { [self] in loop(echoing: echoing, handler) }
        }
    }

    /// How many bytes the host has sent so far.
    public var byteCountFromHost: Int { receivedCount.withLock { $0 } }

    /// Sends bytes to the host, as a device speaking unprompted; with pacing they are queued and go out at the
    /// line's speed after whatever is already on its way.
    public func send(_ bytes: [UInt8]) {
        if let transmitter {
            transmitter.send(bytes)
            return
        }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(terminal.controller, $0.baseAddress, $0.count) }
            if written <= 0 { return }
            offset += written
        }
    }

    /// Stops reading; the line stays open until the object goes away.
    public func stop() {
        guard running.withLock({ let was = $0; $0 = false; return was }) else { return }
        finished.wait()
        transmitter?.stop()
    }

    private func loop(echoing: Bool, _ handler: Handler) {
        defer { finished.signal() }
        var buffer = [UInt8](repeating: 0, count: 512)
        while running.withLock({ $0 }) {
            var entry = pollfd(fd: terminal.controller, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 20) > 0 else { continue }
            let count = read(terminal.controller, &buffer, buffer.count)
            guard count > 0 else { continue }
            let chunk = Array(buffer[0..<count])
            receivedCount.withLock { $0 += chunk.count }
            if echoing { send(chunk) }
            let answer = handler(chunk)
            if !answer.isEmpty { send(answer) }
        }
    }

    /// The loop of a paced line: a chunk counts as arriving one character after another from when it was read (or
    /// from the end of the previous chunk, if that was still arriving), and is handled once complete.
    private func pacedLoop(echoing: Bool, _ handler: Handler, _ pacing: WirePacing, _ transmitter: PacedTransmitter) {
        defer { finished.signal() }
        let characterTime = pacing.characterNanoseconds
        var buffer = [UInt8](repeating: 0, count: 512)
        var arrivingUntil: Int64 = 0
        while running.withLock({ $0 }) {
            // A host keeping the frame gap writes after the line's last character and the gap.
            let hostMayWrite = max(arrivingUntil, transmitter.plannedUntil) + pacing.frameGapNanoseconds
            guard terminal.awaitHost(expected: hostMayWrite, pacing: pacing, milliseconds: 20) else { continue }
            let count = read(terminal.controller, &buffer, buffer.count)
            guard count > 0 else { continue }
            let start = max(MonotonicClock.now(), arrivingUntil)
            arrivingUntil = start + Int64(count) * characterTime
            let chunk = Array(buffer[0..<count])
            // The adapter's echo is the host's own signal: each byte comes back as it crosses the wire.
            if echoing { transmitter.send(chunk, notBefore: start) }
            MonotonicClock.wait(until: arrivingUntil, spinning: pacing.spinNanoseconds)
            receivedCount.withLock { $0 += chunk.count }
            let answer = handler(chunk)
            transmitter.send(answer, notBefore: arrivingUntil + pacing.frameGapNanoseconds)
        }
    }
}

/// Shared mutable state of a mock device, reachable from its reading thread and from the test.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    func callAsFunction<Result>(_ body: (inout Value) -> Result) -> Result {
        mutex.withLock { body(&$0) }
    }
}
