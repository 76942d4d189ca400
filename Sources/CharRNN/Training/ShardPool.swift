/// Who computes a step's shards, seen from the step driver: workers that come and go, a way to hand one of
/// them work, and the events that happen meanwhile. The driver owns every rule (who gets which shard, which
/// result counts, who is lost); a pool only carries messages. `InMemoryPool` runs shards in this process;
/// the distributed module's `Coordinator` is a pool of workers behind a ZeroMQ socket.
public protocol ShardPool: AnyObject {
    /// Hands `order`, part of global step `step`, to `worker`. False when it cannot be delivered (the worker
    /// is gone); the driver then declares it lost. Never blocks.
    func send(_ order: WorkOrder, step: Int, to worker: WorkerID) -> Bool
    /// What happened since the last call, waiting until `deadline` (on the driver's clock) at most for
    /// something to happen. Returns early as soon as there is at least one event.
    func poll(until deadline: Double) throws -> [PoolEvent]
    /// The driver declared `worker` lost: stop talking to it until it introduces itself again.
    func forget(_ worker: WorkerID)
    /// `worker` broke a rule of the protocol (e.g. sent a result for a shard it was not dealt).
    func penalize(_ worker: WorkerID)
    /// Whether `shard`'s first order of global step `step` put its result into a sum the workers make among
    /// themselves (the coordinator's reduction up the tree) that can still count. A copy's result would come on its
    /// own and keep that sum from counting, so such a shard is not copied to an idle worker; a stalled holder is
    /// noticed by its peers' patience (they then send their own results, and the sum can no longer count) or the
    /// transport's heartbeat.
    func isSummedByWorkers(_ shard: Int, step: Int) -> Bool
    /// Whether workers sum the results of the shards they hold along the reduction tree before sending them on (the
    /// reduction up the workers' tree): a worker dealt a run of neighbouring shards then sends one sum for it, so the
    /// driver deals runs (`ShardRuns`).
    var workersSumTheirShards: Bool { get }
}

extension ShardPool {
    public func isSummedByWorkers(_ shard: Int, step: Int) -> Bool { false }
    public var workersSumTheirShards: Bool { false }
}

/// A worker's identity within a pool: the ZeroMQ routing id, or a fixed id for the in-memory pool.
public struct WorkerID: Hashable, Sendable {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
}

public enum PoolEvent: Sendable {
    /// A worker introduced itself (again, possibly: a worker the driver declared lost comes back this way).
    case joined(WorkerID, name: String)
    /// The pool noticed a worker is gone: a disconnect, or a message it could not deliver.
    case left(WorkerID, reason: String)
    /// A worker's results for (some of) the shards of global step `step`.
    case results(WorkerID, step: Int, [ShardResult])
    /// The sum of a whole node of the step's reduction tree, summed by workers (`holders[k]` was dealt shard
    /// `part.node.lo + k` and computed it): one message instead of one result per shard.
    case sum(step: Int, SubtreeSum, holders: [WorkerID])
    /// `worker`'s order for `shard` of global step `step` needs no answer any more: it computed it and its result
    /// went into a sum that did not count, and the step was completed with other copies. (Otherwise the order
    /// would look unanswered until the deadline, and the worker busy.)
    case released(WorkerID, step: Int, shard: Int)
    /// `worker` computed `shard` of global step `step` and its result went into the workers' sum up the tree: it has
    /// room for another shard, while the shard stays out until its sum (or its result) comes.
    case computed(WorkerID, step: Int, shard: Int)
    /// A worker reported that it cannot compute what it was given.
    case failed(WorkerID, message: String)
}

/// Seconds on a monotonic clock. Injected into the driver so its deadline rules run in tests without sleeping.
public protocol TimeSource: AnyObject {
    func now() -> Double
}

/// The real monotonic clock.
public final class SystemTime: TimeSource {
    public init() {}
    public func now() -> Double { PhaseClock.now() }
}
