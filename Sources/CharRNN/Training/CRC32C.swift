/// CRC-32C (Castagnoli), the checksum TFRecord files (TensorBoard's event files) put around every record.
///
/// Reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF; one table lookup per byte:
///     crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
/// (Event files are small, so the 8-bytes-at-a-time or SSE4.2 variants would not pay for their code.)
enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TFRecord stores the CRC rotated right by 15 bits plus a constant, because a CRC computed over data
    /// that itself contains CRCs is weak (tensorflow/core/lib/hash/crc32c.h, `Mask`).
    static func masked<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        let crc = checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
