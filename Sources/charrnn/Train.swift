import ArgumentParser
import CharRNN
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model in this process (no sockets).",
        discussion: "Checkpoints go to --checkpoint-dir; --resume continues bit for bit where a run stopped.")

    @OptionGroup var training: TrainingArguments
    @Option(help: "Logical shards per batch; results depend on it (and match a coordinator with the same value).")
    var shards = 1
    @Option(help: "OpenBLAS threads (default: all cores).") var threads: Int?

    func run() throws {
        BLASRuntime.setThreads(try resolvedThreads(threads))
        print("OpenBLAS core \(BLASRuntime.coreName), \(BLASRuntime.threads) threads")
        let (plan, policy) = try training.prepare(shards: shards) { print($0) }
        let loop = TrainingLoop(runner: Trainer(plan: plan), checkpoints: policy, logEvery: training.logEvery) { print($0) }
        try loop.run()
    }
}
