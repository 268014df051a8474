/// Host side: decodes box key frames `01 ADDR KEY 07`, KEY one of 31–34.
///
/// Without a checksum a candidate is valid when byte 0 is 01, byte 2 a known key and byte 3 is 07 (any address);
/// anything else drops one byte and the rest is rescanned.
public struct QSystemBoxDecoder: FrameDecoder {
    /// What one decoded frame is.
    public typealias Frame = QSystemKeyFrame

    private var buffer = RS485CandidateBuffer(capacity: 4, startByte: 0x01)

    /// Creates a decoder.
    public init() {}

    /// Bytes skipped because they were not part of a valid frame.
    public var discardedByteCount: Int { buffer.discardedByteCount }
    /// Bytes held back waiting for the rest of a frame.
    public var bufferedByteCount: Int { buffer.count }
    /// A key frame is four bytes.
    public var maximumBufferedBytes: Int { 4 }

    /// Appends received bytes and returns every frame they complete, oldest first.
    public mutating func decode(_ bytes: some Sequence<UInt8>) -> [QSystemKeyFrame] {
        buffer.decode(bytes, examine: Self.examine)
    }

    /// The line went quiet: drops the partial frame and returns the frames that lay behind its start.
    public mutating func flush() -> [QSystemKeyFrame] {
        buffer.flush(examine: Self.examine)
    }

    static func examine(_ bytes: ArraySlice<UInt8>) -> RS485Candidate<QSystemKeyFrame> {
        QSystemFourByteFrame.examine(bytes) { address, code in
            QSystemKey(rawValue: code).map { QSystemKeyFrame(address: address, key: $0) }
        }
    }
}

/// Box side (for mock boxes): decodes the host's signal frames `01 ADDR SIGNAL 07`, SIGNAL one of 30–3D.
public struct QSystemSignalDecoder: FrameDecoder {
    /// What one decoded frame is.
    public typealias Frame = QSystemSignalFrame

    private var buffer = RS485CandidateBuffer(capacity: 4, startByte: 0x01)

    /// Creates a decoder.
    public init() {}

    /// Bytes skipped because they were not part of a valid frame.
    public var discardedByteCount: Int { buffer.discardedByteCount }
    /// Bytes held back waiting for the rest of a frame.
    public var bufferedByteCount: Int { buffer.count }
    /// A signal frame is four bytes.
    public var maximumBufferedBytes: Int { 4 }

    /// Appends received bytes and returns every frame they complete, oldest first.
    public mutating func decode(_ bytes: some Sequence<UInt8>) -> [QSystemSignalFrame] {
        buffer.decode(bytes, examine: Self.examine)
    }

    /// The line went quiet: drops the partial frame and returns the frames that lay behind its start.
    public mutating func flush() -> [QSystemSignalFrame] {
        buffer.flush(examine: Self.examine)
    }

    static func examine(_ bytes: ArraySlice<UInt8>) -> RS485Candidate<QSystemSignalFrame> {
        QSystemFourByteFrame.examine(bytes) { address, code in
            QSystemBoxSignal(rawValue: code).map { QSystemSignalFrame(address: address, signal: $0) }
        }
    }
}

/// Board side (for mock boards): decodes display frames `01 ADDR MODE c1 c2 c3 07`.
///
/// A candidate is valid when byte 0 is 01, MODE is 0–11 or 125, the three characters are printable ASCII and
/// byte 6 is 07 (any address); anything else drops one byte and the rest is rescanned.
public struct QSystemBoardDecoder: FrameDecoder {
    /// What one decoded frame is.
    public typealias Frame = QSystemDisplayFrame

    private var buffer = RS485CandidateBuffer(capacity: 7, startByte: 0x01)

    /// Creates a decoder.
    public init() {}

    /// Bytes skipped because they were not part of a valid frame.
    public var discardedByteCount: Int { buffer.discardedByteCount }
    /// Bytes held back waiting for the rest of a frame.
    public var bufferedByteCount: Int { buffer.count }
    /// A display frame is seven bytes.
    public var maximumBufferedBytes: Int { 7 }

    /// Appends received bytes and returns every frame they complete, oldest first.
    public mutating func decode(_ bytes: some Sequence<UInt8>) -> [QSystemDisplayFrame] {
        buffer.decode(bytes, examine: Self.examine)
    }

    /// The line went quiet: drops the partial frame and returns the frames that lay behind its start.
    public mutating func flush() -> [QSystemDisplayFrame] {
        buffer.flush(examine: Self.examine)
    }

    static func examine(_ bytes: ArraySlice<UInt8>) -> RS485Candidate<QSystemDisplayFrame> {
        let start = bytes.startIndex
        let available = bytes.count
        if available >= 1, bytes[start] != 0x01 { return .invalid }
        if available >= 3, QSystemDisplayMode(rawValue: bytes[start + 2]) == nil { return .invalid }
        let characters = QSystemDisplayFrame.characterRange
        for index in 3..<max(3, min(available, 6)) where !characters.contains(bytes[start + index]) {
            return .invalid
        }
        guard available >= 7 else { return .incomplete }
        guard bytes[start + 6] == 0x07,
            let mode = QSystemDisplayMode(rawValue: bytes[start + 2]),
            let frame = QSystemDisplayFrame(
                address: bytes[start + 1], mode: mode, characters: Array(bytes[(start + 3)..<(start + 6)]))
        else { return .invalid }
        return .frame(frame, byteCount: 7)
    }
}

/// The four-byte shape shared by key and signal frames: 01, address, one code, 07.
enum QSystemFourByteFrame {
    static func examine<Frame>(
        _ bytes: ArraySlice<UInt8>, makeFrame: (_ address: UInt8, _ code: UInt8) -> Frame?
    ) -> RS485Candidate<Frame> {
        let start = bytes.startIndex
        let available = bytes.count
        if available >= 1, bytes[start] != 0x01 { return .invalid }
        // Reject an unknown code as soon as it arrives rather than after the fourth byte.
        if available >= 3, makeFrame(bytes[start + 1], bytes[start + 2]) == nil { return .invalid }
        guard available >= 4 else { return .incomplete }
        guard bytes[start + 3] == 0x07, let frame = makeFrame(bytes[start + 1], bytes[start + 2]) else {
            return .invalid
        }
        return .frame(frame, byteCount: 4)
    }
}
