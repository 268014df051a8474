// `struct pollfd` is defined again by CMosquitto's shim (it includes poll.h): which of the two modules the compiler
// takes as its home varies with the build's batches, and a member of it needs that module imported (a CI build broke).
import CMosquitto
import Foundation

/// Opens a Modbus TCP connection as a blocking link on a thread of the bus's own, as a serial line is: for a
/// connection with several devices behind it (a TCP-to-RTU gateway, a controller with many unit ids), busy by nature,
/// where a round trip through the event loop costs the engine about three times the system calls themselves.
/// Connections to one device each share the event loop instead (`TCPLinkOpener`): hundreds of them, one thread.
public struct SocketLinkOpener: LinkOpener {
    public let endpoint: String
    public let executor: any SerialExecutor
    private let host: String
    private let port: Int
    private let clock: any BusClock
    private let connectTimeout: Duration

    /// Connections to `host:port`, made within `connectTimeout`; `label` names the bus's thread.
    public init(host: String, port: Int, clock: any BusClock, label: String, connectTimeout: Duration = .seconds(3)) {
        self.host = host
        self.port = port
        self.clock = clock
        self.connectTimeout = connectTimeout
        endpoint = TCPLinkOpener.endpoint(host: host, port: port)
        executor = BusExecutor(label: label)
    }

    /// Connects (on the bus's thread: the name lookup and the connect block it, nothing else); throws
    /// `portUnavailable` saying why not, in the words `TCPLinkOpener` uses.
    public nonisolated(nonsending) func open() async throws(GatewayError) -> any BusLink {
        let socket = try connect()
        return SerialLink(line: try SerialLine(socket: socket, endpoint: endpoint), clock: clock)
    }

    /// Tries each address of the name, each within the connect timeout (one that drops the attempt must not cost the
    /// others theirs); a failure names the first address's reason, as the event loop's link does. The name lookup
    /// itself is the resolver's to bound (a few seconds).
    private func connect() throws(GatewayError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let first = found else {
            throw GatewayError(.portUnavailable, "cannot connect to \(endpoint): name not found")
        }
        defer { freeaddrinfo(first) }
        var firstReason: String?
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let address = candidate?.pointee {
            candidate = address.ai_next
            let fd = socket(address.ai_family, address.ai_socktype | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
                            address.ai_protocol)
            guard fd >= 0 else {
                firstReason = firstReason ?? TCPLinkOpener.reason(errno: errno)
                continue
            }
            if let failure = Self.connect(fd, to: address, before: ContinuousClock.now + connectTimeout) {
                firstReason = firstReason ?? failure
                close(fd)
                continue
            }
            var on: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            return fd
        }
        throw GatewayError(.portUnavailable, "cannot connect to \(endpoint): \(firstReason ?? "timed out")")
    }

    /// Connects a non-blocking socket, waiting until `deadline`; nil when connected, else why not.
    private static func connect(_ fd: Int32, to address: addrinfo, before deadline: ContinuousClock.Instant) -> String? {
        if Glibc.connect(fd, address.ai_addr, address.ai_addrlen) == 0 { return nil }
        guard errno == EINPROGRESS else { return TCPLinkOpener.reason(errno: errno) }
        var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return "timed out" }
            let milliseconds = Int32(clamping: left.components.seconds * 1000
                                     + (left.components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
            let ready = poll(&entry, 1, milliseconds)
            if ready > 0 { break }
            if ready < 0, errno != EINTR { return TCPLinkOpener.reason(errno: errno) }
        }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error == 0 ? nil : TCPLinkOpener.reason(errno: error)
    }
}
