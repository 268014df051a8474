import ArgumentParser
import DeviceGateway
import Foundation

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Every device of the running gateway: online or not, last seen, wire counters, its bus.",
        discussion: """
            Reads what the daemon records in its outbox every 2 s (read-only; works while it runs). Columns: \
            transactions answered, timeouts, checksum errors, refusals (Modbus exceptions, a board's error code), \
            garbage bytes, and the answer latency's p50/p99 bucket in ms. Exit status 0, 1 when the outbox cannot \
            be read or holds no device states yet, 2 for a broken configuration.
            """)

    @Option(help: "The hall's configuration: its state directory.")
    var config: String?

    @Option(help: "The outbox file (default: <state-directory>/outbox.sqlite, or var/outbox.sqlite).")
    var outbox: String?

    @Flag(help: "One JSON document instead of a table.")
    var json = false

    func run() async throws {
        var path = outbox ?? "var/outbox.sqlite"
        var timeZone = TimeZone(identifier: "Asia/Shanghai")!
        if let config {
            do {
                let (loaded, _) = try ConfigLoader.load(path: config)
                if outbox == nil { path = (loaded.stateDirectory as NSString).appendingPathComponent("outbox.sqlite") }
                timeZone = loaded.hall.timeZone
            } catch {
                printError(error.description)
                throw ExitCode(2)
            }
        }
        let rows: [(state: DeviceState, updatedAt: Date)]
        do {
            rows = try await Outbox.openForReading(path: path).deviceStates()
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        guard let updated = rows.map(\.updatedAt).max() else {
            printError("\(path): no device states recorded yet (is the gateway running with this state directory?)")
            throw ExitCode(1)
        }
        if json {
            let report = StatusReport(outbox: path, recordedAt: updated, devices: rows.map { DeviceReport($0.state) })
            print(String(decoding: try Output.jsonEncoder.encode(report), as: UTF8.self))
            return
        }
        let now = Date()
        print("devices as the gateway saw them \(Output.age(updated, now: now)) (\(hallTime(updated, timeZone: timeZone)))")
        let header = ["device", "bus", "state", "last seen", "answered", "timeouts", "crc", "refused", "garbage",
                      "p50/p99 ms", "why offline"]
        let table = rows.map(\.state).map { state -> [String] in
            let counters = state.counters
            let latency = [0.5, 0.99].map { counters.latency.quantile($0).map { String(Int($0)) } ?? "-" }
            return [
                state.device, state.bus, state.online.map { $0 ? "online" : "OFFLINE" } ?? "unknown",
                state.lastSeen.map { Output.age($0, now: now) } ?? "never", "\(counters.transactions)",
                "\(counters.timeouts)", "\(counters.checksumErrors)", "\(counters.exceptions)",
                "\(counters.garbageBytes)", latency.joined(separator: "/"), state.offlineReason ?? "",
            ]
        }
        for line in Output.table([header] + table) { print(line) }
    }
}

/// What `gatewayd status --json` prints.
struct StatusReport: Encodable {
    var outbox: String
    var recordedAt: Date
    var devices: [DeviceReport]
}

struct DeviceReport: Encodable {
    var device: String
    var bus: String
    var online: Bool?
    var lastSeen: Date?
    var offlineReason: String?
    var counters: DeviceCounters

    init(_ state: DeviceState) {
        device = state.device
        bus = state.bus
        online = state.online
        lastSeen = state.lastSeen
        offlineReason = state.offlineReason
        counters = state.counters
    }
}
