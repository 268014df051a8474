/// What happened on the wire with one device (or, for the line's own counters, with nobody in particular):
/// read by the CLI, and the shape metrics take.
public struct DeviceCounters: Sendable, Equatable, Codable {
    /// Requests answered (refusals included: the device heard and spoke); for a device that is never asked (FF 68,
    /// QSystem: it speaks unprompted), its frames heard.
    public var transactions = 0
    /// Requests that got no answer within the response timeout.
    public var timeouts = 0
    /// Frames rejected for a wrong checksum while the device's request was in flight.
    public var checksumErrors = 0
    /// Answers that refused the request (Modbus exceptions, a board's error code).
    public var exceptions = 0
    /// Bytes that were no part of any valid frame.
    public var garbageBytes = 0
    /// Bytes sent to the device and received while its request was in flight.
    public var bytesSent = 0
    public var bytesReceived = 0
    /// Time from the end of the request on the wire to the end of its answer.
    public var latency = LatencyHistogram()

    /// Counters at zero.
    public init() {}
}

/// A bus's counters for what its line carried that belongs to no device.
public struct LineCounters: Sendable, Equatable, Codable {
    public var bus: String
    public var counters: DeviceCounters
    /// Whether the line sends back what the gateway writes (see `Bus.lineEchoes`); absent until known.
    public var echoes: Bool?
    /// Why the line is down, while it is (see `Bus.lineDown`).
    public var down: String?

    public init(bus: String, counters: DeviceCounters, echoes: Bool? = nil, down: String? = nil) {
        self.bus = bus
        self.counters = counters
        self.echoes = echoes
        self.down = down
    }
}

/// A latency histogram with fixed bucket bounds, as Prometheus histograms have them.
public struct LatencyHistogram: Sendable, Equatable, Codable {
    /// Upper bounds of the buckets in milliseconds; one more bucket counts everything above the last.
    public static let boundsMilliseconds: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    /// Observations per bucket (not cumulative); the last is above every bound.
    public private(set) var buckets = [Int](repeating: 0, count: boundsMilliseconds.count + 1)
    /// How many observations, and their sum in milliseconds.
    public private(set) var count = 0
    public private(set) var sumMilliseconds = 0.0

    /// An empty histogram.
    public init() {}

    /// Adds one observation.
    public mutating func record(_ duration: Duration) {
        let milliseconds = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
        let index = Self.boundsMilliseconds.firstIndex { milliseconds <= $0 } ?? Self.boundsMilliseconds.count
        buckets[index] += 1
        count += 1
        sumMilliseconds += milliseconds
    }

    /// The bound below which `fraction` of the observations lie (the bucket's upper bound; nil when empty or above all).
    public func quantile(_ fraction: Double) -> Double? {
        guard count > 0 else { return nil }
        let wanted = Int((Double(count) * fraction).rounded(.up))
        var seen = 0
        for (index, bucket) in buckets.enumerated() {
            seen += bucket
            if seen >= wanted { return index < Self.boundsMilliseconds.count ? Self.boundsMilliseconds[index] : nil }
        }
        return nil
    }
}
