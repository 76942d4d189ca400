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
    @Option(help: ArgumentHelp(threadsHelp)) var threads: Int?

    func run() throws {
        BLASRuntime.setThreads(try ThreadCount.resolve(threads))
        let logger = try training.output.makeLogger()
        logger.info("OpenBLAS core \(BLASRuntime.coreName), \(BLASRuntime.threads) compute threads")
        let stop = StopRequest.installed()
        let (plan, policy, extras) = try training.prepare(shards: shards) { logger.info("\($0)") }
        let report = Reporter(logger: logger, logEvery: training.logEvery, live: training.output.live)
        let loop = TrainingLoop(runner: Trainer(plan: plan), checkpoints: policy, extras: extras,
                                report: { report($0) }, shouldStop: { stop.isRequested })
        try loop.run()
        try stop.exitIfStopped()
    }
}
