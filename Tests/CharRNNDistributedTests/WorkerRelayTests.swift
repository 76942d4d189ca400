import Foundation
import XCTest
import CharRNN
@testable import CharRNNDistributed

/// A real relaying `Worker` (on a thread) between a test ROUTER playing the coordinator, test PUSH sockets
/// playing its parent in the tree (or an intruder) and a test PULL playing its child; with and without keys.
final class WorkerRelayTests: XCTestCase {
    /// H 256: the weights take 3 chunks.
    private let shape = try! RunShape(config: ModelConfig(vocab: 65, embed: 64, units: 256), seq: 3, rowsPerShard: 2, shardCount: 2)

    /// The sockets around one worker, and what it computes with.
    private final class Harness {
        let dir: URL
        let context: ZMQContext
        let router: ZMQSocket
        let child: ZMQSocket
        let childKeys: CurveKeyPair?
        let codec: WireCodec
        private(set) var peer: [UInt8]
        private(set) var relay: RelayPeer
        let weights: FloatBuffer
        let shard: WorkShard
        private let stop = WorkerStepWeightsTests.Flag()
        private let done = DispatchSemaphore(value: 0)

        /// With `keys`: the worker's and the coordinator's key pairs; the test ROUTER is a CURVE server.
        init(shape: RunShape, keys: (worker: CurveKeyPair, coordinator: CurveKeyPair)?, patience: Double) throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("wr-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            context = try ZMQContext()
            router = try ZMQSocket(context, .router)
            try router.setOption(.linger, 0)
            child = try ZMQSocket(context, .pull)
            try child.setOption(.linger, 0)
            childKeys = keys == nil ? nil : try CurveKeyPair.generate()
            if let keys {
                try router.setOption(.curveServer, 1)
                try router.setOption(.curveSecretKey, Array(keys.coordinator.secretKey.z85.utf8))
                try child.setOption(.curveServer, 1)
                try child.setOption(.curveSecretKey, Array(childKeys!.secretKey.z85.utf8))
            }
            try router.bind("ipc://\(dir.path)/c.sock")
            try child.bind("ipc://\(dir.path)/child.relay")

            var options = WorkerOptions(endpoint: "ipc://\(dir.path)/c.sock", name: "w", blasThreads: 1)
            options.relay = "ipc://\(dir.path)/w.relay"
            options.relayPatience = patience
            options.curve = keys.map { ($0.coordinator.publicKey, $0.worker) }
            let worker = try Worker(options: options, log: { _ in }, shouldStop: { [stop] in stop.isSet })
            nonisolated(unsafe) let running = worker
            Thread.detachNewThread { [done] in
                try? running.run()
                done.signal()
            }
            codec = WireCodec(runID: 0xABC, shape: shape)
            var rng = RandomSource(seed: 9)
            weights = FloatBuffer(count: shape.parameterCount)
            for i in 0..<weights.count { weights[i] = rng.nextUnitFloat() * 0.2 - 0.1 }
            let ids = (0..<shape.tokenCount).map { _ in Int32(rng.nextIndex(below: 65)) }
            shard = WorkShard(index: 1, state: nil, rows: ShardRows(rows: 2, seq: 3, inputs: ids, targets: ids.reversed()))
            peer = []
            relay = RelayPeer(endpoint: "")
            let hello = try receive()
            guard case .hello(let announced) = hello.message, let relay = announced.relay else { throw WireError.malformed("no hello with a relay") }
            (peer, self.relay) = (hello.peer, relay)
            try send(.welcome(shape), step: 0)
        }

        /// The next message from the worker that is not a ping.
        func receive() throws -> (peer: [UInt8], message: WireMessage, step: Int) {
            while true {
                guard let frames = try router.receiveMultipart(timeoutMs: 10_000) else { throw WireError.malformed("the worker said nothing") }
                let envelope = try codec.decode(frames.dropFirst())
                if case .ping = envelope.message { continue }
                return (frames[0].array, envelope.message, envelope.step)
            }
        }

        func send(_ message: WireMessage, step: Int) throws { try router.send([.bytes(peer)] + codec.encode(message, step: step)) }

        /// A PUSH to the worker's relay socket, as a CURVE client with `keys` in a run with keys.
        func pusher(_ keys: CurveKeyPair?) throws -> ZMQSocket {
            let push = try ZMQSocket(context, .push)
            try push.setOption(.linger, 0)
            if let keys, let server = relay.key {
                try push.setOption(.curveServerKey, Array(server.z85.utf8))
                try push.setOption(.curvePublicKey, Array(keys.publicKey.z85.utf8))
                try push.setOption(.curveSecretKey, Array(keys.secretKey.z85.utf8))
            }
            try push.connect(relay.endpoint)
            return push
        }

        /// Indices of the chunks the child got, each checked to be of `step` and to carry `route`.
        func passedOn(expecting count: Int, step: Int, route: RelayRoute) throws -> [Int] {
            var passed: [Int] = []
            while let frames = try child.receiveMultipart(timeoutMs: passed.count < count ? 10_000 : 300) {
                let envelope = try codec.decode(frames)
                guard case .weights(let chunk) = envelope.message else { throw WireError.malformed("\(envelope.message)") }
                XCTAssertEqual(envelope.step, step, "a chunk of another step was passed on")
                XCTAssertEqual(chunk.route, route)
                passed.append(chunk.index)
            }
            return passed
        }

        /// The worker's result must be the one computed with `weights`.
        func assertComputedWithTheWeights(step: Int) throws {
            let answer = try receive()
            guard case .result(let results) = answer.message else { return XCTFail("\(answer.message)") }
            XCTAssertEqual(answer.step, step)
            let reference = ShardStep(config: codec.shape!.config, maxRows: 2, seq: 3).compute(WorkOrder(epoch: 0, shards: [shard], weights: weights), step: step) {
                FloatBuffer(count: self.codec.shape!.parameterCount)
            }
            XCTAssert(results[0].gradient.bitwiseEqual(reference[0].gradient) && results[0].loss == reference[0].loss, "not the weights' result")
        }

        func finish() {
            try? send(.shutdown, step: 0)
            stop.set()
            done.wait()
            try? FileManager.default.removeItem(at: dir)
        }
    }

    /// Chunks arriving out of order and twice are each passed on once, at once, with the route below the child;
    /// the order that came before them is computed with the weights they make up (the bits of an order that
    /// carried them); chunks of a step older than the order's are neither used nor passed on.
    func testChunksArePassedOnOnceAndMakeUpTheStepsWeights() throws {
        // A short patience: the need-weights it sends tells the test that the order is in.
        let h = try Harness(shape: shape, keys: nil, patience: 0.2)
        defer { h.finish() }
        XCTAssertEqual(h.relay, RelayPeer(endpoint: "ipc://\(h.dir.path)/w.relay"))
        try h.send(.workSameWeights(epoch: 0, shards: [h.shard]), step: 3)
        let asked = try h.receive()
        guard case .needWeights = asked.message else { return XCTFail("\(asked.message)") }
        XCTAssertEqual(asked.step, 3)

        let parent = try h.pusher(nil)
        let route = RelayRoute(fanout: 1, endpoints: ["ipc://\(h.dir.path)/child.relay", "ipc://\(h.dir.path)/grandchild.relay"])
        XCTAssertEqual(WireCodec.chunkCount(floats: shape.parameterCount), 3)
        // A chunk of an older step first (the worker knows of step 3 from the order), then step 3's out of order.
        for (index, step) in [(0, 2), (2, 3), (0, 3), (0, 3), (1, 3)] {
            try parent.send(h.codec.encode(.weights(WeightsChunk(index: index, floats: h.weights, route: route)), step: step))
        }
        let passed = try h.passedOn(expecting: 3, step: 3, route: RelayRoute(fanout: 1, endpoints: ["ipc://\(h.dir.path)/grandchild.relay"]))
        XCTAssertEqual(passed.sorted(), [0, 1, 2], "each chunk once")
        try h.assertComputedWithTheWeights(step: 3)
    }

    /// Chunks that are not this step's do not stop the real ones: a far-future step's (anyone's) is neither used
    /// nor passed on; a next step's that came first is displaced by the real step's, which an order waits for;
    /// and a worker that has the step's weights from an order still passes the chunks on to its children.
    func testOtherStepsChunksDoNotStopTheRealOnes() throws {
        let h = try Harness(shape: shape, keys: nil, patience: 0.2)
        defer { h.finish() }
        try h.send(.workSameWeights(epoch: 0, shards: [h.shard]), step: 3)
        guard case .needWeights = try h.receive().message else { return XCTFail("no need-weights") }
        let parent = try h.pusher(nil)
        let route = RelayRoute(fanout: 1, endpoints: ["ipc://\(h.dir.path)/child.relay"])
        let forged = FloatBuffer(count: shape.parameterCount)
        for step in [1_000_000, 4] {
            try parent.send(h.codec.encode(.weights(WeightsChunk(index: 0, floats: forged, route: route)), step: step))
        }
        for index in 0..<3 { try parent.send(h.codec.encode(.weights(WeightsChunk(index: index, floats: h.weights, route: route)), step: 3)) }
        var steps: [Int] = []
        while let frames = try h.child.receiveMultipart(timeoutMs: steps.count < 4 ? 10_000 : 300) { steps.append(try h.codec.decode(frames).step) }
        XCTAssertEqual(steps.sorted(), [3, 3, 3, 4], "the far-future chunk was passed on, or a real one was not")
        try h.assertComputedWithTheWeights(step: 3)

        try h.send(.work(WorkOrder(epoch: 0, shards: [h.shard], weights: h.weights)), step: 5)
        try h.assertComputedWithTheWeights(step: 5)
        for index in 0..<3 { try parent.send(h.codec.encode(.weights(WeightsChunk(index: index, floats: h.weights, route: route)), step: 5)) }
        XCTAssertEqual(try h.passedOn(expecting: 3, step: 5, route: .leaf).sorted(), [0, 1, 2])
    }

    /// With keys, the relay socket is a CURVE server that admits only the keys the coordinator sent: an intruder's
    /// chunks (forged weights, sent first) never arrive, the authorized parent's do, and they are passed on over
    /// CURVE to a child reached with the key in the route.
    func testWithKeysOnlyTheRunsWorkersCanPassWeightsOn() throws {
        guard CurveKey.isAvailable else { throw XCTSkip("libzmq without CURVE") }
        let workerKeys = try CurveKeyPair.generate(), parentKeys = try CurveKeyPair.generate(), intruderKeys = try CurveKeyPair.generate()
        let h = try Harness(shape: shape, keys: (workerKeys, try CurveKeyPair.generate()), patience: 0.2)
        defer { h.finish() }
        XCTAssertEqual(h.relay.key, workerKeys.publicKey)
        try h.send(.relayKeys([workerKeys.publicKey, parentKeys.publicKey]), step: 0)
        try h.send(.workSameWeights(epoch: 0, shards: [h.shard]), step: 3)
        // Its need-weights says the order is in, and so the keys sent before it: the intruder is refused by the
        // allow-list, not by an empty one.
        guard case .needWeights = try h.receive().message else { return XCTFail("no need-weights") }
        let route = RelayRoute(fanout: 1, peers: [RelayPeer(endpoint: "ipc://\(h.dir.path)/child.relay", key: h.childKeys!.publicKey)])

        let intruder = try h.pusher(intruderKeys)
        let forged = FloatBuffer(count: shape.parameterCount)
        for index in 0..<3 { try intruder.send(h.codec.encode(.weights(WeightsChunk(index: index, floats: forged, route: route)), step: 3)) }
        usleep(500_000)
        let parent = try h.pusher(parentKeys)
        for index in 0..<3 { try parent.send(h.codec.encode(.weights(WeightsChunk(index: index, floats: h.weights, route: route)), step: 3)) }
        XCTAssertEqual(try h.passedOn(expecting: 3, step: 3, route: .leaf).sorted(), [0, 1, 2])
        try h.assertComputedWithTheWeights(step: 3)
    }
}
