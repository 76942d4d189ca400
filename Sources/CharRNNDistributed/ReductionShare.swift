import CharRNN

/// A worker's part in one step's reduction up the tree, on an injected clock (plain code, no sockets).
///
/// The coordinator deals a step's shards, and with each order says where the sum of the shard's top node
/// (`ReductionTree.top(of:)`) goes: to the worker holding the shard the node above starts at, to the coordinator
/// for the root, or nowhere when that holder is this worker. Each worker adds its own results and the sums its
/// peers send it into a `TreeReducer` over the step's tree, and sends a top node on as soon as it is complete.
/// So every node is summed once, by the holder of its first shard, along the fixed tree: the bits are the tree's,
/// whoever holds what. The coordinator receives one gradient per step, and no worker more than ⌈log₂ S⌉.
///
/// A peer that is stopped or dead holds up only the nodes above it. The rule that gets the step done anyway:
/// once this worker has computed its shards, if `patience` passes with nothing new (no sum in or out) and the
/// step has not ended, it sends its own results to the coordinator directly and leaves the tree for this step.
/// Every worker stuck behind the same peer does the same, the coordinator then has every shard but the stalled
/// peer's, which the step driver deals again as it does for any straggler. A sum overlapping results already in
/// is refused by the coordinator, so nothing is counted twice. Own results are kept until the step ends for this.
struct ReductionShare {
    enum Action {
        /// To the coordinator (the root) or a peer.
        case send(SubtreeSum, to: SumTarget)
        /// Our own results, to the coordinator directly.
        case leaves([ShardResult])
    }

    let step: Int
    let tree: ReductionTree
    private var reducer: TreeReducer
    /// Our shards of the step → where their top node's sum goes.
    private var targets: [Int: SumTarget] = [:]
    /// Our own results, in the order computed.
    private(set) var leaves: [ShardResult] = []
    /// Peers' sums that came before the order that says they are ours to sum (a peer can be faster than our
    /// socket); at most one per level of the tree for each of the two shards a worker holds at most.
    private var early: [SubtreeSum] = []
    /// Whether we left the tree for this step: our results went to the coordinator, and peers' sums are dropped.
    private(set) var gaveUp = false
    private var lastProgress: Double

    init(step: Int, tree: ReductionTree, gradientCount: Int, now: Double) {
        self.step = step
        self.tree = tree
        reducer = TreeReducer(tree: tree, gradientCount: gradientCount)
        lastProgress = now
    }

    /// Orders of the step with a target whose results are not in yet.
    var computing: Int { targets.count - leaves.count }

    /// An order of the step for `shard`, with where its top node goes.
    mutating func expect(_ shard: Int, target: SumTarget, now: Double) -> [Action] {
        guard targets[shard] == nil, shard < tree.shardCount else { return [] }
        targets[shard] = target
        lastProgress = now
        let stashed = early
        early = []
        return stashed.flatMap { add(peerSum: $0, now: now) }
    }

    /// Our result for one of the step's shards.
    mutating func add(leaf: ShardResult, now: Double) -> [Action] {
        guard targets[leaf.index] != nil, !leaves.contains(where: { $0.index == leaf.index }) else { return [] }
        leaves.append(leaf)
        lastProgress = now
        if gaveUp { return [.leaves([leaf])] }
        reducer.add(SubtreeSum(leaf))
        return ready()
    }

    /// A sum a peer sent us: used if it is the top node of a shard whose sum the node above ours needs, and new.
    mutating func add(peerSum part: SubtreeSum, now: Double) -> [Action] {
        guard !gaveUp, tree.contains(part.node), tree.top(of: part.node.lo) == part.node, let receiver = tree.receiver(of: part.node),
              reducer.accepts(part.node) else { return [] }
        guard targets[receiver] != nil else {
            if early.count < 2 * (tree.depth + 1), !early.contains(where: { $0.node == part.node }) { early.append(part) }
            return []
        }
        reducer.add(part)
        lastProgress = now
        return ready()
    }

    /// The patience rule (see the type's comment): our results to the coordinator, once.
    mutating func check(now: Double, patience: Double) -> [Action] {
        guard !gaveUp, computing == 0, !leaves.isEmpty, now - lastProgress >= patience else { return [] }
        gaveUp = true
        reducer.reset()
        early = []
        return [.leaves(leaves)]
    }

    /// The top nodes of our shards that are complete, to send on.
    private mutating func ready() -> [Action] {
        var out: [Action] = []
        for (shard, target) in targets.sorted(by: { $0.key < $1.key }) where target != .kept {
            if let part = reducer.take(tree.top(of: shard)) { out.append(.send(part, to: target)) }
        }
        return out
    }
}
