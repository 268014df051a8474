// One dynamic text area of the real-time display command (A3 06) and the text inside it.
//
// Area layout, 27 bytes then the text (dmznlin/znlib UMgrBXFontCard.pas TBXArea; app-tools-zxw 2.2.4
// `_修改文字_生成命令`; the byte positions are confirmed by the CRCs of the captured frames in OnbonTests):
//   type 1 | x 2 | y 2 | width 2 | height 2 | area id 1 | line spacing 1 | run mode 1 | timeout 2 |
//   sound mode 1 | extension count 1 | alignment 1 | single line 1 | auto wrap 1 | effect 1 | exit 1 |
//   speed 1 | stay time 1 | text length 4 | text (GB 2312 with in-band escapes)
// Onbon's own Java sample (onbonlab/bx.k.java src/BxAreaDynamic.java) writes one more byte ("type setting")
// between the extension count and the alignment; the captured frames and the Python and Delphi drivers do not,
// and the captured frames' CRCs and lengths agree with them, so this codec follows them.

/// Where an area sits and how big it is, as the controller counts.
///
/// X and width are in columns of 8 pixels unless bit 15 is set, then in pixels (app-tools-zxw comments;
/// UMgrBXFontCard.pas "字节(8像素)单位"); y and height are in pixels.
public struct OnbonAreaLayout: Equatable, Sendable {
    /// Dynamic area number, from 0.
    public var areaID: UInt8
    /// Left edge (8-pixel columns, or pixels with bit 15 set).
    public var x: UInt16
    /// Top edge in pixels.
    public var y: UInt16
    /// Width (8-pixel columns, or pixels with bit 15 set).
    public var width: UInt16
    /// Height in pixels.
    public var height: UInt16

    /// Bit 15 of x or width: the value counts pixels instead of 8-pixel columns.
    public static let pixelUnits: UInt16 = 0x8000

    /// An area; x and width as the controller expects them (see `pixelUnits`).
    public init(areaID: UInt8, x: UInt16, y: UInt16, width: UInt16, height: UInt16) {
        self.areaID = areaID
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }
}

/// Text colours of single/dual-colour boards, written in-band as `\C1`, `\C2`, `\C3`.
///
/// Sources: app-tools-zxw 2.2.4 (`\C1` red, `\C2` green, `\C3` yellow) and an independent C# caller-board
/// program found in the public code index (same three codes).
public enum OnbonColour: UInt8, Equatable, Sendable, CaseIterable {
    /// `\C1`.
    case red = 1
    /// `\C2`.
    case green = 2
    /// `\C3` (red and green together on a dual-colour board).
    case yellow = 3
}

/// How the text enters the area (the "显示方式" byte). Values from UMgrBXFontCard.pas and app-tools-zxw.
public enum OnbonDisplayEffect: Equatable, Sendable {
    /// 01: appears at once.
    case immediate
    /// 02: typed out quickly.
    case typeOut
    /// 03: scrolls left.
    case scrollLeft
    /// 04: scrolls right.
    case scrollRight
    /// 05: scrolls up.
    case scrollUp
    /// 06: scrolls down.
    case scrollDown
    /// Another value, kept as sent.
    case other(UInt8)

    /// The byte on the wire.
    public var rawValue: UInt8 {
        switch self {
        case .immediate: 0x01
        case .typeOut: 0x02
        case .scrollLeft: 0x03
        case .scrollRight: 0x04
        case .scrollUp: 0x05
        case .scrollDown: 0x06
        case .other(let value): value
        }
    }

    /// The effect for a wire byte.
    public init(rawValue: UInt8) {
        switch rawValue {
        case 0x01: self = .immediate
        case 0x02: self = .typeOut
        case 0x03: self = .scrollLeft
        case 0x04: self = .scrollRight
        case 0x05: self = .scrollUp
        case 0x06: self = .scrollDown
        default: self = .other(rawValue)
        }
    }
}

/// Text for a dynamic area: optional font and colour escapes, then GB 2312 characters.
public struct OnbonText: Equatable, Sendable {
    /// The characters shown.
    public var string: String
    /// Colour escape written before the text, or none (the board's default colour).
    public var colour: OnbonColour?
    /// Font escape `\FOnnn` (font number 0...999 from the board's font table), or none.
    /// Seen as `\FO000`/`\FO001` in captured frames (see OnbonTests).
    public var font: Int?

    /// Text with optional colour and font.
    public init(_ string: String, colour: OnbonColour? = nil, font: Int? = nil) {
        self.string = string
        self.colour = colour
        self.font = font
    }

    /// The bytes on the wire: `\FOnnn`, `\Cn`, then the text in GB 2312.
    public func encode() throws(OnbonEncodingError) -> [UInt8] {
        var bytes: [UInt8] = []
        if let font {
            guard (0...999).contains(font) else { throw .fontNumberOutOfRange(font) }
            let digits = String(font)
            bytes += Array("\\FO".utf8) + Array(repeating: UInt8(ascii: "0"), count: 3 - digits.count)
                + Array(digits.utf8)
        }
        if let colour { bytes += Array("\\C".utf8) + [UInt8(ascii: "0") + colour.rawValue] }
        guard let text = ChineseText.encode(string, as: .gb2312) else { throw .textNotEncodableInGB2312(string) }
        return bytes + text
    }

    /// Reads leading font and colour escapes and decodes the rest as GB 2312; nil if the rest is not GB 2312.
    /// Escapes later in the text stay in `string` as typed.
    public init?(bytes: [UInt8]) {
        var rest = bytes[...]
        var colour: OnbonColour?
        var font: Int?
        while rest.first == UInt8(ascii: "\\") {
            let escape = Array(rest.prefix(6))
            if escape.count == 6, escape[1] == UInt8(ascii: "F"), escape[2] == UInt8(ascii: "O"),
               escape[3...].allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) {
                font = escape[3...].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
                rest = rest.dropFirst(6)
            } else if escape.count >= 3, escape[1] == UInt8(ascii: "C"),
                      escape[2] >= UInt8(ascii: "0"), let value = OnbonColour(rawValue: escape[2] - UInt8(ascii: "0")) {
                colour = value
                rest = rest.dropFirst(3)
            } else {
                break
            }
        }
        guard let string = ChineseText.decode(rest, as: .gb2312) else { return nil }
        self.init(string, colour: colour, font: font)
    }
}

/// One dynamic area with its display settings and text, as the A3 06 command carries it.
public struct OnbonDynamicArea: Equatable, Sendable {
    /// Area type; 0 for a dynamic area.
    public var areaType: UInt8 = 0
    /// Position, size and number.
    public var layout: OnbonAreaLayout
    /// Pixels between lines.
    public var lineSpacing: UInt8 = 0
    /// 0 loop, 1 stop on the last page, 2 loop then blank after `timeout`, 3 loop then show the last page
    /// after `timeout`, 4 play once, 5 play `timeout` times (onbonlab/bx.k.java src/BxAreaDynamic.java).
    public var runMode: UInt8 = 0
    /// Seconds (or repetitions in run mode 5) before the area times out.
    public var timeout: UInt16 = 0
    /// 0: silent. Voice modes need a sound data block this codec does not build.
    public var soundMode: UInt8 = 0
    /// Bits 0-1 horizontal (left, right, centre), bits 2-3 vertical (top, bottom, centre) (app-tools-zxw).
    public var alignment: UInt8 = 0
    /// 0x01 single line, 0x02 several lines.
    public var lineMode: UInt8 = 0x02
    /// 0x01 no automatic wrap, 0x02 wrap automatically.
    public var wrapMode: UInt8 = 0x02
    /// How the text enters.
    public var effect: OnbonDisplayEffect = .immediate
    /// How the text leaves.
    public var exitMode: UInt8 = 0
    /// Effect speed (0 fastest).
    public var speed: UInt8 = 0
    /// How long each page stays, in units of 0.5 s.
    public var stayTime: UInt8 = 10
    /// The text bytes: GB 2312 with in-band escapes. `text` reads and writes them as `OnbonText`.
    public var textBytes: [UInt8]

    /// An area showing `text` with default settings (immediate, multi-line, wrapped, 5 s per page).
    public init(layout: OnbonAreaLayout, text: OnbonText) throws(OnbonEncodingError) {
        self.layout = layout
        textBytes = try text.encode()
    }

    /// An area with raw text bytes.
    public init(layout: OnbonAreaLayout, textBytes: [UInt8]) {
        self.layout = layout
        self.textBytes = textBytes
    }

    /// The text with its leading escapes read, or nil if it is not GB 2312.
    public var text: OnbonText? { OnbonText(bytes: textBytes) }

    static let fixedLength = 27

    /// The area bytes (without the 2-byte length that precedes them in the command).
    public func encode() -> [UInt8] {
        var bytes: [UInt8] = [areaType]
        bytes.reserveCapacity(Self.fixedLength + textBytes.count)
        for value in [layout.x, layout.y, layout.width, layout.height] { OnbonBytes.append(value, to: &bytes) }
        bytes += [layout.areaID, lineSpacing, runMode]
        OnbonBytes.append(timeout, to: &bytes)
        bytes += [soundMode, 0x00, alignment, lineMode, wrapMode, effect.rawValue, exitMode, speed, stayTime]
        OnbonBytes.append(UInt32(truncatingIfNeeded: textBytes.count), to: &bytes)
        return bytes + textBytes
    }

    /// Parses area bytes; nil if the length field disagrees, or extension parameters are present
    /// (their layout is not documented in the sources we found).
    public init?(bytes: [UInt8]) {
        guard bytes.count >= Self.fixedLength,
              let x = OnbonBytes.uint16(bytes, at: 1), let y = OnbonBytes.uint16(bytes, at: 3),
              let width = OnbonBytes.uint16(bytes, at: 5), let height = OnbonBytes.uint16(bytes, at: 7),
              let timeout = OnbonBytes.uint16(bytes, at: 12), bytes[15] == 0,
              let textLength = OnbonBytes.uint32(bytes, at: 23),
              UInt64(textLength) == UInt64(bytes.count - Self.fixedLength)
        else { return nil }
        areaType = bytes[0]
        layout = OnbonAreaLayout(areaID: bytes[9], x: x, y: y, width: width, height: height)
        lineSpacing = bytes[10]
        runMode = bytes[11]
        self.timeout = timeout
        soundMode = bytes[14]
        alignment = bytes[16]
        lineMode = bytes[17]
        wrapMode = bytes[18]
        effect = OnbonDisplayEffect(rawValue: bytes[19])
        exitMode = bytes[20]
        speed = bytes[21]
        stayTime = bytes[22]
        textBytes = Array(bytes[Self.fixedLength...])
    }
}
