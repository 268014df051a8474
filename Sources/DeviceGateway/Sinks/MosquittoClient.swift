import CMosquitto
import Dispatch
import Foundation
import Logging
import Synchronization

/// libmosquitto is initialised once per process and never cleaned up: other clients may still live.
private let mosquittoLibrary: Int32 = mosquitto_lib_init()

/// How `MosquittoClient` reaches its broker.
struct MosquittoSettings: Sendable {
    var host: String
    var port: Int
    /// With a clean session off, the broker keeps the session under this id.
    var clientId: String
    var username: String?
    var password: Secret?
    /// Where the password came from: read again when the broker refuses it, so a password changed in the file is
    /// taken without a restart.
    var passwordFile: String?
    var tls: TLSSettings?
    var keepAliveSeconds: Int32
    /// How long one connection attempt (TCP, TLS, CONNACK) may take.
    var connectTimeout: Duration
    /// QoS 1 messages on the wire still waiting for their PUBACK (libmosquitto's default is 20).
    var maximumInFlight: Int32 = 200
    /// Who the client is in log lines (`mqtt` for a sink, `mqtt commands` for the command topic).
    var name = "mqtt"

    /// `host:port`, the start of every error message.
    var address: String { "\(host):\(port)" }
}

/// One message to publish; `key` recognises the same event when its batch is delivered again.
struct MosquittoMessage: Sendable {
    var key: String
    var topic: String
    var payload: String
}

/// A message the broker sent for a subscription.
struct MosquittoReceived: Sendable {
    var topic: String
    var payload: [UInt8]
    /// Set on a retained message the broker sends because of a new subscription: an old message, not a live one.
    var retained = false
}

/// A topic filter subscribed on every connection, and who hears of it.
private struct Subscription {
    var filter: String
    /// On the network thread: must not block.
    var onMessage: @Sendable (MosquittoReceived) -> Void
    /// True once the broker granted the subscription on a connection, false when that connection ends.
    var onListening: @Sendable (Bool) -> Void
}

/// Owns one libmosquitto handle (MQTT 3.1.1, clean session off) and the thread that runs its network.
///
/// libmosquitto's own `mosquitto_loop_start` thread ends for good after a TLS or protocol error (its
/// `mosquitto_loop_forever` returns), so this client runs `mosquitto_loop` on a thread of its own and
/// reconnects itself: exponential backoff with jitter, a connect timeout, and one immediate attempt
/// for each batch that finds the broker away. Messages go to libmosquitto once the broker accepted the
/// connection; publishing never blocks the caller. Messages the connection lost before their PUBACK stay
/// queued in libmosquitto and go again after reconnecting, so a batch delivered again waits for those
/// instead of queueing them twice, and memory stays bounded by the batch in an outage.
final class MosquittoClient: @unchecked Sendable {
    let settings: MosquittoSettings
    /// The network thread calls libmosquitto without the lock (libmosquitto locks inside); other
    /// threads only under `state`'s lock. Destroyed once, under the lock, when no network thread runs.
    private let handle: OpaquePointer
    private let state = Mutex(State())
    /// libmosquitto's first error log line in the current attempt (OpenSSL's reason for a TLS failure). A lock of its
    /// own: the library logs from inside calls made under `state` (a TLS write failing in `mosquitto_publish`), where
    /// taking `state` again would trap, or wait for ever on a thread that waits for the library.
    private let libraryError = Mutex<String?>(nil)
    /// Wakes the network thread while it waits between connection attempts.
    private let wakeUp = DispatchSemaphore(value: 0)
    /// The password file, read again by the network thread only.
    private let passwordFile: Mutex<PasswordFileWatch?>
    private let logger: Logger
    /// More messages than this waiting for the broker are refused: memory stays bounded in an outage.
    static let queueLimit = 20_000

    /// Creates the handle and applies the settings; connects only on the first `publish`.
    init(settings: MosquittoSettings, logger: Logger) throws {
        _ = mosquittoLibrary
        self.settings = settings
        self.logger = logger
        passwordFile = Mutex(settings.passwordFile.map { PasswordFileWatch(path: $0, password: settings.password?.value) })
        let address = settings.address
        guard let handle = mosquitto_new(settings.clientId, false, nil) else {
            let reason = String(cString: strerror(cmosquitto_errno()))
            throw SinkError(.rejected,
                            "mqtt \(address): cannot create a client with id '\(settings.clientId)': \(reason)")
        }
        do {
            try Self.configure(handle, settings)
        } catch {
            // Before `self.handle` is set, so deinit does not run and destroy it a second time.
            mosquitto_destroy(handle)
            throw error
        }
        self.handle = handle
        mosquitto_user_data_set(handle, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_connect_callback_set(handle) { _, context, code in
            guard let context else { return }
            Unmanaged<MosquittoClient>.fromOpaque(context).takeUnretainedValue().connected(code: code)
        }
        mosquitto_publish_callback_set(handle) { _, context, messageId in
            guard let context else { return }
            Unmanaged<MosquittoClient>.fromOpaque(context).takeUnretainedValue().acknowledged(messageId)
        }
        mosquitto_subscribe_callback_set(handle) { _, context, messageId, count, granted in
            guard let context else { return }
            let refused = count < 1 || granted == nil || granted![0] == 0x80
            Unmanaged<MosquittoClient>.fromOpaque(context).takeUnretainedValue()
                .subscribed(messageId, granted: !refused)
        }
        mosquitto_message_callback_set(handle) { _, context, message in
            guard let context, let message, let topic = message.pointee.topic else { return }
            let length = Int(max(message.pointee.payloadlen, 0))
            let payload = message.pointee.payload.map {
                Array(UnsafeRawBufferPointer(start: $0, count: length))
            } ?? []
            Unmanaged<MosquittoClient>.fromOpaque(context).takeUnretainedValue()
                .received(MosquittoReceived(topic: String(cString: topic), payload: payload,
                                            retained: message.pointee.retain))
        }
        mosquitto_log_callback_set(handle) { _, context, level, text in
            guard let context, let text, level & cmosquitto_log_problems != 0 else { return }
            Unmanaged<MosquittoClient>.fromOpaque(context).takeUnretainedValue().libraryLogged(String(cString: text))
        }
    }

    deinit {
        // The network thread holds this object while it runs, so none runs here.
        let destroyed = state.withLock { state in
            defer { state.destroyed = true }
            return state.destroyed
        }
        if !destroyed { mosquitto_destroy(handle) }
    }

    private static func configure(_ handle: OpaquePointer, _ settings: MosquittoSettings) throws {
        let address = settings.address
        func check(_ code: Int32, _ what: String) throws {
            guard code == MOSQ_ERR_SUCCESS.rawValue else {
                throw SinkError(.rejected, "mqtt \(address): \(what): \(String(cString: mosquitto_strerror(code)))")
            }
        }
        // Our own network thread runs the loop: without this, a publish from another thread writes to the socket
        // itself, beside the network thread's reads (under TLS, two threads in one OpenSSL connection).
        try check(mosquitto_threaded_set(handle, true), "threaded mode")
        try check(mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311), "protocol version")
        try check(mosquitto_int_option(handle, MOSQ_OPT_SEND_MAXIMUM, settings.maximumInFlight), "in-flight maximum")
        try check(mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1), "TCP_NODELAY")
        if settings.username != nil || settings.password != nil {
            guard settings.username != nil else {
                throw SinkError(.rejected, "mqtt \(address): a password file needs a username (MQTT 3.1.1)")
            }
            try check(mosquitto_username_pw_set(handle, settings.username, settings.password?.value),
                      "username and password")
        }
        guard let tls = settings.tls else { return }
        for file in [tls.caFile, tls.certificateFile, tls.keyFile].compactMap({ $0 }) {
            if let reason = ReadableFile.problem(file) {
                throw SinkError(.rejected, "mqtt \(address): cannot read the TLS file \(file): \(reason)")
            }
        }
        if (tls.certificateFile == nil) != (tls.keyFile == nil) {
            throw SinkError(.rejected,
                            "mqtt \(address): a client certificate needs its key file, and a key its certificate")
        }
        // Without a CA file the system's trust store is used; with one, only that file.
        if tls.caFile == nil {
            try check(mosquitto_int_option(handle, MOSQ_OPT_TLS_USE_OS_CERTS, 1), "system trust store")
        }
        // An encrypted key gets no password: refused at connect instead of a prompt on a terminal.
        try check(mosquitto_tls_set(handle, tls.caFile, tls.caFile == nil ? "/etc/ssl/certs" : nil,
                                    tls.certificateFile, tls.keyFile) { _, _, _, _ in 0 }, "TLS files")
        // The server's certificate and host name are always verified (SSL_VERIFY_PEER = 1).
        try check(mosquitto_tls_opts_set(handle, 1, nil, nil), "TLS options")
        try check(mosquitto_tls_insecure_set(handle, false), "TLS host name check")
    }

    /// Which connection the broker accepted is up now, numbered from 1; 0 while none is.
    var connectionUp: Int {
        state.withLock { state in
            state.phase.isConnected ? state.connectionsMade : 0
        }
    }

    // MARK: Publishing

    /// Publishes every message at QoS 1 and returns once the broker acknowledged them all.
    ///
    /// Throws `SinkError(.unavailable)` when a connection attempt fails meanwhile or `timeout` passes,
    /// `.rejected` when libmosquitto refuses a message for good (a topic or size it does not accept).
    func publish(_ messages: [MosquittoMessage], timeout: Duration) async throws {
        guard !messages.isEmpty else { return }
        startNetworkIfNeeded()
        let id = state.withLock { state in
            state.nextDelivery += 1
            return state.nextDelivery
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let refusal = state.withLock { state in
                    register(id, messages, timeout: timeout, continuation: continuation, in: &state)
                }
                if let refusal {
                    continuation.resume(throwing: refusal)
                } else {
                    wakeUp.signal()
                }
            }
        } onCancel: {
            let continuation = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                if let delivery = state.deliveries.removeValue(forKey: id) { return delivery.continuation }
                state.cancelled.insert(id)
                return nil
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Files the delivery and, when connected, hands its messages to libmosquitto; returns why not, if not.
    private func register(_ id: UInt64, _ messages: [MosquittoMessage], timeout: Duration,
                          continuation: CheckedContinuation<Void, any Error>, in state: inout State) -> (any Error)? {
        let address = settings.address
        if state.cancelled.remove(id) != nil { return CancellationError() }
        if state.stopping || state.destroyed {
            return shuttingDown
        }
        let fresh = messages.count(where: { state.messageIds[$0.key] == nil })
        if fresh > 0, state.messageIds.count + fresh > Self.queueLimit {
            return SinkError(.unavailable, """
                mqtt \(address): \(state.messageIds.count) messages of earlier batches still wait for the broker
                """)
        }
        var delivery = Delivery(continuation: continuation, waiting: [], unsent: messages, total: messages.count,
                                timeout: timeout, deadline: .now + timeout, kicked: false, lostMeanwhile: false)
        switch state.phase {
        case .connected:
            if let error = send(&delivery, in: &state) { return error }
        case .waiting:
            // A batch that finds the broker away gets one attempt now rather than at the next backoff step.
            state.kick = true
            delivery.kicked = true
        case .connecting:
            break
        }
        state.deliveries[id] = delivery
        return nil
    }

    /// Publishes the delivery's unsent messages, or waits for those libmosquitto still holds from an
    /// earlier attempt; called under the lock, only once the broker accepted the connection.
    ///
    /// Never before CONNACK: libmosquitto's reconnect opens the socket before it queues CONNECT, and a
    /// PUBLISH queued in between reaches the broker first, which then closes the connection.
    private func send(_ delivery: inout Delivery, in state: inout State) -> SinkError? {
        defer { delivery.unsent = [] }
        for message in delivery.unsent {
            if let messageId = state.messageIds[message.key] {
                delivery.waiting.insert(messageId)
                continue
            }
            var messageId: Int32 = 0
            var payload = message.payload
            let code = payload.withUTF8 { bytes in
                mosquitto_publish(handle, &messageId, message.topic, Int32(bytes.count), bytes.baseAddress, 1, false)
            }
            // A connection lost meanwhile leaves the message queued: it is sent again after reconnecting.
            guard code == MOSQ_ERR_SUCCESS.rawValue || code == MOSQ_ERR_NO_CONN.rawValue else {
                let reason = String(cString: mosquitto_strerror(code))
                let forGood = [MOSQ_ERR_INVAL, MOSQ_ERR_MALFORMED_UTF8, MOSQ_ERR_PAYLOAD_SIZE, MOSQ_ERR_OVERSIZE_PACKET]
                    .contains { $0.rawValue == code }
                return SinkError(forGood ? .rejected : .unavailable,
                                 "mqtt \(settings.address): cannot publish on '\(message.topic)': \(reason)")
            }
            state.messageIds[message.key] = messageId
            state.keys[messageId] = message.key
            delivery.waiting.insert(messageId)
        }
        return nil
    }

    // MARK: Subscribing

    /// Subscribes to `filter` at QoS 1 on this connection and every later one (a broker that lost the session
    /// forgets it), starting the network if it is not running.
    ///
    /// `onMessage` runs on the network thread, so it must hand the message on and return. `onListening` hears
    /// `true` once the broker granted the subscription and `false` when that connection ends.
    func subscribe(_ filter: String, onListening: @escaping @Sendable (Bool) -> Void,
                   onMessage: @escaping @Sendable (MosquittoReceived) -> Void) {
        let connected = state.withLock { state in
            state.subscriptions.append(Subscription(filter: filter, onMessage: onMessage, onListening: onListening))
            return state.phase.isConnected
        }
        // Connected already: subscribe now from this thread, under the lock as other threads must.
        if connected {
            state.withLock { state in
                subscribeAll(from: state.subscriptions.count - 1, in: &state)
            }
        }
        startNetworkIfNeeded()
        wakeUp.signal()
    }

    /// Sends SUBSCRIBE for the subscriptions from `index` on and files their message ids.
    private func subscribeAll(from index: Int = 0, in state: inout State) {
        for position in state.subscriptions.indices where position >= index {
            var messageId: Int32 = 0
            let code = mosquitto_subscribe(handle, &messageId, state.subscriptions[position].filter, 1)
            if code == MOSQ_ERR_SUCCESS.rawValue {
                state.pendingSubscriptions[messageId] = position
            } else {
                let reason = String(cString: mosquitto_strerror(code))
                logger.warning("""
                    \(settings.name) \(settings.address): cannot subscribe to \
                    '\(state.subscriptions[position].filter)': \(reason)
                    """)
            }
        }
    }

    // MARK: Stopping

    /// Disconnects, ends the network thread and frees the handle; deliveries still waiting fail.
    func shutdown() async {
        let running = beginStopping()
        if running {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ended = state.withLock { state in
                    if !state.networkEnded { state.endWaiters.append(continuation) }
                    return state.networkEnded
                }
                if ended { continuation.resume() }
            }
        }
        state.withLock { state in
            guard !state.destroyed else { return }
            state.destroyed = true
            mosquitto_destroy(handle)
        }
    }

    /// Asks the network thread to end without waiting for it (the owner is going away).
    func stop() {
        _ = beginStopping()
    }

    /// Marks the client stopping, fails waiting deliveries, wakes the network; returns whether it runs.
    private func beginStopping() -> Bool {
        let (running, failed) = state.withLock { state in
            state.stopping = true
            let failed = state.deliveries.values.map(\.continuation)
            state.deliveries = [:]
            guard state.started, !state.networkEnded else { return (false, failed) }
            // Queues a DISCONNECT, which also wakes the network thread out of its select().
            mosquitto_disconnect(handle)
            return (true, failed)
        }
        wakeUp.signal()
        for continuation in failed {
            continuation.resume(throwing: shuttingDown)
        }
        return running
    }

    // MARK: The network thread

    private func startNetworkIfNeeded() {
        let start = state.withLock { state in
            guard !state.started, !state.stopping else { return false }
            state.started = true
            state.phase = .waiting(until: .now)
            return true
        }
        guard start else { return }
        let thread = Thread { [self] in runNetwork() }
        thread.name = "mqtt \(settings.address)"
        thread.start()
    }

    /// What the network thread does next.
    private enum Step {
        case stop
        case sleep(Duration)
        case connect
        case connectTimedOut
        case loop(milliseconds: Int32)
    }

    private func runNetwork() {
        while true {
            let now = ContinuousClock.now
            let (step, expired) = state.withLock { state in
                (nextStep(now: now, &state), expire(now: now, &state))
            }
            for (continuation, error) in expired { continuation.resume(throwing: error) }
            switch step {
            case .stop:
                endNetwork()
                return
            case .sleep(let duration):
                let (seconds, attoseconds) = duration.components
                let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
                _ = wakeUp.wait(timeout: .now() + .nanoseconds(max(nanoseconds, 1_000_000)))
            case .connect:
                let refusedBefore = state.withLock { state in
                    defer { state.refusal = nil }
                    return state.refusal != nil
                }
                if refusedBefore { takeAChangedPassword() }
                libraryError.withLock { $0 = nil }
                let code = mosquitto_connect_async(handle, settings.host, Int32(settings.port),
                                                   settings.keepAliveSeconds)
                let error = cmosquitto_errno()
                if code == MOSQ_ERR_SUCCESS.rawValue {
                    state.withLock { $0.phase = .connecting(since: now) }
                    failIfTLSConnectFailed(errno: error)
                } else {
                    failed(code: code, errno: error)
                }
            case .connectTimedOut:
                failed(reason: "no answer within \(Self.describe(settings.connectTimeout))")
            case .loop(let milliseconds):
                let code = mosquitto_loop(handle, milliseconds, 1)
                let error = cmosquitto_errno()
                // Without it a broker's Nagle and our delayed ACKs cost 40 ms per batch (3x the drain time).
                cmosquitto_quick_ack(mosquitto_socket(handle))
                if code != MOSQ_ERR_SUCCESS.rawValue {
                    failed(code: code, errno: error)
                } else {
                    failIfTLSConnectFailed(errno: error)
                }
            }
        }
    }

    /// Under TLS libmosquitto reports a failed TCP connect as success and spins until its keepalive runs out: a
    /// refused connection would go unsaid for the whole timeout. Asks the socket instead while connecting.
    private func failIfTLSConnectFailed(errno seen: Int32) {
        guard settings.tls != nil, case .connecting = state.withLock({ $0.phase }) else { return }
        let socket = mosquitto_socket(handle)
        let error = cmosquitto_connect_error(socket, seen)
        // The dead socket stays with libmosquitto until the next attempt, whose connect closes it.
        guard error != 0 else { return }
        if [ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH].contains(error) {
            failed(code: MOSQ_ERR_ERRNO.rawValue, errno: error)
        } else {
            // Connected, then reset or closed on our ClientHello: a broker without TLS on that port does that.
            let detail = error > 0 ? String(cString: strerror(error)) : "the connection closed"
            failed(reason: Self.tlsFailure(detail, address: settings.address, closedByPeer: true))
        }
    }

    /// Decides the next step; called under the lock.
    private func nextStep(now: ContinuousClock.Instant, _ state: inout State) -> Step {
        if state.stopping { return .stop }
        let soonest = min(state.deliveries.values.map(\.deadline).min() ?? now + .seconds(1), now + .seconds(1))
        func milliseconds(until instant: ContinuousClock.Instant) -> Int32 {
            let left = max(instant - now, .milliseconds(1))
            return Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
        }
        switch state.phase {
        case .waiting(let until):
            if state.kick || now >= until {
                state.kick = false
                return .connect
            }
            return .sleep(min(until, soonest) - now)
        case .connecting(let since):
            let giveUp = since + settings.connectTimeout
            if now >= giveUp { return .connectTimedOut }
            return .loop(milliseconds: milliseconds(until: min(giveUp, soonest)))
        case .connected:
            return .loop(milliseconds: milliseconds(until: soonest))
        }
    }

    /// Takes out the deliveries whose time is up, each with its error; called under the lock.
    private func expire(now: ContinuousClock.Instant, _ state: inout State)
        -> [(CheckedContinuation<Void, any Error>, SinkError)] {
        var expired: [(CheckedContinuation<Void, any Error>, SinkError)] = []
        for (id, delivery) in state.deliveries where delivery.deadline <= now {
            state.deliveries[id] = nil
            let within = Self.describe(delivery.timeout)
            let message: String
            if delivery.lostMeanwhile {
                // Whatever the phase at this moment: "not connected" sent a technician to the network while the broker
                // dropped the gateway at each publish. Neither a count nor the socket's error: a reason that stays
                // the same is logged once. (A failed attempt fails the deliveries at once: a broker gone is "cannot
                // connect".)
                message = "connected, but each connection was lost before the broker acknowledged, within \(within)"
                    + " (does the broker close a client whose publish it denies, or has another client taken the id"
                    + " '\(settings.clientId)'?)"
            } else if state.phase.isConnected {
                let missing = delivery.waiting.count + delivery.unsent.count
                message = "\(missing) of \(delivery.total) messages not acknowledged (PUBACK) within \(within)"
            } else {
                message = "not connected within \(within)" + (state.lastProblem.map { ": \($0)" } ?? "")
            }
            expired.append((delivery.continuation, SinkError(.unavailable, "mqtt \(settings.address): \(message)")))
        }
        return expired
    }

    /// A connection attempt failed or the connection ended: why, in a technician's words.
    private func failed(code: Int32, errno error: Int32) {
        let reason = state.withLock { state -> String in
            switch code {
            case MOSQ_ERR_ERRNO.rawValue:
                return String(cString: strerror(error))
            case MOSQ_ERR_EAI.rawValue:
                return "cannot resolve \(settings.host): \(String(cString: cmosquitto_gai_strerror(error)))"
            case MOSQ_ERR_TLS.rawValue:
                return Self.tlsFailure(libraryError.withLock { $0 }, address: settings.address)
            case MOSQ_ERR_KEEPALIVE.rawValue:
                // libmosquitto 2.0's own text for it is "Unknown error.".
                return "no answer from the broker within the keepalive (\(settings.keepAliveSeconds) s)"
            default:
                return state.refusal ?? String(cString: mosquitto_strerror(code))
            }
        }
        failed(reason: reason)
    }

    /// Schedules the next attempt; a failed attempt also fails the waiting deliveries, a lost
    /// connection does not (libmosquitto sends their messages again after reconnecting).
    private func failed(reason: String) {
        let now = ContinuousClock.now
        let (failedDeliveries, wasConnected, repeated) = state.withLock { state in
            // Our own DISCONNECT ends the connection too: nothing to report or retry.
            if state.stopping { return ([CheckedContinuation<Void, any Error>](), false, true) }
            let repeated = state.lastProblem == reason
            state.lastProblem = reason
            var failedDeliveries: [CheckedContinuation<Void, any Error>] = []
            var wasConnected = false
            if case .connected(let since) = state.phase {
                wasConnected = true
                for id in Array(state.deliveries.keys) { state.deliveries[id]?.lostMeanwhile = true }
                // Only a connection that held resets the backoff: a broker that drops every client at
                // once (two gateways with the same client id) must not be hammered.
                if now - since > .seconds(10) { state.failures = 0 }
                let someoneWaits = state.deliveries.values.contains { !$0.kicked }
                for id in Array(state.deliveries.keys) { state.deliveries[id]?.kicked = true }
                state.phase = .waiting(until: someoneWaits ? now : now + Self.backoff(state.failures))
            } else {
                failedDeliveries = state.deliveries.values.map(\.continuation)
                state.deliveries = [:]
                state.phase = .waiting(until: now + Self.backoff(state.failures))
            }
            state.failures += 1
            return (failedDeliveries, wasConnected, repeated)
        }
        let address = settings.address
        if wasConnected {
            logger.warning("\(settings.name) \(address): connection lost, reconnecting: \(reason)")
            for listener in state.withLock({ $0.subscriptions.map(\.onListening) }) { listener(false) }
        } else if !repeated {
            logger.warning("\(settings.name) \(address): cannot connect, retrying with backoff: \(reason)")
        }
        for continuation in failedDeliveries {
            continuation.resume(throwing: SinkError(.unavailable, "mqtt \(address): cannot connect: \(reason)"))
        }
    }

    /// Sends DISCONNECT if connected, lets libmosquitto write it, and tells `shutdown` the thread is done.
    private func endNetwork() {
        // A connection still being made (TCP, TLS, CONNACK) has nothing to say DISCONNECT to: the stop does not wait.
        if state.withLock({ $0.phase.isConnected }) {
            mosquitto_disconnect(handle)
            let deadline = ContinuousClock.now + .seconds(2)
            while ContinuousClock.now < deadline, mosquitto_loop(handle, 100, 1) == MOSQ_ERR_SUCCESS.rawValue {}
        }
        let (waiters, failed) = state.withLock { state in
            state.networkEnded = true
            defer {
                state.endWaiters = []
                state.deliveries = [:]
            }
            return (state.endWaiters, state.deliveries.values.map(\.continuation))
        }
        for continuation in failed {
            continuation.resume(throwing: shuttingDown)
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Callbacks (on the network thread, inside mosquitto_loop)

    private func connected(code: Int32) {
        let now = ContinuousClock.now
        var failures: [(CheckedContinuation<Void, any Error>, SinkError)] = []
        let reconnected = state.withLock { state -> Bool? in
            guard code == 0 else {
                state.refusal = String(cString: mosquitto_connack_string(code))
                return nil
            }
            state.phase = .connected(since: now)
            state.connectionsMade += 1
            state.pendingSubscriptions = [:]
            subscribeAll(in: &state)
            for (id, var delivery) in state.deliveries where !delivery.unsent.isEmpty {
                if let error = send(&delivery, in: &state) {
                    failures.append((delivery.continuation, error))
                    state.deliveries[id] = nil
                } else {
                    state.deliveries[id] = delivery
                }
            }
            return state.lastProblem != nil
        }
        switch reconnected {
        case true?: logger.notice("\(settings.name) \(settings.address): connected again as '\(settings.clientId)'")
        case false?: logger.info("\(settings.name) \(settings.address): connected as '\(settings.clientId)'")
        case nil: break
        }
        for (continuation, error) in failures { continuation.resume(throwing: error) }
    }

    /// The password file read again after the broker refused the connection: one changed there is used from this
    /// attempt on (from an operator's trial: a rotated password needed a restart).
    ///
    /// `mosquitto_username_pw_set` takes no lock: safe here, on the network thread between attempts, where nothing else
    /// reads the credentials (publishing waits for a connection, a stop only disconnects).
    private func takeAChangedPassword() {
        let (logger, who) = (logger, "\(settings.name) \(settings.address)")
        guard let changed = passwordFile.withLock({ $0?.changed(warn: { logger.warning("\(who): \($0)") }) }),
              mosquitto_username_pw_set(handle, settings.username, changed) == MOSQ_ERR_SUCCESS.rawValue
        else { return }
        logger.notice("\(who): the password file \(settings.passwordFile ?? "") changed: the new password is used")
    }

    private func acknowledged(_ messageId: Int32) {
        let finished = state.withLock { state in
            if let key = state.keys.removeValue(forKey: messageId), state.messageIds[key] == messageId {
                state.messageIds[key] = nil
            }
            var finished: [CheckedContinuation<Void, any Error>] = []
            // Mutated in place: a copy of a delivery would copy its set of ids on every PUBACK.
            for id in Array(state.deliveries.keys) where state.deliveries[id]?.waiting.remove(messageId) != nil {
                if let delivery = state.deliveries[id], delivery.waiting.isEmpty, delivery.unsent.isEmpty {
                    finished.append(delivery.continuation)
                    state.deliveries[id] = nil
                }
            }
            return finished
        }
        for continuation in finished { continuation.resume() }
    }

    private func subscribed(_ messageId: Int32, granted: Bool) {
        let subscription = state.withLock { state in
            state.pendingSubscriptions.removeValue(forKey: messageId).map { state.subscriptions[$0] }
        }
        guard let subscription else { return }
        if !granted {
            logger.warning("""
                \(settings.name) \(settings.address): the broker refused the subscription to '\(subscription.filter)' \
                (its ACL?)
                """)
        }
        subscription.onListening(granted)
    }

    private func received(_ message: MosquittoReceived) {
        let handlers = state.withLock { state in
            state.subscriptions.filter { subscription in
                var matches = false
                return mosquitto_topic_matches_sub(subscription.filter, message.topic, &matches)
                    == MOSQ_ERR_SUCCESS.rawValue && matches
            }.map(\.onMessage)
        }
        for handler in handlers { handler(message) }
    }

    private func libraryLogged(_ line: String) {
        libraryError.withLock { error in
            // The first problem of an attempt is the cause; OpenSSL lists the consequences after it.
            if error == nil {
                error = line.hasPrefix("OpenSSL Error[") && line.contains("]: ")
                    ? String(line[line.range(of: "]: ")!.upperBound...]) : line
            }
        }
    }

    // MARK: Helpers

    private var shuttingDown: SinkError {
        SinkError(.unavailable, "mqtt \(settings.address): the sink is shutting down")
    }

    /// A failed TLS handshake in a technician's words; OpenSSL's reason in brackets.
    static func tlsFailure(_ detail: String?, address: String, closedByPeer: Bool = false) -> String {
        guard let detail else { return "TLS handshake failed" }
        // What OpenSSL says when the other end answers in plain text or closes on our ClientHello.
        let plainServer = ["unexpected eof while reading", "wrong version number", "packet length too long",
                           "record layer failure"]
        if closedByPeer || plainServer.contains(where: detail.contains) {
            return "TLS handshake failed: the broker at \(address) does not speak TLS, or closed the connection"
                + " (\(detail))"
        }
        return "TLS handshake failed: \(detail)"
    }

    /// 1 s doubling per failure up to 30 s, each with up to half taken off at random.
    static func backoff(_ failures: Int) -> Duration {
        let capped = min(Duration.seconds(1) * (1 << min(failures, 5)), .seconds(30))
        return capped / 2 + capped / 2 * Double.random(in: 0...1)
    }

    /// "30 s", "0.5 s".
    static func describe(_ duration: Duration) -> String {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
    }
}

/// What the client's threads share, behind its lock.
private struct State {
    enum Phase {
        case waiting(until: ContinuousClock.Instant)
        case connecting(since: ContinuousClock.Instant)
        case connected(since: ContinuousClock.Instant)

        var isConnected: Bool {
            if case .connected = self { true } else { false }
        }
    }

    var phase = Phase.waiting(until: .now)
    var started = false
    var stopping = false
    var networkEnded = false
    var destroyed = false
    /// A delivery asks for a connection attempt now.
    var kick = false
    /// Attempts failed in a row: the backoff exponent.
    var failures = 0
    /// Connections the broker accepted so far.
    var connectionsMade = 0
    /// Why the last attempt failed or the connection ended.
    var lastProblem: String?
    /// The broker's CONNACK refusal in the current attempt.
    var refusal: String?
    /// Event key → message id, while libmosquitto holds the message; and back.
    var messageIds: [String: Int32] = [:]
    var keys: [Int32: String] = [:]
    var deliveries: [UInt64: Delivery] = [:]
    var cancelled: Set<UInt64> = []
    var nextDelivery: UInt64 = 0
    var endWaiters: [CheckedContinuation<Void, Never>] = []
    var subscriptions: [Subscription] = []
    /// SUBSCRIBE message id → index in `subscriptions`, until its SUBACK.
    var pendingSubscriptions: [Int32: Int] = [:]
}

/// A `publish` call waiting for its PUBACKs.
private struct Delivery {
    var continuation: CheckedContinuation<Void, any Error>
    /// Message ids libmosquitto holds for this delivery, until their PUBACK.
    var waiting: Set<Int32>
    /// Messages not handed to libmosquitto yet: the broker has not accepted the connection.
    var unsent: [MosquittoMessage]
    var total: Int
    var timeout: Duration
    var deadline: ContinuousClock.Instant
    /// Whether it already had its immediate connection attempt.
    var kicked: Bool
    /// Whether a connection the broker had accepted was lost while it waited.
    var lostMeanwhile: Bool
}
