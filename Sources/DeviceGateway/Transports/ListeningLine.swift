import Foundation

/// A serial port opened for listening only (`gatewayd trace` with the gateway stopped): the bus's settings, never
/// written to. Its blocking reads run on a queue of its own, never on the cooperative pool.
public final class ListeningLine: Sendable {
    private let line: SerialLine
    private let queue = DispatchQueue(label: "listening-line")

    /// Opens `settings.port` read-only; throws `portUnavailable` saying why not.
    public init(_ settings: SerialSettings) throws(GatewayError) {
        line = try SerialLine(settings: settings, readOnly: true)
    }

    /// The bytes of one burst: read until the line is quiet for `quiet` after the first byte, or nothing within
    /// `wait`. Throws when the port hangs up (an adapter unplugged).
    public func read(quietAfter quiet: Duration, waitAtMost wait: Duration) async throws(GatewayError) -> [UInt8] {
        let line = self.line
        let result: Result<[UInt8], GatewayError> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(returning: Result { () throws(GatewayError) in
                    var bytes = try line.read(timeout: wait)
                    while !bytes.isEmpty {
                        let more = try line.read(timeout: quiet)
                        if more.isEmpty { break }
                        bytes += more
                    }
                    return bytes
                })
            }
        }
        return try result.get()
    }

    /// Closes the port (after the last read).
    public func close() { queue.sync { line.close() } }
}
