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
    /// `loaded`: `order`'s weights are the buffer `shardStep` computed its previous order with.
    init(
        _ order: WorkOrder, step: Int, shardStep: ShardStep, loaded: Bool, shape: RunShape, faults: (nanFrom: Int?, forgeFrom: Int?, slowdown: Double, delay: Double),
        finished notify: @escaping @Sendable () -> Void
    ) {
        self.step = step
        nonisolated(unsafe) let shardStep = shardStep
        Thread.detachNewThread { [self] in
            let results = Self.run(order, step: step, shardStep: shardStep, loaded: loaded, shape: shape, faults: faults)
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

    /// `faults` (tests only): from these steps on, return NaN gradients, or finite but wrong ones (a forger);
    /// and take `slowdown` times as long as the computing took, plus `delay` seconds (a slower machine).
    private static func run(
        _ order: WorkOrder, step: Int, shardStep: ShardStep, loaded: Bool, shape: RunShape, faults: (nanFrom: Int?, forgeFrom: Int?, slowdown: Double, delay: Double)
    ) -> [ShardResult] {
        let started = PhaseClock.now()
        let results = shardStep.compute(order, step: step, loaded: loaded) { FloatBuffer(uninitializedCount: shape.parameterCount) }
        let extra = (faults.slowdown - 1) * (PhaseClock.now() - started) + faults.delay
        if extra > 0 { Thread.sleep(forTimeInterval: extra) }
        for r in results {
            if let from = faults.nanFrom, step >= from { r.gradient[0] = .nan }
            if let from = faults.forgeFrom, step >= from { r.gradient[0] += 0.01 }
        }
        return results
    }
}
