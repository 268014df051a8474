import Protocols
import Testing

/// Writes "A5 A5 …" as bytes, so vectors can be pasted exactly as their sources print them.
private func hex(_ text: String) -> [UInt8] {
    text.split(separator: " ").map { UInt8($0, radix: 16)! }
}

private let preamble = "A5 A5 A5 A5 A5 A5 A5 A5"

private func decodeAll(_ bytes: [UInt8], unchecked: Bool = false) -> [OnbonPacket] {
    var decoder = OnbonDecoder(acceptsUncheckedFrames: unchecked)
    return decoder.decode(bytes) + decoder.flush()
}

/// Golden frames from outside our code. Each source is named next to its bytes.
@Suite struct OnbonGoldenFrameTests {
    // app-tools-zxw 2.2.4 (PyPI), app_tools_zxw/SDK_硬件读写/LED显示屏/仰邦BX6K1_网口_使用公共封装函数.py, LED通讯.ping:
    // a literal frame (the same bytes are also a comment "//ping" in a public STM32 firmware found in the code index).
    static let ping = hex(preamble + " 01 00 00 80 00 00 00 00 00 00 FE 02 05 00 A2 00 01 00 00 68 F8 5A")
    // Same file, LED通讯.清屏 (clear screen).
    static let clearScreen = hex(preamble + " 01 00 00 80 00 00 00 00 00 00 FE 02 05 00 A3 10 01 00 00 51 F8 5A")

    @Test func pingMatchesThePublishedFrame() throws {
        let packet = try OnbonPacket.request(OnbonRequest(.ping), to: 1)
        #expect(packet.encode() == Self.ping)
        let decoded = decodeAll(Self.ping)
        #expect(decoded == [packet])
        #expect(decoded.first.flatMap { OnbonRequest(data: $0.data) } == OnbonRequest(.ping))
    }

    @Test func clearScreenMatchesThePublishedFrame() throws {
        let packet = try OnbonPacket.request(OnbonRequest(.clearScreen), to: 1)
        #expect(packet.encode() == Self.clearScreen)
        #expect(decodeAll(Self.clearScreen).first.flatMap { OnbonRequest(data: $0.data) } == OnbonRequest(.clearScreen))
    }

    // A public STM32 firmware that talks to BX boards (code index; its file defines Reback2PC, deleteall, Send_time):
    // the ACK it sends to the PC (destination 0x8000, source 1, A0 00, error 0), CRC 64 DC.
    @Test func acknowledgementMatchesAPublicFirmware() {
        let ack = hex(preamble + " 00 80 01 00 00 00 00 00 00 00 FE 02 05 00 A0 00 00 00 00 64 DC 5A")
        #expect(OnbonPacket.reply(.acknowledged, from: 1).encode() == ack)
        #expect(decodeAll(ack).first.flatMap { OnbonReply(data: $0.data) } == .acknowledged)
    }

    // Same firmware: "deleteall" (A3 06, process mode 2, delete FF = all areas, no areas), CRC 67 CC.
    @Test func deleteAllAreasFromAPublicFirmware() {
        let frame = hex(preamble + " 01 00 00 80 00 00 00 00 00 00 FE 02 07 00 A3 06 01 02 00 FF 00 67 CC 5A")
        let packets = decodeAll(frame)
        #expect(packets.count == 1)
        let update = OnbonDynamicAreaUpdate(processMode: 2, deletion: .all, areas: [])
        let expected = OnbonRequest(.updateDynamicAreas(update))
        #expect(packets.first.flatMap { OnbonRequest(data: $0.data) } == expected)
        #expect(packets.first?.encode() == frame)
    }

    // Same firmware: setting the clock (A2 03, BCD date) and reading parameters (A1 02), CRCs B0 3F and 2D 40.
    // Commands this codec does not type come back as `.other` and re-encode unchanged.
    @Test func untypedCommandsFromAPublicFirmwareRoundTrip() throws {
        let clock = hex(preamble + " 01 00 00 80 00 00 00 00 00 00 FE 02 0D 00 A2 03 01 08 00 13 20 01 25 11 17 26"
            + " 05 B0 3F 5A")
        let parameters = hex(preamble + " 01 00 00 80 00 00 00 00 00 00 FE 02 05 00 A1 02 01 00 00 2D 40 5A")
        let packets = decodeAll(clock + parameters)
        #expect(packets.count == 2)
        let request = try #require(packets.first.flatMap { OnbonRequest(data: $0.data) })
        #expect(request.command == .other(group: 0xA2, command: 0x03, parameters: hex("08 00 13 20 01 25 11 17 26 05")))
        #expect(try OnbonPacket.request(request, to: 1).encode() == clock)
        #expect(packets.last?.encode() == parameters)
    }

    // A public Python script in the code index that replays three captured A3 06 frames (temperature, humidity,
    // blank) to a BX board as one byte string: reply flag 02, font escape "\FO000", pixel-sized 64×12 areas.
    static let capturedStream = hex(
        preamble + " 01 00 00 80 00 00 00 00 00 00 FE 02 35 00 A3 06 02 00 00 00 01 2C 00 00 00 00 0C 00 40 00 0C 00 01"
            + " 0A 01 02 00 00 00 00 01 01 01 00 17 02 11 00 00 00 5C 46 4F 30 30 30 54 45 4D 50 45 52 3A 32 31 A1 E6"
            + " 82 DA 5A " + preamble + " 01 00 00 80 00 00 00 00 00 00 FE 02 33 00 A3 06 02 00 00 00 01 2A 00 00 00"
            + " 00 18 00 40 00 0C 00 01 0A 01 02 00 00 00 00 01 01 01 00 17 02 0F 00 00 00 5C 46 4F 30 30 30 48 55 4D"
            + " 3A 36 36 25 52 48 36 7A 5A " + preamble + " 01 00 00 80 00 00 00 00 00 00 FE 02 2C 00 A3 06 02 00 00"
            + " 00 01 23 00 00 00 00 24 00 40 00 0C 00 01 0A 01 02 00 00 00 00 01 01 01 00 17 02 08 00 00 00 5C 46 4F"
            + " 30 30 30 20 20 DA F6 5A")

    @Test func capturedTextFramesDecodeToTypedAreas() throws {
        let packets = decodeAll(Self.capturedStream)
        #expect(packets.count == 3)
        let requests = packets.compactMap { OnbonRequest(data: $0.data) }
        #expect(requests.map(\.replyFlag) == [2, 2, 2])
        let areas = requests.compactMap { request -> OnbonDynamicArea? in
            guard case .updateDynamicAreas(let update) = request.command else { return nil }
            return update.areas.first
        }
        let layouts = [12, 24, 36].map { OnbonAreaLayout(areaID: 1, x: 0, y: $0, width: 64, height: 12) }
        #expect(areas.map(\.layout) == layouts)
        #expect(areas.map(\.text) == [
            OnbonText("TEMPER:21℃", font: 0), OnbonText("HUM:66%RH", font: 0), OnbonText("  ", font: 0),
        ])
        #expect(areas.first?.effect == .immediate)
        #expect(areas.first?.speed == 0x17)
        #expect(areas.first?.stayTime == 2)
        #expect(areas.first?.timeout == 2)
        // Re-encoding the typed requests gives the captured bytes back.
        let reencoded = try requests.flatMap { try OnbonPacket.request($0, to: 1).encode() }
        #expect(reencoded == Self.capturedStream)
    }
}

/// Frames produced by an independent encoder, app-tools-zxw 2.2.4 from PyPI, through scripts/onbon_reference_frames.py
/// (header: destination 1, source 0x8001, device type 0x61 = BX-6K1). Regenerate with the command in that script.
@Suite struct OnbonIndependentEncoderTests {
    private func packet(_ data: [UInt8]) -> OnbonPacket {
        OnbonPacket(destination: 1, source: 0x8001, deviceType: 0x61, data: data)
    }

    private func check(_ frame: [UInt8], is expected: OnbonRequest) throws {
        #expect(try packet(expected.encode()).encode() == frame)
        let decoded = decodeAll(frame)
        #expect(decoded.count == 1)
        #expect(decoded.first.flatMap { OnbonRequest(data: $0.data) } == expected)
    }

    @Test func redTextScrollingLeft() throws {
        // text_red_scroll
        let frame = hex(preamble + " 01 00 01 80 00 00 00 00 00 00 61 02 2D 00 A3 06 01 00 00 00 01 24 00 00 00 00 00"
            + " 00 40 00 20 00 04 00 00 00 00 00 00 00 01 01 03 00 0A 00 09 00 00 00 5C 43 31 30 31 32 33 34 35 9F 3B"
            + " 5A")
        var area = try OnbonDynamicArea(
            layout: OnbonAreaLayout(areaID: 4, x: 0, y: 0, width: 64, height: 32),
            text: OnbonText("012345", colour: .red))
        area.lineMode = 0x01
        area.wrapMode = 0x01
        area.effect = .scrollLeft
        area.speed = 10
        area.stayTime = 0
        try check(frame, is: OnbonRequest(.updateDynamicAreas(OnbonDynamicAreaUpdate(areas: [area]))))
    }

    @Test func greenChineseTextAfterDeletingAllAreas() throws {
        // text_green_chinese: the CRC 76 5B is escaped (5B → 5B 01).
        let frame = hex(preamble + " 01 00 01 80 00 00 00 00 00 00 61 02 38 00 A3 06 01 01 00 FF 01 2F 00 00 10 80 00"
            + " 00 30 80 10 00 01 00 00 00 00 00 00 00 02 02 01 00 00 05 14 00 00 00 5C 43 32 C7 EB 41 30 32 33 BA C5"
            + " B5 BD 35 BA C5 B4 B0 BF DA 5B 01 76 5A")
        let layout = OnbonAreaLayout(
            areaID: 1, x: 16 | OnbonAreaLayout.pixelUnits, y: 0, width: 48 | OnbonAreaLayout.pixelUnits, height: 16)
        var area = try OnbonDynamicArea(layout: layout, text: OnbonText("请A023号到5号窗口", colour: .green))
        area.stayTime = 5
        let update = OnbonDynamicAreaUpdate(processMode: 1, deletion: .all, areas: [area])
        try check(frame, is: OnbonRequest(.updateDynamicAreas(update)))
    }

    @Test func yellowTextWithEscapedBytes() throws {
        // text_yellow_escaped: 'Z' 5A, '[' 5B and 'ア' A5 A2 in the text are escaped.
        let frame = hex(preamble + " 01 00 01 80 00 00 00 00 00 00 61 02 2C 00 A3 06 01 00 00 00 01 23 00 00 00 00 00"
            + " 00 40 00 20 00 04 00 01 00 00 00 00 00 01 01 02 00 01 04 08 00 00 00 5C 43 33 5B 02 5B 01 A6 02 A2 5D"
            + " D2 6B 5A")
        var area = try OnbonDynamicArea(
            layout: OnbonAreaLayout(areaID: 4, x: 0, y: 0, width: 64, height: 32),
            text: OnbonText("Z[ア]", colour: .yellow))
        area.runMode = 1
        area.lineMode = 0x01
        area.wrapMode = 0x01
        area.effect = .typeOut
        area.speed = 1
        area.stayTime = 4
        try check(frame, is: OnbonRequest(.updateDynamicAreas(OnbonDynamicAreaUpdate(areas: [area]))))
    }

    @Test func fixedBrightness() throws {
        // brightness_10: mode 01 (fixed), level 10, the package fills the schedule with 01.
        let frame = hex(preamble + " 01 00 01 80 00 00 00 00 00 00 61 02 37 00 A3 02 01 00 00 01 0A"
            + String(repeating: " 01", count: 48) + " C6 43 5A")
        let brightness = OnbonBrightness(mode: .fixed, current: 10, halfHourLevels: Array(repeating: 1, count: 48))
        try check(frame, is: OnbonRequest(.setBrightness(brightness)))
    }
}

@Suite struct OnbonCodecTests {
    @Test func textThatGB2312CannotEncodeIsAnError() {
        // 㐀 (U+3400) is outside GB 2312.
        #expect(throws: OnbonEncodingError.textNotEncodableInGB2312("号㐀")) {
            try OnbonCommand.showText(OnbonText("号㐀"), in: OnbonAreaLayout(areaID: 0, x: 0, y: 0, width: 8, height: 16))
        }
    }

    @Test func oversizedRequestsAreErrors() {
        let layout = OnbonAreaLayout(areaID: 0, x: 0, y: 0, width: 8, height: 16)
        let long = String(repeating: "A", count: OnbonPacket.maximumDataLength)
        #expect(throws: OnbonEncodingError.dataTooLong(byteCount: 4096 + 9 + 27)) {
            try OnbonRequest(OnbonCommand.showText(OnbonText(long), in: layout)).encode()
        }
        #expect(throws: OnbonEncodingError.wrongScheduleLength(3)) {
            try OnbonRequest(.setBrightness(OnbonBrightness(mode: .scheduled, current: 0, halfHourLevels: [1, 2, 3])))
                .encode()
        }
        #expect(throws: OnbonEncodingError.fontNumberOutOfRange(1000)) { try OnbonText("A", font: 1000).encode() }
    }

    @Test func repliesRoundTrip() {
        for reply in [OnbonReply.acknowledged, .rejected(.busy), .rejected(.checksumError),
                      .other(group: 0xA1, command: 0x02, error: .none, data: [1, 2, 3])] {
            #expect(OnbonReply(data: reply.encode()) == reply)
        }
        #expect(OnbonReply(data: [0xA0, 0x01, 0x05, 0, 0]) == .rejected(.checksumError))
        #expect(OnbonReply(data: [0xA0, 0x00]) == nil)
    }

    @Test func sum16AndUncheckedFrames() {
        let summed = OnbonPacket(destination: 7, checksumMode: .sum16, data: [0xA2, 0x00, 0x01, 0x00, 0x00])
        #expect(decodeAll(summed.encode()) == [summed])
        let unchecked = OnbonPacket(destination: 7, checksumMode: .none, data: [0xA2, 0x00, 0x01, 0x00, 0x00])
        #expect(decodeAll(unchecked.encode()).isEmpty)
        #expect(decodeAll(unchecked.encode(), unchecked: true) == [unchecked])
    }

    @Test func resynchronisesAfterDamage() {
        let ping = OnbonGoldenFrameTests.ping
        var badCRC = ping
        badCRC[ping.count - 2] ^= 0x01
        var badLength = ping
        badLength[20] = 0x06
        let badEscape = Array(ping.prefix(22)) + [0xA6, 0x03] + Array(ping.suffix(8))
        let stream = [0x00, 0x5A] + badCRC + [0x13] + Array(ping.prefix(15)) + badLength + badEscape + ping
        var decoder = OnbonDecoder()
        var frames: [OnbonPacket] = []
        for byte in stream { frames += decoder.decode([byte]) }
        frames += decoder.flush()
        #expect(frames.count == 1)
        #expect(decoder.discardedByteCount == stream.count - ping.count)
        #expect(decoder.checksumFailureCount == 1, "the bad CRC; a bad length or escape is no checksum failure")
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func flushDropsAPartialFrame() {
        var decoder = OnbonDecoder()
        #expect(decoder.decode(OnbonGoldenFrameTests.ping.dropLast()).isEmpty)
        #expect(decoder.bufferedByteCount == OnbonGoldenFrameTests.ping.count - 1)
        #expect(decoder.flush().isEmpty)
        #expect(decoder.bufferedByteCount == 0)
        #expect(decoder.decode(OnbonGoldenFrameTests.ping).count == 1)
    }

    @Test func anOverlongBodyIsDroppedWithoutGrowingTheBuffer() {
        var decoder = OnbonDecoder()
        let flood = [0xA5] + [UInt8](repeating: 0x11, count: OnbonPacket.maximumFrameLength * 2)
        #expect(decoder.decode(flood).isEmpty)
        #expect(decoder.bufferedByteCount <= decoder.maximumBufferedBytes)
        #expect(decoder.decode(OnbonGoldenFrameTests.ping).count == 1)
    }
}

/// The shared decoder property: random valid frames among garbage, truncated and corrupted frames, random splits.
@Suite struct OnbonDecoderPropertyTests {
    private static func randomPacket(_ generator: inout SeededGenerator) -> OnbonPacket {
        let count = Int.random(in: 0...80, using: &generator)
        let data = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return OnbonPacket(
            destination: UInt16.random(in: 0...UInt16.max, using: &generator),
            source: UInt16.random(in: 0...UInt16.max, using: &generator),
            reserved: (0..<3).map { _ in UInt8.random(in: 0...255, using: &generator) },
            option: UInt8.random(in: 0...255, using: &generator),
            checksumMode: Bool.random(using: &generator) ? .crc16 : .sum16,
            displayMode: UInt8.random(in: 0...255, using: &generator),
            deviceType: UInt8.random(in: 0...255, using: &generator),
            protocolVersion: 0x02,
            data: data)
    }

    @Test func validFramesSurviveGarbageAndRandomSplits() {
        checkDecoderProperty(
            samples: { generator in
                let packet = Self.randomPacket(&generator)
                return SampleFrame(bytes: packet.encode(), frame: packet)
            },
            garbage: { generator in
                switch Int.random(in: 0..<3, using: &generator) {
                case 0:
                    return randomGarbage(&generator, excluding: [0xA5])
                case 1:
                    return truncated(Self.randomPacket(&generator).encode(), &generator)
                default:
                    // Corrupt one check byte (escaped or not, the frame is then wrong or its escape is).
                    var frame = Self.randomPacket(&generator).encode()
                    frame[frame.count - 2] ^= UInt8.random(in: 1...255, using: &generator) & 0x0F | 0x01
                    return frame
                }
            },
            makeDecoder: { OnbonDecoder() })
    }
}
