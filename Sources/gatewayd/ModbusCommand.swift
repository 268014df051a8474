import ArgumentParser
import DeviceGateway
import Foundation
import Protocols

/// Where a technician's Modbus command goes: `--port /dev/ttyUSB0 --baud 9600 --parity N` or `--host h --port 502`.
struct LineOptions: ParsableArguments {
    @Option(help: "The serial port (RTU), e.g. /dev/ttyUSB0; with --host: the TCP port (default 502).")
    var port: String?

    @Option(help: "A Modbus TCP host (a pad or an RS-485 converter); without it the line is RTU on --port.")
    var host: String?

    @Option(help: "Baud rate of the serial line.")
    var baud: Int = 9600

    @Option(help: "Parity: N, E or O.")
    var parity: String = "N"

    @Option(help: "Data bits (7 or 8).")
    var dataBits: Int = 8

    @Option(help: "Stop bits (1 or 2).")
    var stopBits: Int = 1

    @Option(help: "How long to wait for an answer, in ms (default 500; scan: 100).")
    var timeoutMs: Int?

    func validate() throws {
        if host == nil, port == nil {
            throw ValidationError("say where: --port /dev/ttyUSB0 (RTU) or --host HOST (TCP)")
        }
        if host != nil, let port, Int(port).map({ (1...65535).contains($0) }) != true {
            throw ValidationError("--port with --host is a TCP port number, 1 to 65535, not '\(port)'")
        }
        guard SerialSettings.parity(named: parity) != nil else { throw ValidationError("--parity: N, E or O") }
        guard SerialSettings.supportedBauds.contains(baud) else {
            throw ValidationError(
                "--baud \(baud) is not supported (\(SerialSettings.supportedBauds.map(String.init).joined(separator: ", ")))"
            )
        }
        guard (7...8).contains(dataBits), (1...2).contains(stopBits) else {
            throw ValidationError("--data-bits 7 or 8, --stop-bits 1 or 2")
        }
        guard (10...60_000).contains(timeoutMs ?? 500) else { throw ValidationError("--timeout-ms: 10 to 60000") }
    }

    /// The serial settings at a given baud and parity (the sweep changes them).
    func settings(baud: Int? = nil, parity: SerialSettings.Parity? = nil) -> SerialSettings {
        SerialSettings(
            port: port ?? "", baud: baud ?? self.baud,
            parity: parity ?? SerialSettings.parity(named: self.parity) ?? .none,
            dataBits: dataBits, stopBits: stopBits)
    }

    var line: ModbusLine {
        if let host { return .tcp(host: host, port: port.flatMap(Int.init) ?? 502) }
        return .rtu(settings())
    }

    var timeout: Duration { .milliseconds(timeoutMs ?? 500) }
}

/// How the CLI's device commands end (the statuses of docs/cli.md).
extension CLIExit {
    /// The exit status for a failed transaction: the port or host unreachable, or the device's fault.
    static func code(for error: ModbusDirectError) -> ExitCode {
        ExitCode(error.kind == .unreachable ? portUnavailable : failed)
    }
}

/// A number as technicians type it: decimal, or hex with 0x.
func parseNumber(_ text: String) -> Int? {
    if text.lowercased().hasPrefix("0x") { return Int(text.dropFirst(2), radix: 16) }
    return Int(text)
}

struct ModbusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "modbus",
        abstract: "Read or write a Modbus device's registers and coils over RTU or TCP, as direct as mbpoll.",
        // Each example within the 80 columns help is wrapped to: a longer one goes on over two lines.
        discussion: """
            Register numbers are 0-based, as on the wire and in the profiles (mbpoll counts from 1 unless given -0). \
            Exit status: 0 answered; 1 an exception, no answer or only garbage; 2 wrong usage; \
            4 the port or host cannot be opened. Examples:
              gatewayd modbus read --port /dev/ttyUSB0 --baud 9600 --address 3 0 --count 8
              gatewayd modbus read --host 10.20.0.31 --type input 0x10 --count 2 --json
              gatewayd modbus write --port /dev/ttyUSB0 --address 3 5 42
            """,
        subcommands: [Read.self, Write.self])

    /// Which table of the device.
    enum Table: String {
        case holding, input, coil, discrete

        /// `--type`: a name, or mbpoll's -t number (4 holding, 3 input, 0 coil, 1 discrete). Refused with both
        /// spellings listed: ArgumentParser's own refusal named only the names (from a docs trial).
        static func parse(_ argument: String) throws -> Table {
            let aliases = [
                "4": "holding", "3": "input", "0": "coil", "1": "discrete", "coils": "coil",
                "discrete-input": "discrete", "holding-register": "holding", "input-register": "input",
            ]
            guard let table = Table(rawValue: aliases[argument.lowercased()] ?? argument.lowercased()) else {
                throw ValidationError("holding (4), input (3), coil (0) or discrete (1)")
            }
            return table
        }

        var isBits: Bool { self == .coil || self == .discrete }
        var name: String {
            switch self {
            case .holding: "holding registers"
            case .input: "input registers"
            case .coil: "coils"
            case .discrete: "discrete inputs"
            }
        }
    }

    struct Target: ParsableArguments {
        @OptionGroup var line: LineOptions

        @Option(
            name: [.customLong("address"), .customLong("unit"), .customShort("a")],
            help: "The device's address (RTU) or unit id (TCP).")
        var address: Int = 1

        @Option(
            name: [.customLong("type"), .customShort("t")],
            help: "holding (the default), input, coil or discrete (mbpoll's 4, 3, 0, 1).", transform: Table.parse)
        var table: Table = .holding

        @Flag(help: "One JSON document instead of a table.")
        var json = false

        func validate() throws {
            guard (0...255).contains(address) else { throw ValidationError("--address 0 to 247 (RTU), 0 to 255 (TCP)") }
            if line.host == nil, address > 247 { throw ValidationError("--address 1 to 247 on RTU (0: broadcast)") }
        }
    }

    struct Read: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Read registers, coils or discrete inputs.")

        @OptionGroup var target: Target

        @Argument(help: "The first register or coil, 0-based (decimal or 0x hex).")
        var start: String = "0"

        @Option(name: [.customLong("count"), .customShort("c")], help: "How many.")
        var count: Int = 1

        func validate() throws {
            guard let first = parseNumber(start), (0...65535).contains(first) else {
                throw ValidationError("register '\(start)': 0 to 65535 (or 0x0000 to 0xFFFF)")
            }
            let limit = target.table.isBits ? 2000 : 125
            guard (1...limit).contains(count), first + count <= 65536 else {
                throw ValidationError("--count 1 to \(limit) for \(target.table.name), within 0…65535")
            }
            guard target.address != 0 else { throw ValidationError("a read needs one device: --address 1 to 247") }
        }

        func run() throws {
            let first = UInt16(parseNumber(start) ?? 0)
            let request: ModbusRequest =
                switch target.table {
                case .holding: .readHoldingRegisters(start: first, count: UInt16(count))
                case .input: .readInputRegisters(start: first, count: UInt16(count))
                case .coil: .readCoils(start: first, count: UInt16(count))
                case .discrete: .readDiscreteInputs(start: first, count: UInt16(count))
                }
            let exchange = try ModbusCommand.exchange(request, target: target)
            let values: [Int]
            switch exchange.response {
            case .readHoldingRegisters(let registers), .readInputRegisters(let registers):
                values = registers.map(Int.init)
            case .readCoils(let status), .readDiscreteInputs(let status):
                values = ModbusBits.unpack(status, count: count).map { $0 ? 1 : 0 }
            default:
                printError("unexpected answer to a read: \(exchange.response)")
                throw ExitCode(CLIExit.failed)
            }
            let line = target.line.line
            if target.json {
                let report = ModbusReadReport(
                    line: line.description, address: target.address, type: target.table.rawValue, start: Int(first),
                    latencyMs: ModbusCommand.milliseconds(exchange.latency),
                    values: values.enumerated().map { .init(register: Int(first) + $0, value: $1) })
                print(String(decoding: try Output.jsonEncoder.encode(report), as: UTF8.self))
                return
            }
            print(
                "\(line.name(of: UInt8(target.address))) on \(line.description): \(values.count) "
                    + "\(target.table.name) from \(first), answered in \(String(format: "%.1f", ModbusCommand.milliseconds(exchange.latency))) ms"
            )
            let header = target.table.isBits ? ["coil", "value"] : ["register", "hex", "decimal", "int16"]
            let rows = values.enumerated().map { offset, value -> [String] in
                let register = Int(first) + offset
                if target.table.isBits { return ["\(register)", value == 1 ? "1 (on)" : "0 (off)"] }
                return [
                    "\(register) (0x\(String(format: "%04X", register)))", String(format: "0x%04X", value), "\(value)",
                    "\(Int16(bitPattern: UInt16(value)))",
                ]
            }
            for row in Output.table([header] + rows) { print(row) }
        }
    }

    struct Write: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write holding registers (06, or 16 for several) or one coil (05).",
            discussion: "Address 0 broadcasts a write on RTU: every device takes it, none answers.")

        @OptionGroup var target: Target

        @Argument(help: "The first register or the coil, 0-based (decimal or 0x hex).")
        var start: String

        @Argument(help: "The values (decimal or 0x hex); for a coil 1/0 or on/off.")
        var values: [String]

        @Flag(help: "Write one register with function 16 instead of 06 (some devices accept only 16).")
        var multiple = false

        func validate() throws {
            guard let first = parseNumber(start), (0...65535).contains(first) else {
                throw ValidationError("register '\(start)': 0 to 65535 (or 0x0000 to 0xFFFF)")
            }
            guard !values.isEmpty else { throw ValidationError("give at least one value") }
            switch target.table {
            case .input, .discrete: throw ValidationError("\(target.table.name) are read-only")
            case .coil:
                guard values.count == 1, Self.coil(values[0]) != nil else {
                    throw ValidationError("a coil write takes one value: 1/0 or on/off")
                }
            case .holding:
                for value in values where parseNumber(value).map({ (-32768...65535).contains($0) }) != true {
                    throw ValidationError("value '\(value)': 0 to 65535 (or -32768 to -1, or 0x hex)")
                }
                guard values.count <= 123, first + values.count <= 65536 else {
                    throw ValidationError("at most 123 registers in one write")
                }
            }
        }

        static func coil(_ text: String) -> Bool? {
            switch text.lowercased() {
            case "1", "on", "true": true
            case "0", "off", "false": false
            default: nil
            }
        }

        func run() throws {
            let first = UInt16(parseNumber(start) ?? 0)
            let words = values.map { UInt16(truncatingIfNeeded: parseNumber($0) ?? 0) }
            let request: ModbusRequest =
                switch target.table {
                case .coil: .writeSingleCoil(address: first, on: Self.coil(values[0]) ?? false)
                default:
                    words.count == 1 && !multiple
                        ? .writeSingleRegister(address: first, value: words[0])
                        : .writeMultipleRegisters(start: first, values: words)
                }
            let line = target.line.line
            // In words, as `modbus read` says its registers (from a docs trial: a broadcast printed a Swift value).
            let what =
                target.table == .coil
                ? "\(Self.coil(values[0]) == true ? "1 (on)" : "0 (off)") to coil \(first)"
                : words.count == 1
                    ? "\(words[0]) to holding register \(first)"
                    : "\(words.count) values to holding registers \(first)…\(Int(first) + words.count - 1)"
            if target.address == 0 {
                try ModbusCommand.broadcast(request, target: target)
                print("broadcast on \(line.description): wrote \(what) of every device (none answers a broadcast)")
                return
            }
            let exchange = try ModbusCommand.exchange(request, target: target)
            let milliseconds = ModbusCommand.milliseconds(exchange.latency)
            if target.json {
                let report = ModbusWriteReport(
                    line: line.description, address: target.address, type: target.table.rawValue, start: Int(first),
                    values: target.table == .coil ? [Self.coil(values[0]) == true ? 1 : 0] : words.map(Int.init),
                    latencyMs: milliseconds)
                print(String(decoding: try Output.jsonEncoder.encode(report), as: UTF8.self))
                return
            }
            print(
                "\(line.name(of: UInt8(target.address))) on \(line.description): wrote \(what), answered in "
                    + String(format: "%.1f ms", milliseconds))
        }
    }

    /// Runs one transaction, turning failures and exceptions into a message and the documented exit status.
    static func exchange(_ request: ModbusRequest, target: Target) throws -> ModbusExchange {
        let exchange: ModbusExchange
        do {
            let client = try ModbusDirectClient(line: target.line.line, timeout: target.line.timeout)
            exchange = try client.transact(request, address: UInt8(target.address))
        } catch {
            printError(error.message)
            throw CLIExit.code(for: error)
        }
        if case .exception(let function, let code) = exchange.response {
            printError(
                "\(target.line.line.name(of: UInt8(target.address))) on \(target.line.line.description) "
                    + "refused function \(String(format: "%02X", function.rawValue)): \(code.words)")
            throw ExitCode(CLIExit.failed)
        }
        return exchange
    }

    /// A broadcast write: sent, no answer awaited.
    static func broadcast(_ request: ModbusRequest, target: Target) throws {
        do {
            let client = try ModbusDirectClient(line: target.line.line, timeout: .milliseconds(10))
            _ = try? client.transact(request, address: 0)
        } catch {
            printError(error.message)
            throw CLIExit.code(for: error)
        }
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }
}

/// What `gatewayd modbus read --json` prints.
struct ModbusReadReport: Encodable {
    struct Value: Encodable {
        var register: Int
        var value: Int
    }

    var line: String
    var address: Int
    var type: String
    var start: Int
    var latencyMs: Double
    var values: [Value]
}

/// What `gatewayd modbus write --json` prints.
struct ModbusWriteReport: Encodable {
    var line: String
    var address: Int
    var type: String
    var start: Int
    var values: [Int]
    var latencyMs: Double
}
