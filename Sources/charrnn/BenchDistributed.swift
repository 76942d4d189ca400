import ArgumentParser
import CharRNN
import CharRNNDistributed
import Foundation

/// The distributed trainer against the in-process one on this machine: the same plan, once with `train`'s
/// threads in one process, once as a coordinator (this process) with worker processes of one compute thread.
struct BenchDistributed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distributed",
        abstract: "Time coordinator + workers against in-process training at a given size.")

    @OptionGroup var sizes: BenchSizes
    @Option(help: "Worker processes (one compute thread each).") var workers = 2
    @Option(help: "Logical shards (default: one per worker).") var shards: Int?
    @Option(help: "Measured steps (after warm-up).") var steps = 10
    @Option(help: "Warm-up steps, not measured.") var warmup = 2
    @Option(help: "ipc or tcp (loopback).") var transport = "ipc"
    @Option(help: "Dropout rate in training (default: none).") var dropout: Float?
    @Option(help: "Fraction of shards checked on a second worker (as coordinator --verify).") var verify = 0.0
    @Flag(help: "Encrypt with CURVE (fresh keys in a temporary directory), to measure what security costs.") var curve = false

    func run() throws {
        try sizes.apply()
        if workers <= 0 { throw CharRNNError.invalidOption("--workers must be positive, got \(workers)") }
        let shardCount = shards ?? workers
        let inProcessThreads = BLASRuntime.threads
        let inProcess = try time(.inProcess(plan: try syntheticPlan(shards: shardCount)), warm: true)

        // What one worker computes per step: its share of the shards on one thread.
        BLASRuntime.setThreads(1)
        let share = (shardCount + workers - 1) / workers
        let compute = try computeTime(shards: share, of: shardCount)

        let endpoint = transport == "tcp" ? "tcp://127.0.0.1:\(40000 + Int(getpid()) % 20000)" : "ipc://\(NSTemporaryDirectory())charrnn-bench-\(getpid()).sock"
        var options = CoordinatorOptions(endpoint: endpoint)
        var workerKeys: [String] = []
        let keyDirectory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("charrnn-bench-keys-\(getpid())")
        defer { try? FileManager.default.removeItem(at: keyDirectory) }
        if curve {
            try FileManager.default.createDirectory(at: keyDirectory, withIntermediateDirectories: true)
            let (server, client) = (try CurveKeyPair.generate(), try CurveKeyPair.generate())
            try server.write(prefix: keyDirectory.appendingPathComponent("coordinator").path)
            try client.write(prefix: keyDirectory.appendingPathComponent("worker").path)
            options.curve = (server, [client.publicKey])
            workerKeys = ["--secret-key", keyDirectory.appendingPathComponent("worker.key").path,
                          "--coordinator-key", keyDirectory.appendingPathComponent("coordinator.pub").path]
        }
        let plan = try syntheticPlan(shards: shardCount)
        let coordinator = try Coordinator(plan: plan, options: options, log: { _ in })
        var rules = DealingRules(minWorkers: workers, deadline: 600)
        (rules.verify, rules.verifySeed) = (verify, 1)
        let driver = StepDriver(plan: plan, pool: coordinator, rules: rules)
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let pool = try (0..<workers).map { i -> Process in
            let p = Process()
            p.executableURL = me
            p.arguments = ["worker", "--connect", endpoint, "--threads", "1", "--name", "bench-\(i)"] + workerKeys
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            return p
        }
        defer {
            coordinator.shutdownWorkers()
            for p in pool { p.waitUntilExit() }
        }
        for _ in 0..<warmup { _ = try driver.advance() }
        let messagingBefore = coordinator.stats.messagingSeconds
        let distributed = try time(driver, warm: false)
        let messaging = (coordinator.stats.messagingSeconds - messagingBefore) / Double(steps)

        let overhead = distributed - compute
        print("charrnn bench distributed — \(sizes.config), batch \(sizes.batch), seq \(sizes.seq), \(shardCount) shards, \(transport)"
            + (curve ? ", CURVE" : "") + (verify > 0 ? ", --verify \(verify)" : ""))
        printTable([
            ["in-process: threads", "\(inProcessThreads)"],
            ["in-process: ms/step (median of \(steps))", fmt(inProcess * 1e3)],
            ["distributed: workers × threads", "\(workers) × 1"],
            ["distributed: ms/step (median of \(steps))", fmt(distributed * 1e3)],
            ["throughput, distributed / in-process", fmt(inProcess / distributed, 3)],
            ["one worker's compute, \(share) shard(s) on 1 thread (ms)", fmt(compute * 1e3)],
            ["step time beyond compute (ms)", fmt(overhead * 1e3)],
            ["  share of the step", fmt(100 * overhead / distributed) + " %"],
            ["coordinator encode+send+receive+decode (ms/step)", fmt(messaging * 1e3)],
            ["  share of the step", fmt(100 * messaging / distributed) + " %"],
            ["shards checked per step (mean)", fmt(Double(driver.stats.verifiedShards + driver.stats.unverifiedShards) / Double(warmup + steps), 2)],
            ["bytes moved per step (MB)", fmt(Double(4 * ParameterLayout(sizes.config).count * (workers + shardCount)) / 1e6)],
        ])
    }

    private func syntheticPlan(shards: Int) throws -> StepPlan {
        try sizes.syntheticPlan(shards: shards, steps: warmup + steps + 1, dropout: dropout)
    }

    /// Median seconds per step over `steps` steps after `warmup`.
    private func time(_ driver: StepDriver, warm: Bool) throws -> Double {
        if warm { for _ in 0..<warmup { _ = try driver.advance() } }
        var samples: [Double] = []
        for _ in 0..<steps {
            var clock = PhaseClock()
            _ = try driver.advance()
            samples.append(clock.lap())
        }
        return samples.sorted()[samples.count / 2]
    }

    private func computeTime(shards share: Int, of total: Int) throws -> Double {
        let plan = try syntheticPlan(shards: total)
        let step = ShardStep(
            config: plan.state.config, maxRows: plan.rowsPerShard, seq: plan.options.seq, dropout: plan.options.dropoutMasks)
        let gradients = (0..<share).map { _ in FloatBuffer(count: plan.state.weights.count) }
        var samples: [Double] = []
        for n in 0..<(warmup + steps) {
            let planned = plan.next()
            let order = WorkOrder(epoch: planned.epoch, shards: Array(planned.shards.prefix(share)), weights: plan.state.weights.storage)
            var k = 0
            var clock = PhaseClock()
            let results = step.compute(order, step: planned.globalStep) {
                defer { k += 1 }
                return gradients[k]
            }
            if n >= warmup { samples.append(clock.lap()) }
            // The other workers' shards are not computed here; the plan only needs some result for each.
            for s in 0..<total { plan.accumulate(ShardResult(index: s, loss: 0, state: results[0].state, gradient: results[0].gradient)) }
            _ = try plan.finish()
        }
        return samples.sorted()[samples.count / 2]
    }
}

extension BenchSizes {
    /// A run over random ids at these sizes (speed does not depend on the text).
    func syntheticPlan(shards: Int, steps: Int, dropout: Float?) throws -> StepPlan {
        var options = TrainingOptions()
        options.batch = batch
        options.seq = seq
        options.shards = shards
        options.seed = 1
        options.dropout = dropout
        var rng = RandomSource(seed: 7)
        let ids = (0..<(steps * batch * (seq + 1))).map { _ in Int32(rng.nextIndex(below: vocab)) }
        let state = TrainingState.fresh(vocabulary: try syntheticVocabulary(vocab), config: config, options: options)
        return try StepPlan(state: state, ids: ids)
    }
}
