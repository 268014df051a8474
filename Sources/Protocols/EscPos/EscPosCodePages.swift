#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The character tables ESC t n selects, numbered as Epson's ESC/POS reference and python-escpos's default profile
/// number them; text in any of them is converted through the C library's iconv.
public enum EscPosCodePage {
    /// iconv names by table number (python-escpos 3.1 `capabilities` profile "default").
    static let names: [UInt8: String] = [
        0: "CP437", 1: "CP932", 2: "CP850", 3: "CP860", 4: "CP863", 5: "CP865", 11: "CP851", 12: "CP853",
        13: "CP857", 14: "CP737", 15: "ISO_8859-7", 16: "CP1252", 17: "CP866", 18: "CP852", 19: "CP858",
        21: "CP874", 32: "CP720", 33: "CP775", 34: "CP855", 35: "CP861", 36: "CP862", 37: "CP864", 38: "CP869",
        39: "ISO_8859-2", 40: "ISO_8859-15", 44: "CP1125", 45: "CP1250", 46: "CP1251", 47: "CP1253",
        48: "CP1254", 49: "CP1255", 50: "CP1256", 51: "CP1257", 52: "CP1258", 53: "RK1048",
    ]

    /// The table's name (`CP858`), or `table n` for one this list does not know.
    public static func name(_ number: UInt8) -> String { names[number] ?? "table \(number)" }

    /// `bytes` read in table `number`: code page 437 without iconv; nil when the table is unknown or iconv cannot
    /// convert them.
    public static func decode(_ bytes: [UInt8], table number: UInt8) -> String? {
        guard let name = names[number] else { return nil }
        if number == 0 {
            var scalars = String.UnicodeScalarView()
            for byte in bytes { scalars.append(CodePage437.scalar(for: byte)) }
            return String(scalars)
        }
        return convert(bytes, from: name, to: "UTF-8").map { String(decoding: $0, as: UTF8.self) }
    }

    /// `bytes` read in table `number`, keeping what the table defines: the text, and how many bytes it does not
    /// define (garbage to the printer as to us). Nil for a table this list does not know.
    public static func decodeDefined(_ bytes: [UInt8], table number: UInt8) -> (text: String, undefined: Int)? {
        guard names[number] != nil else { return nil }
        if let whole = decode(bytes, table: number) { return (whole, 0) }
        var text = ""
        var undefined = 0
        var index = 0
        // Byte by byte only when something in the run is undefined; two bytes for the double-byte tables (CP932).
        while index < bytes.count {
            if let one = decode([bytes[index]], table: number) {
                text += one
                index += 1
            } else if index + 1 < bytes.count, let two = decode([bytes[index], bytes[index + 1]], table: number) {
                text += two
                index += 2
            } else {
                undefined += 1
                index += 1
            }
        }
        return (text, undefined)
    }

    /// `text` as table `number` writes it, "?" for a character the table lacks; nil when the table is unknown.
    public static func encode(_ text: String, table number: UInt8) -> [UInt8]? {
        guard let name = names[number] else { return nil }
        if number == 0 { return text.unicodeScalars.map { CodePage437.byte(for: $0) ?? 0x3F } }
        if let whole = convert(Array(text.utf8), from: "UTF-8", to: name) { return whole }
        // One character at a time only when some are not in the table.
        return text.unicodeScalars.flatMap { convert(Array(String($0).utf8), from: "UTF-8", to: name) ?? [0x3F] }
    }

    /// `bytes` from one iconv encoding to another; nil when iconv cannot convert all of them.
    private static func convert(_ bytes: [UInt8], from source: String, to target: String) -> [UInt8]? {
        let converter = iconv_open(target, source)
        guard converter != iconv_t(bitPattern: -1) else { return nil }
        defer { iconv_close(converter) }
        var input = bytes
        var output = [UInt8](repeating: 0, count: bytes.count * 4 + 4)
        let capacity = output.count
        let converted: Int? = input.withUnsafeMutableBufferPointer { inputBuffer in
            output.withUnsafeMutableBufferPointer { outputBuffer in
                var inputPointer: UnsafeMutablePointer<CChar>? = inputBuffer.baseAddress.map {
                    UnsafeMutableRawPointer($0).assumingMemoryBound(to: CChar.self)
                }
                var outputPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(outputBuffer.baseAddress!)
                    .assumingMemoryBound(to: CChar.self)
                var inputLeft = inputBuffer.count
                var outputLeft = capacity
                let result = iconv(converter, &inputPointer, &inputLeft, &outputPointer, &outputLeft)
                guard result != -1, inputLeft == 0 else { return nil }
                // Tables with combining marks (CP1255, CP1258) hold the last character back until told the input
                // has ended.
                guard iconv(converter, nil, nil, &outputPointer, &outputLeft) != -1 else { return nil }
                return capacity - outputLeft
            }
        }
        return converted.map { Array(output[..<$0]) }
    }
}

/// A command the decoder knows but the hall's printing does not act on (python-escpos's underline, fonts, line
/// spacing, barcodes, images, drawer kick, buzzer …): named, and its bytes kept (an image's header only).
public struct EscPosOtherCommand: Equatable, Sendable {
    /// What it is, in words: `ESC - 2: underline 2 dots`.
    public var name: String
    /// Its bytes as received; for images and other long data, the header only.
    public var bytes: [UInt8]
    /// How many data bytes followed the header and were passed without being kept (an image's dots).
    public var dataCount: Int

    /// A named command.
    public init(name: String, bytes: [UInt8], dataCount: Int = 0) {
        self.name = name
        self.bytes = bytes
        self.dataCount = dataCount
    }
}
