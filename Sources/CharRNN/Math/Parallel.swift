import Dispatch

/// Work cut into a fixed number of chunks, run on up to `threads` cores.
///
/// The cut never depends on the thread count: with 1 thread the same chunks run one after the other, so a
/// result (every gemm, every gate) is bitwise the same on 1 or 2 threads, in a worker or in-process. That is
/// also why OpenBLAS itself runs single-threaded (see `BLASRuntime`): its own split would be a second,
/// thread-dependent one, and its threads would compete with ours for the same cores.
public enum Parallel {
    /// Chunks per parallel section: this machine's core count. Changing it changes results in the last bits.
    public static let chunks = 2

    nonisolated(unsafe) static var threads = 1

    /// Runs `body(0) … body(chunks − 1)`, concurrently when more than one thread is allowed; returns when all did.
    @inline(__always)
    static func forEachChunk(_ body: (Int) -> Void) {
        if threads > 1 {
            // Chunks write disjoint memory by construction, which the compiler cannot see through raw pointers.
            withoutActuallyEscaping(body) { body in
                nonisolated(unsafe) let body = body
                DispatchQueue.concurrentPerform(iterations: chunks) { body($0) }
            }
        } else {
            for c in 0..<chunks { body(c) }
        }
    }

    /// Chunk `c`'s part of `0..<n`, cut at multiples of the SIMD width so vector loops stay whole.
    @inline(__always)
    static func range(_ c: Int, of n: Int) -> Range<Int> {
        let step = (n + chunks * Vec.scalarCount - 1) / (chunks * Vec.scalarCount) * Vec.scalarCount
        return min(n, c * step)..<min(n, (c + 1) * step)
    }
}
