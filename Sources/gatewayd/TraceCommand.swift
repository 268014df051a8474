import ArgumentParser
import DeviceGateway
import Foundation
import NIOCore

struct TraceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "The frames on a bus's line as they pass: decoded, with timestamps, gaps and errors.",
        discussion: """
            With the gateway running, the bytes come from the gateway itself (a tap on the bus's link, through its \
            local API): what it writes (→) and what it reads (←). With the gateway stopped, trace opens the serial \
            port itself and listens without speaking (every byte is ←, decoded as either direction); a Modbus TCP \
            bus cannot be listened to that way. Each line: the time, the gap since the previous one, the bytes, \
            the frames in words; rejected bytes with the reason. --save FILE writes a capture (JSON Lines) that \
            `gatewayd decode --file FILE` replays. Exit 0 at the end (--seconds or Ctrl-C), 1 when garbage was \
            seen, 2 for usage or configuration, 3 when the gateway's API refuses, 4 when the port or the --save file cannot be opened.
            """)

    @Argument(help: "The bus's id in the configuration.")
    var bus: String

    @OptionGroup var daemon: DaemonOptions

    @Option(help: "Stop after this many seconds (default: until Ctrl-C).")
    var seconds: Double?

    @Option(help: "Also write the capture to this file (decode --file replays it).")
    var save: String?

    @Flag(help: "One JSON object per write or read, with its frames and rejected runs.")
    var json = false

    @Flag(help: "Listen on the port itself, not through the gateway; refused while the gateway holds the port.")
    var direct = false

    func validate() throws {
        if let seconds, seconds <= 0 { throw ValidationError("--seconds must be more than 0") }
    }

    func run() async throws {
        let hall = try daemon.load()
        if let config = hall.config, !config.buses.contains(where: { $0.id == bus }) {
            printError(
                "no bus '\(bus)' in \(daemon.configPath ?? "the configuration") (buses: "
                    + config.buses.map(\.id).joined(separator: ", ") + ")")
            throw ExitCode(CLIExit.usage)
        }
        let client = hall.client()
        var printer = TracePrinter(json: json, save: save, timeZone: hall.timeZone)
        try printer.open(bus: bus)
        let deadline = seconds.map { Date().addingTimeInterval($0) }
        var reason = "--direct"
        if !direct {
            switch await client.probe() {
            case .running:
                try await viaDaemon(client, printer: &printer, until: deadline)
                try finish(&printer)
                return
            case .notRunning(let why): reason = why
            }
        }
        guard let config = hall.config else {
            if direct {
                printError("trace --direct listens on the line itself: it needs the hall's configuration (--config FILE or $HALL_GATEWAY_CONFIG)")
                throw ExitCode(CLIExit.usage)
            }
            printError("\(reason); to listen on the line itself, trace needs the hall's configuration (--config)")
            throw ExitCode(CLIExit.daemonUnreachable)
        }
        // Refused at the start when missing.
        guard let busConfig = config.buses.first(where: { $0.id == bus }) else { throw ExitCode(CLIExit.usage) }
        switch busConfig.transport {
        case .modbusRTU(let serial), .serial(let serial):
            try hall.refuseDemoPortsWithoutDaemon()
            try await direct(
                serial, config: config, library: hall.library, printer: &printer, reason: reason,
                until: deadline)
            try finish(&printer)
        case .modbusTCP:
            printError(
                "\(reason); bus \(bus) is Modbus TCP: its traffic can only be traced through the running gateway")
            throw ExitCode(CLIExit.daemonUnreachable)
        }
    }

    private func finish(_ printer: inout TracePrinter) throws {
        printer.close()
        if !json {
            printError(
                "\(Output.counted(printer.records, "record")), \(Output.counted(printer.frames, "frame")), "
                    + "\(Output.counted(printer.garbage, "byte")) of garbage"
                    + (save.map { "; capture in \($0)" } ?? ""))
        }
        if printer.garbage > 0 { throw ExitCode(CLIExit.failed) }
        // Down as last said and nothing seen: the port could not be opened (from a trial: "0 records", exit 0).
        if printer.records == 0, printer.lineDown != nil { throw ExitCode(CLIExit.portUnavailable) }
    }

    /// The gateway's tap, asked again every 30 s (an answer lasts at most that) until the deadline.
    private func viaDaemon(_ client: DaemonClient, printer: inout TracePrinter, until deadline: Date?) async throws {
        if !json { printError("tracing bus \(bus) through the gateway at \(client.baseURL); Ctrl-C ends") }
        while true {
            let left = deadline.map { $0.timeIntervalSinceNow } ?? 30
            if left <= 0 { break }
            let seconds = max(1, min(30, Int(left.rounded(.up))))
            do {
                try await client.streamLines(
                    "/v1/buses/\(bus)/trace?seconds=\(seconds)", timeout: .seconds(Int64(seconds) + 10)
                ) {
                    line in
                    if deadline.map({ Date() > $0 }) == true { return }
                    try printer.handle(line: line)
                }
            } catch let error as DaemonError {
                printError(error.description)
                throw error.exitCode
            }
            printer.flushPending()
        }
    }

    /// Listens on the serial port without writing: what passes between the other parties.
    private func direct(
        _ serial: SerialSettings, config: GatewayConfig, library: ProfileLibrary?,
        printer: inout TracePrinter, reason: String, until deadline: Date?
    ) async throws {
        let streams =
            library.flatMap { WireInspector.streams(bus: bus, config: config, library: $0) }
            ?? (WireInspector.Stream.ff68, WireInspector.Stream.ff68)
        printer.setStreams(
            sent: streams.sent, received: streams.received,
            ff68Roles: library.map { WireInspector.ff68Roles(bus: bus, config: config, library: $0) } ?? [:],
            line: serial.port, passive: true)
        // A second reader of a tty takes bytes from the first: the gateway would miss answers and key presses.
        if let holder = ModbusDirectClient.daemonHolding(serial.port) {
            printError(
                "\(serial.port) is in use by the running gateway (gatewayd, pid \(holder)): listening beside it would "
                    + "take its bytes; trace without --direct (through the gateway) or stop the gateway first")
            throw ExitCode(CLIExit.portUnavailable)
        }
        let line: ListeningLine
        do {
            line = try ListeningLine(serial)
        } catch {
            printError(error.description)
            throw ExitCode(CLIExit.portUnavailable)
        }
        defer { line.close() }
        if !json {
            printError("\(reason); listening on \(serial.port) at \(serial.baud) baud without speaking; Ctrl-C ends")
        }
        // A frame ends where the line goes quiet for 3.5 characters (at least 2 ms), as Modbus RTU has it.
        let quiet = max(.milliseconds(2), serial.wireTime(characters: 4))
        while deadline.map({ Date() < $0 }) ?? true {
            let chunk: [UInt8]
            do {
                chunk = try await line.read(quietAfter: quiet, waitAtMost: .milliseconds(500))
            } catch {
                printError(error.description)
                throw ExitCode(CLIExit.portUnavailable)
            }
            if !chunk.isEmpty { printer.record(direction: .received, bytes: chunk, time: Date()) }
        }
    }
}

/// Prints (and saves) what a trace sees: reads of one direction are gathered until the other speaks or a keepalive
/// comes, so a frame read in pieces is decoded whole.
struct TracePrinter {
    let json: Bool
    let save: String?
    let timeZone: TimeZone
    private var sent = WireInspector.Stream.ff68
    private var received = WireInspector.Stream.ff68
    private var ff68Roles: [UInt8: WireInspector.FF68Role] = [:]
    private var passive = false
    private var pending: (time: Date, bytes: [UInt8])?
    private var previous: Date?
    private var lastDirection: TraceRecord.Direction?
    private var file: FileHandle?
    private(set) var records = 0
    private(set) var frames = 0
    private(set) var garbage = 0
    private var bus = ""

    init(json: Bool, save: String?, timeZone: TimeZone) {
        self.json = json
        self.save = save
        self.timeZone = timeZone
    }

    mutating func open(bus: String) throws {
        self.bus = bus
        guard let save else { return }
        // Its user's and group's: a capture holds what printers printed.
        let descriptor = Foundation.open(save, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o640)
        // An earlier capture keeps its mode when written over: made 0640 too.
        guard descriptor >= 0, fchmod(descriptor, 0o640) == 0 else {
            let reason = SystemError.words(errno: errno)
            // Its reason in one line, not the usage (from a docs trial).
            printError("cannot write \(save): \(reason)")
            if descriptor >= 0 { Foundation.close(descriptor) }
            throw ExitCode(CLIExit.portUnavailable)
        }
        file = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
    }

    mutating func setStreams(
        sent: WireInspector.Stream, received: WireInspector.Stream, ff68Roles: [UInt8: WireInspector.FF68Role],
        line: String, passive: Bool
    ) {
        // Listening beside the line, every byte is "received", whoever sent it.
        self.sent = passive ? sent.eitherDirection : sent
        self.received = passive ? received.eitherDirection : received
        self.ff68Roles = ff68Roles
        self.passive = passive
        file?.write(
            Data((TraceCapture.headerLine(bus: bus, line: line, timeZone: timeZone, ff68Roles: ff68Roles) + "\n").utf8))
    }

    /// One line of the gateway's trace answer.
    mutating func handle(line: String) throws {
        guard !line.isEmpty else {
            flushPending()
            return
        }
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return }
        if object["bus"] != nil {
            // Whether the line is down, from each header: a line that came back during the trace is not down at its end.
            let down = object["down"] as? String
            if let down, down != lineDown {
                printError("bus \(bus) is down: \(down); nothing passes until the gateway has it open again")
            }
            lineDown = down
            // The header of each answer (the CLI asks again every 30 s): the first one sets the streams.
            guard !headerSeen else { return }
            headerSeen = true
            let sent = (object["sent"] as? String).flatMap(WireInspector.Stream.init(rawValue:)) ?? .ff68
            let received = (object["received"] as? String).flatMap(WireInspector.Stream.init(rawValue:)) ?? .ff68
            var roles: [UInt8: WireInspector.FF68Role] = [:]
            for (address, role) in object["ff68Roles"] as? [String: String] ?? [:] {
                if let address = UInt8(address), let role = WireInspector.FF68Role(rawValue: role) { roles[address] = role }
            }
            setStreams(
                sent: sent, received: received, ff68Roles: roles, line: object["line"] as? String ?? "", passive: false)
            return
        }
        guard let unix = object["unix"] as? Double, let hex = object["hex"] as? String,
            let bytes = WireInspector.bytes(fromHex: hex)
        else { return }
        let direction: TraceRecord.Direction = object["direction"] as? String == "out" ? .sent : .received
        record(direction: direction, bytes: bytes, time: Date(timeIntervalSince1970: unix))
    }

    private var headerSeen = false
    /// Why the bus's line is down, as the gateway last said (each answer's header).
    private(set) var lineDown: String?

    /// A write goes out at once; reads wait for the rest of their frame.
    mutating func record(direction: TraceRecord.Direction, bytes: [UInt8], time: Date) {
        if direction == .sent {
            flushPending()
            emit(direction: .sent, bytes: bytes, time: time)
        } else if passive {
            emit(direction: .received, bytes: bytes, time: time)
        } else if var gathered = pending {
            gathered.bytes += bytes
            pending = gathered
        } else {
            pending = (time, bytes)
        }
    }

    mutating func flushPending() {
        guard let gathered = pending else { return }
        pending = nil
        emit(direction: .received, bytes: gathered.bytes, time: gathered.time)
    }

    private mutating func emit(direction: TraceRecord.Direction, bytes: [UInt8], time: Date) {
        var stream = direction == .sent ? sent : received
        var inspection = WireInspector.inspect(bytes, as: stream, ff68Roles: ff68Roles)
        if passive, inspection.rejectedByteCount > 0, sent != received {
            // Listening only: a request and an answer look alike; take the reading with fewer rejected bytes.
            let other = WireInspector.inspect(bytes, as: sent, ff68Roles: ff68Roles)
            if other.rejectedByteCount < inspection.rejectedByteCount {
                inspection = other
                stream = sent
            }
        }
        records += 1
        frames += inspection.frameCount
        garbage += inspection.rejectedByteCount
        let record = TraceCapture.Record(
            time: time, direction: direction.rawValue, stream: stream,
            hex: WireInspector.hex(bytes))
        file?.write(Data((TraceCapture.line(record) + "\n").utf8))
        if direction == .sent, lastDirection == .sent, !passive,
            [.modbusRTURequests, .modbusTCPRequests].contains(sent), !json
        {
            print("                    " + Output.paint("(no answer)", .yellow))
        }
        let gap = previous.map { String(format: "+%.1f ms", time.timeIntervalSince($0) * 1000) } ?? ""
        previous = time
        lastDirection = direction
        if json {
            var report = DecodeReport(stream: stream.rawValue, inspection)
            report.time = time
            report.direction = direction.rawValue
            try? Output.printJSON(report, compact: true)
            Output.flush()
            return
        }
        let arrow = passive ? "·" : direction == .sent ? "→" : "←"
        let stamp = TraceCapture.timeText(time, fractionDigits: 3, timeZone: timeZone)
        let head = "\(stamp) \(gap.padding(toLength: 11, withPad: " ", startingAt: 0)) \(arrow)"
        for (index, item) in inspection.items.enumerated() {
            let prefix = index == 0 ? head : String(repeating: " ", count: head.count)
            let hex = WireInspector.hex(item.bytes.prefix(12)) + (item.bytes.count > 12 ? " …" : "")
            let words = item.rejected.map { Output.paint("REJECTED", .red) + " " + $0 } ?? item.frame ?? ""
            print("\(prefix) \(hex.padding(toLength: 38, withPad: " ", startingAt: 0)) \(words)")
        }
        Output.flush()
    }

    mutating func close() {
        flushPending()
        try? file?.close()
    }
}
