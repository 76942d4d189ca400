/// Which undealt shard a worker is dealt next when the workers sum the shards they hold along the reduction tree
/// before sending (`ShardPool.workersSumTheirShards`): runs of neighbouring shards, so that what a worker holds is
/// a few whole subtrees and leaves it as a few sums.
///
/// Why: dealt lowest index first, a step's shards go round the workers. With S = 4N, worker 0 holds 0, N, 2N and
/// 3N, no two of them in one subtree, so each of its shards is the first of a node whose other shards' sums
/// peers send it: up to (S / N)·log₂ N whole gradients into its link per step. At the tutorial's size, measured on
/// emulated hosts: 113 MB (N = 4) and 164 MB (N = 8) of sums on top of the 16 MB of weights, which at 1 Gbit/s set
/// the step's pace. Dealt in runs of aligned blocks, each worker sums its blocks itself, and the holder of shard 0
/// takes log₂ N sums from its peers, as with one shard per worker.
///
/// The rule, for the worker the driver chose (by load and speed; this picks only the shard):
/// 1. the shard after the last one it was dealt this step (its run goes on);
/// 2. else the first shard of the first block none of whose shards is dealt: blocks are aligned runs of B shards,
///    B the largest power of two at most S / workers, so each worker can start one;
/// 3. else the lowest undealt shard.
/// Each only if its receiver (the shard whose holder sums the node above its top node) is dealt already: the
/// coordinator names where a shard's sum goes when it deals the shard, so the receiver's holder must be known by
/// then. Rule 3's shard always is (its receiver has a lower index, and every lower shard is dealt).
/// Who computes which shard never changes a bit: the sum is the tree's.
public struct ShardRuns {
    public let tree: ReductionTree
    /// Worker → the last shard it was dealt in this step.
    private var last: [WorkerID: Int] = [:]

    public init(shards: Int) {
        tree = ReductionTree(shards: shards)
    }

    /// The aligned run each of `workers` starts with: the largest power of two at most S / workers, at least 1.
    public func block(workers: Int) -> Int {
        let most = max(1, tree.shardCount / max(1, workers))
        return 1 << (Int.bitWidth - 1 - most.leadingZeroBitCount)
    }

    /// The shard of `undealt` (ascending, not empty) to deal to `worker`, one of `workers` live, by the rule above.
    public mutating func pick(for worker: WorkerID, undealt: [Int], workers: Int) -> Int {
        precondition(!undealt.isEmpty, "nothing to deal")
        let open = Set(undealt)
        func ready(_ s: Int) -> Bool {
            open.contains(s) && tree.receiver(of: tree.top(of: s)).map { !open.contains($0) } ?? true
        }
        let b = block(workers: workers)
        let freshBlock = stride(from: 0, to: tree.shardCount, by: b).first { start in
            ready(start) && (start..<min(start + b, tree.shardCount)).allSatisfy(open.contains)
        }
        let next = last[worker].map { $0 + 1 }.flatMap { ready($0) ? $0 : nil }
        let shard = next ?? freshBlock ?? undealt[0]
        last[worker] = shard
        return shard
    }
}
