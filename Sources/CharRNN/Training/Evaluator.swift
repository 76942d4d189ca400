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
