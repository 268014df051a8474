import Protocols
import Testing

// Golden vectors: the bytes QSystem builds, worked through by hand from binali-rustamov/apertum-qsystem
// (a copy of Evgeniy Egorov's QSystem tree); file and method named at each vector.

@Suite struct QSystemGoldenVectorTests {
    // config/qub.adr @ 6fc493ec maps operator 2 to box address 32 (0x20). ActionTransmit.run accepts exactly
    // 01 addr key 07; ButtonDevice.doAction treats 0x31 as "invite next".
    static let callKeyAtAddress32: [UInt8] = [0x01, 0x20, 0x31, 0x07]
    // ButtonDevice @ 6fc493ec: the constructor sets mess = 01 addr _ 07; after inviting, mess[2] = 0x36
    // (мигает Зеленый 500 мс), beReadyBeep uses 0x3B, lightDown 0x30.
    static let greenBlinkSlowAtAddress32: [UInt8] = [0x01, 0x20, 0x36, 0x07]
    static let beepGreenBlinkFastAtAddress32: [UInt8] = [0x01, 0x20, 0x3B, 0x07]
    static let lampOffAtAddress32: [UInt8] = [0x01, 0x20, 0x30, 0x07]
    // BelIndicatorBoardRS @ e52e30fd, showToUser for customer number "23" while invited at board address 33:
    // ("123" + " 23" + "e").getBytes() with bytes 0, 1, 2 and last set to 01, 0x21, blinkAll = 125, 07.
    static let invitedTwentyThreeAtAddress33: [UInt8] = [0x01, 0x21, 0x7D, 0x20, 0x32, 0x33, 0x07]
    // The same for a customer who did not come (STATE_DEAD): three spaces, blinkNo = 0.
    static let blankAtAddress33: [UInt8] = [0x01, 0x21, 0x00, 0x20, 0x20, 0x20, 0x07]

    @Test func boxFramesEncodeAsTheSourceBuildsThem() {
        #expect(QSystemKeyFrame(address: 32, key: .call).encode() == Self.callKeyAtAddress32)
        #expect(QSystemSignalFrame(address: 32, signal: .greenBlinkSlow).encode() == Self.greenBlinkSlowAtAddress32)
        #expect(QSystemSignalFrame(address: 32, signal: .beepGreenBlinkFast).encode()
                == Self.beepGreenBlinkFastAtAddress32)
        #expect(QSystemSignalFrame(address: 32, signal: .off).encode() == Self.lampOffAtAddress32)
    }

    @Test func boardFramesEncodeAsTheSourceBuildsThem() throws {
        let invited = try #require(QSystemDisplayFrame(address: 33, mode: .blinkContinuously, text: "23"))
        #expect(invited.encode() == Self.invitedTwentyThreeAtAddress33)
        #expect(invited.text == " 23")
        #expect(QSystemDisplayFrame.blank(address: 33).encode() == Self.blankAtAddress33)
        // StringUtils.right(…, 3) keeps the last three characters.
        #expect(QSystemDisplayFrame(address: 33, mode: .steady, text: "1234")?.text == "234")
    }

    @Test func goldenVectorsDecode() {
        var box = QSystemBoxDecoder()
        #expect(box.decode(Self.callKeyAtAddress32) == [QSystemKeyFrame(address: 32, key: .call)])
        var signals = QSystemSignalDecoder()
        let signalBytes = Self.greenBlinkSlowAtAddress32 + Self.beepGreenBlinkFastAtAddress32 + Self.lampOffAtAddress32
        #expect(signals.decode(signalBytes)
                == [.greenBlinkSlow, .beepGreenBlinkFast, .off].map { QSystemSignalFrame(address: 32, signal: $0) })
        var board = QSystemBoardDecoder()
        let frames = board.decode(Self.invitedTwentyThreeAtAddress33 + Self.blankAtAddress33)
        #expect(frames.map { $0.encode() } == [Self.invitedTwentyThreeAtAddress33, Self.blankAtAddress33])
        #expect(frames.first?.mode == .blinkContinuously)
    }
}

@Suite struct QSystemDecoderTests {
    @Test func keyCodesOutsideTheBoxTableAreRejected() {
        var decoder = QSystemBoxDecoder()
        #expect(decoder.decode([0x01, 0x20, 0x35, 0x07, 0x01, 0x20, 0x30, 0x07]).isEmpty)
        #expect(decoder.discardedByteCount == 8)
        // Keys 31–34 are also signal codes (red on … green blinking): the same four bytes mean a key press from a
        // box and a lamp command from the host, so only the direction tells them apart.
        var signals = QSystemSignalDecoder()
        #expect(signals.decode(QSystemGoldenVectorTests.callKeyAtAddress32)
                == [QSystemSignalFrame(address: 32, signal: .red)])
        #expect(signals.decode([0x01, 0x20, 0x35, 0x07]) == [QSystemSignalFrame(address: 32, signal: .redBlinkSlow)])
    }

    @Test func boardFieldsOutOfRangeAreRejected() {
        let cases: [[UInt8]] = [
            [0x01, 0x21, 0x0C, 0x20, 0x32, 0x33, 0x07],   // mode 12: not a blink mode the source sends
            [0x01, 0x21, 0x00, 0x20, 0x1F, 0x33, 0x07],   // a control character
            [0x01, 0x21, 0x00, 0x20, 0x32, 0x33, 0x08],   // no 07 at the end
        ]
        for bytes in cases {
            var decoder = QSystemBoardDecoder()
            #expect(decoder.decode(bytes).isEmpty)
            #expect(decoder.flush().isEmpty)
            #expect(decoder.bufferedByteCount == 0)
        }
        #expect(QSystemDisplayMode(rawValue: 12) == nil)
        #expect(QSystemDisplayMode.blink(times: 3)?.rawValue == 3)
        #expect(QSystemDisplayFrame(address: 1, mode: .steady, characters: [0x41, 0x42]) == nil)
    }

    @Test func aTruncatedFrameGivesWayToTheNextOne() {
        var decoder = QSystemBoxDecoder()
        let frames = decoder.decode([0x01, 0x20, 0x31] + [0x01, 0x21, 0x34, 0x07])
        #expect(frames == [QSystemKeyFrame(address: 0x21, key: .finish)])
        #expect(decoder.discardedByteCount == 3)
    }

    @Test func flushDropsThePartialFrame() {
        var decoder = QSystemBoardDecoder()
        #expect(decoder.decode([0x01, 0x21, 0x7D, 0x20]).isEmpty)
        #expect(decoder.bufferedByteCount == 4)
        #expect(decoder.flush().isEmpty)
        #expect(decoder.bufferedByteCount == 0)
        #expect(decoder.discardedByteCount == 4)
    }

    // The weakness of a protocol without a checksum, stated as a test: a truncated frame followed by noise that
    // happens to read "key, 07" is a key press, and nothing in the bytes can tell.
    @Test func noiseThatCompletesATruncatedFrameIsAKeyPress() {
        var decoder = QSystemBoxDecoder()
        #expect(decoder.decode([0x01, 0x20] + [0x33, 0x07]) == [QSystemKeyFrame(address: 0x20, key: .redirect)])
    }

    // Garbage excludes 01 (the start byte) and 07 (the end byte): with no checksum, garbage ending a truncated frame
    // with "…07" would make a frame (see the test above). Truncated frames and frames with one field out of range
    // (never 01 or 07) go between the valid ones.
    @Test func boxDecoderResynchronises() {
        checkDecoderProperty(
            samples: { generator in
                let frame = QSystemKeyFrame(
                    address: UInt8.random(in: 0...255, using: &generator),
                    key: QSystemKey.allCases.randomElement(using: &generator) ?? .call)
                return SampleFrame(bytes: frame.encode(), frame: frame)
            },
            garbage: { generator in
                let frame = QSystemKeyFrame(address: UInt8.random(in: 0...255, using: &generator), key: .start)
                switch Int.random(in: 0..<4, using: &generator) {
                case 0: return truncated(frame.encode(), &generator)
                case 1:
                    var bytes = frame.encode()
                    let position = Bool.random(using: &generator) ? 2 : 3
                    bytes[position] = Self.randomByte(&generator, excluding: [0x01, 0x07, 0x31, 0x32, 0x33, 0x34])
                    return bytes
                default: return randomGarbage(&generator, excluding: [0x01, 0x07])
                }
            },
            makeDecoder: { QSystemBoxDecoder() })
    }

    // The lamp commands the host sends to boxes, as the mock box reads them: the same shape, signals 30-3D.
    @Test func signalDecoderResynchronises() {
        let signalBytes = Set(QSystemBoxSignal.allCases.map(\.rawValue))
        checkDecoderProperty(
            samples: { generator in
                let frame = QSystemSignalFrame(
                    address: UInt8.random(in: 0...255, using: &generator),
                    signal: QSystemBoxSignal.allCases.randomElement(using: &generator) ?? .off)
                return SampleFrame(bytes: frame.encode(), frame: frame)
            },
            garbage: { generator in
                let frame = QSystemSignalFrame(address: UInt8.random(in: 0...255, using: &generator), signal: .red)
                switch Int.random(in: 0..<4, using: &generator) {
                case 0: return truncated(frame.encode(), &generator)
                case 1:
                    var bytes = frame.encode()
                    let position = Bool.random(using: &generator) ? 2 : 3
                    bytes[position] = Self.randomByte(&generator, excluding: signalBytes.union([0x01, 0x07]))
                    return bytes
                default: return randomGarbage(&generator, excluding: [0x01, 0x07])
                }
            },
            makeDecoder: { QSystemSignalDecoder() })
    }

    @Test func boardDecoderResynchronises() {
        func randomFrame(_ generator: inout SeededGenerator) -> QSystemDisplayFrame {
            let modes: [QSystemDisplayMode] = [.steady, .blink, .blinkContinuously] + (2...11).compactMap {
                QSystemDisplayMode.blink(times: $0)
            }
            let range = QSystemDisplayFrame.characterRange
            let characters = (0..<3).map { _ in UInt8.random(in: range, using: &generator) }
            return QSystemDisplayFrame(
                address: UInt8.random(in: 0...255, using: &generator),
                mode: modes.randomElement(using: &generator) ?? .steady,
                characters: characters) ?? .blank(address: 0)
        }
        checkDecoderProperty(
            samples: { generator in
                let frame = randomFrame(&generator)
                return SampleFrame(bytes: frame.encode(), frame: frame)
            },
            garbage: { generator in
                let bytes = randomFrame(&generator).encode()
                switch Int.random(in: 0..<4, using: &generator) {
                case 0: return truncated(bytes, &generator)
                case 1:
                    // A mode out of range, a control character, or a wrong end byte.
                    var corrupted = bytes
                    switch Int.random(in: 0..<3, using: &generator) {
                    case 0: corrupted[2] = UInt8.random(in: 12...124, using: &generator)
                    case 1: corrupted[Int.random(in: 3...5, using: &generator)] = Self.randomByte(
                        &generator, excluding: Set([0x01, 0x07]).union(QSystemDisplayFrame.characterRange))
                    default: corrupted[6] = Self.randomByte(&generator, excluding: [0x01, 0x07])
                    }
                    return corrupted
                default: return randomGarbage(&generator, excluding: [0x01, 0x07])
                }
            },
            makeDecoder: { QSystemBoardDecoder() })
    }

    static func randomByte(_ generator: inout SeededGenerator, excluding excluded: Set<UInt8>) -> UInt8 {
        while true {
            let byte = UInt8.random(in: 0...255, using: &generator)
            if !excluded.contains(byte) { return byte }
        }
    }
}
