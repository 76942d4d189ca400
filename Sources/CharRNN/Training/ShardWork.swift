/// The values that travel between a step driver and whoever computes shards (the in-memory pool, or a worker
/// across ZeroMQ). A shard's starting state goes out with it and its final state comes back with its result,
/// so any worker can take over any shard and nothing about a run lives only in a worker.

/// One shard of a work order: its rows and the hidden state to start them from (nil: start from zeros).
public struct WorkShard: Sendable {
    public var index: Int
    /// [rows, `config.stateWidth`]; nil at an epoch's first step, which costs no bytes on the wire.
    public var state: FloatBuffer?
    public var rows: ShardRows

    public init(index: Int, state: FloatBuffer?, rows: ShardRows) {
        self.index = index
        self.state = state
        self.rows = rows
    }
}

/// A step's work for one worker: the weights and the shards to run with them.
public struct WorkOrder: Sendable {
    public var epoch: Int
    public var shards: [WorkShard]
    /// The whole parameter vector; sent zero-copy, so leave it untouched until libzmq has released it.
    public var weights: FloatBuffer

    public init(epoch: Int, shards: [WorkShard], weights: FloatBuffer) {
        self.epoch = epoch
        self.shards = shards
        self.weights = weights
    }
}

/// One shard's outcome, as `ShardStep.run` produces it.
public struct ShardResult: Sendable {
    public var index: Int
    public var loss: Double
    /// [rows, `config.stateWidth`] final hidden state.
    public var state: FloatBuffer
    /// d(mean loss)/d(weights); sent zero-copy, so leave it untouched until libzmq has released it.
    public var gradient: FloatBuffer

    public init(index: Int, loss: Double, state: FloatBuffer, gradient: FloatBuffer) {
        self.index = index
        self.loss = loss
        self.state = state
        self.gradient = gradient
    }
}

extension ShardStep {
    /// Runs every shard of `order` (global step `step`) with the order's weights. A shard's state is copied
    /// before it advances, so the order can be dealt again unchanged. `gradient` supplies each result's
    /// gradient buffer (`run` overwrites it), so a caller may recycle buffers across steps. With `loaded`, the
    /// order's weights are the very buffer loaded last, unchanged since: they are not regrouped again.
    /// `final`: each part of a shard's gradient as soon as it is final (see `run`), with the result it belongs to,
    /// whose loss and state are final then but whose gradient outside the parts told so far is not.
    public func compute(
        _ order: WorkOrder, step: Int, loaded: Bool = false, gradient: () -> FloatBuffer,
        final: ((_ result: ShardResult, _ range: Range<Int>) -> Void)? = nil
    ) -> [ShardResult] {
        let layout = ParameterLayout(config)
        if !loaded { load(weights: Parameters(layout: layout, storage: order.weights)) }
        return order.shards.map { work in
            let state = work.state?.copy() ?? FloatBuffer(count: config.stateCount(rows: work.rows.rows))
            let g = gradient()
            let position = ShardPosition(step: step, shard: work.index, rowsPerShard: work.rows.rows)
            let loss = run(
                work.rows, state: state.base, grads: Parameters(layout: layout, storage: g), position: position,
                final: final.map { final in { range, loss in final(ShardResult(index: work.index, loss: loss, state: state, gradient: g), range) } })
            return ShardResult(index: work.index, loss: loss, state: state, gradient: g)
        }
    }
}
