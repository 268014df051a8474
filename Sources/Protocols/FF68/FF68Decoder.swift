/// Incremental decoder for FF 68 frames (either direction: the gateway reads device frames, mock devices read
/// host commands).
///
/// A candidate is a frame when it holds FF 68 L L 68 with 2 ≤ L ≤ `maximumLength`, then L bytes, the checksum
/// (ADDR + FUNC + ΣDATA) mod 256 and 16. The source's own reader does not check the checksum; this one does, so a
/// damaged frame is dropped instead of acknowledged. On a failed candidate one byte is dropped and the rest rescanned.
public struct FF68Decoder: FrameDecoder {
    /// What one decoded frame is.
    public typealias Frame = FF68Frame

    /// The largest length byte accepted. The source's host sends L = 8 at most and rejects device frames with
    /// L > 5, so the default leaves headroom while keeping a false start from holding back the line for long.
    public let maximumLength: UInt8
    private var buffer: RS485CandidateBuffer

    /// Creates a decoder accepting length bytes up to `maximumLength` (at least 2).
    public init(maximumLength: UInt8 = 64) {
        self.maximumLength = max(maximumLength, FF68Frame.minimumLength)
        buffer = RS485CandidateBuffer(capacity: Int(self.maximumLength) + 7, startByte: 0xFF)
    }

    /// Bytes skipped because they were not part of a valid frame.
    public var discardedByteCount: Int { buffer.discardedByteCount }
    /// Frames whole but for their checksum.
    public var checksumFailureCount: Int { buffer.checksumFailureCount }
    /// Bytes held back waiting for the rest of a frame.
    public var bufferedByteCount: Int { buffer.count }
    /// FF 68 L L 68, L bytes, CS and 16: `maximumLength + 7`.
    public var maximumBufferedBytes: Int { Int(maximumLength) + 7 }

    /// Appends received bytes and returns every frame they complete, oldest first.
    public mutating func decode(_ bytes: some Sequence<UInt8>) -> [FF68Frame] {
        let maximumLength = maximumLength
        return buffer.decode(bytes) { Self.examine($0, maximumLength: maximumLength) }
    }

    /// The line went quiet: drops the partial frame and returns the frames that lay behind its start.
    public mutating func flush() -> [FF68Frame] {
        let maximumLength = maximumLength
        return buffer.flush { Self.examine($0, maximumLength: maximumLength) }
    }

    static func examine(_ bytes: ArraySlice<UInt8>, maximumLength: UInt8) -> RS485Candidate<FF68Frame> {
        let start = bytes.startIndex
        let available = bytes.count
        // Check each header byte as soon as it is there, so garbage is dropped without waiting.
        if available >= 1, bytes[start] != 0xFF { return .invalid }
        if available >= 2, bytes[start + 1] != 0x68 { return .invalid }
        guard available >= 3 else { return .incomplete }
        let length = bytes[start + 2]
        guard length >= FF68Frame.minimumLength, length <= maximumLength else { return .invalid }
        if available >= 4, bytes[start + 3] != length { return .invalid }
        if available >= 5, bytes[start + 4] != 0x68 { return .invalid }
        let total = Int(length) + 7
        guard available >= total else { return .incomplete }
        let body = bytes[(start + 5)..<(start + 5 + Int(length))]
        guard bytes[start + 6 + Int(length)] == 0x16 else { return .invalid }
        guard bytes[start + 5 + Int(length)] == Checksum.sum8(body) else { return .checksumMismatch }
        let frame = FF68Frame(address: body[start + 5], function: body[start + 6], data: Array(body.dropFirst(2)))
        return .frame(frame, byteCount: total)
    }
}
