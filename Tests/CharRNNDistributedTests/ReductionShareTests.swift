import XCTest
import CharRNN
@testable import CharRNNDistributed

/// Workers' parts in a step's reduction up the tree, wired to each other by hand on a fake clock: the root that
/// reaches the coordinator has the bits of the in-process tree whatever the holders and the arrival order of
/// orders, results and chunks, and a stalled peer makes the others send their own results directly after the
/// patience, once.
final class ReductionShareTests: XCTestCase {
    /// Three chunks on the wire, the last a short one.
    static let count = 2 * WireCodec.chunkBytes / 4 + 1_000

    static func leaf(_ s: Int) -> ShardResult {
        var rng = RandomSource(seed: UInt64(s + 1))
        let g = FloatBuffer((0..<count).map { _ in (2 * rng.nextUnitFloat() - 1) * Float(1 << rng.nextIndex(below: 20)) })
        return ShardResult(index: s, loss: Double(s) + 0.25, state: FloatBuffer([Float(s), -Float(s)]), gradient: g)
    }

    static func inProcessRoot(_ shards: Int) -> [Float] {
        var r = TreeReducer(tree: ReductionTree(shards: shards), gradientCount: count)
        for s in 0..<shards { r.add(SubtreeSum(leaf(s))) }
        return r.root().gradient.array
    }

    /// Holders (worker → its shards) as the coordinator would deal and target them.
    struct Step {
        let tree: ReductionTree
        let holder: [Int: Int]
        var shares: [Int: ReductionShare] = [:]
        /// Whether the coordinator sums the root itself (`SumTarget.coordinatorSumsRoot`).
        let sumsRoot: Bool
        /// What reached the coordinator: results, and each node it takes (the root, or its halves) once all its chunks
        /// are in (put together here as the coordinator does), as one whole sum.
        var toCoordinator: [ReductionShare.Action] = []
        var rootChunks: [ReductionNode: [Int: SumPart]] = [:]
        /// Root chunks that came more than once (never, when all is well).
        var rootChunkRepeats = 0
        /// In flight between workers: (to worker, chunks).
        var wire: [(Int, SumPart)] = []

        init(shards: Int, holders: [[Int]], sumsRoot: Bool = false) {
            tree = ReductionTree(shards: shards)
            self.sumsRoot = sumsRoot
            var h: [Int: Int] = [:]
            for (w, mine) in holders.enumerated() { for s in mine { h[s] = w } }
            holder = h
            for w in holders.indices { shares[w] = ReductionShare(step: 7, tree: tree, parameters: ReductionShareTests.count, origin: "ipc://w\(w)", now: 0) }
        }

        func target(_ shard: Int) -> SumTarget {
            let top = sumsRoot ? tree.topBelowRoot(of: shard) : tree.top(of: shard)
            guard let parent = tree.parentAndSibling(of: top)?.parent, !(sumsRoot && parent == tree.root) else {
                return sumsRoot ? .coordinatorSumsRoot : .coordinator
            }
            return holder[parent.lo] == holder[shard] ? .kept : .peer(RelayPeer(endpoint: "ipc://w\(holder[parent.lo]!)"))
        }

        /// Chunks sent to peers so far.
        var sent = 0

        mutating func route(_ actions: [ReductionShare.Action]) {
            for action in actions {
                if case .send(let part, .peer(let peer)) = action {
                    sent += 1
                    wire.append((Int(peer.endpoint.dropFirst("ipc://w".count))!, part))
                } else if case .send(let part, let target) = action, target == .coordinator || target == .coordinatorSumsRoot {
                    XCTAssertEqual(part.chunks.count, 1, "the root goes chunk by chunk")
                    if rootChunks[part.node]?[part.chunks.lowerBound] != nil { rootChunkRepeats += 1 }
                    rootChunks[part.node, default: [:]][part.chunks.lowerBound] = part
                    if rootChunks[part.node]!.count == 3 { toCoordinator.append(.send(whole(part.node), to: target)) }
                } else {
                    toCoordinator.append(action)
                }
            }
        }

        private mutating func whole(_ node: ReductionNode) -> SumPart {
            let chunks = (0..<3).map { rootChunks[node]![$0]! }
            rootChunks[node] = nil
            return SumPart(node: chunks[0].node, chunks: 0..<3, floats: FloatBuffer(chunks.flatMap(\.floats.array)), shards: chunks[0].shards)
        }

        mutating func order(_ shard: Int, now: Double = 0) { route(shares[holder[shard]!]!.expect(shard, target: target(shard), now: now)) }
        mutating func computed(_ shard: Int, now: Double = 0) { route(shares[holder[shard]!]!.add(leaf: ReductionShareTests.leaf(shard), now: now)) }
        /// Parts of a result told final before the whole of it (as `ShardStep.run` tells them).
        mutating func computedPart(_ shard: Int, _ range: Range<Int>, now: Double = 0) {
            route(shares[holder[shard]!]!.add(part: ReductionShareTests.leaf(shard), final: range, now: now))
        }
        /// Delivers what is in flight, in a random order when `rng` is given.
        mutating func deliver(now: Double = 0, _ rng: inout RandomSource) {
            while !wire.isEmpty {
                let (w, part) = wire.remove(at: rng.nextIndex(below: wire.count))
                route(shares[w]!.add(peerSum: part, now: now))
            }
        }
        mutating func deliver(now: Double = 0) {
            while !wire.isEmpty {
                let (w, part) = wire.removeFirst()
                route(shares[w]!.add(peerSum: part, now: now))
            }
        }
        /// Workers that say nothing (stopped), and how late words arrive.
        var silent: Set<Int> = []
        var delay = 0.0
        /// Seconds of a step without own tokens (the worker uses half the patience).
        var quiet = 0.0
        /// Words on their way: (arrival, to, from, word).
        var words: [(at: Double, to: Int, from: Int, word: ReductionShare.Word)] = []

        /// Delivers the words due by `t` in order of arrival; a worker passes the tokens it hears on at once.
        mutating func deliverWords(until t: Double) {
            while let i = words.indices.min(by: { words[$0].at < words[$1].at }), words[i].at <= t {
                let m = words.remove(at: i)
                shares[m.to]!.heard(m.word.node, origin: m.word.origin, seq: m.word.seq, age: m.word.age, from: RelayPeer(endpoint: "ipc://w\(m.from)"), now: m.at)
                if !silent.contains(m.to) { post(shares[m.to]!.passedOn(now: m.at), from: m.to, at: m.at) }
            }
        }
        mutating func post(_ out: [ReductionShare.Word], from w: Int, at t: Double) {
            words += out.map { (t + delay, Int($0.to.endpoint.dropFirst("ipc://w".count))!, w, $0) }
        }
        mutating func tick(_ now: Double) {
            deliverWords(until: now)
            for w in shares.keys.sorted() { route(shares[w]!.check(now: now, patience: 2, maxWait: 16)) }
        }
        /// The own tokens of `workers` (all when nil) but the silent ones, at `now`.
        mutating func talk(_ now: Double, workers: [Int]? = nil) {
            deliverWords(until: now)
            for w in workers ?? shares.keys.sorted() where !silent.contains(w) { post(shares[w]!.ownWords(now: now, quiet: quiet), from: w, at: now) }
            deliverWords(until: now)
        }
        /// Talk and check the patience every half second from `from` to `to`.
        mutating func wait(from: Double, to: Double) {
            for t in stride(from: from, through: to, by: 0.5) {
                talk(t)
                tick(t)
            }
        }
        /// The root's halves that reached the coordinator, whole, when it sums the root.
        var halves: [SumPart] {
            toCoordinator.compactMap { action -> SumPart? in
                if case .send(let part, .coordinatorSumsRoot) = action { return part }
                return nil
            }
        }
        var direct: [[Int]] {
            toCoordinator.compactMap { action -> [Int]? in
                if case .leaves(let leaves) = action { return leaves.map(\.index) }
                return nil
            }.sorted { $0[0] < $1[0] }
        }
    }

    static let holderCases: [(Int, [[Int]])] = [(4, [[0], [1], [2], [3]]), (5, [[0], [1], [2], [3], [4]]), (6, [[0, 3], [1, 4], [2, 5]]),
                                                (6, [[0, 5], [1], [2], [3], [4]]), (3, [[0, 1, 2]]), (7, [[6], [0, 2], [5, 1], [3, 4]])]

    /// Orders and results in a shuffled order (each shard's order before its result), sums delivered at random
    /// moments between them; in round 0 the last shards come first, so sums arrive early.
    static func play(_ step: inout Step, round: Int, _ rng: inout RandomSource) {
        let shards = step.tree.shardCount
        var events = (0..<shards).flatMap { [(0, $0), (1, $0)] }
        for i in stride(from: events.count - 1, to: 0, by: -1) { events.swapAt(i, rng.nextIndex(below: i + 1)) }
        for shard in 0..<shards {
            let (a, b) = (events.firstIndex { $0 == (0, shard) }!, events.firstIndex { $0 == (1, shard) }!)
            if b < a { events.swapAt(a, b) }
        }
        if round == 0 { events = (0..<shards).reversed().flatMap { [(0, $0), (1, $0)] } }
        for (kind, shard) in events {
            if kind == 0 { step.order(shard) } else { step.computed(shard) }
            if rng.nextIndex(below: 2) == 0 { step.deliver(&rng) }
        }
        step.deliver(&rng)
    }

    func testRootHasTheInProcessBitsForAnyHoldersAndOrder() throws {
        var rng = RandomSource(seed: 5)
        for (shards, holders) in Self.holderCases {
            for round in 0..<4 {
                var step = Step(shards: shards, holders: holders)
                Self.play(&step, round: round, &rng)
                XCTAssertEqual(step.toCoordinator.count, 1, "one message for the coordinator, S = \(shards), \(holders)")
                guard case .send(let root, .coordinator) = try XCTUnwrap(step.toCoordinator.first) else { return XCTFail("not the root") }
                XCTAssertEqual(root.node, step.tree.root)
                XCTAssertEqual(step.rootChunkRepeats, 0, "each root chunk once")
                XCTAssertEqual(root.floats.array, Self.inProcessRoot(shards), "S = \(shards), \(holders), round \(round)")
                XCTAssertEqual(root.shards?.losses, (0..<shards).map { Double($0) + 0.25 })
                XCTAssertEqual(root.shards?.states.map(\.array), (0..<shards).map { [Float($0), -Float($0)] })
            }
        }
    }

    /// The root the coordinator sums from the halves it received, as it does: along the tree.
    static func root(from halves: [SumPart], tree: ReductionTree) -> (gradient: FloatBuffer, losses: [Double], states: [FloatBuffer]) {
        var reducer = TreeReducer(tree: tree, gradientCount: count)
        for half in halves {
            reducer.add(SubtreeSum(node: half.node, gradient: half.floats, losses: half.shards!.losses, states: half.shards!.states))
        }
        return reducer.root()
    }

    /// With the coordinator summing the root: it receives the two halves, each once, from the holders of their first
    /// shards, and their sum has the in-process root's bits. Shard 0's holder takes one sum fewer than when it sums
    /// the root (with one shard each: none from shard 4's holder over 5 shards, 8's over 9).
    func testHalvesForTheCoordinatorGiveTheInProcessRoot() throws {
        var rng = RandomSource(seed: 6)
        for (shards, holders) in Self.holderCases + [(9, (0..<9).map { [$0] })] where shards > 3 {
            for round in 0..<3 {
                var step = Step(shards: shards, holders: holders, sumsRoot: true)
                Self.play(&step, round: round, &rng)
                let halves = step.halves
                XCTAssertEqual(step.toCoordinator.count, 2, "S = \(shards), \(holders)")
                let (left, right) = try XCTUnwrap(step.tree.children(of: step.tree.root))
                XCTAssertEqual(Set(halves.map(\.node)), [left, right])
                XCTAssertEqual(step.rootChunkRepeats, 0, "each chunk once")
                let root = Self.root(from: halves, tree: step.tree)
                XCTAssertEqual(root.gradient.array, Self.inProcessRoot(shards), "S = \(shards), \(holders), round \(round)")
                XCTAssertEqual(root.losses, (0..<shards).map { Double($0) + 0.25 })
            }
        }
    }

    /// The right half of a root the coordinator sums, sent (wrongly) to shard 0's holder, is refused: taken in, it
    /// would be added to the left half into the root, and the left half would never leave.
    func testARightHalfFromAPeerIsRefusedWhenTheCoordinatorSumsTheRoot() throws {
        var step = Step(shards: 5, holders: [[0, 1, 2, 3], [4]], sumsRoot: true)
        for s in 0..<5 { step.order(s) }
        let first = WireCodec.chunkBytes / 4
        let stray = SumPart(node: ReductionNode(lo: 4, hi: 5), chunks: 0..<1, floats: FloatBuffer(Array(Self.leaf(4).gradient.array[0..<first])),
                            shards: ([4.25], [FloatBuffer([4, -4])]))
        XCTAssertTrue(step.shares[0]!.add(peerSum: stray, now: 0).isEmpty)
        for s in 0..<5 { step.computed(s) }
        step.deliver()
        XCTAssertEqual(step.toCoordinator.count, 2, "both halves: \(step.toCoordinator)")
        XCTAssertEqual(Self.root(from: step.halves, tree: step.tree).gradient.array, Self.inProcessRoot(5))
    }

    /// Levels overlap: shard 2's holder passes chunk 0 of its sum of 2..<4 on as soon as its own result and chunk 0
    /// of shard 3's are in, before shard 3's other chunks come.
    func testAChunkGoesOnAsSoonAsItsInputsAreIn() {
        var step = Step(shards: 4, holders: [[0], [1], [2], [3]])
        for s in 0..<4 { step.order(s) }
        step.computed(2)
        step.computed(3)
        XCTAssertEqual(step.wire.map(\.0), [2, 2, 2], "shard 3's three chunks, to shard 2's holder")
        let (w, first) = step.wire.removeFirst()
        step.route(step.shares[w]!.add(peerSum: first, now: 0))
        XCTAssertEqual(step.wire.map { "\($0.0) \($0.1.node) \($0.1.chunks)" }, ["2 shard 3 1..<2", "2 shard 3 2..<3", "0 shards 2..<4 0..<1"])
    }

    /// Parts of results told final in any order and cut anywhere (a chunk goes in once the parts cover it) give the
    /// same root, bit for bit, as whole results; no chunk is sent twice when the whole result follows.
    func testPartsToldFinalEarlyGiveTheSameRoot() throws {
        var rng = RandomSource(seed: 9)
        for (shards, holders) in [(4, [[0], [1], [2], [3]]), (5, [[0], [1], [2], [3], [4]]), (6, [[0, 5], [1], [2], [3], [4]])] {
            for _ in 0..<4 {
                var step = Step(shards: shards, holders: holders)
                for s in 0..<shards { step.order(s) }
                for s in (0..<shards).reversed() {
                    // Cut at random points (some inside a chunk), told in a random order; the last cut is never told.
                    var cuts = ([0, Self.count] + (0..<3).map { _ in rng.nextIndex(below: Self.count) }).sorted()
                    cuts = Array(Set(cuts)).sorted()
                    var parts = zip(cuts, cuts.dropFirst()).map { $0..<$1 }
                    parts.remove(at: rng.nextIndex(below: parts.count))
                    for i in stride(from: parts.count - 1, to: 0, by: -1) { parts.swapAt(i, rng.nextIndex(below: i + 1)) }
                    for part in parts { step.computedPart(s, part) }
                    if rng.nextIndex(below: 2) == 0 { step.deliver(&rng) }
                    step.computed(s)
                    step.deliver(&rng)
                }
                let crossings = (0..<shards).filter { if case .peer = step.target($0) { return true } else { return false } }.count
                XCTAssertEqual(step.sent, 3 * crossings, "each chunk of each sum crosses once, S = \(shards), \(holders)")
                guard case .send(let root, .coordinator)? = step.toCoordinator.first else { return XCTFail("no root: \(step.toCoordinator)") }
                XCTAssertEqual(step.toCoordinator.count, 1)
                XCTAssertEqual(step.rootChunkRepeats, 0)
                XCTAssertEqual(root.floats.array, Self.inProcessRoot(shards), "S = \(shards), \(holders)")
                XCTAssertEqual(root.shards?.losses, (0..<shards).map { Double($0) + 0.25 })
            }
        }
    }

    /// A chunk goes up as soon as the parts told cover it, while the result is still computing: shard 3's holder
    /// sends chunk 0 of it when told the first chunk and a half, chunk 1 when told the rest of it, and keeps the
    /// tree waiting for its result (computing, no giving up) until the result is whole. Shard 2's holder refuses a
    /// sum with chunk 1 of its shard before its own chunk 1 is in.
    func testAChunkGoesUpAsSoonAsThePartsCoverIt() {
        let chunk = WireCodec.chunkBytes / 4
        var step = Step(shards: 4, holders: [[0], [1], [2], [3]])
        for s in 0..<4 { step.order(s) }
        step.computedPart(3, 0..<(chunk + chunk / 2))
        XCTAssertEqual(step.wire.map { "\($0.0) \($0.1.node) \($0.1.chunks)" }, ["2 shard 3 0..<1"])
        step.computedPart(3, (2 * chunk)..<Self.count)
        XCTAssertEqual(step.wire.map { "\($0.0) \($0.1.chunks)" }, ["2 0..<1", "2 2..<3"])
        step.computedPart(3, (chunk + chunk / 2)..<(2 * chunk))
        XCTAssertEqual(step.wire.map { "\($0.0) \($0.1.chunks)" }, ["2 0..<1", "2 2..<3", "2 1..<2"])
        XCTAssertEqual(step.shares[3]!.computing, 1, "told every chunk, but not computed yet")
        XCTAssertTrue(step.shares[3]!.check(now: 100, patience: 2, maxWait: 16).isEmpty, "no giving up while computing")

        let sum21 = SumPart(node: ReductionNode(lo: 2, hi: 4), chunks: 1..<2, floats: FloatBuffer(count: chunk), shards: nil)
        XCTAssertTrue(step.shares[2]!.add(peerSum: sum21, now: 0).isEmpty)
        step.computedPart(2, 0..<chunk)
        XCTAssertEqual(step.wire.count, 3, "shard 2's holder sums chunk 0 only once shard 3's chunk 0 is delivered")
        for _ in 0..<3 {
            let (w, part) = step.wire.removeFirst()
            step.route(step.shares[w]!.add(peerSum: part, now: 0))
        }
        XCTAssertEqual(step.wire.map { "\($0.0) \($0.1.node) \($0.1.chunks)" }, ["0 shards 2..<4 0..<1"])
        step.computed(3)
        XCTAssertTrue(step.wire.count == 1, "nothing sent twice")
        step.computed(2)
        for s in [0, 1] { step.computed(s) }
        step.deliver()
        guard case .send(let root, .coordinator)? = step.toCoordinator.first else { return XCTFail("no root: \(step.toCoordinator)") }
        XCTAssertEqual(root.floats.array, Self.inProcessRoot(4))
    }

    /// The root's chunks go to the coordinator as they are summed: with two shards told final in their first chunk,
    /// the coordinator has chunk 0 of the root before either result is whole.
    func testTheRootsFirstChunkReachesTheCoordinatorBeforeTheResults() {
        var step = Step(shards: 2, holders: [[0], [1]])
        for s in 0..<2 { step.order(s) }
        for s in 0..<2 { step.computedPart(s, 0..<(WireCodec.chunkBytes / 4)) }
        step.deliver()
        XCTAssertEqual(step.rootChunks[step.tree.root]?.keys.sorted(), [0])
        XCTAssertEqual(step.shares[0]!.computing, 1)
        for s in 0..<2 { step.computed(s) }
        step.deliver()
        guard case .send(let root, .coordinator)? = step.toCoordinator.first else { return XCTFail("no root: \(step.toCoordinator)") }
        XCTAssertEqual(root.floats.array, Self.inProcessRoot(2))
        XCTAssertEqual(step.rootChunkRepeats, 0)
    }

    /// A node that holds one of our shards whose result is not in yet cannot be an honest peer's: refused, and our
    /// result still goes in when it comes (it would otherwise stop the process as a repeat).
    func testASumAheadOfOurOwnResultIsRefused() {
        var step = Step(shards: 4, holders: [[0, 3], [1], [2]])
        for s in 0..<4 { step.order(s) }
        let early = SumPart(node: ReductionNode(lo: 2, hi: 4), chunks: 0..<1, floats: FloatBuffer(count: WireCodec.chunkBytes / 4),
                            shards: ([1, 1], [FloatBuffer([0, 0]), FloatBuffer([0, 0])]))
        XCTAssertTrue(step.shares[0]!.add(peerSum: early, now: 0).isEmpty)
        for s in [0, 1, 2, 3] { step.computed(s) }
        step.deliver()
        guard case .send(let root, .coordinator)? = step.toCoordinator.first else { return XCTFail("no root: \(step.toCoordinator)") }
        XCTAssertEqual(root.floats.array, Self.inProcessRoot(4))
    }

    /// Shard 2's holder is stopped after its order: shard 3's holder sent it its sum, which is stuck there. The
    /// others wait out the patience from their last progress, then send their own results directly, once; a sum
    /// that comes after that is dropped.
    func testStalledPeerMakesTheOthersSendTheirResultsAfterThePatience() throws {
        var step = Step(shards: 4, holders: [[0], [1], [2], [3]])
        for s in 0..<4 { step.order(s) }
        for s in [0, 1, 3] { step.computed(s, now: 1) }
        step.deliver(now: 1)
        let stuck = step.wire
        XCTAssertTrue(stuck.isEmpty, "shard 3's sum went to shard 2's holder, which holds it")
        step.tick(2.9)
        XCTAssertTrue(step.toCoordinator.isEmpty, "within the patience nobody gives up")
        step.tick(3)
        let direct = step.toCoordinator.compactMap { action -> [Int]? in
            if case .leaves(let leaves) = action { return leaves.map(\.index) }
            return nil
        }
        XCTAssertEqual(direct.sorted { $0[0] < $1[0] }, [[0], [1], [3]])
        step.toCoordinator = []
        step.tick(10)
        XCTAssertTrue(step.toCoordinator.isEmpty, "once only")
        // Shard 2's holder wakes up: its sum of 2..<4 goes to shard 0's holder, which left the tree.
        step.computed(2, now: 11)
        step.deliver(now: 11)
        XCTAssertTrue(step.toCoordinator.isEmpty, "a sum to a worker that gave up is dropped")
    }

    /// A slow peer is not a stopped one: shard 1's holder computes for 5 s, far beyond the patience (2 s), and says so
    /// every half second. Nobody gives up: the workers that finished hear from their neighbours that the tree is
    /// alive, and the root reaches the coordinator once shard 1 is in. Silent, the same slow peer makes every other
    /// worker send its results directly after the patience (what happened before the word).
    func testASlowPeerThatSaysSoKeepsTheTreeTogether() throws {
        for talking in [true, false] {
            var step = Step(shards: 4, holders: [[0], [1], [2], [3]])
            step.quiet = 1
            for s in 0..<4 { step.order(s) }
            for s in [0, 2, 3] { step.computed(s, now: 1) }
            step.deliver(now: 1)
            if !talking { step.silent = [0, 1, 2, 3] }
            step.wait(from: 1, to: 6)
            if !talking {
                XCTAssertEqual(step.direct, [[0], [2], [3]], "without the word, the others give up")
                continue
            }
            XCTAssertTrue(step.toCoordinator.isEmpty, "nobody gave up: \(step.toCoordinator)")
            step.computed(1, now: 6.2)
            step.deliver(now: 6.2)
            XCTAssertEqual(step.toCoordinator.count, 1)
            guard case .send(let root, .coordinator)? = step.toCoordinator.first else { return XCTFail("no root: \(step.toCoordinator)") }
            XCTAssertEqual(root.floats.array, Self.inProcessRoot(4))
        }
    }

    /// Tokens reach the far side of a deep tree within the patience: 16 workers, shard 15's holder computing for
    /// 8 s (it is up to 7 hops from shard 7's holder). Tokens are passed on as soon as heard, so nobody gives up, and
    /// the root comes once shard 15 is in. (Passed on only at each worker's own quarter-patience tick, a token aged
    /// a tick per hop and reached shard 7's holder as old as the patience.)
    func testTokensCrossADeepTreeWithinThePatience() throws {
        var step = Step(shards: 16, holders: (0..<16).map { [$0] })
        for s in 0..<16 { step.order(s) }
        for s in 0..<15 { step.computed(s, now: 1) }
        step.deliver(now: 1)
        step.delay = 0.01
        step.quiet = 1
        // Each worker's own tick at its own offset in the quarter patience, the worst way round for the path from
        // shard 15's holder to shard 7's (15 → 14 → 12 → 8 → 0 → 4 → 6 → 7): each talks just before the token comes.
        let path = [15, 14, 12, 8, 0, 4, 6, 7]
        var offset = [Int: Double](uniqueKeysWithValues: (0..<16).map { ($0, 0.45) })
        for (k, w) in path.enumerated() { offset[w] = 0.06 * Double(path.count - 1 - k) }
        let order = (0..<16).sorted { offset[$0]! < offset[$1]! }
        for t in stride(from: 1.0, through: 9, by: 0.5) {
            for w in order { step.talk(t + offset[w]!, workers: [w]) }
            step.tick(t + 0.49)
        }
        XCTAssertTrue(step.toCoordinator.isEmpty, "nobody gave up: \(step.direct)")
        step.computed(15, now: 9.5)
        step.deliver(now: 9.5)
        guard case .send(let root, .coordinator)? = step.toCoordinator.first else { return XCTFail("no root: \(step.toCoordinator)") }
        XCTAssertEqual(root.floats.array, Self.inProcessRoot(16))
    }

    /// A stopped peer still gets the step done, in the same time as without the words: shard 2's holder stops
    /// holding shard 3's sum. The others make no progress after 1 s, so they make no new tokens, and all give up at
    /// 3 s, the patience after it.
    func testAStoppedPeerStillCutsTheTreeWithinThePatience() throws {
        var step = Step(shards: 8, holders: (0..<8).map { [$0] })
        for s in 0..<8 { step.order(s) }
        for s in [0, 1, 3, 4, 5, 6, 7] { step.computed(s, now: 1) }
        step.deliver(now: 1)
        step.silent = [2]
        step.wait(from: 1, to: 2.5)
        XCTAssertTrue(step.toCoordinator.isEmpty, "within the patience nobody gives up")
        step.wait(from: 3, to: 3)
        XCTAssertEqual(step.direct, [[0], [1], [3], [4], [5], [6], [7]], "all at 3 s, the patience after their last progress")
    }

    /// Words alone are no progress, however they go round. Six shards on three workers make a cycle of neighbours
    /// (w0 sums w1's 4..<6, w1 sums w2's shard 5, w2 sums w0's shard 3). Their words go out of step with each other
    /// and arrive 0.3 s late. While w1 computes its second shard its tokens keep the others waiting; once it stops
    /// (silent) they give up within the patience of its last token's arrival. (Words that said how long their
    /// sender had been idle, rebased by each receiver, gained the delivery delay at every hop and, round a cycle,
    /// never ran out.)
    func testWordsGoingRoundDoNotKeepAStoppedTreeWaiting() {
        var step = Step(shards: 6, holders: [[0, 3], [1, 4], [2, 5]])
        for s in 0..<6 { step.order(s) }
        for s in [0, 1, 2, 3, 5] { step.computed(s, now: 1) }
        step.deliver(now: 1)
        step.delay = 0.3
        var t = 1.0
        while t < 3 {
            step.talk(t, workers: [0])
            step.talk(t + 0.1, workers: [1])
            step.talk(t + 0.2, workers: [2])
            t += 0.5
            step.tick(t)
        }
        XCTAssertTrue(step.toCoordinator.isEmpty, "w1 computes shard 4: its tokens are progress")
        // w1 stops: its last token, made at 2.6 s, is at most 0.6 s old wherever it arrives (two hops of 0.3 s).
        step.silent = [1]
        while step.direct.count < 2 && t < 20 {
            step.talk(t, workers: [0])
            step.talk(t + 0.2, workers: [2])
            t += 0.5
            step.tick(t)
        }
        XCTAssertEqual(step.direct, [[0, 3], [2, 5]])
        XCTAssertLessThanOrEqual(t, 5.5, "both gave up within the patience of the last token, plus the wire and the tick")
    }

    /// Others' progress keeps a worker waiting at most `maxWait` (16 s here) after its own: past the coordinator's
    /// deadline it would be counted as lost with the slow worker.
    func testWaitingOnOthersHasABound() {
        var step = Step(shards: 4, holders: [[0], [1], [2], [3]])
        for s in 0..<4 { step.order(s) }
        for s in [0, 2, 3] { step.computed(s, now: 1) }
        step.deliver(now: 1)
        step.wait(from: 1, to: 16.5)
        XCTAssertTrue(step.toCoordinator.isEmpty, "shard 1's holder computes: the others wait")
        step.wait(from: 17, to: 17)
        XCTAssertEqual(step.direct, [[0], [2], [3]], "16 s after their own last progress")
    }

    /// A result the tree cannot take (a peer's sum holding its shard came before our order for it, which no honest
    /// peer sends) is still no longer being computed: it does not keep us saying so, and goes to the coordinator
    /// with our other results when we give up.
    func testAResultTheTreeRefusesIsStillIn() {
        var share = ReductionShare(step: 1, tree: ReductionTree(shards: 4), parameters: Self.count, origin: "ipc://w0", now: 0)
        _ = share.expect(0, target: .coordinator, now: 0)
        let forged = SumPart(node: ReductionNode(lo: 2, hi: 4), chunks: 0..<1, floats: FloatBuffer(count: WireCodec.chunkBytes / 4),
                             shards: ([1, 1], [FloatBuffer([0, 0]), FloatBuffer([0, 0])]))
        _ = share.add(peerSum: forged, now: 0)
        _ = share.expect(3, target: .peer(RelayPeer(endpoint: "ipc://w2")), now: 0)
        for s in [0, 3] { _ = share.add(leaf: Self.leaf(s), now: 1) }
        XCTAssertEqual(share.computing, 0)
        guard case .leaves(let leaves)? = share.check(now: 3, patience: 2, maxWait: 16).first else { return XCTFail("did not give up") }
        XCTAssertEqual(leaves.map(\.index), [0, 3])
    }

    /// No own tokens in a step's first `quiet` seconds (a step that ends sooner needs none), then one per call while
    /// computing, or after progress.
    func testNoWordsEarlyInAStep() {
        var share = ReductionShare(step: 1, tree: ReductionTree(shards: 2), parameters: Self.count, origin: "ipc://w1", now: 10)
        _ = share.expect(1, target: .peer(RelayPeer(endpoint: "ipc://w0")), now: 10)
        XCTAssertTrue(share.ownWords(now: 10.9, quiet: 1).isEmpty)
        XCTAssertEqual(share.ownWords(now: 11, quiet: 1).map(\.seq), [1])
        XCTAssertEqual(share.ownWords(now: 11.5, quiet: 1).map(\.seq), [2], "computing: a token every time")
        _ = share.add(leaf: Self.leaf(1), now: 11.6)
        let words = share.ownWords(now: 12, quiet: 1)
        XCTAssertEqual(words.count, 1)
        XCTAssertEqual(words.first?.age ?? 0, 0.4, accuracy: 1e-9, "progress 0.4 s old")
        XCTAssertTrue(share.ownWords(now: 12.5, quiet: 1).isEmpty, "nothing new")
    }

    /// Words not from a neighbour are no progress: a node we do not sum, our own top node from another peer than the
    /// one our order names, our own token come back, a token seen before; and once we gave up we say nothing.
    func testWordsNotFromANeighbourAreIgnored() {
        let tree = ReductionTree(shards: 4)
        let receiver = RelayPeer(endpoint: "ipc://w0")
        var share = ReductionShare(step: 1, tree: tree, parameters: Self.count, origin: "ipc://w2", now: 0)
        _ = share.expect(2, target: .peer(receiver), now: 0)
        _ = share.add(leaf: Self.leaf(2), now: 0)
        let stranger = RelayPeer(endpoint: "ipc://w9")
        share.heard(ReductionNode(lo: 1, hi: 2), origin: "ipc://w9", seq: 1, age: 0, from: stranger, now: 1.9)
        share.heard(ReductionNode(lo: 2, hi: 4), origin: "ipc://w9", seq: 1, age: 0, from: stranger, now: 1.9)
        share.heard(ReductionNode(lo: 0, hi: 4), origin: "ipc://w0", seq: 1, age: 0, from: receiver, now: 1.9)
        share.heard(ReductionNode(lo: 2, hi: 4), origin: "ipc://w2", seq: 9, age: 0, from: receiver, now: 1.9)
        XCTAssertEqual(share.ownWords(now: 1, quiet: 0).map(\.to), [receiver], "our own token, to our receiver only: no sender heard from")
        XCTAssertEqual(share.check(now: 2, patience: 2, maxWait: 16).count, 1, "none of those words counted")
        XCTAssertTrue(share.ownWords(now: 2, quiet: 0).isEmpty, "a worker that gave up says nothing")

        var other = ReductionShare(step: 1, tree: tree, parameters: Self.count, origin: "ipc://w2", now: 0)
        _ = other.expect(2, target: .peer(receiver), now: 0)
        _ = other.add(leaf: Self.leaf(2), now: 0)
        other.heard(ReductionNode(lo: 2, hi: 4), origin: "ipc://w1", seq: 3, age: 0, from: receiver, now: 1.5)
        other.heard(ReductionNode(lo: 2, hi: 4), origin: "ipc://w1", seq: 3, age: 0, from: receiver, now: 1.9)
        XCTAssertTrue(other.check(now: 2, patience: 2, maxWait: 16).isEmpty, "a new token from our receiver: progress at 1.5 s")
        XCTAssertEqual(other.check(now: 3.5, patience: 2, maxWait: 16).count, 1, "the same token again was none")

        // A sender's token makes it a neighbour: it gets ours, and the token goes on to our receiver, not back.
        var middle = ReductionShare(step: 1, tree: tree, parameters: Self.count, origin: "ipc://w2", now: 0)
        _ = middle.expect(2, target: .peer(receiver), now: 0)
        _ = middle.ownWords(now: 0, quiet: 0)
        middle.heard(ReductionNode(lo: 3, hi: 4), origin: "ipc://w3", seq: 4, age: 0, from: RelayPeer(endpoint: "ipc://w3"), now: 0.5)
        XCTAssertEqual((middle.ownWords(now: 1, quiet: 0) + middle.passedOn(now: 1)).map { "\($0.node) \($0.origin) \($0.seq) \($0.age) \($0.to.endpoint)" },
                       ["shards 2..<4 ipc://w2 2 0.0 ipc://w0", "shard 3 ipc://w2 2 0.0 ipc://w3", "shards 2..<4 ipc://w3 4 0.5 ipc://w0"],
                       "computing: a fresh token of ours to both; theirs on to the receiver only, half a second older")
    }

    /// A peer's message is only a peer's word: a node that is not the top of a shard, one whose node above is not
    /// ours, or a repeat, is not used (a repeat would stop the process in the reducer).
    func testSumsThatAreNotOursAreIgnored() {
        let tree = ReductionTree(shards: 4)
        var share = ReductionShare(step: 1, tree: tree, parameters: Self.count, origin: "ipc://w2", now: 0)
        XCTAssertTrue(share.expect(2, target: .peer(RelayPeer(endpoint: "ipc://w0")), now: 0).isEmpty)
        func part(_ lo: Int, _ hi: Int, chunks: Range<Int> = 0..<1) -> SumPart {
            SumPart(node: ReductionNode(lo: lo, hi: hi), chunks: chunks,
                    floats: FloatBuffer(count: WireCodec.floatRange(chunks, parameters: Self.count).count),
                    shards: chunks.lowerBound == 0 ? (Array(repeating: 1, count: hi - lo), (lo..<hi).map { _ in FloatBuffer([0, 0]) }) : nil)
        }
        XCTAssertTrue(share.add(peerSum: part(2, 4), now: 0).isEmpty, "our own node")
        XCTAssertTrue(share.add(peerSum: part(1, 2), now: 0).isEmpty, "shard 0's holder sums that; kept early at most")
        XCTAssertTrue(share.add(peerSum: SumPart(node: ReductionNode(lo: 3, hi: 4), chunks: 0..<1, floats: FloatBuffer(count: 7), shards: nil), now: 0).isEmpty,
                      "chunk 0 without its losses and states, and of the wrong size")
        XCTAssertTrue(share.add(peerSum: part(3, 4, chunks: 0..<3), now: 0).isEmpty, "peers send one chunk at a time")
        for k in 0..<3 { XCTAssertTrue(share.add(peerSum: part(3, 4, chunks: k..<(k + 1)), now: 0).isEmpty) }
        XCTAssertTrue(share.add(peerSum: part(3, 4, chunks: 1..<2), now: 0).isEmpty, "a repeat")
        let out = share.add(leaf: Self.leaf(2), now: 0)
        XCTAssertEqual(out.count, 3, "one message per chunk")
        for (k, action) in out.enumerated() {
            guard case .send(let sum, .peer) = action else { return XCTFail("\(out)") }
            XCTAssertEqual(sum.node, ReductionNode(lo: 2, hi: 4))
            XCTAssertEqual(sum.chunks, k..<(k + 1))
            XCTAssertEqual(sum.shards != nil, k == 0)
        }
    }
}
