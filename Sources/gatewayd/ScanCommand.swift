import ArgumentParser
import DeviceGateway
import Foundation
import Protocols

struct ScanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scan",
        abstract: "Find who answers on a Modbus line, identify them by profile, sweep bauds for a silent device.",
        discussion: """
            An address scan probes each address (a read of holding register 0; an exception answer counts: someone \
            is there), then sends each answering device the identification reads of the profiles (their \
            `identify:` rule) and names the profile whose values came back. --write-config writes a configuration \
            with a `devices:` section from what answered, for review.
            --sweep tries one --address at every baud (\(ModbusScanner.sweepBauds.map(String.init).joined(separator: ", "))) \
            and parity N, E, O until it answers. --listen SECONDS --family \(listening(joinedBy: "|")) listens at each baud for the \
            frames of devices that speak unprompted (\(ListeningSweep.Family.allCases.map(\.devices).joined(separator: ", "))) and says which baud \
            gives valid frames.
            Exit status: 0 someone answered (or the sweep found the setting); 1 nobody did; 2 wrong usage or a \
            profile that does not load; 4 the port or host cannot be opened.
            """)

    @OptionGroup var line: LineOptions

    @Option(help: "The first address to probe.")
    var from: Int = 1

    @Option(help: "The last address to probe.")
    var to: Int = 247

    @Flag(help: "Sweep baud and parity for one --address instead of scanning addresses.")
    var sweep = false

    @Option(
        name: [.customLong("address"), .customLong("unit"), .customShort("a")],
        help: "The address a sweep tries.")
    var address: Int?

    @Flag(help: "With --sweep or --listen: try every setting, not only until the first that works.")
    var exhaustive = false

    @Option(help: "Listen this many seconds at each baud for a family that speaks unprompted (with --family).")
    var listen: Double?

    @Option(
        help: ArgumentHelp("The protocol: modbus; " + PromptedFamily.all.map { "\($0.name) (\($0.prompting))" }.joined(separator: ", ")
                           + "; " + listening(joinedBy: ", ") + " (with --listen).")
    )
    var family: String = "modbus"

    /// The families `--listen` finds, from the scanner's own list.
    static func listening(joinedBy separator: String) -> String {
        ListeningSweep.Family.allCases.map(\.rawValue).joined(separator: separator)
    }

    @Option(help: "The device profiles, for identification (default: the hall's, from $HALL_GATEWAY_CONFIG; else ./devices, the checkout's, /usr/share/hall-gateway/devices).")
    var profiles: String?

    @Option(help: "Write a configuration with the devices found to this file, for review (refuses to overwrite).")
    var writeConfig: String?

    @Option(help: "With --write-config: the hall id.")
    var hallId: String = "new-hall"

    @Option(help: "With --write-config: the bus id (default rs485-1, or lan-1 for TCP).")
    var busId: String?

    @Option(help: "With --write-config: the state directory.")
    var stateDirectory: String = "/var/lib/hall-gateway"

    @Flag(help: "One JSON document instead of tables.")
    var json = false

    func validate() throws {
        guard (0...255).contains(from), (0...255).contains(to), from <= to else {
            throw ValidationError("--from and --to: addresses 1 to 247 (TCP units up to 255), --from not above --to")
        }
        if line.host == nil, from < 1 || to > 247 { throw ValidationError("RTU addresses are 1 to 247") }
        if sweep, family == "modbus" {
            guard line.host == nil else { throw ValidationError("--sweep is for serial lines (--port), not TCP") }
            guard let address, (1...247).contains(address) else {
                throw ValidationError("--sweep needs the --address of the silent device (1 to 247)")
            }
        }
        if let listen {
            guard line.host == nil, (0.1...600).contains(listen) else {
                throw ValidationError("--listen is for serial lines, 0.1 to 600 seconds at each baud")
            }
            guard ListeningSweep.Family(rawValue: family) != nil else {
                throw ValidationError("--listen is for the families that speak unprompted: --family " + Self.listening(joinedBy: " or "))
            }
        } else if family != "modbus" {
            guard let prompted = PromptedFamily.all.first(where: { $0.name == family }) else {
                throw ValidationError("--family " + (["modbus"] + PromptedFamily.all.map(\.name)).joined(separator: ", ")
                                      + " (" + Self.listening(joinedBy: ", ") + " with --listen SECONDS)")
            }
            guard line.host == nil else { throw ValidationError("--family \(family) is for serial lines (--port)") }
            if sweep, prompted.addressed, address == nil { throw ValidationError("--sweep needs the --address to try") }
            guard writeConfig == nil else { throw ValidationError("--write-config is for Modbus scans") }
        }
    }

    func run() throws {
        if let writeConfig { try Self.refuseToWrite(writeConfig) }
        if let listen { return try listenSweep(seconds: listen) }
        if let prompted = PromptedFamily.all.first(where: { $0.name == family }) { return try promptedScan(prompted) }
        let library = try Self.library(profiles)
        let rules = library.identifiable().map { (name: $0.name, rule: $0.rule) }
        let scanner = ModbusScanner(rules: rules, timeout: .milliseconds(line.timeoutMs ?? 100))
        if sweep { return try baudSweep(scanner, library: library) }

        let client: ModbusDirectClient
        do { client = try ModbusDirectClient(line: line.line, timeout: scanner.timeout) } catch {
            printError(error.message)
            throw CLIExit.code(for: error)
        }
        let progress = Progress(total: to - from + 1)
        let started = ContinuousClock.now
        let found: [ScanFinding]
        do {
            found = try scanner.scan(from...to, on: client) { address, finding in
                progress.step(address: address, found: finding)
            }
        } catch {
            progress.finish()
            printError(error.message)
            throw CLIExit.code(for: error)
        }
        progress.finish()
        let elapsed = ModbusCommand.milliseconds(ContinuousClock.now - started) / 1000
        if json {
            try printReport(
                ScanReport(
                    line: line.line.description, from: from, to: to, seconds: elapsed,
                    found: found))
        } else {
            print(
                "\(line.line.description): addresses \(from)…\(to) in \(String(format: "%.1f", elapsed)) s, "
                    + "\(found.count) answered")
            if !found.isEmpty {
                let rows = found.map { finding in
                    [
                        line.line.name(of: UInt8(finding.address)).components(separatedBy: " ").last ?? "",
                        String(format: "%.1f", finding.latencyMs), finding.profile ?? "?",
                        finding.answer
                            + (finding.alsoMatches.isEmpty
                                ? "" : "; also matches " + finding.alsoMatches.joined(separator: ", ")),
                    ]
                }
                for row in Output.table([["address", "ms", "profile", "answer to holding 0"]] + rows) { print(row) }
            }
        }
        // After the findings are shown: a file that cannot be written then loses nothing of the scan.
        if let writeConfig {
            try write(found, to: writeConfig, library: library, settings: line.settings())
            if !json {
                let devices = Output.counted(found.filter { $0.profile != nil }.count, "device")
                print(
                    "wrote \(writeConfig): \(devices) for review "
                        + "(check it with gatewayd config check \(writeConfig))")
            }
        }
        guard !found.isEmpty else {
            if !json, line.host == nil {
                printError(
                    "nobody answered at \(line.settings().lineName): check wiring A/B and termination, or try "
                        + "another baud: gatewayd scan --port \(line.port ?? "PORT") --sweep --address N")
            }
            throw ExitCode(CLIExit.failed)
        }
    }

    static func library(_ directory: String?) throws -> ProfileLibrary {
        if let directory { return ProfileLibrary(directory: directory) }
        // The hall's own profiles, where the configuration is found as every command finds it (from a trial: scan
        // looked only beside the binary and in the working folder, not where the README installs them).
        if let path = DaemonOptions.configPath(given: nil) {
            // A hall being commissioned may not load yet (a profile not installed): its profiles are then found as
            // without one, and said.
            if let (config, _) = try? ConfigLoader.load(path: path),
               !DemoProfiles.isDemoConfiguration(path)
                || DemoProfiles.notTheDemosOwn(config, writtenAt: path, foundHere: true) == nil {
                return ProfileLibrary(directory: config.profilesDirectory)
            }
            printError("\(path): not used for its profiles (it does not load, or is not this folder's demo); --profiles DIR names them")
        }
        return ProfileLibrary(directory: try DemoProfiles.locate())
    }

    private func baudSweep(_ scanner: ModbusScanner, library: ProfileLibrary) throws {
        let address = address ?? 1
        let terminal = isatty(STDERR_FILENO) == 1 && !json
        let result: (steps: [SweepStep], found: ScanFinding?, settings: SerialSettings?)
        do {
            result = try scanner.sweep(port: line.settings(), address: address, exhaustive: exhaustive) { step in
                if terminal { printError("  \(step.setting): \(step.result)") }
            }
        } catch {
            printError(error.message)
            throw CLIExit.code(for: error)
        }
        if json {
            try printReport(
                SweepReport(
                    port: line.port ?? "", address: address, steps: result.steps,
                    found: result.settings?.lineName, device: result.found))
        } else {
            let rows = result.steps.map { [$0.setting, $0.result, $0.detail ?? ""] }
            for row in Output.table([["setting", "result", "detail"]] + rows) { print(row) }
            if let found = result.found, let settings = result.settings {
                print(
                    "address \(address) answers at \(settings.lineName) on \(settings.port)"
                        + (found.profile.map { ": \($0)" } ?? " (no profile recognised it)")
                        + (settings.baud != line.baud || settings.parity != line.settings().parity
                            ? "; set the bus to baud \(settings.baud), parity \(settings.parity.rawValue)" : ""))
            } else {
                print(
                    "address \(address) answered at no baud and parity tried: check wiring A/B, termination, power, "
                        + "and the address")
            }
        }
        if let writeConfig, let found = result.found, let settings = result.settings {
            try write([found], to: writeConfig, library: library, settings: settings)
        }
        if result.found == nil { throw ExitCode(CLIExit.failed) }
    }

    /// Onbon controllers and ESC/POS printers: a prompt to each address, or at each setting with --sweep.
    private func promptedScan(_ family: PromptedFamily) throws {
        let timeout = Duration.milliseconds(line.timeoutMs ?? 200)
        let terminal = isatty(STDERR_FILENO) == 1 && !json
        if sweep {
            let address = address ?? 1
            let steps: [SweepStep]
            do {
                steps = try family.sweep(
                    port: line.settings(), address: address, timeout: timeout,
                    exhaustive: exhaustive
                ) { step in
                    if terminal { printError("  \(step.setting): \(step.result)") }
                }
            } catch {
                printError(error.message)
                throw CLIExit.code(for: error)
            }
            let found = steps.first { $0.result == "answered" }
            if json {
                try printReport(
                    SweepReport(
                        port: line.port ?? "", address: family.addressed ? address : nil, steps: steps,
                        found: found?.setting, device: nil))
            } else {
                for row in Output.table(
                    [["setting", "result", "detail"]] + steps.map { [$0.setting, $0.result, $0.detail ?? ""] })
                {
                    print(row)
                }
                let who = family.addressed ? "address \(address)" : "the \(family.name) device"
                print(
                    found.map { "\(who) answers at \($0.setting) on \(line.port ?? "")" }
                        ?? "\(who) answered at no baud and parity tried: check wiring, power and the address")
            }
            if found == nil { throw ExitCode(CLIExit.failed) }
            return
        }
        let progress = Progress(total: family.addressed ? to - from + 1 : 1)
        let started = ContinuousClock.now
        let found: [ScanFinding]
        do {
            found = try family.scan(from...to, settings: line.settings(), timeout: timeout) { address, finding in
                progress.step(address: address, found: finding)
            }
        } catch {
            progress.finish()
            printError(error.message)
            throw CLIExit.code(for: error)
        }
        progress.finish()
        let elapsed = ModbusCommand.milliseconds(ContinuousClock.now - started) / 1000
        if json {
            try printReport(
                ScanReport(
                    line: line.line.description, from: from, to: family.addressed ? to : from,
                    seconds: elapsed, found: found))
        } else {
            print(
                "\(line.line.description): \(family.name) " + (family.addressed ? "addresses \(from)…\(to)" : "device")
                    + " in \(String(format: "%.1f", elapsed)) s, \(found.count) answered")
            let rows = found.map { [String($0.address), String(format: "%.1f", $0.latencyMs), $0.answer] }
            if !rows.isEmpty { for row in Output.table([["address", "ms", "answer"]] + rows) { print(row) } }
        }
        if found.isEmpty {
            if !json { printError("nobody answered at \(line.settings().lineName): try --sweep") }
            throw ExitCode(CLIExit.failed)
        }
    }

    private func listenSweep(seconds: Double) throws {
        let sweep = ListeningSweep(
            family: ListeningSweep.Family(rawValue: family) ?? .ff68,
            listen: .milliseconds(Int(seconds * 1000)))
        let terminal = isatty(STDERR_FILENO) == 1 && !json
        let steps: [SweepStep]
        do {
            steps = try sweep.run(port: line.settings(), bauds: ModbusScanner.sweepBauds, exhaustive: exhaustive) {
                if terminal { printError("  \($0.setting): \($0.result)") }
            }
        } catch {
            printError(error.message)
            throw CLIExit.code(for: error)
        }
        let found = steps.first { $0.result == "frames" }
        if json {
            try printReport(
                SweepReport(
                    port: line.port ?? "", address: nil, steps: steps, found: found?.setting,
                    device: nil))
        } else {
            for row in Output.table(
                [["setting", "heard", "detail"]] + steps.map { [$0.setting, $0.result, $0.detail ?? ""] })
            {
                print(row)
            }
            print(
                found.map { "\(family) frames at \($0.setting) on \(line.port ?? "")" }
                    ?? "no valid \(family) frames at any baud: press a key on a pad while listening, check wiring A/B")
        }
        if found == nil { throw ExitCode(CLIExit.failed) }
    }

    /// Writes a configuration with the bus scanned and a device per identified answer; the others as comments.
    private func write(
        _ found: [ScanFinding], to path: String, library: ProfileLibrary, settings: SerialSettings
    ) throws {
        let bus = busId ?? (line.host == nil ? "rs485-1" : "lan-1")
        let busLine: String
        switch line.line {
        case .rtu:
            busLine =
                "  - {id: \(bus), transport: modbus-rtu, port: \(settings.port), baud: \(settings.baud), "
                + "parity: \(settings.parity.rawValue), data-bits: \(settings.dataBits), stop-bits: \(settings.stopBits)}"
        case .tcp(let host, let port):
            busLine = "  - {id: \(bus), transport: modbus-tcp, host: \(host), tcp-port: \(port)}"
        }
        let stamp = EventTime.format(Date())
        var lines = [
            "# Written by `gatewayd scan` at \(stamp) from what answered on \(line.line.description).",
            "# Review before use: the device ids, a `window:` for each pad and board, and the answers no profile",
            "# recognised (commented out below). `gatewayd config check \((path as NSString).lastPathComponent)` checks it.",
            "hall: {id: \(hallId)}",
            "state-directory: \(stateDirectory)",
            "profiles: \((library.directory as NSString).standardizingPath)",
            "buses:",
            busLine,
            "devices:",
        ]
        var used: Set<String> = []
        for finding in found {
            guard let profile = finding.profile else {
                lines.append("  # address \(finding.address) answered (\(finding.answer)) but no profile recognised it")
                continue
            }
            let role = (try? library.load(named: profile)).map { DeviceRole.of($0.profile, window: nil) }
            let prefix =
                switch role {
                case .pad: "eval"
                case .windowBoard, .hallBoard: "board"
                default: "device"
                }
            var id = "\(prefix)-a\(String(format: "%03d", finding.address))"
            while used.contains(id) { id += "x" }
            used.insert(id)
            let note =
                finding.alsoMatches.isEmpty ? "" : "  # also matches \(finding.alsoMatches.joined(separator: ", "))"
            lines.append("  - {id: \(id), profile: \(profile), bus: \(bus), address: \(finding.address)}\(note)")
        }
        if !found.contains(where: { $0.profile != nil }) { lines.append("  []") }
        lines += [
            "sinks:",
            "  - {type: sqlite, name: local, path: \((stateDirectory as NSString).appendingPathComponent("events.sqlite"))}",
            "",
        ]
        do {
            try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            printError("cannot write \(path): \(SystemError.words(of: error))")
            throw ExitCode(CLIExit.portUnavailable)
        }
    }

    /// Refuses a `--write-config` file that exists or a folder this user cannot write, before the scan (minutes)
    /// rather than after it, its findings lost. Not usage errors: said in one line, exit 2.
    static func refuseToWrite(_ path: String) throws {
        if FileManager.default.fileExists(atPath: path) {
            printError("\(path) exists; the scan writes a new file for review, never over one")
            throw ExitCode(CLIExit.usage)
        }
        let folder = (path as NSString).deletingLastPathComponent
        if access(folder.isEmpty ? "." : folder, W_OK) != 0 {
            let reason = SystemError.words(errno: errno)
            printError("--write-config \(path): user \(SystemUser.name) cannot write in "
                       + "\(folder.isEmpty ? "this folder" : folder) (\(reason)): give a path in a folder you may write")
            throw ExitCode(CLIExit.usage)
        }
    }
}

/// A progress bar on standard error when it is a terminal; nothing when piped.
final class Progress {
    private let total: Int
    private var done = 0
    private var found = 0
    private let enabled = isatty(STDERR_FILENO) == 1

    init(total: Int) { self.total = total }

    func step(address: Int, found finding: ScanFinding?) {
        done += 1
        if let finding {
            found += 1
            if enabled {
                let profile = finding.profile.map { ": \($0)" } ?? ""
                FileHandle.standardError.write(Data("\r\u{1B}[K  found address \(finding.address)\(profile)\n".utf8))
            }
        }
        guard enabled else { return }
        let width = 30
        let filled = total == 0 ? width : done * width / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(done)/\(total) address \(address), \(found) found".utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

/// What `gatewayd scan --json` prints.
struct ScanReport: Encodable {
    var line: String
    var from: Int
    var to: Int
    var seconds: Double
    var found: [ScanFinding]
}

/// What `gatewayd scan --sweep --json` and `--listen --json` print.
struct SweepReport: Encodable {
    var port: String
    var address: Int?
    var steps: [SweepStep]
    /// The setting that worked, e.g. `19200 8N1`.
    var found: String?
    var device: ScanFinding?
}

/// One JSON document on standard output.
func printReport(_ value: some Encodable) throws {
    print(String(decoding: try Output.jsonEncoder.encode(value), as: UTF8.self))
}
