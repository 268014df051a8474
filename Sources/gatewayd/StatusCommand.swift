import ArgumentParser
import DeviceGateway
import Foundation

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Every device of the running gateway: online or not, last seen, wire counters, its bus.",
        discussion: """
            Asks the running daemon (its local API: live counters). When the daemon does not answer, reads what it \
            last recorded in its outbox (every 2 s while it ran) and says so. Columns: transactions answered (frames \
            heard from a device that speaks unasked: FF 68, QSystem), timeouts, checksum errors, refusals (Modbus exceptions, a board's error code), garbage bytes, and the \
            answer latency's p50/p99 bucket in ms. A state read from the outbox is a last known one: `was online`, \
            `was OFFLINE`, under a first line saying when it was recorded. A running daemon that is not ready (its outbox \
            takes no write: a full disk) is said above the table, as is a clock no NTP keeps, and a hall day held \
            because the clock reads a day before the gateway last ran; below the table, a sink whose last delivery failed \
            (its events wait in the outbox; `check` fails on it). Exit status 0; 1 when a device is offline, a \
            printer cannot print (paper out, cover open, an error), the daemon is not ready or its hall day is held; \
            2 for a broken configuration; 3 when the daemon does not answer (also when its outbox's record is shown: \
            that is no word on the hall now). With --outbox the record was asked for: 0 or 1 as its devices were.
            """)

    @OptionGroup var daemon: DaemonOptions

    @Option(help: "Read this outbox file instead of asking the daemon.")
    var outbox: String?

    @Flag(help: "One JSON document instead of a table.")
    var json = false

    @Flag(help: "Refresh every --interval seconds until interrupted (in place on a terminal).")
    var watch = false

    @Option(help: "Seconds between refreshes with --watch.")
    var interval: Double = 2

    func validate() throws {
        guard interval >= 0.2 else { throw ValidationError("--interval must be at least 0.2 seconds") }
    }

    func run() async throws {
        let hall = try daemon.load()
        guard watch else {
            let snapshot: StatusSnapshot
            do {
                snapshot = try await Self.snapshot(hall: hall, outbox: outbox)
            } catch let unavailable as StatusUnavailable {
                printError(unavailable.message)
                throw ExitCode(unavailable.exit)
            }
            try show(snapshot, hall: hall)
            // The daemon was asked and did not answer: an old record of all online is no "all well".
            if outbox == nil, case .outbox = snapshot.source { throw ExitCode(CLIExit.daemonUnreachable) }
            // A printer out of paper or open answers, but issues no ticket (from a duty officer's trial: exit 0); a
            // board dark while the hall needs it lit shows no call.
            if snapshot.notReady != nil || snapshot.clock?.hallDayHeld != nil || snapshot.devices.contains(where: Self.isOutOfService)
                || snapshot.devices.contains(where: { $0.online == false }) {
                throw ExitCode(CLIExit.failed)
            }
            return
        }
        while true {
            let snapshot: Result<StatusSnapshot, StatusUnavailable>
            do { snapshot = .success(try await Self.snapshot(hall: hall, outbox: outbox)) } catch let unavailable as StatusUnavailable {
                snapshot = .failure(unavailable)
            } catch {
                snapshot = .failure(StatusUnavailable(message: "\(error)", exit: CLIExit.failed))
            }
            if Output.isTerminal && !json { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            switch snapshot {
            case .success(let snapshot): try show(snapshot, hall: hall)
            // One JSON line a refresh, this one too: a script reading them gets no line it cannot parse.
            case .failure(let unavailable) where json: try Output.printJSON(unavailable, compact: true)
            case .failure(let unavailable): print(unavailable.message)
            }
            Output.flush()
            try await Task.sleep(for: .seconds(interval))
        }
    }

    private func show(_ snapshot: StatusSnapshot, hall: HallContext) throws {
        if json {
            try Output.printJSON(StatusReport(snapshot), compact: watch)
            return
        }
        let now = Date()
        let recorded: Bool
        switch snapshot.source {
        case .daemon(let url):
            recorded = false
            print("devices live from the gateway at \(url)")
            if let notReady = snapshot.notReady {
                // Above the table: while the outbox takes no write, nothing read from the devices is kept.
                print(Output.paint("the gateway is NOT READY: \(notReady)", .red))
            }
            if let held = snapshot.clock?.hallDayHeld {
                print(Output.paint("hall day held: \(held)", .red))
            } else if let day = snapshot.hallDay {
                // From a duty officer's trial: nothing said whether the hall counted as open, nor when it would act.
                print("hall day: " + day)
            }
            if snapshot.clock?.hallDayHeld == nil, snapshot.clock?.synchronised == false {
                print(Output.paint(
                    "the gateway's clock is not synchronised (no NTP): opening hours, ticket days and event times follow it as it reads",
                    .yellow))
            }
        case .outbox(let path, let why):
            recorded = true
            print(
                """
                \(why); last known device states, recorded \
                \(Output.age(snapshot.at, now: now)) (\(hallTime(snapshot.at, timeZone: hall.timeZone))) in \(path)
                """)
        }
        let header = [
            "device", "bus", "state", "last seen", "answered", "timeouts", "crc", "refused", "garbage",
            "p50/p99 ms", "why offline",
        ]
        let rows = snapshot.devices.map { state -> [String] in
            let counters = state.counters
            let latency = [0.5, 0.99].map { counters.latency.quantile($0).map { String(Int($0)) } ?? "-" }
            return [
                state.device, Self.busLabel(state.bus, hall: hall),
                Self.stateLabel(state.online, recorded: recorded) + (state.condition.map { ", \($0)" } ?? ""),
                state.lastSeen.map { Output.age($0, now: now) } ?? "never", "\(counters.transactions)",
                "\(counters.timeouts)", "\(counters.checksumErrors)", "\(counters.exceptions)",
                "\(counters.garbageBytes)", latency.joined(separator: "/"), state.offlineReason ?? "",
            ]
        }
        let lines = Output.table([header] + rows) { row, column, cell in
            if row == 0 { return .bold }
            if column == 2 { return cell == "online" ? .green : cell.hasSuffix("OFFLINE") ? .red : .yellow }
            if (5...8).contains(column), cell != "0" { return .yellow }
            return nil
        }
        for line in lines { print(line) }
        let offline = snapshot.devices.filter { $0.online == false }.count
        // Not heard since the start: a device that speaks only when used (FF 68, QSystem) stays so until someone uses it.
        let unheard = snapshot.devices.filter { $0.online == nil }.count
        let outOfService = snapshot.devices.filter(Self.isOutOfService).count
        print(
            recorded
                ? "\(Output.counted(snapshot.devices.count, "device")) as last recorded, \(offline) offline then; now unknown"
                : "\(Output.counted(snapshot.devices.count, "device")), \(offline) offline"
                    + (outOfService > 0 ? ", \(outOfService) answering but out of service" : "")
                    + (unheard > 0 ? ", \(unheard) not heard from yet" : ""))
        // Which boards are lit, whatever the hall's day asks (from a night technician's trial: the table said only
        // `online`, and a board lit again by its own key showed an old call all night).
        let screens = snapshot.devices.filter { $0.screenOn != nil }
        if !screens.isEmpty {
            let lit = screens.filter { $0.screenOn == true }.map(\.device)
            let dark = screens.filter { $0.screenOn == false }.map(\.device)
            print("boards' screens: " + [lit.isEmpty ? nil : "lit " + lit.joined(separator: ", "),
                                         dark.isEmpty ? nil : "dark " + dark.joined(separator: ", ")]
                .compactMap { $0 }.joined(separator: "; "))
        }
        // What each board was last sent, by the queue system or the hall's day (from a night technician's question: what
        // is board 5 showing?): sent, not seen; the screens above say which are lit.
        let shown = snapshot.devices.compactMap { state in state.lastShown.map { (state.device, $0) } }
        if !shown.isEmpty {
            print("what the boards were last sent:")
            let rows = shown.map { board, shown in
                ["  " + board, Self.words(of: shown), "\(shown.command), " + Self.sentAt(shown.at, now: now, timeZone: hall.timeZone)]
            }
            for line in Output.table(rows) { print(line) }
        }
        // Events wait in the outbox, none lost; the central store does not have them yet.
        for sink in snapshot.failingSinks {
            let oldest = sink.oldestUnforwardedAt.map { ", the oldest from \(hallTime($0, timeZone: hall.timeZone))" } ?? ""
            print(Output.paint(
                "sink \(sink.sink) is not delivering: \(Output.counted(sink.backlog, "event")) waiting in the outbox\(oldest); "
                    + "its last error at \(hallTime(sink.lastErrorAt, timeZone: hall.timeZone)): \(sink.lastError ?? "")",
                .red))
        }
        // A line that is down is what to fix first, before any of its devices.
        for line in snapshot.lines {
            if let down = line.down { print(Output.paint("line \(Self.busLabel(line.bus, hall: hall)) is down: \(down)", .red)) }
        }
        // A two-wire adapter that returns what the gateway sends: worth knowing when frames look doubled on a scope.
        for line in snapshot.lines where line.echoes == true {
            print("line \(Self.busLabel(line.bus, hall: hall)): its adapter sends back what the gateway writes "
                  + "(two-wire, no echo suppression); the gateway drops its own frames")
        }
        // What no device's request was waiting for: on an unprompted line (FF 68, QSystem), all of its noise.
        for line in snapshot.lines where line.counters.garbageBytes > 0 || line.counters.checksumErrors > 0 {
            let counters = line.counters
            print(Output.paint(
                "line \(Self.busLabel(line.bus, hall: hall)): \(Output.counted(counters.garbageBytes, "garbage byte")) "
                    + "and \(Output.counted(counters.checksumErrors, "bad checksum")) of "
                    + "\(Output.counted(counters.bytesReceived, "byte")) heard unasked",
                .yellow))
        }
    }

    /// A device that answers and cannot do its work: a printer out of paper or open, a board dark while the hall needs
    /// it lit.
    static func isOutOfService(_ state: DeviceState) -> Bool {
        state.online == true && state.condition.map { !PrinterDriver.prints($0) } == true
    }

    /// A device's state in the table: as the daemon sees it now, or `was …` when read from the outbox's record.
    static func stateLabel(_ online: Bool?, recorded: Bool) -> String {
        let state = online.map { $0 ? "online" : "OFFLINE" } ?? "unknown"
        return recorded ? "was \(state)" : state
    }

    /// The bus id with its line (port or host) when the configuration is at hand.
    static func busLabel(_ bus: String, hall: HallContext) -> String {
        guard let config = hall.config?.buses.first(where: { $0.id == bus }) else { return bus }
        switch config.transport {
        case .modbusRTU(let serial), .serial(let serial): return "\(bus) (\(serial.port))"
        case .modbusTCP(let host, let port): return "\(bus) (\(host):\(port))"
        }
    }

    /// The daemon's live view, else the outbox's last record; exits 3 when neither answers.
    static func snapshot(hall: HallContext, outbox: String?) async throws -> StatusSnapshot {
        var why = "the gateway was not asked (--outbox)"
        if outbox == nil {
            let client = hall.client()
            do {
                let list = try await client.get("/v1/devices", as: APIDeviceList.self)
                // Readiness makes a real write to the outbox: a full disk shows here, not in the devices.
                var notReady: String?
                do { _ = try await client.get("/readyz", as: ReadyAnswer.self) } catch {
                    notReady = error.detail ?? error.description
                }
                return StatusSnapshot(
                    source: .daemon(client.baseURL), at: Date(), devices: list.devices.map(\.deviceState),
                    lines: list.lines ?? [], notReady: notReady, clock: list.clock, hallDay: list.hallDay,
                    failingSinks: await failingSinks(in: outbox ?? hall.outboxPath, hall: hall))
            } catch {
                if error.kind != .unreachable { throw StatusUnavailable(message: error.description, exit: error.exitCode.rawValue) }
                why = error.description
            }
        }
        let path = outbox ?? hall.outboxPath
        let rows: [(state: DeviceState, updatedAt: Date)]
        do {
            rows = try await Outbox.openForReading(path: path).deviceStates()
        } catch {
            throw StatusUnavailable(message: "\(why); and its outbox cannot be read: \(error)", exit: CLIExit.daemonUnreachable)
        }
        guard let updated = rows.map(\.updatedAt).max() else {
            throw StatusUnavailable(message: "\(why); and \(path) holds no device states yet (is this the gateway's state directory?)",
                                    exit: CLIExit.daemonUnreachable)
        }
        // The record keeps devices since removed from the configuration: with the configuration at hand, only its own,
        // bus by bus in its order, as the daemon lists them.
        var states = rows.map(\.state)
        if let config = hall.config {
            let recorded = Dictionary(states.map { ($0.device, $0) }) { first, _ in first }
            states = config.buses.flatMap { bus in
                config.devices.filter { $0.bus == bus.id }.compactMap { recorded[$0.id] }
            }
        }
        return StatusSnapshot(source: .outbox(path, why), at: updated, devices: states,
                              failingSinks: await failingSinks(in: path, hall: hall))
    }

    /// The configured sinks whose last delivery failed (none delivered since), read from the outbox read-only; none
    /// when it cannot be read.
    static func failingSinks(in path: String, hall: HallContext) async -> [SinkReport] {
        let reports = (try? await Outbox.openForReading(path: path).sinkReports(hall.config.map { $0.sinks.map(\.name) }))
            ?? []
        return reports.filter(\.isFailing)
    }
}

/// Devices as seen at one moment, and where from.
struct StatusSnapshot {
    enum Source {
        case daemon(String)
        case outbox(String, String)
    }
    var source: Source
    var at: Date
    var devices: [DeviceState]
    /// Live only: the daemon's outbox records devices, not lines.
    var lines: [LineCounters] = []
    /// Live only: why the daemon is not ready (its outbox takes no write), when it is not.
    var notReady: String?
    /// Live only: the daemon's clock, synchronised or not, and whether the hall's day waits for it.
    var clock: ClockState?
    /// Live only: where the daemon's hall day stands by its hours and clock.
    var hallDay: String?
    /// The sinks whose last delivery failed, as the outbox records them (from a soak: during a central store's
    /// outage `status` said nothing of it).
    var failingSinks: [SinkReport] = []
}

extension StatusCommand {
    /// What a board was sent, as its screen has it: 「请A007号到5号窗口」; a text of the queue system's without its words.
    static func words(of shown: ShownOnBoard) -> String {
        let words = shown.text.map { "「\($0)」" }
            ?? (shown.command == HallCommand.clear.name ? "nothing (blanked)" : "a text (its words are not kept)")
        return words + (shown.laterCommandNotSent ? "; a later command was not sent: the board was offline" : "")
    }

    /// When it was sent, by the hall's clock: the time today, the day too before.
    static func sentAt(_ date: Date, now: Date, timeZone: TimeZone) -> String {
        let (sent, today) = (hallTime(date, timeZone: timeZone), hallTime(now, timeZone: timeZone))
        return sent.prefix(10) == today.prefix(10) ? String(sent.suffix(8)) : sent
    }
}

/// `GET /v1/devices` as the CLI reads it.
struct APIDeviceList: Decodable {
    struct Device: Decodable {
        var device: String
        var bus: String
        var state: String
        var lastSeen: Date?
        var offlineReason: String?
        var counters: DeviceCounters
        /// Absent from a daemon older than this CLI.
        var condition: String?
        /// `on` or `off`; absent for a device whose reads do not tell, and from a daemon older than this CLI.
        var screen: String?
        /// Absent for other devices, and from a daemon older than this CLI.
        var lastShown: ShownOnBoard?

        var deviceState: DeviceState {
            var state = DeviceState(
                device: device, bus: bus, online: state == "online" ? true : state == "offline" ? false : nil,
                lastSeen: lastSeen, offlineReason: offlineReason, counters: counters)
            state.condition = condition
            state.screenOn = screen.map { $0 == "on" }
            state.lastShown = lastShown
            return state
        }
    }
    var devices: [Device]
    /// Absent from a daemon older than this CLI.
    var lines: [LineCounters]?
    /// Absent from a daemon older than this CLI.
    var clock: ClockState?
    /// Absent without hours, while the day is held, and from a daemon older than this CLI.
    var hallDay: String?
}

/// Neither the daemon nor its outbox told the devices' states: why, and the exit status it means. In `--watch --json`
/// a line of its own (`{"live":false,"unavailable":"…"}`).
struct StatusUnavailable: Error, Encodable {
    var live = false
    var unavailable: String
    var message: String { unavailable }
    let exit: Int32

    init(message: String, exit: Int32) {
        unavailable = message
        self.exit = exit
    }

    private enum CodingKeys: String, CodingKey { case live, unavailable }
}

/// What `gatewayd status --json` prints.
struct StatusReport: Encodable {
    /// `daemon` (live) or `outbox` (the last record of a daemon that does not answer).
    var source: String
    /// The API's URL or the outbox file.
    var from: String
    /// Whether the states are the daemon's now; false: the outbox's last known ones, as of `recordedAt`.
    var live: Bool
    /// When the states were true: now (live), or when the daemon last recorded them.
    var recordedAt: Date
    /// Why the daemon was not asked or did not answer, when the states are recorded ones.
    var daemonAnswer: String?
    /// Why the running daemon is not ready (`/readyz`: its outbox takes no write, a full disk), when it is not.
    var notReady: String?
    /// The running daemon's clock: synchronised by NTP or not, and why the hall's day waits for it, while it does.
    var clock: ClockState?
    /// Where the daemon's hall day stands by its hours and clock (`open until 12:00`), when it has hours and is not held.
    var hallDay: String?
    var devices: [DeviceReport]
    var lines: [LineCounters]

    init(_ snapshot: StatusSnapshot) {
        switch snapshot.source {
        case .daemon(let url): (source, from, live) = ("daemon", url, true)
        case .outbox(let path, let why): (source, from, live, daemonAnswer) = ("outbox", path, false, why)
        }
        recordedAt = snapshot.at
        notReady = snapshot.notReady
        clock = snapshot.clock
        hallDay = snapshot.hallDay
        devices = snapshot.devices.map(DeviceReport.init)
        lines = snapshot.lines
    }
}

struct DeviceReport: Encodable {
    var device: String
    var bus: String
    /// online, offline or unknown (not heard from since the daemon started): `online` is absent for unknown.
    var state: String
    var online: Bool?
    var lastSeen: Date?
    var offlineReason: String?
    var counters: DeviceCounters
    var condition: String?
    /// A board's screen, `on` or `off`, as its last read said (live only).
    var screen: String?
    /// What a board was last sent to show.
    var lastShown: ShownOnBoard?

    init(_ state: DeviceState) {
        device = state.device
        bus = state.bus
        self.state = state.online.map { $0 ? "online" : "offline" } ?? "unknown"
        online = state.online
        lastSeen = state.lastSeen
        offlineReason = state.offlineReason
        counters = state.counters
        condition = state.condition
        screen = state.screen
        lastShown = state.lastShown
    }
}

/// `GET /readyz` when the daemon is ready.
private struct ReadyAnswer: Decodable {
    var status: String
}
