/// The checksum of the spec table in Wire.swift: four independent multiply–rotate lanes, so the CPU overlaps the
/// multiplications instead of waiting on one chain. Internal so tests can forge frames with valid checksums.
struct WireChecksum {
    private var l0: UInt64 = 0x243F_6A88_85A3_08D3
    private var l1: UInt64 = 0x1319_8A2E_0370_7344
    private var l2: UInt64 = 0xA409_3822_299F_31D0
    private var l3: UInt64 = 0x082E_FA98_EC4E_6C89
    /// 0x9E3779B97F4A7C15, stored rather than a literal in the loops on purpose: with the constant in sight, LLVM
    /// rewrites rotl(x·M, 29) as (x·M >> 35) | x·(M << 29), two multiplications per word instead of a
    /// multiplication and a rotate, which halved the checksum's speed (8.9 GB/s against 16). The loops are
    /// kept out of line (`@inline(never)`) so that no caller's inlining brings the constant back into view.
    private let multiplier: UInt64 = 0x9E37_79B9_7F4A_7C15

    @inline(__always)
    private static func fold(_ lane: UInt64, _ word: UInt64, _ m: UInt64) -> UInt64 {
        let x = (lane ^ word) &* m
        return (x << 29) | (x >> 35)
    }

    /// Folds a segment in: its little-endian words into lanes 0, 1, 2, 3, 0, … (the last one zero-padded),
    /// then its length into lane 0.
    @inline(never)
    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        _ = fold(bytes, copyingTo: nil)
    }

    /// `add(floats)` fused with the two other passes a received bulk frame needs: copies the bytes to
    /// `destination` and returns whether every float32 among them is finite, reading each byte once. `floats`
    /// holds whole floats (its count a multiple of 4); the checksum is `add`'s, word for word.
    @inline(never)
    mutating func add(floats bytes: UnsafeRawBufferPointer, copyingTo destination: UnsafeMutableRawPointer) -> Bool {
        precondition(bytes.count % 4 == 0, "a frame of floats has a whole number of them")
        return fold(bytes, copyingTo: destination)
    }

    /// The one loop behind both `add`s (`destination` nil: checksum only, and the finite flag means nothing).
    /// Finiteness: adding the lowest exponent bit to a float's masked exponent carries into its sign position
    /// exactly when the exponent is all ones (NaN or infinity). The 32-byte blocks do it on eight floats at once
    /// (`badLanes`, bit 31 of each lane), with the copy as two vector stores, so both ride in the slots the
    /// checksum's multiply chains leave idle (1.93 → 1.45 ms per 16 MB gradient against the same test done on
    /// the four words as integers); the tail does it on its words, bits 31 and 63 of `bad` (no carry crosses
    /// the halves; a zero-padded half is finite). Lanes and multiplier live in locals: stores through
    /// `destination` could alias `self`.
    @inline(__always)
    private mutating func fold(_ bytes: UnsafeRawBufferPointer, copyingTo destination: UnsafeMutableRawPointer?) -> Bool {
        @inline(__always) func exponentAllOnes(_ word: UInt64) -> UInt64 {
            ((word & 0x7F80_0000_7F80_0000) &+ 0x0080_0000_0080_0000) & 0x8000_0000_8000_0000
        }
        let n = bytes.count
        let m = multiplier
        var (a, b, c, d) = (l0, l1, l2, l3)
        var bad: UInt64 = 0
        var badLanes = SIMD8<UInt32>.zero
        var i = 0
        if let base = bytes.baseAddress {
            while n - i >= 32 {
                let w0 = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                let w1 = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self))
                let w2 = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self))
                let w3 = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self))
                a = Self.fold(a, w0, m)
                b = Self.fold(b, w1, m)
                c = Self.fold(c, w2, m)
                d = Self.fold(d, w3, m)
                if let destination {
                    let v = base.loadUnaligned(fromByteOffset: i, as: SIMD8<UInt32>.self)
                    destination.storeBytes(of: v, toByteOffset: i, as: SIMD8<UInt32>.self)
                    badLanes |= (v & 0x7F80_0000) &+ 0x0080_0000
                }
                i += 32
            }
            // The last bytes (fewer than 32): up to four words, the last zero-padded (a zero half is finite).
            if let destination { (destination + i).copyMemory(from: base + i, byteCount: n - i) }
            var lane = 0
            while i < n {
                var word: UInt64 = 0
                let take = min(8, n - i)
                withUnsafeMutableBytes(of: &word) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)])) }
                word = UInt64(littleEndian: word)
                switch lane {
                case 0: a = Self.fold(a, word, m)
                case 1: b = Self.fold(b, word, m)
                case 2: c = Self.fold(c, word, m)
                default: d = Self.fold(d, word, m)
                }
                bad |= exponentAllOnes(word)
                lane += 1
                i += take
            }
        }
        l0 = Self.fold(a, UInt64(n), m)
        (l1, l2, l3) = (b, c, d)
        return bad == 0 && (badLanes & 0x8000_0000) == .zero
    }

    var value: UInt64 {
        let m = multiplier
        var h = Self.fold(Self.fold(Self.fold(Self.fold(0, l0, m), l1, m), l2, m), l3, m)
        h ^= h >> 33
        h &*= 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        h &*= 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 33
        return h
    }
}
