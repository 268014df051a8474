// Onbon BX-5K/6K ("字库卡") serial and network framing.
//
// Sources for the layout (cited again where each piece is used):
// - onbonlab/bx.k.java src/BxDataPack.java: Onbon's own packer. Header field order, little-endian addresses,
//   source 0x8000, device type 0xFE (any), protocol version 0x02, the four escape pairs, 8 × A5 and one 5A.
// - dmznlin/znlib Hardware/UMgrBXFontCard.pas: TBXHeader (2+2+3+1+1+1+1+1+2 = 14 bytes) and the CRC table,
//   computed over header + data with initial value 0 (CRC-16/ARC), sent low byte first.
// - onbonlab/BX-V-VI bx.dual.Aux.Data/5th动态区域用户手册.md §2: a single A5 is enough to mark a frame start;
//   checksums and lengths are taken over the unescaped bytes.
// - app-tools-zxw 2.2.4 (PyPI) SDK_硬件读写/LED显示屏/仰邦BX6K1_网口_使用公共封装函数.py: check mode byte,
//   0 = CRC16, 1 = 16-bit sum (little-endian), 2 = no check.

/// How the two check bytes of an Onbon frame are computed (header byte 8, "CheckMode").
public enum OnbonChecksumMode: UInt8, Equatable, Sendable, CaseIterable {
    /// CRC-16/ARC (initial value 0) over header and data, low byte first. What the gateway sends.
    case crc16 = 0x00
    /// The sum of header and data bytes modulo 65536, low byte first.
    case sum16 = 0x01
    /// No check: the two bytes may hold anything (Onbon's Java SDK default).
    case none = 0x02
}

/// One Onbon BX frame: the 14-byte header fields and the data field, unescaped.
///
/// On the wire: `A5`×8, then header + data + check bytes with `A5 A6 5A 5B` escaped, then `5A`.
public struct OnbonPacket: Equatable, Sendable {
    /// Screen address of the receiver; controllers answer to 0x8000, the PC's default address.
    public var destination: UInt16
    /// Address of the sender; the PC side uses 0x8000.
    public var source: UInt16
    /// Three reserved bytes, normally zero.
    public var reserved: [UInt8]
    /// Option byte (0 = no barcode sent, per Onbon's Java SDK).
    public var option: UInt8
    /// How the check bytes are computed.
    public var checksumMode: OnbonChecksumMode
    /// Display mode: 0 normal, 1 dynamic areas take priority over programs (app-tools-zxw comments).
    public var displayMode: UInt8
    /// Controller type, e.g. 0x51 BX-5K1, 0x61 BX-6K1; 0xFE addresses any type.
    public var deviceType: UInt8
    /// Protocol version; 0x02 for the BX-5K/6K protocol.
    public var protocolVersion: UInt8
    /// The data field: command group, command, and its parameters (or a reply).
    public var data: [UInt8]

    /// The PC's address, used as the source of requests and the destination of replies.
    public static let hostAddress: UInt16 = 0x8000
    /// The device type that matches any controller.
    public static let anyDeviceType: UInt8 = 0xFE
    /// Header length in bytes, unescaped.
    public static let headerLength = 14
    /// The longest data field this codec accepts. The controllers' own limits are smaller than this
    /// (text areas of a few hundred characters); anything longer on the line is noise.
    public static let maximumDataLength = 4096
    /// The longest frame on the wire: preamble, every body byte escaped, trailer.
    public static let maximumFrameLength = preambleLength + 2 * (headerLength + maximumDataLength + 2) + 1

    static let preambleLength = 8
    static let frameStart: UInt8 = 0xA5
    static let frameEnd: UInt8 = 0x5A

    /// A packet with the defaults of Onbon's SDK, except that it is CRC-checked.
    public init(
        destination: UInt16,
        source: UInt16 = OnbonPacket.hostAddress,
        reserved: [UInt8] = [0, 0, 0],
        option: UInt8 = 0,
        checksumMode: OnbonChecksumMode = .crc16,
        displayMode: UInt8 = 0,
        deviceType: UInt8 = OnbonPacket.anyDeviceType,
        protocolVersion: UInt8 = 0x02,
        data: [UInt8]
    ) {
        self.destination = destination
        self.source = source
        self.reserved = reserved
        self.option = option
        self.checksumMode = checksumMode
        self.displayMode = displayMode
        self.deviceType = deviceType
        self.protocolVersion = protocolVersion
        self.data = data
    }

    /// Header and data, unescaped and without check bytes: what the checksum covers.
    /// Data beyond `maximumDataLength` makes a frame every decoder rejects; the request encoders refuse it.
    public func checkedBytes() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.headerLength + data.count)
        OnbonBytes.append(destination, to: &bytes)
        OnbonBytes.append(source, to: &bytes)
        for index in 0..<3 { bytes.append(index < reserved.count ? reserved[index] : 0) }
        bytes += [option, checksumMode.rawValue, displayMode, deviceType, protocolVersion]
        OnbonBytes.append(UInt16(truncatingIfNeeded: data.count), to: &bytes)
        bytes += data
        return bytes
    }

    /// The check bytes for `bytes` in `mode`, as the two values sent (low byte first).
    static func checkValue(_ bytes: [UInt8], mode: OnbonChecksumMode) -> UInt16 {
        switch mode {
        case .crc16: Checksum.crc16ARC(bytes)
        case .sum16: bytes.reduce(UInt16(0)) { $0 &+ UInt16($1) }
        case .none: 0
        }
    }

    /// The frame as sent: preamble, escaped header + data + check bytes, trailer.
    public func encode() -> [UInt8] {
        var body = checkedBytes()
        OnbonBytes.append(Self.checkValue(body, mode: checksumMode), to: &body)
        var frame = [UInt8](repeating: Self.frameStart, count: Self.preambleLength)
        frame.reserveCapacity(Self.preambleLength + body.count * 2 + 1)
        for byte in body {
            switch byte {
            case 0xA5: frame += [0xA6, 0x02]
            case 0xA6: frame += [0xA6, 0x01]
            case 0x5A: frame += [0x5B, 0x02]
            case 0x5B: frame += [0x5B, 0x01]
            default: frame.append(byte)
            }
        }
        frame.append(Self.frameEnd)
        return frame
    }
}

/// Little-endian helpers shared by the Onbon files (namespaced so other families' helpers cannot clash).
enum OnbonBytes {
    static func append(_ value: UInt16, to bytes: inout [UInt8]) {
        bytes.append(UInt8(truncatingIfNeeded: value))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
    }

    static func append(_ value: UInt32, to bytes: inout [UInt8]) {
        for shift: UInt32 in [0, 8, 16, 24] { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    /// The UInt16 at `offset`, low byte first; nil past the end.
    static func uint16(_ bytes: [UInt8], at offset: Int) -> UInt16? {
        guard offset >= 0, offset + 1 < bytes.count else { return nil }
        return UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    /// The UInt32 at `offset`, low byte first; nil past the end.
    static func uint32(_ bytes: [UInt8], at offset: Int) -> UInt32? {
        guard offset >= 0, offset + 3 < bytes.count else { return nil }
        return (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << UInt32(8 * $1) }
    }
}
