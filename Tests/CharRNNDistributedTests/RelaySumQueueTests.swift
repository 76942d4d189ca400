import Foundation
import XCTest
import CharRNN
@testable import CharRNNDistributed

/// A relay's socket to a peer queues every sum a step can owe that peer. A worker that pulls many shards can owe one
/// peer a sum per shard, sent in a burst as its results come; those that did not fit the queue were dropped, the
/// node above never completed, and the step fell back to results one by one (seen on emulated hosts at 1 Gbit/s,
/// 4 workers pulling 16 shards: 1 root in 6 steps; and here, 34 of 36 chunks queued).
final class RelaySumQueueTests: XCTestCase {
    /// H 256: a gradient takes 3 chunks; 12 shards.
    private let shape = try! RunShape(config: ModelConfig(vocab: 65, embed: 64, units: 256), seq: 3, rowsPerShard: 2, shardCount: 12)

    func testEverySumOfAStepToOnePeerIsQueuedWhileItDoesNotRead() throws {
        let dir = try scratchDirectory("rq")
        let context = try ZMQContext()
        // The peer reads nothing, and lets one message wait on its side.
        let peer = try ZMQSocket(context, .pull)
        try peer.setOption(.linger, 0)
        try peer.setOption(.receiveHighWaterMark, 1)
        try peer.bind("ipc://\(dir.path)/peer")
        defer { peer.close() }
        let relay = try Relay(endpoint: "ipc://\(dir.path)/me", keys: nil, context: context, stopMidBroadcastAt: nil, log: { _ in })
        defer { relay.stop() }
        let codec = WireCodec(runID: 1, shape: shape)
        let chunks = WireCodec.chunkCount(floats: shape.parameterCount)
        XCTAssertEqual(chunks, 3)
        var queued = 0
        // One sum of each shard's node, chunk by chunk: more than a worker ever owes one peer in a step.
        for s in 0..<shape.shardCount {
            for k in 0..<chunks {
                let floats = FloatBuffer(count: WireCodec.floatRange(k..<(k + 1), parameters: shape.parameterCount).count)
                let part = SumPart(node: ReductionNode(lo: s, hi: s + 1), chunks: k..<(k + 1), floats: floats,
                                   shards: k == 0 ? ([1], [FloatBuffer(count: shape.stateCount)]) : nil)
                guard relay.send(.sum(part), step: 1, to: RelayPeer(endpoint: "ipc://\(dir.path)/peer"), codec) else { break }
                queued += 1
            }
        }
        XCTAssertEqual(queued, shape.shardCount * chunks, "sum chunks queued before one was refused")
    }
}
