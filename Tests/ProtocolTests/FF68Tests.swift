import Protocols
import Testing

// Golden vectors: the bytes JackQChen/QueueSystem builds, worked through by hand from
// CallSystem/CallSystem/frmMain.cs at commit 8b1593d7fc6f314e5a0e4a3f7b35671c15774813 (method named at each vector).

@Suite struct FF68GoldenVectorTests {
    // SendTicket(adress: 5, ticket: "023"): FF 68 08 08 68 adr 02 0A 0A 0A t1 t2 t3,
    // CS = (adress + 2 + t1 + t2 + t3 + 0x0A * 3) % 256 = (5 + 2 + 0 + 2 + 3 + 30) % 256 = 0x2A, then 16.
    static let sendTicket: [UInt8] = [0xFF, 0x68, 0x08, 0x08, 0x68, 0x05, 0x02, 0x0A, 0x0A, 0x0A, 0x00, 0x02, 0x03,
                                      0x2A, 0x16]
    // SendWait(adress: 5) with 12 people waiting ("012"): FF 68 08 08 68 adr 02 w1 w2 w3 0A 0A 0A,
    // CS = (5 + 2 + 0 + 1 + 2 + 30) % 256 = 0x28, then 16.
    static let sendWait: [UInt8] = [0xFF, 0x68, 0x08, 0x08, 0x68, 0x05, 0x02, 0x00, 0x01, 0x02, 0x0A, 0x0A, 0x0A,
                                    0x28, 0x16]
    // SendBeep(adress: 7): FF 68 02 02 68 adr 03, CS = (adress + 3) % 256 = 0x0A, 16.
    static let sendBeep: [UInt8] = [0xFF, 0x68, 0x02, 0x02, 0x68, 0x07, 0x03, 0x0A, 0x16]
    // SendServiceLever(adress: 3): FF 68 03 03 68 adr 02 05, CS = (adress + 2 + 5) % 256 = 0x0A, 16.
    static let sendServiceLevel: [UInt8] = [0xFF, 0x68, 0x03, 0x03, 0x68, 0x03, 0x02, 0x05, 0x0A, 0x16]
    // SendStartE(adress: 3): FF 68 03 03 68 adr 01 0B, CS = (adress + 1 + 0x0B) % 256 = 0x0F, 16.
    static let sendStartEvaluation: [UInt8] = [0xFF, 0x68, 0x03, 0x03, 0x68, 0x03, 0x01, 0x0B, 0x0F, 0x16]
    // SendTicket(adress: 0xF0, ticket: "999"): CS = (240 + 2 + 27 + 30) % 256 = 0x2B, the sum wraps.
    static let sendTicketWrapping: [UInt8] = [0xFF, 0x68, 0x08, 0x08, 0x68, 0xF0, 0x02, 0x0A, 0x0A, 0x0A, 0x09, 0x09,
                                              0x09, 0x2B, 0x16]
    // An evaluator at address 3 pressing key 2, as the receive loop in frmMain_Load reads it (length, length2,
    // 68, adress, funccode 0x11, data[0] the key, check, end); CS = 3 + 0x11 + 2 = 0x16, equal to the end byte.
    static let evaluatorKeyPress: [UInt8] = [0xFF, 0x68, 0x03, 0x03, 0x68, 0x03, 0x11, 0x02, 0x16, 0x16]
    // The receive loop's answer to it: send[6] = 0x01, send[7] = data[0], send[8] = check - 0x10, send[9] = end.
    static let evaluatorAcknowledgement: [UInt8] = [0xFF, 0x68, 0x03, 0x03, 0x68, 0x03, 0x01, 0x02, 0x06, 0x16]

    @Test func hostCommandsEncodeAsTheSourceBuildsThem() throws {
        let ticket = try #require(FF68CallerDisplay(ticket: "A023"))
        #expect(FF68Frame.callerDisplay(address: 5, ticket).encode() == Self.sendTicket)
        #expect(FF68Frame.callerDisplay(address: 5, FF68CallerDisplay(waitingCount: 12)).encode() == Self.sendWait)
        #expect(FF68Frame.beep(address: 7).encode() == Self.sendBeep)
        #expect(FF68Frame.serviceLevel(address: 3, stars: 5).encode() == Self.sendServiceLevel)
        #expect(FF68Frame.startEvaluation(address: 3).encode() == Self.sendStartEvaluation)
        let wrapping = try #require(FF68CallerDisplay(ticket: "999"))
        #expect(FF68Frame.callerDisplay(address: 0xF0, wrapping).encode() == Self.sendTicketWrapping)
    }

    @Test func evaluatorKeyPressIsAcknowledgedWithFunctionOne() {
        let press = FF68Frame.evaluatorKeyPress(address: 3, key: 2)
        #expect(press.encode() == Self.evaluatorKeyPress)
        #expect(press.evaluatorKey == 2)
        #expect(press.callerAction == nil)
        #expect(press.acknowledgement.encode() == Self.evaluatorAcknowledgement)
    }

    @Test func everyGoldenVectorDecodesInOneStream() {
        let vectors = [Self.sendTicket, Self.sendWait, Self.sendBeep, Self.sendServiceLevel, Self.sendStartEvaluation,
                       Self.sendTicketWrapping, Self.evaluatorKeyPress, Self.evaluatorAcknowledgement]
        var decoder = FF68Decoder()
        let frames = decoder.decode(vectors.flatMap { $0 })
        #expect(frames.map { $0.encode() } == vectors)
        #expect(decoder.discardedByteCount == 0)
        #expect(frames.first?.callerDisplay?.text == "   023")
        #expect(frames.dropFirst().first?.callerDisplay?.text == "012   ")
    }

    // The receive loop's reading of caller keys (the last data byte; 0x0F "confirm" after a digit). The FUNC of
    // caller frames is not in the source; these frames use the assumed 01, which the host does not check.
    @Test func callerKeysMeanWhatTheReceiveLoopDoesWithThem() {
        let expectations: [([UInt8], FF68CallerAction)] = [
            ([0x0C], .callNext), ([0x0D], .recall), ([0x0B], .requestEvaluation), ([0x0E], .cancel),
            ([0x06, 0x0F], .giveUp), ([0x00, 0x0F], .suspend), ([0x03, 0x0F], .callBack),
            ([0x11], .oneMetreLine), ([0x12], .pause), ([0x13], .transfer),
            ([0x05, 0x0F], .unassigned(keys: [0x05, 0x0F])), ([0x0F], .unassigned(keys: [0x0F])),
        ]
        for (keys, action) in expectations {
            let frame = FF68Frame(address: 0x0A, function: 0x01, data: keys)
            #expect(frame.callerAction == action)
            #expect(action.keys == keys)
            #expect(frame.acknowledgement == frame, "the host echoes caller frames unchanged")
        }
        // Give up at address 0x0A: FF 68 04 04 68 0A 01 06 0F, CS = 0x0A + 0x01 + 0x06 + 0x0F = 0x20, 16.
        #expect(FF68Frame.callerKeyPress(address: 0x0A, action: .giveUp).encode()
                == [0xFF, 0x68, 0x04, 0x04, 0x68, 0x0A, 0x01, 0x06, 0x0F, 0x20, 0x16])
    }
}

@Suite struct FF68DecoderTests {
    static let beep = FF68GoldenVectorTests.sendBeep

    @Test func aDamagedFrameIsDroppedAndTheNextOneFound() {
        var damaged = FF68GoldenVectorTests.sendTicket
        damaged[13] ^= 0x01
        var decoder = FF68Decoder()
        #expect(decoder.decode(damaged + Self.beep) == [FF68Frame.beep(address: 7)])
        #expect(decoder.discardedByteCount == damaged.count)
        #expect(decoder.checksumFailureCount == 1, "whole but for its checksum")
    }

    @Test func headerMistakesAreRejected() {
        let cases: [[UInt8]] = [
            Array(Self.beep.dropFirst()),                                   // no leading FF
            [0xFF, 0x68, 0x02, 0x03, 0x68, 0x07, 0x03, 0x0A, 0x16],         // L bytes differ
            [0xFF, 0x68, 0x02, 0x02, 0x69, 0x07, 0x03, 0x0A, 0x16],         // second 68 wrong
            [0xFF, 0x68, 0x01, 0x01, 0x68, 0x07, 0x07, 0x16],               // L < 2
            [0xFF, 0x68, 0x02, 0x02, 0x68, 0x07, 0x03, 0x0A, 0x17],         // end byte wrong
        ]
        for bytes in cases {
            var decoder = FF68Decoder()
            #expect(decoder.decode(bytes).isEmpty)
            #expect(decoder.flush().isEmpty)
            #expect(decoder.bufferedByteCount == 0)
            #expect(decoder.checksumFailureCount == 0, "a broken header or end byte is no checksum failure")
        }
    }

    @Test func lengthsAboveTheLimitAreRejected() {
        let long = FF68Frame(address: 1, function: 2, data: Array(repeating: 0x30, count: 20)).encode()
        var strict = FF68Decoder(maximumLength: 8)
        #expect(strict.decode(long).isEmpty)
        #expect(strict.maximumBufferedBytes == 15)
        var lenient = FF68Decoder()
        #expect(lenient.decode(long).count == 1)
    }

    @Test func flushReturnsTheFrameHiddenBehindATruncatedStart() {
        // A display header claiming 15 bytes, cut short, then a whole beep: 14 bytes, so the decoder keeps waiting.
        let truncated: [UInt8] = [0xFF, 0x68, 0x08, 0x08, 0x68]
        var decoder = FF68Decoder()
        #expect(decoder.decode(truncated + Self.beep).isEmpty)
        #expect(decoder.bufferedByteCount == 14)
        #expect(decoder.flush() == [FF68Frame.beep(address: 7)])
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func byteByByteEqualsAllAtOnce() {
        let stream = FF68GoldenVectorTests.sendWait + [0x00, 0xFF, 0x68] + Self.beep
        var whole = FF68Decoder()
        var single = FF68Decoder()
        let expected = whole.decode(stream)
        #expect(stream.flatMap { single.decode([$0]) } == expected)
        #expect(expected.count == 2)
    }

    @Test func encodeDecodeRoundTrip() {
        for length in 0...20 {
            let data = (0..<length).map { UInt8($0 * 37 % 256) }
            let frame = FF68Frame(address: UInt8(length), function: 0x11, data: data)
            var decoder = FF68Decoder()
            #expect(decoder.decode(frame.encode()) == [frame])
        }
    }

    // Random frames with random garbage (no FF, so garbage alone never starts a frame), truncated frames and frames
    // with a corrupted checksum between them, split at random points.
    @Test func resynchronisesAfterGarbageTruncationAndBadChecksums() {
        func randomFrame(_ generator: inout SeededGenerator) -> FF68Frame {
            let count = Int.random(in: 0...12, using: &generator)
            return FF68Frame(
                address: UInt8.random(in: 0...255, using: &generator),
                function: UInt8.random(in: 0...255, using: &generator),
                data: (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
        checkDecoderProperty(
            samples: { generator in
                let frame = randomFrame(&generator)
                return SampleFrame(bytes: frame.encode(), frame: frame)
            },
            garbage: { generator in
                switch Int.random(in: 0..<4, using: &generator) {
                case 0: return truncated(randomFrame(&generator).encode(), &generator)
                case 1:
                    var bytes = randomFrame(&generator).encode()
                    bytes[bytes.count - 2] ^= UInt8.random(in: 1...255, using: &generator)
                    return bytes
                default: return randomGarbage(&generator, excluding: [0xFF])
                }
            },
            makeDecoder: { FF68Decoder(maximumLength: 14) })
    }
}
