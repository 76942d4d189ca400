/// A pool of one worker that is this process: `charrnn train` and the tests run the step driver over it.
/// A work order is computed inline at the next poll, with the same `ShardStep` a distributed worker uses; it
/// holds any number of shards (`maxHeld`), so a step is one dealing and one poll.
public final class InMemoryPool: ShardPool {
    public static let worker = WorkerID(Array("in-process".utf8))

    public let shardStep: ShardStep
    private var announced = false
    private var queue: [(order: WorkOrder, step: Int)] = []
    /// Gradient buffers handed out with earlier results; reused once the driver has let go of them, so a step
    /// allocates nothing (each is a full parameter vector).
    private var gradients: [FloatBuffer] = []

    public init(plan: StepPlan) {
        shardStep = ShardStep(
            config: plan.state.config, maxRows: plan.rowsPerShard, seq: plan.options.seq, dropout: plan.options.dropoutMasks)
    }

    /// Where the shard step's time went (see `PhaseTimes`).
    public var times: PhaseTimes { shardStep.times }
    public func resetTimes() { shardStep.times = PhaseTimes() }

    public func send(_ order: WorkOrder, step: Int, to worker: WorkerID) -> Bool {
        queue.append((order, step))
        return true
    }

    public func poll(until deadline: Double) throws -> [PoolEvent] {
        guard announced else {
            announced = true
            return [.joined(Self.worker, name: "in-process")]
        }
        let work = queue
        queue = []
        // The driver deals one shard per order; the orders of a step share its weights, so they are computed as
        // one order, loading the weights once.
        var merged: [(order: WorkOrder, step: Int)] = []
        for (order, step) in work {
            if let last = merged.last, last.step == step, last.order.weights === order.weights {
                merged[merged.count - 1].order.shards += order.shards
            } else {
                merged.append((order, step))
            }
        }
        return merged.map { order, step in
            .results(Self.worker, step: step, shardStep.compute(order, step: step, gradient: recycledGradient))
        }
    }

    public func forget(_ worker: WorkerID) { queue = [] }
    public func penalize(_ worker: WorkerID) {}

    /// How many gradient buffers exist: one per shard of a work order, once the first steps are done.
    var gradientBuffers: Int { gradients.count }

    private func recycledGradient() -> FloatBuffer {
        if let k = gradients.indices.first(where: { isKnownUniquelyReferenced(&gradients[$0]) }) { return gradients[k] }
        let g = FloatBuffer(count: ParameterLayout(shardStep.config).count)
        gradients.append(g)
        return g
    }
}

extension StepDriver {
    /// The driver over an in-memory pool: training in this process, no sockets, no deadlines.
    public static func inProcess(
        plan: StepPlan, pool: InMemoryPool? = nil, shouldStop: @escaping () -> Bool = { false }
    ) -> StepDriver {
        var rules = DealingRules(minWorkers: 1, deadline: .infinity)
        rules.maxHeld = .max
        return StepDriver(plan: plan, pool: pool ?? InMemoryPool(plan: plan), rules: rules, shouldStop: shouldStop)
    }
}
