import ArgumentParser
import CharRNN
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training and generation speed (build with -c release).",
        subcommands: [BenchTrain.self, BenchGenerate.self, BenchDistributed.self, BenchCoordinator.self])
}

/// Sizes for a benchmark, defaulting to the tutorial's model.
struct BenchSizes: ParsableArguments {
    @Option(help: "Vocabulary size.") var vocab = 65
    @Option(help: "Embedding width.") var embed = 256
    @Option(help: "Units per recurrent layer.") var units = 1024
    @OptionGroup var architecture: Architecture
    @Option(help: "Sequences per batch.") var batch = 64
    @Option(help: "Characters per sequence.") var seq = 100
    @Option(help: ArgumentHelp(threadsHelp)) var threads: Int?

    var config: ModelConfig { architecture.model(vocab: vocab, embed: embed, units: units) }

    func apply() throws {
        try config.validate()
        for (name, v) in [("--batch", batch), ("--seq", seq)] where v <= 0 {
            throw CharRNNError.invalidOption("\(name) must be positive, got \(v)")
        }
        BLASRuntime.setThreads(try ThreadCount.resolve(threads))
    }
}

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train", abstract: "Time training steps at a given size.")

    @OptionGroup var sizes: BenchSizes
    @Option(help: "Logical shards per batch (as with train --shards).") var shards = 1
    @Option(help: "Measured steps (after warm-up).") var steps = 10
    @Option(help: "Warm-up steps, not measured.") var warmup = 2
    @Option(help: "Dropout rate in training (default: none).") var dropout: Float?
    @Option(help: "Steps profiled on one thread for the projection to more cores (0: no projection).") var profileSteps = 2

    func run() throws {
        try sizes.apply()
        let c = sizes.config
        let plan = try sizes.syntheticPlan(shards: shards, steps: warmup + steps + 1, dropout: dropout)
        let pool = InMemoryPool(plan: plan)
        let trainer = StepDriver.inProcess(plan: plan, pool: pool)

        for _ in 0..<warmup { _ = try trainer.advance() }
        pool.resetTimes()
        var samples: [Double] = []
        let cpuBefore = cpuSeconds()
        for _ in 0..<steps {
            var clock = PhaseClock()
            _ = try trainer.advance()
            samples.append(clock.lap())
        }
        let cpuPerStep = (cpuSeconds() - cpuBefore) / Double(steps)
        let t = pool.times
        let median = samples.sorted()[samples.count / 2]
        let flops = StepFlops(config: c, batch: sizes.batch, seq: sizes.seq)
        let rowsPerShard = sizes.batch / shards
        let width = c.cell.gates * c.units
        let sgemm = SgemmProbe.rate(m: rowsPerShard, n: width, k: c.units)
        let n = Double(steps)
        let blocks = BlockRates(config: c, rows: rowsPerShard, seq: sizes.seq)
        let other = max(0, samples.reduce(0, +) - t.total) / n

        print("charrnn bench train — \(c), batch \(sizes.batch), seq \(sizes.seq), shards \(shards)"
            + (trainer.plan.options.dropout.map { ", dropout \($0)" } ?? ""))
        printTable([
            ["threads", "\(BLASRuntime.threads)"],
            ["OpenBLAS core", BLASRuntime.coreName],
            ["ms/step (median of \(steps))", fmt(median * 1e3)],
            ["ms/step (min / max)", "\(fmt(samples.min()! * 1e3)) / \(fmt(samples.max()! * 1e3))"],
            ["CPU ms/step, all threads (mean)", fmt(cpuPerStep * 1e3)],
            ["chars/s", fmt(Double(sizes.batch * sizes.seq) / median, 0)],
            ["epoch of 1,115,394 chars (s)", fmt(Double(1_115_394 / (sizes.seq + 1) / sizes.batch) * median, 1)],
            ["model GFLOP/step (as computed)", fmt(flops.total / 1e9, 1)],
            ["achieved GFLOP/s", fmt(flops.total / median / 1e9, 1)],
            ["sgemm GFLOP/s at [\(rowsPerShard)x\(c.units)]x[\(c.units)x\(width)]", fmt(sgemm / 1e9, 1)],
            ["forward recurrence (ms)", fmt(t.forwardRecurrence / n * 1e3)],
            ["backward recurrence (ms)", fmt(t.backwardRecurrence / n * 1e3)],
            ["weight gradients (ms)", fmt(t.weightGradients / n * 1e3)],
            ["dense + softmax (ms)", fmt(t.dense / n * 1e3)],
            ["dropout masks, forward and backward (ms)", fmt(t.dropout / n * 1e3)],
            ["reduction + Adam + batching (ms)", fmt(other * 1e3)],
            ["peak RSS (MB)", fmt(peakRSSMegabytes(), 0)],
        ] + blocks.rows)
        if profileSteps > 0 {
            let (_, profile) = try Parallel.profiling { for _ in 0..<profileSteps { _ = try trainer.advance() } }
            printProjection(profile.scaled(by: 1 / Double(profileSteps)), measured: median, flops: flops.total)
        }
    }

    /// Amdahl with block granularity: on P cores a section of B blocks takes ⌈B/P⌉ of its B one-thread blocks,
    /// the serial rest stays, and every section pays a start-and-join cost measured here on `max(2, --threads)`
    /// threads. Not modelled: memory bandwidth and shared caches (more cores streaming U at once), a join that
    /// grows with the thread count, slower clocks with every core busy; so on many cores it is optimistic.
    private func printProjection(_ p: ParallelProfile, measured: Double, flops: Double) {
        let threads = BLASRuntime.threads
        let perSection = Parallel.sectionOverhead(threads: max(2, threads))
        let big = p.byBlocks.sorted { $0.value.seconds > $1.value.seconds }.prefix(4)
            .map { "\(fmt($0.value.count, 0)) × \($0.key)" }.joined(separator: ", ")
        print("")
        print("Projection from a one-thread profile of \(profileSteps) step(s) (thread CPU time); sections × blocks per step, largest: \(big)")
        printTable([
            ["one thread: ms/step", fmt(p.total * 1e3)],
            ["  serial, outside parallel sections (ms)", fmt(p.serialSeconds * 1e3)],
            ["  parallel sections per step", fmt(p.sections, 0)],
            ["start + join per section, measured on \(max(2, threads)) threads (µs)", fmt(perSection * 1e6)],
        ] + [threads, 8, 16, 32, 64].map { cores in
            let t = p.projected(cores: cores, perSection: perSection)
            return ["\(cores) cores: ms/step (speed-up, GFLOP/s)", "\(fmt(t * 1e3)) (\(fmt(p.total / t, 2))×, \(fmt(flops / t / 1e9, 0)))"]
        })
    }
}

/// GFLOP/s of single blocks on one core: what one thread of many computes at a time.
struct BlockRates {
    let rows: [[String]]

    init(config c: ModelConfig, rows b: Int, seq: Int) {
        let (h, g) = (c.units, c.cell.gates)
        let w = Parallel.unitsPerBlock(units: h)
        let saved = BLASRuntime.threads
        BLASRuntime.setThreads(1)
        defer { BLASRuntime.setThreads(saved) }
        let uw = min(w, h)
        let forward = SgemmProbe.packedRate(m: b, n: g * uw, k: h)
        let backward = SgemmProbe.packedRate(m: b, n: uw, k: g * h, transB: true)
        let tile = Parallel.gemmTile
        let (tm, tn, tk) = (min(tile.rows, h), min(tile.cols, g * h), b * seq)
        let gradient = SgemmProbe.rate(m: tm, n: tn, k: tk, transA: true)
        rows = [
            ["recurrent blocks per time step (\(w) units each)", "\(Parallel.unitBlocks(units: h))"],
            ["1 core, forward block [\(b)x\(h)]x[\(h)x\(g * uw)], U packed, GFLOP/s", fmt(forward / 1e9, 1)],
            ["1 core, backward block [\(b)x\(g * h)]x[\(g * h)x\(uw)], U packed, GFLOP/s", fmt(backward / 1e9, 1)],
            ["1 core, weight-gradient tile [\(tm)x\(tk)]x[\(tk)x\(tn)] GFLOP/s", fmt(gradient / 1e9, 1)],
        ]
    }
}

struct BenchGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate", abstract: "Time sampling (batch 1, or --count samples together).")

    @OptionGroup var sizes: BenchSizes
    @Option(help: "Characters per sample.") var length = 1000
    @Option(help: "Samples generated together.") var count = 1
    @Option(help: "Measured runs.") var runs = 5

    func run() throws {
        try sizes.apply()
        let c = sizes.config
        if count <= 0 { throw CharRNNError.invalidOption("--count must be positive, got \(count)") }
        let sampler = Sampler(weights: Parameters.initialized(c, seed: 1), count: count)
        var samples: [Double] = []
        for r in 0...runs {
            var clock = PhaseClock()
            sampler.generate(prime: [0], length: length, options: SamplingOptions(seed: UInt64(r))) { _ in }
            if r > 0 { samples.append(clock.lap()) }
        }
        let median = samples.sorted()[samples.count / 2]
        let chars = Double(length * count)
        print("charrnn bench generate — \(c), \(length) chars per sample, \(count) sample(s) together")
        printTable([
            ["threads", "\(BLASRuntime.threads)"],
            ["OpenBLAS core", BLASRuntime.coreName],
            ["ms per run of \(count) sample(s) (median of \(runs))", fmt(median * 1e3)],
            ["chars/s (all samples)", fmt(chars / median, 0)],
            ["µs/char (all samples)", fmt(median / chars * 1e6)],
            ["peak RSS (MB)", fmt(peakRSSMegabytes(), 0)],
        ])
    }
}

/// The floating-point work of one step as this implementation does it (multiply-add = 2 flops).
struct StepFlops {
    let total: Double

    init(config c: ModelConfig, batch: Int, seq: Int) {
        let (v, e, h) = (Double(c.vocab), Double(c.embed), Double(c.units))
        let n = Double(batch * seq)
        let (l, g) = (Double(c.layers), Double(c.cell.gates))
        let recurrent = l * 3 * 2 * n * h * g * h          // h·U, dg·Uᵀ, hᵀ·dg per layer
        let layerInput = (l - 1) * 3 * 2 * n * h * g * h   // Hs·W, Hsᵀ·dxw, dxw·Wᵀ above layer 0
        let table = 3 * 2 * v * e * g * h                  // E·W, Eᵀ·dT, dT·Wᵀ
        let dense = 3 * 2 * n * h * v                      // Hs·K, Hsᵀ·dl, dl·Kᵀ
        total = recurrent + layerInput + table + dense
    }
}

/// sgemm's rate at one shape, measured here and now, so achieved rates are judged against this machine. It
/// times `gemm`, the same tiled, `--threads`-parallel product the trainer calls.
enum SgemmProbe {
    /// FLOP/s of `gemm` (OpenBLAS) on one product of this shape.
    static func rate(m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false) -> Double {
        let (a, b, c) = operands(m: m, n: n, k: k)
        return best(m: m, n: n, k: k) { gemm(a.base, transA: transA, b.base, transB: transB, into: c.base, m: m, n: n, k: k) }
    }

    /// FLOP/s of a `PackedProduct` of this shape, B packed beforehand as the recurrent products' U is.
    static func packedRate(m: Int, n: Int, k: Int, transB: Bool = false) -> Double {
        let (a, b, c) = operands(m: m, n: n, k: k)
        let packed = FloatBuffer(count: PackedProduct.count(k: k, n: n))
        PackedProduct.pack(b.base, ldb: transB ? k : n, transposed: transB, k: k, n: n, into: packed.base)
        return best(m: m, n: n, k: k) { PackedProduct.multiply(a.base, lda: k, packed.base, into: c.base, ldc: n, m: m, n: n, k: k) }
    }

    private static func operands(m: Int, n: Int, k: Int) -> (FloatBuffer, FloatBuffer, FloatBuffer) {
        let a = FloatBuffer(count: m * k), b = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.1 }
        for i in 0..<b.count { b[i] = Float(i % 5) * 0.1 }
        return (a, b, c)
    }

    private static func best(m: Int, n: Int, k: Int, _ product: () -> Void) -> Double {
        var best = Double.infinity
        let reps = max(3, Int(2e8 / Double(2 * m * n * k)))
        for _ in 0..<5 {
            var clock = PhaseClock()
            for _ in 0..<reps { product() }
            best = min(best, clock.lap() / Double(reps))
        }
        return 2 * Double(m * n * k) / best
    }
}

func syntheticVocabulary(_ size: Int) throws -> Vocabulary {
    try Vocabulary(codePoints: (0..<UInt32(size)).map { 0x4E00 + $0 })
}

/// User + system CPU time of the whole process: on a shared machine it shows the work a step needs even when
/// other processes stretch its wall time.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) * 1e-6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

func peakRSSMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

func fmt(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }

/// A two-column Markdown table, so the output pastes straight into BENCHMARKS.md.
func printTable(_ rows: [[String]]) {
    let w = rows.map { $0[0].count }.max() ?? 0
    print("| \("metric".padding(toLength: w, withPad: " ", startingAt: 0)) | value |")
    print("| \(String(repeating: "-", count: w)) | ----- |")
    for r in rows { print("| \(r[0].padding(toLength: w, withPad: " ", startingAt: 0)) | \(r[1]) |") }
}
