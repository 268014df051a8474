public import Foundation
import Logging
import Synchronization
import Protocols

/// What a device is to the hall: decides which devices a window's command reaches.
public enum DeviceRole: String, Sendable, Codable, CaseIterable {
    /// A board over one window (it has a `window`).
    case windowBoard = "window-board"
    /// A board for the whole hall (no `window`): it shows every call.
    case hallBoard = "hall-board"
    /// A staff member's caller or operator box at a window.
    case caller
    /// An evaluator pad.
    case pad
    /// A ticket printer.
    case printer
}

/// A command from the queue system, addressed by window (or to one board).
public enum QueueCommand: Sendable, Equatable {
    case call(window: String, ticket: String)
    case recall(window: String, ticket: String)
    case pause(window: String)
    case resume(window: String)
    case clear(window: String)
    case showText(device: String, text: String)
    /// A board's brightness, 0 to 100 % of what it can do (mapped onto the board's own levels).
    case brightness(device: String, percent: Int)
    /// A board's screen switched on or off.
    case power(device: String, on: Bool)
    /// The staff member shown on the window's evaluator pad (and carried by its ratings).
    case setStaff(window: String, staff: String)
    /// Asks the window's evaluator pad for the rating of `ticket`: its next rating carries the ticket.
    case requestRating(window: String, ticket: String)

    /// The command's name in results and events.
    public var name: String {
        switch self {
        case .call: "call"
        case .recall: "recall"
        case .pause: "pause"
        case .resume: "resume"
        case .clear: "clear"
        case .showText: "show-text"
        case .brightness: "brightness"
        case .power(_, let on): on ? "power-on" : "power-off"
        case .setStaff: "set-staff"
        case .requestRating: "request-rating"
        }
    }

    /// The command and its arguments in words, to tell two requests under one idempotency key apart. Free text
    /// and staff ids are in it only as a fingerprint: it is kept with the key and said in refusals.
    var summary: String {
        switch self {
        case .call(let window, let ticket), .recall(let window, let ticket), .requestRating(let window, let ticket):
            "\(name) of ticket \(ticket) at window \(window)"
        case .pause(let window), .resume(let window), .clear(let window): "\(name) at window \(window)"
        case .setStaff(let window, let staff): "\(name) at window \(window) (staff #\(Fingerprint.of(staff)))"
        case .showText(let device, let text): "\(name) on \(device) (text #\(Fingerprint.of(text)))"
        case .brightness(let device, let percent): "\(name) \(percent) % on \(device)"
        case .power(let device, _): "\(name) on \(device)"
        }
    }

    var window: String? {
        switch self {
        case .call(let window, _), .recall(let window, _), .pause(let window), .resume(let window), .clear(let window),
             .setStaff(let window, _), .requestRating(let window, _):
            window
        case .showText, .brightness, .power: nil
        }
    }

    /// The one device a device-addressed command goes to (board text, brightness, power).
    var device: String? {
        switch self {
        case .showText(let device, _), .brightness(let device, _), .power(let device, _): device
        default: nil
        }
    }

    var ticket: String? {
        switch self {
        case .call(_, let ticket), .recall(_, let ticket), .requestRating(_, let ticket): ticket
        default: nil
        }
    }

    var staffId: String? {
        if case .setStaff(_, let staff) = self { staff } else { nil }
    }

    var eventType: String {
        switch self {
        case .call, .recall: HallEventType.callDisplayed
        case .pause: HallEventType.windowPaused
        case .resume: HallEventType.windowResumed
        case .clear: HallEventType.displayCleared
        case .showText: HallEventType.textShown
        case .brightness: HallEventType.brightnessChanged
        case .power(_, let on): on ? HallEventType.displaySwitchedOn : HallEventType.displaySwitchedOff
        case .setStaff: HallEventType.staffSet
        case .requestRating: HallEventType.ratingRequested
        }
    }

    /// Which devices of the window take it, and what each is told.
    func deviceCommand(for role: DeviceRole) -> HallCommand? {
        switch (self, role) {
        case (.call(let window, let ticket), .windowBoard), (.call(let window, let ticket), .caller),
             (.call(let window, let ticket), .hallBoard):
            .call(ticket: ticket, window: window)
        case (.recall(let window, let ticket), .windowBoard), (.recall(let window, let ticket), .caller),
             (.recall(let window, let ticket), .hallBoard):
            .recall(ticket: ticket, window: window)
        case (.pause(let window), .windowBoard): .pause(window: window)
        case (.resume, .windowBoard), (.resume, .caller), (.clear, .windowBoard), (.clear, .caller): .clear
        case (.showText(_, let text), .windowBoard), (.showText(_, let text), .hallBoard): .showText(text)
        case (.brightness(_, let percent), .windowBoard), (.brightness(_, let percent), .hallBoard):
            .brightness(percent: percent)
        case (.power(_, let on), .windowBoard), (.power(_, let on), .hallBoard): .power(on: on)
        case (.setStaff(_, let staff), .pad): .setStaff(staff)
        case (.requestRating(_, let ticket), .pad): .requestRating(ticket: ticket)
        default: nil
        }
    }
}

/// What became of a command.
public struct CommandResult: Sendable, Equatable, Codable {
    /// `done`, `device-offline`, `refused`, `timed-out`; `invalid` never gets here (it is refused before running).
    public enum Status: String, Sendable, Codable, Comparable {
        case done
        case timedOut = "timed-out"
        case deviceOffline = "device-offline"
        case refused

        /// Worse is greater: a command's status is its worst device's.
        public static func < (lhs: Status, rhs: Status) -> Bool {
            let order: [Status] = [.done, .timedOut, .deviceOffline, .refused]
            return order.firstIndex(of: lhs)! < order.firstIndex(of: rhs)!
        }
    }

    public var id: String
    public var command: String
    public var window: String?
    public var ticket: String?
    public var status: Status
    public var devices: [CommandExecuted.DeviceOutcome]
    /// The id of the event committed for it.
    public var eventId: String
    /// What the caller should know though the command ran: a call of a ticket the gateway has not given today.
    public var warning: String?
}

/// Why a command could not even start: the caller's mistake, said in one line.
public struct CommandInvalid: Error, Sendable, Equatable {
    /// `unknown-window`, `unknown-device`, `no-device`, `invalid`, `idempotency-key-reused`, `counter-reused`, `expired`.
    public var kind: String
    public var message: String

    /// The kind of an idempotency key sent again with a different request.
    public static let keyReused = "idempotency-key-reused"
    /// The kind of a terminal's rating counter sent again with a different rating.
    public static let counterReused = "counter-reused"
    /// The kind of an MQTT command held across a stop for too long to run (`MQTTCommands.heldCommandsExpireAfter`).
    public static let expired = "expired"
}

/// How one command went: its name (`call`, `pause`, `ticket`…), its outcome (a result's status, or why it was
/// refused: `unknown-window`, `invalid`…) and how long the gateway took, whichever door it came through.
public struct CommandTiming: Sendable, Equatable {
    public var command: String
    public var status: String
    public var duration: Duration

    public init(command: String, status: String, duration: Duration) {
        self.command = command
        self.status = status
        self.duration = duration
    }
}

/// Routes the queue system's commands to the right devices, runs each once per idempotency key, and commits the
/// command's event like any device event.
public actor CommandCenter {
    private let gateway: Gateway
    /// Told of every command, so the metrics count the commands of every door (HTTP, MQTT) alike.
    private let onFinished: @Sendable (CommandTiming) -> Void
    private var byKey: [String: (request: String, run: KeyedRun)] = [:]
    private var keyOrder: [String] = []
    /// Keys held in memory at most: those running, and those whose result the outbox could not keep (a full disk).
    static let rememberedKeys = 10_000
    private let unkeptResults = CommitRefusals()
    private let failedLookUps = CommitRefusals()

    /// A keyed command running, which a repeat waits for, or its result when the outbox could not keep it; a result
    /// the outbox keeps is answered from there (from a trial: a finished task held 13 KB, 130 MB at 10,000 keys).
    private enum KeyedRun {
        case running(Task<KeyedOutcome, Never>)
        case finished(Result<CommandResult, CommandInvalid>)
    }

    private struct KeyedOutcome {
        var result: Result<CommandResult, CommandInvalid>
        /// Whether the outbox holds it for its key.
        var kept: Bool
    }

    /// How many idempotency keys are held in memory.
    var keysInMemory: Int { byKey.count }
    /// How long a key's result is kept in the outbox: a repeat within a day, restarts included, gets it.
    static let keptKeys: TimeInterval = 24 * 3600

    /// A command center over `gateway`'s devices; `onFinished` hears how each command went.
    public init(gateway: Gateway, onFinished: @escaping @Sendable (CommandTiming) -> Void = { _ in }) {
        self.gateway = gateway
        self.onFinished = onFinished
    }

    /// Runs `command` (once per `idempotencyKey`: a repeat gets the first run's result).
    public func execute(_ command: QueueCommand, idempotencyKey: String? = nil) async throws(CommandInvalid) -> CommandResult {
        try await timed(command.name) { () throws(CommandInvalid) in
            let targets = try targets(of: command)
            let gateway = self.gateway
            return try await once(idempotencyKey, request: command.summary) { id in
                // A number nobody holds (a typo in a recall: A103 for A013) sends no one to the window: said, not
                // refused, since after a lost state directory every ticket still waiting would be refused.
                let warning: String? = if let ticket = command.ticket { await gateway.tickets?.problem(calling: ticket) } else { nil }
                if let warning { gateway.logger.warning("\(command.summary): \(warning)") }
                var result = await Self.run(command, id: id, on: targets, gateway: gateway)
                result.warning = warning
                return result
            }
        }
    }

    /// Issues a ticket: `number` from the queue system, or the next of `prefix` from the gateway's counters; printed
    /// on `printer`, or on the first printer that can print (one out of paper is skipped and said so). Once per key:
    /// a retried request gets the same number.
    public func issueTicket(number: String?, prefix: String?, service: String, waitingAhead: Int, printer: String?,
                            idempotencyKey: String? = nil) async throws(CommandInvalid) -> CommandResult {
        try await timed("ticket") { () throws(CommandInvalid) in
            try await ticket(number: number, prefix: prefix, service: service, waitingAhead: waitingAhead,
                             printer: printer, idempotencyKey: idempotencyKey)
        }
    }

    private func ticket(number: String?, prefix: String?, service: String, waitingAhead: Int, printer: String?,
                        idempotencyKey: String?) async throws(CommandInvalid) -> CommandResult {
        let gateway = self.gateway
        guard (number == nil) != (prefix == nil) else {
            throw CommandInvalid(kind: "invalid", message: "send either number (from the queue system) or prefix (the gateway numbers)")
        }
        if let number, !Self.isTicketNumber(number) { throw Self.notATicketNumber("number") }
        // A number under a prefix the gateway numbers would be given again by its counter (from a trial: two A050s).
        if let number, let settings = gateway.tickets?.settings,
           case let letters = String(number.prefix { $0.isLetter }).uppercased(), settings.allPrefixes.contains(letters) {
            throw CommandInvalid(kind: "invalid", message: "the gateway numbers the tickets of prefix \(letters) (tickets: in "
                                 + "its configuration): send prefix \(letters), not a number, so that no number is given twice")
        }
        // What the hall counts its tickets by: "社保业务 " is 社保业务; with the hall's list, nothing else (from a trial:
        // a citizen's name typed into it by a queue system reached the central store).
        let service = service.trimmingCharacters(in: .whitespaces)
        if !gateway.config.services.isEmpty, !gateway.config.services.contains(service) {
            throw CommandInvalid(kind: "invalid", message: "service must be one of the hall's services: "
                                 + gateway.config.services.joined(separator: ", ") + " (services: in its configuration)")
        }
        if !service.isEmpty { try Self.checkField(service, "service", longest: Self.longestService) }
        guard (0...Self.mostWaitingAhead).contains(waitingAhead) else {
            throw CommandInvalid(kind: "invalid", message: "waitingAhead must be 0 to \(Self.mostWaitingAhead)")
        }
        let printers = gateway.config.devices.filter { gateway.roles[$0.id] == .printer }.map(\.id)
        if let printer, !printers.contains(printer) {
            throw CommandInvalid(kind: "unknown-device", message: "no printer \(Self.repeatable(printer)) in hall \(gateway.config.hall.id)")
        }
        guard !printers.isEmpty else { throw CommandInvalid(kind: "no-device", message: "the hall has no ticket printer") }
        // The caller's mistake, said before anything runs (it was a 200 with a "refused" ticket and an event).
        if let prefix, let problem = gateway.tickets?.settings.problem(withPrefix: prefix) {
            throw CommandInvalid(kind: "invalid", message: problem)
        }
        if prefix != nil, gateway.tickets == nil {
            throw CommandInvalid(kind: "invalid", message: "the gateway numbers no tickets (no tickets: in its configuration): send number")
        }
        let request = "ticket " + [number.map { "number \($0)" }, prefix.map { "prefix \($0)" }, "service #\(Fingerprint.of(service))",
                                   "\(waitingAhead) waiting ahead", printer.map { "on \($0)" }].compactMap { $0 }.joined(separator: ", ")
        return try await once(idempotencyKey, request: request) { id in
            await Self.issue(number: number, prefix: prefix, service: service, waitingAhead: waitingAhead,
                             candidates: printer.map { [$0] } ?? printers, id: id, key: idempotencyKey, request: request,
                             gateway: gateway)
        }
    }

    private func timed(
        _ name: String, _ work: () async throws(CommandInvalid) -> CommandResult
    ) async throws(CommandInvalid) -> CommandResult {
        let started = ContinuousClock.now
        do {
            let result = try await work()
            onFinished(CommandTiming(command: name, status: result.status.rawValue, duration: ContinuousClock.now - started))
            return result
        } catch {
            onFinished(CommandTiming(command: name, status: error.kind, duration: ContinuousClock.now - started))
            throw error
        }
    }

    /// Runs `work` once per key; a repeat waits for, and gets, the first run's result, also after a restart (keys
    /// and results are kept in the outbox for `keptKeys`). A key that comes again with another `request` is refused:
    /// answering it with the first run's result would tell the caller that a command ran which never did.
    private func once(
        _ key: String?, request: String, _ work: @escaping @Sendable (String) async -> CommandResult
    ) async throws(CommandInvalid) -> CommandResult {
        if let key, let known = byKey[key] {
            guard known.request == request else { throw Self.reused(key, first: known.request, now: request) }
            switch known.run {
            case .running(let task): return try await task.value.result.get()
            case .finished(let result): return try result.get()
            }
        }
        let id = key.map { Self.eventId(forKey: $0, at: Date()) } ?? "command-\(UUID().uuidString.lowercased())"
        let outbox = gateway.outbox
        let logger = gateway.logger
        let (unkeptResults, failedLookUps) = (self.unkeptResults, self.failedLookUps)
        // Registered before the first suspension, so a concurrent repeat waits for this run.
        let task = Task { () -> KeyedOutcome in
            guard let key else { return KeyedOutcome(result: .success(await work(id)), kept: false) }
            // A key the outbox could not be asked about is held in memory whatever its result's record.
            var lookedUp = false
            do {
                let stored = try await outbox.commandResult(key: key)
                lookedUp = true
                failedLookUps.succeeded(logger, "outbox: idempotency keys are looked up again")
                if let stored, let result = try? JSONDecoder().decode(CommandResult.self, from: Data(stored.result.utf8)) {
                    // Kept before requests were kept with their keys: nothing to compare.
                    guard let first = stored.request, first != request else {
                        return KeyedOutcome(result: .success(result), kept: true)
                    }
                    return KeyedOutcome(result: .failure(Self.reused(key, first: first, now: request)), kept: true)
                }
            } catch {
                failedLookUps.failed(logger, "outbox: idempotency keys cannot be looked up, commands run (a repeat of "
                                     + "one whose result is kept there would run again)", error)
            }
            let result = await work(id)
            do {
                let json = String(decoding: try JSONEncoder().encode(result), as: UTF8.self)
                try await outbox.recordCommandResult(key: key, request: request, json: json)
                unkeptResults.succeeded(logger, "outbox: commands' results are kept for their idempotency keys again "
                                        + "(those refused meanwhile only in memory, until the gateway stops)")
                return KeyedOutcome(result: .success(result), kept: lookedUp)
            } catch {
                // A full disk refuses every command's: said once a minute, not once a command (a trial: 268 lines in a
                // minute).
                unkeptResults.failed(
                    logger, "outbox: commands' results are not kept for their idempotency keys, only in memory until "
                        + "the gateway stops (a repeat after a restart would run its command again)", error)
                return KeyedOutcome(result: .success(result), kept: false)
            }
        }
        guard let key else { return try await task.value.result.get() }
        byKey[key] = (request, .running(task))
        keyOrder.append(key)
        if keyOrder.count > Self.rememberedKeys { byKey[keyOrder.removeFirst()] = nil }
        let outcome = await task.value
        // Unless it was forgotten meanwhile (10,000 keys later): once in the outbox, a repeat is answered from there.
        if case .running(let known)? = byKey[key]?.run, known == task {
            if outcome.kept {
                byKey[key] = nil
                keyOrder.removeAll { $0 == key }
            } else {
                byKey[key] = (request, .finished(outcome.result))
            }
        }
        return try outcome.result.get()
    }

    private static func reused(_ key: String, first: String, now: String) -> CommandInvalid {
        CommandInvalid(kind: CommandInvalid.keyReused,
                       message: "this idempotency key was used for \(first); this request is \(now): "
                           + "a different request needs a key of its own")
    }

    private static func issue(number given: String?, prefix: String?, service: String, waitingAhead: Int,
                              candidates: [String], id: String, key: String?, request: String,
                              gateway: Gateway) async -> CommandResult {
        var outcomes: [CommandExecuted.DeviceOutcome] = []
        var number = given ?? ""
        if let prefix, let counters = gateway.tickets {
            do {
                number = try await counters.next(prefix: prefix)
            } catch {
                outcomes.append(.init(device: "tickets", result: CommandResult.Status.refused.rawValue, detail: error.message))
            }
        }
        var status = CommandResult.Status.refused
        var drafted = false
        if outcomes.isEmpty {
            let conditions = gateway.printerConditions()
            let states = await gateway.deviceStates()
            let issuedAt = HallTime.text(Date(), timeZone: gateway.config.hall.timeZone)
            let ticket = HallCommand.Ticket(number: number, service: service, waitingAhead: waitingAhead, issuedAt: issuedAt)
            for printer in candidates {
                // A printer that does not answer, or known to be out of paper, is skipped without trying (and said so:
                // silence first, since a condition is the last one it reported); one offline only with its line is
                // tried, as the bus would.
                if let state = states.first(where: { $0.device == printer }), state.online == false, !state.offlineByLine {
                    outcomes.append(.init(device: printer, result: CommandResult.Status.deviceOffline.rawValue,
                                          detail: "\(printer) is offline: \(state.offlineReason ?? "not answering")"))
                    continue
                }
                if let condition = conditions[printer], !PrinterDriver.prints(condition) {
                    outcomes.append(.init(device: printer, result: CommandResult.Status.refused.rawValue, detail: "\(printer): \(condition)"))
                    continue
                }
                await recordUnsettled(ticket: number, service: service, printer: printer, outcomes: outcomes, id: id, key: key,
                                      request: request, gateway: gateway)
                drafted = true
                do {
                    try await gateway.send(.printTicket(ticket), to: printer)
                    CrashPoint.reached(.afterPrinting)
                    outcomes.append(.init(device: printer, result: CommandResult.Status.done.rawValue, detail: nil))
                    status = .done
                    break
                } catch let error as GatewayError where error.code == .unconfirmed {
                    // The ticket went out, its status did not come back: most likely printed and in a citizen's hand
                    // (the printer then ran out of paper, or its cover opened). Issued, not printed again elsewhere.
                    outcomes.append(.init(device: printer, result: CommandResult.Status.done.rawValue,
                                          detail: "sent; the printer did not answer after it: check it (\(error.message))"))
                    status = .done
                    break
                } catch {
                    let failed = (error as? GatewayError).map(Self.status(of:)) ?? .refused
                    outcomes.append(.init(device: printer, result: failed.rawValue, detail: "\(error)"))
                }
            }
            if status != .done {
                status = outcomes.compactMap { CommandResult.Status(rawValue: $0.result) }.min() ?? .refused
            }
        }
        let executed = CommandExecuted(commandId: id, command: "issue-ticket", window: nil, ticket: number, service: service,
                                       result: status.rawValue, devices: outcomes)
        let event = CloudEvent(
            id: id, source: EventSource.gateway(hall: gateway.config.hall.id),
            type: status == .done ? HallEventType.ticketIssued : HallEventType.ticketNotIssued,
            time: Date(), subject: nil, data: .command(executed))
        if status != .done, drafted {
            // The draft said issued on the last printer tried: replaced, in case this event has to wait (a full disk).
            do {
                try await gateway.outbox.recordUnsettled(event, key: key, request: request)
            } catch {
                gateway.logger.warning("outbox: ticket \(number)'s record ahead still says issued (\(error))")
            }
        }
        await gateway.commitOwn(event)
        return CommandResult(id: id, command: "issue-ticket", window: nil, ticket: number, status: status,
                             devices: outcomes, eventId: id)
    }

    /// Keeps, before `printer` gets ticket `number`, the event to commit if the gateway dies before the ticket's own:
    /// the ticket is then most likely in a citizen's hand (as when a printer stops answering after it), its number
    /// is given, and a retry of the request must get it rather than print another (`Outbox.settleInterrupted`).
    private static func recordUnsettled(ticket number: String, service: String, printer: String,
                                        outcomes: [CommandExecuted.DeviceOutcome], id: String, key: String?, request: String,
                                        gateway: Gateway) async {
        let interrupted = CommandExecuted.DeviceOutcome(
            device: printer, result: CommandResult.Status.done.rawValue,
            detail: "the gateway stopped while \(printer) printed this ticket: whether it came out is not known, check \(printer)")
        let executed = CommandExecuted(commandId: id, command: "issue-ticket", window: nil, ticket: number, service: service,
                                       result: CommandResult.Status.done.rawValue, devices: outcomes + [interrupted])
        let draft = CloudEvent(id: id, source: EventSource.gateway(hall: gateway.config.hall.id), type: HallEventType.ticketIssued,
                               time: Date(), subject: nil, data: .command(executed))
        do {
            try await gateway.outbox.recordUnsettled(draft, key: key, request: request)
        } catch {
            // The citizen's ticket comes first; what is lost is said.
            gateway.logger.warning("""
                outbox: ticket \(number) is printed without its record ahead (\(error)): if the gateway stops before \
                its event is committed, the central store does not hear of it
                """)
        }
    }

    /// A rating posted by a networked terminal: one event per terminal, boot and counter, so a retried post is stored
    /// once. `boot` is the terminal's own id of its start (or installation): a terminal that cannot keep its counter
    /// across restarts sends a new one each start, and its counter may begin again. Returns the event's id and whether
    /// it was new.
    public func submitRating(terminal id: String, boot: String? = nil, counter: Int64, key: Int?, level: Int?,
                             staffId: String?, ticket: String?) async throws -> (eventId: String, stored: Bool) {
        guard let terminal = gateway.config.terminals.first(where: { $0.id == id }) else {
            throw CommandInvalid(kind: "unknown-device", message: "no terminal \(id) in hall \(gateway.config.hall.id)")
        }
        guard let scale = RatingScale.standard.first(where: { $0.name == terminal.scale }) else {
            throw CommandInvalid(kind: "invalid", message: "terminal \(id): unknown scale \(terminal.scale)")
        }
        guard counter >= 0 else { throw CommandInvalid(kind: "invalid", message: "counter must be 0 or more") }
        // It becomes part of the event's id, the central table's key.
        if let boot, !Self.isBootId(boot) || Self.holdsPhoneOrIDNumber(boot) {
            throw CommandInvalid(kind: "invalid", message: "boot must be 1 to 32 letters, digits or '-', and no mobile or "
                                 + "resident ID number; refused and not repeated here")
        }
        let chosen: RatingScale.Key?
        switch (key, level) {
        case (let key?, nil): chosen = scale.key(forCode: key)
        case (nil, let level?): chosen = scale.keys.first { $0.level.rawValue == level }
        default: throw CommandInvalid(kind: "invalid", message: "send either key (the terminal's key code) or level (1 to 5)")
        }
        guard let chosen else {
            throw CommandInvalid(kind: "invalid", message: "\(key.map { "key \($0)" } ?? "level \(level ?? 0)") is not on terminal \(id)'s \(scale.name) scale")
        }
        if let ticket, !Self.isTicketNumber(ticket) { throw Self.notATicketNumber("ticket") }
        if let staffId { try Self.checkStaffId(staffId) }
        let rating = RatingSubmitted(
            window: terminal.window, staffId: staffId, level: chosen.level.rawValue, levelLabel: chosen.level.label,
            key: chosen.code, keyLabel: chosen.label, scale: scale.name, deviceCounter: counter, ticket: ticket)
        let event = CloudEvent(
            id: "rating-terminal-" + (boot.map { "\($0)-" } ?? "") + "\(counter)",
            source: EventSource.device(hall: gateway.config.hall.id, device: id),
            type: HallEventType.ratingSubmitted, time: Date(), subject: EventSource.windowSubject(terminal.window),
            data: .rating(rating))
        // A failed commit throws: the terminal must post again, as it would after a lost response.
        let stored = try await gateway.commit(own: event)
        // Its counter again with another rating: a terminal that restarted its counter, whose rating would be lost
        // if it were taken for a retry.
        if !stored, let json = try await gateway.outbox.json(ofEvent: event.id, source: event.source),
           case .rating(let first)? = try? CloudEvent.decode(json: Data(json.utf8)).data,
           first.level != rating.level || first.key != rating.key || first.staffId != rating.staffId
            || first.ticket != rating.ticket {
            throw CommandInvalid(kind: CommandInvalid.counterReused,
                                 message: "terminal \(id) counter \(counter)\(boot.map { " (boot \($0))" } ?? "") was used "
                                     + "for another rating: a new rating needs a counter of its own (a restarted "
                                     + "terminal continues above it, or sends a new boot)")
        }
        return (event.id, stored)
    }

    /// A terminal's boot id: it becomes part of an event id.
    static func isBootId(_ text: String) -> Bool {
        (1...32).contains(text.count) && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }

    /// The devices the command goes to, with what each is told; the caller's mistakes are thrown.
    private func targets(of command: QueueCommand) throws(CommandInvalid) -> [(device: String, command: HallCommand)] {
        let devices = gateway.config.devices
        if let id = command.device {
            guard let device = devices.first(where: { $0.id == id }) else {
                throw CommandInvalid(kind: "unknown-device",
                                     message: "no device \(Self.repeatable(id)) in hall \(gateway.config.hall.id)")
            }
            guard let role = gateway.roles[id], let hallCommand = command.deviceCommand(for: role) else {
                let what = if case .showText = command { "it shows no text" } else { "it takes no \(command.name)" }
                throw CommandInvalid(kind: "invalid", message: "\(id) is not a board: \(what)")
            }
            switch command {
            case .showText(_, let text):
                try Self.checkField(text, "text", longest: Self.longestText)
            case .brightness(_, let percent) where !(0...100).contains(percent):
                throw CommandInvalid(kind: "invalid", message: "level \(percent) is not a percentage from 0 to 100")
            default: break
            }
            return [(device.id, hallCommand)]
        }
        if case .setStaff(_, let staff) = command { try Self.checkStaffId(staff) }
        let window = command.window ?? ""
        guard devices.contains(where: { $0.window == window }) else {
            throw CommandInvalid(kind: "unknown-window",
                                 message: "hall \(gateway.config.hall.id) has no window \(Self.repeatable(window))")
        }
        if let ticket = command.ticket, !Self.isTicketNumber(ticket) { throw Self.notATicketNumber("ticket") }
        let targets = devices.compactMap { device -> (String, HallCommand)? in
            guard let role = gateway.roles[device.id], device.window == window || role == .hallBoard,
                  let hallCommand = command.deviceCommand(for: role)
            else { return nil }
            return (device.id, hallCommand)
        }
        // A window without a board of its own is called on the hall's shared boards.
        guard !targets.isEmpty else {
            throw CommandInvalid(kind: "no-device", message: "window \(window) has no device that takes \(command.name)")
        }
        return targets
    }

    private static func run(_ command: QueueCommand, id: String, on targets: [(device: String, command: HallCommand)],
                            gateway: Gateway) async -> CommandResult {
        // Devices on different buses work at once; on one bus their frames queue in order.
        let outcomes = await withTaskGroup(of: (Int, CommandExecuted.DeviceOutcome).self) { group in
            for (index, target) in targets.enumerated() {
                group.addTask {
                    do {
                        // After closing: the queue system and the central store hear that the board was switched on for
                        // it, or that it stays dark (from a trial: `done`, and nothing said the screen was off).
                        let afterClosing = target.command.shows ? gateway.afterClosingHold(for: target.device) : nil
                        if case .pause = target.command, gateway.isDarkAfterClosing(target.device) {
                            try await gateway.send(target.command, to: target.device)
                            return (index, .init(device: target.device, result: CommandResult.Status.done.rawValue,
                                                 detail: "the board is off after closing: not shown"))
                        }
                        try await gateway.send(target.command, to: target.device)
                        if let afterClosing {
                            let minutes = afterClosing.components.seconds / 60
                            let detail = minutes > 0
                                ? "switched on after closing; off again \(minutes) min after the last call or text"
                                : "after closing the board stays off (late-call-minutes: 0): not shown"
                            return (index, .init(device: target.device, result: CommandResult.Status.done.rawValue, detail: detail))
                        }
                        // Shown on a board whose screen is dark (its own key, a power command, a power cut's default):
                        // done, and nobody sees it (from a trial: `done` on a board status said was screen-off).
                        if target.command.setsDisplay, gateway.screenAfterCommand(of: target.device) == false {
                            return (index, .init(device: target.device, result: CommandResult.Status.done.rawValue,
                                                 detail: "the board's screen is off: not seen"))
                        }
                        if case .setStaff(let staff) = target.command {
                            // A pad that keeps none itself (FF 68) gets it back after a restart (from a trial: its
                            // ratings lost their staff at each restart).
                            do {
                                try await gateway.outbox.record(staff: staff.isEmpty ? nil : staff, device: target.device)
                            } catch {
                                gateway.logger.warning("outbox: the staff id of \(target.device) is not kept: \(error); after a restart its ratings carry none until it is set again")
                            }
                        }
                        return (index, .init(device: target.device, result: CommandResult.Status.done.rawValue, detail: nil))
                    } catch let error as GatewayError {
                        return (index, .init(device: target.device, result: Self.status(of: error).rawValue, detail: error.message))
                    } catch {
                        return (index, .init(device: target.device, result: CommandResult.Status.refused.rawValue, detail: "\(error)"))
                    }
                }
            }
            var outcomes: [(Int, CommandExecuted.DeviceOutcome)] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes.sorted { $0.0 < $1.0 }.map(\.1)
        }
        let status = outcomes.compactMap { CommandResult.Status(rawValue: $0.result) }.max() ?? .done
        let executed = CommandExecuted(commandId: id, command: command.name, window: command.window, ticket: command.ticket,
                                       staffId: command.staffId, result: status.rawValue, devices: outcomes)
        let carriedOut = outcomes.contains { $0.result == CommandResult.Status.done.rawValue }
        let event = CloudEvent(
            id: id, source: EventSource.gateway(hall: gateway.config.hall.id),
            type: carriedOut ? command.eventType : HallEventType.commandFailed, time: Date(),
            subject: command.window.map(EventSource.windowSubject), data: .command(executed))
        await gateway.commitOwn(event)
        return CommandResult(id: id, command: command.name, window: command.window, ticket: command.ticket, status: status,
                             devices: outcomes, eventId: id)
    }

    static func status(of error: GatewayError) -> CommandResult.Status {
        switch error.code {
        case .deviceOffline, .portUnavailable: .deviceOffline
        case .deviceTimeout, .unconfirmed: .timedOut
        default: .refused
        }
    }

    /// Whether `text` is a ticket number: up to three letters, a hyphen if the queue system writes one, and one to
    /// six digits (A023, V001, AB-12, 1023). Anything else could carry a citizen's name or phone number into events,
    /// logs, the central store and the boards.
    public static func isTicketNumber(_ text: String) -> Bool {
        text.wholeMatch(of: /[A-Za-z]{0,3}-?[0-9]{1,6}/) != nil
    }

    /// The longest free text a board is sent; the largest board's area holds far less.
    public static let longestText = 200
    /// A staff id (工号) as the pads show it.
    static let longestStaffId = 32
    /// A service's name on a ticket (户籍, 不动产登记…).
    static let longestService = 40
    /// The queue system's count of citizens ahead, as over MQTT.
    public static let mostWaitingAhead = 100_000

    /// Refuses free text a caller sends on to a device or into events: empty, longer than `longest`, holding a control
    /// or formatting character (it would reach the device's wire as a byte the caller chose), or reading as a
    /// citizen's mobile or ID number. The value is never repeated in the refusal, in case it is personal data.
    public static func checkField(_ text: String, _ field: String, longest: Int) throws(CommandInvalid) {
        if text.isEmpty { throw CommandInvalid(kind: "invalid", message: "'\(field)' is empty") }
        if text.count > longest {
            throw CommandInvalid(kind: "invalid", message: "'\(field)' has \(text.count) characters, at most \(longest) are taken")
        }
        let unprintable: Set<Unicode.GeneralCategory> = [
            .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .surrogate, .unassigned,
        ]
        if text.unicodeScalars.contains(where: { unprintable.contains($0.properties.generalCategory) }) {
            throw CommandInvalid(kind: "invalid", message: "'\(field)' holds a control or formatting character; "
                                 + "refused and not repeated here")
        }
        if holdsPhoneOrIDNumber(text) {
            throw CommandInvalid(kind: "invalid", message: "'\(field)' holds what reads as a mobile or resident ID number; "
                                 + "refused and not repeated here, in case it is a citizen's")
        }
    }

    /// A staff id is a staff number (工号), as the pads and the central table take it: checked before anything runs,
    /// since a name sent in its place would otherwise reach the events and the central store.
    /// `field`: how the refusal names where it came from (a request's `staff`; a pad's registers).
    static func checkStaffId(_ staff: String, field: String = "staff") throws(CommandInvalid) {
        try checkField(staff, field, longest: longestStaffId)
        let punctuation: Set<Character> = ["-", "_", "."]
        guard staff.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || punctuation.contains($0)) }) else {
            throw CommandInvalid(kind: "invalid", message: "'\(field)' must be a staff number: ASCII letters, digits, '-', "
                                 + "'_' or '.'; refused and not repeated here, in case it is a name")
        }
    }

    /// The first of `keys` (sorted) that is not one of `taken`, as a refusal may say it: one that reads as a mobile or
    /// ID number is not repeated. The one check of a request's fields, HTTP and MQTT alike: a misspelt field is named
    /// rather than ignored (from a trial: a terminal's `staffId` was dropped and its rating stored without staff).
    public static func unknownField(among keys: some Sequence<String>, taken: [String]) -> String? {
        keys.sorted().first { !taken.contains($0) }.map { holdsPhoneOrIDNumber($0) ? "(not repeated)" : String($0.prefix(60)) }
    }

    /// Whether `text` holds what reads as a mobile number (11 digits from 13… to 19…, also after 86, in groups split
    /// by up to 3 spaces, hyphens, underscores or dots: 138 1234 5678, 1381234_5678, 1 3 8 …) or a resident ID number
    /// (15 or 18 digits, or 17 and X; in groups, 6-8-4 or 6-4-4-4 when its date and check digit hold); full-width
    /// digits and X and the numerals 〇 to 九 count.
    public static func holdsPhoneOrIDNumber(_ text: String) -> Bool {
        let characters = Array(text.map(halfWidth))
        if holdsGroupedNumber(characters) { return true }
        func isDigit(_ index: Int) -> Bool { characters.indices.contains(index) && characters[index].isASCII && characters[index].isNumber }
        var index = 0
        while index < characters.count {
            guard isDigit(index) else {
                index += 1
                continue
            }
            var end = index
            while isDigit(end) { end += 1 }
            let run = String(characters[index..<end])
            let checkLetter = end < characters.count && "Xx".contains(characters[end])
            if run.wholeMatch(of: /(86)?1[3-9][0-9]{9}/) != nil || [15, 18].contains(run.count)
                || (run.count == 17 && checkLetter) {
                return true
            }
            index = end
        }
        return false
    }

    /// A mobile number, or a resident ID whose date and check digit hold, in groups of digits split by short runs of
    /// separators, laid out as people write them (from a security trial: 138_1234_5678, 138 - 1234 - 5678 and
    /// 1 3 8 … went through): 3-4-4, 3-8, 7-4 or single digits, after 86 too; an ID 6-8-4, 6-4-4-4 or 14-4 (the last group
    /// 3 digits and an X) or single digits. Other splits are lists, times and versions: 1 3 5 7 9 11 13, 13.30-17.30,
    /// 192.168.10.100.
    private static func holdsGroupedNumber(_ characters: [Character]) -> Bool {
        func isSeparator(_ character: Character) -> Bool { character.isWhitespace || "-_.·–—".contains(character) }
        func isDigit(_ index: Int) -> Bool { index < characters.count && characters[index].isASCII && characters[index].isNumber }
        // Each chain: its groups of digits, and whether an X follows the last one (a check character).
        var chains: [[(digits: String, checkLetter: Bool)]] = [[]]
        var index = 0
        while index < characters.count {
            guard isDigit(index) else {
                if !(chains.last?.isEmpty ?? true) { chains.append([]) }
                index += 1
                continue
            }
            var end = index
            while isDigit(end) { end += 1 }
            var gap = end
            while gap < characters.count, isSeparator(characters[gap]), gap - end < 3 { gap += 1 }
            let checkLetter = gap < characters.count && "Xx".contains(characters[gap])
            chains[chains.count - 1].append((String(characters[index..<end]), checkLetter))
            if !isDigit(gap) { chains.append([]) }
            index = gap
        }
        let mobileLayouts: [[Int]] = [[3, 4, 4], [3, 8], [7, 4], Array(repeating: 1, count: 11)]
        let idLayouts: [[Int]] = [[6, 8, 4], [6, 4, 4, 4], [14, 4], [6, 8, 3], [6, 4, 4, 3], [14, 3],
                                  Array(repeating: 1, count: 18), Array(repeating: 1, count: 17)]
        for groups in chains {
            let sizes = groups.map(\.digits.count)
            for first in groups.indices {
                func digits(_ count: Int) -> String { groups[first..<first + count].map(\.digits).joined() }
                for layout in mobileLayouts + mobileLayouts.map({ [2] + $0 }) where sizes[first...].starts(with: layout) {
                    if digits(layout.count).wholeMatch(of: /(86)?1[3-9][0-9]{9}/) != nil { return true }
                }
                for layout in idLayouts where sizes[first...].starts(with: layout) {
                    let id = digits(layout.count)
                    if isResidentID(id) || (groups[first + layout.count - 1].checkLetter && isResidentID(id + "X")) {
                        return true
                    }
                }
            }
        }
        return false
    }

    /// An 18-character resident ID number: a plausible birth date and its ISO 7064 MOD 11-2 check character.
    private static func isResidentID(_ id: String) -> Bool {
        let characters = Array(id)
        guard characters.count == 18, characters.prefix(17).allSatisfy({ $0.isASCII && $0.isNumber }),
              let year = Int(String(characters[6..<10])), let month = Int(String(characters[10..<12])),
              let day = Int(String(characters[12..<14])), (1900...2100).contains(year), (1...12).contains(month),
              (1...31).contains(day)
        else { return false }
        let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
        let sum = zip(characters.prefix(17), weights).reduce(0) { $0 + ($1.0.wholeNumberValue ?? 0) * $1.1 }
        return Array("10X98765432")[sum % 11] == characters[17]
    }

    /// Full-width digits, X, hyphens, dots and spaces (as a Chinese input method types them), and the numerals 〇 to
    /// 九 (一三八… is a number read out), as their ASCII selves.
    private static func halfWidth(_ character: Character) -> Character {
        if let numeral = "〇一二三四五六七八九".firstIndex(of: character) {
            return Character(String("〇一二三四五六七八九".distance(from: "〇一二三四五六七八九".startIndex, to: numeral)))
        }
        if character == "零" { return "0" }
        guard let scalar = character.unicodeScalars.first, character.unicodeScalars.count == 1 else { return character }
        switch scalar.value {
        case 0xFF10...0xFF19: return Character(Unicode.Scalar(scalar.value - 0xFF10 + 0x30)!)
        case 0xFF0D: return "-"
        case 0xFF0E: return "."
        case 0xFF38: return "X"
        case 0xFF58: return "x"
        case 0x3000: return " "
        default: return character
        }
    }

    /// A caller's name for a window or device, said back unless it reads as a citizen's number (sent by mistake).
    public static func repeatable(_ name: String) -> String {
        holdsPhoneOrIDNumber(name) ? "by that name (not repeated here: it reads as a mobile or resident ID number)" : name
    }

    /// A caller's value in quotes, or in its place a note that it reads as a citizen's number.
    public static func quoted(_ value: String) -> String {
        holdsPhoneOrIDNumber(value) ? "(not repeated here: it reads as a mobile or resident ID number)" : "'\(value)'"
    }

    /// The refusal of a field that is not a ticket number; the value is not repeated, in case it is personal data.
    static func notATicketNumber(_ field: String) -> CommandInvalid {
        CommandInvalid(kind: "invalid", message: "'\(field)' is not a ticket number (up to 3 letters, then 1 to 6 digits, "
                       + "like A023); refused and not repeated here, in case it is personal data")
    }

    /// The event of a command run under idempotency key `key` at `date`: the key's fingerprint and the day (UTC),
    /// since a key kept 24 h can only run again on a later day.
    public static func eventId(forKey key: String, at date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let day = calendar.dateComponents([.year, .month, .day], from: date)
        // Keys come from clients: the event id carries their fingerprint, not the key itself.
        return "command-\(Fingerprint.padded(key))-" + String(format: "%04d%02d%02d", day.year ?? 0, day.month ?? 0, day.day ?? 0)
    }
}

extension HallEventType {
    /// A board's brightness was set (`hall.display.brightness_changed`).
    public static let brightnessChanged = "hall.display.brightness_changed"
    /// A board's screen was switched on.
    public static let displaySwitchedOn = "hall.display.switched_on"
    /// A board's screen was switched off.
    public static let displaySwitchedOff = "hall.display.switched_off"
    /// The staff member of a window's evaluator pad was set.
    public static let staffSet = "hall.window.staff_set"
    /// A window's evaluator pad was asked for the rating of a ticket.
    public static let ratingRequested = "hall.rating.requested"
}
