import Foundation
import Synchronization

/// A device that replays its side of a capture written by `gatewayd trace BUS --save FILE` on a pseudo-terminal.
///
/// The records are walked in order: for each run of `out` records (what the gateway wrote) the device waits until
/// the client has sent exactly those bytes, then writes the following `in` records (what the device answered).
/// The first byte that differs is kept as a `divergence` and the replay stops there; so does a byte sent after the
/// end of the capture. Record times are ignored: answers go out as soon as their request is complete.
///
/// The line is read on a thread of its own (blocking reads, never on the cooperative pool). The client opens
/// `devicePath` as it would open `/dev/ttyUSB0`.
public final class MockCaptureDevice: Sendable {
    /// Where the client's bytes first differed from the capture.
    public struct Divergence: Sendable, Equatable, CustomStringConvertible {
        /// The line of the capture file holding the record expected (the header is line 1); after the last record:
        /// the line count plus one.
        public var line: Int
        /// The byte within that record where the client differed (0: its first byte).
        public var offset: Int
        /// The record's bytes from `offset` on; empty after the end of the capture.
        public var expected: [UInt8]
        /// What the client sent from `offset` on (at most as many bytes as expected, at least one).
        public var got: [UInt8]

        /// Creates a divergence.
        public init(line: Int, offset: Int, expected: [UInt8], got: [UInt8]) {
            self.line = line
            self.offset = offset
            self.expected = expected
            self.got = got
        }

        /// `line 2 of the capture, byte 3: expected 00 00 02 C4 0B, got 01 00 02 95 CB`.
        public var description: String {
            guard !expected.isEmpty else {
                return "after the end of the capture (line \(line)): got \(Self.hex(got)), expected nothing"
            }
            return "line \(line) of the capture, byte \(offset): expected \(Self.hex(expected)), got \(Self.hex(got))"
        }

        static func hex(_ bytes: [UInt8]) -> String {
            bytes.map { String(format: "%02X", $0) }.joined(separator: " ")
        }
    }

    /// One record of the capture, as the device sees it.
    struct Record: Sendable {
        /// True: the client writes these bytes (`out`); false: the device answers them (`in`).
        var fromClient: Bool
        var bytes: [UInt8]
        /// Its line in the file, for the divergence.
        var line: Int
    }

    private struct State {
        var divergence: Divergence?
        var replayed = 0
    }

    private let terminal: PseudoTerminal
    private let state = Mutex(State())
    private let running = Mutex(true)
    private let finished = DispatchSemaphore(value: 0)

    /// How many records the capture holds (`replayed` reaches it once the whole capture was played).
    public let recordCount: Int

    /// The path the client opens.
    public var devicePath: String { terminal.devicePath }

    /// Where the client first differed from the capture; nil while everything matched.
    public var divergence: Divergence? { state.withLock { $0.divergence } }

    /// The records played so far: `out` ones received in full, `in` ones written; counted on across loops.
    public var replayed: Int { state.withLock { $0.replayed } }

    /// Reads the capture at `path` and starts replaying it on a new pseudo-terminal.
    ///
    /// With `loop`, the replay starts again at the first record after the last, for a client that polls repeatedly
    /// (only when the capture has `out` records: one made only of answers would be written out without end).
    public init(capture path: String, loop: Bool = false) throws {
        let records = try Self.records(capture: path)
        let terminal = try PseudoTerminal()
        self.terminal = terminal
        recordCount = records.count
        let loops = loop && records.contains { $0.fromClient }
        let endLine = (records.last?.line ?? 1) + 1
        Thread.detachNewThread { [self] in replay(records, loop: loops, endLine: endLine) }
    }

    /// Stops replaying and waits until the line is no longer read; the line stays open until the object goes away.
    public func stop() {
        guard running.withLock({ let was = $0; $0 = false; return was }) else { return }
        finished.wait()
    }

    private var isRunning: Bool { running.withLock { $0 } }

    // MARK: Replay

    private func replay(_ records: [Record], loop: Bool, endLine: Int) {
        defer { finished.signal() }
        // Bytes from the client not matched yet.
        var pending: [UInt8] = []
        var index = 0
        while isRunning {
            if index == records.count {
                if loop {
                    index = 0
                    continue
                }
                // The capture is over: anything more from the client is a divergence.
                if !pending.isEmpty {
                    diverge(Divergence(line: endLine, offset: 0, expected: [], got: pending))
                    return
                }
                if let chunk = readChunk(milliseconds: 20) { pending += chunk }
                continue
            }
            let record = records[index]
            guard record.fromClient else {
                guard writeAll(record.bytes) else { return }
                state.withLock { $0.replayed += 1 }
                index += 1
                continue
            }
            let compared = min(pending.count, record.bytes.count)
            if let offset = (0..<compared).first(where: { pending[$0] != record.bytes[$0] }) {
                // A silence of 100 ms ends what the client sent, as a gap ends a frame on a real line.
                while pending.count < record.bytes.count, isRunning, let chunk = readChunk(milliseconds: 100) {
                    pending += chunk
                }
                let got = Array(pending[offset..<min(pending.count, record.bytes.count)])
                let expected = Array(record.bytes[offset...])
                diverge(Divergence(line: record.line, offset: offset, expected: expected, got: got))
                return
            }
            if pending.count >= record.bytes.count {
                pending.removeFirst(record.bytes.count)
                state.withLock { $0.replayed += 1 }
                index += 1
                continue
            }
            if let chunk = readChunk(milliseconds: 20) { pending += chunk }
        }
    }

    private func diverge(_ divergence: Divergence) {
        state.withLock { $0.divergence = divergence }
    }

    /// What the client sent, or nil after `milliseconds` of silence.
    private func readChunk(milliseconds: Int32) -> [UInt8]? {
        var entry = pollfd(fd: terminal.controller, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, milliseconds) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = read(terminal.controller, &buffer, buffer.count)
        guard count > 0 else { return nil }
        return Array(buffer[0..<count])
    }

    private func writeAll(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(terminal.controller, $0.baseAddress, $0.count) }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }

    // MARK: Reading the capture

    /// A line of the capture: the header has `capture` and `version`, a record `direction` and `hex`.
    private struct CaptureLine: Decodable {
        var capture: String?
        var version: Int?
        var direction: String?
        var hex: String?
    }

    static let marker = "hall-gateway-trace"

    /// The records of the capture at `path`; the error names the file and the line that is wrong.
    static func records(capture path: String) throws -> [Record] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw MockDeviceError("cannot read the capture \(path): \(error.localizedDescription)")
        }
        let decoder = JSONDecoder()
        var records: [Record] = []
        var headerSeen = false
        for (offset, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            guard !line.allSatisfy(\.isWhitespace) else { continue }
            guard let item = try? decoder.decode(CaptureLine.self, from: Data(line.utf8)) else {
                throw MockDeviceError("\(path) line \(number): not a JSON object")
            }
            if !headerSeen {
                guard item.capture == marker else {
                    throw MockDeviceError(
                        "\(path) is not a gatewayd trace capture: its first line lacks \"capture\":\"\(marker)\"")
                }
                guard item.version == 1 else {
                    let version = item.version.map(String.init) ?? "none"
                    throw MockDeviceError("\(path): capture version \(version) is not known (version 1 is)")
                }
                headerSeen = true
                continue
            }
            guard let direction = item.direction, direction == "out" || direction == "in" else {
                throw MockDeviceError("\(path) line \(number): \"direction\" must be \"out\" or \"in\"")
            }
            guard let hex = item.hex, let bytes = bytes(fromHex: hex) else {
                throw MockDeviceError("\(path) line \(number): \"hex\" must be bytes in hex such as \"01 03\"")
            }
            // An empty record moves nothing on the line.
            if !bytes.isEmpty { records.append(Record(fromClient: direction == "out", bytes: bytes, line: number)) }
        }
        guard headerSeen else { throw MockDeviceError("\(path) is empty, not a gatewayd trace capture") }
        return records
    }

    /// `01 03 0A` (spaces optional) as bytes; nil when it is not hex.
    static func bytes(fromHex text: String) -> [UInt8]? {
        let digits = Array(text.filter { !$0.isWhitespace })
        guard digits.count.isMultiple(of: 2) else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(digits[index...index + 1]), radix: 16) else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}
