// `struct pollfd` is defined again by CMosquitto's shim (it includes poll.h): which of the two modules the compiler
// takes as its home varies with the build's batches, and a member of it needs that module imported (a CI build broke).
import CMosquitto
import Foundation

/// A serial line opened through termios: raw bytes, the configured baud rate, parity and stop bits.
///
/// One path for real ports and pseudo-terminals alike (libserialport refuses pseudo-terminals, so the
/// mock devices could not exercise it); libserialport is used for listing ports. Not thread-safe:
/// its bus actor alone uses it, on the bus's own queue, where blocking in `poll` is allowed.
final class SerialLine: @unchecked Sendable {
    let path: String
    /// -1 once closed.
    private var fd: Int32
    /// A pipe whose read end `read` watches too: a byte written to it ends a wait (see `wake`).
    private let wakeRead: Int32
    private let wakeWrite: Int32
    /// Where reads land, kept: a fresh one each read cost an allocation and a clearing per transaction.
    private var readBuffer = [UInt8](repeating: 0, count: 1024)
    /// Why the line is gone, once a read found the other end gone: reads and writes fail with it from then on.
    private var broken: String?
    /// A tty, not a socket: its input is flushed by `tcflush`, and a read of nothing means it hung up.
    private let isTerminal: Bool

    /// Opens the port; `readOnly` for a listener that must never speak on the line.
    init(settings: SerialSettings, readOnly: Bool = false) throws(GatewayError) {
        path = settings.port
        let opened = open(settings.port, (readOnly ? O_RDONLY : O_RDWR) | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard opened >= 0 else {
            let reason =
                errno == ENOENT ? "no such device"
                // Claimed by another program (TIOCEXCL, as below).
                : errno == EBUSY ? "in use by " + Self.holders(of: settings.port)
                : errno == EACCES ? "permission denied (is the user in the dialout group?)"
                // A device cgroup's refusal: the unit's DevicePolicy=closed allows ttyUSB, ttyACM and ttyS only.
                : errno == EPERM ? "not permitted (the service's device list: add DeviceAllow=char-\(Self.deviceGroup(of: settings.port) ?? "NAME") rw)"
                : String(cString: strerror(errno))
            throw GatewayError(.portUnavailable, "cannot open \(settings.port): \(reason)")
        }
        // Claimed, to speak on it: a second gateway or its tools are refused (the lock), and so is a program that
        // does not look, unless it runs as root (TIOCEXCL: a technician's minicom). Not a pseudo-terminal exclusively:
        // its flag outlives the gateway's close while the other end stays open (from a second read: an unprivileged
        // gateway could not open its simulator's line again).
        if !readOnly {
            guard flock(opened, LOCK_EX | LOCK_NB) == 0 else {
                Foundation.close(opened)
                throw GatewayError(.portUnavailable, "cannot open \(settings.port): in use by " + Self.holders(of: settings.port))
            }
            if !URL(fileURLWithPath: settings.port).resolvingSymlinksInPath().path.hasPrefix("/dev/pts/") {
                _ = ioctl(opened, UInt(TIOCEXCL))
            }
        }
        fd = opened
        var attributes = termios()
        guard tcgetattr(fd, &attributes) == 0 else {
            let reason = String(cString: strerror(errno))
            Foundation.close(fd)
            throw GatewayError(.portUnavailable, "\(settings.port) is not a serial port: \(reason)")
        }
        cfmakeraw(&attributes)
        // Flow control survives in the tty from its last user (minicom turns RTS/CTS on): with CTS unwired, as on
        // most RS-485 adapters, nothing would leave the port. The protocols here have none.
        attributes.c_cflag &= ~tcflag_t(CRTSCTS)
        attributes.c_iflag &= ~tcflag_t(IXON | IXOFF | IXANY)
        let speed = Self.speed(settings.baud)
        cfsetispeed(&attributes, speed)
        cfsetospeed(&attributes, speed)
        attributes.c_cflag &= ~tcflag_t(CSIZE | PARENB | PARODD | CSTOPB)
        attributes.c_cflag |= tcflag_t(CLOCAL | CREAD) | (settings.dataBits == 7 ? tcflag_t(CS7) : tcflag_t(CS8))
        switch settings.parity {
        case .none: break
        case .even: attributes.c_cflag |= tcflag_t(PARENB)
        case .odd: attributes.c_cflag |= tcflag_t(PARENB | PARODD)
        }
        if settings.stopBits == 2 { attributes.c_cflag |= tcflag_t(CSTOPB) }
        guard tcsetattr(fd, TCSANOW, &attributes) == 0 else {
            let reason = String(cString: strerror(errno))
            Foundation.close(fd)
            throw GatewayError(.portUnavailable, "cannot configure \(settings.port): \(reason)")
        }
        tcflush(fd, TCIOFLUSH)
        isTerminal = true
        (wakeRead, wakeWrite) = try Self.wakePipe(closingOnFailure: fd, settings.port)
    }

    /// Who else has `port` open, for a refusal: `python3 holder.py (pid 9605)`.
    static func holders(of port: String) -> String {
        let holders = PortHolder.of(port)
        return holders.isEmpty ? "another program" : holders.map(\.description).joined(separator: ", ")
    }

    /// A connected, non-blocking socket read and written like a line (a Modbus TCP connection on a bus's own thread).
    init(socket: Int32, endpoint: String) throws(GatewayError) {
        path = endpoint
        fd = socket
        isTerminal = false
        (wakeRead, wakeWrite) = try Self.wakePipe(closingOnFailure: socket, endpoint)
    }

    private static func wakePipe(closingOnFailure fd: Int32, _ name: String) throws(GatewayError) -> (Int32, Int32) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            let reason = String(cString: strerror(errno))
            Foundation.close(fd)
            throw GatewayError(.portUnavailable, "cannot set up \(name): \(reason)")
        }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        return (ends[0], ends[1])
    }

    deinit {
        close()
        Foundation.close(wakeRead)
        Foundation.close(wakeWrite)
    }

    /// Closes the line; reads and writes fail from then on. The wake pipe stays open until the line is freed: a
    /// `wake` from another thread after the close would otherwise write into whatever file took its number.
    func close() {
        guard fd >= 0 else { return }
        // The exclusive flag stays with a port someone else still has open.
        if isTerminal { _ = ioctl(fd, UInt(TIOCNXCL)) }
        Foundation.close(fd)
        fd = -1
    }

    /// Ends a `read` that is waiting, from any thread: it returns empty.
    func wake() {
        var byte: UInt8 = 1
        _ = Foundation.write(wakeWrite, &byte, 1)
    }

    /// How long the driver's buffer may stay full before the port counts as stalled: a UART sending at 1200 baud
    /// frees room every 9 ms, so seconds without any is a line that does not send (flow control held, an adapter
    /// gone quiet).
    static let stallLimit: Duration = .seconds(2)

    /// Writes all bytes, waiting for the driver's buffer when it is full; throws when it stays full for the stall
    /// limit, so that the bus reopens the port instead of waiting for ever.
    func write(_ bytes: [UInt8]) throws(GatewayError) {
        // A socket takes a write or two after its peer closed (the peer answers them with a reset): not a live line.
        if let broken { throw GatewayError(.portUnavailable, broken) }
        var written = 0
        // Read only once the driver's buffer is full: a write that goes at once needs no clock.
        var progressAt: ContinuousClock.Instant?
        while written < bytes.count {
            // A socket the peer closed must not raise SIGPIPE.
            let count = bytes[written...].withUnsafeBytes {
                isTerminal ? Foundation.write(fd, $0.baseAddress, $0.count) : send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if count > 0 {
                written += count
                progressAt = nil
            } else if count < 0, errno == EAGAIN || errno == EINTR {
                let now = ContinuousClock.now
                if progressAt == nil { progressAt = now }
                if let progressAt, now - progressAt >= Self.stallLimit {
                    throw GatewayError(.portUnavailable, "\(path) takes no more output (\(bytes.count - written) bytes "
                                       + "waiting for \(Self.stallLimit.components.seconds) s): "
                                       + (isTerminal ? "the adapter stalls" : "the peer reads nothing"))
                }
                var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&entry, 1, 100)
            } else {
                throw GatewayError(.portUnavailable, failure("write to", errno))
            }
        }
    }

    /// Waits up to `timeout` for bytes and returns what arrived (empty: nothing within the timeout).
    func read(timeout: Duration) throws(GatewayError) -> [UInt8] {
        if let broken { throw GatewayError(.portUnavailable, broken) }
        // Rounded up: a wait of 0.4 ms must not become a busy loop of zero-timeout polls.
        let microseconds = timeout.components.seconds * 1_000_000 + timeout.components.attoseconds / 1_000_000_000_000
        let milliseconds = Int32(clamping: (microseconds + 999) / 1000)
        // On the stack: an array here cost an allocation per read.
        var entries = (pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
        let ready = withUnsafeMutableBytes(of: &entries) {
            poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, max(0, milliseconds))
        }
        if entries.1.revents & Int16(POLLIN) != 0 {
            var drain = [UInt8](repeating: 0, count: 64)
            _ = Foundation.read(wakeRead, &drain, drain.count)
        }
        let entry = entries.0
        guard ready > 0, entry.revents != 0 else { return [] }
        if entry.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0, entry.revents & Int16(POLLIN) == 0 {
            throw GatewayError(.portUnavailable, breaking(hungUpOrSocketError()))
        }
        let count = readBuffer.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EAGAIN || errno == EINTR { return [] }
            throw GatewayError(.portUnavailable, breaking(failure("read from", errno)))
        }
        // Readable yet nothing to read: the tty hung up (a USB adapter unplugged). Not "nothing arrived".
        if count == 0 { throw GatewayError(.portUnavailable, breaking(hungUp)) }
        return Array(readBuffer[0..<count])
    }

    private var hungUp: String { isTerminal ? "\(path) hung up" : "\(path) closed the connection" }

    private func breaking(_ reason: String) -> String {
        broken = reason
        return reason
    }

    /// A failed read or write in a technician's words; a socket's as the event loop's link says them.
    private func failure(_ what: String, _ code: Int32) -> String {
        isTerminal ? "\(what) \(path) failed: \(String(cString: strerror(code)))"
            : "connection to \(path) failed: \(TCPLinkOpener.reason(errno: code))"
    }

    /// A hang-up with no byte to read: a socket says why (a reset, a timeout), a tty only that it hung up.
    private func hungUpOrSocketError() -> String {
        guard !isTerminal else { return hungUp }
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) == 0, code != 0 else { return hungUp }
        return failure("read from", code)
    }

    /// Drops unread input (after a timeout or a garbled frame).
    func discardInput() {
        guard !isTerminal else { return _ = tcflush(fd, TCIFLUSH) }
        // What the socket holds now, at most a few reads' worth: a peer that streams must not hold the bus here.
        for _ in 0..<16 {
            let count = readBuffer.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if count > 0 { continue }
            // A reset or a close read here is the next read's to report.
            if count == 0 {
                _ = breaking(hungUp)
            } else if errno != EAGAIN && errno != EINTR {
                _ = breaking(failure("read from", errno))
            }
            return
        }
    }

    /// The kernel's name for the kind of character device at `path` (`ttyUSB`, `ttyAMA`, `pts`), as systemd's
    /// `DeviceAllow=char-NAME` takes it: the driver of its major number in /proc/devices.
    static func deviceGroup(of path: String) -> String? {
        var status = stat()
        guard stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFCHR,
            let devices = try? String(contentsOfFile: "/proc/devices", encoding: .utf8)
        else { return nil }
        let major = String(UInt32(truncatingIfNeeded: status.st_rdev >> 8) & 0xfff)
        var characterDevices = false
        for line in devices.split(separator: "\n") {
            if line.hasPrefix("Character devices:") { characterDevices = true; continue }
            if line.hasPrefix("Block devices:") { break }
            let fields = line.split(separator: " ")
            if characterDevices, fields.count == 2, fields[0] == major { return String(fields[1]) }
        }
        return nil
    }

    private static func speed(_ baud: Int) -> speed_t {
        switch baud {
        case 1200: speed_t(B1200)
        case 2400: speed_t(B2400)
        case 4800: speed_t(B4800)
        case 19200: speed_t(B19200)
        case 38400: speed_t(B38400)
        case 57600: speed_t(B57600)
        case 115_200: speed_t(B115200)
        case 230_400: speed_t(B230400)
        default: speed_t(B9600)
        }
    }
}
