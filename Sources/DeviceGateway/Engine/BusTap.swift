public import Foundation
import Synchronization

/// What passed on a bus's link: one write or one read, as `gatewayd trace` shows it.
public struct TraceRecord: Sendable, Equatable {
    /// Which way the bytes went.
    public enum Direction: String, Sendable, Codable {
        /// Written by the gateway.
        case sent = "out"
        /// Read from the line.
        case received = "in"
    }

    /// The bus's id.
    public var bus: String
    /// When the write returned or the read came back.
    public var time: Date
    public var direction: Direction
    public var bytes: [UInt8]

    /// A record.
    public init(bus: String, time: Date, direction: Direction, bytes: [UInt8]) {
        self.bus = bus
        self.time = time
        self.direction = direction
        self.bytes = bytes
    }
}

/// The tap on every bus's link: the engine hands it each write and read; observers (the API's trace route) get
/// them for the buses they watch. With nobody watching it costs one atomic load per write or read.
///
/// A bus is named by its gateway's outbox and its id, so two gateways in one process (tests) never mix.
public final class BusTap: Sendable {
    /// The process's tap.
    public static let shared = BusTap()

    /// A subscription, to end with `unsubscribe`.
    public struct Token: Hashable, Sendable {
        fileprivate let id: Int
    }

    private struct Key: Hashable {
        var outbox: ObjectIdentifier
        var bus: String
    }

    private let watching = Atomic<Int>(0)
    private let observers = Mutex<(next: Int, byKey: [Key: [Int: @Sendable (TraceRecord) -> Void]])>((0, [:]))

    /// Called by the bus engine after each write and each non-empty read.
    public static func record(_ outbox: Outbox, _ bus: String, _ direction: TraceRecord.Direction, _ bytes: [UInt8]) {
        shared.publish(outbox, bus, direction, bytes)
    }

    func publish(_ outbox: Outbox, _ bus: String, _ direction: TraceRecord.Direction, _ bytes: [UInt8]) {
        guard watching.load(ordering: .relaxed) > 0, !bytes.isEmpty else { return }
        let key = Key(outbox: ObjectIdentifier(outbox), bus: bus)
        let handlers = observers.withLock { Array(($0.byKey[key] ?? [:]).values) }
        guard !handlers.isEmpty else { return }
        let record = TraceRecord(bus: bus, time: Date(), direction: direction, bytes: bytes)
        for handler in handlers { handler(record) }
    }

    /// Calls `handler` with every write and read on `bus` of the gateway owning `outbox`, until unsubscribed. The
    /// handler runs on the bus's executor: it must return at once (yield to a stream).
    public func subscribe(outbox: Outbox, bus: String, _ handler: @escaping @Sendable (TraceRecord) -> Void) -> Token {
        let key = Key(outbox: ObjectIdentifier(outbox), bus: bus)
        let id = observers.withLock { state in
            state.next += 1
            state.byKey[key, default: [:]][state.next] = handler
            return state.next
        }
        watching.add(1, ordering: .relaxed)
        return Token(id: id)
    }

    /// Ends a subscription.
    public func unsubscribe(_ token: Token) {
        let removed = observers.withLock { state in
            for key in state.byKey.keys where state.byKey[key]?[token.id] != nil {
                state.byKey[key]?[token.id] = nil
                if state.byKey[key]?.isEmpty == true { state.byKey[key] = nil }
                return true
            }
            return false
        }
        if removed { watching.subtract(1, ordering: .relaxed) }
    }
}
