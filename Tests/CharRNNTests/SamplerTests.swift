import Foundation
import XCTest
@testable import CharRNN

final class SamplerTests: XCTestCase {
    let config = ModelConfig(vocab: 9, embed: 8, units: 40)

    /// The sampler's step-by-step logits are the training forward pass's logits for the same sequence.
    func testSamplerMatchesTheTrainingForwardPass() {
        checkSamplerMatchesTheTrainingForwardPass(config)
    }

    /// The same through stacked layers, where each layer above the first reads the one below.
    func testStackedSamplerMatchesTheTrainingForwardPass() {
        var stacked = config
        stacked.layers = 2
        checkSamplerMatchesTheTrainingForwardPass(stacked)
    }

    /// And for LSTM cells, whose c state the sampler carries beside h.
    func testLSTMSamplerMatchesTheTrainingForwardPass() {
        for layers in [1, 2] {
            var lstm = config
            lstm.cell = .lstm
            lstm.layers = layers
            checkSamplerMatchesTheTrainingForwardPass(lstm)
        }
    }

    private func checkSamplerMatchesTheTrainingForwardPass(_ config: ModelConfig) {
        var rng = RandomSource(seed: 4)
        let weights = Parameters.initialized(config, seed: 2)
        let seq = 12
        let ids = (0..<seq).map { _ in Int32(rng.nextIndex(below: config.vocab)) }
        let step = ShardStep(config: config, maxRows: 1, seq: seq)
        step.load(weights: weights)
        let expected = step.logits(
            of: ShardRows(rows: 1, seq: seq, inputs: ids, targets: ids), state: [Float](repeating: 0, count: config.stateCount(rows: 1)))

        // 3 samples take a gemv each, 6 one sgemm (`Sampler.gemmRows`).
        for count in [1, 3, 6] {
            let sampler = Sampler(weights: weights, count: count)
            for (t, id) in ids.enumerated() {
                [Int32](repeating: id, count: count).withUnsafeBufferPointer { sampler.feed($0) }
                for i in 0..<count {
                    for (k, x) in sampler.logits(i).enumerated() {
                        XCTAssertEqual(x, expected[t * config.vocab + k], accuracy: 1e-5, "count \(count), step \(t)")
                    }
                }
            }
        }
    }

    /// Generation is reproducible, and samples drawn together use their own random streams.
    func testBatchedSamplesAreReproducibleAndIndependent() {
        let weights = Parameters.initialized(config, seed: 3)
        func generate(count: Int) -> [[Int32]] {
            var out = [[Int32]](repeating: [], count: count)
            Sampler(weights: weights, count: count).generate(prime: [1, 2], length: 60, options: SamplingOptions(seed: 9)) {
                for (i, id) in $0.enumerated() { out[i].append(id) }
            }
            return out
        }
        XCTAssertEqual(generate(count: 1), generate(count: 1), "generation is not reproducible")
        let batch = generate(count: 3)
        XCTAssertEqual(generate(count: 3), batch, "batched generation is not reproducible")
        XCTAssertEqual(batch.map(\.count), [60, 60, 60])
        XCTAssertNotEqual(batch[0], batch[1])
    }

    /// Top-k and top-p on a known distribution: p = (0.5, 0.3, 0.15, 0.05).
    func testTopKAndTopPKeepTheRightSymbolsInProportion() {
        let logits: [Float] = [0.5, 0.3, 0.15, 0.05].map { logf($0) }
        func frequencies(_ options: SamplingOptions, draws: Int = 40_000) -> [Double] {
            var rng = RandomSource(seed: 4)
            var counts = [Double](repeating: 0, count: 4)
            logits.withUnsafeBufferPointer { l in
                for _ in 0..<draws { counts[Int(Sampler.sample(l, options: options, rng: &rng))] += 1 }
            }
            return counts.map { $0 / Double(draws) }
        }
        func assertNear(_ a: [Double], _ b: [Double], line: UInt = #line) {
            for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 0.01, "\(a) vs \(b)", line: line) }
        }
        assertNear(frequencies(SamplingOptions()), [0.5, 0.3, 0.15, 0.05])
        assertNear(frequencies(SamplingOptions(topK: 2)), [0.625, 0.375, 0, 0])
        assertNear(frequencies(SamplingOptions(topK: 1)), [1, 0, 0, 0])
        assertNear(frequencies(SamplingOptions(topP: 0.7)), [0.625, 0.375, 0, 0])        // 0.5 + 0.3 ≥ 0.7
        assertNear(frequencies(SamplingOptions(topP: 0.9)), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0])
        assertNear(frequencies(SamplingOptions(topP: 0.4)), [1, 0, 0, 0])
        assertNear(frequencies(SamplingOptions(topK: 3, topP: 1)), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0])
        // Temperature 0.5 squares the odds: 25 : 9 : 2.25 : 0.25.
        assertNear(frequencies(SamplingOptions(temperature: 0.5)), [25, 9, 2.25, 0.25].map { $0 / 36.5 })
        XCTAssertThrowsError(try SamplingOptions(topP: 0).validate())
        XCTAssertThrowsError(try SamplingOptions(topP: 1.5).validate())
    }
}
