import ArgumentParser
import CharRNN
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model in this process (no sockets).",
        discussion: "Checkpoints go to --checkpoint-dir; --resume continues bit for bit where a run stopped.")

    @OptionGroup var training: TrainingArguments
    @Option(help: "Logical shards per batch (default: 1); results depend on it (and match a coordinator with the same value).")
    var shards: Int?
    @Option(help: ArgumentHelp(threadsHelp)) var threads: Int?

    func validate() throws {
        try requirePositive("--threads", threads)
    }

    func run() throws {
        BLASRuntime.setThreads(try ThreadCount.resolve(threads))
        let logger = try training.output.makeLogger()
        logger.info("OpenBLAS core \(BLASRuntime.coreName), \(BLASRuntime.threads) compute threads")
        let stop = StopRequest.installed()
        let run = try training.prepare(shards: shards, defaultShards: 1, log: { logger.info("\($0)") }, warn: { logger.warning("\($0)") })
        run.plan.onNonFinite = training.schedule.onNonfinite
        let report = Reporter(logger: logger, logEvery: training.output.logEvery, live: training.output.live)
        let loop = TrainingLoop(driver: .inProcess(plan: run.plan), checkpoints: run.policy, monitoring: run.monitoring,
                                report: { report($0) }, shouldStop: { stop.isRequested })
        try loop.run()
        try stop.exitIfStopped()
    }
}
