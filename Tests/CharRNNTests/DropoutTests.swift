import XCTest
@testable import CharRNN

/// Dropout's masks: their statistics, what they depend on, and that only training sees them.
final class DropoutTests: XCTestCase {
    let dropout = Dropout(rate: 0.3, seed: 42)

    func mask(step: Int = 1, firstRow: Int = 0, layer: Int = 0, rows: Int, steps: Int = 6, units: Int = 10) -> [Float] {
        var m = [Float](repeating: .nan, count: rows * steps * units)
        m.withUnsafeMutableBufferPointer {
            dropout.mask($0.baseAddress!, step: step, firstRow: firstRow, layer: layer, rows: rows, steps: steps, units: units)
        }
        return m
    }

    func testMaskDropsAboutTheRateAndScalesTheRest() {
        let m = mask(rows: 50, steps: 40, units: 50)
        let dropped = Double(m.filter { $0 == 0 }.count) / Double(m.count)
        XCTAssertEqual(dropped, 0.3, accuracy: 0.01)
        XCTAssertTrue(m.allSatisfy { $0 == 0 || $0 == 1 / (1 - 0.3 as Float) })
    }

    /// A batch row's mask is the same whether its shard starts at row 0 or is cut in two: what a worker draws
    /// does not depend on how many shards it holds or which worker it is. Step and layer give other masks.
    func testMaskDependsOnTheGlobalRowNotOnTheShardLayout() {
        let (t, h) = (6, 10)
        let whole = mask(rows: 4, steps: t, units: h)
        let halves = [mask(firstRow: 0, rows: 2, steps: t, units: h), mask(firstRow: 2, rows: 2, steps: t, units: h)]
        for row in 0..<4 {
            for s in 0..<t {
                let inWhole = whole[(s * 4 + row) * h..<(s * 4 + row + 1) * h]
                let r = row % 2
                let inHalf = halves[row / 2][(s * 2 + r) * h..<(s * 2 + r + 1) * h]
                XCTAssertEqual(Array(inWhole), Array(inHalf), "row \(row), step \(s)")
            }
        }
        XCTAssertNotEqual(mask(step: 2, rows: 4), mask(step: 1, rows: 4))
        XCTAssertNotEqual(mask(layer: 1, rows: 4), mask(layer: 0, rows: 4))
        XCTAssertNotEqual(Dropout(rate: 0.3, seed: 43).maskArray(rows: 4), dropout.maskArray(rows: 4))
    }

    /// A shard of more than 16 rows draws its masks on both threads; every row still comes from its own stream.
    func testMaskIsTheSameOnOneAndTwoThreads() {
        let saved = BLASRuntime.threads
        defer { BLASRuntime.setThreads(saved) }
        BLASRuntime.setThreads(1)
        let one = mask(firstRow: 5, rows: 40)
        BLASRuntime.setThreads(2)
        XCTAssertEqual(mask(firstRow: 5, rows: 40), one)
        XCTAssertEqual(Array(mask(firstRow: 5, rows: 40)[(39 * 10)..<(40 * 10)]), Array(mask(firstRow: 44, rows: 1)[0..<10]),
                       "row 39 of a shard starting at row 5 is global row 44")
    }

    /// `--dropout 0` is the same run as no dropout: the options store none, and resume compares them equal.
    func testRateZeroIsNoDropout() {
        var options = TrainingOptions()
        options.dropout = 0
        XCTAssertNil(options.dropout)
        XCTAssertEqual(options, TrainingOptions())
        XCTAssertEqual(ShardPosition(step: 3, shard: 2, rowsPerShard: 8), ShardPosition(step: 3, firstRow: 16))
    }

    /// Training (a shard position given) drops units; evaluation (none) is exactly the model without dropout.
    func testOnlyTrainingSeesDropout() {
        let config = ModelConfig(vocab: 7, embed: 4, units: 16, cell: .lstm, layers: 2)
        let weights = Parameters.initialized(config, seed: 2)
        var rng = RandomSource(seed: 9)
        let shard = ShardRows(
            rows: 3, seq: 8, inputs: (0..<24).map { _ in Int32(rng.nextIndex(below: 7)) },
            targets: (0..<24).map { _ in Int32(rng.nextIndex(below: 7)) })
        func loss(_ d: Dropout?, _ position: ShardPosition?) -> Double {
            let step = ShardStep(config: config, maxRows: 3, seq: 8, dropout: d)
            step.load(weights: weights)
            let state = FloatBuffer(count: config.stateCount(rows: 3))
            return step.loss(shard, state: state.base, position: position)
        }
        let plain = loss(nil, nil)
        XCTAssertEqual(loss(dropout, nil), plain)
        XCTAssertEqual(loss(nil, ShardPosition(step: 0, firstRow: 0)), plain)
        XCTAssertNotEqual(loss(dropout, ShardPosition(step: 0, firstRow: 0)), plain)
        XCTAssertEqual(loss(dropout, ShardPosition(step: 0, firstRow: 0)), loss(dropout, ShardPosition(step: 0, firstRow: 0)))
    }
}

private extension Dropout {
    func maskArray(rows: Int) -> [Float] {
        var m = [Float](repeating: 0, count: rows * 60)
        m.withUnsafeMutableBufferPointer { mask($0.baseAddress!, step: 1, firstRow: 0, layer: 0, rows: rows, steps: 6, units: 10) }
        return m
    }
}
