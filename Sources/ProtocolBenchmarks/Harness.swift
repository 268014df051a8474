import Protocols

/// Times a decoder over a recorded stream, fed in transport-sized chunks, and prints MB/s.
struct DecodeBenchmark {
    let family: String
    /// Valid frames with some garbage between them, as a line would deliver them.
    let stream: [UInt8]
    /// Frames the stream holds, to check the decoder really decoded them.
    let expectedFrames: Int
    /// Decodes the whole stream in chunks of `chunkSize`; returns the frames found.
    let decodeAll: (_ stream: [UInt8], _ chunkSize: Int) -> Int

    init<Decoder: FrameDecoder>(family: String, stream: [UInt8], expectedFrames: Int, makeDecoder: @escaping () -> Decoder) {
        self.family = family
        self.stream = stream
        self.expectedFrames = expectedFrames
        decodeAll = { stream, chunkSize in
            var decoder = makeDecoder()
            var frames = 0
            var start = 0
            while start < stream.count {
                let end = min(start + chunkSize, stream.count)
                frames += decoder.decode(stream[start..<end]).count
                start = end
            }
            return frames
        }
    }

    /// Runs for about `seconds` and returns megabytes (10^6 bytes) per second.
    func run(seconds: Double, chunkSize: Int) -> (megabytesPerSecond: Double, framesPerSecond: Double, correct: Bool) {
        let clock = ContinuousClock()
        var bytes = 0
        var frames = 0
        var correct = true
        let started = clock.now
        var elapsed = Duration.zero
        repeat {
            let found = decodeAll(stream, chunkSize)
            correct = correct && found == expectedFrames
            frames += found
            bytes += stream.count
            elapsed = clock.now - started
        } while elapsed < .seconds(seconds)
        let secondsElapsed = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return (Double(bytes) / secondsElapsed / 1e6, Double(frames) / secondsElapsed, correct)
    }
}

/// Builds a stream of `count` frames with a few garbage bytes after every tenth one.
func stream(of frames: [[UInt8]], count: Int, garbage: [UInt8] = [0x00, 0x13, 0x37]) -> (bytes: [UInt8], frames: Int) {
    var bytes: [UInt8] = []
    for index in 0..<count {
        bytes += frames[index % frames.count]
        if index % 10 == 9 { bytes += garbage }
    }
    return (bytes, count)
}
