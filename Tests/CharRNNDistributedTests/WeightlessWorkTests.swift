import Foundation
import XCTest
import CharRNN
@testable import CharRNNDistributed

/// Work orders after a worker's first of a step go without the weights (weight count 0, no weight frames).
final class WeightlessWorkTests: XCTestCase {
    private let config = ModelConfig(vocab: 11, embed: 3, units: 4)
    private lazy var shape = try! RunShape(config: config, seq: 5, rowsPerShard: 2, shardCount: 3)
    private lazy var codec = WireCodec(runID: 77, shape: shape)

    private func shards() -> [WorkShard] {
        let n = shape.rowsPerShard * shape.seq
        let ids = (0..<n).map { Int32($0 % config.vocab) }
        let state = FloatBuffer(count: shape.stateCount)
        for i in 0..<state.count { state[i] = Float(i) / 7 }
        return [WorkShard(index: 1, state: state, rows: ShardRows(rows: shape.rowsPerShard, seq: shape.seq, inputs: ids, targets: ids.reversed()))]
    }

    private func bytes(_ frames: [ZMQFrame]) -> [[UInt8]] {
        frames.map { frame in
            switch frame {
            case .bytes(let b): return b
            case .zeroCopy(let b, _): return Array(b)
            }
        }
    }

    func testRoundTripInOneFrame() throws {
        let sent = shards()
        let frames = bytes(try codec.encode(.workSameWeights(epoch: 4, shards: sent), step: 9))
        XCTAssertEqual(frames.count, 1, "no weight frames")
        let full = bytes(try codec.encode(.work(WorkOrder(epoch: 4, shards: sent, weights: FloatBuffer(count: shape.parameterCount))), step: 9))
        XCTAssertEqual(full.count, 1 + WireCodec.chunkCount(floats: shape.parameterCount))
        XCTAssertEqual(frames[0].count + 4 * shape.parameterCount, full.reduce(0) { $0 + $1.count }, "the same body, without the weights")
        let envelope = try codec.decode(frames.map(ZMQMessage.init(copying:)))
        XCTAssertEqual(envelope.step, 9)
        guard case .workSameWeights(let epoch, let back, _) = envelope.message else { return XCTFail("\(envelope.message)") }
        XCTAssertEqual(epoch, 4)
        XCTAssertEqual(back.map(\.index), [1])
        XCTAssert(back[0].state!.bitwiseEqual(sent[0].state!))
        XCTAssertEqual(back[0].rows.inputs, sent[0].rows.inputs)
        XCTAssertEqual(back[0].rows.targets, sent[0].rows.targets)
    }

    /// Weight frames after a weight count of 0 are refused, checksum and length notwithstanding.
    func testWeightFramesWithoutAWeightCountAreRefused() throws {
        var frames = bytes(try codec.encode(.workSameWeights(epoch: 4, shards: shards()), step: 9))
        let extra = [UInt8](repeating: 0, count: 4 * shape.parameterCount)
        frames.append(extra)
        withUnsafeBytes(of: UInt64(frames[0].count - WireCodec.headerSize + extra.count).littleEndian) {
            frames[0].replaceSubrange(24..<32, with: $0)
        }
        var sum = WireChecksum()
        frames[0].withUnsafeBytes { f in
            sum.add(UnsafeRawBufferPointer(rebasing: f[..<32]))
            sum.add(UnsafeRawBufferPointer(rebasing: f[WireCodec.headerSize...]))
        }
        extra.withUnsafeBytes { sum.add($0) }
        withUnsafeBytes(of: sum.value.littleEndian) { frames[0].replaceSubrange(32..<40, with: $0) }
        XCTAssertThrowsError(try codec.decode(frames.map(ZMQMessage.init(copying:)))) { error in
            XCTAssertEqual(error as? WireError, .malformed("a work order without weights has 1 weight frames"))
        }
    }
}
