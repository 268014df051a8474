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
        let converter = iconv_open("UTF-8", name)
        guard converter != iconv_t(bitPattern: -1) else { return nil }
        defer { iconv_close(converter) }
        var input = bytes
        var output = [UInt8](repeating: 0, count: bytes.count * 4 + 4)
        let capacity = output.count
        let converted: Int? = input.withUnsafeMutableBufferPointer { inputBuffer in
            output.withUnsafeMutableBufferPointer { outputBuffer in
                var inputPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(inputBuffer.baseAddress!)
                    .assumingMemoryBound(to: CChar.self)
                var outputPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(outputBuffer.baseAddress!)
                    .assumingMemoryBound(to: CChar.self)
                var inputLeft = inputBuffer.count
                var outputLeft = capacity
                let result = iconv(converter, &inputPointer, &inputLeft, &outputPointer, &outputLeft)
                return result == -1 || inputLeft != 0 ? nil : capacity - outputLeft
            }
        }
        guard let converted else { return nil }
        return String(decoding: output[..<converted], as: UTF8.self)
    }
}

/// A command the decoder knows but the hall's printing does not act on (python-escpos's underline, fonts, line
/// spacing, barcodes, images, drawer kick, buzzer …): named, and its bytes kept (an image's header only).
public struct EscPosOtherCommand: Equatable, Sendable {
    /// What it is, in words: `ESC - 2: underline 2 dots`.
    public var name: String
    /// Its bytes as received; for images and other long data, the header only.
    public var bytes: [UInt8]

    /// A named command.
    public init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }
}
