public import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Opens the TCP connections of one Modbus TCP bus on a SwiftNIO event loop: non-blocking sockets, so hundreds of
/// buses share one thread instead of taking one each.
///
/// The bus's engine runs on the same loop (`executor`): a reply wakes the engine on the thread that read it.
public struct TCPLinkOpener: LinkOpener {
    /// host:port, for messages.
    public let endpoint: String
    /// The event loop the connections and the bus's engine run on, picked once so that reconnections stay on it.
    public let eventLoop: any EventLoop
    /// The event loop as an executor: an engine actor returns `executor.asUnownedSerialExecutor()` from its
    /// `unownedExecutor`, so that its code and the channel's share one thread and no reply needs a hop.
    public let executor: any SerialExecutor

    private let host: String
    private let port: Int
    private let clock: any BusClock
    private let connectTimeout: Duration
    private let loopTaskExecutor: LoopTaskExecutor

    /// The event loop as a task executor. A read sets it as its task's preference while it waits, so that the reply
    /// resumes the engine on the loop instead of passing through the global pool; an engine task started with it
    /// (`Task(executorPreference: opener.taskExecutor) { … }`) saves each read doing so (about 1 µs). The task's
    /// nonisolated work, and that of default actors it calls, then runs on the loop too: none of it may block.
    public var taskExecutor: any TaskExecutor { loopTaskExecutor }

    public var preferredTaskExecutor: (any TaskExecutor)? { loopTaskExecutor }

    /// The one loop every TCP bus shares unless given a group: one thread however many connections.
    ///
    /// Created on first use and never shut down: it lives as long as the process, like the buses that reconnect
    /// on it, and an engine actor whose executor is a stopped loop could never run again. Its thread costs
    /// nothing while no socket is ready.
    static let sharedGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// Connections to `host:port`, made within `connectTimeout`, on a loop of `group` (nil: the shared loop).
    public init(
        host: String,
        port: Int,
        clock: any BusClock,
        connectTimeout: Duration = .seconds(3),
        group: (any EventLoopGroup)? = nil
    ) {
        self.host = host
        self.port = port
        self.clock = clock
        self.connectTimeout = connectTimeout
        self.endpoint = Self.endpoint(host: host, port: port)
        self.eventLoop = (group ?? Self.sharedGroup).next()
        // Stored: a loop that is not itself an executor would hand out a new wrapper at every call.
        self.executor = eventLoop.executor
        self.loopTaskExecutor = LoopTaskExecutor(loop: eventLoop, serial: executor)
    }

    /// Connects; throws `portUnavailable` saying why not (connection refused, timed out, no route, name not found).
    public nonisolated(nonsending) func open() async throws(GatewayError) -> any BusLink {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(TimeAmount(connectTimeout))
        let endpoint = self.endpoint
        let clock = self.clock
        let taskExecutor = self.loopTaskExecutor
        let initializer: @Sendable (any Channel) -> EventLoopFuture<TCPLink> = { channel in
            channel.eventLoop.makeCompletedFuture {
                let handler = TCPLinkHandler(endpoint: endpoint)
                try channel.pipeline.syncOperations.addHandler(handler)
                return TCPLink(
                    endpoint: endpoint, channel: channel, handler: handler, clock: clock, taskExecutor: taskExecutor)
            }
        }
        do {
            // An address needs no resolver: getaddrinfo would run on a dispatch queue.
            if let address = try? SocketAddress(ipAddress: host, port: port) {
                return try await bootstrap.connect(to: address, channelInitializer: initializer)
            }
            return try await bootstrap.connect(host: host, port: port, channelInitializer: initializer)
        } catch {
            throw GatewayError(.portUnavailable, "cannot connect to \(endpoint): \(Self.reason(error))")
        }
    }

    /// host:port as messages name it, an IPv6 address in brackets.
    static func endpoint(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Why a connection failed, in a technician's words.
    static func reason(_ error: any Error) -> String {
        switch error {
        case let error as NIOConnectionError:
            // No attempt means no address was found for the name.
            guard let attempt = error.connectionErrors.first else { return "name not found" }
            return reason(attempt.error)
        case let error as IOError:
            return reason(errno: error.errnoCode)
        case ChannelError.connectTimeout:
            return "timed out"
        case is SocketAddressError.UnknownHost:
            return "name not found"
        default:
            return String(describing: error)
        }
    }

    /// The words for a socket's `errno`.
    static func reason(errno code: CInt) -> String {
        switch code {
        case ECONNREFUSED: "connection refused"
        case ETIMEDOUT: "timed out"
        case EHOSTUNREACH, ENETUNREACH: "no route to host"
        case ECONNRESET: "connection reset by peer"
        case EPIPE: "connection broken"
        default: "error \(code)"
        }
    }
}

/// A Modbus TCP connection as a bus sees it.
///
/// State lives in the channel's handler and is touched only on the event loop (`NIOLoopBound` checks it). A
/// caller on the loop — the engine, whose executor is the loop — goes straight in; any other caller hops there.
final class TCPLink: BusLink {
    let endpoint: String
    private let handler: NIOLoopBound<TCPLinkHandler>
    private let clock: any BusClock
    private let taskExecutor: LoopTaskExecutor

    /// Must be called on the channel's event loop.
    fileprivate init(
        endpoint: String, channel: any Channel, handler: TCPLinkHandler, clock: any BusClock,
        taskExecutor: LoopTaskExecutor
    ) {
        self.endpoint = endpoint
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        self.clock = clock
        self.taskExecutor = taskExecutor
    }

    nonisolated(nonsending) func write(_ bytes: [UInt8]) async throws(GatewayError) {
        if handler.eventLoop.inEventLoop {
            try handler.value.write(bytes)
            return
        }
        let handler = self.handler
        let result = await withUnsafeContinuation { (done: UnsafeContinuation<Result<Void, GatewayError>, Never>) in
            handler.eventLoop.execute {
                done.resume(returning: Result { () throws(GatewayError) in try handler.value.write(bytes) })
            }
        }
        try result.get()
    }

    nonisolated(nonsending) func read(until deadline: Duration) async throws(GatewayError) -> [UInt8] {
        let left = deadline - clock.now
        let handler = self.handler
        guard handler.eventLoop.inEventLoop else {
            return try await withUnsafeContinuation { waiter in
                handler.eventLoop.execute { handler.value.read(left: left, waiter: waiter) }
            }.get()
        }
        if let ready = try handler.value.take(left: left) { return ready }
        // A cancelled task's read still waits, up to its deadline: returning at once, it would spin the loop that
        // must deliver the answer (to it and to every other bus on that loop) until the deadline.
        if taskExecutor.isPreferred {
            return try await waitOnLoop { handler.value.read(left: left, waiter: $0) }.get()
        }
        return try await waitOnLoop(preferring: taskExecutor) { handler.value.read(left: left, waiter: $0) }.get()
    }

    /// Waits on the loop for `start`'s waiter; the isolated parameter keeps the code on the caller's executor (a
    /// closure formed in a `nonisolated(nonsending)` function would run on the global pool).
    private func waitOnLoop(
        isolation: isolated (any Actor)? = #isolation,
        _ start: (TCPLinkHandler.Waiter) -> Void
    ) async -> Result<[UInt8], GatewayError> {
        await withUnsafeContinuation { start($0) }
    }

    /// Waits on the loop with the loop as the task's executor meanwhile, for a task not started with it.
    private func waitOnLoop(
        isolation: isolated (any Actor)? = #isolation,
        preferring executor: LoopTaskExecutor,
        _ start: (TCPLinkHandler.Waiter) -> Void
    ) async -> Result<[UInt8], GatewayError> {
        await withTaskExecutorPreference(executor) {
            _ = isolation
            return await withUnsafeContinuation { start($0) }
        }
    }

    func discardInput() {
        if handler.eventLoop.inEventLoop {
            handler.value.discardInput()
        } else {
            let handler = self.handler
            handler.eventLoop.execute { handler.value.discardInput() }
        }
    }

    func wake() {
        if handler.eventLoop.inEventLoop {
            handler.value.wake()
        } else {
            let handler = self.handler
            handler.eventLoop.execute { handler.value.wake() }
        }
    }

    func close() {
        if handler.eventLoop.inEventLoop {
            handler.value.close()
        } else {
            let handler = self.handler
            handler.eventLoop.execute { handler.value.close() }
        }
    }
}

/// The loop as a task executor: where a task's nonisolated work goes instead of the global pool.
///
/// A continuation resumes its task on the global pool, which then hops to the engine's executor: two thread
/// switches per reply. A task preferring this executor is resumed on the loop instead. Its jobs run on the loop's
/// thread between the loop's other jobs, which is being isolated to the loop's serial executor; said so, the return
/// to the engine actor (whose executor is the loop) needs no further hop.
final class LoopTaskExecutor: TaskExecutor {
    private let loop: any EventLoop
    /// Kept, so that `serial` (which does not retain) stays valid.
    private let serialExecutor: any SerialExecutor
    private let serial: UnownedSerialExecutor

    init(loop: any EventLoop, serial: any SerialExecutor) {
        self.loop = loop
        self.serialExecutor = serial
        self.serial = serial.asUnownedSerialExecutor()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let serial = self.serial
        let taskExecutor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(isolatedTo: serial, taskExecutor: taskExecutor) }
    }

    /// Whether the current task prefers this executor already.
    var isPreferred: Bool {
        withUnsafeCurrentTask { $0?.unownedTaskExecutor } == asUnownedTaskExecutor()
    }
}

/// The channel's end of a link: keeps what arrives until the bus reads it, and wakes a waiting read.
///
/// Lives on the event loop only. One timer serves the reads of a burst: a reply usually comes long before the
/// deadline, so the timer stays armed and, when it fires, re-arms for the read then waiting (if that read's deadline
/// is later). Reads far apart (polls) cancel it once answered: it would wake the loop for nothing.
final class TCPLinkHandler: ChannelInboundHandler, NIOScheduledCallbackHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    typealias Waiter = UnsafeContinuation<Result<[UInt8], GatewayError>, Never>

    /// Bytes kept for a bus that does not read: more than this and the oldest are dropped (a Modbus TCP frame is
    /// at most 260 bytes; a peer talking unprompted must not grow memory without bound).
    static let receiveLimit = 64 * 1024

    private let endpoint: String
    private var context: ChannelHandlerContext?
    private var received = ByteBuffer()
    /// Reused for every request: once the kernel took the bytes, the channel no longer holds it and it is rewritten
    /// in place.
    private var outgoing = ByteBuffer()
    private var waiter: Waiter?
    private var due = NIODeadline.distantFuture
    private var timer: NIOScheduledCallback?
    private var timerDeadline = NIODeadline.distantFuture
    private var lastWaitStart = NIODeadline.uptimeNanoseconds(0)
    /// Whether reads on this link are far apart (polls, not a burst): then an answered read's timer is cancelled,
    /// since it would only wake the loop for nothing before the next read.
    private var readsAreFarApart = true
    /// Why the link no longer works; set once.
    private var failure: GatewayError?

    init(endpoint: String) {
        self.endpoint = endpoint
    }

    // MARK: The bus's side

    func write(_ bytes: [UInt8]) throws(GatewayError) {
        if let failure { throw failure }
        guard let context else { throw closedByUs }
        outgoing.clear()
        outgoing.writeBytes(bytes)
        // A failed write closes the channel: the read that follows throws.
        context.writeAndFlush(Self.wrapOutboundOut(outgoing), promise: nil)
    }

    /// What is there to return at once: the bytes buffered, the failure, or nothing once `left` is used up.
    /// Nil: the read must wait.
    func take(left: Duration) throws(GatewayError) -> [UInt8]? {
        if received.readableBytes > 0 {
            let bytes = Array(received.readableBytesView)
            received.clear()
            return bytes
        }
        if let failure { throw failure }
        return left > .zero ? nil : []
    }

    /// Waits `waiter` until bytes come, the channel closes or `due` (`left` from `now`) passes.
    func wait(_ waiter: Waiter, now: NIODeadline, left: Duration) {
        guard self.waiter == nil else {
            waiter.resume(returning: .failure(GatewayError(.portUnavailable, "two reads at once on \(endpoint)")))
            return
        }
        let due = now + TimeAmount(left)
        self.waiter = waiter
        self.due = due
        readsAreFarApart = now - lastWaitStart > .milliseconds(50)
        lastWaitStart = now
        if timer != nil {
            if timerDeadline <= due { return }
            timer?.cancel()
        }
        arm(at: due)
    }

    /// A read: answered at once (bytes buffered, link failed, no time left) or waiting.
    func read(left: Duration, waiter: Waiter) {
        do throws(GatewayError) {
            if let ready = try take(left: left) { return waiter.resume(returning: .success(ready)) }
        } catch {
            return waiter.resume(returning: .failure(error))
        }
        wait(waiter, now: NIODeadline.now(), left: left)
    }

    func discardInput() {
        received.clear()
    }

    /// Ends a waiting read now, empty (its timer stays armed; a later read may use it).
    func wake() {
        if waiter != nil { resume(with: .success([])) }
    }

    func close() {
        if failure == nil { failure = closedByUs }
        context?.close(promise: nil)
    }

    // MARK: The channel's side

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        if waiter != nil {
            // A waiting read means nothing was buffered: hand these bytes over as they are.
            resume(with: .success(Array(bytes.readableBytesView)))
            if readsAreFarApart {
                timer?.cancel()
                timer = nil
            }
            return
        }
        if received.readableBytes + bytes.readableBytes > Self.receiveLimit { received.clear() }
        received.writeBuffer(&bytes)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil {
            failure = GatewayError(.portUnavailable, "connection to \(endpoint) failed: \(TCPLinkOpener.reason(error))")
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if failure == nil { failure = GatewayError(.portUnavailable, "\(endpoint) closed the connection") }
        timer?.cancel()
        timer = nil
        if waiter != nil, let failure { resume(with: .failure(failure)) }
        context.fireChannelInactive()
    }

    // MARK: The deadline

    func handleScheduledCallback(eventLoop: some EventLoop) {
        timer = nil
        guard waiter != nil else { return }
        // The timer may have been armed for an earlier read's deadline.
        if NIODeadline.now() >= due {
            resume(with: .success([]))
        } else {
            arm(at: due)
        }
    }

    private func arm(at deadline: NIODeadline) {
        guard let context else {
            resume(with: .failure(failure ?? closedByUs))
            return
        }
        do {
            timer = try context.eventLoop.assumeIsolated().scheduleCallback(at: deadline, handler: self)
            timerDeadline = deadline
        } catch {
            timer = nil
            resume(with: .failure(GatewayError(.portUnavailable, "connection to \(endpoint): event loop stopped")))
        }
    }

    private func resume(with result: Result<[UInt8], GatewayError>) {
        let waiter = self.waiter
        self.waiter = nil
        waiter?.resume(returning: result)
    }

    private var closedByUs: GatewayError {
        GatewayError(.portUnavailable, "connection to \(endpoint) is closed")
    }
}
