import Foundation
import MockDevices
import Synchronization

/// `modbus-server`: simulated evaluator pads in a process of their own, for the bus benchmarks to run the gateway
/// (or libmodbus) against without the devices' CPU counted in the measured process.
///
///     GatewayBenchmarks modbus-server [--transport tcp|rtu] [--units 32] [--port 0] [--lines 1] [--baud 9600]
///
/// TCP: one port on 127.0.0.1, any number of connections, unit ids 1…units. RTU: `lines` paced pseudo-terminals
/// (`MockModbusServer.rtu`), the units spread over them. Prints `port P` or `paths A B …`; then each `count` line on
/// its input is answered with `count N` (requests answered so far); it exits when its input closes.
enum ModbusServerCommand {
    static func run(_ arguments: [String]) async throws {
        let options = BenchOptions(
            arguments, command: "modbus-server",
            known: ["--transport", "--units", "--port", "--lines", "--baud"])
        let units = options.int("--units", 32)
        let pads = Dictionary(
            uniqueKeysWithValues: (1...max(1, units)).map {
                ($0, MockModbusEvaluator(staffId: String(format: "%04d", 1000 + $0)) as any MockModbusUnit)
            })
        let answered: @Sendable () -> Int
        switch options.string("--transport") ?? "tcp" {
        case "tcp":
            let server = try PollingModbusTCPServer(units: pads, port: options.int("--port", 0))
            Thread.detachNewThread { server.serve() }
            answered = { server.answered }
            say("port \(server.port)")
        case "rtu":
            let lines = max(1, options.int("--lines", 1))
            let pacing = WirePacing(baud: options.int("--baud", 9600))
            let perLine = (units + lines - 1) / lines
            let servers = try (0..<lines).map { line in
                let addresses = (line * perLine + 1)...min(units, (line + 1) * perLine)
                // Each line's pads answer at addresses 1…perLine, as on separate RS-485 lines.
                return try MockModbusServer.rtu(
                    units: Dictionary(uniqueKeysWithValues: addresses.map { ($0 - line * perLine, pads[$0]!) }),
                    pacing: pacing)
            }
            answered = { servers.reduce(0) { $0 + $1.requestsAnswered } }
            say(
                "paths "
                    + servers.compactMap { server -> String? in
                        if case .rtu(let path) = server.endpoint { return path }
                        return nil
                    }.joined(separator: " "))
        default:
            print("modbus-server: --transport is tcp or rtu")
            exit(2)
        }
        Thread.detachNewThread {
            while let line = readLine() {
                if line == "count" { say("count \(answered())") }
            }
            exit(0)
        }
        while true { try await Task.sleep(for: .seconds(3600)) }
    }

    /// Writes a line at once (no buffering: the benchmark waits for it).
    private static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}

/// A Modbus TCP server for many connections on one thread: non-blocking sockets under one `poll(2)`, replies built
/// from the units' registers (functions 03, 06, 16). Lighter per request than libmodbus's server, so that the client
/// measured against it, not the server, sets the pace.
final class PollingModbusTCPServer: Sendable {
    let port: Int
    private let listener: Int32
    private let units: [Int: any MockModbusUnit]
    private let counter = Atomic<Int>(0)

    init(units: [Int: any MockModbusUnit], port: Int) throws {
        self.units = units
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw BusBenchmarkError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(listener, 1024) == 0 else {
            let reason = String(cString: strerror(errno))
            close(listener)
            throw BusBenchmarkError("cannot listen on 127.0.0.1:\(port): \(reason)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
        self.listener = listener
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    var answered: Int { counter.load(ordering: .relaxed) }

    /// Serves forever on the calling thread.
    func serve() {
        var clients: [Int32] = []
        var buffers: [[UInt8]] = []
        var fds: [pollfd] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var reply: [UInt8] = []
        reply.reserveCapacity(512)
        while true {
            fds.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0))
            for client in clients { fds.append(pollfd(fd: client, events: Int16(POLLIN), revents: 0)) }
            guard poll(&fds, nfds_t(fds.count), -1) > 0 else { continue }
            var closed: [Int32] = []
            for index in fds.indices.dropFirst() where fds[index].revents != 0 {
                let client = index - 1
                let count = read(fds[index].fd, &chunk, chunk.count)
                if count <= 0 {
                    if count < 0, errno == EAGAIN || errno == EINTR { continue }
                    closed.append(fds[index].fd)
                    continue
                }
                buffers[client] += chunk[0..<count]
                reply.removeAll(keepingCapacity: true)
                var frames = 0
                while buffers[client].count >= 8 {
                    let length = 6 + (Int(buffers[client][4]) << 8 | Int(buffers[client][5]))
                    guard buffers[client].count >= length else { break }
                    if respond(to: buffers[client][0..<length], into: &reply) { frames += 1 }
                    buffers[client].removeFirst(length)
                }
                if !reply.isEmpty {
                    _ = reply.withUnsafeBytes { write(fds[index].fd, $0.baseAddress, $0.count) }
                    counter.add(frames, ordering: .relaxed)
                }
            }
            for fd in closed {
                close(fd)
                if let index = clients.firstIndex(of: fd) {
                    clients.remove(at: index)
                    buffers.remove(at: index)
                }
            }
            if fds[0].revents != 0 {
                while true {
                    let client = accept(listener, nil, nil)
                    guard client >= 0 else { break }
                    _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
                    var one: Int32 = 1
                    setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    clients.append(client)
                    buffers.append([])
                }
            }
        }
    }

    /// Appends the answer to one request (MBAP header, PDU); a unit id nobody has gets no answer, like a pad that is
    /// not there. Returns whether it answered.
    private func respond(to frame: ArraySlice<UInt8>, into reply: inout [UInt8]) -> Bool {
        let bytes = Array(frame)
        guard let unit = units[Int(bytes[6])] else { return false }
        let function = bytes[7]
        func header(_ pduLength: Int) {
            reply += [bytes[0], bytes[1], 0, 0, UInt8((pduLength + 1) >> 8), UInt8((pduLength + 1) & 0xFF), bytes[6]]
        }
        func exception(_ code: UInt8) -> Bool {
            header(2)
            reply += [function | 0x80, code]
            return true
        }
        func word(_ at: Int) -> Int { Int(bytes[at]) << 8 | Int(bytes[at + 1]) }
        var registers = unit.registers
        switch function {
        case 0x03 where bytes.count >= 12:
            let start = word(8)
            let count = word(10)
            guard (1...125).contains(count), start + count <= registers.count else { return exception(0x02) }
            header(2 + 2 * count)
            reply.append(0x03)
            reply.append(UInt8(2 * count))
            for value in registers[start..<(start + count)] {
                reply.append(UInt8(value >> 8))
                reply.append(UInt8(truncatingIfNeeded: value))
            }
        case 0x06 where bytes.count >= 12:
            let address = word(8)
            guard address < registers.count else { return exception(0x02) }
            registers[address] = UInt16(word(10))
            unit.accept(writtenRegisters: registers)
            reply += bytes[0..<12]
        case 0x10 where bytes.count >= 13:
            let start = word(8)
            let count = word(10)
            guard count > 0, start + count <= registers.count, bytes.count >= 13 + 2 * count else {
                return exception(0x02)
            }
            for index in 0..<count { registers[start + index] = UInt16(word(13 + 2 * index)) }
            unit.accept(writtenRegisters: registers)
            header(5)
            reply += [0x10] + bytes[8..<12]
        default:
            return exception(0x01)
        }
        return true
    }
}
