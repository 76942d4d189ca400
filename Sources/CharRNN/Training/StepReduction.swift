/// A step's results on their way into the plan, each shard's counted once. They go into the plan's reduction
/// tree as they come (its sum does not depend on the order, and it holds only the subtrees still waiting for a
/// sibling); or, with `holdAll`, only once every shard is settled, so that the results of a worker found lying
/// can still be thrown away.
struct StepReduction {
    private let plan: StepPlan
    private let holdAll: Bool
    private var held: [Int: ShardResult] = [:]
    /// Shard → the one worker whose held result it is (nil: agreed on by several, or taken unchecked).
    private var source: [Int: WorkerID] = [:]
    private var received: Set<Int> = []

    init(plan: StepPlan, holdAll: Bool = false) {
        self.plan = plan
        self.holdAll = holdAll
    }

    var isComplete: Bool { received.count == plan.shardCount }
    /// Shards whose result is not in yet, in order.
    var missing: [Int] { (0..<plan.shardCount).filter { !received.contains($0) } }
    func has(_ shard: Int) -> Bool { received.contains(shard) }

    /// False for a shard whose result is already in.
    mutating func add(_ r: ShardResult, by worker: WorkerID?) -> Bool {
        guard received.insert(r.index).inserted else { return false }
        if holdAll {
            held[r.index] = r
            source[r.index] = worker
        } else {
            plan.accumulate(r)
        }
        return true
    }

    /// Adds a whole subtree's sum, none of whose shards is in yet (never with `holdAll`: a sum cannot be checked).
    mutating func add(_ part: SubtreeSum) {
        precondition(!holdAll && part.node.shards.allSatisfy { !received.contains($0) }, "a sum that cannot count")
        received.formUnion(part.node.shards)
        plan.accumulate(part)
    }

    /// Throws away the held results that came from `worker` alone; returns their shards, missing again.
    mutating func discard(from worker: WorkerID) -> [Int] {
        let shards = source.filter { $0.value == worker }.map(\.key).sorted()
        for s in shards {
            held[s] = nil
            source[s] = nil
            received.remove(s)
        }
        return shards
    }

    /// Reduces whatever is held (the end of a step with `holdAll`), in shard order, which keeps the tree's
    /// pending sums to ⌈log₂ S⌉ + 1.
    mutating func flush() {
        for s in held.keys.sorted() { plan.accumulate(held.removeValue(forKey: s)!) }
        source = [:]
    }
}
