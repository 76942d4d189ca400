import CharRNN
import Foundation

extension RunShape {
    /// Bytes a worker holds at most for this run: the shard step's workspace, a work order of every shard as
    /// received and as decoded (weights twice, states, tokens), and a result of every shard (a gradient and a
    /// state each). A welcome is only a peer's word: the worker checks this against its limit before it
    /// allocates anything.
    public var workerBytes: Int {
        let workspace = ShardStep.floatCount(config: config, maxRows: rowsPerShard, seq: seq, dropout: dropout != nil)
        let perShard = parameterCount + 3 * stateCount + 4 * tokenCount
        return 4 * (workspace + 2 * parameterCount + shardCount * perShard)
    }
}

extension WorkerOptions {
    /// The default limit: 8 GiB, or the machine's memory if it has less.
    public static var defaultMaxMemory: Int { min(8 << 30, Int(clamping: ProcessInfo.processInfo.physicalMemory)) }
}
