/// An incremental decoder for one wire protocol.
///
/// Bytes arrive in whatever chunks the transport delivers; frames come out whole and in order.
/// After garbage, a bad checksum or a truncated frame the decoder resynchronises on the next valid
/// frame. Its buffer never grows past `maximumBufferedBytes`, whatever arrives, and it never traps.
public protocol FrameDecoder: Sendable {
    /// What one complete, checked frame decodes to.
    associatedtype Frame: Sendable

    /// Appends received bytes and returns every frame they complete, oldest first.
    mutating func decode(_ bytes: some Sequence<UInt8>) -> [Frame]

    /// The line went quiet: the partial frame in the buffer will never be completed. Drops it and returns
    /// any frames that lay behind its start (a truncated frame can hide a whole one inside its claimed length).
    mutating func flush() -> [Frame]

    /// Bytes skipped so far because they were not part of a valid frame (for diagnostics).
    var discardedByteCount: Int { get }

    /// Bytes held back waiting for the rest of a frame.
    var bufferedByteCount: Int { get }

    /// The most bytes the decoder ever holds back: the longest valid frame it accepts.
    var maximumBufferedBytes: Int { get }

    /// Whole frames rejected for a wrong checksum so far (counted where a frame could start, not at every byte
    /// the scan tries after it).
    var checksumFailureCount: Int { get }
}

extension FrameDecoder {
    /// Zero for decoders of frames without a checksum.
    public var checksumFailureCount: Int { 0 }
}
