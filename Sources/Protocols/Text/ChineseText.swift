#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The Chinese text encodings the hall's devices use on the wire, converted through the C library's iconv.
public enum ChineseEncoding: String, Sendable, CaseIterable {
    /// GB 18030: ESC/POS printers in Chinese mode, Modbus text registers. A superset of GB 2312 and GBK.
    case gb18030 = "GB18030"
    /// GB 2312 (EUC-CN): Onbon BX controllers. Only the 6,763 common hanzi and basic symbols.
    case gb2312 = "GB2312"
}

/// Conversion between Swift strings and a device's Chinese text bytes.
public enum ChineseText {
    /// The bytes of `text` in `encoding`, or nil if a character has no code in it (GB 2312 lacks rare hanzi).
    public static func encode(_ text: String, as encoding: ChineseEncoding) -> [UInt8]? {
        convert(Array(text.utf8), from: "UTF-8", to: encoding.rawValue)
    }

    /// The text of `bytes` in `encoding`, or nil if they are not valid in it.
    public static func decode(_ bytes: some Collection<UInt8>, as encoding: ChineseEncoding) -> String? {
        convert(Array(bytes), from: encoding.rawValue, to: "UTF-8").map { String(decoding: $0, as: UTF8.self) }
    }

    private static func convert(_ input: [UInt8], from source: String, to target: String) -> [UInt8]? {
        if input.isEmpty { return [] }
        let converter = iconv_open(target, source)
        guard converter != iconv_t(bitPattern: -1) else { return nil }
        defer { iconv_close(converter) }
        var input = input
        // Four output bytes per input byte covers every pair of these encodings.
        var output = [UInt8](repeating: 0, count: input.count * 4 + 4)
        let outputCapacity = output.count
        var outputLeft = outputCapacity
        let converted = input.withUnsafeMutableBytes { inputBuffer in
            output.withUnsafeMutableBytes { outputBuffer in
                var inputPointer = inputBuffer.baseAddress?.assumingMemoryBound(to: CChar.self)
                var inputLeft = inputBuffer.count
                var outputPointer = outputBuffer.baseAddress?.assumingMemoryBound(to: CChar.self)
                let result = iconv(converter, &inputPointer, &inputLeft, &outputPointer, &outputLeft)
                return result != -1 && inputLeft == 0
            }
        }
        guard converted else { return nil }
        return Array(output.prefix(outputCapacity - outputLeft))
    }
}
