import Protocols
import Testing

/// CRC vectors from outside our code: the Modbus specification's examples and the CRC catalogue's check values.
@Suite struct ChecksumTests {
    // Modbus over serial line, and the design notes: read 10 holding registers from unit 1 → CRC C5 CD on the wire.
    @Test func modbusReadHoldingRegistersRequest() {
        let crc = Checksum.crc16Modbus([0x01, 0x03, 0x00, 0x00, 0x00, 0x0A])
        #expect([UInt8(crc & 0xFF), UInt8(crc >> 8)] == [0xC5, 0xCD])
    }

    // MODBUS over Serial Line V1.02, §6.2.2 example: 02 07 → CRC 0x1241, sent 41 12.
    @Test func modbusSpecificationExample() {
        #expect(Checksum.crc16Modbus([0x02, 0x07]) == 0x1241)
    }

    // Catalogue of parametrised CRC algorithms (reveng): check value over ASCII "123456789".
    @Test func catalogueCheckValues() {
        let check = Array("123456789".utf8)
        #expect(Checksum.crc16Modbus(check) == 0x4B37)
        #expect(Checksum.crc16ARC(check) == 0xBB3D)
    }

    @Test func sumModulo256Wraps() {
        #expect(Checksum.sum8([0xFF, 0x02]) == 0x01)
        #expect(Checksum.sum8([]) == 0)
    }
}

@Suite struct RegisterTextTests {
    @Test func textIsHighByteFirstAndStopsAtTheFirstNul() {
        // "0231" in two registers: '0' '2' = 0x3032, '3' '1' = 0x3331, then padding.
        #expect(RegisterText.bytes(from: [0x3032, 0x3331, 0x0000, 0x0000]) == Array("0231".utf8))
        #expect(RegisterText.bytes(from: [0x4100, 0x4242]) == [0x41])
        #expect(RegisterText.registers(from: Array("ABC".utf8), count: 3) == [0x4142, 0x4300, 0x0000])
    }
}

@Suite struct RatingScaleTests {
    @Test func threeKeysMapByNameOntoTheNationalScale() {
        let scale = RatingScale.threeKey
        #expect(scale.key(forCode: 1)?.level == .satisfied)
        #expect(scale.key(forCode: 2)?.level == .basicallySatisfied)
        #expect(scale.key(forCode: 3)?.level == .dissatisfied)
        #expect(scale.key(forCode: 4) == nil)
        #expect(NationalRatingLevel.verySatisfied.label == "非常满意")
        #expect(NationalRatingLevel.veryDissatisfied.rawValue == 1)
    }

    @Test func fourKeysAndFiveLevelsCoverTheNationalScale() {
        #expect(RatingScale.fourKey.keys.map(\.level) == [.verySatisfied, .satisfied, .basicallySatisfied, .dissatisfied])
        #expect(RatingScale.fiveLevel.key(forCode: 5)?.label == "非常满意")
        #expect(RatingScale.fiveLevel.key(forCode: 1)?.label == "非常不满意")
        #expect(RatingScale.fiveLevel.keys.count == 5)
        #expect(RatingScale.standard.map(\.name) == ["three-key", "four-key", "five-level"])
        #expect(RatingScale.standard.map(\.keys.count) == [3, 4, 5])
    }
}

/// Byte values from outside our code: Python's codecs (`'请A023号'.encode('gb18030')`) and the GB 2312 code chart.
@Suite struct ChineseTextTests {
    @Test func gb18030MatchesPythonsCodec() {
        let bytes: [UInt8] = [199, 235, 65, 48, 50, 51, 186, 197, 181, 189, 53, 186, 197, 180, 176, 191, 218]
        #expect(ChineseText.encode("请A023号到5号窗口", as: .gb18030) == bytes)
        #expect(ChineseText.decode(bytes, as: .gb18030) == "请A023号到5号窗口")
    }

    @Test func gb2312CodesAndItsLimits() {
        // 啊 is the first hanzi of GB 2312, row 16 cell 1: B0 A1.
        #expect(ChineseText.encode("啊", as: .gb2312) == [0xB0, 0xA1])
        // 㐀 (U+3400) is in GB 18030 (four bytes: 81 39 EE 39) but not in GB 2312.
        #expect(ChineseText.encode("㐀", as: .gb18030) == [0x81, 0x39, 0xEE, 0x39])
        #expect(ChineseText.encode("㐀", as: .gb2312) == nil)
        #expect(ChineseText.decode([0xB0], as: .gb2312) == nil)
    }
}
