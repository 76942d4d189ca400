import Synchronization
import XCTest
@testable import CharRNN

/// `Parallel` and its pool: every block runs exactly once, whatever the thread count, job after job.
final class ParallelTests: XCTestCase {
    func withThreads<T>(_ n: Int, _ body: () -> T) -> T {
        let saved = BLASRuntime.threads
        defer { BLASRuntime.setThreads(saved) }
        BLASRuntime.setThreads(n)
        return body()
    }

    func testEveryBlockRunsOnceOnAnyThreadCount() {
        for threads in [1, 2, 3, 8] {
            withThreads(threads) {
                XCTAssertEqual(Parallel.threads, threads)
                for count in [0, 1, 2, 7, 64, 1000] {
                    let runs = FloatBuffer(count: count)
                    Parallel.forEach(blocks: count) { runs[$0] += 1 }
                    XCTAssert(runs.array.allSatisfy { $0 == 1 }, "\(count) blocks on \(threads) threads")
                }
            }
        }
    }

    /// Thousands of short jobs back to back: a thread that wakes late for one job must never run a block of
    /// the next with the old job's body (each job writes its own number into its own blocks).
    func testBackToBackJobsNeverMix() {
        withThreads(8) {
            let out = FloatBuffer(count: 16)
            for job in 1...5000 {
                Parallel.forEach(blocks: 1 + job % 16) { b in
                    // A few µs of work per block, so that the pool's threads take part.
                    var x: Float = 0
                    for i in 0..<2000 { x += Float(i & 7) }
                    out[b] = Float(job) + x * 0
                }
                for b in 0...(job % 16) where out[b] != Float(job) {
                    XCTFail("job \(job), block \(b) holds \(out[b])")
                    return
                }
            }
        }
    }

    /// A job of n blocks runs on n threads at most, so the other threads of a big pool sleep through a small
    /// model's time steps instead of spinning and being woken for each; a bigger job still gets them back.
    func testSmallJobsLeaveTheOtherThreadsAsleep() {
        withThreads(8) {
            let jobs = 2000
            let runners = UnsafeMutableBufferPointer<UInt>.allocate(capacity: jobs * 2)
            defer { runners.deallocate() }
            for job in 0..<jobs {
                Parallel.forEach(blocks: 2) { b in
                    var x: Float = 0
                    for i in 0..<2000 { x += Float(i & 7) }
                    runners[job * 2 + b] = UInt(bitPattern: Int(bitPattern: pthread_self())) + UInt(x * 0)
                }
            }
            XCTAssertLessThanOrEqual(Set(runners).count, 2, "threads that ran blocks of 2-block jobs")

            let big = 1000
            let bigRunners = UnsafeMutableBufferPointer<UInt>.allocate(capacity: big)
            defer { bigRunners.deallocate() }
            Parallel.forEach(blocks: big) { b in
                var x: Float = 0
                for i in 0..<20_000 { x += Float(i & 7) }
                bigRunners[b] = UInt(bitPattern: Int(bitPattern: pthread_self())) + UInt(x * 0)
            }
            XCTAssertGreaterThan(Set(bigRunners).count, 2, "threads that ran blocks of a 1,000-block job")
        }
    }

    /// A job's blocks shared out among the threads that take part, in runs or dealt round: every block in exactly
    /// one set, each set in increasing order (consecutive in runs), the sets even in size.
    func testHomeBlocksHoldEveryBlockOnceEvenly() {
        for inIndexOrder in [false, true] {
            for blocks in 0...70 {
                for threads in 1...9 {
                    let homes = HomeBlocks(blocks: blocks, threads: threads, inIndexOrder: inIndexOrder)
                    let label = "\(blocks) blocks, \(threads) threads, in index order: \(inIndexOrder)"
                    XCTAssertEqual(homes.sets, max(1, min(blocks, threads)), label)
                    let sets = (0..<homes.sets).map { r in (0..<homes.size(of: r)).map { homes.block($0, of: r) } }
                    XCTAssertEqual(sets.flatMap { $0 }.sorted(), Array(0..<blocks), label)
                    let consecutive = sets.flatMap { $0 } == Array(0..<blocks)
                    XCTAssertEqual(consecutive, !inIndexOrder || homes.sets == 1 || homes.sets == blocks, label)
                    XCTAssertTrue(sets.allSatisfy { $0 == $0.sorted() }, label)
                    let sizes = sets.map(\.count)
                    XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, label)
                }
            }
        }
    }

    /// Each thread takes its own home blocks before the others'. 2 threads, 4 blocks, block 0 takes 200 ms and the
    /// others 20 ms. In runs, the pool's thread runs its own 2 and 3, then the caller's 1, which the caller, busy with
    /// 0, left; dealt round, its own 1 and 3, then 2. (Claimed in one sequence, as before home blocks, it ran 1, 2, 3
    /// either way: seen failing.)
    func testEachThreadTakesItsHomeBlocksFirst() {
        withThreads(2) {
            for (inIndexOrder, expected) in [(false, [2, 3, 1]), (true, [1, 3, 2])] {
                let caller = UInt(bitPattern: Int(bitPattern: pthread_self()))
                let order = Mutex<[(block: Int, thread: UInt)]>([])
                Parallel.forEach(blocks: 4, inIndexOrder: inIndexOrder) { b in
                    order.withLock { $0.append((b, UInt(bitPattern: Int(bitPattern: pthread_self())))) }
                    usleep(b == 0 ? 200_000 : 20_000)
                }
                let runs = order.withLock { $0 }
                XCTAssertEqual(runs.filter { $0.thread == caller }.map(\.block), [0], "in index order: \(inIndexOrder)")
                let pool = runs.filter { $0.thread != caller }.map(\.block)
                XCTAssertEqual(pool, expected, "in index order: \(inIndexOrder)")
            }
        }
    }

    /// Waiting threads poll only when each can have a core; oversubscribed (`--threads 8` on 2 cores) a poller
    /// would hold the core a thread with a block is waiting for.
    func testWaitingThreadsPollOnlyWhenEveryThreadHasACore() {
        XCTAssertGreaterThan(BlockPool.spinTime(threads: 2, cores: 2), 0)
        XCTAssertGreaterThan(BlockPool.spinTime(threads: 16, cores: 64), 0)
        XCTAssertEqual(BlockPool.spinTime(threads: 3, cores: 2), 0)
        XCTAssertEqual(BlockPool.spinTime(threads: 8, cores: 2), 0)
    }

    /// A block that itself asks for blocks runs them on its own thread: same blocks, no deadlock.
    func testNestedJobsRunInline() {
        withThreads(3) {
            let out = FloatBuffer(count: 12)
            Parallel.forEach(blocks: 3) { i in
                Parallel.forEach(blocks: 4) { j in out[i * 4 + j] = Float(i * 4 + j) }
            }
            XCTAssertEqual(out.array, (0..<12).map(Float.init))
        }
    }

    func testSumsAndProductsAreTheSameBitsOnEveryThreadCount() {
        let (m, n, k) = (700, 900, 50)
        let a = FloatBuffer((0..<(m * k)).map { Float(sin(Double($0))) })
        let b = FloatBuffer((0..<(k * n)).map { Float(cos(Double($0) * 0.7)) })
        func compute() -> (Double, [Float]) {
            let c = FloatBuffer(count: m * n)
            gemm(a.base, b.base, into: c.base, m: m, n: n, k: k)
            let s = Parallel.sum(of: c.count) { r in r.reduce(0.0) { $0 + Double(c[$1]) } }
            return (s, c.array)
        }
        XCTAssertGreaterThan(GemmTiles(m: m, n: n).count, 2)
        let one = withThreads(1) { compute() }
        for threads in [2, 3, 8] {
            let other = withThreads(threads) { compute() }
            XCTAssertEqual(one.0.bitPattern, other.0.bitPattern, "sum on \(threads) threads")
            XCTAssert(one.1 == other.1, "product on \(threads) threads")
        }
        // And the tiles compute the product: C[1, 2] = Σ_k A[1, k]·B[k, 2].
        let expected = (0..<k).reduce(0.0) { $0 + Double(a[1 * k + $1]) * Double(b[$1 * n + 2]) }
        XCTAssertEqual(Double(one.1[1 * n + 2]), expected, accuracy: 1e-4)
    }

    func testTilesAndUnitBlocksAreFunctionsOfTheShape() {
        let tiles = GemmTiles(m: 1024, n: 3072)
        XCTAssertEqual(tiles.count, 16)
        var covered = 0
        for t in 0..<tiles.count { covered += tiles[t].rows.count * tiles[t].cols.count }
        XCTAssertEqual(covered, 1024 * 3072)
        XCTAssertEqual(UnitBlocks(units: 1024, gates: 3).count, 32, "a tutorial time step offers 32 blocks")
        XCTAssertEqual(UnitBlocks(units: 2080, gates: 3).count, 65)
        XCTAssertEqual(UnitBlocks(units: 2080, gates: 3)[64], 2048..<2080)
        XCTAssertEqual(UnitBlocks(units: 256, gates: 3).count, 4, "64-unit blocks below H 1024")
        XCTAssertEqual(UnitBlocks(units: 72, gates: 3).count, 2)
        XCTAssertEqual(UnitBlocks(units: 72, gates: 3)[1], 64..<72)
    }
}
