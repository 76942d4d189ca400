import Foundation
import XCTest
import CharRNN
@testable import CharRNNDistributed

/// The coordinator's side of the reduction up the tree, with three relaying workers played by test DEALERs: the
/// targets of each shard's first order (dealt at once, or pulled later), the root taken only whole (put together
/// from its chunks), new and from shard 0's holder, orders dealt again answered directly, a holder's word that it
/// computed a shard, pings that move on to the next step once the root is in, and holders whose results went into
/// a root that did not count released once the step is whole.
final class CoordinatorReductionTests: XCTestCase {
    private let shape = try! RunShape(config: ModelConfig(vocab: 11, embed: 3, units: 4), seq: 5, rowsPerShard: 2, shardCount: 3)

    func testRootCountsOnlyWholeNewAndFromShardZerosHolder() throws {
        let run = try RelayingWorkers(shape: shape, fanout: 2, names: ["a", "b", "c"])
        let (coordinator, workers, codec) = (run.coordinator, run.workers, run.codec)
        let ids = [Int32](repeating: 1, count: shape.tokenCount)
        let weights = FloatBuffer(count: shape.parameterCount)
        func deal(_ shard: Int, step: Int, to k: Int) {
            let order = WorkOrder(epoch: 0, shards: [WorkShard(index: shard, state: nil, rows: ShardRows(rows: 2, seq: 5, inputs: ids, targets: ids))], weights: weights)
            XCTAssertTrue(coordinator.send(order, step: step, to: workers[k].id))
        }
        func target(_ k: Int) throws -> String { try Self.target(of: run, k) }
        func root(from k: Int, step: Int) throws {
            let part = SumPart(node: ReductionTree(shards: 3).root, chunks: 0..<1, floats: FloatBuffer(count: shape.parameterCount),
                               shards: ([1, 2, 3], (0..<3).map { _ in FloatBuffer(count: shape.stateCount) }))
            try workers[k].socket.send(codec.encode(.sum(part), step: step))
        }
        func events() throws -> [PoolEvent] {
            var out: [PoolEvent] = []
            for _ in 0..<20 { out += try coordinator.poll(until: PhaseClock.now() + 0.01) }
            return out
        }

        // Step 1: every shard dealt at once, one each. Over 3 shards the tree is (0..<2) + 2: shard 0's holder sends
        // the root; shards 1 and 2 go to it (a node 1 and 2 each, whose node above starts at shard 0).
        for (shard, k) in [(0, 0), (1, 1), (2, 2)] { deal(shard, step: 1, to: k) }
        _ = try coordinator.poll(until: 0)
        XCTAssertEqual(try (0..<3).map { try target($0) }, ["coordinator", "ipc:///relay/a", "ipc:///relay/a"])
        XCTAssertEqual(coordinator.stats.reducedSteps, 1)
        try root(from: 1, step: 1)
        XCTAssertTrue(try events().isEmpty, "a root from a worker not holding shard 0 is refused")
        try root(from: 0, step: 1)
        let sums = try events().compactMap { event -> [WorkerID]? in
            if case .sum(1, let part, let holders) = event, part.node.count == 3 { return holders }
            return nil
        }
        XCTAssertEqual(sums, [workers.map(\.id)], "the root, with each shard's holder")
        XCTAssertEqual(coordinator.stats.sumsReceived, 1)
        XCTAssertEqual(coordinator.stats.sumsRefused, 1)
        // The root is in: pings now carry step 2, so workers drop what they kept for step 1.
        XCTAssertTrue(try Self.pinged(run, 2, step: 2))

        // Step 2: shard 1's result comes on its own first (its holder's patience ran out); the root then overlaps it
        // and is refused whole. An order dealt again in the step goes without a target.
        for (shard, k) in [(0, 0), (1, 1), (2, 2)] { deal(shard, step: 2, to: k) }
        _ = try coordinator.poll(until: 0)
        XCTAssertEqual(try (0..<3).map { try target($0) }, ["coordinator", "ipc:///relay/a", "ipc:///relay/a"])
        let leaf = ShardResult(index: 1, loss: 1, state: FloatBuffer(count: shape.stateCount), gradient: FloatBuffer(count: shape.parameterCount))
        try workers[1].socket.send(codec.encode(.result([leaf]), step: 2))
        XCTAssertEqual(try events().count, 1)
        try root(from: 0, step: 2)
        XCTAssertTrue(try events().isEmpty)
        XCTAssertEqual(coordinator.stats.sumsRefused, 2)
        deal(2, step: 2, to: 1)
        _ = try coordinator.poll(until: 0)
        XCTAssertEqual(try target(1), "none")
        // Shard 0 comes from its holder, shard 2 from the copy: every shard is in, and c, whose result went into the
        // refused root, is released from its order.
        for (shard, k) in [(0, 0), (2, 1)] {
            let r = ShardResult(index: shard, loss: 1, state: FloatBuffer(count: shape.stateCount), gradient: FloatBuffer(count: shape.parameterCount))
            try workers[k].socket.send(codec.encode(.result([r]), step: 2))
        }
        let released = try events().compactMap { event -> String? in
            if case .released(let w, let step, let shard) = event { return "\(workers.firstIndex { $0.id == w }!) \(step) \(shard)" }
            return nil
        }
        XCTAssertEqual(released, ["2 2 2"])
        // Step 3, pulled: two shards first; the third goes into the tree as well when it is dealt later, to a worker
        // that said it computed its first (kept: that worker holds shard 0, where the node above it starts). Only the
        // holder's word that it computed a shard counts, and a copy dealt again is answered directly.
        for (shard, k) in [(0, 0), (1, 1)] { deal(shard, step: 3, to: k) }
        _ = try coordinator.poll(until: 0)
        XCTAssertEqual(try (0..<2).map { try target($0) }, ["coordinator", "ipc:///relay/a"])
        XCTAssertEqual(coordinator.stats.reducedSteps, 3)
        for (shard, k) in [(0, 0), (0, 1), (1, 2), (0, 0)] { try workers[k].socket.send(codec.encode(.computed(shard: shard), step: 3)) }
        try workers[0].socket.send(codec.encode(.computed(shard: 0), step: 2))
        let computed = try events().compactMap { event -> String? in
            if case .computed(let w, let step, let shard) = event { return "\(workers.firstIndex { $0.id == w }!) \(step) \(shard)" }
            return nil
        }
        XCTAssertEqual(computed, ["0 3 0", "0 3 0"], "a's word for its own shard of this step, and nobody else's")
        deal(2, step: 3, to: 0)
        deal(1, step: 3, to: 2)
        _ = try coordinator.poll(until: 0)
        XCTAssertEqual(try target(0), "kept")
        XCTAssertEqual(try target(2), "none")
        XCTAssertEqual(coordinator.stats.reducedSteps, 3)
    }

    /// Whether `run`'s worker `k` is pinged with `step` within 40 messages, the coordinator polled meanwhile.
    static func pinged(_ run: RelayingWorkers, _ k: Int, step: Int) throws -> Bool {
        for _ in 0..<40 {
            guard let frames = try run.workers[k].socket.receiveMultipart(timeoutMs: 2_000) else { return false }
            let envelope = try run.codec.decode(frames)
            if case .ping = envelope.message, envelope.step == step { return true }
            _ = try run.coordinator.poll(until: PhaseClock.now() + 0.05)
        }
        return false
    }

    /// The sum target of the next order `run`'s worker `k` receives (skipping chunks and pings); "none" without one.
    static func target(of run: RelayingWorkers, _ k: Int) throws -> String {
        while let frames = try run.workers[k].socket.receiveMultipart(timeoutMs: 5_000) {
            switch try run.codec.decode(frames).message {
            case .work(_, let target), .workSameWeights(_, _, let target):
                switch target {
                case nil: return "none"
                case .coordinator: return "coordinator"
                case .coordinatorSumsRoot: return "coordinator, root there"
                case .kept: return "kept"
                case .peer(let peer): return peer.endpoint
                }
            default: continue
            }
        }
        return "no order"
    }

    /// With five relaying workers (from four on), the coordinator sums the root itself: over 5 shards, (0..<4) + 4, shard 0's
    /// holder sends the left half and shard 4's the right, both to the coordinator, and shard 2's sum (node 2..<4)
    /// still goes to shard 0's holder. Each half counts once whole and from the holder of its first shard; the root
    /// itself from a worker is refused; once both halves are in, pings carry the next step.
    func testFromFiveWorkersTheCoordinatorSumsTheRootFromItsHalves() throws {
        let shape = try RunShape(config: ModelConfig(vocab: 11, embed: 3, units: 4), seq: 5, rowsPerShard: 2, shardCount: 5)
        let run = try RelayingWorkers(shape: shape, fanout: 2, names: ["a", "b", "c", "d", "e"])
        XCTAssertLessThanOrEqual(Coordinator.workersForRootHere, 5)
        let ids = [Int32](repeating: 1, count: shape.tokenCount)
        for k in 0..<5 {
            let order = WorkOrder(epoch: 0, shards: [WorkShard(index: k, state: nil, rows: ShardRows(rows: 2, seq: 5, inputs: ids, targets: ids))],
                                  weights: FloatBuffer(count: shape.parameterCount))
            XCTAssertTrue(run.coordinator.send(order, step: 1, to: run.workers[k].id))
        }
        _ = try run.coordinator.poll(until: 0)
        XCTAssertEqual(try (0..<5).map { try Self.target(of: run, $0) },
                       ["coordinator, root there", "ipc:///relay/a", "ipc:///relay/a", "ipc:///relay/c", "coordinator, root there"])
        let tree = ReductionTree(shards: 5)
        func send(_ node: ReductionNode, from k: Int) throws {
            let part = SumPart(node: node, chunks: 0..<1, floats: FloatBuffer((0..<shape.parameterCount).map { _ in Float(node.lo + 1) }),
                               shards: (node.shards.map(Double.init), node.shards.map { _ in FloatBuffer(count: shape.stateCount) }))
            try run.workers[k].socket.send(run.codec.encode(.sum(part), step: 1))
        }
        func sums() throws -> [String] {
            var out: [String] = []
            for _ in 0..<20 {
                for case .sum(1, let sum, let holders) in try run.coordinator.poll(until: PhaseClock.now() + 0.01) {
                    XCTAssertEqual(holders, run.workers[sum.node.shards].map(\.id))
                    XCTAssertEqual(sum.gradient.array.first, Float(sum.node.lo + 1))
                    out.append(sum.node.description)
                }
            }
            return out
        }
        try send(tree.root, from: 0)
        try send(ReductionNode(lo: 0, hi: 4), from: 1)
        XCTAssertEqual(try sums(), [], "the root, and a half from a worker not holding its first shard")
        XCTAssertEqual(run.coordinator.stats.sumsRefused, 2)
        try send(ReductionNode(lo: 4, hi: 5), from: 4)
        XCTAssertEqual(try sums(), ["shard 4"])
        try send(ReductionNode(lo: 0, hi: 4), from: 0)
        try send(ReductionNode(lo: 0, hi: 4), from: 0)
        XCTAssertEqual(try sums(), ["shards 0..<4"], "once")
        XCTAssertEqual(run.coordinator.stats.sumsReceived, 2)
        XCTAssertEqual(run.coordinator.stats.sumsRefused, 3)
        XCTAssertTrue(try Self.pinged(run, 3, step: 2), "pings carry step 2 once both halves are in")
    }

    /// The root comes in chunks, each sent as soon as shard 0's holder has summed it: the coordinator puts them
    /// together and counts the root once every chunk is in; a chunk again, or one from a worker not holding shard 0,
    /// is refused.
    func testRootCountsOnceAllItsChunksAreIn() throws {
        let shape = try RunShape(config: ModelConfig(vocab: 11, embed: 3, units: 256), seq: 5, rowsPerShard: 2, shardCount: 3)
        XCTAssertEqual(WireCodec.chunkCount(floats: shape.parameterCount), 2)
        let run = try RelayingWorkers(shape: shape, fanout: 2, names: ["a", "b", "c"])
        let (coordinator, workers, codec) = (run.coordinator, run.workers, run.codec)
        let ids = [Int32](repeating: 1, count: shape.tokenCount)
        for (shard, k) in [(0, 0), (1, 1), (2, 2)] {
            let order = WorkOrder(epoch: 0, shards: [WorkShard(index: shard, state: nil, rows: ShardRows(rows: 2, seq: 5, inputs: ids, targets: ids))],
                                  weights: FloatBuffer(count: shape.parameterCount))
            XCTAssertTrue(coordinator.send(order, step: 1, to: workers[k].id))
        }
        _ = try coordinator.poll(until: 0)
        let root = FloatBuffer((0..<shape.parameterCount).map { Float($0 % 1_000) })
        func chunk(_ k: Int, from w: Int) throws {
            let range = WireCodec.floatRange(k..<(k + 1), parameters: shape.parameterCount)
            let floats = FloatBuffer(Array(root.buffer[range]))
            let shards = k == 0 ? ([1.0, 2, 3], (0..<3).map { _ in FloatBuffer(count: shape.stateCount) }) : nil
            try workers[w].socket.send(codec.encode(.sum(SumPart(node: ReductionTree(shards: 3).root, chunks: k..<(k + 1), floats: floats, shards: shards)), step: 1))
        }
        func sums() throws -> [SubtreeSum] {
            var out: [SubtreeSum] = []
            for _ in 0..<20 {
                for event in try coordinator.poll(until: PhaseClock.now() + 0.01) { if case .sum(1, let sum, _) = event { out.append(sum) } }
            }
            return out
        }
        try chunk(1, from: 0)
        XCTAssertTrue(try sums().isEmpty, "half a root")
        try chunk(1, from: 0)
        try chunk(0, from: 1)
        XCTAssertTrue(try sums().isEmpty)
        XCTAssertEqual(coordinator.stats.sumsRefused, 2, "a chunk again, and one from a worker not holding shard 0")
        try chunk(0, from: 0)
        let got = try sums()
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first?.gradient.array, root.array)
        XCTAssertEqual(got.first?.losses, [1, 2, 3])
        XCTAssertEqual(coordinator.stats.sumsReceived, 1)
    }

    /// Shard 0's holder is gone when the step is dealt: it is reported gone, and the orders after its own still go
    /// out. (Their targets are set before any send: a send that fails drops its worker's relay, which a later
    /// target named, and that stopped the coordinator. When exactly libzmq refuses the send is its business, so
    /// this test may see the worker go by a failed ping instead.)
    func testAHolderGoneBeforeItsOrderDoesNotStopTheCoordinator() throws {
        let run = try RelayingWorkers(shape: shape, fanout: 2, names: ["a", "b", "c"])
        run.workers[0].socket.close()
        usleep(300_000)
        let ids = [Int32](repeating: 1, count: shape.tokenCount)
        for (shard, k) in [(0, 0), (1, 1), (2, 2)] {
            let order = WorkOrder(epoch: 0, shards: [WorkShard(index: shard, state: nil, rows: ShardRows(rows: 2, seq: 5, inputs: ids, targets: ids))],
                                  weights: FloatBuffer(count: shape.parameterCount))
            XCTAssertTrue(run.coordinator.send(order, step: 1, to: run.workers[k].id))
        }
        let left = try run.coordinator.poll(until: 0).compactMap { event -> WorkerID? in
            if case .left(let w, _) = event { return w }
            return nil
        }
        XCTAssertEqual(Set(left), [run.workers[0].id], "its order or a ping could not be sent")
        for k in 1...2 {
            var got = false
            while !got, let frames = try run.workers[k].socket.receiveMultipart(timeoutMs: 5_000) {
                if case .workSameWeights = try run.codec.decode(frames).message { got = true }
                if case .work = try run.codec.decode(frames).message { got = true }
            }
            XCTAssertTrue(got, "worker \(k) got its order")
        }
    }
}
