import DeviceGateway
import Foundation
public import Hummingbird
import NIOCore
import Synchronization

/// The technician's routes: `gatewayd probe`, `display test`, `printer test|status` and `pad test` while the daemon
/// owns the ports. They answer with the same report the CLI prints when it opens a port itself.
extension LocalAPI {
    func addTechnicianRoutes(_ v1: RouterGroup<BasicRequestContext>) {
        v1.post("/devices/:device/probe") { request, context in
            try await LocalAPI.noFields(request, context)
            // `wire=true`: wait for the device's next poll on the bus's tap (up to 1.5 s) and show it in hex.
            let wire = request.uri.queryParameters["wire"].map { String($0) }
            guard wire == nil || wire == "true" || wire == "false" else {
                throw Problem(.badRequest, "wire must be true or false")
            }
            // `listen=SECONDS`: also what the device says meanwhile (a pad test's key presses).
            let listen = try request.uri.queryParameters["listen"].map { text -> Duration in
                guard let seconds = Double(String(text)), (0...30).contains(seconds) else {
                    throw Problem(.badRequest, "listen must be a number of seconds from 0 to 30")
                }
                return .milliseconds(Int(seconds * 1000))
            }
            return try await daemonView(of: try knownDevice(context), wire: wire == "true", listen: listen)
        }
        v1.post("/devices/:device/test") { request, context in
            let device = try knownDevice(context)
            // The body is optional: no text means the default test text.
            var body = request
            let buffer = try await body.collectBody(upTo: 1 << 16)
            if buffer.readableBytes > 0 { try LocalAPI.requireJSON(request) }
            let text = buffer.readableBytes == 0 ? nil : try LocalAPI.decode(TestRequest.self, from: Data(buffer.readableBytesView)).text
            return try await test(device, text: text)
        }
        v1.get("/devices/:device/printer-status") { _, context in
            let device = try knownDevice(context)
            guard gateway.roles[device.id] == .printer else {
                throw Problem(.badRequest, "\(device.id) is not a ticket printer (\(device.profile))")
            }
            return try await daemonView(of: device)
        }
    }

    private func knownDevice(_ context: BasicRequestContext) throws -> DeviceConfig {
        let id = try context.pathParameter("device")
        guard let device = gateway.config.devices.first(where: { $0.id == id }) else {
            throw Problem(.notFound, "no device \(CommandCenter.quoted(id)) in this gateway's configuration")
        }
        return device
    }

    /// What the daemon knows of the device now: its state from the bus's last polls, its latest events.
    private func daemonView(of device: DeviceConfig, wire: Bool = false, listen: Duration? = nil) async throws
        -> ProbeReport
    {
        let library = ProfileLibrary(directory: gateway.config.profilesDirectory)
        let unasked = (try? library.profile(named: device.profile))?.speaksUnasked == true
        var steps: [ProbeStep] = []
        var reading: [String]?
        let started = ContinuousClock.now
        // The events made meanwhile are those after it.
        let before = wire && listen != nil ? try await lastPosition() : nil
        if wire, unasked {
            // Never polled: what it says in the time given is the test (from a trial: the pad test showed the
            // gateway's acknowledgement as the pad's "poll" and failed an FF 68 pad that had been pressed).
            if let listen, listen > .zero { steps = await heard(from: device, for: listen) }
        } else if wire {
            (steps, reading) = await nextExchanges(of: device)
            // The rest of the time given, for what the technician does meanwhile: its events are read after.
            if let listen { try? await Task.sleep(until: started + listen) }
        }
        let state = await gateway.deviceStates().first { $0.device == device.id }
        var report = ProbeReport(
            device: device.id, profile: device.profile, bus: device.bus, line: line(of: device),
            via: "through the running daemon (its last polls)", steps: steps, events: [],
            answered: state?.online == true)
        report.reading = reading
        (report.events, report.eventsDuring) = try await recentEvents(of: device.id, after: before)
        if let state {
            let counters = state.counters
            report.steps.append(
                ProbeStep(
                    purpose: "polls", sent: "", sentWords: [], received: "",
                    receivedWords: [
                        "\(counters.transactions) answered, \(counters.timeouts) timeouts, "
                            + "\(counters.checksumErrors) checksum errors, \(counters.exceptions) refusals, "
                            + "\(counters.garbageBytes) garbage bytes"
                            + (state.lastSeen.map { ", last seen \(hallTime($0))" } ?? ", never seen")
                    ],
                    outcome: state.online == true ? "answered" : state.online == false ? "offline" : "not polled yet"))
            if state.online == false {
                report.problem = "\(device.id) is offline: \(state.offlineReason ?? "no answer")"
            }
        }
        // An offline printer's last condition is stale: it is no "online" (from a trial: a printer unplugged said so).
        if state?.online != false, let condition = gateway.printerConditions()[device.id] {
            report.printerState = condition
            report.printerConditions = condition == "online" ? [] : [condition]
        }
        return report
    }

    /// A test pattern on a board, a test ticket on a printer, carried out by the bus that owns the port.
    private func test(_ device: DeviceConfig, text: String?) async throws -> ProbeReport {
        let command: HallCommand
        switch gateway.roles[device.id] {
        case .windowBoard, .hallBoard:
            let words = text ?? "设备测试"
            // The queue system's rule for free text: the same token reaches this route.
            do { try CommandCenter.checkField(words, "text", longest: CommandCenter.longestText) } catch { throw Problem(error) }
            command = .showText(words)
        case .printer:
            command = .printTicket(.test(timeZone: gateway.config.hall.timeZone))
        default:
            throw Problem(.badRequest, "\(device.id) has no test: only boards and printers do (\(device.profile))")
        }
        var report = try await daemonView(of: device)
        let before = try await lastPosition()
        var step = ProbeStep(
            purpose: command.name, sent: "", sentWords: [], received: "", receivedWords: [],
            outcome: "answered")
        let bus = gateway.config.buses.first { $0.id == device.bus }
        // Long enough for a printer's next status.
        let cycle = (bus?.pollInterval ?? .seconds(1)) + (bus?.responseTimeout ?? .seconds(1))
        // At night a board is off as the hall's closing left it: a test on a dark screen would show nothing.
        let afterClosing = gateway.afterClosingHold(for: device.id)
        do {
            // A board that acknowledges on a later poll has shown it once `send` returns.
            try await gateway.send(command, to: device.id)
            if gateway.acknowledgingOnLaterPoll.contains(device.id) {
                step.outcome = "answered and acknowledged"
            } else if gateway.roles[device.id] == .printer {
                // The paper as the printer reports it after the ticket, not before.
                await nextPoll(of: device.id, until: ContinuousClock.now + cycle + .milliseconds(500))
                if let condition = gateway.printerConditions()[device.id] {
                    report.printerState = condition
                    report.printerConditions = condition == "online" ? [] : [condition]
                }
            }
            if let afterClosing {
                let minutes = afterClosing.components.seconds / 60
                if minutes > 0 {
                    step.outcome += "; switched on for it (the hall is closed), off again in \(minutes) min"
                } else {
                    // Not a pass: nothing could be seen (a board switched on by hand since would be: power it on first).
                    report.problem = """
                        the hall is closed and its boards stay off (late-call-minutes: 0): \(device.id) shows nothing; \
                        switch it on first (POST /v1/devices/\(device.id)/power)
                        """
                    report.answered = false
                }
            }
        } catch let error as GatewayError {
            // Its message names the device already.
            step.outcome = (error.code == .commandRejected ? "refused: " : "failed: ") + error.message
            report.problem = error.message
            report.answered = false
        } catch {
            step.outcome = "refused: \(error)"
            report.problem = "\(device.id): \(error)"
            report.answered = false
        }
        report.via = "through the running daemon"
        report.steps.append(step)
        // What the test itself made (a board's acknowledgement, a printer's status), not only what came before it.
        (report.events, report.eventsDuring) = try await recentEvents(of: device.id, after: before)
        return report
    }

    /// Returns once the bus has had an answer from the device after now, or at `deadline`.
    private func nextPoll(of device: String, until deadline: ContinuousClock.Instant) async {
        func answered() async -> Int { await gateway.deviceStates().first { $0.device == device }?.counters.transactions ?? 0 }
        let before = await answered()
        while ContinuousClock.now < deadline, await answered() == before {
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// What a device that is never asked said for `duration`, and what the gateway wrote to it, from the bus's tap:
    /// its frames only, in hex and in words.
    private func heard(from device: DeviceConfig, for duration: Duration) async -> [ProbeStep] {
        guard let bus = gateway.config.buses.first(where: { $0.id == device.bus }) else { return [] }
        let records = Mutex<[TraceRecord]>([])
        let token = BusTap.shared.subscribe(outbox: gateway.outbox, bus: bus.id) { record in
            records.withLock { $0.append(record) }
        }
        try? await Task.sleep(for: duration)
        BusTap.shared.unsubscribe(token)
        let library = ProfileLibrary(directory: gateway.config.profilesDirectory)
        guard let streams = WireInspector.streams(bus: bus.id, config: gateway.config, library: library) else { return [] }
        let roles = WireInspector.ff68Roles(bus: bus.id, config: gateway.config, library: library)
        var said = ProbeStep(purpose: "listen", sent: "", sentWords: [], received: "", receivedWords: [], outcome: "heard")
        var answered = ProbeStep(purpose: "acknowledge", sent: "", sentWords: [], received: "", receivedWords: [],
                                 outcome: "sent")
        var saidBytes: [UInt8] = []
        var answeredBytes: [UInt8] = []
        // Reads come in pieces: a frame is decoded from the reads between two writes together.
        var pending: [UInt8] = []
        func take(_ bytes: [UInt8], as stream: WireInspector.Stream, sent: Bool) {
            let frames = WireInspector.frames(of: device.address, in: bytes, as: stream, ff68Roles: roles)
            if sent {
                answeredBytes += frames.bytes
                answered.sentWords += frames.words
            } else {
                saidBytes += frames.bytes
                said.receivedWords += frames.words
            }
        }
        for record in records.withLock({ $0 }) {
            if record.direction == .received {
                pending += record.bytes
                continue
            }
            take(pending, as: streams.received, sent: false)
            pending = []
            take(record.bytes, as: streams.sent, sent: true)
        }
        take(pending, as: streams.received, sent: false)
        said.received = WireInspector.hex(saidBytes)
        answered.sent = WireInspector.hex(answeredBytes)
        if saidBytes.isEmpty { said.outcome = DeviceProbe.nothingHeard(in: duration) }
        return answeredBytes.isEmpty ? [said] : [said, answered]
    }

    /// An instant in the hall's time, to the second, as the CLI shows times.
    private func hallTime(_ instant: Date) -> String {
        HallTime.text(instant, timeZone: gateway.config.hall.timeZone, toTheSecond: true)
    }

    /// The device's next poll on the wire, from the bus's tap: each request and its answer, in hex and in words, up
    /// to the poll's first request coming again; and a Modbus device's registers read through its profile. Waits one
    /// poll interval and a response timeout (1.5 s at most) for it.
    private func nextExchanges(of device: DeviceConfig) async -> (steps: [ProbeStep], reading: [String]?) {
        guard let bus = gateway.config.buses.first(where: { $0.id == device.bus }) else { return ([], nil) }
        let records = Mutex<[TraceRecord]>([])
        let token = BusTap.shared.subscribe(outbox: gateway.outbox, bus: bus.id) { record in
            records.withLock { $0.append(record) }
        }
        try? await Task.sleep(for: min(.milliseconds(1500), bus.pollInterval + bus.responseTimeout + .milliseconds(200)))
        BusTap.shared.unsubscribe(token)
        let tapEnded = Date()
        let streams = WireInspector.streams(
            bus: bus.id, config: gateway.config, library: ProfileLibrary(directory: gateway.config.profilesDirectory))
        // A request is the device's when its address is (Modbus RTU: first byte; TCP: the unit id); on other lines
        // every exchange is shown.
        func isDevice(_ bytes: [UInt8]) -> Bool {
            switch bus.transport {
            case .modbusRTU: bytes.first == UInt8(truncatingIfNeeded: device.address)
            case .modbusTCP: bytes.count > 6 && bytes[6] == UInt8(truncatingIfNeeded: device.address)
            case .serial: true
            }
        }
        /// A Modbus frame's function code; nil on other lines.
        func function(of frame: [UInt8]) -> UInt8? {
            switch bus.transport {
            case .modbusRTU: frame.count > 1 ? frame[1] : nil
            case .modbusTCP: frame.count > 7 ? frame[7] : nil
            case .serial: nil
            }
        }
        /// A Modbus write is a command or an acknowledgement, not a poll (from a trial: a board's call was shown as
        /// its "poll").
        func purpose(of request: [UInt8]) -> String { [5, 6, 15, 16].contains(function(of: request)) ? "write" : "poll" }
        /// An answer with the exception bit on its function is a refusal (from closing-23: a refused poll was said
        /// `answered`); its words name the exception.
        func outcome(of answer: [UInt8]) -> String {
            if answer.isEmpty { return "no answer seen" }
            // Bytes that make no frame are no refusal (from an installer's trial: A and B swapped read as `refused`).
            if let stream = streams?.received, !WireInspector.inspect(answer, as: stream).items.contains(where: { $0.frame != nil }) {
                return "garbled"
            }
            return function(of: answer).map { $0 & 0x80 != 0 } == true ? "refused" : "answered"
        }
        func words(_ bytes: [UInt8], _ stream: WireInspector.Stream?) -> [String] {
            guard let stream, !bytes.isEmpty else { return [] }
            return WireInspector.inspect(bytes, as: stream).items.map { $0.frame ?? "rejected: \($0.rejected ?? "")" }
        }
        let loaded = try? ProfileLibrary(directory: gateway.config.profilesDirectory).load(named: device.profile)
        var steps: [ProbeStep] = []
        var reading: [String]?
        var firstSent: [UInt8]?
        var current: (sent: [UInt8], at: Date, received: [UInt8], last: Date)?
        func close() {
            guard let exchange = current else { return }
            // Its answer not come when the tap ended, within its time: not judged. (An answer that came is, garbled
            // too: a part of one cut by the tap's end is rare, a whole one garbled is what a technician looks for.)
            if exchange.received.isEmpty, .seconds(tapEnded.timeIntervalSince(exchange.at)) < bus.responseTimeout {
                current = nil
                return
            }
            let outcome = outcome(of: exchange.received)
            if reading == nil, let loaded {
                reading = DeviceProbe.reading(
                    of: loaded, transport: bus.transport, request: exchange.sent, answer: exchange.received)
            }
            steps.append(ProbeStep(
                purpose: purpose(of: exchange.sent), sent: WireInspector.hex(exchange.sent),
                sentWords: words(exchange.sent, streams?.sent),
                received: WireInspector.hex(exchange.received),
                receivedWords: words(exchange.received, streams?.received),
                outcome: outcome,
                latencyMs: exchange.received.isEmpty ? nil
                    : (exchange.last.timeIntervalSince(exchange.at) * 10_000).rounded() / 10))
            current = nil
        }
        exchanges: for record in records.withLock({ $0 }) {
            switch record.direction {
            case .sent:
                close()
                // Enough: not one more begun, whose answer the loop would not read (from a test: a busy pad's fifth
                // exchange, an acknowledgement, showed as `no answer seen`).
                if steps.count >= 4 { break exchanges }
                guard isDevice(record.bytes) else { continue }
                // The next poll again (on Modbus TCP under a new transaction id): one of it is enough.
                let request = if case .modbusTCP = bus.transport { Array(record.bytes.dropFirst(2)) } else { record.bytes }
                if request == firstSent { break exchanges }
                if firstSent == nil { firstSent = request }
                current = (record.bytes, record.time, [], record.time)
            case .received:
                if current != nil {
                    current?.received += record.bytes
                    current?.last = record.time
                }
            }
        }
        close()
        return (steps, reading)
    }

    private func line(of device: DeviceConfig) -> String {
        guard let bus = gateway.config.buses.first(where: { $0.id == device.bus }) else { return device.bus }
        return DeviceProbe.describe(bus.transport)
    }

    /// The device's latest events (up to 10), newest last, from the outbox's last thousand; and of those how many were
    /// committed after `position` (the newest).
    private func recentEvents(of device: String, after position: Int64? = nil) async throws
        -> (lines: [String], after: Int?)
    {
        let high = try await lastPosition()
        let suffix = "/devices/\(device)"
        let entries = try await gateway.outbox.entries(after: max(0, high - 1000), limit: 1000)
            .filter { $0.source.hasSuffix(suffix) }.suffix(10)
        let events = entries.compactMap { entry in
            (try? CloudEvent.decode(json: Data(entry.json.utf8))).map { (entry.position, $0) }
        }
        let lines = events.map { EventSummary.line($0.1, timeZone: gateway.config.hall.timeZone) }
        return (lines, position.map { position in events.count { $0.0 > position } })
    }

    /// The outbox's highest position, found by doubling then halving (the outbox pages forward only).
    private func lastPosition() async throws -> Int64 {
        var low: Int64 = 0
        var high: Int64 = 1024
        while try await !gateway.outbox.entries(after: high, limit: 1).isEmpty {
            low = high
            high *= 2
        }
        while high - low > 1 {
            let middle = (low + high) / 2
            if try await gateway.outbox.entries(after: middle, limit: 1).isEmpty { high = middle } else { low = middle }
        }
        // Nothing after 0 either: an empty outbox.
        if low == 0, try await gateway.outbox.entries(after: 0, limit: 1).isEmpty { return 0 }
        return high
    }
}

/// The body of `POST /v1/devices/{device}/test`.
struct TestRequest: RequestBody {
    var text: String?
    enum CodingKeys: String, CodingKey, CaseIterable { case text }
}

extension ProbeReport: ResponseEncodable {}
