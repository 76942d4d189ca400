/// Work cut into numbered blocks whose number and extent depend only on the problem's shapes, run on up to
/// `threads` cores.
///
/// Each block is computed by one thread exactly as it would be computed alone, and blocks write disjoint memory,
/// so a result (every gemm tile, every gate, every partial sum) is bitwise the same on 1, 2, 3 or 64 threads, in
/// a worker or in-process: threads only decide who computes a block and when. That is also why OpenBLAS runs
/// single-threaded (see `BLASRuntime`): its own split would be a second, thread-dependent one.
public enum Parallel {
    /// Elements per block of an element-wise loop or a partial sum (Adam, gradient sums, dropout, norms):
    /// 64 KB of floats, a few tens of µs of work, so a 4 M-parameter update offers ≈ 250 blocks.
    public static let elementsPerBlock = 16_384

    /// Compute threads of this process (the caller included); 1 until `BLASRuntime.setThreads`.
    public static var threads: Int { pool?.threads ?? 1 }

    nonisolated(unsafe) private static var pool: BlockPool?

    static func setThreads(_ n: Int) {
        precondition(n > 0, "thread count must be positive")
        guard n != threads else { return }
        pool?.shutdown()
        pool = n > 1 ? BlockPool(threads: n, cores: ThreadCount.available()) : nil
    }

    /// Runs `body(0) … body(count − 1)`, each once, on up to `threads` threads; returns when all did. Each thread
    /// takes its own run of consecutive blocks first, or with `inIndexOrder` blocks dealt round the threads, so
    /// that they are taken roughly in index order (`HomeBlocks`). Nested or concurrent calls run their blocks on
    /// the calling thread: the same blocks, so the same bits.
    @inline(__always)
    static func forEach(blocks count: Int, inIndexOrder: Bool = false, _ body: (Int) -> Void) {
        if profile != nil { return profiled(blocks: count, body) }
        if count > 1, let pool, pool.run(count: count, inIndexOrder: inIndexOrder, body) { return }
        for b in 0..<count { body(b) }
    }

    /// `0..<n` cut into blocks of `size` (the last one shorter): block `b`'s range and the block count.
    @inline(__always)
    static func blocks(of n: Int, size: Int) -> Int { (n + size - 1) / size }

    @inline(__always)
    static func range(_ b: Int, of n: Int, size: Int) -> Range<Int> { min(n, b * size)..<min(n, (b + 1) * size) }

    /// Runs `body` over `0..<n` in blocks of `elementsPerBlock`.
    @inline(__always)
    static func forEachRange(of n: Int, _ body: (Range<Int>) -> Void) {
        forEach(blocks: blocks(of: n, size: elementsPerBlock)) { body(range($0, of: n, size: elementsPerBlock)) }
    }

    /// Σ_b partial(b) over the blocks of `0..<n`, added in block order: the grouping is fixed by n alone.
    static func sum(of n: Int, blockSize: Int = elementsPerBlock, _ partial: (Range<Int>) -> Double) -> Double {
        let count = blocks(of: n, size: blockSize)
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: max(count, 1)) { sums in
            forEach(blocks: count) { sums[$0] = partial(range($0, of: n, size: blockSize)) }
            var total = 0.0
            for b in 0..<count { total += sums[b] }
            return total
        }
    }
}
