import Foundation
import XCTest
@testable import CharRNN

/// `ShardStep.run`'s `final` parts: a worker sends them up the reduction tree while the rest of the gradient is
/// computed, so a part told final too early would send a wrong sum, and a float told twice or never would be
/// summed twice or never.
final class ShardStepTests: XCTestCase {
    // H 600: the recurrent kernel's gradient has two bands of tile rows (512 and 88), so it comes in two parts.
    let (rows, seq) = (4, 6)

    func testPartsToldFinalAreFinalAndCoverTheGradientOnce() {
        for config in [ModelConfig(vocab: 13, embed: 8, units: 600, layers: 2), ModelConfig(vocab: 13, embed: 8, units: 600, cell: .lstm)] {
            for threads in [1, 3] {
                check(config, threads: threads)
            }
        }
    }

    /// A worker checks `floatCount` against its memory limit before it builds a workspace, so it must count every
    /// buffer the workspace allocates.
    func testFloatCountIsWhatTheWorkspaceAllocates() {
        let configs = [
            ModelConfig(vocab: 13, embed: 8, units: 72), ModelConfig(vocab: 13, embed: 8, units: 40, cell: .lstm, layers: 2),
        ]
        for config in configs {
            for dropout in [nil, Dropout(rate: 0.25, seed: 3)] {
                let step = ShardStep(config: config, maxRows: rows, seq: seq, dropout: dropout)
                XCTAssertEqual(
                    step.allocatedFloats, ShardStep.floatCount(config: config, maxRows: rows, seq: seq, dropout: dropout != nil),
                    "\(config), dropout \(dropout != nil)")
            }
        }
    }

    private func check(_ config: ModelConfig, threads: Int) {
        let saved = BLASRuntime.threads
        defer { BLASRuntime.setThreads(saved) }
        BLASRuntime.setThreads(threads)
        var rng = RandomSource(seed: 7)
        let n = rows * seq
        let shard = ShardRows(
            rows: rows, seq: seq, inputs: (0..<n).map { _ in Int32(rng.nextIndex(below: config.vocab)) },
            targets: (0..<n).map { _ in Int32(rng.nextIndex(below: config.vocab)) })
        let h0 = (0..<config.stateCount(rows: rows)).map { _ in 2 * rng.nextUnitFloat() - 1 }
        let step = ShardStep(config: config, maxRows: rows, seq: seq, dropout: nil)
        step.load(weights: Parameters.initialized(config, seed: 3))

        // Parts come on whichever thread finished them: copied at once, under a lock.
        let lock = NSLock()
        var parts: [(range: Range<Int>, values: [Float], loss: Double)] = []
        let grads = Parameters(config)
        grads.storage.base.update(repeating: .nan, count: grads.storage.count)
        var state = h0
        let loss = state.withUnsafeMutableBufferPointer { s in
            step.run(shard, state: s.baseAddress!, grads: grads) { range, loss in
                let values = Array(UnsafeBufferPointer(start: grads.storage.base + range.lowerBound, count: range.count))
                lock.withLock { parts.append((range, values, loss)) }
            }
        }
        let what = "\(config.cell) \(config.layers) layers, \(threads) threads"

        var told = [Int](repeating: 0, count: grads.storage.count)
        for part in parts {
            XCTAssertEqual(part.values, Array(grads.storage.buffer[part.range]), "\(what): \(part.range) changed after it was told final")
            XCTAssertEqual(part.loss, loss, what)
            for i in part.range { told[i] += 1 }
        }
        XCTAssertEqual(told.firstIndex { $0 != 1 }, nil, "\(what): every float is told final exactly once")
        XCTAssertEqual(parts.first?.range, grads.layout.range(.denseKernel), "\(what): the dense layer's gradient comes first")
        let u = grads.layout.range(.recurrentKernel(0))
        XCTAssertEqual(parts.filter { u.contains($0.range.lowerBound) }.count, 2, "\(what): the recurrent kernel in two bands")
        XCTAssertEqual(
            parts.lastIndex { u.contains($0.range.lowerBound) }, parts.count - 1, "\(what): layer 0's recurrent kernel comes last")

        // Telling the parts changes nothing in the result.
        let plain = Parameters(config)
        var plainState = h0
        let plainLoss = plainState.withUnsafeMutableBufferPointer { step.run(shard, state: $0.baseAddress!, grads: plain) }
        XCTAssertEqual(plainLoss, loss, what)
        XCTAssertTrue(plain.storage.bitwiseEqual(grads.storage), what)
        XCTAssertEqual(plainState, state, what)
    }
}
