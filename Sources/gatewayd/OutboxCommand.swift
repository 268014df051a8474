import ArgumentParser
import DeviceGateway
import Foundation

struct OutboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox", abstract: "Look into the outbox: what each sink has not received yet.",
        subcommands: [Status.self])

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Backlog and oldest unforwarded event per sink, last success, last error, what was put aside.",
            discussion: "Reads the outbox read-only; works while the daemon runs. Exit status 0; 2 when the outbox "
                + "cannot be read (a wrong --outbox or state directory, as for events --store) or the configuration "
                + "is broken.")

        @Option(help: "The hall's configuration: its state directory and sinks.")
        var config: String?

        @Option(help: "The outbox file (default: <state-directory>/outbox.sqlite, or var/outbox.sqlite).")
        var outbox: String?

        @Flag(help: "One JSON document instead of tables.")
        var json = false

        func run() async throws {
            var path = outbox ?? "var/outbox.sqlite"
            var sinks: [String]?
            var budget: Int64?
            var timeZone = TimeZone(identifier: "Asia/Shanghai")!
            if let config {
                do {
                    let (loaded, _) = try ConfigLoader.load(path: config)
                    if outbox == nil { path = loaded.outboxPath }
                    sinks = loaded.sinks.map(\.name)
                    budget = loaded.outbox.maximumBytes
                    timeZone = loaded.hall.timeZone
                } catch {
                    printError(error.description)
                    throw ExitCode(CLIExit.usage)
                }
            }
            let report: OutboxReport
            do {
                let reader = try Outbox.openForReading(path: path)
                report = OutboxReport(
                    outbox: path, events: try await reader.count(), usedBytes: try await reader.usedBytes(),
                    maximumBytes: budget, dropped: try await reader.dropTotal(),
                    sinks: try await reader.sinkReports(sinks), putAside: try await reader.putAsideEvents())
            } catch {
                // Not an outbox, or not readable: the path given is wrong, as `events --store` says too.
                printError("\(error)")
                throw ExitCode(CLIExit.usage)
            }
            if json {
                print(String(decoding: try Output.jsonEncoder.encode(report), as: UTF8.self))
            } else {
                print(report.text(timeZone: timeZone, now: Date()))
            }
        }
    }
}

/// What `gatewayd outbox status` shows.
struct OutboxReport: Encodable {
    var outbox: String
    var events: Int
    var usedBytes: Int64
    var maximumBytes: Int64?
    var dropped: Int
    var sinks: [SinkReport]
    var putAside: [PutAsideEvent]

    func text(timeZone: TimeZone, now: Date) -> String {
        func megabytes(_ bytes: Int64) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }
        func time(_ date: Date?) -> String { hallTime(date, timeZone: timeZone) }
        func age(_ date: Date?) -> String { date.map { " (\(Output.age($0, now: now)))" } ?? "" }
        var lines = [
            "outbox \(outbox): \(events) events held, \(megabytes(usedBytes))"
                + (maximumBytes.map { " of a \(megabytes($0)) budget" } ?? "")
                + ", \(dropped) dropped undelivered at the budget"
        ]
        let header = ["sink", "backlog", "oldest unforwarded", "sent", "failed", "put aside", "last success", "last error"]
        let rows = sinks.map { sink in
            [
                sink.sink, "\(sink.backlog)", time(sink.oldestUnforwardedAt) + age(sink.oldestUnforwardedAt), "\(sink.sent)",
                "\(sink.failed)", "\(sink.putAside)", time(sink.lastSuccessAt),
                sink.lastError.map { "\(time(sink.lastErrorAt)) \($0)" } ?? "-",
            ]
        }
        lines += Output.table([header] + rows)
        if !putAside.isEmpty {
            lines.append("")
            lines.append("put aside (refused by the sink for good, kept here):")
            lines += Output.table([["sink", "when", "source", "id", "reason"]] + putAside.map {
                [$0.sink, time($0.putAsideAt), $0.source, $0.id, $0.reason]
            })
        }
        return lines.joined(separator: "\n")
    }
}
