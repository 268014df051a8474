import CPseudoTerminal
import Foundation
import Synchronization

/// The speed and framing of a simulated serial line, for mocks that move bytes at their real wire time.
///
/// A pseudo-terminal moves bytes at once; with pacing a mock takes what the host wrote as arriving one
/// character per `characterTime`, answers only after the request's last character plus `frameGap`, and
/// writes its own bytes one at a time, back to back, as a UART would. Timing measured against a paced mock
/// is then the wire's timing.
public struct WirePacing: Sendable, Hashable, CustomStringConvertible {
    /// The parity bit of each character.
    public enum Parity: Sendable, Hashable {
        /// No parity bit.
        case none
        /// An even-parity bit.
        case even
        /// An odd-parity bit.
        case odd
    }

    /// Bits per second.
    public var baud: Int
    /// Data bits per character (5 to 8).
    public var dataBits: Int
    /// The parity bit, if any.
    public var parity: Parity
    /// Stop bits per character (1 or 2).
    public var stopBits: Int

    /// A line at `baud` with the given framing; 8N1 unless told.
    public init(baud: Int, dataBits: Int = 8, parity: Parity = .none, stopBits: Int = 1) {
        precondition(baud > 0, "baud must be positive")
        precondition((5...8).contains(dataBits), "data bits must be 5 to 8")
        precondition((1...2).contains(stopBits), "stop bits must be 1 or 2")
        self.baud = baud
        self.dataBits = dataBits
        self.parity = parity
        self.stopBits = stopBits
    }

    /// Bits on the wire per character: start, data, parity if any, stop.
    public var bitsPerCharacter: Int { 1 + dataBits + (parity == .none ? 0 : 1) + stopBits }

    /// How long one character takes on the wire.
    public var characterTime: Duration { .seconds(bitsPerCharacter) / baud }

    /// The silence that ends a Modbus RTU frame: 3.5 characters, at least 1.75 ms (the spec's fixed value above
    /// 19200 baud). A paced mock starts answering no sooner than this after the request's last character.
    public var frameGap: Duration { max(characterTime * 7 / 2, .microseconds(1750)) }

    /// How long `characters` characters take on the wire, back to back.
    public func wireTime(characters: Int) -> Duration { characterTime * characters }

    /// The usual notation, such as "9600 8N1".
    public var description: String {
        let letter = switch parity {
        case .none: "N"
        case .even: "E"
        case .odd: "O"
        }
        return "\(baud) \(dataBits)\(letter)\(stopBits)"
    }

    /// `characterTime` in whole nanoseconds, rounded up so that paced bytes are never early.
    var characterNanoseconds: Int64 { characterTime.nanosecondsRoundedUp }

    /// `frameGap` in whole nanoseconds, rounded up.
    var frameGapNanoseconds: Int64 { frameGap.nanosecondsRoundedUp }
}

extension Duration {
    fileprivate var nanosecondsRoundedUp: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + (attoseconds + 999_999_999) / 1_000_000_000
    }
}

/// CLOCK_MONOTONIC in nanoseconds, and a wait until an instant on it.
enum MonotonicClock {
    static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }

    /// Returns at `deadline` or just after it, never before: sleeps until `spinning` ns before it, then spins, since
    /// a sleeping thread wakes some tens of microseconds late (Linux's default timer slack is 50 µs).
    static func wait(until deadline: Int64, spinning: Int64) {
        let wake = deadline - spinning
        if now() < wake {
            #if canImport(Glibc)
            var target = timespec(tv_sec: Int(wake / 1_000_000_000), tv_nsec: Int(wake % 1_000_000_000))
            while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, nil) == EINTR {}
            #else
            let left = wake - now()
            var interval = timespec(tv_sec: Int(left / 1_000_000_000), tv_nsec: Int(left % 1_000_000_000))
            while nanosleep(&interval, &interval) != 0, errno == EINTR {}
            #endif
        }
        while now() < deadline {}
    }
}

extension WirePacing {
    /// How long before each deadline a paced mock stops sleeping and spins: 80 µs, an eighth of a character at
    /// high speeds so that a fast line does not keep a core spinning.
    var spinNanoseconds: Int64 { min(80_000, characterNanoseconds / 8) }
}

/// Writes a mock's frames to its line one byte per character time, back to back, from a thread of its own.
///
/// Frames are queued (callers never block for the wire time) and go out in order; each byte is written when its
/// last bit would have reached the host, so the host sees the frame trickle in as from a UART.
final class PacedTransmitter: Sendable {
    private struct Pending {
        var frames: [(bytes: [UInt8], notBefore: Int64)] = []
        var running = true
        /// When the frames queued so far will have arrived, unless the thread is held up (CLOCK_MONOTONIC ns).
        var plannedUntil: Int64 = 0
    }

    private let pending = Mutex(Pending())
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    /// When the last frame's last byte was written (CLOCK_MONOTONIC ns); 0 before any.
    private let lastFrameWritten = Atomic<Int64>(0)

    private let characterTime: Int64

    /// Starts the transmitter on `terminal`'s controller side, which it keeps open while it runs.
    init(terminal: PseudoTerminal, pacing: WirePacing) {
        let characterTime = pacing.characterNanoseconds
        self.characterTime = characterTime
        let spin = pacing.spinNanoseconds
        Thread.detachNewThread { [self] in transmit(to: terminal, characterTime: characterTime, spin: spin) }
    }

    /// Queues `bytes` to start on the wire at `notBefore` (CLOCK_MONOTONIC ns) or when the line is free, whichever
    /// is later.
    func send(_ bytes: [UInt8], notBefore: Int64 = MonotonicClock.now()) {
        guard !bytes.isEmpty else { return }
        let queued = pending.withLock { pending in
            guard pending.running else { return false }
            pending.frames.append((bytes, notBefore))
            pending.plannedUntil = max(notBefore, pending.plannedUntil) + Int64(bytes.count) * characterTime
            return true
        }
        if queued { wake.signal() }
    }

    /// When what was sent so far will have arrived at the host, as planned (CLOCK_MONOTONIC ns; 0 before any).
    var plannedUntil: Int64 { pending.withLock { $0.plannedUntil } }

    /// Drops what is queued, stops after the byte on the wire and waits for the thread, so that the line can close.
    func stop() {
        let wasRunning = pending.withLock { pending in
            defer { pending.running = false }
            return pending.running
        }
        guard wasRunning else { return }
        wake.signal()
        finished.wait()
    }

    private var running: Bool { pending.withLock { $0.running } }

    /// When the last frame sent had fully arrived at the host; nil before any.
    var lastFrameArrived: ContinuousClock.Instant? {
        let written = lastFrameWritten.load(ordering: .acquiring)
        guard written > 0 else { return nil }
        return ContinuousClock.now - .nanoseconds(MonotonicClock.now() - written)
    }

    private func transmit(to terminal: PseudoTerminal, characterTime: Int64, spin: Int64) {
        defer { finished.signal() }
        var lineFreeAt: Int64 = 0
        while true {
            wake.wait()
            let next = pending.withLock { pending -> (bytes: [UInt8], notBefore: Int64)? in
                guard pending.running, !pending.frames.isEmpty else { return nil }
                return pending.frames.removeFirst()
            }
            guard let (bytes, notBefore) = next else {
                if running { continue } else { return }
            }
            var start = max(notBefore, lineFreeAt)
            for (index, byte) in bytes.enumerated() {
                let due = start + Int64(index + 1) * characterTime
                MonotonicClock.wait(until: due, spinning: spin)
                // Held up by the scheduler (a loaded machine), the rest of the frame moves later, as a UART resumes
                // at its own pace, rather than bursting to catch up; wake-up jitter (under a character or 0.5 ms)
                // is caught up, so that it does not add up over a frame.
                let lateness = MonotonicClock.now() - due
                if lateness > max(characterTime, 500_000) { start += lateness }
                guard running, writable(terminal.controller) else { return }
                var value = byte
                guard write(terminal.controller, &value, 1) == 1 else { break }
            }
            lastFrameWritten.store(MonotonicClock.now(), ordering: .releasing)
            lineFreeAt = start + Int64(bytes.count) * characterTime
        }
    }

    /// Waits while the pseudo-terminal's buffer is full (a host that does not read), so that `stop` is not stuck
    /// behind a blocked write; false once stopped.
    private func writable(_ fd: Int32) -> Bool {
        while running {
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&entry, 1, 20) > 0 { return true }
        }
        return false
    }
}

extension PseudoTerminal {
    /// Waits up to `milliseconds` for bytes from the host on the controller side; true when there are some.
    ///
    /// From just before `expected`, when a host keeping the frame gap may next write, until half a millisecond
    /// after it (a host's usual turnaround), it polls without sleeping: a thread woken by poll(2) reads 50–170 µs
    /// after the host's write, which would stretch every paced request, where a UART hears each character as it
    /// arrives. Outside that window it sleeps as usual.
    func awaitHost(expected: Int64, pacing: WirePacing, milliseconds: Int32) -> Bool {
        var entry = pollfd(fd: controller, events: Int16(POLLIN), revents: 0)
        let spinFrom = expected - pacing.spinNanoseconds
        let spinUntil = expected + max(500_000, pacing.characterNanoseconds / 2)
        let now = MonotonicClock.now()
        if now < spinUntil {
            if now < spinFrom, hall_wait_readable(controller, spinFrom - now) > 0 { return true }
            repeat {
                if poll(&entry, 1, 0) > 0 { return true }
            } while MonotonicClock.now() < spinUntil
        }
        return poll(&entry, 1, milliseconds) > 0
    }
}
