public import Foundation

/// One readable line per event, for the daemon's log and the `events` command.
public enum EventSummary {
    /// `2026-11-24 10:40:01  hall.rating.submitted  window/5  满意 → level 4 (满意)  staff 0231  [eval-w05 #12]`,
    /// with the time in the hall's zone.
    public static func line(_ event: CloudEvent, timeZone: TimeZone) -> String {
        var parts = [localTime(event.time, timeZone: timeZone), event.type]
        if let subject = event.subject { parts.append(subject) }
        switch event.data {
        case .rating(let rating):
            parts.append("\(rating.keyLabel) → level \(rating.level) (\(rating.levelLabel))")
            if let staff = rating.staffId { parts.append("staff \(staff)") }
        case .deviceStatus(let status):
            parts.append("\(status.device) on \(status.bus)#\(status.address): \(status.reason)")
        case .callerKey(let key):
            parts.append("\(key.action) (key \(key.key))")
        case .printerStatus(let status):
            parts.append(status.state + (status.conditions.isEmpty ? "" : " [\(status.conditions.joined(separator: ", "))]"))
        case .boardAcknowledged(let acknowledged):
            parts.append("\(acknowledged.command) " + (acknowledged.accepted ? "accepted" : "refused (error \(acknowledged.errorCode ?? -1))"))
        case .deviceFault(let fault):
            parts.append("\(fault.fault): \(fault.detail)")
        case .heartbeat(let beat):
            let backlog = beat.sinks.map { "\($0.name) \($0.backlog)" }.joined(separator: ", ")
            parts.append("up \(beat.uptimeSeconds) s, \(beat.devicesOnline.count) devices online, "
                         + "\(beat.devicesOffline.count) offline, \(beat.devicesUnknown.count) not heard from yet, "
                         + "backlog: \(backlog.isEmpty ? "none" : backlog)")
        case .eventsDropped(let dropped):
            parts.append("\(dropped.count) undelivered events dropped at the outbox's disk budget (\(dropped.policy))")
        case .outboxRecovered(let recovered):
            // No count of the lost: the numbers not read back are a superset where a source's delivered rows were pruned.
            parts.append("damaged outbox salvaged: \(recovered.recovered) events queued again, "
                         + "\(recovered.unreadable) rows unreadable, \(recovered.unreadableUndelivered) of them undelivered"
                         + (recovered.takenFromLocalStore > 0 ? ", \(recovered.takenFromLocalStore) taken from the local store" : "")
                         + (recovered.notReadBack.isEmpty ? "" : "; what may be lost: notReadBack in the event"))
        case .deviceCheck(let report):
            // A check passes with devices not heard from yet (an FF 68 pad nobody pressed): say how many answered.
            parts.append((report.passed ? "passed: \(report.devicesAnswering) of \(report.devicesChecked) devices answer"
                          : "\(report.problems.count) \(report.problems.count == 1 ? "problem" : "problems"): "
                              + report.problems.joined(separator: "; "))
                         + (report.warnings.isEmpty ? "" : "; to see to: " + report.warnings.joined(separator: "; ")))
        case .command(let command):
            let what = [command.command, command.ticket].compactMap { $0 }.joined(separator: " ")
            let devices = command.devices.map { "\($0.device) \($0.result)" }.joined(separator: ", ")
            // The worst device's result; "for 1 of 3" keeps a board's miss from reading as every board's.
            let failed = command.devices.count { $0.result != CommandResult.Status.done.rawValue }
            let share = failed > 0 && failed < command.devices.count ? " for \(failed) of \(command.devices.count)" : ""
            parts.append("\(what): \(command.result)\(share) (\(devices.isEmpty ? "no devices" : devices))")
        }
        let device = EventSource.deviceId(of: event.source)
        parts.append("[\(device)" + (event.sequence.map { " #\(Int($0) ?? 0)" } ?? "") + "]")
        return parts.joined(separator: "  ")
    }

    /// Whether the event tells of something that stops a part of the hall's service, for the log's warning level (from
    /// a duty officer's trial: paper out, a ticket not issued, a failed call, a board missing the opening were all
    /// `info`, hidden from `journalctl -p warning`). A device's going offline has its own warning line.
    public static func needsAttention(_ event: CloudEvent) -> Bool {
        switch event.data {
        case .printerStatus(let status):
            return status.conditions.contains { !PrinterDriver.prints($0) }
        case .boardAcknowledged(let acknowledged):
            return !acknowledged.accepted
        case .deviceFault, .eventsDropped, .outboxRecovered:
            return true
        case .deviceCheck(let report):
            return !report.passed
        case .command(let command):
            return command.result != CommandResult.Status.done.rawValue
        case .rating, .deviceStatus, .callerKey, .heartbeat:
            return false
        }
    }

    private static func localTime(_ time: String, timeZone: TimeZone) -> String {
        EventTime.parse(time).map { HallTime.text($0, timeZone: timeZone, toTheSecond: true) } ?? time
    }
}
