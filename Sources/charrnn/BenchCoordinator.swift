import ArgumentParser
import CharRNN
import CharRNNDistributed
import Foundation

/// The coordinator's CPU time per received gradient, pass by pass: what every worker's result costs it before
/// the step can finish, and so what grows with the number of workers.
struct BenchCoordinator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Time the coordinator's work per received gradient: checksum, checks, copy, reduction.")

    @OptionGroup var sizes: BenchSizes
    @Option(help: "Shards reduced per step (gradients per timing of the reduction).") var shards = 16
    @Option(help: "Timed repetitions; the best is reported (the machine may be shared).") var repeats = 7

    func run() throws {
        try sizes.apply()
        if shards <= 0 { throw CharRNNError.invalidOption("--shards must be positive, got \(shards)") }
        if repeats <= 0 { throw CharRNNError.invalidOption("--repeats must be positive, got \(repeats)") }
        let shape = try RunShape(config: sizes.config, seq: sizes.seq, rowsPerShard: 1, shardCount: shards)
        let probe = try GradientIntakeProbe(shape: shape, seed: 1)
        let messages = (0..<shards).map { _ in probe.received() }
        let p = shape.parameterCount

        var parts: [(String, Double)] = []
        /// The fastest of `repeats` runs of `body`, which returns the seconds it measured for all the shards.
        func best(_ name: String, _ body: () throws -> Double) rethrows {
            var fastest = Double.infinity
            for _ in 0..<repeats { fastest = min(fastest, try body() / Double(shards)) }
            parts.append((name, fastest))
        }
        func timed(_ body: () throws -> Void) rethrows -> Double {
            var clock = PhaseClock()
            try body()
            return clock.lap()
        }
        var sink: UInt64 = 0
        best("checksum, whole message") { timed { for m in messages { sink ^= probe.checksum(m) } } }
        try best("size + finite checks of the frames") { try timed { for m in messages { try probe.checkGradient(m) } } }
        best("copy of the frames into a new buffer") { timed { for m in messages { sink ^= UInt64(probe.copyGradient(m).count) } } }
        best("one fused pass: checksum + finite checks + copy") { timed { for m in messages { sink ^= probe.fusedPass(m) ? 1 : 2 } } }
        try best("decode, all checks (as received)") {
            try timed { for (s, m) in messages.enumerated() { sink ^= UInt64(try probe.decode(m, as: s).index) } }
        }
        var reducer = TreeReducer(tree: ReductionTree(shards: shards), gradientCount: p)
        try best("tree reduction of \(shards) decoded gradients") {
            // Fresh decodes, outside the clock: a reducer may reuse a gradient it is handed.
            var decoded = try messages.enumerated().map { s, m in try probe.decode(m, as: s) }
            return timed {
                // Handed over, as the coordinator hands its results on: the reducer ends up with the only reference.
                while !decoded.isEmpty { reducer.add(SubtreeSum(decoded.removeFirst())) }
                sink ^= UInt64(reducer.root().gradient.count)
                reducer.reset()
            }
        }
        try best("decode + reduction (what a coordinator runs)") {
            try timed {
                for (s, m) in messages.enumerated() { reducer.add(SubtreeSum(try probe.decode(m, as: s))) }
                sink ^= UInt64(reducer.root().gradient.count)
                reducer.reset()
            }
        }
        if sink == 0x5EED { print("") }

        print("charrnn bench coordinator — \(sizes.config), P = \(p) floats (\(fmt(Double(4 * p) / 1e6)) MB per gradient), "
            + "\(shards) shards, best of \(repeats)")
        print("CPU: \(cpuModel()), \(ProcessInfo.processInfo.activeProcessorCount) cores, load average \(loadAverage()), "
            + "threads \(BLASRuntime.threads)")
        printTable(parts.map { name, seconds in
            [name + " — ms per gradient (GB/s)", "\(fmt(seconds * 1e3, 2)) (\(fmt(Double(4 * p) / seconds / 1e9, 2)))"]
        })
    }
}

/// The first CPU model name in /proc/cpuinfo ("unknown" elsewhere).
func cpuModel() -> String {
    let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    let line = info.split(separator: "\n").first { $0.hasPrefix("model name") }
    return line.flatMap { $0.split(separator: ":", maxSplits: 1).last }.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg.
func loadAverage() -> String {
    let text = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? ""
    return text.split(separator: " ").prefix(3).joined(separator: " ")
}
