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

/// The shard step: what a worker does. Given weights, a shard's rows and their recurrent state, it computes
/// the shard's mean loss, the gradient of that mean loss, and the final state. Layer l+1 reads layer l's output
/// sequence (after dropout, when training with it); only layer 0 reads symbols, through the input table. Pure
/// computation; it owns its scratch memory and reuses it every step, so the step loop allocates nothing.
///
/// The same object serves the in-process trainer and the distributed worker, which is what makes their
/// results bitwise equal: a shard's gradient depends only on the weights, its rows, its state and its position.
public final class ShardStep {
    public let config: ModelConfig
    public let maxRows: Int
    public let seq: Int
    public let dropout: Dropout?

    private var weights: Parameters
    private let table: FloatBuffer      // [V, G·H]  embedding·W + b0
    private let dTable: FloatBuffer     // [V, G·H]
    private let panels: [FloatBuffer]   // per layer: U packed for the recurrent products (`UnitBlocks.pack`)
    private let hs: [FloatBuffer]       // per layer [(T+1)·b, H]
    private let cs: [FloatBuffer]       // per layer [(T+1)·b, H]: an LSTM's cell states
    private let caches: [FloatBuffer]   // per layer [T·b, K·H]
    private let masks: [FloatBuffer]    // per layer [T·b, H] with dropout
    private let maskedOutputs: [FloatBuffer]  // per layer [T·b, H] with dropout: the output states times the mask
    private let layerInput: FloatBuffer // [T·b, G·H] above layer 0: xw in the forward pass, dxw in the backward pass
    private let logits: FloatBuffer     // [T·b, V]
    private let dhs: FloatBuffer        // [T·b, H]: d loss/d the output of the layer being backpropagated
    private let scratch: FloatBuffer    // [b, G·H]: h·U in the forward pass, the carry in the backward pass
    private let tokens: UnsafeMutableBufferPointer<Int32>  // [T, b] time-major inputs
    private let targets: UnsafeMutableBufferPointer<Int32> // [T, b] time-major targets
    /// Whether the last forward pass applied dropout, so the backward pass applies the same masks.
    private var masksApplied = false

    /// Seconds spent in each phase since the workspace was made (or `times` was reset): the benchmark's split.
    public var times = PhaseTimes()

    /// `dropout` (rate > 0) applies to `run` and `loss` calls given a shard position; nil trains without it.
    /// Floats (and int32 tokens) a workspace for these sizes allocates: what a worker checks against its
    /// memory limit before building one. The sum of the buffers `init` makes.
    public static func floatCount(config: ModelConfig, maxRows: Int, seq: Int, dropout: Bool) -> Int {
        let (v, h, n, width, layers) = (config.vocab, config.units, maxRows * seq, config.cell.gates * config.units, config.layers)
        let states = (n + maxRows) * h * (config.cell == .lstm ? 2 : 1)
        let panels = UnitBlocks(units: h, gates: config.cell.gates).panelFloats
        let perLayer = panels + states + n * config.cell.cacheBlocks * h + (dropout ? 2 * n * h : 0)
        return ParameterLayout(config).count + 2 * v * width + layers * perLayer + (layers > 1 ? n * width : 0)
            + n * v + n * h + maxRows * width + 2 * n
    }

    public init(config: ModelConfig, maxRows: Int, seq: Int, dropout: Dropout? = nil) {
        self.config = config
        self.maxRows = maxRows
        self.seq = seq
        precondition(dropout.map { $0.rate < 1 } ?? true, "dropout rate must be below 1")
        self.dropout = dropout.flatMap { $0.rate > 0 ? $0 : nil }
        let (v, h, n, width, layers) = (config.vocab, config.units, maxRows * seq, config.cell.gates * config.units, config.layers)
        func perLayer(_ count: Int) -> [FloatBuffer] { (0..<layers).map { _ in FloatBuffer(count: count) } }
        weights = Parameters(config)
        table = FloatBuffer(count: v * width)
        dTable = FloatBuffer(count: v * width)
        panels = perLayer(UnitBlocks(units: h, gates: config.cell.gates).panelFloats)
        hs = perLayer((n + maxRows) * h)
        cs = config.cell == .lstm ? perLayer((n + maxRows) * h) : []
        caches = perLayer(n * config.cell.cacheBlocks * h)
        masks = self.dropout == nil ? [] : perLayer(n * h)
        maskedOutputs = self.dropout == nil ? [] : perLayer(n * h)
        layerInput = FloatBuffer(count: layers > 1 ? n * width : 0)
        logits = FloatBuffer(count: n * v)
        dhs = FloatBuffer(count: n * h)
        scratch = FloatBuffer(count: maxRows * width)
        tokens = .allocate(capacity: n)
        targets = .allocate(capacity: n)
    }

    deinit {
        tokens.deallocate()
        targets.deallocate()
    }

    /// Floats (and int32 tokens) this workspace holds: what `floatCount` must predict (ShardStepTests).
    var allocatedFloats: Int {
        let buffers = [table, dTable, layerInput, logits, dhs, scratch] + panels + hs + cs + caches + masks + maskedOutputs
        return weights.layout.count + buffers.reduce(0) { $0 + $1.count } + tokens.count + targets.count
    }

    /// Binds the weights for the following shards and builds their input table and recurrent panels (once per
    /// step, not per shard).
    public func load(weights w: Parameters) {
        precondition(w.config == config, "weights of another model")
        weights = w
        InputTable.forward(w, into: table.base)
        for l in 0..<config.layers {
            UnitBlocks(units: config.units, gates: config.cell.gates).pack(w[.recurrentKernel(l)], into: panels[l].base)
        }
    }

    /// Forward and backward over one shard. `state` [rows, `config.stateWidth`] holds the initial states on
    /// entry and the final ones on return; `grads` is overwritten with d(mean loss)/d(weights). `position` keys
    /// the dropout masks (required when training with dropout). Returns the shard's mean loss.
    ///
    /// `final`, if given, is told each range of `grads` (float offsets) as soon as it holds its final value, with
    /// the loss (known from then on, as are the final states): a worker sends those parts up the reduction tree
    /// while the rest is computed. Each float is in exactly one range. The dense layer's gradient comes first, then
    /// per layer its input side (the table, or the layer input's kernel and bias), then its recurrent kernel in
    /// bands of rows (`gemm`), the largest part, last. The input side runs before the recurrent kernel's product
    /// only so that it can be sent sooner: the two do not read each other's results, so the bits are unchanged.
    public func run(
        _ shard: ShardRows, state: UnsafeMutablePointer<Float>, grads: Parameters, position: ShardPosition? = nil,
        final: ((_ range: Range<Int>, _ loss: Double) -> Void)? = nil
    ) -> Double {
        precondition(dropout == nil || position != nil, "dropout needs the shard's position")
        let loss = forward(shard, state: state, gradient: true, position: position)
        let (b, h, n, top) = (shard.rows, config.units, shard.rows * shard.seq, config.layers - 1)
        let width = config.cell.gates * h
        let layout = grads.layout
        func done(_ names: TensorName...) {
            for name in names { final?(layout.range(name), loss) }
        }
        dTable.zero()
        var clock = PhaseClock()
        Dense.backward(weights, states: output(top, rows: b), count: n, dLogits: logits.base, grads: grads, dStates: dhs.base)
        done(.denseKernel, .denseBias)
        times.dense += clock.lap()
        for l in stride(from: top, through: 0, by: -1) {
            if masksApplied {
                Dropout.apply(masks[l].base, to: dhs.base, into: dhs.base, count: n * h)
                times.dropout += clock.lap()
            }
            // Layer 0's dxw scatters into the table's gradient; a higher layer's is a matrix of its own.
            let dXW = l == 0 ? dTable : layerInput
            if l > 0 { Parallel.forEachRange(of: n * width) { (dXW.base + $0.lowerBound).update(repeating: 0, count: $0.count) } }
            let p = pass(l, rows: b)
            let dBias = config.cell == .gru ? grads[.bias(l)] + width : nil
            Recurrence.backward(config.cell, p, dhs: dhs.base, dXW: dXW.base, dBias: dBias)
            times.backwardRecurrence += clock.lap()
            if l > 0 {
                LayerInput.backward(weights, layer: l, below: output(l - 1, rows: b), count: n, dXW: dXW.base, grads: grads, dBelow: dhs.base)
                done(.kernel(l), .bias(l))
            } else {
                InputTable.backward(weights, dTable: dTable.base, grads: grads)
                done(.embedding, .kernel(0), .bias(0))
            }
            let dU = layout.range(.recurrentKernel(l))
            Recurrence.weightGradients(config.cell, p, dU: grads[.recurrentKernel(l)], rowsDone: final.map { final in
                { rows in final((dU.lowerBound + rows.lowerBound * width)..<(dU.lowerBound + rows.upperBound * width), loss) }
            })
            times.weightGradients += clock.lap()
        }
        return loss
    }

    /// Forward only: the shard's mean loss; `state` advances as in training. Without a position (evaluation)
    /// there is no dropout; with one, the loss `run` sees at that position.
    public func loss(_ shard: ShardRows, state: UnsafeMutablePointer<Float>, position: ShardPosition? = nil) -> Double {
        forward(shard, state: state, gradient: false, position: position)
    }

    /// Forward only, returning the logits as [rows, seq, V] (batch-major, as Keras returns them).
    public func logits(of shard: ShardRows, state: [Float]) -> [Float] {
        var h = state
        _ = h.withUnsafeMutableBufferPointer { forward(shard, state: $0.baseAddress!, gradient: false, position: nil) }
        let (b, t, v) = (shard.rows, shard.seq, config.vocab)
        var out = [Float](repeating: 0, count: b * t * v)
        for i in 0..<b {
            for s in 0..<t {
                for k in 0..<v { out[(i * t + s) * v + k] = logits[(s * b + i) * v + k] }
            }
        }
        return out
    }

    /// Layer l's buffers for a shard of `b` rows.
    private func pass(_ l: Int, rows b: Int) -> LayerPass {
        LayerPass(
            rows: b, steps: seq, units: config.units, xw: l == 0 ? table.base : layerInput.base,
            tokens: l == 0 ? UnsafePointer(tokens.baseAddress!) : nil, panels: panels[l].base,
            recurrentBias: config.cell == .gru ? weights[.bias(l)] + config.cell.gates * config.units : nil, hs: hs[l].base,
            cs: config.cell == .lstm ? cs[l].base : nil, cache: caches[l].base, scratch: scratch.base)
    }

    /// What the layer above (or Dense) reads of layer l: its output states [T·b, H], after dropout if applied.
    private func output(_ l: Int, rows b: Int) -> UnsafeMutablePointer<Float> {
        masksApplied ? maskedOutputs[l].base : hs[l].base + b * config.units
    }

    private func forward(_ shard: ShardRows, state: UnsafeMutablePointer<Float>, gradient: Bool, position: ShardPosition?) -> Double {
        precondition(shard.rows <= maxRows && shard.seq == seq, "shard larger than the workspace")
        let (b, t, h, v, top) = (shard.rows, shard.seq, config.units, config.vocab, config.layers - 1)
        for i in 0..<b {
            for s in 0..<t {
                tokens[s * b + i] = shard.inputs[i * t + s]
                targets[s * b + i] = shard.targets[i * t + s]
            }
        }
        masksApplied = dropout != nil && position != nil
        var clock = PhaseClock()
        for l in 0...top {
            // Row i's state holds every layer's vectors side by side (S per layer: h, and an LSTM's c): layer l's h
            // at column l·S·H, its c after it.
            let slot = state + l * config.cell.stateVectors * h
            for k in 0..<config.cell.stateVectors {
                let first = (k == 0 ? hs[l] : cs[l]).base
                for i in 0..<b { (first + i * h).update(from: slot + k * h + i * config.stateWidth, count: h) }
            }
            if l > 0 { LayerInput.forward(weights, layer: l, below: output(l - 1, rows: b), count: t * b, into: layerInput.base) }
            Recurrence.forward(config.cell, pass(l, rows: b))
            for k in 0..<config.cell.stateVectors {
                let last = (k == 0 ? hs[l] : cs[l]).base + t * b * h
                for i in 0..<b { (slot + k * h + i * config.stateWidth).update(from: last + i * h, count: h) }
            }
            if masksApplied, let d = dropout, let p = position {
                times.forwardRecurrence += clock.lap()
                d.mask(masks[l].base, step: p.step, firstRow: p.firstRow, layer: l, rows: b, steps: t, units: h)
                Dropout.apply(masks[l].base, to: hs[l].base + b * h, into: maskedOutputs[l].base, count: t * b * h)
                times.dropout += clock.lap()
            }
        }
        times.forwardRecurrence += clock.lap()
        Dense.forward(weights, states: output(top, rows: b), count: t * b, into: logits.base)
        let loss = SoftmaxCrossEntropy.apply(logits.base, rows: t * b, vocab: v, gradient: gradient) { Int(targets[$0]) }
        times.dense += clock.lap()
        return loss
    }
}
