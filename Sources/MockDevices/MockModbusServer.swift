import CModbus
import Foundation
import Synchronization

/// A simulated Modbus device: its holding registers, served by `MockModbusServer`.
public protocol MockModbusUnit: AnyObject, Sendable {
    /// A copy of the holding registers.
    var registers: [UInt16] { get }
    /// Whether the device answers at all (false: as if unplugged).
    var answering: Bool { get }
    /// Takes the registers after a client's write (function 06 or 16); the device keeps what it allows.
    func accept(writtenRegisters: [UInt16])
    /// The registers a request is answered from; a device may change them as requests come (a board acknowledging
    /// only after it redrew).
    func registersForRequest() -> [UInt16]
}

extension MockModbusUnit {
    public func registersForRequest() -> [UInt16] { registers }
}

/// Serves simulated Modbus devices through libmodbus, on a pseudo-terminal (RTU, many addresses on
/// one line, like an RS-485 bus) or on loopback TCP (many unit ids behind one endpoint).
///
/// The server runs on a thread of its own because libmodbus blocks.
public final class MockModbusServer: Sendable {
    /// Where the server listens.
    public enum Endpoint: Sendable {
        /// Modbus RTU on a pseudo-terminal; the gateway opens `devicePath`.
        case rtu(devicePath: String)
        /// Modbus TCP on 127.0.0.1.
        case tcp(port: Int)
    }

    /// Where clients reach the server.
    public let endpoint: Endpoint
    private let units: [Int: any MockModbusUnit]
    private let stopped = Mutex(false)
    private let finished = DispatchSemaphore(value: 0)
    /// Requests answered so far (for tests).
    private let answered = Atomic<Int>(0)

    /// Starts serving `units` (address → pad) as Modbus RTU on a new pseudo-terminal.
    ///
    /// With `pacing` the line keeps wire time: a request counts as arriving one character time per byte, each pad
    /// answers `pacing.frameGap` (3.5 characters) after the request's last byte, and the answer goes out one
    /// character time per byte. Without it answers are written at once.
    ///
    /// With `baud` the devices are set to that speed: a request sent while the gateway's end of the pseudo-terminal
    /// is set to another speed is not answered, as real devices hear only garbage then (parity cannot be checked
    /// this way: Linux pseudo-terminals drop the parity flag).
    public static func rtu(
        units: [Int: any MockModbusUnit], pacing: WirePacing? = nil, baud: Int? = nil
    ) throws -> MockModbusServer {
        let terminal = try PseudoTerminal()
        guard let context = modbus_new_rtu("/dev/null", 9600, CChar(UInt8(ascii: "N")), 8, 1) else {
            throw MockDeviceError("modbus_new_rtu failed")
        }
        let staging: ReplyStaging
        do {
            staging = try ReplyStaging()
        } catch {
            modbus_free(context)
            throw error
        }
        let paced = pacing.map { PacedReplies(pacing: $0, transmitter: PacedTransmitter(terminal: terminal, pacing: $0)) }
        // libmodbus only encodes the replies; frames are read here, so that one line serves many addresses.
        let server = MockModbusServer(
            endpoint: .rtu(devicePath: terminal.devicePath), units: units, staging: staging, baud: baud,
            transmitter: paced?.transmitter)
        let handle = ContextHandle(context)
        Thread.detachNewThread { [paced] in
            server.serveRTU(context: handle, terminal: terminal, paced: paced)
        }
        return server
    }

    /// Starts serving `units` (unit id → pad) as Modbus TCP on 127.0.0.1 (`port` 0: any free port).
    /// `asConverter`: answers for a unit it does not have (or one that is silent) with exception 0B, "no answer behind
    /// the gateway", as a Modbus TCP to RTU converter does for an empty address on its line.
    public static func tcp(units: [Int: any MockModbusUnit], port: Int = 0, asConverter: Bool = false) throws
        -> MockModbusServer
    {
        guard let context = modbus_new_tcp("127.0.0.1", Int32(port)) else {
            throw MockDeviceError("modbus_new_tcp failed")
        }
        let listener = modbus_tcp_listen(context, 4)
        guard listener >= 0 else {
            let text = String(cString: modbus_strerror(cmodbus_errno()))
            modbus_free(context)
            throw MockDeviceError("cannot listen on 127.0.0.1:\(port): \(text)")
        }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(listener, $0, &length) }
        }
        let staging: ReplyStaging
        do {
            staging = try ReplyStaging()
        } catch {
            close(listener)
            modbus_free(context)
            throw error
        }
        let server = MockModbusServer(
            endpoint: .tcp(port: Int(UInt16(bigEndian: address.sin_port))), units: units, staging: staging,
            asConverter: asConverter)
        let handle = ContextHandle(context)
        Thread.detachNewThread {
            server.serveTCP(context: handle, listener: listener)
        }
        return server
    }

    /// The speed the devices of an RTU line are set to; nil: any.
    private let baud: Int?

    /// A paced RTU line's transmitter.
    private let transmitter: PacedTransmitter?
    /// Where libmodbus writes each reply, so that the unit takes what a request wrote before its answer leaves.
    private let staging: ReplyStaging

    /// Answers exception 0B for units it does not have, as a converter.
    private let asConverter: Bool

    private init(
        endpoint: Endpoint, units: [Int: any MockModbusUnit], staging: ReplyStaging, baud: Int? = nil,
        transmitter: PacedTransmitter? = nil, asConverter: Bool = false
    ) {
        self.asConverter = asConverter
        self.endpoint = endpoint
        self.units = units
        self.staging = staging
        self.baud = baud
        self.transmitter = transmitter
    }

    /// The number of requests answered so far.
    public var requestsAnswered: Int { answered.load(ordering: .relaxed) }

    /// On a paced RTU line: when the last answer had fully arrived at the gateway, as the wire delivered it (a late
    /// transmitter thread included); nil before any answer, or unpaced.
    public var lastAnswerArrived: ContinuousClock.Instant? { transmitter?.lastFrameArrived }

    /// Stops serving and waits until the line or socket is closed.
    public func stop() {
        let wasStopped = stopped.withLock { stopped in
            defer { stopped = true }
            return stopped
        }
        if !wasStopped { finished.wait() }
    }

    private var isStopped: Bool { stopped.withLock { $0 } }

    // MARK: RTU

    private func serveRTU(context handle: ContextHandle, terminal: PseudoTerminal, paced: PacedReplies?) {
        defer {
            // modbus_close would restore and close the controller side; the terminal object owns it.
            modbus_free(handle.context)
            paced?.transmitter.stop()
            staging.close()
            terminal.hangUp()
            finished.signal()
        }
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        // With pacing: when the last byte in `pending` has arrived on the wire (CLOCK_MONOTONIC ns).
        var arrivingUntil: Int64 = 0
        while !isStopped {
            let heard = if let paced {
                terminal.awaitHost(
                    expected: max(arrivingUntil, paced.transmitter.plannedUntil) + paced.frameGap, pacing: paced.pacing,
                    milliseconds: 50)
            } else {
                wait(readable: terminal.controller, milliseconds: 50)
            }
            guard heard else {
                // A silence ends any partial frame, as the 3.5-character gap does on a real line.
                pending.removeAll()
                continue
            }
            let count = read(terminal.controller, &buffer, buffer.count)
            guard count > 0 else { continue }
            if let paced {
                arrivingUntil = max(MonotonicClock.now(), arrivingUntil) + Int64(count) * paced.characterTime
            }
            pending += buffer[0..<count]
            while let length = RTURequest.length(of: pending) {
                guard length <= pending.count else { break }
                let frame = Array(pending[0..<length])
                pending.removeFirst(length)
                if let baud, !Self.lineIsSet(to: baud, terminal: terminal) { continue }
                if let paced {
                    // The pad has the request once its last byte is in; it answers after the frame-end silence.
                    let frameEnd = arrivingUntil - Int64(pending.count) * paced.characterTime
                    MonotonicClock.wait(until: frameEnd, spinning: paced.pacing.spinNanoseconds)
                    answer(rtu: frame, context: handle.context, to: terminal.controller, paced: paced,
                           notBefore: frameEnd + paced.frameGap)
                } else {
                    answer(rtu: frame, context: handle.context, to: terminal.controller)
                }
            }
            if pending.count > 256 { pending.removeAll() }
        }
    }

    private func answer(
        rtu frame: [UInt8], context: OpaquePointer, to line: Int32, paced: PacedReplies? = nil, notBefore: Int64 = 0
    ) {
        guard RTURequest.hasValidCRC(frame), let pad = units[Int(frame[0])], pad.answering else { return }
        modbus_set_slave(context, Int32(frame[0]))
        let answer = reply(frame, headerLength: 1, pad: pad, context: context)
        guard !answer.isEmpty else { return }
        if let paced {
            paced.transmitter.send(answer, notBefore: notBefore)
        } else {
            _ = answer.withUnsafeBytes { write(line, $0.baseAddress, $0.count) }
        }
    }

    // MARK: TCP

    private func serveTCP(context handle: ContextHandle, listener: Int32) {
        var clients: [Int32] = []
        defer {
            clients.forEach { close($0) }
            close(listener)
            staging.close()
            modbus_free(handle.context)
            finished.signal()
        }
        var request = [UInt8](repeating: 0, count: Int(MODBUS_TCP_MAX_ADU_LENGTH))
        while !isStopped {
            var fds = ([listener] + clients).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 50) > 0 else { continue }
            if fds[0].revents != 0 {
                let client = accept(listener, nil, nil)
                if client >= 0 { clients.append(client) }
            }
            for entry in fds.dropFirst() where entry.revents != 0 {
                modbus_set_socket(handle.context, entry.fd)
                let length = modbus_receive(handle.context, &request)
                if length < 0 {
                    close(entry.fd)
                    clients.removeAll { $0 == entry.fd }
                    continue
                }
                guard length > 7 else { continue }
                guard let pad = units[Int(request[6])], pad.answering else {
                    if asConverter {
                        // The request's transaction id and unit, its function with the exception bit, code 0B.
                        let answer = [request[0], request[1], 0, 0, 0, 3, request[6], request[7] | 0x80, 0x0B]
                        _ = answer.withUnsafeBytes { send(entry.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    }
                    continue
                }
                let answer = reply(Array(request[0..<Int(length)]), headerLength: 7, pad: pad, context: handle.context)
                _ = answer.withUnsafeBytes { send(entry.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    // MARK: Shared

    /// Lets libmodbus answer from the pad's registers and takes back what the request wrote; returns the answer,
    /// for the caller to send. libmodbus writes it into `staging`: sent at once, it could reach the gateway before
    /// the pad holds the write it acknowledges (a test reading the board after its command returned would race).
    private func reply(
        _ request: [UInt8], headerLength: Int, pad: any MockModbusUnit, context: OpaquePointer
    ) -> [UInt8] {
        let registers = pad.registersForRequest()
        guard let mapping = modbus_mapping_new(0, 0, Int32(registers.count), 0) else { return [] }
        defer { modbus_mapping_free(mapping) }
        for (index, value) in registers.enumerated() { mapping.pointee.tab_registers[index] = value }
        modbus_set_socket(context, staging.libmodbusEnd)
        let written = modbus_reply(context, request, Int32(request.count), mapping)
        let function = request[headerLength]
        if function == 0x06 || function == 0x10 {
            pad.accept(writtenRegisters: (0..<registers.count).map { mapping.pointee.tab_registers[$0] })
        }
        answered.add(1, ordering: .relaxed)
        return staging.take(keeping: written > 0)
    }

    /// Whether the gateway's end of the pseudo-terminal is set to `baud` (the controller reads its settings).
    private static func lineIsSet(to baud: Int, terminal: PseudoTerminal) -> Bool {
        var attributes = termios()
        guard tcgetattr(terminal.controller, &attributes) == 0 else { return true }
        let speeds: [Int: Int32] = [
            1200: B1200, 2400: B2400, 4800: B4800, 9600: B9600, 19200: B19200, 38400: B38400, 57600: B57600,
            115_200: B115200, 230_400: B230400,
        ]
        return speeds[baud].map { cfgetospeed(&attributes) == speed_t($0) } ?? true
    }

    private func wait(readable fd: Int32, milliseconds: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, milliseconds) > 0
    }
}

/// Where libmodbus writes a reply before the server sends it: a local socket pair (libmodbus's TCP backend sends
/// with `send(2)`, which a pipe refuses).
private struct ReplyStaging: Sendable {
    /// libmodbus's socket.
    let libmodbusEnd: Int32
    /// Where the server picks up each reply.
    let replies: Int32

    init() throws {
        var ends: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) == 0 else {
            throw MockDeviceError("cannot open a socket pair for the Modbus replies: \(String(cString: strerror(errno)))")
        }
        libmodbusEnd = ends[0]
        replies = ends[1]
        // What libmodbus wrote is there before it returns; a read must never wait for more.
        _ = fcntl(replies, F_SETFL, fcntl(replies, F_GETFL) | O_NONBLOCK)
    }

    /// What libmodbus wrote since the last call: the reply, or the start of one it failed to finish (dropped, so it
    /// does not prefix the next).
    func take(keeping: Bool) -> [UInt8] {
        var taken: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        while true {
            let count = read(replies, &chunk, chunk.count)
            guard count > 0 else { break }
            taken += chunk[0..<count]
        }
        return keeping ? taken : []
    }

    func close() {
        _ = Glibc.close(libmodbusEnd)
        _ = Glibc.close(replies)
    }
}

/// A paced RTU line: the transmitter paces each reply onto the line.
private struct PacedReplies: Sendable {
    let pacing: WirePacing
    let transmitter: PacedTransmitter

    var characterTime: Int64 { pacing.characterNanoseconds }
    var frameGap: Int64 { pacing.frameGapNanoseconds }
}

/// Moves a libmodbus context into the server thread that alone uses it.
private struct ContextHandle: @unchecked Sendable {
    let context: OpaquePointer
    init(_ context: OpaquePointer) { self.context = context }
}

/// The length of a Modbus RTU request from its first bytes, as a slave on the line must work it out.
enum RTURequest {
    static func length(of bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        switch bytes[1] {
        case 0x01...0x06: return 8
        case 0x0F, 0x10:
            guard bytes.count >= 7 else { return nil }
            return 9 + Int(bytes[6])
        default: return bytes.count  // unknown function: take what arrived; the CRC check drops it
        }
    }

    static func hasValidCRC(_ frame: [UInt8]) -> Bool {
        guard frame.count >= 4 else { return false }
        var crc: UInt16 = 0xFFFF
        for byte in frame.dropLast(2) {
            crc ^= UInt16(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xA001 : crc >> 1 }
        }
        return frame[frame.count - 2] == UInt8(crc & 0xFF) && frame[frame.count - 1] == UInt8(crc >> 8)
    }
}
