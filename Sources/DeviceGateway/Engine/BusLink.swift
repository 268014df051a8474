public import Foundation

/// The byte pipe a bus owns: a serial line, a TCP connection, or a simulated line in tests.
///
/// Methods run on the caller's executor (`nonisolated(nonsending)`): a serial link may block in `poll(2)`
/// because its bus runs on the link's own thread (`executor`), never on the cooperative pool.
public protocol BusLink: AnyObject, Sendable {
    /// Where the link goes, for messages: a device path or host:port.
    var endpoint: String { get }
    /// Writes all bytes.
    nonisolated(nonsending) func write(_ bytes: [UInt8]) async throws(GatewayError)
    /// The bytes that arrive before `deadline` on the bus's clock; empty when none did.
    nonisolated(nonsending) func read(until deadline: Duration) async throws(GatewayError) -> [UInt8]
    /// Drops input not read yet (after a timeout, before a request on a line where nothing speaks unprompted).
    func discardInput()
    /// Closes the link; the bus opens a new one to carry on.
    func close()
    /// Makes a read in progress return now, empty: a command arrived, or the bus is stopping. Safe from any thread.
    func wake()
    /// Whether a read blocks its thread instead of suspending: the engine then yields now and then, so that callers
    /// of the bus (its states, its commands) get their turn.
    var readsBlock: Bool { get }
}

extension BusLink {
    public var readsBlock: Bool { false }
}

/// Opens the links of one bus, and says where its engine runs.
public protocol LinkOpener: Sendable {
    /// Where the link goes, for messages.
    var endpoint: String { get }
    /// The executor the bus's engine runs on: a thread of its own where the link blocks, the event loop of a
    /// non-blocking one.
    var executor: any SerialExecutor { get }
    /// Where the task that runs the bus should prefer to run its nonisolated work, if anywhere: a reply then
    /// resumes it where the link's events come from, with no hop through the global pool.
    var preferredTaskExecutor: (any TaskExecutor)? { get }
    /// Opens the link (again).
    nonisolated(nonsending) func open() async throws(GatewayError) -> any BusLink
}

extension LinkOpener {
    /// None by default: a blocking link's thread is the bus's executor already.
    public var preferredTaskExecutor: (any TaskExecutor)? { nil }
}

/// Time as a bus sees it: the machine's, or a virtual one that tests drive.
public protocol BusClock: Sendable {
    /// Time since the clock's origin.
    var now: Duration { get }
    /// The wall-clock time events are stamped with.
    var date: Date { get }
    /// Returns at `deadline`, or earlier when `stop` fires or the task is cancelled.
    nonisolated(nonsending) func sleep(until deadline: Duration, stop: StopSignal) async
    /// Returns at `deadline`, blocking the calling thread: only for an engine on a thread of its own (a link whose
    /// reads block), waiting a frame gap.
    func sleepOnThisThread(until deadline: Duration)
}

/// The machine's monotonic clock.
public struct SystemBusClock: BusClock {
    private let origin = ContinuousClock.now

    /// A clock whose origin is now.
    public init() {}

    public var now: Duration { ContinuousClock.now - origin }
    public var date: Date { Date() }

    public nonisolated(nonsending) func sleep(until deadline: Duration, stop: StopSignal) async {
        let left = deadline - now
        guard left > .zero else { return }
        await stop.sleep(for: left)
    }

    /// How much of a wait on a bus's own thread is spun, not slept: the kernel wakes a sleeper 0.1-0.3 ms late here
    /// (timer slack, then the scheduler), which every frame gap and every command waiting for one would pay.
    static let spun = Duration.microseconds(250)

    public func sleepOnThisThread(until deadline: Duration) {
        let left = deadline - now
        guard left > .zero else { return }
        if left > Self.spun {
            var wake = timespec()
            clock_gettime(CLOCK_MONOTONIC, &wake)
            let (seconds, attoseconds) = (left - Self.spun).components
            let nanoseconds = Int(wake.tv_nsec) + Int(attoseconds / 1_000_000_000)
            wake.tv_sec += Int(seconds) + nanoseconds / 1_000_000_000
            wake.tv_nsec = nanoseconds % 1_000_000_000
            while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, nil) == EINTR {}
        }
        while now < deadline {}
    }
}

/// How long bytes take on the wire, and the silence a frame boundary needs.
public struct LineTiming: Sendable, Equatable {
    /// One character: start bit, data bits, parity bit, stop bits. Zero on TCP.
    public var characterTime: Duration
    /// The silence before a new frame may start: 3.5 characters for Modbus RTU (1.75 ms at least), none elsewhere.
    public var frameGap: Duration

    /// The time `count` characters take on the wire.
    public func wireTime(characters count: Int) -> Duration {
        // Duration arithmetic is 128-bit: not for every TCP transaction.
        characterTime == .zero ? .zero : characterTime * count
    }

    /// No wire time (TCP, or a simulated line that does not care).
    public static let instant = LineTiming(characterTime: .zero, frameGap: .zero)

    /// A serial line's timing; `silenceBetweenFrames` adds the 3.5-character gap a protocol like Modbus RTU needs.
    public static func serial(_ settings: SerialSettings, silenceBetweenFrames: Bool) -> LineTiming {
        let character = settings.wireTime(characters: 1)
        let gap = silenceBetweenFrames ? max(.microseconds(1750), character * 7 / 2) : .zero
        return LineTiming(characterTime: character, frameGap: gap)
    }
}
