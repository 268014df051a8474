import DeviceGateway
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The daemon's log lines: one ISO 8601 stamp with the hall's offset (`2026-11-24T10:40:01.123+08:00 info …`) on a
/// terminal or in a file; under systemd (stdout is the journal's stream, `JOURNAL_STREAM`), no stamp — journald
/// keeps its own — and an sd-daemon(3) `<N>` priority prefix so `journalctl -p warning` works.
struct GatewayLogHandler: LogHandler {
    /// The zone of the stamps: the machine's until the configuration is loaded, then the hall's.
    static let timeZone = Mutex<TimeZone>(TimeZone.current)

    /// Whether standard output is the journal's stream: `JOURNAL_STREAM` is `device:inode` of that very stream.
    static let toJournal: Bool = {
        guard let stream = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        var status = stat()
        guard fstat(STDOUT_FILENO, &status) == 0 else { return false }
        return stream == "\(status.st_dev):\(status.st_ino)"
    }()

    /// Stamps in the hall's zone from now on.
    static func use(timeZone zone: TimeZone) { timeZone.withLock { $0 = zone } }

    /// Sets swift-log up for the daemon at `level`.
    static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = GatewayLogHandler(label: label, journal: toJournal)
            handler.logLevel = level
            return handler
        }
    }

    /// The service group's logger at `level`: the same lines, and what stops the gateway — a signal, or a part that
    /// ended by itself — said at `notice` (ServiceLifecycle says them at `debug`; from a trial: a stop nobody had asked
    /// for could not be told from a SIGTERM in the log).
    static func serviceGroupLogger(level: Logger.Level) -> Logger {
        Logger(label: "gatewayd") { label in
            var handler = GatewayLogHandler(label: label, journal: toJournal)
            handler.logLevel = .debug
            handler.shownFrom = level
            return handler
        }
    }

    let label: String
    let journal: Bool
    var logLevel: Logger.Level = .info
    /// Below it a line is not written; only the service group's logger sets it apart from `logLevel`.
    var shownFrom: Logger.Level?
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        if let shownFrom, event.level < shownFrom {
            let keys = ServiceGroupConfiguration.LoggingConfiguration().keys
            let message = event.message.description
            if message.hasPrefix("Signal caught"), let signal = event.metadata?[keys.signalKey] {
                (event.level, event.message, event.metadata) = (.notice, "\(signal) received: the gateway stops", nil)
            } else if message.hasPrefix("Service finished. Gracefully shutting down"),
                      let service = event.metadata?[keys.serviceKey] {
                (event.level, event.message, event.metadata) = (.notice, "\(service) ended by itself: the gateway stops", nil)
            } else {
                return
            }
            // Asked for warnings and above: a notice is not one.
            guard event.level >= shownFrom else { return }
        }
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        let tail =
            fields.isEmpty
            ? ""
            : " "
                + fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                .joined(separator: " ")
        let text = "\(event.level) \(label): \(event.message)\(tail)\n"
        let line = journal
            ? "<\(Self.priority(event.level))>" + text
            : Self.stamp(Date(), timeZone: Self.timeZone.withLock { $0 }) + " " + text
        FileHandle.standardOutput.write(Data(line.utf8))
    }

    /// syslog(3) priorities as sd-daemon(3) prefixes them: 7 debug … 2 critical.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// `2026-11-24T10:40:01.123+08:00`: the hall's wall clock and its offset, to the millisecond.
    static func stamp(_ date: Date, timeZone: TimeZone) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = timeZone
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var text = formatter.string(from: date)
        // Foundation writes Z for UTC; the offset form is the same for every zone.
        if text.hasSuffix("Z") { text = String(text.dropLast()) + "+00:00" }
        return text
    }

    /// An event for the log: its summary without the time the log line already carries (the event's own time is
    /// in the event; `gatewayd events` shows it).
    static func eventLine(_ event: CloudEvent, timeZone: TimeZone) -> String {
        let line = EventSummary.line(event, timeZone: timeZone)
        // `2026-11-24 10:40:01  hall.…`: the first 19 characters are the time.
        guard line.count > 21, line.dropFirst(19).hasPrefix("  ") else { return line }
        return String(line.dropFirst(21))
    }
}
