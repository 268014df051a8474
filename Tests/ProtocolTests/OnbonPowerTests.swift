import Protocols
import Testing

/// The screen on/off command of Onbon BX-5/6 controllers (group A3, command 00).
///
/// Data field from onbonlab/bx.k.java src/BxCmdTurnOnOff.java: group, command, reply flag, `r0, r1` (00 00), then
/// `0x01 - on` or `0x02 - off`; A3 00 is `CMD_TURN_ON_OFF` in that SDK's BxCmdCode.java. No captured frame was found,
/// so the packets below were framed by hand (header as in the published ping and clear frames of app-tools-zxw
/// 2.2.4) with a CRC-16/ARC computed by an independent script that also reproduces the published clear frame's
/// 51 F8.
@Suite struct OnbonPowerTests {
    static let header: [UInt8] = [0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5,
                                  0x01, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFE, 0x02, 0x06, 0x00]
    static let on = header + [0xA3, 0x00, 0x01, 0x00, 0x00, 0x01, 0x79, 0xEA, 0x5A]
    static let off = header + [0xA3, 0x00, 0x01, 0x00, 0x00, 0x02, 0x39, 0xEB, 0x5A]

    @Test(arguments: [(true, on), (false, off)])
    func screenOnAndOffAreTheSDKsBytes(on: Bool, frame: [UInt8]) throws {
        let packet = try OnbonPacket.request(OnbonRequest(.setPower(on: on)), to: 1)
        #expect(packet.encode() == frame)
        var decoder = OnbonDecoder()
        let decoded = decoder.decode(frame)
        #expect(decoded == [packet])
        #expect(decoded.first.flatMap { OnbonRequest(data: $0.data) } == OnbonRequest(.setPower(on: on)))
    }

    @Test func anotherParameterIsKeptAsIs() throws {
        // 03 is neither on nor off: kept raw, so it re-encodes unchanged.
        let request = try #require(OnbonRequest(data: [0xA3, 0x00, 0x01, 0x00, 0x00, 0x03]))
        #expect(request.command == .other(group: 0xA3, command: 0x00, parameters: [0x00, 0x00, 0x03]))
        #expect(try request.encode() == [0xA3, 0x00, 0x01, 0x00, 0x00, 0x03])
    }
}
