import XCTest
@testable import CharRNN

/// The model against TensorFlow/Keras: logits, loss, final state, every gradient, Adam steps.
final class GoldenTests: XCTestCase {
    func testSmall() throws { try check("gru_small.json") }
    func testMedium() throws { try check("gru_medium.json") }
    func testTwoLayerGRU() throws { try check("gru_2layers.json") }
    func testLSTM() throws { try check("lstm_1layer.json") }
    func testTwoLayerLSTM() throws { try check("lstm_2layers.json") }

    private func check(_ file: String) throws {
        let g = try GoldenCase.load(file)
        let weights = g.parameters(g.weights)
        let step = ShardStep(config: g.config, maxRows: g.batch, seq: g.seq)
        step.load(weights: weights)
        let grads = Parameters(g.config)
        var state = g.h0
        let loss = state.withUnsafeMutableBufferPointer { step.run(g.shard, state: $0.baseAddress!, grads: grads) }

        XCTAssertEqual(loss, g.loss, accuracy: 1e-5 + 1e-4 * abs(g.loss), "loss")
        state.withUnsafeBufferPointer { assertClose($0, g.hT, abs: 1e-5, rel: 1e-4, "final state (h, and c for an LSTM)") }
        for name in grads.names {
            let keras = name.keras(g.config)
            assertClose(UnsafeBufferPointer(grads.tensor(name)), g.grads[keras]!.floats, abs: 1e-5, rel: 1e-4, "d \(keras)")
        }

        let logits = step.logits(of: g.shard, state: g.h0)
        logits.withUnsafeBufferPointer { assertClose($0, g.logits.floats, abs: 1e-5, rel: 1e-4, "logits") }

        var adam = AdamState(g.config)
        for n in 1...3 {
            step.load(weights: weights)
            var s = g.h0
            _ = s.withUnsafeMutableBufferPointer { step.run(g.shard, state: $0.baseAddress!, grads: grads) }
            Adam.apply(g.adam, weights: weights, grads: grads, state: &adam)
            let expected = n == 1 ? g.after1 : n == 3 ? g.after3 : nil
            guard let expected else { continue }
            for name in weights.names {
                let keras = name.keras(g.config)
                assertClose(UnsafeBufferPointer(weights.tensor(name)), expected[keras]!.floats, abs: 1e-5, rel: 0, "\(keras) after \(n) Adam steps")
            }
        }
    }
}
