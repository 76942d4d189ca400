import CharRNN
import Foundation

/// One work order computed on a thread of its own, so the worker keeps reading its socket meanwhile: the
/// coordinator's pings never pile up in its receive queue (libzmq stops reading a connection whose queue is
/// full, and then its heartbeats drop the link), however long a step takes.
///
/// The shard step is used by this thread only until `results` returns non-nil or `wait` returns; the worker
/// starts no other computation before then.
final class ShardComputation: @unchecked Sendable {
    let step: Int
    private let lock = NSLock()
    private var finished: [ShardResult]?
    private let done = DispatchSemaphore(value: 0)

    /// Starts the thread; `finished` is called on it once the results are ready.
    init(
        _ order: WorkOrder, step: Int, shardStep: ShardStep, shape: RunShape, poisonFromStep: Int?,
        finished notify: @escaping @Sendable () -> Void
    ) {
        self.step = step
        nonisolated(unsafe) let shardStep = shardStep
        Thread.detachNewThread { [self] in
            let results = Self.run(order, step: step, shardStep: shardStep, shape: shape, poisonFromStep: poisonFromStep)
            lock.withLock { finished = results }
            done.signal()
            notify()
        }
    }

    /// The results once the computation is over; nil while it runs.
    var results: [ShardResult]? { lock.withLock { finished } }

    /// Blocks until the computation is over (before exiting: never leave a thread inside OpenBLAS).
    func wait() {
        done.wait()
        done.signal()
    }

    private static func run(_ order: WorkOrder, step: Int, shardStep: ShardStep, shape: RunShape, poisonFromStep: Int?) -> [ShardResult] {
        let layout = ParameterLayout(shape.config)
        shardStep.load(weights: Parameters(layout: layout, storage: order.weights))
        return order.shards.map { work -> ShardResult in
            let state = work.state ?? FloatBuffer(count: shape.stateCount)
            let gradient = Parameters(layout: layout, storage: FloatBuffer(count: layout.count))
            let position = ShardPosition(step: step, shard: work.index, rowsPerShard: shape.rowsPerShard)
            let loss = shardStep.run(work.rows, state: state.base, grads: gradient, position: position)
            if let from = poisonFromStep, step >= from { gradient.storage[0] = .nan }
            return ShardResult(index: work.index, loss: loss, state: state, gradient: gradient.storage)
        }
    }
}
