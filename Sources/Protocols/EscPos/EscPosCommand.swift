/// One command (or run of text) in the host → printer byte stream, as `EscPosCommandDecoder` reports it.
public enum EscPosCommand: Equatable, Sendable {
    /// ESC @ (1B 40).
    case initialize
    /// ESC a n (1B 61 n); n = 0/1/2 or '0'/'1'/'2'.
    case align(EscPosAlignment)
    /// GS ! n (1D 21 n): width and height multipliers, each 1...8.
    case characterSize(width: Int, height: Int)
    /// ESC ! n (1B 21 n): the combined print mode byte (python-escpos's double width/height).
    case printMode(EscPosPrintMode)
    /// ESC E n (1B 45 n): bold on if the lowest bit of n is set.
    case bold(Bool)
    /// FS & (1C 26) is `true`, FS . (1C 2E) is `false`.
    case chineseMode(Bool)
    /// Printable text between commands: GB18030 in Chinese mode, code page 437 otherwise. At most
    /// `EscPosCommandDecoder.maximumTextBytes` wire bytes per frame.
    case text(String)
    /// LF (0A).
    case lineFeed
    /// ESC d n (1B 64 n).
    case feedLines(UInt8)
    /// GS V m (1D 56 m) with `feed` nil, or GS V 65/66 n (1D 56 41/42 n) feeding n units before the cut.
    case cut(EscPosCutMode, feed: UInt8? = nil)
    /// GS ( k with cn = '1': one QR code function.
    case qrCode(EscPosQRFunction)
    /// DLE EOT n (10 04 n).
    case statusRequest(PrinterStatusRequest)
    /// GS a n (1D 61 n).
    case enableAutomaticStatusBack(AutomaticStatusMask)
    /// ESC t n (1B 74 n): the character table for single-byte text (`EscPosCodePage`); ESC @ selects 0 again.
    case codePage(UInt8)
    /// A known command the hall does not act on (see `EscPosOtherCommand`).
    case other(EscPosOtherCommand)

    /// The command's bytes. Text is encoded for the mode the printer is in: GB18030 in Chinese mode, else code
    /// page 437 with "?" for characters the table lacks; control characters always become "?".
    public func encoded(inChineseMode chineseMode: Bool = false, codePage: UInt8 = 0) -> [UInt8] {
        switch self {
        case .initialize: return EscPos.initialize
        case .align(let alignment): return EscPos.align(alignment)
        case .characterSize(let width, let height): return EscPos.characterSize(width: width, height: height)
        case .printMode(let mode): return EscPos.printMode(mode)
        case .bold(let isOn): return EscPos.bold(isOn)
        case .chineseMode(let isOn): return isOn ? EscPos.chineseModeOn : EscPos.chineseModeOff
        case .text(let text): return Self.textBytes(text, inChineseMode: chineseMode, codePage: codePage)
        case .lineFeed: return EscPos.lineFeed
        case .feedLines(let count): return EscPos.feedLines(count)
        case .cut(let mode, let feed): return EscPos.cut(mode, feed: feed)
        case .qrCode(let function): return EscPos.qrCode(function)
        case .statusRequest(let request): return EscPos.statusRequest(request)
        case .enableAutomaticStatusBack(let mask): return EscPos.enableAutomaticStatusBack(mask)
        case .codePage(let table): return [0x1B, 0x74, table]
        // The data passed unkept comes back as zeros: the same command, as long as it was on the wire.
        case .other(let command): return command.bytes + [UInt8](repeating: 0, count: command.dataCount)
        }
    }

    /// The bytes of a command sequence, following the Chinese mode the sequence itself switches (and ESC @ resets
    /// to `startsInChineseMode`, as `EscPosCommandDecoder` assumes).
    public static func encode(_ commands: [EscPosCommand], startsInChineseMode: Bool = false) -> [UInt8] {
        var chineseMode = startsInChineseMode
        var codePage: UInt8 = 0
        var bytes: [UInt8] = []
        for command in commands {
            bytes += command.encoded(inChineseMode: chineseMode, codePage: codePage)
            switch command {
            case .chineseMode(let isOn): chineseMode = isOn
            case .codePage(let table): codePage = table
            case .initialize: (chineseMode, codePage) = (startsInChineseMode, 0)
            default: break
            }
        }
        return bytes
    }

    /// `text` with control characters (which would be read as commands) replaced by "?".
    static func printable(_ text: String) -> String {
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            let isControl = scalar.value < 0x20 || scalar.value == 0x7F
            scalars.append(isControl ? "?" : scalar)
        }
        return String(scalars)
    }

    private static func textBytes(_ text: String, inChineseMode chineseMode: Bool, codePage: UInt8) -> [UInt8] {
        let printable = printable(text)
        if chineseMode { return ChineseText.encode(printable, as: .gb18030) ?? [] }
        // A table the decoder does not know reads as 437 (EscPosCommandDecoder): written as 437 too.
        return EscPosCodePage.encode(printable, table: codePage) ?? EscPosCodePage.encode(printable, table: 0) ?? []
    }
}
