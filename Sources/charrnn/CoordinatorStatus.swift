import CharRNN
import CharRNNDistributed
import Foundation

/// `coordinator.json` in the checkpoint directory: who is computing and what the coordinator has counted,
/// rewritten (atomically) whenever a worker joins or is lost and after every step. For people and
/// supervisors to look at without parsing logs, and for the tests to wait on.
struct CoordinatorStatus: Codable, Equatable {
    static let fileName = "coordinator.json"

    var run: String
    var endpoint: String
    struct Worker: Codable, Equatable {
        var name: String
        /// Shards whose result from this worker counted since it (last) joined.
        var shards: Int
    }

    /// Steps done in this run (the global step), and the live workers in join order.
    var step = 0
    var workers: [Worker] = []
    var joins = 0
    var lostWorkers = 0
    var reassignedShards = 0
    var staleResults = 0
    var duplicateResults = 0
    var speculativeShards = 0
    var undealtResults = 0
    var verifiedShards = 0
    var unverifiedShards = 0
    var mismatches = 0
    var distrustedWorkers = 0
    var badFrames = 0
    var bannedPeers = 0
    /// Worker-steps whose weights the coordinator sent itself, that came down the relay tree, and that it sent
    /// again on request (a relay stalled or died).
    var weightsDirect = 0
    var weightsRelayed = 0
    var weightsResent = 0
    /// Steps reduced up the tree, root sums used and refused, and results that came one by one.
    var reducedSteps = 0
    var sumsReceived = 0
    var sumsRefused = 0
    var resultsReceived = 0

    init(run: String, endpoint: String) {
        self.run = run
        self.endpoint = endpoint
    }

    mutating func update(driver: StepDriver, transport: CoordinatorStats) {
        let d = driver.stats
        step = driver.plan.state.position.globalStep
        workers = driver.workers.map { Worker(name: $0.name, shards: $0.shardsComputed) }
        (joins, lostWorkers, reassignedShards) = (d.joins, d.lostWorkers, d.reassignedShards)
        (staleResults, duplicateResults, undealtResults) = (d.staleResults, d.duplicateResults, d.undealtResults)
        speculativeShards = d.speculativeShards
        (verifiedShards, unverifiedShards, mismatches, distrustedWorkers) = (d.verifiedShards, d.unverifiedShards, d.mismatches, d.distrustedWorkers)
        (badFrames, bannedPeers) = (transport.badFrames, transport.bannedPeers)
        (weightsDirect, weightsRelayed, weightsResent) = (transport.weightsDirect, transport.weightsRelayed, transport.weightsResent)
        (reducedSteps, sumsReceived, sumsRefused, resultsReceived) = (transport.reducedSteps, transport.sumsReceived, transport.sumsRefused, transport.resultsReceived)
    }

    /// Best effort: a status that cannot be written must not stop training (the checkpoint directory's own
    /// problems are reported by the checkpoint writer).
    func write(to url: URL) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? encoder.encode(self).write(to: url, options: .atomic)
    }
}
