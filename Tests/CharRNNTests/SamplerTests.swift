import XCTest
@testable import CharRNN

final class SamplerTests: XCTestCase {
    let config = ModelConfig(vocab: 9, embed: 8, units: 40)

    /// The sampler's step-by-step logits are the training forward pass's logits for the same sequence.
    func testSamplerMatchesTheTrainingForwardPass() {
        var rng = RandomSource(seed: 4)
        let weights = Parameters.initialized(config, seed: 2)
        let seq = 12
        let ids = (0..<seq).map { _ in Int32(rng.nextIndex(below: config.vocab)) }
        let step = ShardStep(config: config, maxRows: 1, seq: seq)
        step.load(weights: weights)
        let expected = step.logits(
            of: ShardRows(rows: 1, seq: seq, inputs: ids, targets: ids), state: [Float](repeating: 0, count: config.units))

        for count in [1, 3] {
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
}
