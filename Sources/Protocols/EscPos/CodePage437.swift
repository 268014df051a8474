/// IBM code page 437, the character table an ESC/POS printer selects after ESC @ (ESC t 0): bytes 0x20-0x7E are
/// ASCII, 0x80-0xFF are the table below. Generated from Python's `cp437` codec.
enum CodePage437 {
    /// The characters of bytes 0x80...0xFF, in byte order.
    static let upperHalf: [Unicode.Scalar] = [
        "ÇüéâäàåçêëèïîìÄÅ",
        "ÉæÆôöòûùÿÖÜ¢£¥₧ƒ",
        "áíóúñÑªº¿⌐¬½¼¡«»",
        "░▒▓│┤╡╢╖╕╣║╗╝╜╛┐",
        "└┴┬├─┼╞╟╚╔╩╦╠═╬╧",
        "╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀",
        "αßΓπΣσµτΦΘΩδ∞φε∩",
        "≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{00A0}",
    ].flatMap { Array($0.unicodeScalars) }

    /// Byte for each character of the upper half, for encoding.
    static let byteForScalar: [Unicode.Scalar: UInt8] = {
        var bytes: [Unicode.Scalar: UInt8] = [:]
        for (index, scalar) in upperHalf.enumerated() { bytes[scalar] = UInt8(0x80 + index) }
        return bytes
    }()

    /// The character a printable byte (0x20-0x7E or 0x80-0xFF) prints as.
    static func scalar(for byte: UInt8) -> Unicode.Scalar {
        let index = Int(byte) - 0x80
        guard index >= 0 else { return Unicode.Scalar(byte) }
        return index < upperHalf.count ? upperHalf[index] : "?"
    }

    /// The byte that prints `scalar`, or nil if the table has no such character (or it is a control character).
    static func byte(for scalar: Unicode.Scalar) -> UInt8? {
        if scalar.value >= 0x20 && scalar.value < 0x7F { return UInt8(scalar.value) }
        return byteForScalar[scalar]
    }
}
