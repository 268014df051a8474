import ArgumentParser
import DeviceGateway
import Foundation

struct OutboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox", abstract: "Look into the outbox: what each sink has not received yet.",
        subcommands: [Status.self, Resend.self])

    /// Where the outbox is: `--outbox`, or the hall's state directory (`--config`, else the configuration found as
    /// every command finds it), or var/outbox.sqlite.
    struct Location: ParsableArguments {
        @Option(help: "The hall's configuration: its state directory and sinks (default: $HALL_GATEWAY_CONFIG).")
        var config: String?

        @Option(help: "The outbox file (default: <state-directory>/outbox.sqlite, or var/outbox.sqlite).")
        var outbox: String?

        /// The outbox's path and the configuration, if one was found; a broken one exits with its error.
        func resolve() throws -> (path: String, config: GatewayConfig?) {
            // An outbox named alone is read as it is: its own sinks, not those of a hall found elsewhere.
            guard let config = config ?? (outbox == nil ? DaemonOptions.configPath(given: nil) : nil) else {
                return (outbox ?? "var/outbox.sqlite", nil)
            }
            let (loaded, _) = try DaemonOptions.loadHall(config, given: self.config)
            return (outbox ?? loaded.outboxPath, loaded)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Backlog and oldest unforwarded event per sink, last success, last error, what was put aside.",
            discussion: "Reads the outbox read-only; works while the daemon runs. Exit status 0; 1 when the disk "
                + "holding it has less than 1 MB left (the gateway cannot commit); 2 when the outbox cannot be read (a "
                + "wrong --outbox or state directory, as for events --store) or the configuration is broken.")

        @OptionGroup var location: Location

        @Flag(help: "One JSON document instead of tables.")
        var json = false

        func run() async throws {
            let (path, config) = try location.resolve()
            let sinks = config?.sinks.map(\.name)
            let budget = config?.outbox.maximumBytes
            let timeZone = config?.hall.timeZone ?? TimeZone(identifier: "Asia/Shanghai")!
            let report: OutboxReport
            do {
                let reader = try Outbox.openForReading(path: path)
                report = OutboxReport(
                    outbox: path, events: try await reader.count(), usedBytes: try await reader.usedBytes(),
                    maximumBytes: budget, freeBytes: DiskSpace.free(at: path), dropped: try await reader.dropTotal(),
                    // Said of the configured outbox only: a copy given with --outbox has no gateway to keep one.
                    reserveKept: config == nil || Outbox.reserveKept(beside: path), sinks: try await reader.sinkReports(sinks),
                    putAside: try await reader.putAsideEvents(), damagedOutboxes: Outbox.damagedOutboxes(beside: path))
            } catch {
                // Damaged, not an outbox, or not readable: the path given is wrong, as `events --store` says too.
                printError(Outbox.damage(at: path, error) ?? "\(error)")
                throw ExitCode(CLIExit.usage)
            }
            if json {
                print(String(decoding: try Output.jsonEncoder.encode(report), as: UTF8.self))
            } else {
                print(report.text(timeZone: timeZone, now: Date()))
            }
            if report.diskIsFull { throw ExitCode(CLIExit.failed) }
        }
    }

    struct Resend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Have events put aside offered to their sink again, once the store's fault is fixed.",
            discussion: """
                Marks the events in the outbox: every one put aside, those of --sink, or the ids given. The gateway \
                sends them once the sink's backlog is delivered (at its next start, if it is not running); what the \
                store refuses again stays put aside with its new reason (gatewayd outbox status). Exit status 0; 1 \
                when no event put aside matches; 2 when the outbox cannot be opened or the configuration is broken.
                """)

        @OptionGroup var location: Location

        @Option(help: "Only the events put aside for this sink.")
        var sink: String?

        @Argument(help: "Ids of events put aside (default: every one).")
        var ids: [String] = []

        func run() async throws {
            let (path, config) = try location.resolve()
            let configured = config?.sinks.map(\.name)
            if let sink, let configured, !configured.contains(sink) {
                printError("no sink \(sink) in the configuration (its sinks: \(configured.joined(separator: ", ")))")
                throw ExitCode(CLIExit.usage)
            }
            // With the configuration, only its sinks: nothing would send the events of a sink no longer in it.
            let sinks: [String?] = if let sink { [sink] } else if let configured { configured } else { [nil] }
            var asked = 0
            do {
                let outbox = try Outbox.openForReading(path: path, writable: true)
                // Without a configuration, the outbox's own books say which sinks there are.
                if let sink, configured == nil {
                    let known = try await outbox.sinkReports().map(\.sink)
                    if !known.contains(sink) {
                        printError("no sink \(sink) in \(path) (its sinks: \(known.joined(separator: ", ")))")
                        throw ExitCode(CLIExit.usage)
                    }
                }
                for sink in sinks { asked += try await outbox.askResend(sink: sink, ids: ids) }
            } catch let exit as ExitCode {
                throw exit
            } catch {
                printError("\(error)")
                throw ExitCode(CLIExit.usage)
            }
            guard asked > 0 else {
                printError("no event put aside in \(path) matches" + (sink.map { " for sink \($0)" } ?? "")
                           + (ids.isEmpty ? "" : " the ids given"))
                throw ExitCode(CLIExit.failed)
            }
            print("""
                \(asked) event\(asked == 1 ? "" : "s") put aside will be offered to \
                \(sink.map { "sink \($0)" } ?? (asked == 1 ? "its sink" : "their sinks")) \
                again once its backlog is delivered; `gatewayd outbox status` shows what it refuses again
                """)
        }
    }
}

/// What `gatewayd outbox status` shows.
struct OutboxReport: Encodable {
    var outbox: String
    var events: Int
    var usedBytes: Int64
    var maximumBytes: Int64?
    /// Room left on the disk holding it (from an operator's trial: the status looked healthy on a full disk).
    var freeBytes: Int64?
    var dropped: Int
    /// Whether the reserve against a full disk is kept beside the configured outbox (true for one given by path).
    var reserveKept: Bool
    var sinks: [SinkReport]
    var putAside: [PutAsideEvent]
    /// Damaged outboxes a salvage set aside beside it, kept for inspection (from a trial: nothing a technician reads
    /// said so).
    var damagedOutboxes: [String]

    var diskIsFull: Bool { (freeBytes ?? .max) < Outbox.fullDiskBelowBytes }

    func text(timeZone: TimeZone, now: Date) -> String {
        func megabytes(_ bytes: Int64) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }
        func time(_ date: Date?) -> String { hallTime(date, timeZone: timeZone) }
        func age(_ date: Date?) -> String { date.map { " (\(Output.age($0, now: now)))" } ?? "" }
        var lines = [
            "outbox \(outbox): \(events) events held, \(megabytes(usedBytes))"
                + (maximumBytes.map { " of a \(megabytes($0)) budget" } ?? "")
                + ", \(dropped) dropped undelivered at the budget"
                + (freeBytes.map { ", \(megabytes($0)) free on its disk" } ?? "")
        ]
        if diskIsFull {
            lines.append(Output.paint("the disk holding the outbox is FULL: the gateway cannot commit what it reads until "
                                      + "room is made", .red))
        }
        if !reserveKept {
            // From a trial: 3.4 MB free and exit 0 here while `check` failed for the missing reserve.
            lines.append(Output.paint("no reserve against a full disk beside the outbox (given back on a full disk, or no "
                                      + "room to make it): the gateway makes it at its next start or minute with "
                                      + "\(DiskSpace.megabytes(OutboxPolicy().roomForReserve)) free on the disk; "
                                      + "`gatewayd check` fails until then", .yellow))
        }
        let header = ["sink", "backlog", "oldest unforwarded", "sent", "failed", "put aside", "last success", "last error"]
        let rows = sinks.map { sink in
            [
                sink.sink, "\(sink.backlog)", time(sink.oldestUnforwardedAt) + age(sink.oldestUnforwardedAt), "\(sink.sent)",
                "\(sink.failed)", "\(sink.putAside)", time(sink.lastSuccessAt),
                sink.lastError.map { error in
                    // An error the sink has delivered since is history, not its state (from an operator's trial).
                    "\(time(sink.lastErrorAt)) \(error)" + (sink.isFailing ? "" : " (delivered since)")
                } ?? "-",
            ]
        }
        lines += Output.table([header] + rows)
        if !putAside.isEmpty {
            lines.append("")
            lines.append("put aside (refused by the sink for good, kept here; `gatewayd outbox resend` offers them again):")
            lines += Output.table([["sink", "when", "source", "id", "reason"]] + putAside.map {
                [$0.sink, time($0.putAsideAt), $0.source, $0.id,
                 ($0.resendAskedAt.map { "to be sent again (asked \(time($0))); " } ?? "") + $0.reason]
            })
        }
        if !damagedOutboxes.isEmpty {
            lines.append("")
            lines.append("damaged outboxes set aside by a salvage at a start, kept for inspection (what each salvage could not "
                         + "read: its hall.gateway.outbox_recovered event; with a local event store, "
                         + "`gatewayd events --type hall.gateway.outbox_recovered`):")
            lines += damagedOutboxes.map { "  \($0)" }
        }
        return lines.joined(separator: "\n")
    }
}
