import Foundation
public import Protocols

/// A device that answered a scan: where, how fast, what it said, and which profile recognised it.
public struct ScanFinding: Sendable, Encodable, Equatable {
    /// Its address (RTU) or unit id (TCP).
    public var address: Int
    /// The answer's latency to the scan's probe, in ms.
    public var latencyMs: Double
    /// The answer in words: registers in hex, or the exception.
    public var answer: String
    /// The profile whose identification rule matched, if one did.
    public var profile: String?
    /// Other profiles whose rules matched too (two rules that do not tell the models apart).
    public var alsoMatches: [String]
    /// What the identification reads brought back, for the technician to compare with the profiles.
    public var identification: String?
}

/// One line setting tried by a sweep, and what came back.
public struct SweepStep: Sendable, Encodable, Equatable {
    /// `9600 8N1`.
    public var setting: String
    public var baud: Int
    public var parity: String
    /// `answered`, `garbled` (bytes, but no valid frame), `silent`, or for a listening sweep `frames`.
    public var result: String
    /// The answer, the garbage, or the frames heard.
    public var detail: String?
}

/// Address scans, identification and baud/parity sweeps of a Modbus line, over direct transactions.
///
/// Blocking, like `ModbusDirectClient`: run it on the CLI's thread.
public struct ModbusScanner: Sendable {
    /// The probe every address gets: a read of holding register 0. An exception answer counts too: someone is there.
    public static let probe = ModbusRequest.readHoldingRegisters(start: 0, count: 1)
    /// The bauds a sweep tries, the usual ones first.
    public static let sweepBauds = [9600, 19200, 38400, 115_200, 57600, 4800, 2400, 1200]

    /// The profiles with identification rules, by name.
    public var rules: [(name: String, rule: IdentifyRule)]
    /// How long to wait for each answer.
    public var timeout: Duration

    /// A scanner matching answers against `rules`.
    public init(rules: [(name: String, rule: IdentifyRule)], timeout: Duration) {
        self.rules = rules
        self.timeout = timeout
    }

    /// Probes every address in `addresses` on `client`'s line; `progress` hears of each (nil: silent).
    public func scan(
        _ addresses: ClosedRange<Int>, on client: ModbusDirectClient, progress: (Int, ScanFinding?) -> Void
    ) throws(ModbusDirectError) -> [ScanFinding] {
        var found: [ScanFinding] = []
        client.timeout = timeout
        for address in addresses {
            var finding: ScanFinding?
            do {
                let exchange = try client.transact(Self.probe, address: UInt8(address))
                if !Self.isConverterSayingNobody(exchange.response) {
                    finding = identify(address: address, probeAnswer: exchange, on: client)
                }
            } catch  where error.kind != .unreachable {
                // A garbled answer is someone too (at another baud, or two devices at one address).
                if error.kind == .garbled {
                    finding = ScanFinding(
                        address: address, latencyMs: 0,
                        answer: "garbled: \(error.received.count) bytes, no valid frame",
                        profile: nil, alsoMatches: [], identification: nil)
                }
            }
            if let finding { found.append(finding) }
            progress(address, finding)
        }
        return found
    }

    /// A Modbus TCP converter's own answer for an address where nothing answered it (exception 0A or 0B): nobody is
    /// there, though the converter spoke.
    static func isConverterSayingNobody(_ response: ModbusResponse) -> Bool {
        guard case .exception(_, let code) = response else { return false }
        return code == .gatewayPathUnavailable || code == .gatewayTargetDeviceFailedToRespond
    }

    /// Sends each distinct identification read to `address` and names the profiles whose values came back.
    public func identify(address: Int, probeAnswer: ModbusExchange, on client: ModbusDirectClient) -> ScanFinding {
        var answers: [(request: ModbusRequest, response: ModbusResponse?)] = []
        var matches: [String] = []
        var seen: [String] = []
        for (name, rule) in rules {
            let response: ModbusResponse?
            if let earlier = answers.first(where: { $0.request == rule.request }) {
                response = earlier.response
            } else {
                response = try? client.transact(rule.request, address: UInt8(address)).response
                answers.append((rule.request, response))
                if let response { seen.append("\(Self.describe(rule.request)) → \(Self.describe(response))") }
            }
            if let response, rule.matches(response) { matches.append(name) }
        }
        return ScanFinding(
            address: address, latencyMs: Self.milliseconds(probeAnswer.latency),
            answer: Self.describe(probeAnswer.response), profile: matches.first,
            alsoMatches: Array(matches.dropFirst()), identification: seen.isEmpty ? nil : seen.joined(separator: "; "))
    }

    /// Tries `address` at each baud and parity until one gives a valid answer (all of them with `exhaustive`).
    public func sweep(
        port settings: SerialSettings, address: Int, bauds: [Int] = sweepBauds,
        parities: [SerialSettings.Parity] = [.none, .even, .odd], exhaustive: Bool = false,
        progress: (SweepStep) -> Void
    ) throws(ModbusDirectError) -> (steps: [SweepStep], found: ScanFinding?, settings: SerialSettings?) {
        var steps: [SweepStep] = []
        var found: (ScanFinding, SerialSettings)?
        for baud in bauds {
            for parity in parities {
                var trial = settings
                trial.baud = baud
                trial.parity = parity
                var step = SweepStep(setting: trial.lineName, baud: baud, parity: parity.rawValue, result: "silent")
                let client: ModbusDirectClient
                do { client = try ModbusDirectClient(line: .rtu(trial), timeout: timeout) } catch {
                    // A port that opens at one setting and refuses another (a pseudo-terminal refuses even parity):
                    // that setting is skipped; a port that opens at none is reported.
                    guard !steps.isEmpty else { throw error }
                    step.result = "refused"
                    step.detail = error.message
                    steps.append(step)
                    progress(step)
                    continue
                }
                do {
                    let exchange = try client.transact(Self.probe, address: UInt8(address))
                    step.result = "answered"
                    step.detail = Self.describe(exchange.response)
                    if found == nil { found = (identify(address: address, probeAnswer: exchange, on: client), trial) }
                } catch  where error.kind == .garbled {
                    step.result = "garbled"
                    step.detail = "\(error.received.count) bytes, no valid frame"
                } catch  where error.kind == .timeout {
                    step.result = "silent"
                }
                steps.append(step)
                progress(step)
                if found != nil, !exhaustive { return (steps, found?.0, found?.1) }
            }
        }
        return (steps, found?.0, found?.1)
    }

    // MARK: Words

    /// A request as a technician reads it: `read holding 6…7`.
    public static func describe(_ request: ModbusRequest) -> String {
        switch request {
        case .readHoldingRegisters(let start, let count): "holding \(range(start, count))"
        case .readInputRegisters(let start, let count): "input \(range(start, count))"
        case .readCoils(let start, let count): "coils \(range(start, count))"
        case .readDiscreteInputs(let start, let count): "discrete \(range(start, count))"
        default: "\(request)"
        }
    }

    /// An answer as a technician reads it: registers in hex, or the exception in words.
    public static func describe(_ response: ModbusResponse) -> String {
        switch response {
        case .readHoldingRegisters(let values), .readInputRegisters(let values):
            values.map { String(format: "0x%04X", $0) }.joined(separator: " ")
        case .readCoils(let status), .readDiscreteInputs(let status):
            "bits " + status.map { String(format: "%02X", $0) }.joined(separator: " ")
        case .exception(_, let code): code.words
        default: "\(response)"
        }
    }

    private static func range(_ start: UInt16, _ count: UInt16) -> String {
        count == 1 ? "\(start)" : "\(start)…\(Int(start) + Int(count) - 1)"
    }

    static func milliseconds(_ duration: Duration) -> Double {
        ((Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15) * 10).rounded()
            / 10
    }
}

/// Listens on a line of a family that speaks unprompted (FF 68 pads and callers, QSystem boxes) at each baud, and
/// says which baud gives valid frames and from which addresses.
public struct ListeningSweep: Sendable {
    /// The families that can be found by listening.
    public enum Family: String, Sendable, CaseIterable {
        case ff68
        case qsystem

        /// What is found, for the command's help.
        public var devices: String {
            switch self {
            case .ff68: "FF 68 pads and callers"
            case .qsystem: "QSystem boxes"
            }
        }
    }

    public var family: Family
    /// How long to listen at each baud.
    public var listen: Duration

    /// A sweep listening for `family`'s frames for `listen` at each baud.
    public init(family: Family, listen: Duration) {
        self.family = family
        self.listen = listen
    }

    /// Listens at each baud (parity as `settings` has it); stops at the first baud with valid frames unless
    /// `exhaustive`.
    public func run(
        port settings: SerialSettings, bauds: [Int], exhaustive: Bool = false, progress: (SweepStep) -> Void
    ) throws(ModbusDirectError) -> [SweepStep] {
        var steps: [SweepStep] = []
        for baud in bauds {
            var trial = settings
            trial.baud = baud
            let line: SerialLine
            do { line = try SerialLine(settings: trial) } catch {
                throw ModbusDirectError(.unreachable, error.message)
            }
            defer { line.close() }
            var addresses: [UInt8] = []
            var frames = 0
            var bytes = 0
            var ff68 = FF68Decoder()
            var qsystem = QSystemBoxDecoder()
            let end = ContinuousClock.now + listen
            while ContinuousClock.now < end {
                let chunk: [UInt8]
                do { chunk = try line.read(timeout: end - ContinuousClock.now) } catch {
                    throw ModbusDirectError(.unreachable, error.message)
                }
                bytes += chunk.count
                switch family {
                case .ff68:
                    let decoded = ff68.decode(chunk)
                    frames += decoded.count
                    addresses += decoded.map(\.address)
                case .qsystem:
                    let decoded = qsystem.decode(chunk)
                    frames += decoded.count
                    addresses += decoded.map(\.address)
                }
            }
            let heard = Array(Set(addresses)).sorted().map(String.init).joined(separator: ", ")
            let step = SweepStep(
                setting: trial.lineName, baud: baud, parity: trial.parity.rawValue,
                result: frames > 0 ? "frames" : bytes > 0 ? "garbled" : "silent",
                detail: frames > 0
                    ? "\(frames) valid frame\(frames == 1 ? "" : "s") from address \(heard)"
                    : bytes > 0 ? "\(bytes) bytes, no valid frame" : nil)
            steps.append(step)
            progress(step)
            if frames > 0, !exhaustive { break }
        }
        return steps
    }
}

/// A raw serial family whose devices answer a prompt, so that a line can be scanned or swept like Modbus: Onbon BX
/// controllers answer a ping at their address, an ESC/POS printer (alone on its line) a real-time status request.
public struct PromptedFamily: Sendable {
    /// `onbon` or `escpos`.
    public let name: String
    /// Whether the family has addresses (an ESC/POS printer has a line of its own).
    public let addressed: Bool
    /// What it is asked, for the command's help.
    public let prompting: String
    let prompt: @Sendable (Int) -> [UInt8]
    /// A description of the valid answer from `address` among the bytes, nil when there is none.
    let answer: @Sendable ([UInt8], Int) -> String?

    /// Onbon BX controllers: ping (A2 00) to each address; the controller's reply from that address.
    public static let onbon = PromptedFamily(name: "onbon", addressed: true, prompting: "a ping") { address in
        (try? OnbonPacket.request(OnbonRequest(.ping), to: UInt16(address)).encode()) ?? []
    } answer: { bytes, address in
        var decoder = OnbonDecoder()
        let replies = decoder.decode(bytes).filter {
            $0.destination == OnbonPacket.hostAddress && $0.source == UInt16(address)
        }
        guard let reply = replies.first else { return nil }
        return switch OnbonReply(data: reply.data) {
        case .acknowledged: "Onbon controller, ping acknowledged"
        case .rejected(let code): "Onbon controller, ping refused with error \(code.rawValue)"
        default: "Onbon controller answered"
        }
    }

    /// An ESC/POS printer: DLE EOT 1 (printer status); one status byte of the pattern 0xx1xx10.
    public static let escPos = PromptedFamily(name: "escpos", addressed: false, prompting: "a status request") { _ in
        EscPos.statusRequest(.printer)
    } answer: { bytes, _ in
        var decoder = PrinterStatusDecoder()
        for case .realTime(let byte) in decoder.decode(bytes) {
            guard let condition = PrinterCondition(realTimeReply: byte, to: .printer) else { continue }
            return String(
                format: "ESC/POS printer, status 0x%02X: %@", byte,
                condition.contains(.offline) ? "offline" : "online")
        }
        return nil
    }

    /// The families by name.
    public static let all = [onbon, escPos]

    /// Prompts `address` on `line` and waits up to `timeout` for its answer.
    func ask(
        _ address: Int, on line: SerialLine, timeout: Duration
    ) throws(ModbusDirectError)
        -> (answer: String?, received: [UInt8], latency: Duration)
    {
        line.discardInput()
        do { try line.write(prompt(address)) } catch { throw ModbusDirectError(.unreachable, error.message) }
        let start = ContinuousClock.now
        let deadline = start + timeout
        var received: [UInt8] = []
        while ContinuousClock.now < deadline {
            let bytes: [UInt8]
            do { bytes = try line.read(timeout: deadline - ContinuousClock.now) } catch {
                throw ModbusDirectError(.unreachable, error.message)
            }
            received += bytes
            if !bytes.isEmpty, let answer = answer(received, address) {
                return (answer, received, ContinuousClock.now - start)
            }
        }
        return (nil, received, timeout)
    }

    /// Prompts every address (one, for a family without addresses) at `settings`.
    public func scan(
        _ addresses: ClosedRange<Int>, settings: SerialSettings, timeout: Duration,
        progress: (Int, ScanFinding?) -> Void
    ) throws(ModbusDirectError) -> [ScanFinding] {
        let line = try ModbusDirectClient.openSerial(settings)
        defer { line.close() }
        var found: [ScanFinding] = []
        // The line falls silent between prompts, as between a master's frames: 3.5 characters at the scanned speed.
        let silence = LineTiming.serial(settings, silenceBetweenFrames: true).frameGap
        for address in addressed ? addresses : addresses.lowerBound...addresses.lowerBound {
            let reply = try ask(address, on: line, timeout: timeout)
            var finding: ScanFinding?
            if let answer = reply.answer {
                finding = ScanFinding(
                    address: address, latencyMs: ModbusScanner.milliseconds(reply.latency),
                    answer: answer, profile: nil, alsoMatches: [], identification: nil)
            } else if !reply.received.isEmpty {
                finding = ScanFinding(
                    address: address, latencyMs: 0,
                    answer: "garbled: \(reply.received.count) bytes, no valid answer",
                    profile: nil, alsoMatches: [], identification: nil)
            }
            if let finding { found.append(finding) }
            progress(address, finding)
            Thread.sleep(forTimeInterval: silence.timeInterval)
        }
        return found
    }

    /// Prompts `address` at each baud and parity until it answers (all of them with `exhaustive`).
    public func sweep(
        port settings: SerialSettings, address: Int, bauds: [Int] = ModbusScanner.sweepBauds,
        parities: [SerialSettings.Parity] = [.none, .even, .odd], timeout: Duration,
        exhaustive: Bool = false, progress: (SweepStep) -> Void
    ) throws(ModbusDirectError) -> [SweepStep] {
        var steps: [SweepStep] = []
        for baud in bauds {
            for parity in parities {
                var trial = settings
                trial.baud = baud
                trial.parity = parity
                var step = SweepStep(setting: trial.lineName, baud: baud, parity: parity.rawValue, result: "silent")
                let line: SerialLine
                do { line = try ModbusDirectClient.openSerial(trial) } catch {
                    guard !steps.isEmpty else { throw error }
                    step.result = "refused"
                    step.detail = error.message
                    steps.append(step)
                    progress(step)
                    continue
                }
                let reply = try ask(address, on: line, timeout: timeout)
                line.close()
                if let answer = reply.answer {
                    step.result = "answered"
                    step.detail = answer
                } else if !reply.received.isEmpty {
                    step.result = "garbled"
                    step.detail = "\(reply.received.count) bytes, no valid answer"
                }
                steps.append(step)
                progress(step)
                if step.result == "answered", !exhaustive { return steps }
            }
        }
        return steps
    }
}
