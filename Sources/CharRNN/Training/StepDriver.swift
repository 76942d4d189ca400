/// How patient a step driver is with its workers.
public struct DealingRules: Sendable {
    /// Do not deal a step's shards while fewer workers than this are live; wait for them instead.
    public var minWorkers = 1
    /// A worker holding shards longer than this (seconds) is declared lost and its shards are dealt again.
    public var deadline: Double = 30
    /// The longest the driver waits on the pool before it looks at deadlines and stop requests again.
    public var pollInterval: Double = 0.02

    public init(minWorkers: Int = 1, deadline: Double = 30) {
        self.minWorkers = minWorkers
        self.deadline = deadline
    }
}

/// What the driver counted over a run: for logs, tests and the benchmark.
public struct DealingStats: Sendable, Equatable {
    public var joins = 0
    public var lostWorkers = 0
    /// Shards dealt again because the worker holding them was lost.
    public var reassignedShards = 0
    /// Results of an earlier step (from a worker that was late, or lost and back).
    public var staleResults = 0
    /// Results for a shard whose result was already in (bitwise the same; the first one counts).
    public var duplicateResults = 0
    /// Results for shards the sender was not dealt in this step: refused, and the sender penalized.
    public var undealtResults = 0

    public init() {}
}

/// What the driver reports as it deals, for a log or a status file.
public enum DealingEvent: Sendable {
    case joined(name: String, live: Int)
    /// `shards` were out with the worker and go to the others.
    case lost(name: String, reason: String, shards: [Int], live: Int)
    /// Reported once each time the driver starts waiting for enough workers.
    case waiting(live: Int, needed: Int)
    case workerFailed(name: String, message: String)
}

/// One training step, whoever computes the shards: take the plan's next step, deal its shards to the pool's
/// live workers, collect exactly one result per shard, and reduce them in shard order into the plan, which
/// applies Adam. The rules, all here and all on the injected clock:
/// - shards are dealt in contiguous blocks to the live workers in join order; shards of a worker that is lost
///   (it left, a send to it failed, it reported an error, or it held shards past `deadline`) are dealt again;
/// - a result counts only from a worker that was dealt that shard in this step, and only the first one: late
///   results of earlier steps, repeats and results for undealt shards are counted and dropped;
/// - nothing is dealt while fewer than `minWorkers` workers are live.
/// Since a shard's result depends only on the weights, its rows, its state and its position, which worker
/// computed it, and how often, never changes the reduced gradient: the run's bits depend on the shard count only.
public final class StepDriver {
    public let plan: StepPlan
    public let pool: ShardPool
    public let rules: DealingRules
    public private(set) var stats = DealingStats()

    private let clock: TimeSource
    private let report: (DealingEvent) -> Void
    private let shouldStop: () -> Bool
    private var members = Membership()
    private var waiting = false

    public init(
        plan: StepPlan, pool: ShardPool, rules: DealingRules = DealingRules(), clock: TimeSource = SystemTime(),
        report: @escaping (DealingEvent) -> Void = { _ in }, shouldStop: @escaping () -> Bool = { false }
    ) {
        self.plan = plan
        self.pool = pool
        self.rules = rules
        self.clock = clock
        self.report = report
        self.shouldStop = shouldStop
    }

    /// Workers that may be dealt shards now.
    public var liveWorkers: Int { members.count }
    /// The live workers in join order.
    public var workers: [Membership.Member] { members.live }

    /// Runs one step. Nil when a stop was requested before it completed: the plan is then as it was before the
    /// step (no state, weights or position changed), so a checkpoint written now resumes at this step.
    public func advance() throws -> StepSummary? {
        let planned = plan.next()
        var reduction = OrderedReduction(plan: plan)
        members.beginStep()
        while !reduction.isComplete {
            if shouldStop() { return nil }
            let now = clock.now()
            for worker in members.overdue(now: now, deadline: rules.deadline) {
                lose(worker, because: "no result within \(rules.deadline) s")
            }
            let undealt = reduction.missing.filter { members.inFlight[$0] == nil }
            if !undealt.isEmpty { deal(undealt, of: planned, now: now) }
            for event in try pool.poll(until: now + rules.pollInterval) {
                handle(event, step: planned.globalStep, into: &reduction)
            }
        }
        return plan.finish()
    }

    private func deal(_ shards: [Int], of planned: PlannedStep, now: Double) {
        guard members.count >= rules.minWorkers else {
            if !waiting { report(.waiting(live: members.count, needed: rules.minWorkers)) }
            waiting = true
            return
        }
        waiting = false
        for (worker, block) in members.assign(shards, now: now) {
            let order = WorkOrder(epoch: planned.epoch, shards: block.map { planned.shards[$0] }, weights: plan.state.weights.storage)
            if !pool.send(order, step: planned.globalStep, to: worker) { lose(worker, because: "cannot deliver its work") }
        }
    }

    private func handle(_ event: PoolEvent, step: Int, into reduction: inout OrderedReduction) {
        switch event {
        case .joined(let worker, let name):
            if members.admit(worker, name: name) {
                stats.joins += 1
                report(.joined(name: name, live: members.count))
            }
        case .left(let worker, let reason):
            lose(worker, because: reason)
        case .failed(let worker, let message):
            if let name = members.byID[worker]?.name { report(.workerFailed(name: name, message: message)) }
            lose(worker, because: "it reported an error")
        case .results(let worker, let resultStep, let results):
            guard resultStep == step else {
                stats.staleResults += results.count
                return
            }
            for r in results {
                guard members.wasDealt(r.index, to: worker) else {
                    stats.undealtResults += 1
                    pool.penalize(worker)
                    continue
                }
                if reduction.add(r) {
                    members.completed(r.index, by: worker)
                } else {
                    stats.duplicateResults += 1
                }
            }
        }
    }

    private func lose(_ worker: WorkerID, because reason: String) {
        guard let member = members.byID[worker] else { return }
        let orphans = members.remove(worker)
        pool.forget(worker)
        stats.lostWorkers += 1
        stats.reassignedShards += orphans.count
        report(.lost(name: member.name, reason: reason, shards: orphans, live: members.count))
    }
}

/// Results reduced into the plan in shard order as soon as every earlier shard is in, so only results that
/// arrived ahead of an earlier shard wait in memory.
struct OrderedReduction {
    private let plan: StepPlan
    private var waiting: [Int: ShardResult] = [:]
    private var received: Set<Int> = []
    private var next = 0

    init(plan: StepPlan) { self.plan = plan }

    var isComplete: Bool { next == plan.shardCount }
    /// Shards whose result is not in yet, in order.
    var missing: [Int] { (0..<plan.shardCount).filter { !received.contains($0) } }

    /// False for a shard whose result is already in.
    mutating func add(_ r: ShardResult) -> Bool {
        guard received.insert(r.index).inserted else { return false }
        waiting[r.index] = r
        while let ready = waiting.removeValue(forKey: next) {
            plan.accumulate(ready)
            next += 1
        }
        return true
    }
}
