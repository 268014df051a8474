import ArgumentParser
import DeviceGateway
import Foundation
import NIOCore

/// What the device commands share: the hall (`--config`), the daemon, the choice between the two.
struct DeviceCommandOptions: ParsableArguments {
    @OptionGroup var daemon: DaemonOptions

    @Flag(help: "Open the port or connection directly even if a daemon answers (a serial port it owns cannot be opened).")
    var direct = false

    @Flag(help: "One JSON document instead of text.")
    var json = false
}

/// Runs a device command through the running daemon when there is one, else on the port opened directly.
enum TechnicianRun {
    /// The device's kind, from its profile.
    enum Kind: String {
        case pad, board, printer, caller

        /// From the device's role, so that no family is named here.
        init(_ profile: DeviceProfile) {
            self =
                switch DeviceRole.of(profile, window: nil) {
                case .pad: .pad
                case .windowBoard, .hallBoard: .board
                case .printer: .printer
                case .caller: .caller
                }
        }
    }

    /// The hall and the device's kind; a device that is not of `expected` kinds is refused with exit 2.
    static func hall(
        _ options: DeviceCommandOptions, device: String, expected: [Kind]? = nil
    ) throws
        -> (HallContext, GatewayConfig, ProfileLibrary, Kind)
    {
        let hall = try options.daemon.load()
        guard let config = hall.config, let library = hall.library else {
            printError("which hall? give --config FILE (or set HALL_GATEWAY_CONFIG)")
            throw ExitCode(CLIExit.usage)
        }
        guard let entry = config.devices.first(where: { $0.id == device }) else {
            printError(
                "no device '\(device)' in \(options.daemon.configPath ?? "the configuration") "
                    + "(devices: \(config.devices.map(\.id).joined(separator: ", ")))")
            throw ExitCode(CLIExit.usage)
        }
        let kind: Kind
        do { kind = Kind(try library.profile(named: entry.profile)) } catch {
            printError(error.description)
            throw ExitCode(CLIExit.usage)
        }
        if let expected, !expected.contains(kind) {
            printError(
                "\(device) is a \(kind.rawValue) (\(entry.profile)), not a \(expected.map(\.rawValue).joined(separator: " or "))"
            )
            throw ExitCode(CLIExit.usage)
        }
        return (hall, config, library, kind)
    }

    /// The daemon's answer when it runs (and `--direct` is not given), else `direct()` on a thread of its own.
    static func perform(
        _ options: DeviceCommandOptions, hall: HallContext,
        viaDaemon: (DaemonClient) async throws(DaemonError) -> ProbeReport,
        direct: @escaping @Sendable () throws(GatewayError) -> ProbeReport
    ) async throws -> ProbeReport {
        if !options.direct {
            let client = hall.client()
            if case .running = await client.probe() {
                do { return try await viaDaemon(client) } catch {
                    printError(error.description)
                    throw error.exitCode
                }
            }
        }
        try hall.refuseDemoPortsWithoutDaemon()
        // The port is ours: blocking reads on a thread of their own, never the cooperative pool.
        let result: Result<ProbeReport, GatewayError> = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                do throws(GatewayError) { continuation.resume(returning: .success(try direct())) } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        switch result {
        case .success(let report): return report
        case .failure(let error):
            printError(error.message)
            throw error.code == .portUnavailable ? ExitCode(CLIExit.portUnavailable) : ExitCode(CLIExit.usage)
        }
    }

    /// Prints the report (text or JSON); exit 1 when the device did not answer or reported a problem. `listened`: how
    /// the time the command listened is named (`while listening`), where events made in it are its result, even none.
    static func finish(_ report: ProbeReport, json: Bool, title: String, failed: Bool? = nil, listened: String? = nil)
        throws
    {
        if json {
            try printReport(report)
        } else {
            print("\(title) \(report.device) (\(report.profile)) on bus \(report.bus), \(report.line): \(report.via)")
            for step in report.steps {
                let latency = step.latencyMs.map { String(format: " in %.1f ms", $0) } ?? ""
                let outcome =
                    step.outcome == "answered"
                    ? Output.paint("answered", .green)
                    : step.outcome == "sent" || step.outcome == "heard"
                        ? step.outcome : Output.paint(step.outcome, .red)
                print("\(step.purpose): \(outcome)\(latency)")
                if !step.sent.isEmpty { print("  → \(step.sent)") }
                for words in step.sentWords { print("    \(words)") }
                if !step.received.isEmpty { print("  ← \(step.received)") }
                for words in step.receivedWords { print("    \(words)") }
            }
            if let reading = report.reading {
                print("\(report.device) reports:")
                for line in reading { print("  \(line)") }
            }
            if let during = report.eventsDuring, during > 0 || listened != nil {
                // Which events the technician's keys or the test made, and which came before it.
                let earlier = report.events.dropLast(during)
                if !earlier.isEmpty { print("events before:") }
                for line in earlier { print("  \(line)") }
                let meanwhile = listened ?? "during the test"
                print(during == 0 ? "events \(meanwhile): none" : "events \(meanwhile):")
                for line in report.events.suffix(during) { print("  \(line)") }
            } else if !report.events.isEmpty {
                print("events:")
                for line in report.events { print("  \(line)") }
            }
            if let state = report.printerState {
                print("printer: \(state)" + PrinterCommand.alsoReported(report.printerConditions, besides: state))
            }
            if let problem = report.problem { printError(problem) }
        }
        if failed ?? (!report.answered || report.problem != nil) { throw ExitCode(CLIExit.failed) }
    }
}

struct ProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Poll one configured device through its profile and show what it reports, decoded and in hex.",
        discussion: """
            With the daemon running the probe goes through it (its local API: the daemon polls the device now and \
            says what came back); with the daemon stopped the port is opened directly and nothing is acknowledged \
            to the device. --listen SECONDS also listens for what the device says unprompted (FF 68, QSystem). \
            Exit status: 0 the device answered or was heard; 1 no answer, nothing heard, or a refusal; 2 wrong usage or an unknown device; \
            3 the daemon does not answer; 4 the port cannot be opened.
            """)

    @OptionGroup var options: DeviceCommandOptions

    @Argument(help: "The device id, as in the configuration.")
    var device: String

    @Option(help: "Listen this many seconds after the poll (at most 30).")
    var listen: Double?

    func validate() throws {
        if let listen, !(0...30).contains(listen) { throw ValidationError("--listen must be from 0 to 30 seconds") }
    }

    func run() async throws {
        let (hall, config, library, _) = try TechnicianRun.hall(options, device: device)
        let device = device
        let listen = listen.map { Duration.milliseconds(Int($0 * 1000)) }
        let query = self.listen.map { "&listen=\($0)" } ?? ""
        let answerWithin = TimeAmount.seconds(Int64((self.listen ?? 0).rounded(.up)) + 30)
        let report = try await TechnicianRun.perform(options, hall: hall) { client throws(DaemonError) in
            // The daemon answers once it has listened: the wait is the listening's and the answer's.
            try await client.post("/v1/devices/\(device)/probe?wire=true\(query)", json: ProbeRequest(), as: ProbeReport.self,
                                  timeout: answerWithin)
        } direct: { () throws(GatewayError) in
            try DeviceProbe.run(device: device, config: config, library: library, listen: listen)
        }
        // A device only listened to (FF 68, QSystem) that said nothing did not answer, as in a pad test.
        let heardNothing = listen != nil && !report.steps.contains { !$0.received.isEmpty }
        try TechnicianRun.finish(
            report, json: options.json, title: "probe",
            failed: heardNothing || !report.answered || report.problem != nil,
            listened: listen == nil ? nil : "while listening")
    }
}

/// The body of `POST /v1/devices/{id}/probe` and `/test`.
struct ProbeRequest: Codable {
    var text: String?
}

struct DisplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "display", abstract: "Test a window board or call board.", subcommands: [Test.self])

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a test text on a board and check that it acknowledges it.",
            discussion: "Exit status: 0 shown and acknowledged; 1 refused or no answer; 2, 3, 4 as for probe.")

        @OptionGroup var options: DeviceCommandOptions

        @Argument(help: "The board's device id.")
        var board: String

        @Option(help: "The text to show (default: 设备测试 and the time).")
        var text: String?

        func run() async throws {
            let (hall, config, library, _) = try TechnicianRun.hall(options, device: board, expected: [.board])
            let board = board
            let text = text ?? Self.defaultText(timeZone: config.hall.timeZone)
            do {
                try CommandCenter.checkField(text, "text", longest: CommandCenter.longestText)
            } catch {
                printError(error.message)
                throw ExitCode(CLIExit.usage)
            }
            let report = try await TechnicianRun.perform(options, hall: hall) { client throws(DaemonError) in
                try await client.post("/v1/devices/\(board)/test", json: ProbeRequest(text: text), as: ProbeReport.self)
            } direct: { () throws(GatewayError) in
                try DeviceProbe.run(device: board, config: config, library: library, command: .showText(text))
            }
            try TechnicianRun.finish(report, json: options.json, title: "display test \"\(text)\" on")
        }

        static func defaultText(timeZone: TimeZone) -> String {
            "设备测试 " + HallTime.text(Date(), timeZone: timeZone).suffix(5)
        }
    }
}

struct PrinterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "printer", abstract: "Test a ticket printer or read its condition.",
        subcommands: [Test.self, Status.self])

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a test ticket (测试票, Chinese text in GB18030) and read the paper sensor after it.",
            discussion: "The ticket is not a hall ticket: no number is taken from the day's counters. Exit status: 0 "
                + "printed with paper left; 1 the printer cannot print or does not answer; 2, 3, 4 as for probe.")

        @OptionGroup var options: DeviceCommandOptions

        @Argument(help: "The printer's device id.")
        var printer: String

        func run() async throws {
            let (hall, config, library, _) = try TechnicianRun.hall(options, device: printer, expected: [.printer])
            let printer = printer
            let ticket = HallCommand.Ticket.test(timeZone: config.hall.timeZone)
            let report = try await TechnicianRun.perform(options, hall: hall) { client throws(DaemonError) in
                try await client.post("/v1/devices/\(printer)/test", json: ProbeRequest(), as: ProbeReport.self)
            } direct: { () throws(GatewayError) in
                try DeviceProbe.run(device: printer, config: config, library: library, command: .printTicket(ticket))
            }
            try TechnicianRun.finish(
                report, json: options.json, title: "printer test on",
                failed: !report.answered || report.problem != nil
                    || !PrinterCommand.canPrint(report.printerState))
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "The printer's condition: paper (near end, out), cover, cutter and other errors (ESC/POS DLE EOT).",
            discussion: "Exit status: 0 ready to print (paper near end included, with a warning); 1 out of paper, "
                + "cover open, an error, offline or no answer; 2, 3, 4 as for probe.")

        @OptionGroup var options: DeviceCommandOptions

        @Argument(help: "The printer's device id.")
        var printer: String

        func run() async throws {
            let (hall, config, library, _) = try TechnicianRun.hall(options, device: printer, expected: [.printer])
            let printer = printer
            let report = try await TechnicianRun.perform(options, hall: hall) { client throws(DaemonError) in
                try await client.get("/v1/devices/\(printer)/printer-status", as: ProbeReport.self)
            } direct: { () throws(GatewayError) in
                try DeviceProbe.run(device: printer, config: config, library: library)
            }
            if !options.json, let state = report.printerState {
                let painted =
                    PrinterCommand.canPrint(state)
                    ? Output.paint(state, state == "online" ? .green : .yellow)
                    : Output.paint(state, .red)
                print("\(printer): \(painted)" + PrinterCommand.alsoReported(report.printerConditions, besides: state)
                      + " — \(report.via)")
                if let problem = report.problem { printError(problem) }
                if !PrinterCommand.canPrint(state) {
                    printError("\(printer) cannot print: \(state)")
                    throw ExitCode(CLIExit.failed)
                }
                return
            }
            try TechnicianRun.finish(
                report, json: options.json, title: "printer status of",
                failed: !report.answered || !PrinterCommand.canPrint(report.printerState))
        }
    }

    /// The conditions a printer reports beside its state, in brackets: ` (cover-open)`, not `paper-out (paper-out)`
    /// (from a docs trial).
    static func alsoReported(_ conditions: [String]?, besides state: String) -> String {
        let others = (conditions ?? []).filter { $0 != state }
        return others.isEmpty ? "" : " (\(others.joined(separator: ", ")))"
    }

    /// Whether a printer in `state` prints (paper near end still does).
    static func canPrint(_ state: String?) -> Bool { state.map(PrinterDriver.prints) ?? false }
}

struct PadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pad", abstract: "Test an evaluator pad.", subcommands: [Test.self])

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a pad's last keys and ratings: poll it, then listen while the technician presses keys.",
            discussion: "Nothing is acknowledged to the pad with the daemon stopped (its ratings stay for the daemon). "
                + "Exit status: 0 the pad answered or was heard; 1 not; 2, 3, 4 as for probe.")

        @OptionGroup var options: DeviceCommandOptions

        @Argument(help: "The pad's device id.")
        var pad: String

        @Option(help: "Seconds to listen for key presses after the poll (at most 30).")
        var seconds: Double = 5

        func validate() throws {
            if !(0...30).contains(seconds) { throw ValidationError("--seconds must be from 0 to 30") }
        }

        func run() async throws {
            let (hall, config, library, _) = try TechnicianRun.hall(options, device: pad, expected: [.pad])
            let pad = pad
            let listen = Duration.milliseconds(Int(max(0, seconds) * 1000))
            let report = try await TechnicianRun.perform(options, hall: hall) { client throws(DaemonError) in
                try await client.post(
                    "/v1/devices/\(pad)/probe?wire=true&listen=\(seconds)", json: ProbeRequest(),
                    as: ProbeReport.self, timeout: .seconds(Int64(seconds.rounded(.up)) + 30))
            } direct: { () throws(GatewayError) in
                try DeviceProbe.run(device: pad, config: config, library: library, listen: listen)
            }
            let heard = report.steps.contains { !$0.received.isEmpty }
            try TechnicianRun.finish(
                report, json: options.json, title: "pad test of",
                failed: !heard || (report.problem != nil && !report.answered && report.steps.count > 1),
                listened: "during the test")
        }
    }
}
