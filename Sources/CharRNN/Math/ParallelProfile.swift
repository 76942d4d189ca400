#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the parallel sections of some work were, measured on one thread (in that thread's CPU time, so other
/// processes on a shared machine do not inflate it): for the benchmark's projection to more cores. A section with B blocks that took W seconds on one thread takes ⌈B / P⌉ · W / B on P cores (its
/// blocks are about equal); everything outside the sections is serial.
public struct ParallelProfile: Sendable {
    public struct Sections: Sendable {
        /// Sections (per step once `scaled`).
        public var count = 0.0
        public var seconds = 0.0
    }

    /// Sections by their block count.
    public var byBlocks: [Int: Sections] = [:]
    /// Wall time of the whole profiled work.
    public var total = 0.0

    public var sections: Double { byBlocks.values.reduce(0) { $0 + $1.count } }
    public var parallelSeconds: Double { byBlocks.values.reduce(0) { $0 + $1.seconds } }
    public var serialSeconds: Double { max(0, total - parallelSeconds) }

    /// The same profile with every time multiplied by `factor` (per step, from several steps).
    public func scaled(by factor: Double) -> ParallelProfile {
        var p = self
        p.total *= factor
        for key in p.byBlocks.keys {
            p.byBlocks[key]!.seconds *= factor
            p.byBlocks[key]!.count *= factor
        }
        return p
    }

    /// Projected wall time on `cores` cores, with `perSection` seconds of start and join overhead per section.
    public func projected(cores: Int, perSection: Double) -> Double {
        var t = serialSeconds + sections * perSection
        for (blocks, s) in byBlocks {
            let waves = (blocks + cores - 1) / cores
            t += s.seconds * Double(waves) / Double(blocks)
        }
        return t
    }
}

extension Parallel {
    nonisolated(unsafe) static var profile: ParallelProfile?
    nonisolated(unsafe) private static var depth = 0

    /// Runs `body` on one thread, recording each outermost parallel section's block count and time.
    public static func profiling<T>(_ body: () throws -> T) rethrows -> (T, ParallelProfile) {
        let saved = threads
        setThreads(1)
        defer { setThreads(saved) }
        profile = ParallelProfile()
        defer { profile = nil }
        let start = threadSeconds()
        let result = try body()
        profile!.total = threadSeconds() - start
        return (result, profile!)
    }

    static func profiled(blocks count: Int, _ body: (Int) -> Void) {
        guard depth == 0 else {
            for b in 0..<count { body(b) }
            return
        }
        depth += 1
        let start = threadSeconds()
        for b in 0..<count { body(b) }
        let seconds = threadSeconds() - start
        depth -= 1
        profile!.byBlocks[count, default: .init()].count += 1
        profile!.byBlocks[count, default: .init()].seconds += seconds
    }

    /// CPU seconds of the calling thread.
    static func threadSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// What a section costs beyond its blocks on `n` threads: publishing it, waking the threads, the barrier.
    /// Sections of n blocks of ≈ `work` seconds each, run back to back as a time step's are, against the same
    /// block run alone on the calling thread just before: the difference is the overhead whatever a block
    /// really takes (the calibration's loop is not the blocks' machine code, and clocks change speed). The best
    /// of several rounds of each (a shared machine only ever adds).
    public static func sectionOverhead(threads n: Int, work: Double = 50e-6) -> Double {
        let saved = threads
        setThreads(n)
        defer { setThreads(saved) }
        // Size a busy loop to about `work` seconds on this core.
        func spin(_ iterations: Int) -> Float {
            var x: Float = 1
            for i in 0..<iterations { x = x * 0.999_999 + Float(i & 1) }
            return x
        }
        let probe = 200_000
        let t0 = threadSeconds()
        var sink = spin(probe)
        let iterations = max(1, Int(Double(probe) * work / max(threadSeconds() - t0, 1e-9)))
        let block: (Int) -> Void = { _ in sink += spin(iterations) * 0 }
        func best(_ body: () -> Void) -> Double {
            var best = Double.infinity
            for _ in 0..<5 {
                var clock = PhaseClock()
                for _ in 0..<100 { body() }
                best = min(best, clock.lap() / 100)
            }
            return best
        }
        let alone = best { block(0) }
        let section = best { forEach(blocks: n, block) }
        return max(0, section - alone + Double(sink) * 0)
    }

    /// Blocks per recurrent time step (forward or backward) of a layer of `units` units.
    public static func unitBlocks(units: Int) -> Int { UnitBlocks.count(units: units) }
    /// Units per recurrent block of a layer of `units` units.
    public static func unitsPerBlock(units: Int) -> Int { UnitBlocks.width(units: units) }
    /// The largest `gemm` tile, rows × columns.
    public static var gemmTile: (rows: Int, cols: Int) { (GemmTiles.rows, GemmTiles.cols) }
}
