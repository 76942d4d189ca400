import CharRNN

/// A worker's part in one step's reduction up the tree, on an injected clock (plain code, no sockets).
///
/// The coordinator deals a step's shards, and with each order says where the sum of the shard's top node
/// (`ReductionTree.top(of:)`) goes: to the worker holding the shard the node above starts at, to the coordinator
/// for the root, or nowhere when that holder is this worker. Each worker adds its own results and the sums its
/// peers send it into the step's tree, and sends a top node on as soon as it is complete. So every node is summed
/// once, by the holder of its first shard, along the fixed tree: the bits are the tree's, whoever holds what. The
/// coordinator receives one gradient per step, and no worker more than ⌈log₂ S⌉. With more workers the coordinator
/// sums the root itself (`SumTarget.coordinatorSumsRoot`): it receives the root's two halves, one from shard 0's
/// holder, which then takes one sum fewer, the other from the holder of the right half's first shard.
///
/// Chunk by chunk: the gradient is cut as the wire cuts it (`WireCodec.chunkRanges`), one `TreeReducer` per
/// chunk, and a top node's chunk goes to a peer as soon as it is summed (`SumPart`), so the levels of the tree
/// overlap instead of each waiting for the whole sum below it. The sum is element-wise, so a chunk's sum is that
/// chunk of the tree's sum, bit for bit. Losses and states travel with chunk 0; the root's chunks go to the
/// coordinator the same way, which counts the root once whole. Our own result's chunks go in as soon as the shard
/// step has made them final (`add(part:final:now:)`), so the sums of the first chunks travel, up to the
/// coordinator, while the last are still computed.
///
/// A peer that is stopped or dead holds up only the nodes above it. The rule that gets the step done anyway:
/// once this worker has computed its shards, if `patience` passes with nothing new (no sum in or out) and the
/// step has not ended, it sends its own results to the coordinator directly and leaves the tree for this step.
/// Every worker stuck behind the same peer does the same, the coordinator then has every shard but the stalled
/// peer's, which the step driver deals again as it does for any straggler. A sum overlapping results already in
/// is refused by the coordinator, so nothing is counted twice. Own results are kept until the step ends for this.
///
/// A slow peer is not a stopped one. Progress anywhere in the tree travels as tokens: a worker that made progress
/// since its last word (it computed, or got an order, a result or a peer's chunk), or is computing, sends a new
/// token of its own (its relay, a number one higher, and the progress's age) to its neighbours in the tree: the
/// peers it sums for, and those that sum for it once it has heard from them (`ownWords`, every `patience / 4`). A
/// worker takes a token it has not seen (a higher number from that origin) as progress as old as it says, and passes
/// it on at once to its other neighbours (`heard`, `passedOn`); one it has seen, it drops. So a token crosses each
/// worker once, its age is short only of the time on the wire, it reaches the far side of a deep tree within the
/// patience, and words alone never make progress: `patience` runs out when a whole connected part of the tree has
/// made none for that long. A worker computing for longer than `patience` (a slower machine, a bigger shard) keeps
/// the tree together, and the workers that finished early wait for it; a stopped or dead worker falls silent and
/// cuts the tree there. Waiting on others' tokens has a bound, `maxWait` since our own last progress, below the
/// coordinator's deadline, which would otherwise count every worker waiting on a very slow one as lost.
struct ReductionShare {
    /// A tree-alive word: `origin`'s token number `seq`, of progress `age` seconds old, for `node` (the top node we
    /// have in common with `to`).
    struct Word {
        let node: ReductionNode
        let origin: String
        let seq: UInt64
        let age: Double
        let to: RelayPeer
    }

    enum Action {
        /// Chunks to a peer, or of the root to the coordinator.
        case send(SumPart, to: SumTarget)
        /// Our own results, to the coordinator directly.
        case leaves([ShardResult])
    }

    let step: Int
    let tree: ReductionTree
    /// The float range of each chunk.
    private let pieces: [Range<Int>]
    /// One reducer per chunk; chunk 0's also carries the shards' losses and states.
    private var reducers: [TreeReducer]
    /// Our shards of the step → where their top node's sum goes.
    private var targets: [Int: SumTarget] = [:]
    /// Our own results, in the order computed.
    private(set) var leaves: [ShardResult] = []
    /// For a result still being computed: the parts told final so far, and the chunks they completed, already in
    /// the tree (`add(part:final:now:)`).
    private var partial: [Int: (told: [Range<Int>], chunks: Set<Int>)] = [:]
    /// Peers' chunks that came before the order that says they are ours to sum (a peer can be faster than our
    /// socket: the two come on different sockets); at most twice a step's worth per level of the tree, a bound
    /// against a peer flooding us, not a limit honest peers reach.
    private var early: [SumPart] = []
    /// Our relay endpoint: the origin of our tokens.
    let origin: String
    /// Peers that sum for us: their top node → their relay, from their word.
    private var senders: [ReductionNode: RelayPeer] = [:]
    /// Our tokens so far; whether we made progress since the last; the newest token seen from each origin; tokens
    /// to pass on, each to our neighbours but the one it came from.
    private var seq: UInt64 = 0
    private var progressed = false
    private var newest: [String: UInt64] = [:]
    private var passOn: [String: (seq: UInt64, from: RelayPeer, progressAt: Double)] = [:]
    /// Our own last progress (not others' tokens), for `maxWait`.
    private var lastOwnProgress: Double
    /// When the step began for us.
    private let started: Double
    /// Whether we left the tree for this step: our results went to the coordinator, and peers' sums are dropped.
    private(set) var gaveUp = false
    private var lastProgress: Double
    /// Losses and states of chunks other than 0: none (the reducers want one per shard).
    private static let noState = FloatBuffer(count: 0)

    /// `firstToken`: where our token numbers start, above any an earlier process on our relay endpoint used in the
    /// step (peers drop tokens numbered below what they have seen from an origin).
    init(step: Int, tree: ReductionTree, parameters: Int, origin: String, firstToken: UInt64 = 0, now: Double) {
        self.step = step
        self.tree = tree
        self.origin = origin
        seq = firstToken
        pieces = WireCodec.chunkRanges(floats: parameters).map { ($0.lowerBound / 4)..<($0.upperBound / 4) }
        reducers = pieces.map { TreeReducer(tree: tree, gradientCount: $0.count) }
        (lastProgress, lastOwnProgress, started) = (now, now, now)
    }

    /// Something of our own happened: an order, a result, a peer's chunk.
    private mutating func progress(_ now: Double) {
        (lastProgress, lastOwnProgress, progressed) = (now, now, true)
    }

    /// The node whose sum our order for `shard` sends on: its top node, below the root when the coordinator sums
    /// the root from its halves.
    private func top(_ shard: Int) -> ReductionNode {
        targets[shard] == .coordinatorSumsRoot ? tree.topBelowRoot(of: shard) : tree.top(of: shard)
    }

    /// Orders of the step with a target whose results are not in yet.
    var computing: Int { targets.count - leaves.count }

    /// An order of the step for `shard`, with where its top node goes.
    mutating func expect(_ shard: Int, target: SumTarget, now: Double) -> [Action] {
        guard targets[shard] == nil, shard < tree.shardCount else { return [] }
        targets[shard] = target
        progress(now)
        let stashed = early
        early = []
        return stashed.flatMap { add(peerSum: $0, now: now) }
    }

    /// Our result for one of the step's shards: its chunks not yet in the tree go in.
    mutating func add(leaf: ShardResult, now: Double) -> [Action] {
        guard targets[leaf.index] != nil, !leaves.contains(where: { $0.index == leaf.index }) else { return [] }
        leaves.append(leaf)
        progress(now)
        let early = partial.removeValue(forKey: leaf.index)?.chunks ?? []
        if gaveUp { return [.leaves([leaf])] }
        return add(chunks: pieces.indices.filter { !early.contains($0) }, of: leaf)
    }

    /// A part of our result for one of the step's shards that is final while the rest is still computed (the loss
    /// and state are final; see `ShardStep.run`): each chunk the parts told so far cover goes into the tree at once,
    /// and on up as soon as its node is complete. So the levels of the tree sum the first chunks while every worker
    /// still computes the last. The result is still computing until `add(leaf:)`.
    mutating func add(part leaf: ShardResult, final range: Range<Int>, now: Double) -> [Action] {
        guard !gaveUp, targets[leaf.index] != nil, !leaves.contains(where: { $0.index == leaf.index }) else { return [] }
        progress(now)
        var state = partial[leaf.index] ?? ([], [])
        state.told.append(range)
        let told = state.told.sorted { $0.lowerBound < $1.lowerBound }
        let ready = pieces.indices.filter { k in
            !state.chunks.contains(k) && told.reduce(pieces[k].lowerBound) { end, part in part.lowerBound <= end ? max(end, part.upperBound) : end } >= pieces[k].upperBound
        }
        state.chunks.formUnion(ready)
        partial[leaf.index] = state
        return add(chunks: ready, of: leaf)
    }

    /// Chunks of our result into their reducers. A chunk whose reducer already holds a peer's sum with this shard
    /// (one that came before our order for it, and cannot be honest) stays out of the tree; the result is no longer
    /// being computed even so, and goes to the coordinator if we give up.
    private mutating func add(chunks: [Int], of leaf: ShardResult) -> [Action] {
        let node = tree.leaf(leaf.index)
        var out: [Action] = []
        for k in chunks where reducers[k].accepts(node) {
            let piece = pieces[k]
            let floats = FloatBuffer(uninitializedCount: piece.count)
            floats.base.update(from: leaf.gradient.base + piece.lowerBound, count: piece.count)
            out += add(SubtreeSum(node: node, gradient: floats, losses: k == 0 ? [leaf.loss] : [0], states: k == 0 ? [leaf.state] : [Self.noState]), chunk: k)
        }
        return out
    }

    /// One chunk a peer sent us: used if its node is the top node of a shard whose node above we sum, it is a chunk
    /// the wire would cut, and new; and not before that chunk of our own results of the node's shards we hold is in
    /// (a sum that has them cannot be honest yet).
    mutating func add(peerSum part: SumPart, now: Double) -> [Action] {
        guard !gaveUp, part.chunks.count == 1, let k = part.chunks.first, k < pieces.count, part.floats.count == pieces[k].count,
              (k == 0) == (part.shards != nil), tree.contains(part.node), tree.top(of: part.node.lo) == part.node,
              let receiver = tree.receiver(of: part.node), reducers[k].accepts(part.node),
              part.node.shards.allSatisfy({ s in targets[s] == nil || leaves.contains { $0.index == s } || partial[s]?.chunks.contains(k) == true })
        else { return [] }
        guard let receiverTarget = targets[receiver] else {
            if early.count < 2 * (tree.depth + 1) * pieces.count, !early.contains(where: { $0.node == part.node && $0.chunks == part.chunks }) {
                early.append(part)
            }
            return []
        }
        // Not a half of a root the coordinator sums: that goes to the coordinator, never into our top node.
        guard receiverTarget != .coordinatorSumsRoot || part.node.hi <= top(receiver).hi else { return [] }
        progress(now)
        let shards: (losses: [Double], states: [FloatBuffer]) = k == 0
            ? part.shards! : (Array(repeating: 0, count: part.node.count), Array(repeating: Self.noState, count: part.node.count))
        return add(SubtreeSum(node: part.node, gradient: part.floats, losses: shards.losses, states: shards.states), chunk: k)
    }

    /// A new token of ours for every neighbour, if we are computing or made progress since the last (see the type's
    /// comment). None in the step's first `quiet` seconds: a step that ends sooner needs no words, and with `quiet`
    /// at half the patience a slow peer's first token still comes before anyone's patience runs out. Nothing once we
    /// gave up: they are then on their own.
    mutating func ownWords(now: Double, quiet: Double) -> [Word] {
        guard !gaveUp, computing > 0 || progressed, now - started >= quiet else { return [] }
        seq += 1
        progressed = false
        let age = computing > 0 ? 0 : now - lastOwnProgress
        return neighbours.map { Word(node: $0.node, origin: origin, seq: seq, age: age, to: $0.peer) }
    }

    /// The tokens heard since the last call, each for our neighbours but the one it came from.
    mutating func passedOn(now: Double) -> [Word] {
        defer { passOn = [:] }
        guard !gaveUp, !passOn.isEmpty else { return [] }
        let neighbours = self.neighbours
        return passOn.sorted { $0.key < $1.key }.flatMap { origin, token in
            neighbours.filter { $0.peer != token.from }.map { Word(node: $0.node, origin: origin, seq: token.seq, age: now - token.progressAt, to: $0.peer) }
        }
    }

    /// The peers we sum for, then those that sum for us, each with the top node we have in common.
    private var neighbours: [(node: ReductionNode, peer: RelayPeer)] {
        let up = targets.sorted { $0.key < $1.key }.compactMap { shard, target -> (node: ReductionNode, peer: RelayPeer)? in
            guard case .peer(let peer) = target else { return nil }
            return (tree.top(of: shard), peer)
        }
        return up + senders.sorted { $0.key.lo < $1.key.lo }.map { (node: $0.key, peer: $0.value) }
    }

    /// A neighbour's word: from a peer that sums for us (`node` its top node, which we sum into ours), whose relay
    /// we then answer; or from the peer we sum for (`node` our top node, the peer our order names). A token we have
    /// not seen is progress now, and is passed on; anything else is dropped.
    mutating func heard(_ node: ReductionNode, origin: String, seq: UInt64, age: Double, from peer: RelayPeer, now: Double) {
        guard !gaveUp, origin != self.origin, tree.contains(node), tree.top(of: node.lo) == node else { return }
        let fromSender = targets[node.lo] == nil && tree.receiver(of: node).map { targets[$0] != nil } == true
        guard fromSender || targets[node.lo] == .peer(peer) else { return }
        // Keyed by node, so the nodes our targets allow bound the table; the first address stays (a later word
        // cannot make us open sockets to one address after another).
        if fromSender && senders[node] == nil { senders[node] = peer }
        // Origins are workers of the run: at most one per shard.
        guard seq > newest[origin, default: 0], newest[origin] != nil || newest.count < tree.shardCount else { return }
        newest[origin] = seq
        passOn[origin] = (seq, peer, now - age)
        lastProgress = max(lastProgress, now - age)
    }

    /// The patience rule (see the type's comment): our results to the coordinator, once.
    /// `maxWait`: how long others' tokens may keep us waiting after our own last progress.
    mutating func check(now: Double, patience: Double, maxWait: Double) -> [Action] {
        guard !gaveUp, computing == 0, !leaves.isEmpty, now - lastProgress >= patience || now - lastOwnProgress >= maxWait else { return [] }
        gaveUp = true
        for k in reducers.indices { reducers[k].reset() }
        early = []
        return [.leaves(leaves)]
    }

    /// Adds one chunk's sum, and sends on the chunks of our top nodes it completes, each at once (to a peer, or the
    /// root's to the coordinator).
    private mutating func add(_ part: SubtreeSum, chunk k: Int) -> [Action] {
        reducers[k].add(part)
        var out: [Action] = []
        for (shard, target) in targets.sorted(by: { $0.key < $1.key }) where target != .kept {
            let top = top(shard)
            guard let done = reducers[k].take(top) else { continue }
            out.append(.send(SumPart(node: top, chunks: k..<(k + 1), floats: done.gradient, shards: k == 0 ? (done.losses, done.states) : nil), to: target))
        }
        return out
    }
}
