/// A short, stable fingerprint of a text (64-bit FNV-1a, hex): tells two texts apart without keeping either.
enum Fingerprint {
    static func of(_ text: String) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return String(hash, radix: 16)
    }

    /// Sixteen hex digits, leading zeros kept: for ids and keys of a fixed width.
    static func padded(_ text: String) -> String {
        let digits = of(text)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
