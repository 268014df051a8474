import Protocols
import Testing

/// SplitMix64: a small seeded generator, so a failing property run can be replayed from its seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// One valid frame on the wire and what the decoder must make of it.
struct SampleFrame<Frame: Equatable & Sendable>: Sendable {
    var bytes: [UInt8]
    var frame: Frame
}

/// Random bytes, none of them in `excluded` (a family's frame-start bytes, so garbage alone cannot form a frame).
func randomGarbage(_ generator: inout SeededGenerator, maximumCount: Int = 24, excluding excluded: Set<UInt8>) -> [UInt8] {
    let count = Int.random(in: 0...maximumCount, using: &generator)
    var bytes: [UInt8] = []
    while bytes.count < count {
        let byte = UInt8.random(in: 0...255, using: &generator)
        if !excluded.contains(byte) { bytes.append(byte) }
    }
    return bytes
}

/// A frame cut short somewhere after its first byte: what a line delivers when a device resets mid-frame.
func truncated(_ bytes: [UInt8], _ generator: inout SeededGenerator) -> [UInt8] {
    guard bytes.count > 1 else { return [] }
    return Array(bytes.prefix(Int.random(in: 1..<bytes.count, using: &generator)))
}

/// The property every decoder must have: valid frames with garbage between them, split at random
/// points, come out complete, in order, and nothing else; the buffer stays within its bound throughout.
///
/// - Parameters:
///   - garbage: what the family puts between frames (random bytes, truncated or corrupted frames).
func checkDecoderProperty<Decoder: FrameDecoder>(
    seeds: ClosedRange<UInt64> = 1...200,
    framesPerRun: Int = 40,
    samples: (inout SeededGenerator) -> SampleFrame<Decoder.Frame>,
    garbage: (inout SeededGenerator) -> [UInt8],
    makeDecoder: () -> Decoder,
    sourceLocation: SourceLocation = #_sourceLocation
) where Decoder.Frame: Equatable {
    for seed in seeds {
        var generator = SeededGenerator(seed: seed)
        var stream: [UInt8] = garbage(&generator)
        var expected: [Decoder.Frame] = []
        for _ in 0..<framesPerRun {
            let sample = samples(&generator)
            stream += sample.bytes
            expected.append(sample.frame)
            stream += garbage(&generator)
        }
        var decoder = makeDecoder()
        var decoded: [Decoder.Frame] = []
        var start = 0
        var bufferWithinBound = true
        while start < stream.count {
            let end = min(stream.count, start + Int.random(in: 1...64, using: &generator))
            decoded += decoder.decode(stream[start..<end])
            bufferWithinBound = bufferWithinBound && decoder.bufferedByteCount <= decoder.maximumBufferedBytes
            start = end
        }
        decoded += decoder.flush()
        bufferWithinBound = bufferWithinBound && decoder.bufferedByteCount == 0
        #expect(decoded == expected, "seed \(seed)", sourceLocation: sourceLocation)
        #expect(bufferWithinBound, "seed \(seed): buffer grew past its bound", sourceLocation: sourceLocation)
        if decoded != expected { return }
    }
}
