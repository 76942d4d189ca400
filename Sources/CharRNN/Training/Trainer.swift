/// The in-process trainer: the step plan and the shard step joined by a direct call, no sockets.
/// `charrnn train` and the tests use it; the distributed coordinator replaces only the call.
public final class Trainer {
    public let plan: StepPlan
    private let shardStep: ShardStep
    private let grads: Parameters

    public init(plan: StepPlan) {
        self.plan = plan
        shardStep = ShardStep(
            config: plan.state.config, maxRows: plan.rowsPerShard, seq: plan.options.seq, dropout: plan.options.dropoutMasks)
        grads = Parameters(plan.state.config)
    }

    /// Where the shard step's time went (see `PhaseTimes`).
    public var times: PhaseTimes { shardStep.times }
    public func resetTimes() { shardStep.times = PhaseTimes() }

    /// Runs one step: every shard in order, then the update.
    public func step() -> StepSummary {
        let planned = plan.next()
        shardStep.load(weights: plan.state.weights)
        for (s, shard) in planned.shards.enumerated() {
            let loss = shardStep.run(shard, state: plan.hidden(shard: s), grads: grads, position: planned.position(shard: s))
            plan.accumulate(shard: s, gradient: grads, loss: loss)
        }
        return plan.finish()
    }
}

/// Mean loss of a model over a text's sequences in order (no shuffle), `batch` rows at a time, stateful
/// across batches as in training. Sequences that do not fill a last batch are evaluated as a smaller batch.
public enum Evaluator {
    public static func meanLoss(weights: Parameters, ids: [Int32], seq: Int, batch: Int) throws -> (loss: Double, sequences: Int) {
        let set = SequenceSet(ids: ids, seq: seq)
        guard set.count > 0 else {
            throw CharRNNError.data("the text has \(ids.count) characters, fewer than one sequence of \(seq + 1)")
        }
        let rows = min(batch, set.count)
        let step = ShardStep(config: weights.config, maxRows: rows, seq: seq)
        step.load(weights: weights)
        let state = FloatBuffer(count: weights.config.stateCount(rows: rows))
        var total = 0.0
        var k = 0
        while k < set.count {
            let b = min(rows, set.count - k)
            var inputs = [Int32](repeating: 0, count: b * seq)
            var targets = inputs
            for r in 0..<b { set.copy(k + r, inputs: &inputs, targets: &targets, row: r) }
            total += step.loss(ShardRows(rows: b, seq: seq, inputs: inputs, targets: targets), state: state.base) * Double(b)
            k += b
        }
        return (total / Double(set.count), set.count)
    }
}
