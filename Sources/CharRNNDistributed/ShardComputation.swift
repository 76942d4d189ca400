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
    private var parts: [(result: ShardResult, range: Range<Int>)] = []
    private let done = DispatchSemaphore(value: 0)

    /// Starts the thread; `wake` is called on it once the results are ready, and with `tellParts` also each time a
    /// part of a result is final (`ShardStep.run`). `loaded`: `order`'s weights are the buffer `shardStep` computed
    /// its previous order with.
    init(
        _ order: WorkOrder, step: Int, shardStep: ShardStep, loaded: Bool, shape: RunShape, faults: (nanFrom: Int?, forgeFrom: Int?, slowdown: Double, delay: Double),
        tellParts: Bool, wake: @escaping @Sendable () -> Void
    ) {
        self.step = step
        nonisolated(unsafe) let shardStep = shardStep
        // A worker made slow or wrong by fault injection is so as a whole: parts sent early would escape it.
        let faulty = faults.slowdown != 1 || faults.delay > 0 || [faults.nanFrom, faults.forgeFrom].contains { $0.map { step >= $0 } == true }
        // Parts are told on whichever compute thread finished them, two at once at times: `wake` (a socket send) is
        // called under the lock, never concurrently.
        Thread.detachNewThread { [self] in
            let told: ((ShardResult, Range<Int>) -> Void)? = tellParts && !faulty ? { result, range in
                self.lock.withLock {
                    self.parts.append((result, range))
                    wake()
                }
            } : nil
            let results = Self.run(order, step: step, shardStep: shardStep, loaded: loaded, shape: shape, faults: faults, final: told)
            lock.withLock {
                finished = results
                wake()
            }
            done.signal()
        }
    }

    /// The results once the computation is over; nil while it runs.
    var results: [ShardResult]? { lock.withLock { finished } }

    /// The parts of results told final since the last call, each with its result (whose gradient is final there
    /// only; the loss and state are final).
    func takeParts() -> [(result: ShardResult, range: Range<Int>)] {
        lock.withLock {
            defer { parts = [] }
            return parts
        }
    }

    /// Blocks until the computation is over (before exiting: never leave a thread inside OpenBLAS).
    func wait() {
        done.wait()
        done.signal()
    }

    /// `faults` (tests only): from these steps on, return NaN gradients, or finite but wrong ones (a forger);
    /// and take `slowdown` times as long as the computing took, plus `delay` seconds (a slower machine).
    private static func run(
        _ order: WorkOrder, step: Int, shardStep: ShardStep, loaded: Bool, shape: RunShape, faults: (nanFrom: Int?, forgeFrom: Int?, slowdown: Double, delay: Double),
        final: ((ShardResult, Range<Int>) -> Void)?
    ) -> [ShardResult] {
        let started = PhaseClock.now()
        let results = shardStep.compute(order, step: step, loaded: loaded, gradient: { FloatBuffer(uninitializedCount: shape.parameterCount) }, final: final)
        let extra = (faults.slowdown - 1) * (PhaseClock.now() - started) + faults.delay
        if extra > 0 { Thread.sleep(forTimeInterval: extra) }
        for r in results {
            if let from = faults.nanFrom, step >= from { r.gradient[0] = .nan }
            if let from = faults.forgeFrom, step >= from { r.gradient[0] += 0.01 }
        }
        return results
    }
}
