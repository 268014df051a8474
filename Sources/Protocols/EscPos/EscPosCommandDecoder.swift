/// Decodes the host → printer ESC/POS stream (what the gateway sends; the mock printer and the fixture tests read it).
///
/// ESC/POS has no framing or checksum, so these rules define what a frame is and how the decoder resynchronises:
/// - Text is every printable byte between commands: bytes 0x20-0x7E and 0x80-0xFF in the selected table outside
///   Chinese mode (whole double-byte characters in CP932), whole GB18030 characters inside it (FS & … FS .). A text
///   frame ends at the next command byte (LF, ESC, FS, GS, DLE), before a character that would take it past
///   `maximumTextBytes`, or on `flush()`; never at a chunk boundary. Stray control bytes (the rest of 0x00-0x1F, and 0x7F) and malformed GB18030 bytes are
///   discarded one at a time without ending the text.
/// - ESC @ resets Chinese mode to `startsInChineseMode` (off for Epson models; many Chinese printers power up on).
/// - QR codes come out as one frame per GS ( k function (model, module size, error level, store, print).
/// - ESC t n selects the character table of single-byte text (`EscPosCodePage`; ESC @ selects table 0 again).
/// - Every other command python-escpos 3.1 emits (underline, fonts, smoothing, upside-down, line spacing, barcodes,
///   raster, column and graphics images, drawer kick, buzzer, panel buttons, HT, CR, FF, VT) comes out as
///   `.other`, named, its bytes kept (an image's header only: the data streams past unbuffered). An unknown
///   ESC/FS/GS/DLE x skips those two bytes. A known command with an out-of-range parameter (ESC a 7, GS V 9,
///   DLE EOT 9) is ignored whole, as a printer ignores it, and counted as discarded.
/// - A command cut short by the next command (ESC ESC @, or ESC a ESC @) loses its started bytes only: when a byte
///   where the command expects its function or a checked parameter is itself a command byte, the bytes before it
///   are discarded and decoding restarts there. Parameters that take any value (ESC d n, GS ! n) cannot be checked,
///   so a truncated one consumes the next byte, as on a printer.
/// - Length-declared commands (GS ( k) are trusted: a truncated one holds the following bytes until its length is
///   reached. One longer than `maximumBufferedBytes` is skipped as it streams past, without buffering.
/// - `flush()` emits pending text, then drops a partial command up to the next command byte behind its start and
///   decodes what follows it, so commands swallowed by a truncated GS ( k come out.
public struct EscPosCommandDecoder: FrameDecoder {
    /// The most wire bytes one text frame holds; longer runs come out in pieces at character boundaries.
    public static let maximumTextBytes = 256
    /// The longest QR payload a printer stores: 7,089 digits (version 40, level L). Longer stores are skipped.
    public static let maximumQRPayloadBytes = 7089

    /// Whether text is read as GB18030 (after FS &) rather than the selected code page.
    public private(set) var isChineseMode: Bool
    /// The character table of single-byte text (ESC t n); 0, code page 437, after ESC @.
    public private(set) var codePage: UInt8 = 0
    /// Chinese mode at power-on and after ESC @.
    public let startsInChineseMode: Bool
    public private(set) var discardedByteCount = 0
    /// The longest GS ( k command: 5 header bytes, cn, fn, m and the largest payload.
    public let maximumBufferedBytes = 8 + EscPosCommandDecoder.maximumQRPayloadBytes

    public var bufferedByteCount: Int { pending.count - head + text.count }

    /// Raw bytes from `head` on: a command or GB18030 character still incomplete.
    private var pending: [UInt8] = []
    private var head = 0
    /// Wire bytes of whole characters waiting for the end of their run.
    private var text: [UInt8] = []
    /// Bytes of an over-long length-declared command still to skip.
    private var skipRemaining = 0
    /// Data bytes of a known command (an image) still to pass: part of that frame, not discarded.
    private var passRemaining = 0

    /// A decoder for a printer that starts with Chinese mode off (Epson) or on (most printers sold in China).
    public init(startsInChineseMode: Bool = false) {
        self.startsInChineseMode = startsInChineseMode
        isChineseMode = startsInChineseMode
    }

    public mutating func decode(_ bytes: some Sequence<UInt8>) -> [EscPosCommand] {
        var frames: [EscPosCommand] = []
        for byte in bytes {
            if passRemaining > 0 {
                passRemaining -= 1
                continue
            }
            if skipRemaining > 0 {
                skipRemaining -= 1
                discardedByteCount += 1
                continue
            }
            pending.append(byte)
            scan(into: &frames, lineIsQuiet: false)
        }
        compact()
        return frames
    }

    public mutating func flush() -> [EscPosCommand] {
        var frames: [EscPosCommand] = []
        scan(into: &frames, lineIsQuiet: true)
        endText(into: &frames)
        pending.removeAll(keepingCapacity: true)
        head = 0
        // An over-long command still streaming is over too: the line went quiet.
        skipRemaining = 0
        passRemaining = 0
        return frames
    }

    // MARK: - Scanning

    private enum Step {
        /// The command at `head` needs more bytes.
        case needMore
        case frame(EscPosCommand, length: Int)
        /// A command whose first `length` bytes make the frame and whose `data` bytes after them stream past.
        case frameWithData(EscPosCommand, length: Int, data: Int)
        /// A whole command to ignore (unused by the hall, or a parameter out of range).
        case ignore(length: Int)
        /// A length-declared command to skip, possibly longer than what has arrived.
        case skip(length: Int)
        /// The command was cut short by the command byte at this offset.
        case cutShort(at: Int)
    }

    private static let commandBytes: Set<UInt8> = [0x0A, 0x10, 0x1B, 0x1C, 0x1D]

    private mutating func scan(into frames: inout [EscPosCommand], lineIsQuiet: Bool) {
        while head < pending.count {
            let byte = pending[head]
            switch byte {
            case 0x0A:
                endText(into: &frames)
                frames.append(.lineFeed)
                head += 1
            case 0x10, 0x1B, 0x1C, 0x1D:
                endText(into: &frames)
                switch command(atHead: byte) {
                case .needMore:
                    guard lineIsQuiet else { return }
                    dropPartialCommand()
                case .frame(let frame, let length):
                    apply(frame)
                    frames.append(frame)
                    head += length
                case .frameWithData(let frame, let length, let data):
                    frames.append(frame)
                    head += length
                    let available = min(data, pending.count - head)
                    head += available
                    passRemaining = data - available
                case .ignore(let length):
                    discard(length)
                case .skip(let length):
                    let available = pending.count - head
                    if length <= available {
                        discard(length)
                    } else if lineIsQuiet {
                        dropPartialCommand()
                    } else {
                        discard(available)
                        skipRemaining = length - available
                    }
                case .cutShort(let offset):
                    discard(offset)
                }
            case 0x09, 0x0B, 0x0C, 0x0D:
                endText(into: &frames)
                let names: [UInt8: String] = [0x09: "HT: horizontal tab", 0x0B: "VT: vertical tab",
                                               0x0C: "FF: print and eject (form feed)", 0x0D: "CR: carriage return"]
                frames.append(.other(EscPosOtherCommand(name: names[byte] ?? "", bytes: [byte])))
                head += 1
            case 0x00..<0x20, 0x7F:
                discard(1)
            default:
                guard let length = characterLength(atHead: byte) else {
                    guard lineIsQuiet else { return }
                    // A character cut off by the quiet line.
                    discard(pending.count - head)
                    return
                }
                if length == 0 {
                    discard(1)
                } else {
                    appendText(length: length, into: &frames)
                }
            }
        }
    }

    /// Drops a command that will never complete, up to the next command byte behind its start.
    private mutating func dropPartialCommand() {
        var end = head + 1
        while end < pending.count && !Self.commandBytes.contains(pending[end]) { end += 1 }
        discard(end - head)
    }

    private mutating func discard(_ count: Int) {
        head += count
        discardedByteCount += count
    }

    private mutating func compact() {
        if head == pending.count {
            pending.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 0 {
            pending.removeFirst(head)
            head = 0
        }
    }

    private mutating func apply(_ frame: EscPosCommand) {
        switch frame {
        case .chineseMode(let isOn): isChineseMode = isOn
        case .initialize:
            isChineseMode = startsInChineseMode
            codePage = 0
        case .codePage(let table): codePage = table
        default: break
        }
    }

    // MARK: - Text

    /// Length of the printable character at `head`: nil if its bytes have not all arrived, 0 if malformed.
    private func characterLength(atHead first: UInt8) -> Int? {
        if isChineseMode { return Self.gb18030CharacterLength(first, at: head, in: pending) }
        return codePage == 1 ? Self.cp932CharacterLength(first, at: head, in: pending) : 1
    }

    /// CP932 (table 1, the one double-byte table): 81-9F or E0-FC followed by 40-7E or 80-FC is one character.
    static func cp932CharacterLength(_ first: UInt8, at start: Int, in bytes: [UInt8]) -> Int? {
        guard (0x81...0x9F).contains(first) || (0xE0...0xFC).contains(first) else { return 1 }
        guard start + 1 < bytes.count else { return nil }
        let second = bytes[start + 1]
        return (0x40...0x7E).contains(second) || (0x80...0xFC).contains(second) ? 2 : 1
    }

    /// GB18030: ASCII is one byte; 81-FE + 40-7E/80-FE is two; 81-FE 30-39 81-FE 30-39 is four.
    static func gb18030CharacterLength(_ first: UInt8, at start: Int, in bytes: [UInt8]) -> Int? {
        if first < 0x80 { return 1 }
        guard first >= 0x81 && first <= 0xFE else { return 0 }
        guard start + 1 < bytes.count else { return nil }
        let second = bytes[start + 1]
        if (0x40...0x7E).contains(second) || (0x80...0xFE).contains(second) { return 2 }
        guard (0x30...0x39).contains(second) else { return 0 }
        guard start + 2 < bytes.count else { return nil }
        guard (0x81...0xFE).contains(bytes[start + 2]) else { return 0 }
        guard start + 3 < bytes.count else { return nil }
        return (0x30...0x39).contains(bytes[start + 3]) ? 4 : 0
    }

    private mutating func appendText(length: Int, into frames: inout [EscPosCommand]) {
        if text.count + length > Self.maximumTextBytes { endText(into: &frames) }
        text += pending[head..<(head + length)]
        head += length
    }

    private mutating func endText(into frames: inout [EscPosCommand]) {
        guard !text.isEmpty else { return }
        var string: String
        if isChineseMode {
            string = Self.gb18030String(text)
        } else if let (decoded, undefined) = EscPosCodePage.decodeDefined(text, table: codePage) {
            // Bytes the selected table does not define print as nothing sensible: garbage, not text.
            string = decoded
            discardedByteCount += undefined
        } else {
            // A table this decoder does not know: read as 437, as `EscPosCommand.encode` writes it.
            string = Self.codePage437String(text)
        }
        if !string.isEmpty { frames.append(.text(string)) }
        text.removeAll(keepingCapacity: true)
    }

    private static func codePage437String(_ bytes: [UInt8]) -> String {
        var scalars = String.UnicodeScalarView()
        for byte in bytes { scalars.append(CodePage437.scalar(for: byte)) }
        return String(scalars)
    }

    /// Whole-run conversion; if iconv rejects the run (a well-formed but unassigned code), character by character
    /// with U+FFFD for the rejected ones.
    private static func gb18030String(_ bytes: [UInt8]) -> String {
        if let string = ChineseText.decode(bytes, as: .gb18030) { return string }
        var result = ""
        var index = 0
        while index < bytes.count {
            let length = max(1, gb18030CharacterLength(bytes[index], at: index, in: bytes) ?? 1)
            let end = min(bytes.count, index + length)
            result += ChineseText.decode(bytes[index..<end], as: .gb18030) ?? "\u{FFFD}"
            index = end
        }
        return result
    }

    // MARK: - Commands

    private func byte(_ offset: Int) -> UInt8? {
        head + offset < pending.count ? pending[head + offset] : nil
    }

    private func command(atHead prefix: UInt8) -> Step {
        guard let function = byte(1) else { return .needMore }
        if Self.commandBytes.contains(function) { return .cutShort(at: 1) }
        switch prefix {
        case 0x1B: return escapeCommand(function)
        case 0x1C: return fileSeparatorCommand(function)
        case 0x1D: return groupSeparatorCommand(function)
        default: return dataLinkEscapeCommand(function)
        }
    }

    /// A three-byte command whose parameter takes any value.
    private func withParameter(_ make: (UInt8) -> EscPosCommand) -> Step {
        guard let parameter = byte(2) else { return .needMore }
        return .frame(make(parameter), length: 3)
    }

    /// A three-byte command whose parameter is checked: nil from `make` means out of range.
    private func withCheckedParameter(_ make: (UInt8) -> EscPosCommand?) -> Step {
        guard let parameter = byte(2) else { return .needMore }
        if let frame = make(parameter) { return .frame(frame, length: 3) }
        return Self.commandBytes.contains(parameter) ? .cutShort(at: 2) : .ignore(length: 3)
    }

    /// A known command of `length` bytes the hall does not act on, named from its bytes.
    private func known(_ length: Int) -> Step {
        guard pending.count - head >= length else { return .needMore }
        let bytes = Array(pending[head..<(head + length)])
        return .frame(.other(EscPosOtherCommand(name: EscPosNames.describe(bytes), bytes: bytes)), length: length)
    }

    /// A known command ending at the first NUL after `from` (at most `limit` bytes in all); unended, ignored.
    private func knownUntilNul(from start: Int, limit: Int) -> Step {
        var offset = start
        while true {
            guard let byte = byte(offset) else { return offset >= limit ? .ignore(length: offset) : .needMore }
            if byte == 0 { return known(offset + 1) }
            if offset >= limit { return .ignore(length: offset) }
            offset += 1
        }
    }

    /// A known command whose `header` bytes are kept and whose `data` bytes pass unbuffered.
    private func knownWithData(header: Int, data: Int) -> Step {
        guard pending.count - head >= header else { return .needMore }
        let bytes = Array(pending[head..<(head + header)])
        let command = EscPosOtherCommand(name: EscPosNames.describe(bytes, dataCount: data), bytes: bytes, dataCount: data)
        return .frameWithData(.other(command), length: header, data: data)
    }

    private func escapeCommand(_ function: UInt8) -> Step {
        switch function {
        case 0x40: return .frame(.initialize, length: 2)
        case 0x61:
            return withCheckedParameter { parameter in
                let value = parameter >= 0x30 ? parameter &- 0x30 : parameter
                return EscPosAlignment(rawValue: value).map { .align($0) }
            }
        case 0x45: return withParameter { .bold($0 & 1 == 1) }
        case 0x64: return withParameter { .feedLines($0) }
        case 0x21: return withParameter { .printMode(EscPosPrintMode(rawValue: $0)) }
        case 0x74: return withParameter { .codePage($0) }
        // ESC 2, ESC <, ESC i, ESC m, ESC L, ESC S, ESC FF: single-letter commands.
        case 0x32, 0x3C, 0x69, 0x6D, 0x4C, 0x53, 0x0C: return known(2)
        // ESC SP, -, 3, =, G, J, K, M, R, T, U, V, e, r, {, ?, % n.
        case 0x20, 0x2D, 0x33, 0x3D, 0x47, 0x4A, 0x4B, 0x4D, 0x52, 0x54, 0x55, 0x56, 0x65, 0x72, 0x7B, 0x3F, 0x25:
            return known(3)
        // ESC $ nL nH, ESC \ nL nH, ESC c 3/4/5 n, ESC B n t (python-escpos buzzer).
        case 0x24, 0x5C, 0x63, 0x42: return known(4)
        // ESC p m t1 t2 (drawer kick).
        case 0x70: return known(5)
        // ESC D n1 … nk NUL: tab positions (at most 32).
        case 0x44: return knownUntilNul(from: 2, limit: 35)
        // ESC * m nL nH d1 … dk: a bit image in columns, 1 byte a column in 8-dot modes, 3 in 24-dot ones.
        case 0x2A:
            guard let mode = byte(2), let low = byte(3), let high = byte(4) else { return .needMore }
            let columns = Int(low) + Int(high) << 8
            return knownWithData(header: 5, data: columns * (mode <= 1 ? 1 : 3))
        default: return .ignore(length: 2)
        }
    }

    private func fileSeparatorCommand(_ function: UInt8) -> Step {
        switch function {
        case 0x26: return .frame(.chineseMode(true), length: 2)
        case 0x2E: return .frame(.chineseMode(false), length: 2)
        // FS !, FS -, FS C, FS W n.
        case 0x21, 0x2D, 0x43, 0x57: return known(3)
        // FS S n1 n2.
        case 0x53: return known(4)
        // FS 2 c1 c2 and 72 bytes of a user-defined character.
        case 0x32: return knownWithData(header: 4, data: 72)
        default: return .ignore(length: 2)
        }
    }

    private func groupSeparatorCommand(_ function: UInt8) -> Step {
        switch function {
        case 0x21:
            return withCheckedParameter { parameter in
                guard parameter & 0x88 == 0 else { return nil }
                return .characterSize(width: Int(parameter >> 4) + 1, height: Int(parameter & 0x0F) + 1)
            }
        case 0x61: return withParameter { .enableAutomaticStatusBack(AutomaticStatusMask(rawValue: $0)) }
        case 0x56: return cutCommand()
        case 0x28: return lengthDeclaredCommand()
        case 0x76: return rasterImageCommand()
        // GS B, b, |, H, f, h, w, I, r, E, / n.
        case 0x42, 0x62, 0x7C, 0x48, 0x66, 0x68, 0x77, 0x49, 0x72, 0x45, 0x2F: return known(3)
        // GS L, W, $, \, P nL nH.
        case 0x4C, 0x57, 0x24, 0x5C, 0x50: return known(4)
        // GS k m d1 … dk NUL (m 0-6), or GS k m n d1 … dn (m 65-79): a barcode.
        case 0x6B:
            guard let system = byte(2) else { return .needMore }
            if system <= 6 { return knownUntilNul(from: 3, limit: 259) }
            guard (65...79).contains(system) else {
                return Self.commandBytes.contains(system) ? .cutShort(at: 2) : .ignore(length: 3)
            }
            guard let count = byte(3) else { return .needMore }
            return known(4 + Int(count))
        default: return .ignore(length: 2)
        }
    }

    private func dataLinkEscapeCommand(_ function: UInt8) -> Step {
        switch function {
        case 0x04:
            guard let parameter = byte(2) else { return .needMore }
            if let request = PrinterStatusRequest(rawValue: parameter) {
                return .frame(.statusRequest(request), length: 3)
            }
            // DLE EOT 7 a and DLE EOT 8 a (ink and paper-slip status) carry one more byte.
            if parameter == 7 || parameter == 8 { return known(4) }
            return Self.commandBytes.contains(parameter) ? .cutShort(at: 2) : .ignore(length: 3)
        case 0x05: return known(3)
        case 0x14:
            // DLE DC4 fn: pulse (1), power off (2), clear buffers (8) and friends, each its own length.
            guard let selector = byte(2) else { return .needMore }
            switch selector {
            case 1, 2, 3: return known(5)
            case 7: return known(4)
            case 8: return known(10)
            default: return .ignore(length: 3)
            }
        default: return .ignore(length: 2)
        }
    }

    /// GS V m [n]: 0/48 full, 1/49 partial; 65/66 n feed then cut; 97/98/103/104 n other cut functions (ignored).
    private func cutCommand() -> Step {
        guard let mode = byte(2) else { return .needMore }
        switch mode {
        case 0x00, 0x30: return .frame(.cut(.full), length: 3)
        case 0x01, 0x31: return .frame(.cut(.partial), length: 3)
        case 0x41, 0x42:
            guard let feed = byte(3) else { return .needMore }
            return .frame(.cut(mode == 0x41 ? .full : .partial, feed: feed), length: 4)
        case 0x61, 0x62, 0x67, 0x68: return known(4)
        default: return Self.commandBytes.contains(mode) ? .cutShort(at: 2) : .ignore(length: 3)
        }
    }

    /// GS ( x pL pH followed by pL + 256·pH bytes. Only GS ( k with cn '1' (QR) is decoded.
    private func lengthDeclaredCommand() -> Step {
        guard let kind = byte(2) else { return .needMore }
        if Self.commandBytes.contains(kind) { return .cutShort(at: 2) }
        guard let low = byte(3), let high = byte(4) else { return .needMore }
        let length = 5 + Int(low) + Int(high) << 8
        // GS ( L and the other length-declared functions (graphics, barcodes of other kinds): header kept.
        guard kind == 0x6B else { return knownWithData(header: min(length, 7), data: length - min(length, 7)) }
        guard length <= maximumBufferedBytes else { return .skip(length: length) }
        guard pending.count - head >= length else { return .needMore }
        guard let function = qrFunction(parameterCount: length - 5) else {
            return known(length)
        }
        return .frame(.qrCode(function), length: length)
    }

    /// The QR function in a complete GS ( k command, or nil if it is another symbology or malformed.
    private func qrFunction(parameterCount: Int) -> EscPosQRFunction? {
        guard parameterCount >= 2, byte(5) == 0x31, let function = byte(6) else { return nil }
        let first = parameterCount >= 3 ? byte(7) : nil
        switch (function, parameterCount) {
        case (0x41, 4):
            guard let first, byte(8) == 0, let model = EscPosQRModel(rawValue: first) else { return nil }
            return .selectModel(model)
        case (0x43, 3):
            guard let first, (1...16).contains(first) else { return nil }
            return .moduleSize(first)
        case (0x45, 3):
            return first.flatMap(EscPosQRErrorCorrection.init(rawValue:)).map { .errorCorrection($0) }
        case (0x50, 3...):
            guard first == 0x30 else { return nil }
            return .store(Array(pending[(head + 8)..<(head + 5 + parameterCount)]))
        case (0x51, 3):
            return first == 0x30 ? .print : nil
        default:
            return nil
        }
    }

    /// GS v 0 m xL xH yL yH and (xL + 256·xH)·(yL + 256·yH) bytes of raster image.
    private func rasterImageCommand() -> Step {
        guard let zero = byte(2) else { return .needMore }
        guard zero == 0x30 else { return Self.commandBytes.contains(zero) ? .cutShort(at: 2) : .ignore(length: 2) }
        guard let xLow = byte(4), let xHigh = byte(5), let yLow = byte(6), let yHigh = byte(7) else {
            return .needMore
        }
        let width = Int(xLow) + Int(xHigh) << 8
        let height = Int(yLow) + Int(yHigh) << 8
        return knownWithData(header: 8, data: width * height)
    }
}
