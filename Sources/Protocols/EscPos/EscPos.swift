/// The ESC/POS commands the hall sends to its ticket printers, as bytes.
///
/// Codes follow Epson's ESC/POS command reference; the tests compare them with python-escpos 3.1's
/// `escpos.constants` and with the bytes its `Dummy` printer records.
public enum EscPos {
    /// ESC: starts most commands.
    public static let escape: UInt8 = 0x1B
    /// FS: starts the Kanji (Chinese) commands.
    public static let fileSeparator: UInt8 = 0x1C
    /// GS: starts the graphics, size, cut and status-back commands.
    public static let groupSeparator: UInt8 = 0x1D
    /// DLE: starts the real-time commands.
    public static let dataLinkEscape: UInt8 = 0x10
    /// LF: print the line buffer and feed one line.
    public static let lineFeedByte: UInt8 = 0x0A

    /// ESC @ (1B 40): clear the print buffer and reset every mode to its power-on value.
    public static let initialize: [UInt8] = [0x1B, 0x40]
    /// LF (0A): print and feed one line.
    public static let lineFeed: [UInt8] = [0x0A]
    /// FS & (1C 26): Chinese mode on; following text is GB18030 (GB 2312 on older printers).
    public static let chineseModeOn: [UInt8] = [0x1C, 0x26]
    /// FS . (1C 2E): Chinese mode off; following text is single-byte (code page 437 after ESC @).
    public static let chineseModeOff: [UInt8] = [0x1C, 0x2E]

    /// ESC a n (1B 61 n): justification of the following lines.
    public static func align(_ alignment: EscPosAlignment) -> [UInt8] {
        [0x1B, 0x61, alignment.rawValue]
    }

    /// GS ! n (1D 21 n): character size; width multiplier in the high nibble, height in the low one (each 1...8,
    /// clamped).
    public static func characterSize(width: Int, height: Int) -> [UInt8] {
        [0x1D, 0x21, characterSizeParameter(width: width, height: height)]
    }

    /// The n of GS ! n for a width and height multiplier (each clamped to 1...8).
    public static func characterSizeParameter(width: Int, height: Int) -> UInt8 {
        let width = UInt8(min(max(width, 1), 8)) - 1
        let height = UInt8(min(max(height, 1), 8)) - 1
        return width << 4 | height
    }

    /// ESC ! n (1B 21 n): select print mode (font, emphasis, double height/width, underline in one byte).
    public static func printMode(_ mode: EscPosPrintMode) -> [UInt8] {
        [0x1B, 0x21, mode.rawValue]
    }

    /// ESC E n (1B 45 n): emphasised (bold) on or off.
    public static func bold(_ isOn: Bool) -> [UInt8] {
        [0x1B, 0x45, isOn ? 1 : 0]
    }

    /// ESC d n (1B 64 n): print and feed n lines.
    public static func feedLines(_ count: UInt8) -> [UInt8] {
        [0x1B, 0x64, count]
    }

    /// GS V m (1D 56 00 / 01): cut now; or GS V m n (1D 56 41/42 n): feed n motion units, then cut.
    public static func cut(_ mode: EscPosCutMode, feed: UInt8? = nil) -> [UInt8] {
        guard let feed else { return [0x1D, 0x56, mode == .full ? 0x00 : 0x01] }
        return [0x1D, 0x56, mode == .full ? 0x41 : 0x42, feed]
    }

    /// DLE EOT n (10 04 n): ask for one status byte now, even while the printer is busy or offline.
    public static func statusRequest(_ request: PrinterStatusRequest) -> [UInt8] {
        [0x10, 0x04, request.rawValue]
    }

    /// GS a n (1D 61 n): send four automatic-status-back bytes whenever a status in `mask` changes (0 disables).
    public static func enableAutomaticStatusBack(_ mask: AutomaticStatusMask) -> [UInt8] {
        [0x1D, 0x61, mask.rawValue]
    }

    /// GS ( k: one QR code function (cn = '1'), with its little-endian parameter length.
    public static func qrCode(_ function: EscPosQRFunction) -> [UInt8] {
        let parameters: [UInt8]
        switch function {
        case .selectModel(let model): parameters = [0x41, model.rawValue, 0x00]
        case .moduleSize(let size): parameters = [0x43, size]
        case .errorCorrection(let level): parameters = [0x45, level.rawValue]
        case .store(let data): parameters = [0x50, 0x30] + data
        case .print: parameters = [0x51, 0x30]
        }
        // cn + fn + parameters; a store longer than 65,533 bytes cannot be expressed, so it is cut there.
        let body = Array(([0x31] + parameters).prefix(0xFFFF))
        return [0x1D, 0x28, 0x6B, UInt8(body.count & 0xFF), UInt8(body.count >> 8)] + body
    }

    /// The five GS ( k commands python-escpos sends for `qr(payload, native=True)`: model, module size, error
    /// correction, store the payload (UTF-8), print it.
    public static func qrCode(
        _ payload: String, model: EscPosQRModel = .model2, moduleSize: UInt8 = 3,
        errorCorrection: EscPosQRErrorCorrection = .low
    ) -> [UInt8] {
        qrCode(.selectModel(model)) + qrCode(.moduleSize(moduleSize)) + qrCode(.errorCorrection(errorCorrection))
            + qrCode(.store(Array(payload.utf8))) + qrCode(.print)
    }

    /// `text` wrapped in FS & … FS . as GB18030 when it holds anything beyond printable ASCII, else as is.
    /// Control characters become "?" so that text can never turn into a command.
    public static func chineseText(_ text: String) -> [UInt8] {
        let printable = EscPosCommand.printable(text)
        if printable.unicodeScalars.allSatisfy({ $0.isASCII }) { return Array(printable.utf8) }
        return chineseModeOn + (ChineseText.encode(printable, as: .gb18030) ?? []) + chineseModeOff
    }
}

/// ESC a n: how following lines are justified.
public enum EscPosAlignment: UInt8, Sendable, CaseIterable {
    /// n = 0 (or '0').
    case left = 0
    /// n = 1 (or '1').
    case center = 1
    /// n = 2 (or '2').
    case right = 2
}

/// GS V: how the paper is cut.
public enum EscPosCutMode: Equatable, Sendable, CaseIterable {
    /// m = 0, '0' or 65 (feed then cut).
    case full
    /// m = 1, '1' or 66 (feed then cut), leaving one point uncut.
    case partial
}

/// ESC ! n: the single-byte print mode python-escpos uses for `set(double_width=…, double_height=…)`.
public struct EscPosPrintMode: OptionSet, Equatable, Sendable {
    /// The n of ESC ! n.
    public var rawValue: UInt8
    /// A mode from its ESC ! parameter.
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Bit 0: font B instead of font A.
    public static let fontB = EscPosPrintMode(rawValue: 0x01)
    /// Bit 3: emphasised.
    public static let emphasized = EscPosPrintMode(rawValue: 0x08)
    /// Bit 4: double height.
    public static let doubleHeight = EscPosPrintMode(rawValue: 0x10)
    /// Bit 5: double width.
    public static let doubleWidth = EscPosPrintMode(rawValue: 0x20)
    /// Bit 7: underline.
    public static let underline = EscPosPrintMode(rawValue: 0x80)
}

/// DLE EOT n: which status byte the printer sends back.
public enum PrinterStatusRequest: UInt8, Sendable, CaseIterable {
    /// n = 1: printer status (online/offline).
    case printer = 1
    /// n = 2: offline cause (cover open, paper-end stop, error).
    case offlineCause = 2
    /// n = 3: error cause (auto-cutter, unrecoverable, auto-recoverable).
    case errorCause = 3
    /// n = 4: roll paper sensors (near end, paper out).
    case paperSensor = 4
}

/// GS a n: which status groups trigger an automatic status back.
public struct AutomaticStatusMask: OptionSet, Equatable, Sendable {
    /// The n of GS a n.
    public var rawValue: UInt8
    /// A mask from its GS a parameter.
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Bit 0: drawer kick-out connector pin 3.
    public static let drawer = AutomaticStatusMask(rawValue: 0x01)
    /// Bit 1: online/offline.
    public static let onlineOffline = AutomaticStatusMask(rawValue: 0x02)
    /// Bit 2: errors.
    public static let errors = AutomaticStatusMask(rawValue: 0x04)
    /// Bit 3: roll paper sensors.
    public static let paperSensor = AutomaticStatusMask(rawValue: 0x08)
    /// Everything the hall watches: online state, errors and paper.
    public static let hall: AutomaticStatusMask = [.onlineOffline, .errors, .paperSensor]
}

/// GS ( k <Function 165>: QR symbol model.
public enum EscPosQRModel: UInt8, Sendable, CaseIterable {
    /// n1 = '1'.
    case model1 = 0x31
    /// n1 = '2' (the usual one).
    case model2 = 0x32
    /// n1 = '3'.
    case micro = 0x33
}

/// GS ( k <Function 169>: QR error correction level.
public enum EscPosQRErrorCorrection: UInt8, Sendable, CaseIterable {
    /// '0': about 7 % recovery.
    case low = 0x30
    /// '1': about 15 %.
    case medium = 0x31
    /// '2': about 25 %.
    case quartile = 0x32
    /// '3': about 30 %.
    case high = 0x33
}

/// One GS ( k QR code function (cn = '1'). The decoder reports each as its own frame; a code is printed by
/// `.store` followed by `.print`, the settings before apply to it.
public enum EscPosQRFunction: Equatable, Sendable {
    /// Function 165 (fn 'A'): symbol model.
    case selectModel(EscPosQRModel)
    /// Function 167 (fn 'C'): module size in dots, 1...16.
    case moduleSize(UInt8)
    /// Function 169 (fn 'E'): error correction level.
    case errorCorrection(EscPosQRErrorCorrection)
    /// Function 180 (fn 'P', m '0'): store the symbol data (python-escpos sends UTF-8).
    case store([UInt8])
    /// Function 181 (fn 'Q', m '0'): print the stored symbol.
    case print
}
