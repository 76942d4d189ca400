import XCTest
@testable import CharRNN

/// Every layer's backward pass against central finite differences of the forward pass.
final class GradientCheckTests: XCTestCase {
    /// d(mean loss)/d(every weight tensor): covers the input table (embedding, kernel, input bias), the GRU
    /// recurrence (recurrent kernel and bias, through 7 steps from a non-zero state), dense and softmax.
    func testModelGradientsMatchFiniteDifferences() {
        checkGradients(ModelConfig(vocab: 6, embed: 4, units: 5))
    }

    /// The same through two stacked GRUs: layer 1's input product and the gradient it sends down to layer 0.
    func testTwoLayerGRUGradientsMatchFiniteDifferences() {
        checkGradients(ModelConfig(vocab: 6, embed: 4, units: 5, layers: 2))
    }

    /// The LSTM cell: its four gates, the cell state carried through time (c0 non-zero), and its single bias.
    func testLSTMGradientsMatchFiniteDifferences() {
        checkGradients(ModelConfig(vocab: 6, embed: 4, units: 5, cell: .lstm))
    }

    func testTwoLayerLSTMGradientsMatchFiniteDifferences() {
        checkGradients(ModelConfig(vocab: 6, embed: 4, units: 5, cell: .lstm, layers: 2))
    }

    /// Dropout's backward, between the layers and before Dense: the masks are fixed by the shard's position, so
    /// the finite differences see the same masks as the analytic gradient.
    func testDropoutGradientsMatchFiniteDifferences() {
        checkGradients(
            ModelConfig(vocab: 6, embed: 4, units: 5, cell: .lstm, layers: 2), dropout: Dropout(rate: 0.4, seed: 8),
            position: ShardPosition(step: 3, firstRow: 6))
    }

    /// H 1040: 32-unit recurrent blocks and a last one of 16 units, which the small models above (one 64-unit
    /// block) never reach. 12 random weights of each tensor and its last one (in the last block).
    func testWideGRUGradientsMatchFiniteDifferences() {
        checkGradients(ModelConfig(vocab: 6, embed: 4, units: 1040), sampled: 12)
    }

    private func checkGradients(
        _ config: ModelConfig, dropout: Dropout? = nil, position: ShardPosition? = nil, sampled: Int? = nil,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        var rng = RandomSource(seed: 3)
        let weights = Parameters.initialized(config, seed: 11)
        // Non-zero biases, so their gradients flow through every gate.
        for name in weights.names where name.role == .bias || name.role == .denseBias {
            for i in weights.tensor(name).indices { weights[name][i] = 0.3 * (2 * rng.nextUnitFloat() - 1) }
        }
        let (rows, seq) = (3, 7)
        let shard = ShardRows(
            rows: rows, seq: seq,
            inputs: (0..<rows * seq).map { _ in Int32(rng.nextIndex(below: config.vocab)) },
            targets: (0..<rows * seq).map { _ in Int32(rng.nextIndex(below: config.vocab)) })
        let h0 = (0..<config.stateCount(rows: rows)).map { _ in 0.5 * (2 * rng.nextUnitFloat() - 1) }

        let step = ShardStep(config: config, maxRows: rows, seq: seq, dropout: dropout)
        let grads = Parameters(config)
        step.load(weights: weights)
        var state = h0
        _ = state.withUnsafeMutableBufferPointer { step.run(shard, state: $0.baseAddress!, grads: grads, position: position) }

        func loss() -> Double {
            step.load(weights: weights)
            var s = h0
            return s.withUnsafeMutableBufferPointer { step.loss(shard, state: $0.baseAddress!, position: position) }
        }
        let eps: Float = 1e-2
        for name in weights.names {
            let w = weights.tensor(name)
            var worst = 0.0
            let indices = sampled.map { count in (0..<count).map { _ in rng.nextIndex(below: w.count) } + [w.count - 1] } ?? Array(w.indices)
            for i in indices {
                let saved = w[i]
                w[i] = saved + eps
                let up = loss()
                w[i] = saved - eps
                let down = loss()
                w[i] = saved
                let numeric = (up - down) / Double(2 * eps)
                let analytic = Double(grads.tensor(name)[i])
                worst = max(worst, abs(numeric - analytic) / (2e-3 + abs(numeric)))
            }
            XCTAssertLessThan(worst, 2e-2, "\(name.keras(config)): worst relative error \(worst)", file: file, line: line)
        }
    }

    func testSoftmaxCrossEntropyGradient() {
        let (n, v) = (2, 5)
        let base: [Float] = [0.1, -0.4, 2.0, 0.3, -1.0, 1.5, 0.2, -0.3, 0.0, 0.7]
        let targets = [2, 4]
        var g = base
        _ = SoftmaxCrossEntropy.apply(&g, rows: n, vocab: v, gradient: true) { targets[$0] }
        for i in 0..<base.count {
            var up = base, down = base
            up[i] += 1e-2
            down[i] -= 1e-2
            let numeric = (SoftmaxCrossEntropy.apply(&up, rows: n, vocab: v, gradient: false) { targets[$0] }
                - SoftmaxCrossEntropy.apply(&down, rows: n, vocab: v, gradient: false) { targets[$0] }) / 2e-2
            XCTAssertEqual(Double(g[i]), numeric, accuracy: 1e-4, "logit \(i)")
        }
    }

    func testActivationsMatchLibm() {
        var worst = (exp: 0.0, sigmoid: 0.0, tanh: 0.0)
        for i in 0..<4000 {
            let x = Float(i) * 0.01 - 20
            let v = Vec(repeating: x)
            let e = Double(Activations.exp(v)[0]), ref = Foundation.exp(Double(x))
            worst.exp = max(worst.exp, abs(e - ref) / ref)
            worst.sigmoid = max(worst.sigmoid, abs(Double(Activations.sigmoid(v)[0]) - 1 / (1 + Foundation.exp(-Double(x)))))
            worst.tanh = max(worst.tanh, abs(Double(Activations.tanh(v)[0]) - Foundation.tanh(Double(x))))
        }
        XCTAssertLessThan(worst.exp, 1e-6)
        XCTAssertLessThan(worst.sigmoid, 1e-6)
        XCTAssertLessThan(worst.tanh, 1e-6)
    }
}

import Foundation
