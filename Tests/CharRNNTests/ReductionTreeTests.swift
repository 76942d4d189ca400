import XCTest
@testable import CharRNN

/// The fixed reduction tree: its shape depends on S alone, and the sum at its root has the same bits whatever
/// the order in which leaves arrive and however shards were grouped into subtrees before they arrived.
final class ReductionTreeTests: XCTestCase {
    /// Every node of `tree`, parents before children.
    static func nodes(_ tree: ReductionTree) -> [ReductionNode] {
        var out = [tree.root]
        var k = 0
        while k < out.count {
            if let (left, right) = tree.children(of: out[k]) { out += [left, right] }
            k += 1
        }
        return out
    }

    /// The tree's sum computed independently of `TreeReducer`: recursively, element by element, left + right.
    static func reference(_ tree: ReductionTree, _ leaves: [[Float]]) -> [Float] {
        func sum(_ n: ReductionNode) -> [Float] {
            guard let (left, right) = tree.children(of: n) else { return leaves[n.lo] }
            let (a, b) = (sum(left), sum(right))
            return zip(a, b).map { $0 + $1 }
        }
        return sum(tree.root)
    }

    /// Gradients whose sums round differently in different groupings: magnitudes spread over 2²⁴, signs mixed.
    /// Longer than one `Parallel` block, so the sum runs in several.
    static func gradients(_ shards: Int, count: Int = Parallel.elementsPerBlock + 1_000, seed: UInt64 = 1) -> [FloatBuffer] {
        var rng = RandomSource(seed: seed)
        return (0..<shards).map { _ in
            FloatBuffer((0..<count).map { _ in
                (2 * rng.nextUnitFloat() - 1) * Float(1 << rng.nextIndex(below: 24))
            })
        }
    }

    static func leaf(_ s: Int, _ gradient: FloatBuffer) -> SubtreeSum {
        SubtreeSum(ShardResult(index: s, loss: Double(s) + 0.5, state: FloatBuffer([Float(s)]), gradient: gradient))
    }

    static func shuffled(_ n: Int, _ rng: inout RandomSource) -> [Int] {
        var a = Array(0..<n)
        for i in stride(from: n - 1, to: 0, by: -1) { a.swapAt(i, rng.nextIndex(below: i + 1)) }
        return a
    }

    func testShapeIsAFunctionOfTheShardCount() {
        for s in 1...40 {
            let tree = ReductionTree(shards: s)
            let nodes = Self.nodes(tree)
            XCTAssertEqual(nodes.filter { $0.count == 1 }.map(\.lo).sorted(), Array(0..<s), "every shard is one leaf, S = \(s)")
            XCTAssertEqual(nodes.count, 2 * s - 1)
            XCTAssertEqual(nodes, Self.nodes(ReductionTree(shards: s)))
            for n in nodes {
                XCTAssertTrue(tree.contains(n))
                guard let (left, right) = tree.children(of: n) else { continue }
                // The left half is the largest power of two below the node's size.
                XCTAssertEqual(left.lo, n.lo)
                XCTAssertEqual(right.hi, n.hi)
                XCTAssertEqual(left.hi, right.lo)
                XCTAssertEqual(left.count & (left.count - 1), 0, "\(left) is a power of two")
                XCTAssertTrue(left.count < n.count && 2 * left.count >= n.count, "\(n) splits at \(left.hi)")
                XCTAssertEqual(tree.parentAndSibling(of: left)?.parent, n)
                XCTAssertEqual(tree.parentAndSibling(of: left)?.sibling, right)
                XCTAssertEqual(tree.parentAndSibling(of: right)?.sibling, left)
            }
            var log2Ceiling = 0
            while 1 << log2Ceiling < s { log2Ceiling += 1 }
            XCTAssertEqual(tree.depth, log2Ceiling)
            XCTAssertEqual((0..<s).map { depth(of: tree.leaf($0), in: tree) }.max(), tree.depth)
        }
        // The drawing in ReductionTree's comment.
        let five = ReductionTree(shards: 5)
        XCTAssertEqual(Self.nodes(five).map { [$0.lo, $0.hi] },
                       [[0, 5], [0, 4], [4, 5], [0, 2], [2, 4], [0, 1], [1, 2], [2, 3], [3, 4]])
        XCTAssertFalse(five.contains(ReductionNode(lo: 1, hi: 3)), "a range of shards that is not a node")
        XCTAssertFalse(five.contains(ReductionNode(lo: 2, hi: 5)))
        XCTAssertNil(five.parentAndSibling(of: five.root))
    }

    private func depth(of node: ReductionNode, in tree: ReductionTree) -> Int {
        var (n, d) = (node, 0)
        while let (parent, _) = tree.parentAndSibling(of: n) { (n, d) = (parent, d + 1) }
        return d
    }

    func testMaximalSubtreesOfAHolding() {
        let five = ReductionTree(shards: 5)
        func ranges(_ s: Set<Int>) -> [[Int]] { five.subtrees(within: s).map { [$0.lo, $0.hi] } }
        XCTAssertEqual(ranges([0, 1, 2]), [[0, 2], [2, 3]])
        XCTAssertEqual(ranges([0, 1, 2, 3]), [[0, 4]])
        XCTAssertEqual(ranges([1, 2, 3, 4]), [[1, 2], [2, 4], [4, 5]])
        XCTAssertEqual(ranges(Set(0..<5)), [[0, 5]])
        XCTAssertEqual(ranges([]), [])
        var rng = RandomSource(seed: 5)
        for s in 1...40 {
            let tree = ReductionTree(shards: s)
            for _ in 0..<20 {
                let held = Set((0..<s).filter { _ in rng.nextIndex(below: 2) == 0 })
                let subtrees = tree.subtrees(within: held)
                XCTAssertEqual(subtrees.flatMap(\.shards), held.sorted(), "disjoint, in shard order, covering the holding")
                for n in subtrees {
                    XCTAssertTrue(tree.contains(n))
                    if let (parent, _) = tree.parentAndSibling(of: n) {
                        XCTAssertFalse(parent.shards.allSatisfy(held.contains), "\(n) is maximal")
                    }
                }
            }
        }
    }

    /// Any arrival order of the leaves gives the bits of the tree's sum: for every S up to 40, random orders.
    func testAnyArrivalOrderGivesTheTreeSum() {
        var rng = RandomSource(seed: 9)
        for s in 1...40 {
            let tree = ReductionTree(shards: s)
            let g = Self.gradients(s, count: 3_000, seed: UInt64(s))
            let expected = Self.reference(tree, g.map(\.array))
            let before = g.map(\.array)
            for _ in 0..<5 {
                var r = TreeReducer(tree: tree, gradientCount: 3_000)
                for k in Self.shuffled(s, &rng) { r.add(Self.leaf(k, g[k])) }
                XCTAssertTrue(r.isComplete)
                let root = r.root()
                XCTAssertEqual(root.gradient.array, expected, "S = \(s)")
                XCTAssertEqual(root.losses, (0..<s).map { Double($0) + 0.5 }, "losses by shard index")
                XCTAssertEqual(root.states.map { $0[0] }, (0..<s).map(Float.init), "final states by shard index")
            }
            XCTAssertEqual(g.map(\.array), before, "gradients handed in are only read")
        }
    }

    /// The property that makes an order-dependent fold fail here: on these values each grouping rounds
    /// differently, and only ((g₀ + g₁) + (g₂ + g₃)) gives 0. A sequential fold, in shard order or in arrival
    /// order, gives 1.
    func testFourShardsSumAsTwoPairsWhateverTheOrder() {
        let tree = ReductionTree(shards: 4)
        let values: [Float] = [1, 1e8, -1e8, 1]
        XCTAssertEqual(((values[0] + values[1]) + values[2]) + values[3], 1, "what a sequential fold gives")
        XCTAssertEqual(((values[3] + values[2]) + values[1]) + values[0], 1, "and in reverse")
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]] {
            var r = TreeReducer(tree: tree, gradientCount: 1)
            for s in order { r.add(Self.leaf(s, FloatBuffer([values[s]]))) }
            XCTAssertEqual(r.root().gradient.array, [0], "arrival order \(order)")
        }
    }

    /// Whole subtrees summed elsewhere (a worker holding several shards, summing them with its own reducer),
    /// mixed with single leaves in random orders: the same root bits as the leaves alone.
    func testSubtreesSummedElsewhereGiveTheSameBits() {
        var rng = RandomSource(seed: 21)
        for s in [2, 3, 5, 7, 8, 13, 16, 29, 40] {
            let tree = ReductionTree(shards: s)
            let count = Parallel.elementsPerBlock + 1_000
            let g = Self.gradients(s, count: count, seed: UInt64(100 + s))
            let expected = Self.reference(tree, g.map(\.array))
            for _ in 0..<4 {
                // Deal the shards to three "workers" at random; each sums what it holds into maximal subtrees.
                var holdings: [Set<Int>] = [[], [], []]
                for k in 0..<s { holdings[rng.nextIndex(below: 3)].insert(k) }
                var parts: [SubtreeSum] = []
                for held in holdings where !held.isEmpty {
                    var local = TreeReducer(tree: tree, gradientCount: count)
                    for k in Self.shuffled(s, &rng) where held.contains(k) { local.add(Self.leaf(k, g[k])) }
                    let sums = local.drain()
                    XCTAssertEqual(sums.map(\.node), tree.subtrees(within: held), "one sum per maximal subtree")
                    XCTAssertEqual(local.held, 0)
                    parts += sums
                }
                var r = TreeReducer(tree: tree, gradientCount: count)
                for k in Self.shuffled(parts.count, &rng) { r.add(parts[k]) }
                let root = r.root()
                XCTAssertEqual(root.gradient.array, expected, "S = \(s), holdings \(holdings.map { $0.sorted() })")
                XCTAssertEqual(root.losses, (0..<s).map { Double($0) + 0.5 })
                XCTAssertEqual(root.states.map { $0[0] }, (0..<s).map(Float.init))
            }
        }
    }

    /// A sum goes into a new buffer (two leaves), into the left half's own buffer, or into the right half's:
    /// three loops, one set of bits.
    func testEveryWayOfSummingIntoABufferGivesTheSameBits() {
        let tree = ReductionTree(shards: 4)
        let count = Parallel.elementsPerBlock + 1_000
        let g = Self.gradients(4, count: count, seed: 77)
        let expected = Self.reference(tree, g.map(\.array))
        var pair = TreeReducer(tree: tree, gradientCount: count)
        pair.add(Self.leaf(0, g[0]))
        pair.add(Self.leaf(1, g[1]))
        let left = pair.drain()[0]
        // Leaves in order: 0 + 1 and 2 + 3 into new buffers, then the right half into the left half's.
        var inOrder = TreeReducer(tree: tree, gradientCount: count)
        for k in 0..<4 { inOrder.add(Self.leaf(k, g[k])) }
        XCTAssertEqual(inOrder.root().gradient.array, expected)
        // 2 + 3 first, then 0..<2 summed elsewhere (not the reducer's to overwrite): into the right half's buffer.
        var rightFirst = TreeReducer(tree: tree, gradientCount: count)
        rightFirst.add(Self.leaf(3, g[3]))
        rightFirst.add(Self.leaf(2, g[2]))
        rightFirst.add(left)
        XCTAssertEqual(rightFirst.root().gradient.array, expected)
        XCTAssertEqual(left.gradient.array, zip(g[0].array, g[1].array).map { $0 + $1 }, "a sum handed in is only read")
    }

    /// Leaves in shard order combine like a binary counter: at most ⌈log₂ S⌉ + 1 gradients held at any time
    /// (measured after each arrival; the arriving one included). In random orders many more wait for a
    /// sibling: over 200 random orders per S, the most held was 2, 4, 8, 16 and 31 for S = 4, 8, 16, 32 and 64,
    /// about S/2 (measured once, not a promise). Memory stays logarithmic only if results come roughly in
    /// shard order.
    func testShardOrderHoldsLogarithmicallyManyGradients() {
        for s in 1...64 {
            let tree = ReductionTree(shards: s)
            var r = TreeReducer(tree: tree, gradientCount: 8)
            var most = 0
            for k in 0..<s {
                r.add(Self.leaf(k, FloatBuffer(count: 8)))
                most = max(most, r.held)
                XCTAssertEqual(r.held, k + 1 == s ? 1 : (k + 1).nonzeroBitCount, "after \(k + 1) of \(s) leaves")
            }
            XCTAssertLessThanOrEqual(most, tree.depth + 1, "S = \(s)")
        }
    }

    /// The reducer's sum buffers return to its free list: a second step allocates none, whatever the order.
    func testSumBuffersAreRecycledAcrossSteps() {
        let tree = ReductionTree(shards: 16)
        let g = Self.gradients(16, count: 64)
        var r = TreeReducer(tree: tree, gradientCount: 64)
        var rng = RandomSource(seed: 3)
        for k in 0..<16 { r.add(Self.leaf(k, g[k])) }
        let first = r.root().gradient.array
        let allocated = r.allocated
        XCTAssertLessThanOrEqual(allocated, tree.depth, "shard order needs one buffer per level at most")
        for _ in 0..<5 {
            r.reset()
            for k in 0..<16 { r.add(Self.leaf(k, g[k])) }
            XCTAssertEqual(r.root().gradient.array, first)
        }
        XCTAssertEqual(r.allocated, allocated, "steps in shard order allocate nothing more")
        for _ in 0..<5 {
            r.reset()
            for k in Self.shuffled(16, &rng) { r.add(Self.leaf(k, g[k])) }
            XCTAssertEqual(r.root().gradient.array, first)
        }
    }

    /// Gradients nobody else holds (as a coordinator's freshly decoded ones) are adopted: in shard order the
    /// reducer sums every pair of leaves over the one that waited and allocates nothing, with the bits of the
    /// tree; a one-shard root is handed back without a copy. A gradient still held elsewhere is only read.
    func testUnsharedGradientsAreSummedInPlace() {
        for s in [1, 2, 5, 16] {
            let tree = ReductionTree(shards: s)
            let count = Parallel.elementsPerBlock + 1_000
            let expected = Self.reference(tree, Self.gradients(s, count: count).map(\.array))
            var r = TreeReducer(tree: tree, gradientCount: count)
            var last: ObjectIdentifier?
            var leaves = Self.gradients(s, count: count)
            for k in 0..<s {
                // Taken out of the array, so the reducer ends up with the only reference.
                let g = leaves.removeFirst()
                last = ObjectIdentifier(g)
                r.add(Self.leaf(k, g))
            }
            let root = r.root().gradient
            XCTAssertEqual(root.array, expected, "S = \(s)")
            XCTAssertEqual(r.allocated, 0, "S = \(s): no buffer of its own needed")
            if s == 1 { XCTAssertEqual(ObjectIdentifier(root), last, "a lone unshared leaf is the root, uncopied") }
        }
        // The same leaves, still held by the caller: read only, summed into the reducer's buffers.
        let g = Self.gradients(2)
        let before = g.map(\.array)
        var r = TreeReducer(tree: ReductionTree(shards: 2), gradientCount: g[0].count)
        for k in 0..<2 { r.add(Self.leaf(k, g[k])) }
        XCTAssertEqual(r.root().gradient.array, Self.reference(ReductionTree(shards: 2), before))
        XCTAssertEqual(g.map(\.array), before, "held gradients are not overwritten")
        XCTAssertEqual(r.allocated, 1)
    }

    /// Adopted gradients do not pile up as spares: a reducer given fresh (decoded) gradients each step, as the
    /// coordinator given only the root or a worker given its peers' sums, keeps no more spare buffers than it
    /// made itself, so its memory does not grow with the depth of the tree. (Before, each step's adopted root went
    /// to the free list: one 16 MB gradient per level at the tutorial's size, 5 at S = 16.)
    func testAdoptedGradientsAreNotKeptAsSpares() {
        let count = 64
        for s in [1, 2, 5, 16] {
            let tree = ReductionTree(shards: s)
            var r = TreeReducer(tree: tree, gradientCount: count)
            var rng = RandomSource(seed: UInt64(s))
            for step in 0..<(tree.depth + 2) {
                r.reset()
                // The whole tree in one fresh sum, as the coordinator receives it.
                r.add(SubtreeSum(node: tree.root, gradient: Self.gradients(1, count: count)[0], losses: Array(repeating: 0, count: s),
                                 states: Array(repeating: FloatBuffer(count: 1), count: s)))
                _ = r.root()
                r.reset()
                // Fresh leaves in any order.
                for k in Self.shuffled(s, &rng) { r.add(Self.leaf(k, Self.gradients(1, count: count)[0])) }
                _ = r.root()
                XCTAssertEqual(r.allocated, 0, "S = \(s), step \(step): adopted buffers suffice")
                XCTAssertEqual(r.spare, 0, "S = \(s), step \(step): no adopted buffer kept")
            }
        }
        // Leaves still held elsewhere need the reducer's own buffers, which it keeps (no more than it made).
        let tree = ReductionTree(shards: 16)
        let g = Self.gradients(16, count: count)
        var r = TreeReducer(tree: tree, gradientCount: count)
        for _ in 0..<3 {
            r.reset()
            for k in 0..<16 { r.add(Self.leaf(k, g[k])) }
            _ = r.root()
        }
        r.reset()
        XCTAssertGreaterThan(r.allocated, 0)
        XCTAssertEqual(r.spare, r.allocated, "the reducer's own buffers are kept for the next step")
    }

    /// The step driver with results arriving in reverse shard order (one worker per shard, the later shards
    /// answering sooner): the weights of the in-process run, in which they arrive in order.
    func testStepDriverResultsInReverseOrderGiveTheInOrderBits() throws {
        let h = try StepDriverTests.Harness()
        for (k, name) in ["a", "b", "c", "d"].enumerated() {
            h.pool.join(name, at: 0, behaviour: .answersAfter(Double(4 - k)))
        }
        try h.finish()
        XCTAssertEqual(h.pool.dealt.prefix(4).map(\.shards), [[0], [1], [2], [3]])
        XCTAssertEqual(h.driver.stats.lostWorkers, 0)
    }

    /// The plan takes whole-subtree sums too: a run whose shards 0..<2 arrive summed and 2, 3 as leaves ends
    /// with the in-process run's weights.
    func testPlanTakesSubtreeSums() throws {
        let plan = try StepDriverTests.plan()
        let step = ShardStep(config: StepDriverTests.config, maxRows: plan.rowsPerShard, seq: plan.options.seq)
        let tree = ReductionTree(shards: plan.shardCount)
        while !plan.isFinished {
            let planned = plan.next()
            let order = WorkOrder(epoch: planned.epoch, shards: planned.shards, weights: plan.state.weights.storage)
            let results = step.compute(order, step: planned.globalStep) { FloatBuffer(count: plan.state.weights.count) }
            var pair = TreeReducer(tree: tree, gradientCount: plan.state.weights.count)
            pair.add(SubtreeSum(results[1]))
            pair.add(SubtreeSum(results[0]))
            plan.accumulate(results[3])
            plan.accumulate(try XCTUnwrap(pair.drain().first))
            plan.accumulate(results[2])
            _ = try plan.finish()
        }
        XCTAssertEqual(plan.state.weights.storage.array, StepDriverTests.reference)
    }

    /// With the root summed apart (by the coordinator), shard 0's top is the left half; every other top is as before.
    func testTopBelowTheRootIsNeverTheRoot() {
        let five = ReductionTree(shards: 5)
        XCTAssertEqual((0..<5).map { five.topBelowRoot(of: $0).description }, ["shards 0..<4", "shard 1", "shards 2..<4", "shard 3", "shard 4"])
        XCTAssertEqual(ReductionTree(shards: 1).topBelowRoot(of: 0), ReductionTree(shards: 1).root, "a lone shard is its root")
        for s in 2...40 {
            let tree = ReductionTree(shards: s)
            for shard in 1..<s { XCTAssertEqual(tree.topBelowRoot(of: shard), tree.top(of: shard)) }
            XCTAssertEqual(tree.topBelowRoot(of: 0), tree.children(of: tree.root)!.left)
        }
    }

    /// Each shard's holder sums the nodes that start at its shard and sends the top one to the holder of the
    /// shard the node above starts at: every node is summed by exactly one holder, the root by shard 0's.
    func testEachShardsTopGoesToAnEarlierShard() {
        let five = ReductionTree(shards: 5)
        XCTAssertEqual((0..<5).map { five.top(of: $0).description }, ["shards 0..<5", "shard 1", "shards 2..<4", "shard 3", "shard 4"])
        XCTAssertEqual((0..<5).map { five.receiver(of: five.top(of: $0)) }, [nil, 0, 0, 2, 0])
        for s in 1...40 {
            let tree = ReductionTree(shards: s)
            var received = [Int](repeating: 0, count: s)
            for shard in 0..<s {
                let top = tree.top(of: shard)
                XCTAssertEqual(top.lo, shard)
                guard let receiver = tree.receiver(of: top) else {
                    XCTAssertEqual(top, tree.root)
                    continue
                }
                XCTAssertLessThan(receiver, shard)
                received[receiver] += 1
            }
            XCTAssertLessThanOrEqual(received.max()!, tree.depth, "a holder receives at most one sum per level, S = \(s)")
            // Every node is under exactly one top: the tops partition the tree's nodes.
            let covered = (0..<s).flatMap { shard in Self.nodes(tree).filter { $0.lo == shard && $0.hi <= tree.top(of: shard).hi } }
            XCTAssertEqual(covered.count, 2 * s - 1)
        }
    }

    /// A worker's reducer refuses a sum that would repeat a shard (a peer's message, checked before `add`) and
    /// hands out a node it must send on, forgetting its shards.
    func testReducerAcceptsOnlyNewNodesAndHandsOneOut() {
        let tree = ReductionTree(shards: 5)
        let g = Self.gradients(5, count: 10)
        var r = TreeReducer(tree: tree, gradientCount: 10)
        r.add(Self.leaf(2, g[2]))
        XCTAssertFalse(r.accepts(ReductionNode(lo: 2, hi: 4)), "shard 2 is in")
        XCTAssertFalse(r.accepts(ReductionNode(lo: 1, hi: 3)), "not a node of the tree")
        XCTAssertTrue(r.accepts(ReductionNode(lo: 3, hi: 4)))
        XCTAssertNil(r.take(ReductionNode(lo: 2, hi: 4)), "not complete")
        r.add(Self.leaf(3, g[3]))
        let sum = r.take(ReductionNode(lo: 2, hi: 4))
        XCTAssertEqual(sum?.gradient.array, (0..<10).map { g[2][$0] + g[3][$0] })
        XCTAssertEqual(sum?.losses, [2.5, 3.5])
        XCTAssertEqual(r.held, 0)
        XCTAssertTrue(r.accepts(ReductionNode(lo: 2, hi: 4)), "taken and forgotten: a node above may come back summed")
    }
}
