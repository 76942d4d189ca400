/// One step's work: the shards of the next global batch, each with the state its rows start from.
public struct PlannedStep: Sendable {
    public let globalStep: Int
    public let epoch: Int
    public let stepInEpoch: Int
    public let shards: [WorkShard]
}

/// What one finished step reports.
public struct StepSummary: Sendable {
    public let globalStep: Int
    public let epoch: Int
    public let stepInEpoch: Int
    public let loss: Double
    public let gradientNorm: Float
    public var epochEnded: Bool
    /// The loss or gradient was not finite and `onNonFinite` is `.skip`: nothing but the position changed.
    public var skipped = false
}

/// What a step whose loss or gradient is not finite (NaN or infinite: a diverged run) does.
public enum NonFinitePolicy: String, CaseIterable, Sendable {
    /// Stop the run with an error naming the step; the state stays that of the last good step.
    case stop
    /// Leave weights, optimizer moments and hidden states as they were and go on with the next step.
    case skip
}

/// The step plan: the training state and what happens to it each step. It takes the next shuffled global
/// batch, cuts it into S logical shards of B/S rows (each with its rows' hidden states), reduces the shards'
/// results, applies Adam and advances the position. It never computes a gradient itself; the step driver
/// feeds it results, whoever computed them, which is why in-process and distributed training cannot drift
/// apart.
///
/// Reduction: g = the sum of g₀ … g_{S−1} along the fixed `ReductionTree` over S shards, then g · (1/S). A
/// shard's g is the gradient of its own mean loss, so g is the gradient of the batch's mean loss; the tree
/// depends on S alone, so g depends on S, never on who computed which shard, who summed which subtree, or in
/// what order results came. The loss is the shards' mean, added in shard order.
public final class StepPlan {
    public private(set) var state: TrainingState
    public let sequences: SequenceSet
    public let stepsPerEpoch: Int
    /// The step after which the run ends: all epochs, or fewer when `--steps` says so.
    public let finalStep: Int

    private var order: (epoch: Int, indices: [Int])?
    private let layout: ParameterLayout
    /// The step's results so far, with their losses and final states: the states are written into
    /// `state.hidden` only when the step finishes, so an abandoned step leaves the state as it was.
    private var reduction: TreeReducer

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
        layout = ParameterLayout(state.config)
        reduction = TreeReducer(tree: ReductionTree(shards: o.shards), gradientCount: layout.count)
    }

    public var options: TrainingOptions { state.options }
    public var shardCount: Int { state.options.shards }
    public var rowsPerShard: Int { state.options.batch / state.options.shards }
    public var isFinished: Bool { state.position.globalStep >= finalStep }
    /// Not part of a run's identity (it may change on resume): it matters only once a run has diverged.
    public var onNonFinite = NonFinitePolicy.stop

    /// The next step's shards. At an epoch's first step every row starts from zeros (the state is nil);
    /// otherwise from its final state of the step before.
    public func next() -> PlannedStep {
        precondition(!isFinished, "the run is finished")
        let p = state.position
        let indices = epochOrder(p.epoch)
        let (rows, seq, b, width) = (rowsPerShard, options.seq, options.batch, state.config.stateCount(rows: rowsPerShard))
        let shards = (0..<shardCount).map { s -> WorkShard in
            var inputs = [Int32](repeating: 0, count: rows * seq)
            var targets = inputs
            for r in 0..<rows {
                sequences.copy(indices[p.stepInEpoch * b + s * rows + r], inputs: &inputs, targets: &targets, row: r)
            }
            var start: FloatBuffer?
            if p.stepInEpoch > 0 {
                start = FloatBuffer(count: width)
                start!.base.update(from: state.hidden.base + s * width, count: width)
            }
            return WorkShard(index: s, state: start, rows: ShardRows(rows: rows, seq: seq, inputs: inputs, targets: targets))
        }
        reduction.reset()
        return PlannedStep(globalStep: p.globalStep, epoch: p.epoch, stepInEpoch: p.stepInEpoch, shards: shards)
    }

    /// Adds a shard's result: its gradient, mean loss and final state. Shards may come in any order, each once.
    public func accumulate(_ result: ShardResult) { accumulate(SubtreeSum(result)) }

    /// Adds the sum of a whole subtree of the reduction tree (`ReductionTree(shards: shardCount)`), as summed by
    /// whoever held all its shards, with each shard's loss and final state. Each shard must come exactly once.
    public func accumulate(_ part: SubtreeSum) {
        let width = state.config.stateCount(rows: rowsPerShard)
        precondition(part.gradient.count == layout.count && part.states.allSatisfy { $0.count == width }, "a result of another model")
        reduction.add(part)
    }

    /// With every shard reduced: scale, clip, apply Adam, advance. Returns the step's summary. A loss or
    /// gradient that is not finite throws `.diverged` before anything changes (with `onNonFinite` `.stop`), or
    /// skips the update (`.skip`).
    public func finish() throws(CharRNNError) -> StepSummary {
        precondition(reduction.isComplete, "finish() before every shard was reduced")
        let (total, losses, finalStates) = reduction.root()
        let sum = Parameters(layout: layout, storage: total)
        if shardCount > 1 {
            let (a, scale) = (sum.storage.base, 1 / Float(shardCount))
            Parallel.forEachRange(of: sum.count) { range in
                for i in range { a[i] *= scale }
            }
        }
        let loss = losses.reduce(0, +) / Double(losses.count)
        let norm = Adam.clip(sum, maxNorm: options.clipNorm)
        var adam = options.adam
        adam.learningRate = options.learningRate(at: state.position.globalStep)
        let finite = loss.isFinite && norm.isFinite && Adam.staysFinite(adam, weights: state.weights, grads: sum, state: state.adam)
        if !finite && onNonFinite == .stop {
            throw .diverged(step: state.position.globalStep, loss: loss, gradientNorm: norm)
        }
        if finite {
            Adam.apply(adam, weights: state.weights, grads: sum, state: &state.adam)
            for (s, final) in finalStates.enumerated() {
                (state.hidden.base + s * final.count).update(from: final.base, count: final.count)
            }
        }

        return advance(loss: loss, gradientNorm: norm, skipped: !finite)
    }

    /// Gives up the step whose shards cannot be computed (distributed: they failed on two workers, as a
    /// non-finite gradient does), with `onNonFinite` `.skip`: nothing but the position changes.
    public func skip() -> StepSummary {
        advance(loss: .nan, gradientNorm: .nan, skipped: true)
    }

    private func advance(loss: Double, gradientNorm norm: Float, skipped: Bool) -> StepSummary {
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
            loss: loss, gradientNorm: norm, epochEnded: epochEnded, skipped: skipped)
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
