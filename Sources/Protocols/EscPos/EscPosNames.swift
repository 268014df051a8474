/// ESC/POS commands in words, for the technician's `decode` and `trace` (Epson's ESC/POS reference names).
public enum EscPosNames {
    /// `ESC - 2: underline 2 dots` and the like, from the command's bytes; `dataCount` data bytes follow them.
    public static func describe(_ bytes: [UInt8], dataCount: Int = 0) -> String {
        guard let first = bytes.first else { return "" }
        let function = bytes.count > 1 ? bytes[1] : 0
        let n = bytes.count > 2 ? Int(bytes[2]) : 0
        let prefix = [0x1B: "ESC", 0x1C: "FS", 0x1D: "GS", 0x10: "DLE"][first] ?? hex(first)
        let letter = (0x21...0x7E).contains(function) ? String(UnicodeScalar(function)) : hex(function)
        let code = "\(prefix) \(letter)"
        func on(_ value: Int) -> String { value & 1 == 1 ? "on" : "off" }
        let text: String? =
            switch (first, function) {
            case (0x1B, 0x2D): "underline \(n & 3 == 0 ? "off" : "\(n & 3) dot\(n & 3 == 1 ? "" : "s")")"
            case (0x1B, 0x4D): "font \(["A", "B", "C", "D", "E"][min(n & 7, 4)])"
            case (0x1B, 0x7B): "upside-down \(on(n))"
            case (0x1B, 0x47): "double-strike \(on(n))"
            case (0x1B, 0x56): "rotate 90° \(on(n))"
            case (0x1B, 0x33): "line spacing \(n) dots"
            case (0x1B, 0x32): "default line spacing"
            case (0x1B, 0x20): "right-side character spacing \(n)"
            case (0x1B, 0x3D): "select peripheral \(n)"
            case (0x1B, 0x4A): "print and feed \(n) dots"
            case (0x1B, 0x4B): "print and reverse feed \(n) dots"
            case (0x1B, 0x52): "international character set \(n)"
            case (0x1B, 0x54): "print direction \(n)"
            case (0x1B, 0x55): "unidirectional printing \(on(n))"
            case (0x1B, 0x65): "print and reverse feed \(n) lines"
            case (0x1B, 0x72): "print colour \(n)"
            case (0x1B, 0x25): "user-defined characters \(on(n))"
            case (0x1B, 0x3F): "cancel user-defined character \(n)"
            case (0x1B, 0x24): "absolute print position"
            case (0x1B, 0x5C): "relative print position"
            case (0x1B, 0x63):
                n == 0x35
                    ? "panel buttons \(bytes.count > 3 && bytes[3] & 1 == 1 ? "disabled" : "enabled")"
                    : "paper sensors"
            case (0x1B, 0x42): "buzzer \(n) times, \(bytes.count > 3 ? Int(bytes[3]) : 0) × 100 ms"
            case (0x1B, 0x70): "drawer kick, pin \(n & 1 == 0 ? 2 : 5)"
            case (0x1B, 0x44):
                "horizontal tab positions \(bytes.dropFirst(2).dropLast().map(String.init).joined(separator: ","))"
            case (0x1B, 0x2A): "bit image in columns, mode \(n), \(dataCount) data bytes"
            case (0x1B, 0x3C): "return home"
            case (0x1B, 0x69): "partial cut (one point left)"
            case (0x1B, 0x6D): "partial cut (three points left)"
            case (0x1B, 0x4C): "page mode"
            case (0x1B, 0x53): "standard mode"
            case (0x1B, 0x0C): "print data in page mode"
            case (0x1D, 0x42): "white/black reverse \(on(n))"
            case (0x1D, 0x62): "smoothing \(on(n))"
            case (0x1D, 0x7C): "print density \(n)"
            case (0x1D, 0x48): "barcode text \(["off", "above", "below", "above and below"][n & 3])"
            case (0x1D, 0x66): "barcode text font \(n == 1 ? "B" : "A")"
            case (0x1D, 0x68): "barcode height \(n) dots"
            case (0x1D, 0x77): "barcode module width \(n)"
            case (0x1D, 0x6B): barcode(bytes)
            case (0x1D, 0x76):
                "raster image \(bytes.count >= 8 ? Int(bytes[4]) + Int(bytes[5]) << 8 : 0) bytes × "
                    + "\(bytes.count >= 8 ? Int(bytes[6]) + Int(bytes[7]) << 8 : 0) rows"
            case (0x1D, 0x28):
                bytes.count > 2 && bytes[2] == 0x4C
                    ? "graphics (GS ( L), \(bytes.count + dataCount - 5) parameter bytes"
                    : bytes.count > 2 && bytes[2] == 0x6B
                        ? "2D code other than QR (cn \(bytes.count > 5 ? hex(bytes[5]) : "?"))"
                        : "length-declared function \(bytes.count > 2 ? hex(bytes[2]) : "")"
            case (0x1D, 0x4C): "left margin"
            case (0x1D, 0x57): "print area width"
            case (0x1D, 0x24): "absolute vertical position"
            case (0x1D, 0x5C): "relative vertical position"
            case (0x1D, 0x50): "motion units"
            case (0x1D, 0x49): "transmit printer ID \(n)"
            case (0x1D, 0x72): "transmit status \(n)"
            case (0x1D, 0x45): "print head energy \(n)"
            case (0x1D, 0x2F): "print downloaded bit image"
            case (0x1D, 0x56): "cut and feed (function \(n))"
            case (0x1C, 0x21): "Chinese character print mode \(n)"
            case (0x1C, 0x2D): "Chinese character underline \(n)"
            case (0x1C, 0x43): "Chinese character code system \(n)"
            case (0x1C, 0x57): "Chinese quadruple size \(on(n))"
            case (0x1C, 0x53): "Chinese character spacing"
            case (0x1C, 0x32): "define user Chinese character"
            case (0x10, 0x04): "transmit status (\(n))"
            case (0x10, 0x05): "real-time request \(n)"
            case (0x10, 0x14): "real-time command (function \(n))"
            default: nil
            }
        return text.map { "\(code): \($0)" } ?? code
    }

    /// GS k: the symbology and the data when printable.
    static func barcode(_ bytes: [UInt8]) -> String {
        guard bytes.count > 3 else { return "barcode" }
        let system = bytes[2]
        let names: [UInt8: String] = [
            0: "UPC-A", 1: "UPC-E", 2: "EAN13", 3: "EAN8", 4: "CODE39", 5: "ITF", 6: "CODABAR",
            65: "UPC-A", 66: "UPC-E", 67: "EAN13", 68: "EAN8", 69: "CODE39", 70: "ITF", 71: "CODABAR",
            72: "CODE93", 73: "CODE128", 74: "GS1-128", 75: "GS1 DataBar Omnidirectional",
            76: "GS1 DataBar Truncated", 77: "GS1 DataBar Limited", 78: "GS1 DataBar Expanded", 79: "CODE128 auto",
        ]
        let data = system <= 6 ? Array(bytes.dropFirst(3).dropLast()) : Array(bytes.dropFirst(4))
        let printable = data.allSatisfy { (0x20...0x7E).contains($0) }
        let shown = printable ? "\"\(String(decoding: data, as: UTF8.self))\"" : "\(data.count) bytes"
        return "barcode \(names[system] ?? "type \(system)") \(shown)"
    }

    static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
    }
}
