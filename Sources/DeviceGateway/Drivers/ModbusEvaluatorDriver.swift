public import Foundation
import Protocols
import Synchronization

/// Turns the registers of a Modbus evaluator pad into rating events.
///
/// Pure: the bus reads the registers and commits what comes out. Event ids are the pad's boot id and
/// its rating counter, so reading the same rating again (after a crash, before the acknowledgement
/// reached the pad) gives the same id and the outbox keeps it once.
///
/// A class, not a struct: the bus reads a pad through it at every poll, and a copy of its configuration and profile
/// (a retain for each of their strings and arrays) cost more than the reading itself.
public final class ModbusEvaluatorDriver: Sendable {
    /// What one poll of the pad yields.
    public struct Reading: Sendable, Equatable {
        /// New ratings, oldest first.
        public var events: [CloudEvent]
        /// The cursor to commit with them.
        public var cursor: DeviceCursor
        /// Whether the pad reports itself ready.
        public var ready: Bool
        /// Ratings the pad no longer holds because more came in between two polls than its ring keeps.
        public var lost: Int64
        /// Keys the profile does not map (reported, not turned into ratings).
        public var unknownKeys: [Int]
        /// The acknowledgement value the pad holds now.
        public var acknowledged: UInt16
        /// Set when the pad's counter went backwards under the same boot id: it restarted, from this counter value.
        public var restartedFrom: Int64?
        /// Why the pad's staff id was left out of its new ratings (it is no staff number), without the value.
        public var staffIdRefused: String?
        /// Ratings the pad no longer holds that its acknowledge register says were acknowledged past the cursor: taken
        /// by a gateway state this outbox does not hold (a restored backup) or by another gateway; not counted in
        /// `lost`. Those it still holds are read again (their ids are the same: the stores keep them once).
        public var acknowledgedElsewhere: ClosedRange<Int64>?
        /// This gateway has no cursor of the pad: it reads it for the first time (newly configured).
        public var firstRead = false

        /// Whether anything in it is a fault to report: lost ratings, unknown keys, a restart, a staff id refused,
        /// ratings acknowledged elsewhere.
        var hasFaults: Bool {
            lost > 0 || !unknownKeys.isEmpty || restartedFrom != nil || staffIdRefused != nil || acknowledgedElsewhere != nil
        }
    }

    public let device: DeviceConfig
    public let profile: ModbusEvaluatorProfile
    public let source: String
    /// The ticket the pad was last asked to rate; its next rating takes it.
    private let ratingTicket = RatingTicket()

    /// The ticket a pad was asked to rate, until a rating takes it.
    final class RatingTicket: Sendable {
        private let ticket = Mutex<String?>(nil)

        func set(_ ticket: String) { self.ticket.withLock { $0 = ticket } }

        func take() -> String? { ticket.withLock { value in defer { value = nil }; return value } }

        var current: String? { ticket.withLock { $0 } }
    }

    /// Creates the driver of one pad.
    public init(device: DeviceConfig, profile: ModbusEvaluatorProfile, hallId: String) {
        self.device = device
        self.profile = profile
        self.source = EventSource.device(hall: hallId, device: device.id)
    }

    /// The register writes that carry out `command` on the pad: a staff id into the staff-id registers (ASCII,
    /// NUL-padded, high byte first); a rating request remembers the ticket for the pad's next rating (this register
    /// map has no prompt register, so nothing is written).
    public func prepare(_ command: HallCommand) throws(GatewayError) -> [ModbusBoardDriver.RegisterWrite] {
        switch command {
        case .setStaff(let staff):
            let field = RegisterField(address: UInt16(profile.staffId.start),
                                      type: .string(registerCount: profile.staffId.count, encoding: .ascii))
            do {
                let values = try field.encode(.text(staff))
                return [.init(start: profile.staffId.start, values: values)]
            } catch {
                throw GatewayError(.commandRejected, "\(device.id): a staff id of \(staff.count) characters does not fit "
                                   + "the pad's \(profile.staffId.count * 2)")
            }
        case .requestRating(let ticket):
            ratingTicket.set(ticket)
            return []
        default:
            throw GatewayError(.commandRejected, "\(device.id) is an evaluator pad: it takes no \(command.name) command")
        }
    }

    /// The ticket the next rating will carry, if the pad was asked for one.
    public var pendingTicket: String? { ratingTicket.current }

    /// Interprets one read of the profile's register block.
    public func interpret(registers: [UInt16], cursor: DeviceCursor?, at time: Date) -> Reading {
        func register(_ address: Int) -> UInt16 {
            let index = address - profile.block.start
            return registers.indices.contains(index) ? registers[index] : 0
        }
        let ready = register(profile.statusRegister) & (1 << profile.onlineBit) != 0
        let bootId = UInt32(register(profile.bootIdRegister)) << 16 | UInt32(register(profile.bootIdRegister + 1))
        let wireCounter = register(profile.counterRegister)
        let acknowledged = register(profile.acknowledgeRegister)

        // The same power-up continues from our own cursor (it counts across 16-bit wraps); a new
        // power-up, or a pad never seen, starts from what the pad says was acknowledged.
        var consumed: Int64
        var current: Int64
        var restarts = 0
        var restartedFrom: Int64?
        var acknowledgedAhead: UInt16 = 0
        if let cursor, cursor.bootId == bootId {
            consumed = cursor.consumed
            restarts = cursor.restarts
            let forward = wireCounter &- UInt16(truncatingIfNeeded: consumed)
            if forward < 0x8000 {
                current = consumed + Int64(forward)
                // Only after a commit is a rating acknowledged: one past the cursor was committed by a state of the
                // gateway this outbox does not hold, or by another gateway (from an operator's trial: a restored
                // backup reported them lost, though the central store had them). Not 0: a pad that never took an
                // acknowledgement holds it, and it would read as one ahead at a wrap.
                let ahead = acknowledged &- UInt16(truncatingIfNeeded: consumed)
                if acknowledged != 0, ahead <= forward { acknowledgedAhead = ahead }
            } else {
                // Backwards, not 32,768 ratings in one poll: the pad restarted with the same boot id. Its new
                // ratings start after its acknowledge register, and get ids of their own.
                restartedFrom = consumed
                restarts += 1
                current = Int64(wireCounter)
                // An acknowledgement above the new counter is the old power-up's, left in the register.
                consumed = acknowledged <= wireCounter ? Int64(acknowledged) : 0
            }
        } else if let cursor, acknowledged != 0, acknowledged == UInt16(truncatingIfNeeded: cursor.consumed) {
            // A new power-up whose acknowledge register still holds what we wrote before it: stale, not a wrap, and
            // whether or not the new counter has passed it by the first read (the gateway was down at the power-up).
            // Only this gateway writes that register, and never for a power-up before its cursor is committed.
            (consumed, current) = (0, Int64(wireCounter))
        } else {
            (consumed, current) = Self.firstMeeting(counter: wireCounter, acknowledged: acknowledged)
        }
        let firstRead = cursor == nil
        let ringSize = Int64(profile.keyRing.count)
        let first = max(consumed + 1, current - ringSize + 1)
        var lost = max(0, first - consumed - 1)
        // Only what the ring no longer holds: a stale register (a restart, an acknowledgement not written) must not
        // keep a rating still there from being read.
        var acknowledgedElsewhere: ClosedRange<Int64>?
        if lost > 0, acknowledgedAhead > 0 {
            let covered = min(Int64(acknowledgedAhead), lost)
            acknowledgedElsewhere = (consumed + 1)...(consumed + covered)
            lost -= covered
        }

        // Decoded only when a rating will carry it: most polls find none.
        var staffId = first > current ? nil : staffField(in: registers)
        // The queue system's rule for a staff id holds for the pad's too: a phone number or a name typed into the
        // pad's staff field would otherwise reach the events, the log and the central store.
        var staffIdRefused: String?
        if let text = staffId {
            do throws(CommandInvalid) {
                try CommandCenter.checkStaffId(text, field: "staff-id")
            } catch {
                staffId = nil
                staffIdRefused = error.message
            }
        }
        var events: [CloudEvent] = []
        var unknownKeys: [Int] = []
        // The first new rating is the one the pad was asked for.
        var ticket = first <= current ? ratingTicket.take() : nil
        if first <= current {
            for number in first...current {
                let slot = Int((number - 1) % ringSize)
                let code = Int(register(profile.keyRing.start + slot))
                guard let key = profile.scale.key(forCode: code) else {
                    unknownKeys.append(code)
                    continue
                }
                let rating = RatingSubmitted(
                    window: device.window ?? "", staffId: staffId, level: key.level.rawValue,
                    levelLabel: key.level.label, key: key.code, keyLabel: key.label, scale: profile.scale.name,
                    deviceCounter: number, ticket: ticket)
                ticket = nil
                let power = Self.powerUp(bootId: bootId, restarts: restarts)
                events.append(
                    CloudEvent(
                        id: "rating-\(power)-\(number)", source: source,
                        type: HallEventType.ratingSubmitted, time: time,
                        subject: device.window.map(EventSource.windowSubject), data: .rating(rating)))
            }
        }
        return Reading(
            events: events, cursor: DeviceCursor(device: device.id, bootId: bootId, consumed: current, restarts: restarts),
            ready: ready, lost: lost, unknownKeys: unknownKeys, acknowledged: acknowledged, restartedFrom: restartedFrom,
            staffIdRefused: staffIdRefused, acknowledgedElsewhere: acknowledgedElsewhere, firstRead: firstRead)
    }

    /// The text in the pad's staff id registers of `registers` (its block, as read), nil when empty. A field padded
    /// with spaces (right-aligned on the pad's display) holds the number between them.
    public func staffField(in registers: [UInt16]) -> String? {
        let values = (0..<profile.staffId.count).map { offset in
            let index = profile.staffId.start + offset - profile.block.start
            return registers.indices.contains(index) ? registers[index] : 0
        }
        let text = String(decoding: RegisterText.bytes(from: values), as: UTF8.self).trimmingCharacters(in: .whitespaces)
        return text.isEmpty ? nil : text
    }

    /// Names one power-up of a pad in event ids: its boot id, and the restart under that boot id if any.
    public static func powerUp(bootId: UInt32, restarts: Int) -> String {
        String(bootId, radix: 16) + (restarts == 0 ? "" : ".\(restarts)")
    }

    /// Where a pad met for the first time in this power-up stands: every rating after its acknowledgement,
    /// modulo 2^16, is unconsumed — also when the counter wrapped past 65535 since (acknowledged > counter).
    static func firstMeeting(counter: UInt16, acknowledged: UInt16) -> (consumed: Int64, current: Int64) {
        let consumed = Int64(acknowledged)
        return (consumed, consumed + Int64(counter &- acknowledged))
    }
}
