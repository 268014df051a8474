/// Text carried in Modbus holding registers: two bytes per register, high byte first, padded with NUL.
public enum RegisterText {
    /// The bytes of the registers in wire order, cut at the first NUL and with trailing spaces removed.
    public static func bytes(from registers: some Collection<UInt16>) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(registers.count * 2)
        for register in registers {
            bytes.append(UInt8(register >> 8))
            bytes.append(UInt8(register & 0xFF))
        }
        if let end = bytes.firstIndex(of: 0) { bytes.removeSubrange(end...) }
        while bytes.last == 0x20 { bytes.removeLast() }
        return bytes
    }

    /// Packs bytes into `count` registers, high byte first, NUL-padded; extra bytes are cut.
    public static func registers(from bytes: [UInt8], count: Int) -> [UInt16] {
        (0..<count).map { index in
            let high = 2 * index < bytes.count ? UInt16(bytes[2 * index]) : 0
            let low = 2 * index + 1 < bytes.count ? UInt16(bytes[2 * index + 1]) : 0
            return high << 8 | low
        }
    }
}
