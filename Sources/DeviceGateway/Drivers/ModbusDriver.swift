public import Foundation
public import Protocols

/// How Modbus requests go on the wire and replies come off it.
public enum ModbusFraming: Sendable, Equatable {
    /// Address, PDU, CRC-16 on a serial line.
    case rtu
    /// MBAP header (transaction id, unit id), PDU on a TCP connection.
    case tcp
}

/// A Modbus reply as a bus reads it, from either framing.
public struct ModbusReply: Sendable, Equatable {
    /// The RTU address or TCP unit id.
    public var unit: UInt8
    /// The MBAP transaction id (TCP only).
    public var transactionId: UInt16?
    /// The response.
    public var message: ModbusMessage
}

/// The client-side decoder of either framing.
public struct ModbusReplyDecoder: FrameDecoder {
    // One of the two is set. Optionals, not an enum with the decoders as payloads: a payload taken out to decode
    // shares its buffer with the enum, so every read copied the buffer before appending to it.
    private var rtu: ModbusRTUDecoder?
    private var tcp: ModbusTCPDecoder?
    /// The replies of the last decode, kept so that the next one refills their storage (as `ModbusTCPDecoder` does).
    private var replies: [ModbusReply] = []

    /// A decoder for replies in `framing`.
    public init(framing: ModbusFraming) {
        switch framing {
        case .rtu: rtu = ModbusRTUDecoder(role: .client)
        case .tcp: tcp = ModbusTCPDecoder(role: .client)
        }
    }

    public mutating func decode(_ bytes: some Sequence<UInt8>) -> [ModbusReply] {
        replies.removeAll(keepingCapacity: true)
        if let frames = tcp?.decode(bytes) {
            for frame in frames {
                replies.append(ModbusReply(unit: frame.unitId, transactionId: frame.transactionId, message: frame.message))
            }
        } else if let frames = rtu?.decode(bytes) {
            for frame in frames { replies.append(ModbusReply(unit: frame.address, message: frame.message)) }
        }
        return replies
    }

    public mutating func flush() -> [ModbusReply] {
        if let frames = tcp?.flush() {
            return frames.map { ModbusReply(unit: $0.unitId, transactionId: $0.transactionId, message: $0.message) }
        }
        return rtu?.flush().map { ModbusReply(unit: $0.address, message: $0.message) } ?? []
    }

    public var discardedByteCount: Int { tcp?.discardedByteCount ?? rtu?.discardedByteCount ?? 0 }

    public var bufferedByteCount: Int { tcp?.bufferedByteCount ?? rtu?.bufferedByteCount ?? 0 }

    public var maximumBufferedBytes: Int { tcp?.maximumBufferedBytes ?? rtu?.maximumBufferedBytes ?? 0 }

    public var checksumFailureCount: Int { rtu?.checksumFailureCount ?? 0 }
}

/// Modbus evaluator pads and window boards on one RTU line or TCP endpoint.
///
/// A poll reads the device's register block; a pad's new ratings are acknowledged (its acknowledge register
/// written) only after they are committed; a board's command is its writes (text and mode, or brightness or power),
/// its counter write, and a read of its block for the acknowledgement.
public struct ModbusDriver: BusDriver {
    public let devices: [DeviceConfig]
    private let framing: ModbusFraming
    private let timing: (pollInterval: Duration, responseTimeout: Duration)
    /// The pads, each at the place its poll names (`polls`): an array's element is read and changed where it is (a
    /// dictionary's value is copied out, once a poll).
    private var pads: [Pad] = []
    private var boards: [String: ModbusBoardDriver] = [:]
    /// Each device's poll, framed once and kept as the requests handed to the bus (on TCP stamped with the next
    /// transaction id at each poll, in place unless the last one is still held: by the bus, or by `lastSent` when the
    /// same device is polled twice in a row): a poll is the one request sent tens of thousands of times a second on a
    /// busy connection.
    private var polls: [Poll] = []
    /// Each device's place in `polls`. Looked up, then changed in the array: a dictionary's value changed in place
    /// goes through accessors that allocated at every poll.
    private var pollSlots: [String: Int] = [:]
    /// The device polled last and its pad's place in `pads`: the answer that follows finds it without a hash.
    private var lastPolled: (id: String, pad: Int?)?
    private var transactionId: UInt16 = 0
    /// The last request made, as sent: its reply (usually the next frame) needs no parsing of it back.
    private var lastSent: (bytes: [UInt8], parsed: SentRequest)?
    /// How each device's profile recognises its model, where its poll reads the registers that tell.
    private let identities: [String: IdentifyRule]
    /// Devices whose last polls showed another model at their address (a wrong address in the configuration), and
    /// how many in a row: nothing is written to them, and what they hold is not read as ratings or a board's state,
    /// until a poll shows the model. Reported at the second in a row: one odd read (a pad powering up) is no other model.
    private var mismatches: [String: Int] = [:]
    static let mismatchesBeforeReported = 2
    /// The staff ids set on pads through the gateway and taken, by device: written back to a pad that powers up
    /// without it.
    private var staffSet: [String: String] = [:]
    /// Writes of it tried on a pad that powered up without it before giving up (a pad that does not take it).
    static let staffWriteBacks = 3
    /// Board commands whose writes are going out: their counter write's answer makes them pending.
    private var writing: [String: (command: ModbusBoardDriver.PreparedCommand, counter: ModbusBoardDriver.RegisterWrite)] = [:]

    private struct Poll {
        /// The poll, as the one request `pollRequests` returns.
        var requests: [LineRequest]
        var request: ModbusRequest
        /// The unit, as the reply names it.
        var unit: UInt8
        /// The pad's place in `pads`; nil for a board.
        var pad: Int?
    }

    private struct Pad {
        var driver: ModbusEvaluatorDriver
        /// How far the pad's ratings were read (committed, or held by the bus until a commit succeeds).
        var cursor: DeviceCursor?
        /// The cursor last handed to the bus, so an unchanged one is not committed again.
        var reportedCursor: DeviceCursor?
        /// When it was last read in this run.
        var lastReadAt: Date?
        /// How its profile tells its model, when its poll reads the registers that do.
        var identify: IdentifyRule?
        /// Whether its staff field's refusal was reported: once, until it holds a staff number again.
        var staffRefusalSaid = false
        /// Writes of the staff id set through the gateway made since the pad powered up without it (0: none owed).
        var staffWritesOwed = 0
        /// A write-back owed by the run before (its cursor said so), until the pad's first read in this run.
        var staffOwedFromBefore = false
    }

    /// The family's members, checked.
    public enum Member: Sendable {
        case pad(ModbusEvaluatorProfile)
        case board(ModbusBoardProfile)
    }

    /// Creates the driver for the members of one Modbus bus.
    public init(members: [(device: DeviceConfig, member: Member)], framing: ModbusFraming, hallId: String,
                pollInterval: Duration, responseTimeout: Duration, identities: [String: IdentifyRule] = [:]) {
        devices = members.map(\.device)
        // Only where the poll's block holds the model's registers: nothing extra is asked of a device.
        self.identities = identities.filter { id, rule in
            guard let member = members.first(where: { $0.device.id == id })?.member else { return false }
            let block = switch member {
            case .pad(let profile): profile.block
            case .board(let profile): profile.block
            }
            return rule.function == .readHolding && rule.register >= block.start
                && rule.register + rule.count <= block.start + block.count
        }
        self.framing = framing
        timing = (pollInterval, responseTimeout)
        for (device, member) in members {
            switch member {
            case .pad(let profile):
                pollSlots[device.id] = polls.count
                polls.append(Self.poll(of: profile.block, to: device, pad: pads.count, framing: framing))
                pads.append(Pad(driver: ModbusEvaluatorDriver(device: device, profile: profile, hallId: hallId),
                                identify: self.identities[device.id]))
            case .board(let profile):
                boards[device.id] = ModbusBoardDriver(device: device, profile: profile, hallId: hallId)
                pollSlots[device.id] = polls.count
                polls.append(Self.poll(of: profile.block, to: device, pad: nil, framing: framing))
            }
        }
    }

    /// What a poll's request is for; a board command's read-back carries the command's name.
    static let pollPurpose = "poll"

    public func makeDecoder() -> ModbusReplyDecoder { ModbusReplyDecoder(framing: framing) }

    public mutating func restore(_ cursors: [DeviceCursor]) {
        for cursor in cursors {
            guard let slot = pad(of: cursor.device) else { continue }
            pads[slot].cursor = cursor
            pads[slot].reportedCursor = cursor
            pads[slot].staffOwedFromBefore = cursor.staffOwed
        }
    }

    public mutating func restore(staff kept: [String: String]) {
        for (device, staff) in kept where pad(of: device) != nil { staffSet[device] = staff }
    }

    public mutating func pollRequests(for device: DeviceConfig) -> [LineRequest] {
        guard let slot = pollSlots[device.id] else { return [] }
        let stamped = Self.stamp(&transactionId, into: &polls[slot].requests[0].bytes, framing: framing)
        let poll = polls[slot]
        lastPolled = (device.id, poll.pad)
        lastSent = (poll.requests[0].bytes, (poll.unit, stamped, poll.request))
        return poll.requests
    }

    /// The place in `pads` of the device's pad; nil for a board or an unknown device.
    private func pad(of device: String) -> Int? {
        pollSlots[device].flatMap { polls[$0].pad }
    }

    /// A read of a device's register block, framed.
    private static func poll(of block: RegisterRange, to device: DeviceConfig, pad: Int?, framing: ModbusFraming)
        -> Poll
    {
        let request = ModbusRequest.readHoldingRegisters(start: UInt16(block.start), count: UInt16(block.count))
        let unit = UInt8(truncatingIfNeeded: device.address)
        let frame = frame(request, unit: unit, framing: framing)
        return Poll(requests: [LineRequest(device: device.id, bytes: frame, expectsAnswer: true, purpose: pollPurpose)],
                    request: request, unit: unit, pad: pad)
    }

    public func answers(_ reply: ModbusReply, _ request: LineRequest) -> Bool {
        // The MBAP header: transaction id in bytes 0–1, unit id in byte 6. RTU has no transaction id to tell by.
        guard let id = reply.transactionId, request.bytes.count > ModbusTCPFrame.headerLength else { return false }
        return UInt16(request.bytes[0]) << 8 | UInt16(request.bytes[1]) == id && request.bytes[6] == reply.unit
    }

    public func screenOn(of device: String) -> Bool? { boards[device]?.screenOn }

    /// What to do when a board refuses a poll that reads its brightness and power registers as an illegal address:
    /// firmware without them (the shipped profile reads 0-7 since the screen is read).
    private func screenRegistersHint(_ device: String, _ code: ModbusExceptionCode) -> String {
        guard code.rawValue == 2, let profile = boards[device]?.profile else { return "" }
        let read = [profile.brightnessRegister, profile.powerRegister].compactMap { $0 }
            .filter { (profile.block.start..<profile.block.end).contains($0) }
        guard !read.isEmpty else { return "" }
        return "; a board without registers \(read.map(String.init).joined(separator: " and ")) needs a profile "
            + "without brightness and power, its block ending before them"
    }

    public func needsPollBeforeCommand(_ device: DeviceConfig) -> Bool {
        // A poll that showed another model is the answer: `requests(for:to:)` says so, not "no answer".
        if !mismatches.isEmpty, mismatches[device.id] != nil { return false }
        return boards[device.id].map { $0.lastCounter == nil } ?? false
    }

    public mutating func requests(for command: HallCommand, to device: DeviceConfig) throws(GatewayError) -> [LineRequest] {
        if !mismatches.isEmpty, mismatches[device.id] != nil {
            throw GatewayError(.commandRejected, "\(device.id): another model answers at address \(device.address); nothing is written to it")
        }
        if let pad = pad(of: device.id).map({ pads[$0] }) {
            // A staff id into the pad's registers, a rating request remembered for its next rating; the rest refused.
            return try pad.driver.prepare(command).map { write in
                request(.writeMultipleRegisters(start: UInt16(write.start), values: write.values), to: device,
                        purpose: command.name)
            }
        }
        guard var board = boards[device.id] else {
            throw GatewayError(.commandRejected, "\(device.id) is an evaluator pad: it takes no \(command.name) command")
        }
        let prepared = try board.prepare(command)
        // The counter must differ from what the board already acknowledged: the bus polled it first.
        let counter = board.counterWrite()
        boards[device.id] = board
        writing[device.id] = (prepared, counter)
        let writes = (prepared.writes + [counter]).map { write in
            request(.writeMultipleRegisters(start: UInt16(write.start), values: write.values), to: device, purpose: command.name)
        }
        // Read back at once: a board that copied the counter says so now, not at its next poll.
        let block = board.profile.block
        return writes + [request(.readHoldingRegisters(start: UInt16(block.start), count: UInt16(block.count)), to: device,
                                 purpose: command.name)]
    }

    public mutating func handle(_ reply: ModbusReply, inFlight request: LineRequest?, at time: Date) -> LineReaction {
        // Only the answer to the request in flight counts: a late answer to an earlier one is not this one's.
        guard let request, let sent = sentRequest(request.bytes), sent.unit == reply.unit,
              sent.transactionId == reply.transactionId, case .response(let response) = reply.message
        else { return LineReaction() }
        // On RTU nothing else tells a late answer to another request (a poll's registers while a board's write
        // waits) from this one's: an answer of another function is not this request's, refusal or not.
        guard response.functionCode == sent.request.functionCode else { return LineReaction() }
        let device = request.device
        if case .exception(let function, let code) = response {
            // A TCP-to-RTU gateway's own answer for the device behind it: no path (10), no response (11). The device
            // is silent, not refusing (from a trial: such a pad stayed online for ever and passed the check).
            if [10, 11].contains(code.rawValue) {
                return LineReaction(answersRequest: true, unanswered:
                    "the Modbus gateway answered for it, exception \(code.rawValue) (\(Self.describe(code)))")
            }
            let refusal = "Modbus exception \(code.rawValue) (\(Self.describe(code))) to function \(function.rawValue)"
            // A poll refused as illegal (function, address, value) is refused every time: the device gives nothing
            // to read, so it is not in service (the check before opening must not pass it). Busy is a moment.
            if request.purpose == Self.pollPurpose, [1, 2, 3].contains(code.rawValue) {
                return LineReaction(from: device, answersRequest: true, ready: false,
                                    notReadyBecause: "refuses its poll: \(refusal)" + screenRegistersHint(device, code),
                                    refusal: refusal)
            }
            return LineReaction(from: device, answersRequest: true, refusal: refusal)
        }
        switch (sent.request, response) {
        case (.readHoldingRegisters(let start, _), .readHoldingRegisters(let values)):
            let pad = if let lastPolled, lastPolled.id == device { lastPolled.pad } else { self.pad(of: device) }
            // A pad's rule is kept with it: no lookup by name at each of its answers (a board's poll has one anyway).
            if let rule = pad.map({ pads[$0].identify }) ?? (identities.isEmpty ? nil : identities[device]) {
                if let mismatch = rule.mismatch(inHoldingRegisters: values, from: Int(start)) {
                    let seen = (mismatches[device] ?? 0) + 1
                    mismatches[device] = seen
                    // Answered, and nothing else: neither read nor a word on the device's state yet.
                    guard seen >= Self.mismatchesBeforeReported else { return LineReaction(answersRequest: true) }
                    let address = self.devices.first { $0.id == device }?.address ?? 0
                    return LineReaction(from: device, answersRequest: true, ready: false, notReadyBecause:
                        "another model answers at address \(address): \(mismatch) (a wrong address in the configuration?); "
                        + "nothing is read from it or written to it")
                }
                if !mismatches.isEmpty { mismatches[device] = nil }
            }
            if let pad { return padRead(pad, registers: values, at: time) }
            guard var board = boards[device] else { return LineReaction() }
            let reading = board.interpret(registers: values, at: time, countsAsPoll: request.purpose == Self.pollPurpose)
            boards[device] = board
            return LineReaction(events: reading.events, from: device, answersRequest: true, ready: reading.ready,
                                verdicts: reading.verdicts)
        case (.writeMultipleRegisters(let start, let values), .writeMultipleRegisters):
            // A pad took a staff id set through the gateway: the one to give it back after a power-up. Not one written
            // back: an older one's write may come after a newer command's (from a second read).
            if let pad = pad(of: device) {
                if Int(start) == pads[pad].driver.profile.staffId.start, request.purpose == HallCommand.setStaff("").name {
                    let staff = String(decoding: RegisterText.bytes(from: values), as: UTF8.self)
                    staffSet[device] = staff.isEmpty ? nil : staff
                }
                return LineReaction(from: device, answersRequest: true)
            }
            guard let command = writing[device], Int(start) == command.counter.start else {
                return LineReaction(from: device, answersRequest: true)
            }
            boards[device]?.written(command.command, counter: command.counter)
            writing[device] = nil
            // Done once the board copied the counter: the read-back that follows, or one of its next polls, says so.
            return LineReaction(from: device, answersRequest: true, holdsCommand: CommandHold(
                key: Int(command.counter.values.first ?? 0), verdictWithinPolls: ModbusBoardDriver.pollsBeforeUnacknowledged))
        case (.writeSingleRegister, .writeSingleRegister):
            return LineReaction(from: device, answersRequest: true)
        default:
            return LineReaction(from: device, answersRequest: true)
        }
    }

    /// A pad's registers read; its state is changed where it is kept (a copy of a pad, once a poll, cost more than
    /// the rest of the reading).
    private mutating func padRead(_ slot: Int, registers: [UInt16], at time: Date) -> LineReaction {
        let id = pads[slot].driver.device.id
        var reading = pads[slot].driver.interpret(registers: registers, cursor: pads[slot].cursor, at: time)
        let staffWrittenBack = writeBackStaff(slot, registers: registers, reading: &reading, at: time)
        // Read before in this run, the register is this run's own writing, or stale (a write lost): a loss is a loss.
        if pads[slot].lastReadAt != nil, let taken = reading.acknowledgedElsewhere {
            reading.lost += Int64(taken.count)
            reading.acknowledgedElsewhere = nil
        }
        if reading.staffIdRefused != nil {
            // Each rating without its staff id is one; the fault is the field's, said once (from a review: 100
            // ratings a day made 100 faults).
            if pads[slot].staffRefusalSaid { reading.staffIdRefused = nil } else { pads[slot].staffRefusalSaid = true }
        } else if !reading.events.isEmpty {
            pads[slot].staffRefusalSaid = false
        }
        let faults = reading.hasFaults
            ? faults(in: reading, driver: pads[slot].driver, lastReadAt: pads[slot].lastReadAt, at: time)
            : []
        // What was read is held (committed now, or by the bus until a commit succeeds): the next read counts as
        // lost only what the pad overwrote before anyone read it.
        pads[slot].cursor = reading.cursor
        pads[slot].lastReadAt = time
        var cursors: [DeviceCursor] = []
        if pads[slot].reportedCursor != reading.cursor {
            cursors = [reading.cursor]
            pads[slot].reportedCursor = reading.cursor
        }
        var acknowledgements: [LineRequest] = []
        let acknowledge = UInt16(truncatingIfNeeded: reading.cursor.consumed)
        if reading.acknowledged != acknowledge {
            let pad = pads[slot].driver
            acknowledgements.append(request(
                .writeSingleRegister(address: UInt16(pad.profile.acknowledgeRegister), value: acknowledge),
                to: pad.device, purpose: "acknowledge"))
        }
        var events = faults.isEmpty ? reading.events : reading.events + faults
        if let staffWrittenBack {
            events += staffWrittenBack.events
            acknowledgements += staffWrittenBack.writes
        }
        return LineReaction(events: events, cursors: cursors, afterCommit: acknowledgements, from: id,
                            answersRequest: true, ready: reading.ready)
    }

    /// A pad that powered up again (a new boot id, or a restart under the same) without the staff id set on it through
    /// the gateway (from an installer's trial: its ratings went on under the staff id it boots with, and nothing said
    /// so): a fault event says so once, and until the pad shows it again its ratings carry it and it is written back
    /// after each commit (a write lost, or overtaken by an older one, is made again), `staffWriteBacks` times at most.
    /// Not the pad's own field in the events: a number typed into it may be a citizen's.
    private mutating func writeBackStaff(_ slot: Int, registers: [UInt16], reading: inout ModbusEvaluatorDriver.Reading,
                                         at time: Date) -> (events: [CloudEvent], writes: [LineRequest])? {
        // A power-up, or a write owed (in this run, or by the run before: the cursor says so): two integers, a count
        // and a flag compared at each poll.
        let poweredUp = pads[slot].cursor.map {
            $0.bootId != reading.cursor.bootId || $0.restarts != reading.cursor.restarts
        } ?? false
        guard poweredUp || pads[slot].staffWritesOwed > 0 || pads[slot].staffOwedFromBefore else { return nil }
        pads[slot].staffOwedFromBefore = false
        let driver = pads[slot].driver
        let power = ModbusEvaluatorDriver.powerUp(bootId: reading.cursor.bootId, restarts: reading.cursor.restarts)
        func fault(_ name: String, _ detail: String) -> CloudEvent {
            CloudEvent(id: "\(name)-\(power)", source: driver.source, type: HallEventType.deviceFault, time: time,
                       subject: driver.device.window.map(EventSource.windowSubject),
                       data: .deviceFault(DeviceFault(fault: name, detail: detail)))
        }
        guard let staff = staffSet[driver.device.id], driver.staffField(in: registers) != staff else {
            pads[slot].staffWritesOwed = 0
            return nil
        }
        var events: [CloudEvent] = []
        if poweredUp {
            pads[slot].staffWritesOwed = 0
            events.append(fault("staff-id-restored", "the pad powered up again (\(power)) without the staff id set through "
                                + "the gateway: \(staff) is written back to it, and its ratings carry it until it shows it"))
        }
        guard pads[slot].staffWritesOwed < Self.staffWriteBacks, let writes = try? driver.prepare(.setStaff(staff)) else {
            pads[slot].staffWritesOwed = 0
            return (events + [fault("staff-id-not-restored", "the pad took none of \(Self.staffWriteBacks) writes of "
                                    + "\(staff), the staff id set through the gateway: its ratings carry what it shows")], [])
        }
        pads[slot].staffWritesOwed += 1
        reading.cursor.staffOwed = true
        for index in reading.events.indices {
            if case .rating(var rating) = reading.events[index].data {
                rating.staffId = staff
                reading.events[index].data = .rating(rating)
            }
        }
        reading.staffIdRefused = nil
        return (events, writes.map { write in
            request(.writeMultipleRegisters(start: UInt16(write.start), values: write.values), to: driver.device,
                    purpose: "staff write-back")
        })
    }

    /// Lost and unmapped ratings, a restarted counter and a staff id refused become fault events for the duty officer.
    private func faults(in reading: ModbusEvaluatorDriver.Reading, driver: ModbusEvaluatorDriver, lastReadAt: Date?,
                        at time: Date) -> [CloudEvent] {
        var faults: [(id: String, fault: DeviceFault)] = []
        if reading.lost > 0 {
            let ring = driver.profile.keyRing.count
            let cause: String
            if let lastReadAt {
                let milliseconds = Int((time.timeIntervalSince(lastReadAt) * 1000).rounded())
                let usual = Double((timing.pollInterval * 3 + timing.responseTimeout * 3) / .milliseconds(1))
                cause = Double(milliseconds) > usual
                    ? "the pad could not be read for \(milliseconds / 1000) s and more came in meanwhile than it keeps (\(ring))"
                    : "more came in between two polls (\(milliseconds) ms apart) than the pad keeps (\(ring))"
            } else if reading.firstRead {
                // From an operator's trial: a pad newly configured was said to have lost them to a stop or restart.
                cause = "more came in than the pad keeps (\(ring)) before this gateway first read it (since its "
                    + "acknowledge register: another gateway's, or none)"
            } else {
                cause = "more came in than the pad keeps (\(ring)) while the gateway was not reading it (stopped or restarting)"
            }
            let last = reading.cursor.consumed - Int64(reading.events.count + reading.unknownKeys.count)
            let first = last - reading.lost + 1
            // The same loss read again after a crash has the same numbers, so the same id.
            let power = ModbusEvaluatorDriver.powerUp(bootId: reading.cursor.bootId, restarts: reading.cursor.restarts)
            faults.append(("ratings-lost-\(power)-\(first)-\(last)", DeviceFault(
                fault: "ratings-lost", detail: "\(reading.lost) ratings lost (numbers \(first)–\(last)): \(cause)",
                count: reading.lost)))
        }
        if let previous = reading.restartedFrom {
            // Once per restart: its id names the boot id and the restart.
            faults.append(("counter-restart-\(String(reading.cursor.bootId, radix: 16))-\(reading.cursor.restarts)", DeviceFault(
                fault: "counter-restarted",
                detail: "the pad's rating counter went back from \(previous % 65536) to \(reading.cursor.consumed) under the "
                    + "same boot id \(String(reading.cursor.bootId, radix: 16)): it restarted; its new ratings are taken "
                    + "from its acknowledge register")))
        }
        if let taken = reading.acknowledgedElsewhere {
            let power = ModbusEvaluatorDriver.powerUp(bootId: reading.cursor.bootId, restarts: reading.cursor.restarts)
            faults.append(("acknowledged-elsewhere-\(power)-\(taken.lowerBound)-\(taken.upperBound)", DeviceFault(
                fault: "acknowledged-elsewhere",
                detail: "\(taken.count) ratings (numbers \(taken.lowerBound)–\(taken.upperBound)) were acknowledged to the "
                    + "pad by a state of the gateway its outbox does not hold (a restored backup) or by another gateway "
                    + "polling it: taken there, not read again here",
                count: Int64(taken.count))))
        }
        if let refused = reading.staffIdRefused {
            // Once per read of new ratings: the same read again after a crash has the same id.
            let power = ModbusEvaluatorDriver.powerUp(bootId: reading.cursor.bootId, restarts: reading.cursor.restarts)
            faults.append(("staff-id-refused-\(power)-\(reading.cursor.consumed)", DeviceFault(
                fault: "staff-id-refused",
                detail: "the pad's staff id registers hold no staff number (\(refused)); its new ratings carry no staff id")))
        }
        for code in reading.unknownKeys {
            faults.append((UUID().uuidString.lowercased(), DeviceFault(
                fault: "unknown-key", detail: "key code \(code) is not in profile \(driver.profile.model); rating skipped")))
        }
        return faults.map { id, fault in
            CloudEvent(id: id, source: driver.source, type: HallEventType.deviceFault, time: time,
                       subject: driver.device.window.map(EventSource.windowSubject), data: .deviceFault(fault))
        }
    }

    /// The request framed; on TCP it gets the next transaction id.
    private mutating func request(_ pdu: ModbusRequest, to device: DeviceConfig, purpose: String) -> LineRequest {
        var bytes = Self.frame(pdu, unit: UInt8(truncatingIfNeeded: device.address), framing: framing)
        let stamped = Self.stamp(&transactionId, into: &bytes, framing: framing)
        lastSent = (bytes, (UInt8(truncatingIfNeeded: device.address), stamped, pdu))
        let answeredWithItself = switch pdu {
        case .writeSingleRegister, .writeSingleCoil: true
        default: false
        }
        return LineRequest(device: device.id, bytes: bytes, expectsAnswer: true, purpose: purpose,
                           answerMayEqualIt: answeredWithItself)
    }

    /// Puts the next transaction id into a TCP frame's MBAP header and returns it; nil on RTU, or for a frame that
    /// could not be encoded. Static, so that a poll kept in `polls` is stamped where it is.
    private static func stamp(_ transactionId: inout UInt16, into bytes: inout [UInt8], framing: ModbusFraming)
        -> UInt16?
    {
        guard framing == .tcp, bytes.count > ModbusTCPFrame.headerLength else { return nil }
        transactionId &+= 1
        bytes[0] = UInt8(transactionId >> 8)
        bytes[1] = UInt8(truncatingIfNeeded: transactionId)
        return transactionId
    }

    /// A request in its framing, to `unit`; on TCP with transaction id 0, for the caller to set.
    private static func frame(_ pdu: ModbusRequest, unit: UInt8, framing: ModbusFraming) -> [UInt8] {
        switch framing {
        case .rtu: (try? ModbusRTUFrame(address: unit, request: pdu).encode()) ?? []
        case .tcp: (try? ModbusTCPFrame(transactionId: 0, unitId: unit, request: pdu).encode()) ?? []
        }
    }

    typealias SentRequest = (unit: UInt8, transactionId: UInt16?, request: ModbusRequest)

    private mutating func sentRequest(_ bytes: [UInt8]) -> SentRequest? {
        // Arrays that share their storage compare at once.
        if let lastSent, lastSent.bytes == bytes { return lastSent.parsed }
        guard let parsed = Self.parse(bytes, framing: framing) else { return nil }
        lastSent = (bytes, parsed)
        return parsed
    }

    /// The request a frame we sent carries; the driver reads its own frames back rather than keep a second record.
    static func parse(_ bytes: [UInt8], framing: ModbusFraming) -> SentRequest? {
        switch framing {
        case .rtu:
            guard bytes.count >= 4, let request = ModbusRequest(pdu: bytes[1..<(bytes.count - 2)]) else { return nil }
            return (bytes[0], nil, request)
        case .tcp:
            guard bytes.count > ModbusTCPFrame.headerLength,
                  let request = ModbusRequest(pdu: bytes[ModbusTCPFrame.headerLength...])
            else { return nil }
            return (bytes[6], UInt16(bytes[0]) << 8 | UInt16(bytes[1]), request)
        }
    }

    static func describe(_ code: ModbusExceptionCode) -> String {
        switch code {
        case .illegalFunction: "illegal function"
        case .illegalDataAddress: "illegal data address: the profile's registers are not this device's"
        case .illegalDataValue: "illegal data value"
        case .serverDeviceFailure: "device failure"
        case .acknowledge: "acknowledge, busy with a long operation"
        case .serverDeviceBusy: "device busy"
        case .gatewayPathUnavailable: "gateway path unavailable"
        case .gatewayTargetDeviceFailedToRespond: "the device behind the gateway did not respond"
        default: "code \(code.rawValue)"
        }
    }
}
