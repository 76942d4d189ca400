import Foundation
import XCTest
import CharRNN
@testable import CharRNNDistributed

/// A real relaying `Worker` (on a thread) between a test ROUTER playing the coordinator, a test PUSH playing
/// its parent in the tree and a test PULL playing its child.
final class WorkerRelayTests: XCTestCase {
    /// H 256: the weights take 3 chunks.
    private let shape = try! RunShape(config: ModelConfig(vocab: 65, embed: 64, units: 256), seq: 3, rowsPerShard: 2, shardCount: 2)

    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        var isSet: Bool { lock.withLock { value } }
        func set() { lock.withLock { value = true } }
    }

    /// Chunks arriving out of order and twice are each passed on once, at once, with the route below the child;
    /// the order that came before them is computed with the weights they make up (the bits of an order that
    /// carried them); chunks of a step older than the order's are neither used nor passed on.
    func testChunksArePassedOnOnceAndMakeUpTheStepsWeights() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wr-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let context = try ZMQContext()
        let router = try ZMQSocket(context, .router)
        try router.setOption(.linger, 0)
        try router.bind("ipc://\(dir.path)/c.sock")
        let child = try ZMQSocket(context, .pull)
        try child.setOption(.linger, 0)
        try child.bind("ipc://\(dir.path)/child.relay")

        var options = WorkerOptions(endpoint: "ipc://\(dir.path)/c.sock", name: "w", blasThreads: 1)
        options.relay = "ipc://\(dir.path)/w.relay"
        // Short, so that the need-weights it sends tells the test that the order is in.
        options.relayPatience = 0.2
        let stop = Flag(), done = DispatchSemaphore(value: 0)
        let worker = try Worker(options: options, log: { _ in }, shouldStop: { stop.isSet })
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
        guard case .hello(let announced) = hello.message else { return XCTFail("\(hello.message)") }
        XCTAssertEqual(announced.relay, "ipc://\(dir.path)/w.relay")
        try router.send([.bytes(hello.peer)] + codec.encode(.welcome(shape), step: 0))

        var rng = RandomSource(seed: 9)
        let weights = FloatBuffer(count: shape.parameterCount)
        for i in 0..<weights.count { weights[i] = rng.nextUnitFloat() * 0.2 - 0.1 }
        let ids = (0..<shape.tokenCount).map { _ in Int32(rng.nextIndex(below: 65)) }
        let shard = WorkShard(index: 1, state: nil, rows: ShardRows(rows: 2, seq: 3, inputs: ids, targets: ids.reversed()))
        try router.send([.bytes(hello.peer)] + codec.encode(.workSameWeights(epoch: 0, shards: [shard]), step: 3))
        let asked = try receive()
        guard case .needWeights = asked.message else { return XCTFail("\(asked.message)") }
        XCTAssertEqual(asked.step, 3)

        let parent = try ZMQSocket(context, .push)
        try parent.setOption(.linger, 0)
        try parent.connect(announced.relay!)
        let route = RelayRoute(fanout: 1, endpoints: ["ipc://\(dir.path)/child.relay", "ipc://\(dir.path)/grandchild.relay"])
        let k = WireCodec.chunkCount(floats: shape.parameterCount)
        XCTAssertEqual(k, 3)
        // A chunk of an older step first (the worker knows of step 3 from the order), then step 3's out of order.
        for (index, step) in [(0, 2), (2, 3), (0, 3), (0, 3), (1, 3)] {
            try parent.send(codec.encode(.weights(WeightsChunk(index: index, floats: weights, route: route)), step: step))
        }
        var passed: [Int] = []
        while let frames = try child.receiveMultipart(timeoutMs: passed.count < 3 ? 10_000 : 300) {
            let envelope = try codec.decode(frames)
            guard case .weights(let chunk) = envelope.message else { return XCTFail("\(envelope.message)") }
            XCTAssertEqual(envelope.step, 3, "a chunk of an older step was passed on")
            XCTAssertEqual(chunk.route, RelayRoute(fanout: 1, endpoints: ["ipc://\(dir.path)/grandchild.relay"]))
            passed.append(chunk.index)
        }
        XCTAssertEqual(passed.sorted(), [0, 1, 2], "each chunk once")

        let answer = try receive()
        guard case .result(let results) = answer.message else { return XCTFail("\(answer.message)") }
        XCTAssertEqual(answer.step, 3)
        let reference = ShardStep(config: shape.config, maxRows: 2, seq: 3).compute(WorkOrder(epoch: 0, shards: [shard], weights: weights), step: 3) {
            FloatBuffer(count: self.shape.parameterCount)
        }
        XCTAssert(results[0].gradient.bitwiseEqual(reference[0].gradient) && results[0].loss == reference[0].loss)
        try router.send([.bytes(hello.peer)] + codec.encode(.shutdown, step: 0))
    }
}
