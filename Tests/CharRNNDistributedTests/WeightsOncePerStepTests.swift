import Foundation
import XCTest
import CharRNN
@testable import CharRNNDistributed

/// The coordinator sends a step's weights to a worker with its first order of the step only, and again after
/// the worker says hello (it may have lost them) or asks for them (need-weights), once per step.
final class CoordinatorWeightsTests: XCTestCase {
    private let shape = try! RunShape(config: ModelConfig(vocab: 11, embed: 3, units: 4), seq: 5, rowsPerShard: 2, shardCount: 3)

    func testWeightsGoToAWorkerOncePerStep() throws {
        let dir = try scratchDirectory("cw")
        let endpoint = "ipc://\(dir.path)/c.sock"
        let coordinator = try Coordinator(shape: shape, options: CoordinatorOptions(endpoint: endpoint), log: { _ in })
        let context = try ZMQContext()
        let dealer = try ZMQSocket(context, .dealer)
        try dealer.setOption(.linger, 0)
        try dealer.connect(endpoint)
        var codec = WireCodec()

        func hello() throws -> WorkerID {
            try dealer.send(codec.encode(.hello(WorkerHello(name: "w", blasThreads: 1)), step: 0))
            for _ in 0..<200 {
                for case .joined(let id, _) in try coordinator.poll(until: PhaseClock.now() + 0.05) { return id }
            }
            throw XCTSkip("the coordinator never saw the hello")
        }
        /// The next work or weights message: (step, whether it carries weights; for a chunk, its index and route).
        func nextWork(timeoutMs: Int = 10_000) throws -> (step: Int, weights: Bool, chunk: (index: Int, route: RelayRoute)?)? {
            while true {
                guard let frames = try dealer.receiveMultipart(timeoutMs: timeoutMs) else { return nil }
                let envelope = try codec.decode(frames)
                switch envelope.message {
                case .welcome(let shape): codec = WireCodec(runID: envelope.runID, shape: shape)
                case .work: return (envelope.step, true, nil)
                case .workSameWeights: return (envelope.step, false, nil)
                case .weights(let chunk): return (envelope.step, true, (chunk.index, chunk.route))
                default: continue
                }
            }
        }

        let worker = try hello()
        let ids = [Int32](repeating: 1, count: shape.tokenCount)
        let weights = FloatBuffer(count: shape.parameterCount)
        func order(_ s: Int) -> WorkOrder {
            WorkOrder(epoch: 0, shards: [WorkShard(index: s, state: nil, rows: ShardRows(rows: 2, seq: 5, inputs: ids, targets: ids))], weights: weights)
        }
        // Orders leave when the driver next polls.
        for (shard, step) in [(0, 4), (1, 4), (2, 4)] { XCTAssertTrue(coordinator.send(order(shard), step: step, to: worker)) }
        _ = try coordinator.poll(until: 0)
        for (shard, step) in [(0, 5), (1, 5)] { XCTAssertTrue(coordinator.send(order(shard), step: step, to: worker)) }
        _ = try coordinator.poll(until: 0)
        var got = try (0..<5).map { _ in try XCTUnwrap(try nextWork()) }
        XCTAssertEqual(got.map(\.step), [4, 4, 4, 5, 5])
        XCTAssertEqual(got.map(\.weights), [true, false, false, true, false])

        XCTAssertEqual(try hello(), worker)
        XCTAssertTrue(coordinator.send(order(2), step: 5, to: worker))
        _ = try coordinator.poll(until: 0)
        got = [try XCTUnwrap(try nextWork())]
        XCTAssertEqual(got.map(\.weights), [true], "after a hello the weights go again")

        // A worker that lacks the step's weights asks, and gets them in chunks with nobody to pass them to; asking
        // about another step than the one being dealt is ignored, and asking twice for one step is a strike.
        func ask(step: Int) throws -> [(step: Int, weights: Bool, chunk: (index: Int, route: RelayRoute)?)] {
            try dealer.send(codec.encode(.needWeights, step: step))
            var out: [(step: Int, weights: Bool, chunk: (index: Int, route: RelayRoute)?)] = []
            for _ in 0..<20 { _ = try coordinator.poll(until: PhaseClock.now() + 0.02) }
            while let next = try nextWork(timeoutMs: 200) { out.append(next) }
            return out
        }
        XCTAssertTrue(try ask(step: 4).isEmpty, "weights of a past step")
        let chunks = try ask(step: 5)
        XCTAssertEqual(chunks.map(\.step), [5], "the parameters fit one chunk")
        XCTAssertEqual(chunks.first?.chunk?.index, 0)
        XCTAssertEqual(chunks.first?.chunk?.route, .leaf)
        XCTAssertTrue(try ask(step: 5).isEmpty, "asked twice (a strike)")
        XCTAssertEqual(coordinator.stats.weightsResent, 1)
    }
}

/// The coordinator's relay tree: three relaying workers (test DEALERs) in a chain; when the second asks for the
/// weights while the first, its parent, did not, the link between them failed and both sit out the next trees.
final class CoordinatorRelayTreeTests: XCTestCase {
    private let shape = try! RunShape(config: ModelConfig(vocab: 11, embed: 3, units: 4), seq: 5, rowsPerShard: 2, shardCount: 3)

    func testBothEndsOfAFailedLinkLeaveTheTree() throws {
        try chain(forgetHead: false)
    }

    /// When the parent is gone (here declared lost), its child's asking is no fault of a link: the child stays.
    func testChildrenOfALostRelayStayInTheTree() throws {
        try chain(forgetHead: true)
    }

    /// Workers a → b → c (fan-out 1); after step 1's orders b asks for the weights (a too is forgotten with
    /// `forgetHead`); then step 2 is dealt.
    private func chain(forgetHead: Bool) throws {
        let run = try RelayingWorkers(shape: shape, fanout: 1, names: ["a", "b", "c"])
        let (coordinator, workers, codec) = (run.coordinator, run.workers, run.codec)
        /// What each worker got: a weights chunk's route, "order+weights" or "order".
        func received() throws -> [[String]] {
            try workers.map { w in
                var got: [String] = []
                while let frames = try w.socket.receiveMultipart(timeoutMs: 300) {
                    let envelope = try codec.decode(frames)
                    switch envelope.message {
                    case .weights(let chunk): got.append("chunk for \(chunk.route.endpoints)")
                    case .work: got.append("order+weights")
                    case .workSameWeights: got.append("order")
                    default: break
                    }
                }
                return got
            }
        }
        func deal(_ step: Int) throws -> [[String]] {
            let ids = [Int32](repeating: 1, count: shape.tokenCount)
            let weights = FloatBuffer(count: shape.parameterCount)
            for (k, w) in workers.enumerated() {
                let order = WorkOrder(epoch: 0, shards: [WorkShard(index: k, state: nil, rows: ShardRows(rows: 2, seq: 5, inputs: ids, targets: ids))], weights: weights)
                XCTAssertTrue(coordinator.send(order, step: step, to: w.id))
            }
            _ = try coordinator.poll(until: 0)
            return try received()
        }
        XCTAssertEqual(try deal(1), [["chunk for [\"ipc:///relay/b\", \"ipc:///relay/c\"]", "order"], ["order"], ["order"]])
        if forgetHead { coordinator.forget(workers[0].id) }
        try workers[1].socket.send(codec.encode(.needWeights, step: 1))
        for _ in 0..<20 { _ = try coordinator.poll(until: PhaseClock.now() + 0.01) }
        XCTAssertEqual(coordinator.stats.weightsResent, 1)
        XCTAssertEqual(try received(), [[], ["chunk for []"], []], "the weights again, to b alone")
        if forgetHead {
            XCTAssertEqual(try deal(2), [["order+weights"], ["chunk for [\"ipc:///relay/c\"]", "order"], ["order"]])
        } else {
            XCTAssertEqual(try deal(2), [["order+weights"], ["order+weights"], ["chunk for []", "order"]])
            // Benched, not banished: from step 2 + benchSteps on, the link gets another chance.
            XCTAssertEqual(try deal(1 + Coordinator.benchSteps), [["order+weights"], ["order+weights"], ["chunk for []", "order"]])
            XCTAssertEqual(try deal(2 + Coordinator.benchSteps), [["chunk for [\"ipc:///relay/b\", \"ipc:///relay/c\"]", "order"], ["order"], ["order"]])
        }
    }
}

/// A real `Worker` (on a thread) against a test ROUTER playing the coordinator.
final class WorkerStepWeightsTests: XCTestCase {
    private let shape = try! RunShape(config: ModelConfig(vocab: 11, embed: 3, units: 4), seq: 5, rowsPerShard: 2, shardCount: 3)

    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        var isSet: Bool { lock.withLock { value } }
        func set() { lock.withLock { value = true } }
    }

    /// An order without weights of a step the worker has no weights for waits, and the worker (which does not
    /// relay) asks for them at once; once they came (here as a chunk), it is computed, and so are the step's
    /// later orders without weights, in arrival order, with those weights: the same bits as orders that carry them.
    func testOrdersWithoutWeightsWaitForTheStepsWeights() throws {
        let dir = try scratchDirectory("ww")
        let endpoint = "ipc://\(dir.path)/c.sock"
        let context = try ZMQContext()
        let router = try ZMQSocket(context, .router)
        try router.setOption(.linger, 0)
        try router.bind(endpoint)
        let stop = Flag(), done = DispatchSemaphore(value: 0)
        let worker = try Worker(options: WorkerOptions(endpoint: endpoint, name: "w", blasThreads: 1), log: { _ in }, shouldStop: { stop.isSet })
        nonisolated(unsafe) let running = worker
        Thread.detachNewThread {
            try? running.run()
            done.signal()
        }
        defer {
            stop.set()
            done.wait()
        }
        let codec = WireCodec(runID: 0xABC, shape: shape)
        func receive() throws -> (peer: [UInt8], message: WireMessage, step: Int) {
            while true {
                let frames = try XCTUnwrap(try router.receiveMultipart(timeoutMs: 10_000), "the worker said nothing")
                let envelope = try codec.decode(frames.dropFirst())
                if case .ping = envelope.message { continue }
                return (frames[0].array, envelope.message, envelope.step)
            }
        }
        let hello = try receive()
        guard case .hello = hello.message else { return XCTFail("\(hello.message)") }
        func send(_ message: WireMessage, step: Int) throws { try router.send([.bytes(hello.peer)] + codec.encode(message, step: step)) }
        try send(.welcome(shape), step: 0)

        var rng = RandomSource(seed: 5)
        let weights = FloatBuffer(count: shape.parameterCount)
        for i in 0..<weights.count { weights[i] = rng.nextUnitFloat() * 0.2 - 0.1 }
        let shards = (0..<3).map { s in
            let ids = (0..<shape.tokenCount).map { _ in Int32(rng.nextIndex(below: 11)) }
            return WorkShard(index: s, state: nil, rows: ShardRows(rows: 2, seq: 5, inputs: ids, targets: ids.reversed()))
        }
        try send(.workSameWeights(epoch: 0, shards: [shards[0]]), step: 3)
        let request = try receive()
        guard case .needWeights = request.message else { return XCTFail("\(request.message)") }
        XCTAssertEqual(request.step, 3)

        try send(.weights(WeightsChunk(index: 0, floats: weights, route: .leaf)), step: 3)
        try send(.workSameWeights(epoch: 0, shards: [shards[1]]), step: 3)
        try send(.workSameWeights(epoch: 0, shards: [shards[2]]), step: 3)
        var got: [ShardResult] = []
        while got.count < 3 {
            let answer = try receive()
            guard case .result(let results) = answer.message else { return XCTFail("\(answer.message)") }
            XCTAssertEqual(answer.step, 3)
            got += results
        }
        XCTAssertEqual(got.map(\.index), [0, 1, 2], "in arrival order")
        let reference = ShardStep(config: shape.config, maxRows: 2, seq: 5).compute(WorkOrder(epoch: 0, shards: shards, weights: weights), step: 3) {
            FloatBuffer(count: self.shape.parameterCount)
        }
        for (a, b) in zip(got, reference) {
            XCTAssert(a.gradient.bitwiseEqual(b.gradient) && a.state.bitwiseEqual(b.state) && a.loss == b.loss, "shard \(a.index)")
        }
        try send(.shutdown, step: 0)
    }
}
