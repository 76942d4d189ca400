import XCTest
@testable import CharRNN

/// A shard's loss, gradient and final state are a pure function of (weights, rows, initial state): the
/// distributed trainer (1 thread per worker) and the in-process trainer (2 threads) rely on it bit for bit.
final class DeterminismTests: XCTestCase {
    // H 72 is not a multiple of the chunk size, so a chunk ends in a partial vector.
    var config = ModelConfig(vocab: 11, embed: 16, units: 72)
    var dropout: Dropout?
    let (rows, seq) = (8, 20)

    struct Result: Equatable {
        var loss: Double
        var grads: [Float]
        var state: [Float]
    }

    func shard(seed: UInt64) -> (ShardRows, [Float]) {
        var rng = RandomSource(seed: seed)
        let n = rows * seq
        let shard = ShardRows(
            rows: rows, seq: seq,
            inputs: (0..<n).map { _ in Int32(rng.nextIndex(below: config.vocab)) },
            targets: (0..<n).map { _ in Int32(rng.nextIndex(below: config.vocab)) })
        return (shard, (0..<config.stateCount(rows: rows)).map { _ in 2 * rng.nextUnitFloat() - 1 })
    }

    func run(_ step: ShardStep, _ input: (ShardRows, [Float])) -> Result {
        let grads = Parameters(config)
        var state = input.1
        let position = ShardPosition(step: 4, firstRow: 8)
        let loss = state.withUnsafeMutableBufferPointer { step.run(input.0, state: $0.baseAddress!, grads: grads, position: position) }
        return Result(loss: loss, grads: grads.storage.array, state: state)
    }

    func withThreads<T>(_ n: Int, _ body: () -> T) -> T {
        let saved = BLASRuntime.threads
        defer { BLASRuntime.setThreads(saved) }
        BLASRuntime.setThreads(n)
        return body()
    }

    func testShardIsBitwiseTheSameOnOneAndTwoThreadsAndRunToRun() {
        checkShardIsBitwiseTheSameOnOneAndTwoThreadsAndRunToRun()
    }

    func testTwoLayerLSTMWithDropoutIsBitwiseTheSameOnOneAndTwoThreads() {
        config = ModelConfig(vocab: 11, embed: 16, units: 72, cell: .lstm, layers: 2)
        dropout = Dropout(rate: 0.25, seed: 3)
        checkShardIsBitwiseTheSameOnOneAndTwoThreadsAndRunToRun()
    }

    private func checkShardIsBitwiseTheSameOnOneAndTwoThreadsAndRunToRun() {
        let weights = Parameters.initialized(config, seed: 5)
        let input = shard(seed: 1)
        func fresh() -> ShardStep {
            let step = ShardStep(config: config, maxRows: rows, seq: seq, dropout: dropout)
            step.load(weights: weights)
            return step
        }
        let one = withThreads(1) { run(fresh(), input) }
        let two = withThreads(2) { run(fresh(), input) }
        XCTAssertEqual(one, two, "1 and 2 threads differ")
        XCTAssertEqual(withThreads(2) { run(fresh(), input) }, two, "two runs on 2 threads differ")

        // The same workspace after another shard, on the other thread count: still the same bits.
        let reused = fresh()
        _ = withThreads(2) { run(reused, shard(seed: 2)) }
        XCTAssertEqual(withThreads(1) { run(reused, input) }, one, "a previous shard changed the result")
        XCTAssert(one.grads.allSatisfy(\.isFinite) && one.grads.contains { $0 != 0 })
    }
}
