/// A fixed-size float32 buffer with reference semantics, aligned for SIMD and BLAS.
///
/// Training buffers are large (tens of MB) and are passed to BLAS as raw pointers every step; an `Array`
/// with copy-on-write would make an accidental copy of a 12 MB matrix invisible. This type never copies
/// unless asked to (`copy()`).
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let base: UnsafeMutablePointer<Float>

    /// `count` zeros.
    public convenience init(count: Int) {
        self.init(uninitializedCount: count)
        base.initialize(repeating: 0, count: max(count, 1))
    }

    /// `count` floats of whatever the memory held, for a caller that writes every one before anything reads
    /// it: a received 16 MB gradient is copied in whole, and zeroing it first was a pass of its own.
    public init(uninitializedCount count: Int) {
        precondition(count >= 0, "negative buffer size")
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { UnsafeMutableRawPointer(base).deallocate() }

    public subscript(i: Int) -> Float {
        get { base[i] }
        set { base[i] = newValue }
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: base, count: count) }
    public var array: [Float] { Array(buffer) }

    public func copy() -> FloatBuffer {
        let out = FloatBuffer(count: count)
        out.base.update(from: base, count: count)
        return out
    }

    public func zero() { base.update(repeating: 0, count: count) }

    public func assign(from other: FloatBuffer) {
        precondition(other.count == count, "size mismatch")
        base.update(from: other.base, count: count)
    }

    /// Bitwise equality: what the resume and distributed invariants promise.
    public func bitwiseEqual(_ other: FloatBuffer) -> Bool {
        count == other.count && memcmp(base, other.base, count * 4) == 0
    }
}

#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
