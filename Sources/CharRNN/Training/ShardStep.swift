/// A shard's sequences for one step: `rows` sequences of `seq` ids, row-major [rows, seq].
public struct ShardRows: Equatable, Sendable {
    public var rows: Int
    public var seq: Int
    public var inputs: [Int32]
    public var targets: [Int32]

    public init(rows: Int, seq: Int, inputs: [Int32], targets: [Int32]) {
        precondition(inputs.count == rows * seq && targets.count == rows * seq, "shard size mismatch")
        self.rows = rows
        self.seq = seq
        self.inputs = inputs
        self.targets = targets
    }
}

/// The shard step: what a worker does. Given weights, a shard's rows and their hidden state, it computes
/// the shard's mean loss, the gradient of that mean loss, and the final hidden state. Layer l+1 reads layer
/// l's output sequence; only layer 0 reads symbols, through the input table. Pure computation;
/// it owns its scratch memory and reuses it every step, so the step loop allocates nothing.
///
/// The same object serves the in-process trainer and the distributed worker, which is what makes their
/// results bitwise equal: a shard's gradient depends only on the weights, its rows and its state.
public final class ShardStep {
    public let config: ModelConfig
    public let maxRows: Int
    public let seq: Int

    private var weights: Parameters
    private let table: FloatBuffer      // [V, 3H]  embedding·W + b0
    private let dTable: FloatBuffer     // [V, 3H]
    private let hs: [FloatBuffer]       // per layer [(T+1)·b, H]
    private let caches: [FloatBuffer]   // per layer [T·b, 4H]
    private let layerInput: FloatBuffer // [T·b, 3H] above layer 0: xw in the forward pass, dxw in the backward pass
    private let logits: FloatBuffer     // [T·b, V]
    private let dhs: FloatBuffer        // [T·b, H]: d loss/d the output states of the layer being backpropagated
    private let scratch: FloatBuffer    // [b, 3H]: hu in the forward pass, carry in the backward pass
    private var tokens: [Int32]         // [T, b] time-major inputs
    private var targets: [Int32]        // [T, b] time-major targets

    /// Seconds spent in each phase since the workspace was made (or `times` was reset): the benchmark's split.
    public var times = PhaseTimes()

    public init(config: ModelConfig, maxRows: Int, seq: Int) {
        self.config = config
        self.maxRows = maxRows
        self.seq = seq
        let (v, h, n) = (config.vocab, config.units, maxRows * seq)
        weights = Parameters(config)
        table = FloatBuffer(count: v * 3 * h)
        dTable = FloatBuffer(count: v * 3 * h)
        hs = (0..<config.layers).map { _ in FloatBuffer(count: (n + maxRows) * h) }
        caches = (0..<config.layers).map { _ in FloatBuffer(count: n * 4 * h) }
        layerInput = FloatBuffer(count: config.layers > 1 ? n * 3 * h : 0)
        logits = FloatBuffer(count: n * v)
        dhs = FloatBuffer(count: n * h)
        scratch = FloatBuffer(count: maxRows * 3 * h)
        tokens = Array(repeating: 0, count: n)
        targets = Array(repeating: 0, count: n)
    }

    /// Binds the weights for the following shards and builds their input table (once per step, not per shard).
    public func load(weights w: Parameters) {
        precondition(w.config == config, "weights of another model")
        weights = w
        InputTable.forward(w, into: table.base)
    }

    /// Forward and backward over one shard. `state` [rows, `config.stateWidth`] holds the initial states on
    /// entry and the final ones on return; `grads` is overwritten with d(mean loss)/d(weights). Returns the
    /// shard's mean loss.
    public func run(_ shard: ShardRows, state: UnsafeMutablePointer<Float>, grads: Parameters) -> Double {
        let loss = forward(shard, state: state, gradient: true)
        let (b, h, n, top) = (shard.rows, config.units, shard.rows * shard.seq, config.layers - 1)
        let shape = GRU.Shape(rows: b, steps: shard.seq, units: h)
        var clock = PhaseClock()
        Dense.backward(weights, states: hs[top].base + b * h, count: n, dLogits: logits.base, grads: grads, dStates: dhs.base)
        times.dense += clock.lap()
        dTable.zero()
        for l in stride(from: top, through: 0, by: -1) {
            // Layer 0's dxw scatters into the table's gradient; a higher layer's is a matrix of its own.
            let dXW = l == 0 ? dTable : layerInput
            if l > 0 { dXW.base.update(repeating: 0, count: n * 3 * h) }
            tokens.withUnsafeBufferPointer { tok in
                GRU.backward(
                    shape, tokens: l == 0 ? tok.baseAddress! : nil, recurrentKernel: weights[.recurrentKernel(l)],
                    hs: hs[l].base, cache: caches[l].base, dhs: dhs.base, carry: scratch.base, dXW: dXW.base,
                    db1: grads[.bias(l)] + 3 * h)
            }
            times.backwardRecurrence += clock.lap()
            GRU.weightGradients(shape, hs: hs[l].base, cache: caches[l].base, dU: grads[.recurrentKernel(l)])
            if l > 0 {
                LayerInput.backward(
                    weights, layer: l, below: hs[l - 1].base + b * h, count: n, dXW: dXW.base, grads: grads, dBelow: dhs.base)
            }
            times.weightGradients += clock.lap()
        }
        InputTable.backward(weights, dTable: dTable.base, grads: grads)
        times.weightGradients += clock.lap()
        return loss
    }

    /// Forward only: the shard's mean loss; `state` advances as in training.
    public func loss(_ shard: ShardRows, state: UnsafeMutablePointer<Float>) -> Double {
        forward(shard, state: state, gradient: false)
    }

    /// Forward only, returning the logits as [rows, seq, V] (batch-major, as Keras returns them).
    public func logits(of shard: ShardRows, state: [Float]) -> [Float] {
        var h = state
        _ = h.withUnsafeMutableBufferPointer { forward(shard, state: $0.baseAddress!, gradient: false) }
        let (b, t, v) = (shard.rows, shard.seq, config.vocab)
        var out = [Float](repeating: 0, count: b * t * v)
        for i in 0..<b {
            for s in 0..<t {
                for k in 0..<v { out[(i * t + s) * v + k] = logits[(s * b + i) * v + k] }
            }
        }
        return out
    }

    private func forward(_ shard: ShardRows, state: UnsafeMutablePointer<Float>, gradient: Bool) -> Double {
        precondition(shard.rows <= maxRows && shard.seq == seq, "shard larger than the workspace")
        let (b, t, h, v, top) = (shard.rows, shard.seq, config.units, config.vocab, config.layers - 1)
        for i in 0..<b {
            for s in 0..<t {
                tokens[s * b + i] = shard.inputs[i * t + s]
                targets[s * b + i] = shard.targets[i * t + s]
            }
        }
        var clock = PhaseClock()
        for l in 0...top {
            // Row i's state holds every layer's h side by side: layer l's is at column l·H.
            let first = hs[l].base, last = hs[l].base + t * b * h, slot = state + l * h
            for i in 0..<b { (first + i * h).update(from: slot + i * config.stateWidth, count: h) }
            if l > 0 { LayerInput.forward(weights, layer: l, below: hs[l - 1].base + b * h, count: t * b, into: layerInput.base) }
            tokens.withUnsafeBufferPointer { tok in
                GRU.forward(
                    GRU.Shape(rows: b, steps: t, units: h), xw: l == 0 ? table.base : layerInput.base,
                    tokens: l == 0 ? tok.baseAddress! : nil, recurrentKernel: weights[.recurrentKernel(l)],
                    recurrentBias: weights[.bias(l)] + 3 * h, hs: first, cache: caches[l].base, hu: scratch.base)
            }
            for i in 0..<b { (slot + i * config.stateWidth).update(from: last + i * h, count: h) }
        }
        times.forwardRecurrence += clock.lap()
        Dense.forward(weights, states: hs[top].base + b * h, count: t * b, into: logits.base)
        let loss = targets.withUnsafeBufferPointer { y in
            SoftmaxCrossEntropy.apply(logits.base, rows: t * b, vocab: v, gradient: gradient) { Int(y[$0]) }
        }
        times.dense += clock.lap()
        return loss
    }
}
