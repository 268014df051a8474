public import Foundation
import Protocols

/// Turns the registers of a Modbus evaluator pad into rating events.
///
/// Pure: the bus reads the registers and commits what comes out. Event ids are the pad's boot id and
/// its rating counter, so reading the same rating again (after a crash, before the acknowledgement
/// reached the pad) gives the same id and the outbox keeps it once.
public struct ModbusEvaluatorDriver: Sendable {
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
    }

    public let device: DeviceConfig
    public let profile: ModbusEvaluatorProfile
    public let source: String

    /// Creates the driver of one pad.
    public init(device: DeviceConfig, profile: ModbusEvaluatorProfile, hallId: String) {
        self.device = device
        self.profile = profile
        self.source = EventSource.device(hall: hallId, device: device.id)
    }

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
        let consumed: Int64
        let current: Int64
        if let cursor, cursor.bootId == bootId {
            consumed = cursor.consumed
            current = consumed + Int64(wireCounter &- UInt16(truncatingIfNeeded: consumed))
        } else {
            current = Int64(wireCounter)
            consumed = min(Int64(acknowledged), current)
        }
        let ringSize = Int64(profile.keyRing.count)
        let first = max(consumed + 1, current - ringSize + 1)
        let lost = max(0, first - consumed - 1)

        let staffBytes = RegisterText.bytes(from: (0..<profile.staffId.count).map { register(profile.staffId.start + $0) })
        let staffId = staffBytes.isEmpty ? nil : String(decoding: staffBytes, as: UTF8.self)
        var events: [CloudEvent] = []
        var unknownKeys: [Int] = []
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
                    deviceCounter: number)
                events.append(
                    CloudEvent(
                        id: "rating-\(String(bootId, radix: 16))-\(number)", source: source,
                        type: HallEventType.ratingSubmitted, time: time,
                        subject: device.window.map(EventSource.windowSubject), data: .rating(rating)))
            }
        }
        return Reading(
            events: events, cursor: DeviceCursor(device: device.id, bootId: bootId, consumed: current),
            ready: ready, lost: lost, unknownKeys: unknownKeys, acknowledged: acknowledged)
    }
}

/// How events name where they come from.
public enum EventSource {
    /// The `source` of a device's events: `/halls/<hall>/devices/<device>`.
    public static func device(hall: String, device: String) -> String { "/halls/\(hall)/devices/\(device)" }

    /// The `source` of the gateway's own events: `/halls/<hall>/gateway`.
    public static func gateway(hall: String) -> String { "/halls/\(hall)/gateway" }

    /// The `subject` naming a service window.
    public static func windowSubject(_ window: String) -> String { "window/\(window)" }
}
