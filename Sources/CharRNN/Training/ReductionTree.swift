/// A node of the reduction tree: the shards `lo..<hi`, whose gradients it sums.
public struct ReductionNode: Hashable, Sendable, CustomStringConvertible {
    public let lo: Int
    public let hi: Int

    public init(lo: Int, hi: Int) {
        precondition(lo < hi, "an empty node")
        self.lo = lo
        self.hi = hi
    }

    public var shards: Range<Int> { lo..<hi }
    public var count: Int { hi - lo }
    public var description: String { count == 1 ? "shard \(lo)" : "shards \(lo)..<\(hi)" }
}

/// The fixed binary tree over shard indices `0..<S` along which a step's gradients are summed: a function of
/// S alone, so the sum's bits never depend on who computed which shard, in what order results arrived, or who
/// summed a subtree (a worker, a relay, the coordinator). Each node's sum is left + right, element by element.
///
/// The rule: a node of n ≥ 2 shards splits after its first p shards, p the largest power of two below n. For
/// S = 5:
///
///                 0..<5
///                /     \
///            0..<4      4
///            /    \
///        0..<2    2..<4
///        /  \     /  \
///       0    1   2    3
///
/// Why this rule rather than the midpoint: every left subtree is a perfect tree of 2ᵏ shards starting at a
/// multiple of 2ᵏ, so a worker dealt an aligned block of 2ᵏ shards holds one whole subtree; the depth is
/// ⌈log₂ S⌉ as with the midpoint; results arriving in shard order combine like a binary counter, at most one
/// pending node per size, so ⌈log₂ S⌉ + 1 gradients are held at most; and for S ≤ 3 it sums in the same order as
/// the sequential fold it replaced ((g₀ + g₁) + g₂), so those runs keep their bits.
public struct ReductionTree: Equatable, Sendable {
    public let shardCount: Int

    public init(shards: Int) {
        precondition(shards > 0, "a reduction tree needs at least one shard")
        shardCount = shards
    }

    public var root: ReductionNode { ReductionNode(lo: 0, hi: shardCount) }
    public func leaf(_ shard: Int) -> ReductionNode { ReductionNode(lo: shard, hi: shard + 1) }

    /// The number of levels below the root: ⌈log₂ S⌉.
    public var depth: Int { shardCount.bitWidth - (shardCount - 1).leadingZeroBitCount }

    /// A node's two halves; nil for a leaf.
    public func children(of node: ReductionNode) -> (left: ReductionNode, right: ReductionNode)? {
        guard node.count > 1 else { return nil }
        let split = node.lo + (1 << (Int.bitWidth - (node.count - 1).leadingZeroBitCount - 1))
        return (ReductionNode(lo: node.lo, hi: split), ReductionNode(lo: split, hi: node.hi))
    }

    /// The highest node whose first shard is `shard`: leaf `shard` and every node above it that starts there.
    /// Whoever holds `shard` sums all of them (their left halves start there too); the node above `top` starts at
    /// an earlier shard, whose holder needs `top`'s sum. So each shard's holder sends one sum up, and a holder of
    /// several shards sums the ones whose tops meet at its own locally.
    public func top(of shard: Int) -> ReductionNode {
        var node = leaf(shard)
        while let (parent, _) = parentAndSibling(of: node), parent.lo == shard { node = parent }
        return node
    }

    /// The shard whose holder sums the node above `node` (`node`'s sum goes there); nil for the root.
    public func receiver(of node: ReductionNode) -> Int? { parentAndSibling(of: node)?.parent.lo }

    /// `top(of:)` when the root is summed apart from its two halves (by the coordinator): never the root, so shard 0's
    /// holder sends the left half, and the holder of the right half's first shard sends that half, both to whoever
    /// sums the root.
    public func topBelowRoot(of shard: Int) -> ReductionNode {
        let node = top(of: shard)
        return node == root ? children(of: root)?.left ?? root : node
    }

    /// Whether `node` is a node of this tree (not just any range of shards).
    public func contains(_ node: ReductionNode) -> Bool { ancestors(of: node) != nil }

    /// The node `node` is a half of, and the other half; nil for the root or a range that is not a node.
    public func parentAndSibling(of node: ReductionNode) -> (parent: ReductionNode, sibling: ReductionNode)? {
        guard let parent = ancestors(of: node)?.last, let (left, right) = children(of: parent) else { return nil }
        return (parent, left == node ? right : left)
    }

    /// The largest nodes all of whose shards are in `shards`, in shard order: whoever holds the results of
    /// `shards` can send one summed gradient per node instead of one per shard.
    public func subtrees(within shards: Set<Int>) -> [ReductionNode] {
        // held[i]: how many of the shards 0..<i are in the set, so a node is whole when it counts all its shards.
        var held = [0]
        for s in 0..<shardCount { held.append(held[s] + (shards.contains(s) ? 1 : 0)) }
        func whole(_ n: ReductionNode) -> [ReductionNode] {
            let inside = held[n.hi] - held[n.lo]
            if inside == n.count { return [n] }
            guard inside > 0, let (left, right) = children(of: n) else { return [] }
            return whole(left) + whole(right)
        }
        return whole(root)
    }

    /// The sum at a node: `out[i] = left[i] + right[i]`, in that order. `out` may be `left` or `right`.
    /// Element-wise, so the parallel split cannot change a bit. Each case has its own loop over two distinct
    /// pointers where `out` is an operand: a loop whose output aliases an input fails the vectorizer's overlap
    /// check and runs scalar, 2–3× slower.
    public static func add(_ left: FloatBuffer, _ right: FloatBuffer, into out: FloatBuffer) {
        precondition(left.count == right.count && out.count == left.count, "gradients of different sizes")
        let (a, b, o) = (left.base, right.base, out.base)
        Parallel.forEachRange(of: out.count) { range in
            if out === left {
                for i in range { o[i] += b[i] }
            } else if out === right {
                for i in range { o[i] = a[i] + o[i] }
            } else {
                for i in range { o[i] = a[i] + b[i] }
            }
        }
    }

    /// The nodes from the root down to `node`'s parent; nil when `node` is not a node of this tree.
    private func ancestors(of node: ReductionNode) -> [ReductionNode]? {
        var path: [ReductionNode] = []
        var at = root
        while at != node {
            guard node.lo >= at.lo, node.hi <= at.hi, let (left, right) = children(of: at) else { return nil }
            path.append(at)
            at = node.lo < right.lo ? left : right
        }
        return path
    }
}

/// A node's summed gradient with the loss and final state of each of its shards: one shard's result (a leaf),
/// or what a holder of a whole subtree sends instead of its leaves.
public struct SubtreeSum: Sendable {
    public let node: ReductionNode
    public let gradient: FloatBuffer
    /// Each shard's mean loss, shards `node.lo..<node.hi` in order.
    public let losses: [Double]
    /// Each shard's final state, in the same order.
    public let states: [FloatBuffer]

    public init(node: ReductionNode, gradient: FloatBuffer, losses: [Double], states: [FloatBuffer]) {
        precondition(losses.count == node.count && states.count == node.count, "one loss and one state per shard of the node")
        self.node = node
        self.gradient = gradient
        self.losses = losses
        self.states = states
    }

    public init(_ leaf: ShardResult) {
        self.init(node: ReductionNode(lo: leaf.index, hi: leaf.index + 1), gradient: leaf.gradient, losses: [leaf.loss],
                  states: [leaf.state])
    }
}

/// Sums arriving in any order, leaves or whole subtrees, reduced along a `ReductionTree`: a node is summed as
/// soon as both its halves are in, so only pending nodes (whose sibling is not complete yet) are held. The root's
/// bits are those of the tree, whatever the arrival order and however the inputs were grouped.
///
/// Gradients handed in are only read while anyone else holds them; sums go into the reducer's own buffers, which
/// return to a small free list once used, so a steady run allocates none after its first step. A gradient the
/// reducer holds the only reference to (a freshly decoded one, whose sender let go) it adopts: the sum of two
/// leaves is written over the one that waited, saving a buffer and the write-allocate of a third stream.
/// Whether a buffer is overwritten never changes a bit: each element is `left + right` either way.
public struct TreeReducer {
    public let tree: ReductionTree
    public let gradientCount: Int

    private struct Held {
        var gradient: FloatBuffer
        /// The reducer's own buffer (a sum it made, or a gradient nobody else holds), which it may overwrite
        /// and recycle.
        var owned: Bool

        /// Takes the gradient over when this is its only reference: nobody can see it change.
        mutating func adoptIfUnshared() {
            if !owned && isKnownUniquelyReferenced(&gradient) { owned = true }
        }
    }

    private var pending: [ReductionNode: Held] = [:]
    private var losses: [Double]
    private var states: [FloatBuffer?]
    private var free: [FloatBuffer] = []
    /// Buffers kept for reuse at most: enough for the sums pending when results arrive in shard order.
    private let freeLimit: Int
    /// Sum buffers this reducer ever allocated (tests check the recycling).
    private(set) var allocated = 0
    /// Buffers kept for reuse now.
    var spare: Int { free.count }

    public init(tree: ReductionTree, gradientCount: Int) {
        self.tree = tree
        self.gradientCount = gradientCount
        losses = Array(repeating: .nan, count: tree.shardCount)
        states = Array(repeating: nil, count: tree.shardCount)
        freeLimit = tree.depth + 1
    }

    /// Gradients held now: one per pending node.
    public var held: Int { pending.count }
    /// The pending nodes, in shard order.
    public var pendingNodes: [ReductionNode] { pending.keys.sorted { $0.lo < $1.lo } }
    public var isComplete: Bool { pending[tree.root] != nil }

    /// Whether `node`'s sum can be added: a node of the tree none of whose shards came before (what a sum from a peer
    /// must pass before `add`, which would stop the process).
    public func accepts(_ node: ReductionNode) -> Bool {
        tree.contains(node) && node.shards.allSatisfy { states[$0] == nil }
    }

    /// Adds a node's sum, and with it every sum it completes up the tree. Each shard must come exactly once.
    public mutating func add(_ part: SubtreeSum) {
        precondition(tree.contains(part.node), "\(part.node) is not a node of the reduction tree over \(tree.shardCount) shards")
        precondition(part.gradient.count == gradientCount, "a gradient of another model")
        precondition(part.node.shards.allSatisfy { states[$0] == nil }, "a shard of \(part.node) was added before")
        for (k, s) in part.node.shards.enumerated() {
            losses[s] = part.losses[k]
            states[s] = part.states[k]
        }
        var node = part.node
        var sum = Held(gradient: part.gradient, owned: false)
        while let (parent, sibling) = tree.parentAndSibling(of: node), var other = pending.removeValue(forKey: sibling) {
            other.adoptIfUnshared()
            sum = node.lo < sibling.lo ? combine(sum, other) : combine(other, sum)
            node = parent
        }
        pending[node] = sum
    }

    /// The whole tree's sum, with every shard's loss and final state in shard order. The gradient is the
    /// reducer's own (copied if it was handed in whole and is still held elsewhere), for the caller to scale in
    /// place until `reset`.
    public mutating func root() -> (gradient: FloatBuffer, losses: [Double], states: [FloatBuffer]) {
        guard var top = pending.removeValue(forKey: tree.root) else { preconditionFailure("the reduction is not complete") }
        top.adoptIfUnshared()
        if !top.owned {
            let copy = buffer()
            copy.assign(from: top.gradient)
            top = Held(gradient: copy, owned: true)
        }
        pending[tree.root] = top
        return (top.gradient, losses, states.map { $0! })
    }

    /// Hands out every pending node's sum, in shard order, and starts over: what a worker or relay that summed
    /// its shards locally sends on. The buffers are the caller's from then on.
    public mutating func drain() -> [SubtreeSum] {
        let out = pendingNodes.map { node in
            SubtreeSum(node: node, gradient: pending[node]!.gradient, losses: Array(losses[node.shards]),
                       states: states[node.shards].map { $0! })
        }
        pending = [:]
        clearShards()
        return out
    }

    /// Hands out `node`'s sum, if it is complete and pending (not yet summed into a node above it), with its
    /// shards' losses and states; the gradient is the caller's from then on. The reducer forgets those shards:
    /// a worker sends the node to a peer, whose sum of a node above may come back to it.
    public mutating func take(_ node: ReductionNode) -> SubtreeSum? {
        guard let held = pending.removeValue(forKey: node) else { return nil }
        let part = SubtreeSum(node: node, gradient: held.gradient, losses: Array(losses[node.shards]), states: states[node.shards].map { $0! })
        for s in node.shards { (losses[s], states[s]) = (.nan, nil) }
        return part
    }

    /// Forgets everything added (an abandoned or finished step); its own buffers go back to the free list.
    public mutating func reset() {
        for held in pending.values where held.owned { recycle(held.gradient) }
        pending = [:]
        clearShards()
    }

    /// `left + right` into one of the reducer's buffers: `left`'s or `right`'s own when it has one, else a free one.
    private mutating func combine(_ left: Held, _ right: Held) -> Held {
        let out = left.owned ? left.gradient : right.owned ? right.gradient : buffer()
        ReductionTree.add(left.gradient, right.gradient, into: out)
        if left.owned && right.owned { recycle(right.gradient) }
        return Held(gradient: out, owned: true)
    }

    private mutating func buffer() -> FloatBuffer {
        if let b = free.popLast() { return b }
        allocated += 1
        return FloatBuffer(count: gradientCount)
    }

    /// Keeps at most as many spare buffers as the reducer ever made itself: an adopted gradient (decoded from the
    /// wire, a fresh one each step) may stand in for one of them, but must not pile up on top of them. A coordinator
    /// given only the root adopts it each step and needs no buffer of its own, so it keeps none.
    private mutating func recycle(_ b: FloatBuffer) {
        if free.count < min(freeLimit, allocated) { free.append(b) }
    }

    private mutating func clearShards() {
        losses = Array(repeating: .nan, count: tree.shardCount)
        states = Array(repeating: nil, count: tree.shardCount)
    }
}
