// Shared by the FF 68 and QSystem decoders: a bounded buffer that tries a frame at its head, drops one byte when
// the candidate fails and rescans, and on flush gives up the partial frame but not the frames behind its start.

/// What a family makes of the bytes at the head of the buffer.
enum RS485Candidate<Frame> {
    /// These bytes cannot begin a valid frame: drop one and rescan.
    case invalid
    /// A valid prefix of a frame: wait for more bytes.
    case incomplete
    /// A whole frame but for its checksum: counted, then dropped like an invalid candidate.
    case checksumMismatch
    /// A whole, checked frame of `byteCount` bytes.
    case frame(Frame, byteCount: Int)
}

/// The byte buffer behind a decoder; never holds more than `capacity` bytes.
struct RS485CandidateBuffer: Sendable {
    /// The longest valid frame.
    let capacity: Int
    /// Every frame starts with this byte, so after a failed candidate the bytes before the next one are skipped
    /// (each of them would fail on its own first byte anyway).
    let startByte: UInt8
    private var bytes: [UInt8] = []
    private var head = 0
    private(set) var discardedByteCount = 0
    private(set) var checksumFailureCount = 0

    init(capacity: Int, startByte: UInt8) {
        self.capacity = max(1, capacity)
        self.startByte = startByte
        bytes.reserveCapacity(self.capacity)
    }

    /// Bytes waiting for the rest of a frame.
    var count: Int { bytes.count - head }

    mutating func decode<Frame>(
        _ input: some Sequence<UInt8>, examine: (ArraySlice<UInt8>) -> RS485Candidate<Frame>
    ) -> [Frame] {
        var frames: [Frame] = []
        var iterator = input.makeIterator()
        var inputLeft = true
        while inputLeft {
            // Take only what fits, so the buffer stays within its bound even while a call is under way.
            while count < capacity {
                guard let byte = iterator.next() else {
                    inputLeft = false
                    break
                }
                bytes.append(byte)
            }
            scan(into: &frames, examine: examine)
            compact()
        }
        return frames
    }

    mutating func flush<Frame>(examine: (ArraySlice<UInt8>) -> RS485Candidate<Frame>) -> [Frame] {
        var frames: [Frame] = []
        while count > 0 {
            dropOne()
            scan(into: &frames, examine: examine)
        }
        bytes.removeAll(keepingCapacity: true)
        head = 0
        return frames
    }

    private mutating func scan<Frame>(
        into frames: inout [Frame], examine: (ArraySlice<UInt8>) -> RS485Candidate<Frame>
    ) {
        while count > 0 {
            switch examine(bytes[head...]) {
            case .invalid:
                dropOne()
            case .checksumMismatch:
                checksumFailureCount += 1
                dropOne()
            case .incomplete:
                // A full buffer that is still "incomplete" would wait forever: treat it as a failed candidate.
                guard count >= capacity else { return }
                dropOne()
            case .frame(let frame, let byteCount):
                frames.append(frame)
                head += min(max(byteCount, 1), count)
            }
        }
    }

    private mutating func dropOne() {
        head += 1
        discardedByteCount += 1
        while head < bytes.count, bytes[head] != startByte {
            head += 1
            discardedByteCount += 1
        }
    }

    private mutating func compact() {
        guard head > 0 else { return }
        bytes.removeFirst(head)
        head = 0
    }
}
