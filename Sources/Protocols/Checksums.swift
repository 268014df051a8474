/// The checksums the hall's wire protocols use.
public enum Checksum {
    /// CRC-16/MODBUS: reflected polynomial 0xA001, initial value 0xFFFF. Sent low byte first.
    public static func crc16Modbus(_ bytes: some Sequence<UInt8>) -> UInt16 {
        crc16Reflected(bytes, initial: 0xFFFF)
    }

    /// CRC-16/ARC: reflected polynomial 0xA001, initial value 0 (Onbon BX controllers). Sent low byte first.
    public static func crc16ARC(_ bytes: some Sequence<UInt8>) -> UInt16 {
        crc16Reflected(bytes, initial: 0)
    }

    /// The sum of the bytes modulo 256 (the FF 68 caller bus).
    public static func sum8(_ bytes: some Sequence<UInt8>) -> UInt8 {
        bytes.reduce(0) { $0 &+ $1 }
    }

    private static let reflectedTable: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index)
        for _ in 0..<8 {
            crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xA001 : crc >> 1
        }
        return crc
    }

    private static func crc16Reflected(_ bytes: some Sequence<UInt8>, initial: UInt16) -> UInt16 {
        var crc = initial
        for byte in bytes {
            crc = (crc >> 8) ^ reflectedTable[Int((crc ^ UInt16(byte)) & 0xFF)]
        }
        return crc
    }
}
