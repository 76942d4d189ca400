/// One step's work: the shards of the next global batch.
public struct PlannedStep: Sendable {
    public let globalStep: Int
    public let epoch: Int
    public let stepInEpoch: Int
    public let shards: [ShardRows]

    /// Where shard s sits in the global batch: what its dropout masks depend on.
    public func position(shard s: Int) -> ShardPosition {
        ShardPosition(step: globalStep, shard: s, rowsPerShard: shards[s].rows)
    }
}

/// What one finished step reports.
public struct StepSummary: Sendable {
    public let globalStep: Int
    public let epoch: Int
    public let stepInEpoch: Int
    public let loss: Double
    public let gradientNorm: Float
    public var epochEnded: Bool
}

/// The step plan: what a coordinator does. It owns the training state, takes the next shuffled global
/// batch, cuts it into S logical shards of B/S rows, reduces the shards' gradients in shard order, applies
/// Adam and advances the position. It never computes a gradient itself; the in-process trainer and the
/// distributed coordinator both drive it, which is why their results cannot drift apart.
///
/// Reduction: g = g₀ + g₁ + … + g_{S−1} (in that order), then g · (1/S). A shard's g is the gradient of its
/// own mean loss, so g is the gradient of the batch's mean loss, and it depends on S, never on who computed
/// which shard.
public final class StepPlan {
    public private(set) var state: TrainingState
    public let sequences: SequenceSet
    public let stepsPerEpoch: Int
    /// The step after which the run ends: all epochs, or fewer when `--steps` says so.
    public let finalStep: Int

    private var order: (epoch: Int, indices: [Int])?
    private let sum: Parameters
    private var reduced = 0
    private var losses: [Double] = []

    public init(state: TrainingState, ids: [Int32], stopAfter: Int? = nil) throws {
        let o = state.options
        try o.validate()
        sequences = SequenceSet(ids: ids, seq: o.seq)
        stepsPerEpoch = sequences.count / o.batch
        guard stepsPerEpoch > 0 else {
            throw CharRNNError.data(
                "the text has \(ids.count) characters: \(sequences.count) sequences of \(o.seq + 1), fewer than one batch of \(o.batch)")
        }
        if let s = stopAfter, s <= 0 { throw CharRNNError.invalidOption("--steps must be positive, got \(s)") }
        finalStep = min(o.epochs * stepsPerEpoch, stopAfter ?? .max)
        self.state = state
        sum = Parameters(state.config)
    }

    public var options: TrainingOptions { state.options }
    public var shardCount: Int { state.options.shards }
    public var rowsPerShard: Int { state.options.batch / state.options.shards }
    public var isFinished: Bool { state.position.globalStep >= finalStep }

    /// Shard s's hidden state, `config.stateCount(rows: B/S)` floats inside the run's state; the shard step
    /// reads and advances it.
    public func hidden(shard s: Int) -> UnsafeMutablePointer<Float> {
        state.hidden.base + s * state.config.stateCount(rows: rowsPerShard)
    }

    /// The next step's shards. At an epoch's first step every hidden state starts again from zero.
    public func next() -> PlannedStep {
        precondition(!isFinished, "the run is finished")
        let p = state.position
        if p.stepInEpoch == 0 { state.hidden.zero() }
        let indices = epochOrder(p.epoch)
        let (rows, seq, b) = (rowsPerShard, options.seq, options.batch)
        let shards = (0..<shardCount).map { s -> ShardRows in
            var inputs = [Int32](repeating: 0, count: rows * seq)
            var targets = inputs
            for r in 0..<rows {
                sequences.copy(indices[p.stepInEpoch * b + s * rows + r], inputs: &inputs, targets: &targets, row: r)
            }
            return ShardRows(rows: rows, seq: seq, inputs: inputs, targets: targets)
        }
        reduced = 0
        losses = []
        return PlannedStep(globalStep: p.globalStep, epoch: p.epoch, stepInEpoch: p.stepInEpoch, shards: shards)
    }

    /// Adds shard `s`'s gradient and mean loss; shards must come in order 0, 1, …, S−1.
    public func accumulate(shard s: Int, gradient g: Parameters, loss: Double) {
        precondition(s == reduced, "shard gradients must be reduced in shard order")
        if s == 0 {
            sum.storage.assign(from: g.storage)
        } else {
            let (a, b) = (sum.storage.base, g.storage.base)
            Parallel.forEachRange(of: sum.count) { range in
                for i in range { a[i] += b[i] }
            }
        }
        losses.append(loss)
        reduced += 1
    }

    /// With every shard reduced: scale, clip, apply Adam, advance. Returns the step's summary.
    public func finish() -> StepSummary {
        precondition(reduced == shardCount, "finish() before every shard was reduced")
        if shardCount > 1 {
            let (a, scale) = (sum.storage.base, 1 / Float(shardCount))
            Parallel.forEachRange(of: sum.count) { range in
                for i in range { a[i] *= scale }
            }
        }
        let norm = Adam.clip(sum, maxNorm: options.clipNorm)
        Adam.apply(options.adam, weights: state.weights, grads: sum, state: &state.adam)

        let done = state.position
        var next = done
        next.globalStep += 1
        next.stepInEpoch += 1
        let epochEnded = next.stepInEpoch == stepsPerEpoch
        if epochEnded {
            next.epoch += 1
            next.stepInEpoch = 0
        }
        state.position = next
        return StepSummary(
            globalStep: done.globalStep, epoch: done.epoch, stepInEpoch: done.stepInEpoch,
            loss: losses.reduce(0, +) / Double(losses.count), gradientNorm: norm, epochEnded: epochEnded)
    }

    private func epochOrder(_ epoch: Int) -> [Int] {
        if let o = order, o.epoch == epoch { return o.indices }
        let indices = options.shuffle
            ? Shuffler.order(count: sequences.count, buffer: options.buffer, seed: options.seed, epoch: epoch)
            : Array(0..<sequences.count)
        order = (epoch, indices)
        return indices
    }
}
