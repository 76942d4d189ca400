/// The checksum of the spec table in Wire.swift: four independent multiply–rotate lanes, so the CPU overlaps the
/// multiplications instead of waiting on one chain. Internal so tests can forge frames with valid checksums.
struct WireChecksum {
    private static let multiplier: UInt64 = 0x9E37_79B9_7F4A_7C15
    private var l0: UInt64 = 0x243F_6A88_85A3_08D3
    private var l1: UInt64 = 0x1319_8A2E_0370_7344
    private var l2: UInt64 = 0xA409_3822_299F_31D0
    private var l3: UInt64 = 0x082E_FA98_EC4E_6C89

    @inline(__always)
    private static func fold(_ lane: UInt64, _ word: UInt64) -> UInt64 {
        let x = (lane ^ word) &* multiplier
        return (x << 29) | (x >> 35)
    }

    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        var i = 0
        if let base = bytes.baseAddress {
            while n - i >= 32 {
                l0 = Self.fold(l0, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                l1 = Self.fold(l1, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)))
                l2 = Self.fold(l2, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)))
                l3 = Self.fold(l3, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)))
                i += 32
            }
            var lane = 0
            while i < n {
                var word: UInt64 = 0
                let take = min(8, n - i)
                withUnsafeMutableBytes(of: &word) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)])) }
                word = UInt64(littleEndian: word)
                switch lane {
                case 0: l0 = Self.fold(l0, word)
                case 1: l1 = Self.fold(l1, word)
                case 2: l2 = Self.fold(l2, word)
                default: l3 = Self.fold(l3, word)
                }
                lane += 1
                i += take
            }
        }
        l0 = Self.fold(l0, UInt64(n))
    }

    var value: UInt64 {
        var h = Self.fold(Self.fold(Self.fold(Self.fold(0, l0), l1), l2), l3)
        h ^= h >> 33
        h &*= 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        h &*= 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 33
        return h
    }
}
