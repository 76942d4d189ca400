import XCTest
@testable import CharRNN

/// A shard's loss, gradient and final state are a pure function of (weights, rows, initial state), whatever the
/// thread count: the distributed trainer (workers of any thread count) and the in-process trainer rely on it bit
/// for bit.
final class DeterminismTests: XCTestCase {
    // H 72 is not a multiple of the unit block (32), so the last block ends in a partial vector.
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

    func withThreads<T>(_ n: Int, _ body: () throws -> T) rethrows -> T {
        let saved = BLASRuntime.threads
        defer { BLASRuntime.setThreads(saved) }
        BLASRuntime.setThreads(n)
        return try body()
    }

    func testShardIsBitwiseTheSameOnAnyThreadCountAndRunToRun() {
        checkShardIsBitwiseTheSameOnAnyThreadCountAndRunToRun()
    }

    func testTwoLayerLSTMWithDropoutIsBitwiseTheSameOnAnyThreadCount() {
        config = ModelConfig(vocab: 11, embed: 16, units: 72, cell: .lstm, layers: 2)
        dropout = Dropout(rate: 0.25, seed: 3)
        checkShardIsBitwiseTheSameOnAnyThreadCountAndRunToRun()
    }

    private func checkShardIsBitwiseTheSameOnAnyThreadCountAndRunToRun() {
        let weights = Parameters.initialized(config, seed: 5)
        let input = shard(seed: 1)
        func fresh() -> ShardStep {
            let step = ShardStep(config: config, maxRows: rows, seq: seq, dropout: dropout)
            step.load(weights: weights)
            return step
        }
        let one = withThreads(1) { run(fresh(), input) }
        for threads in [2, 3, 8] {
            XCTAssertEqual(withThreads(threads) { run(fresh(), input) }, one, "1 and \(threads) threads differ")
        }
        let two = withThreads(2) { run(fresh(), input) }
        XCTAssertEqual(withThreads(2) { run(fresh(), input) }, two, "two runs on 2 threads differ")

        // The same workspace after another shard, on the other thread count: still the same bits.
        let reused = fresh()
        _ = withThreads(2) { run(reused, shard(seed: 2)) }
        XCTAssertEqual(withThreads(1) { run(reused, input) }, one, "a previous shard changed the result")
        XCTAssert(one.grads.allSatisfy(\.isFinite) && one.grads.contains { $0 != 0 })
    }

    /// Whole training steps (shards, reduction, clipping, Adam) on 1, 2, 3 and 8 threads: the same weights, Adam
    /// moments and states, bit for bit, for both cells, one and two layers, with dropout. The sizes give every
    /// parallel loop several blocks: 5 unit blocks (H 136), 2 column tiles in the [H, 3H] and [H, 4H] products,
    /// 2 row tiles in the [640, V] ones, several Adam, softmax and dropout blocks.
    func testTrainingStepsAreBitwiseTheSameOnAnyThreadCount() throws {
        for cell in [Cell.gru, .lstm] {
            for layers in [1, 2] {
                let config = ModelConfig(vocab: 11, embed: 16, units: 136, cell: cell, layers: layers)
                XCTAssertGreaterThan(GemmTiles(m: 136, n: cell.gates * 136).count, 1)
                let one = try withThreads(1) { try train(config) }
                for threads in [2, 3, 8] {
                    let other = try withThreads(threads) { try train(config) }
                    let label = "\(cell) × \(layers) on \(threads) threads"
                    XCTAssert(one.weights.storage.bitwiseEqual(other.weights.storage), "weights differ: \(label)")
                    XCTAssert(one.adam.m.storage.bitwiseEqual(other.adam.m.storage), "Adam m differs: \(label)")
                    XCTAssert(one.adam.v.storage.bitwiseEqual(other.adam.v.storage), "Adam v differs: \(label)")
                    XCTAssert(one.hidden.bitwiseEqual(other.hidden), "states differ: \(label)")
                }
            }
        }
    }

    /// Three steps of 2 shards of 16 rows × 40 characters with dropout and clipping; returns the final state.
    private func train(_ config: ModelConfig) throws -> TrainingState {
        var options = TrainingOptions()
        (options.batch, options.seq, options.shards, options.seed) = (32, 40, 2, 9)
        options.dropout = 0.2
        options.clipNorm = 0.5
        var rng = RandomSource(seed: 11)
        let ids = (0..<(4 * 32 * 41)).map { _ in Int32(rng.nextIndex(below: config.vocab)) }
        let vocabulary = try Vocabulary(codePoints: (0..<UInt32(config.vocab)).map { 0x61 + $0 })
        let trainer = StepDriver.inProcess(plan: try StepPlan(
            state: TrainingState.fresh(vocabulary: vocabulary, config: config, options: options), ids: ids, stopAfter: 3))
        while !trainer.plan.isFinished { _ = try trainer.advance() }
        return trainer.plan.state
    }
}
