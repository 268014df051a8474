// `struct pollfd` is defined again by CMosquitto's shim (it includes poll.h): which of the two modules the compiler
// takes as its home varies with the build's batches, and a member of it needs that module imported (a CI build broke).
import CMosquitto
import Foundation
public import Protocols

/// Where a technician's Modbus transactions go: a serial line (RTU) or a TCP endpoint.
public enum ModbusLine: Sendable, Equatable {
    /// Modbus RTU on a serial line.
    case rtu(SerialSettings)
    /// Modbus TCP on `host:port`.
    case tcp(host: String, port: Int)

    /// How the line reads in messages: `/dev/ttyUSB0 at 9600 8N1` or `10.0.0.5:502`.
    public var description: String {
        switch self {
        case .rtu(let settings): "\(settings.port) at \(settings.lineName)"
        case .tcp(let host, let port): "\(host):\(port)"
        }
    }

    /// What a device is called on the line: "address 3" (RTU) or "unit 3" (TCP).
    public func name(of address: UInt8) -> String {
        switch self {
        case .rtu: "address \(address)"
        case .tcp: "unit \(address)"
        }
    }
}

extension SerialSettings {
    /// `9600 8N1`, the way technicians write line settings.
    public var lineName: String {
        let parityLetter =
            switch parity {
            case .none: "N"
            case .even: "E"
            case .odd: "O"
            }
        return "\(baud) \(dataBits)\(parityLetter)\(stopBits)"
    }

    /// A parity from its letter (N, E, O) or name (none, even, odd).
    public static func parity(named text: String) -> Parity? {
        switch text.lowercased() {
        case "n", "none": Parity.none
        case "e", "even": .even
        case "o", "odd": .odd
        default: nil
        }
    }
}

extension ModbusExceptionCode {
    /// The exception in words, with what it usually means for the technician.
    public var words: String {
        switch self {
        case .illegalFunction: "exception 01 illegal function: the device does not support this function"
        case .illegalDataAddress: "exception 02 illegal data address: the device has no such register or coil"
        case .illegalDataValue: "exception 03 illegal data value: the device refuses this count or value"
        case .serverDeviceFailure: "exception 04 device failure: the device failed while doing it"
        case .acknowledge: "exception 05 acknowledge: accepted, still busy with it; ask again later"
        case .serverDeviceBusy: "exception 06 device busy: retry later"
        case .memoryParityError: "exception 08 memory parity error in the device"
        case .gatewayPathUnavailable: "exception 0A gateway path unavailable: the converter cannot reach that unit"
        case .gatewayTargetDeviceFailedToRespond:
            "exception 0B no answer behind the gateway: the converter got nothing from that unit"
        default: "exception \(String(format: "%02X", rawValue))"
        }
    }
}

/// What one direct transaction brought back.
public struct ModbusExchange: Sendable {
    /// The device's answer: data, an echo, or an exception.
    public var response: ModbusResponse
    /// From the request's last byte written to the answer's last byte read.
    public var latency: Duration
    /// The request's bytes on the wire.
    public var sent: [UInt8]
    /// The answer's bytes on the wire (with bytes around it that were not part of it).
    public var received: [UInt8]
}

/// Why a direct transaction failed, in one line a technician understands.
public struct ModbusDirectError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure.
    public enum Kind: Sendable, Equatable {
        /// The port or host could not be opened or reached.
        case unreachable
        /// Nothing came back within the timeout.
        case timeout
        /// Bytes came back, but no valid answer among them.
        case garbled
    }

    /// What kind of failure.
    public var kind: Kind
    /// What happened, where, and what to check.
    public var message: String
    /// Bytes that arrived, if any (a garbled answer).
    public var received: [UInt8]

    /// Creates an error.
    public init(_ kind: Kind, _ message: String, received: [UInt8] = []) {
        self.kind = kind
        self.message = message
        self.received = received
    }

    public var description: String { message }
}

/// One Modbus transaction at a time, straight on a serial line or a TCP connection, outside the bus engine: the
/// technician's `modbus read|write`, `scan` and `probe` when no daemon owns the port.
///
/// Blocking: meant for the CLI's main thread (or a thread of its own), never the cooperative pool.
public final class ModbusDirectClient: @unchecked Sendable {
    /// Where the transactions go.
    public let line: ModbusLine
    /// How long to wait for an answer.
    public var timeout: Duration
    private let serial: SerialLine?
    private let socket: Int32
    private var transactionId: UInt16 = 0
    private var lastTraffic = ContinuousClock.now - .seconds(1)

    /// Opens `line`; the error says what to check (the dialout group for a port not permitted, the host and port
    /// for a refused connection).
    public init(line: ModbusLine, timeout: Duration = .milliseconds(500)) throws(ModbusDirectError) {
        self.line = line
        self.timeout = timeout
        switch line {
        case .rtu(let settings):
            serial = try Self.openSerial(settings)
            socket = -1
        case .tcp(let host, let port):
            serial = nil
            socket = try Self.connect(host: host, port: port, timeout: max(timeout, .seconds(2)))
        }
    }

    deinit {
        serial?.close()
        if socket >= 0 { close(socket) }
    }

    /// Sends `request` to `address` (RTU address or TCP unit id) and waits for its answer.
    public func transact(_ request: ModbusRequest, address: UInt8) throws(ModbusDirectError) -> ModbusExchange {
        let pdu: [UInt8]
        do { pdu = try request.encode() } catch {
            throw ModbusDirectError(.unreachable, "cannot encode the request: \(error)")
        }
        switch line {
        case .rtu(let settings): return try transactRTU(pdu: pdu, address: address, settings: settings)
        case .tcp: return try transactTCP(pdu: pdu, unit: address)
        }
    }

    // MARK: RTU

    private func transactRTU(
        pdu: [UInt8], address: UInt8, settings: SerialSettings
    ) throws(ModbusDirectError)
        -> ModbusExchange
    {
        guard let serial else { throw ModbusDirectError(.unreachable, "the line is closed") }
        let frame = ModbusRTUFrame.frame(address: address, pdu: pdu)
        // The 3.5-character silence before a new frame (libmodbus leaves it to us; see the design notes).
        let gap = LineTiming.serial(settings, silenceBetweenFrames: true).frameGap
        let quietSince = ContinuousClock.now - lastTraffic
        if quietSince < gap { Thread.sleep(forTimeInterval: (gap - quietSince).timeInterval) }
        serial.discardInput()
        do { try serial.write(frame) } catch {
            throw ModbusDirectError(.unreachable, error.message)
        }
        // The request's own wire time counts before the timeout starts, as a device cannot answer earlier.
        let written = ContinuousClock.now + settings.wireTime(characters: frame.count)
        let deadline = written + timeout
        var decoder = ModbusRTUDecoder(role: .client)
        var received: [UInt8] = []
        defer { lastTraffic = ContinuousClock.now }
        while ContinuousClock.now < deadline {
            let bytes: [UInt8]
            do { bytes = try serial.read(timeout: deadline - ContinuousClock.now) } catch {
                throw ModbusDirectError(.unreachable, error.message)
            }
            if bytes.isEmpty { continue }
            received += bytes
            for answer in decoder.decode(bytes) where answer.address == address {
                guard case .response(let response) = answer.message else { continue }
                return ModbusExchange(
                    response: response, latency: max(.zero, ContinuousClock.now - written),
                    sent: frame, received: received)
            }
        }
        let who = "\(line.name(of: address)) at \(settings.lineName) on \(settings.port)"
        if received.isEmpty {
            throw ModbusDirectError(
                .timeout,
                "no answer from \(who) within \(Self.milliseconds(timeout)): check wiring A/B, baud, address, termination"
            )
        }
        throw ModbusDirectError(
            .garbled,
            "garbled answer from \(who): \(received.count) bytes (\(Self.hex(received.prefix(16)))"
                + "\(received.count > 16 ? " …" : "")), no valid frame \(Self.crcNote(received)): check baud and "
                + "parity, termination, and that no two devices share the address",
            received: received)
    }

    /// What the CRC of a would-be frame says: expected vs found, when the bytes look like one frame.
    static func crcNote(_ bytes: [UInt8]) -> String {
        guard bytes.count >= 4 else { return "(too short for a frame)" }
        let crc = Checksum.crc16Modbus(bytes.dropLast(2))
        let found = UInt16(bytes[bytes.count - 1]) << 8 | UInt16(bytes[bytes.count - 2])
        guard crc != found else { return "(the CRC matches, the content is not a valid answer)" }
        return String(format: "(CRC over all of them: expected %04X, found %04X)", crc, found)
    }

    static func openSerial(_ settings: SerialSettings) throws(ModbusDirectError) -> SerialLine {
        if access(settings.port, F_OK) == 0, access(settings.port, R_OK | W_OK) != 0, errno == EACCES {
            var info = stat()
            guard stat(settings.port, &info) == 0 else {
                throw ModbusDirectError(.unreachable, "cannot open \(settings.port): permission denied")
            }
            let owner = getpwuid(info.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "\(info.st_uid)"
            let group = getgrgid(info.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "\(info.st_gid)"
            throw ModbusDirectError(
                .unreachable, permissionDenied(settings.port, owner: owner, group: group, mode: info.st_mode))
        }
        if let holder = daemonHolding(settings.port) {
            throw ModbusDirectError(
                .unreachable,
                "\(settings.port) is in use by the running gateway (gatewayd, pid \(holder)): two masters on one line "
                    + "garble each other's frames; use gatewayd probe/display/printer/pad (they go through the daemon) "
                    + "or stop the gateway first")
        }
        do { return try SerialLine(settings: settings) } catch {
            throw ModbusDirectError(.unreachable, error.message)
        }
    }

    /// Why a device file may not be opened, and what to do: join its group when the group may read and write it;
    /// otherwise no group helps until the port is given to one (from a trial: a `root root 0600` node was said to be
    /// the dialout group's).
    public static func permissionDenied(_ port: String, owner: String, group: String, mode: UInt32) -> String {
        let found = "cannot open \(port): permission denied (owner \(owner), group \(group), mode "
            + String(format: "%04o", mode & 0o7777)
        if mode & 0o060 == 0o060 {
            return found + "); add your user to the \(group) group: sudo usermod -aG \(group) $USER, then log in again"
        }
        return found + ": the group may not read and write it); give the port to the dialout group with a udev rule "
            + "(GROUP=\"dialout\", MODE=\"0660\"), or until the next plug-in: sudo chgrp dialout \(port) && "
            + "sudo chmod 660 \(port)"
    }

    /// The pid of a running `gatewayd` (another process than this one) that has `path` open, if one does.
    public static func daemonHolding(_ path: String) -> Int32? {
        PortHolder.of(path).first(where: \.isGateway)?.pid
    }

    // MARK: TCP

    private func transactTCP(pdu: [UInt8], unit: UInt8) throws(ModbusDirectError) -> ModbusExchange {
        transactionId &+= 1
        let frame = ModbusTCPFrame.frame(transactionId: transactionId, unitId: unit, pdu: pdu)
        var offset = 0
        while offset < frame.count {
            let count = frame[offset...].withUnsafeBytes { send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else {
                throw ModbusDirectError(
                    .unreachable, "write to \(line.description) failed: \(SystemError.words(errno: errno))")
            }
            offset += count
        }
        let written = ContinuousClock.now
        let deadline = written + timeout
        var decoder = ModbusTCPDecoder(role: .client)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while ContinuousClock.now < deadline {
            var entry = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let wait = Int32(
                clamping: (deadline - ContinuousClock.now).components.seconds * 1000
                    + (deadline - ContinuousClock.now).components.attoseconds / 1_000_000_000_000_000 + 1)
            guard poll(&entry, 1, wait) > 0 else { continue }
            let count = recv(socket, &buffer, buffer.count, 0)
            if count == 0 { throw ModbusDirectError(.unreachable, "\(line.description) closed the connection") }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw ModbusDirectError(
                    .unreachable, "read from \(line.description) failed: \(SystemError.words(errno: errno))")
            }
            received += buffer[0..<count]
            for answer in decoder.decode(buffer[0..<count]) where answer.transactionId == transactionId {
                guard case .response(let response) = answer.message else { continue }
                return ModbusExchange(
                    response: response, latency: ContinuousClock.now - written, sent: frame,
                    received: received)
            }
        }
        throw ModbusDirectError(
            received.isEmpty ? .timeout : .garbled,
            "no answer from unit \(unit) at \(line.description) within \(Self.milliseconds(timeout)): check the unit "
                + "id and, behind a converter, its serial side (wiring A/B, baud, address, termination)",
            received: received)
    }

    static func connect(host: String, port: Int, timeout: Duration) throws(ModbusDirectError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw ModbusDirectError(
                .unreachable, "cannot resolve \(host): \(String(cString: gai_strerror(status)).lowercased())")
        }
        defer { freeaddrinfo(list) }
        var reason = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            entry = info.pointee.ai_next
            let fd = Glibc.socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard fd >= 0 else { continue }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var result = Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen)
            if result != 0, errno == EINPROGRESS {
                var waiting = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&waiting, 1, Int32(timeout.components.seconds * 1000)) > 0 {
                    var error: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                    result = error == 0 ? 0 : -1
                    errno = error
                } else {
                    errno = ETIMEDOUT
                }
            }
            if result == 0 {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
                var on: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            reason = SystemError.words(errno: errno)
            close(fd)
        }
        throw ModbusDirectError(.unreachable, "cannot connect to \(host):\(port): \(reason)")
    }

    // MARK: Formatting

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02X", $0) }.joined(separator: " ")
    }

    static func milliseconds(_ duration: Duration) -> String {
        "\(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000) ms"
    }
}
