// `struct pollfd` is defined again by CMosquitto's shim (it includes poll.h): which of the two modules the compiler
// takes as its home varies with the build's batches, and a member of it needs that module imported (a CI build broke).
import CMosquitto
import Foundation
import Protocols

/// One request of a probe and what came back: bytes in hex and in words.
public struct ProbeStep: Sendable, Codable, Equatable {
    /// What the request is for (`poll`, `status-4`, `show-text`, `listen` …).
    public var purpose: String
    /// The request in hex, empty for listening.
    public var sent: String
    /// The request in words.
    public var sentWords: [String]
    /// What arrived, in hex.
    public var received: String
    /// What arrived, in words (and the reason for every byte run that was no frame).
    public var receivedWords: [String]
    /// `answered`, `sent` (no answer expected), `refused: …`, `no answer within N ms`, `heard` (listening).
    public var outcome: String
    /// From the request's last byte to the answer's, in ms.
    public var latencyMs: Double?

    /// Creates a step.
    public init(
        purpose: String, sent: String, sentWords: [String], received: String, receivedWords: [String],
        outcome: String, latencyMs: Double? = nil
    ) {
        self.purpose = purpose
        self.sent = sent
        self.sentWords = sentWords
        self.received = received
        self.receivedWords = receivedWords
        self.outcome = outcome
        self.latencyMs = latencyMs
    }
}

/// What a probe or a device test found: the device, each exchange, the events its answers make.
public struct ProbeReport: Sendable, Codable, Equatable {
    /// The device id, its profile and bus.
    public var device: String
    public var profile: String
    public var bus: String
    /// Where the bus goes: `/dev/ttyUSB0 at 9600 8N1` or `host:port`.
    public var line: String
    /// How the probe went: `through the running daemon`, or `port opened directly`.
    public var via: String
    /// Each exchange.
    public var steps: [ProbeStep]
    /// The events the answers make, one line each as `gatewayd events` shows them.
    public var events: [String]
    /// Through the daemon, of `events` (its latest), how many it made during the test or the listening: the newest.
    public var eventsDuring: Int?
    /// Whether the device answered every request that expects an answer.
    public var answered: Bool
    /// A printer's condition (`online`, `paper-out`, `cover-open` …) when the device is a printer that answered.
    public var printerState: String?
    /// Every condition a printer reports.
    public var printerConditions: [String]?
    /// What went wrong, if anything: a refusal, a command the device cannot take, no answer.
    public var problem: String?
    /// A Modbus device's last poll answer read through its profile: status, counters, staff, last keys, readings.
    public var reading: [String]?

    /// Creates a report.
    public init(
        device: String, profile: String, bus: String, line: String, via: String, steps: [ProbeStep],
        events: [String], answered: Bool, printerState: String? = nil, printerConditions: [String]? = nil,
        problem: String? = nil
    ) {
        self.device = device
        self.profile = profile
        self.bus = bus
        self.line = line
        self.via = via
        self.steps = steps
        self.events = events
        self.answered = answered
        self.printerState = printerState
        self.printerConditions = printerConditions
        self.problem = problem
    }
}

/// Talks to one configured device through its profile's driver, on a port the caller opens directly (the daemon is
/// not running): polls it once, optionally carries out a command, optionally listens. Blocking: call it from a
/// thread of its own, never the cooperative pool.
///
/// Nothing is acknowledged to the device: a probe must not take a rating the daemon has not committed.
public enum DeviceProbe {
    /// How often a polled device is polled while a probe listens for what the technician does.
    static let listeningPollInterval = Duration.milliseconds(250)

    /// Probes `deviceId` of `config`: a poll, then `command` and a second poll if given, then `listen` if given.
    public static func run(
        device deviceId: String, config: GatewayConfig, library: ProfileLibrary, command: HallCommand? = nil,
        listen: Duration? = nil
    ) throws(GatewayError) -> ProbeReport {
        guard let device = config.devices.first(where: { $0.id == deviceId }) else {
            let known = config.devices.map(\.id).joined(separator: ", ")
            throw GatewayError(.profileMismatch, "no device '\(deviceId)' in the configuration (devices: \(known))")
        }
        guard let bus = config.buses.first(where: { $0.id == device.bus }) else {
            throw GatewayError(.profileMismatch, "\(deviceId): no bus '\(device.bus)' in the configuration")
        }
        let loaded: LoadedProfile
        do { loaded = try library.load(named: device.profile) } catch {
            throw GatewayError(.profileMismatch, error.description)
        }
        let profile = loaded.profile
        let session = Session(
            device: device, bus: bus, loaded: loaded, hallId: config.hall.id,
            timeZone: config.hall.timeZone, command: command, listen: listen,
            ff68Roles: WireInspector.ff68Roles(bus: bus.id, config: config, library: library))
        let member = DriverRegistry.Member(device: device, profile: profile, pollInterval: nil, identify: loaded.identify)
        return try DriverRegistry.driver(for: bus, members: [member], hallId: config.hall.id, ProbeUse(session: session))
    }

    /// Polls once with the driver the registry chose.
    private struct ProbeUse: DriverUse {
        let session: Session

        func use<Driver: BusDriver>(_ driver: Driver) throws(GatewayError) -> ProbeReport {
            var session = session
            var driver = driver
            return try session.run(&driver)
        }
    }

    /// A Modbus device's answer to a read of its registers, read through its profile (status, counters, staff, last
    /// keys, readings); nil for any other exchange. The same whether the probe polled or the daemon's bus did.
    public static func reading(
        of loaded: LoadedProfile, transport: BusConfig.Transport, request: [UInt8], answer: [UInt8]
    ) -> [String]? {
        guard let (registers, start) = registers(transport: transport, request: request, answer: answer) else { return nil }
        // Another model's registers read as this one's are invented faults (from a trial: a pad read as a board).
        if let other = otherModel(loaded, transport: transport, request: request, answer: answer) {
            return ["not read as a \(loaded.profile.model): \(other)"]
        }
        let lines = ProfileReading.describe(loaded.profile, registers: registers, start: start)
        return lines.isEmpty ? nil : lines
    }

    /// Why an answer is another model's than `loaded`'s, by its `identify:` rule; nil when it is this model's or
    /// the rule cannot tell.
    public static func otherModel(
        _ loaded: LoadedProfile, transport: BusConfig.Transport, request: [UInt8], answer: [UInt8]
    ) -> String? {
        guard let rule = loaded.identify,
              let (registers, start) = registers(transport: transport, request: request, answer: answer),
              let mismatch = rule.mismatch(inHoldingRegisters: registers, from: start)
        else { return nil }
        return "another model answers (\(mismatch))"
    }

    /// The holding registers a read answered, and the first one's number.
    private static func registers(
        transport: BusConfig.Transport, request: [UInt8], answer: [UInt8]
    ) -> (values: [UInt16], start: Int)? {
        let framing: ModbusFraming
        switch transport {
        case .modbusRTU: framing = .rtu
        case .modbusTCP: framing = .tcp
        case .serial: return nil
        }
        guard let registers = Session.registers(in: answer, framing: framing),
              let start = Session.readStart(of: request, framing: framing)
        else { return nil }
        return (registers, start)
    }

    /// How a bus is described in reports.
    public static func describe(_ transport: BusConfig.Transport) -> String {
        switch transport {
        case .modbusRTU(let settings), .serial(let settings): "\(settings.port) at \(settings.lineName)"
        case .modbusTCP(let host, let port): "\(host):\(port)"
        }
    }

    /// One probe's state: the line, the report being written.
    struct Session {
        let device: DeviceConfig
        let bus: BusConfig
        let loaded: LoadedProfile
        var profile: DeviceProfile { loaded.profile }
        let hallId: String
        let timeZone: TimeZone
        let command: HallCommand?
        let listen: Duration?
        /// The line's FF 68 devices by address, to tell whose a frame heard is.
        let ff68Roles: [UInt8: WireInspector.FF68Role]

        var framing: ModbusFraming {
            if case .modbusTCP = bus.transport { return .tcp }
            return .rtu
        }

        /// The inspector streams for what the host sends and what the device answers.
        var streams: (sent: WireInspector.Stream, received: WireInspector.Stream) {
            WireInspector.streams(transport: bus.transport, lineProtocol: profile.lineProtocol)
        }

        mutating func run<Driver: BusDriver>(_ driver: inout Driver) throws(GatewayError) -> ProbeReport {
            let line = try DirectLine(transport: bus.transport)
            defer { line.close() }
            driver.lineOpened()
            var decoder = driver.makeDecoder()
            var report = ProbeReport(
                device: device.id, profile: device.profile, bus: bus.id, line: DeviceProbe.describe(bus.transport),
                via: "port opened directly", steps: [], events: [], answered: true)
            var events: [CloudEvent] = []

            func exchange(_ request: LineRequest) {
                if request.discardsStaleInput { line.discardInput() }
                var step = ProbeStep(
                    purpose: request.purpose, sent: WireInspector.hex(request.bytes),
                    sentWords: Self.words(request.bytes, streams.sent), received: "", receivedWords: [], outcome: "sent"
                )
                do { try line.write(request.bytes) } catch {
                    step.outcome = "write failed: \(error.message)"
                    report.answered = false
                    report.steps.append(step)
                    return
                }
                let written = ContinuousClock.now + line.wireTime(request.bytes.count)
                guard request.expectsAnswer else {
                    // Let the bytes leave before the next request (a ticket is long at 9600 baud).
                    Thread.sleep(forTimeInterval: max(0, (written - ContinuousClock.now).timeInterval))
                    report.steps.append(step)
                    return
                }
                let deadline = written + bus.responseTimeout
                var received: [UInt8] = []
                var done = false
                while !done, ContinuousClock.now < deadline {
                    let bytes = (try? line.read(timeout: deadline - ContinuousClock.now)) ?? []
                    if bytes.isEmpty { continue }
                    received += bytes
                    for frame in decoder.decode(bytes) {
                        let reaction = driver.handle(frame, inFlight: request, at: Date())
                        events += reaction.events
                        if let silence = reaction.unanswered {
                            step.outcome = "no answer: \(silence)"
                            report.answered = false
                            report.problem = report.problem ?? "no answer from \(device.id) (address \(device.address)): "
                                + "\(silence): check the device behind it, its address, and the converter's serial side"
                            done = true
                        } else if let refusal = reaction.refusal {
                            step.outcome = "refused: \(refusal)"
                            report.problem = report.problem ?? "\(device.id) refused \(request.purpose): \(refusal)"
                            done = true
                        } else if reaction.answersRequest, let stranger = reaction.notReadyBecause {
                            step.outcome = "answered"
                            report.problem = report.problem ?? "\(device.id): \(stranger)"
                            done = true
                        } else if reaction.answersRequest {
                            step.outcome = "answered"
                            done = true
                        }
                    }
                }
                step.latencyMs = done ? DeviceProbe.milliseconds(max(.zero, ContinuousClock.now - written)) : nil
                step.received = WireInspector.hex(received)
                step.receivedWords = Self.words(received, streams.received)
                if done, let lines = DeviceProbe.reading(
                    of: loaded, transport: bus.transport, request: request.bytes, answer: received)
                {
                    report.reading = lines
                    if let other = DeviceProbe.otherModel(loaded, transport: bus.transport, request: request.bytes, answer: received) {
                        report.problem = report.problem ?? "\(device.id): \(other) at address \(device.address) "
                            + "(a wrong address in the configuration?)"
                    }
                }
                if !done {
                    step.outcome = "no answer within \(DeviceProbe.milliseconds(bus.responseTimeout)) ms"
                    report.answered = false
                    report.problem =
                        report.problem ?? "no answer from \(device.id) (address \(device.address)) on "
                        + "\(report.line) within \(Int(DeviceProbe.milliseconds(bus.responseTimeout))) ms: check wiring "
                        + "A/B, baud, address, termination"
                    line.discardInput()
                }
                report.steps.append(step)
                // The silence before the next frame (3.5 characters on Modbus RTU, and a little for any device).
                Thread.sleep(forTimeInterval: max(0.002, line.wireTime(4).timeInterval))
            }

            let polls = driver.pollRequests(for: device)
            for request in polls { exchange(request) }
            if let command {
                do {
                    for request in try driver.requests(for: command, to: device) { exchange(request) }
                    // A second poll shows what the device made of it (a board's acknowledgement, a printer's paper).
                    for request in driver.pollRequests(for: device) { exchange(request) }
                } catch {
                    report.problem = error.message
                    report.answered = false
                }
            }
            if let listen, !polls.isEmpty {
                // A polled device says nothing unasked: the keys pressed meanwhile show in its answers (from a trial:
                // a pad test listened to a Modbus pad, which never speaks, and showed no key).
                let end = ContinuousClock.now + listen
                var times = 0
                var changed = 0
                // One poll missed among many (a key held while the pad answers, noise, a pad slow to wake for the
                // first) is said, not a failed test; a pad that answers none of them fails it.
                var unanswered = 0
                let (answeredBefore, problemBefore) = (report.answered, report.problem)
                var lastProblem: String?
                while ContinuousClock.now < end {
                    let next = ContinuousClock.now + DeviceProbe.listeningPollInterval
                    let shown = report.steps.count
                    (report.answered, report.problem) = (true, nil)
                    for request in polls { exchange(request) }
                    times += 1
                    if !report.answered {
                        unanswered += 1
                        lastProblem = report.problem
                    }
                    // Only an answer unlike the one before it is shown: a poll a quarter second makes many. On Modbus TCP
                    // each answer has its own transaction id (its first two bytes, "00 01 " in hex).
                    func answer(_ step: ProbeStep?) -> Substring? {
                        guard let step else { return nil }
                        return framing == .tcp ? step.received.dropFirst(6) : step.received[...]
                    }
                    let last = answer(report.steps.last { $0.purpose != "listen" && !$0.received.isEmpty })
                    let previous = answer(report.steps[..<shown].last { $0.purpose != "listen" && !$0.received.isEmpty })
                    if report.steps.count > shown, let last, let previous, last == previous,
                       report.steps[shown...].allSatisfy({ $0.outcome == "answered" }) {
                        report.steps.removeSubrange(shown...)
                    } else if report.answered {
                        changed += 1
                    }
                    let pause = min(next, end) - ContinuousClock.now
                    if pause > .zero { Thread.sleep(forTimeInterval: pause.timeInterval) }
                }
                if times > 0, unanswered == times {
                    (report.answered, report.problem) = (false, problemBefore ?? lastProblem)
                } else if times > 0 {
                    // It answers: a first poll it missed is in the steps above, not the verdict.
                    (report.answered, report.problem) = (true, answeredBefore ? problemBefore : nil)
                } else {
                    (report.answered, report.problem) = (answeredBefore, problemBefore)
                }
                report.steps.append(ProbeStep(
                    purpose: "listen", sent: "", sentWords: [], received: "", receivedWords: [],
                    outcome: "polled \(times) times in \(DeviceProbe.seconds(listen)) s: "
                        + (unanswered == times ? "none answered"
                            : (changed == 0 ? "every answer as the first"
                                : "\(changed) answer\(changed == 1 ? "" : "s") changed, shown above")
                                + (unanswered == 0 ? "" : "; \(unanswered) unanswered"))))
            } else if let listen {
                var step = ProbeStep(
                    purpose: "listen", sent: "", sentWords: [], received: "", receivedWords: [],
                    outcome: "heard")
                var received: [UInt8] = []
                let end = ContinuousClock.now + listen
                while ContinuousClock.now < end {
                    let bytes = (try? line.read(timeout: end - ContinuousClock.now)) ?? []
                    received += bytes
                    for frame in decoder.decode(bytes) {
                        events += driver.handle(frame, inFlight: nil, at: Date()).events
                    }
                }
                // Only this device's frames, as through the daemon: others on the line are not its answer.
                let own = WireInspector.frames(of: device.address, in: received, as: streams.received, ff68Roles: ff68Roles)
                step.received = WireInspector.hex(own.bytes)
                step.receivedWords = own.words
                if own.bytes.isEmpty { step.outcome = DeviceProbe.nothingHeard(in: listen) }
                report.steps.append(step)
            }
            if polls.isEmpty, listen == nil, command == nil {
                report.problem = "\(device.id) (\(profile.model)) is not polled: it speaks when used; listen for it"
            }
            // Once each, whatever a driver gives again (an FF 68 repeat heard twice is one press).
            var seen: Set<String> = []
            events = events.filter { seen.insert($0.id).inserted }
            report.events = events.map { EventSummary.line($0, timeZone: timeZone) }
            for event in events {
                if case .printerStatus(let status) = event.data {
                    report.printerState = status.state
                    report.printerConditions = status.conditions
                }
            }
            return report
        }

        /// The registers of a read-holding answer among `bytes`, if one is there.
        static func registers(in bytes: [UInt8], framing: ModbusFraming) -> [UInt16]? {
            let responses: [ModbusMessage] =
                switch framing {
                case .rtu:
                    {
                        var decoder = ModbusRTUDecoder(role: .client)
                        return decoder.decode(bytes).map(\.message)
                    }()
                case .tcp:
                    {
                        var decoder = ModbusTCPDecoder(role: .client)
                        return decoder.decode(bytes).map(\.message)
                    }()
                }
            for case .response(.readHoldingRegisters(let values)) in responses { return values }
            return nil
        }

        /// The first register a read-holding request asks for.
        static func readStart(of request: [UInt8], framing: ModbusFraming) -> Int? {
            let pdu = framing == .tcp ? ModbusTCPFrame.headerLength : 1
            guard request.count >= pdu + 3, request[pdu] == 0x03 else { return nil }
            return Int(request[pdu + 1]) << 8 | Int(request[pdu + 2])
        }

        static func words(_ bytes: [UInt8], _ stream: WireInspector.Stream) -> [String] {
            guard !bytes.isEmpty else { return [] }
            return WireInspector.inspect(bytes, as: stream).items.map { item in
                item.frame ?? "\(item.bytes.count) bytes rejected: \(item.rejected ?? "not a frame")"
            }
        }
    }

    /// A listen's time as the technician gave it: `3 s`, `2.5 s`.
    static func seconds(_ duration: Duration) -> String {
        String(format: "%g", duration.timeInterval)
    }

    /// A listen's outcome when the device said nothing, through the daemon or directly.
    public static func nothingHeard(in duration: Duration) -> String {
        "nothing heard in \(seconds(duration)) s"
    }

    static func milliseconds(_ duration: Duration) -> Double {
        ((Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15) * 10).rounded()
            / 10
    }
}

/// A bus's line opened directly and used synchronously: a serial line, or a blocking TCP socket.
final class DirectLine {
    private let serial: SerialLine?
    private let socket: Int32
    private let settings: SerialSettings?

    init(transport: BusConfig.Transport) throws(GatewayError) {
        switch transport {
        case .modbusRTU(let settings), .serial(let settings):
            do {
                serial = try ModbusDirectClient.openSerial(settings)
            } catch {
                throw GatewayError(.portUnavailable, error.message)
            }
            self.settings = settings
            socket = -1
        case .modbusTCP(let host, let port):
            do {
                socket = try ModbusDirectClient.connect(host: host, port: port, timeout: .seconds(2))
            } catch {
                throw GatewayError(.portUnavailable, error.message)
            }
            serial = nil
            settings = nil
        }
    }

    func wireTime(_ characters: Int) -> Duration { settings?.wireTime(characters: characters) ?? .zero }

    func write(_ bytes: [UInt8]) throws(GatewayError) {
        if let serial { return try serial.write(bytes) }
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else {
                throw GatewayError(.portUnavailable, "write failed: \(String(cString: strerror(errno)))")
            }
            offset += count
        }
    }

    func read(timeout: Duration) throws(GatewayError) -> [UInt8] {
        if let serial { return try serial.read(timeout: timeout) }
        var entry = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(clamping: Int(DeviceProbe.milliseconds(timeout).rounded(.up)))
        guard poll(&entry, 1, max(1, milliseconds)) > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = recv(socket, &buffer, buffer.count, 0)
        if count == 0 { throw GatewayError(.portUnavailable, "the connection was closed") }
        return count > 0 ? Array(buffer[0..<count]) : []
    }

    func discardInput() { serial?.discardInput() }

    func close() {
        serial?.close()
        if socket >= 0 { Glibc.close(socket) }
    }
}
