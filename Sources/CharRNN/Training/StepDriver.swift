/// How patient a step driver is with its workers.
public struct DealingRules: Sendable {
    /// Do not deal a step's shards while fewer workers than this are live; wait for them instead.
    public var minWorkers = 1
    /// A worker holding shards longer than this (seconds) is declared lost and its shards are dealt again.
    public var deadline: Double = 30
    /// The longest the driver waits on the pool before it looks at deadlines and stop requests again.
    public var pollInterval: Double = 0.02
    /// The fraction of shards computed a second time, on another worker, and compared bit for bit (see `Audit`).
    public var verify = 0.0
    /// Picks the checked shards; the coordinator's own secret, never sent to a worker.
    public var verifySeed: UInt64 = 0
    /// Shards a worker holds at most: one computing and one queued, so it never waits a round trip for the next.
    public var maxHeld = 2
    /// A worker whose current shard has been computing for more than this multiple of its usual shard time is
    /// straggling: once no shard is left to deal, an idle worker is dealt a copy of what it holds (`.infinity`:
    /// never). Above 1 so that a worker merely slower than the others, or a little late, is not doubled: a copy
    /// that loses keeps its worker busy into the next step.
    public var speculateAfter = 1.5

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
    /// Copies of a straggler's shards dealt to idle workers (the first result counts, the other is a duplicate).
    public var speculativeShards = 0
    /// Results for shards the sender was not dealt in this step: refused, and the sender penalized.
    public var undealtResults = 0
    /// Checked shards whose result two workers agreed on.
    public var verifiedShards = 0
    /// Shards due for a check while one worker alone was live: taken unchecked.
    public var unverifiedShards = 0
    /// Checked shards on which workers disagreed.
    public var mismatches = 0
    /// Workers found in the minority of a check, dealt nothing more.
    public var distrustedWorkers = 0

    public init() {}
}

public enum DealingError: Error, Equatable, CustomStringConvertible {
    case shardFailed(step: Int, shard: Int, worker: String, message: String)
    /// Three workers or more returned three different results for one shard: nothing to trust.
    case irreconcilable(step: Int, shard: Int)

    public var description: String {
        switch self {
        case .shardFailed(let step, let shard, let worker, let message):
            return "step \(step + 1) cannot be computed: shard \(shard) failed twice, last on worker \(worker), which reports: \(message)"
        case .irreconcilable(let step, let shard):
            return "step \(step + 1) cannot be computed: workers returned three different results for shard \(shard) (do they run the same build and OpenBLAS kernel?)"
        }
    }
}

/// What the driver reports as it deals, for a log or a status file.
public enum DealingEvent: Sendable {
    case joined(name: String, live: Int)
    /// `shards` were out with the worker and go to the others.
    case lost(name: String, reason: String, shards: [Int], live: Int)
    /// Reported once each time the driver starts waiting for enough workers.
    case waiting(live: Int, needed: Int)
    case workerFailed(name: String, message: String)
    /// A check found the worker in the minority on `shard` of `step`; `redone` of its results are computed again.
    case distrusted(name: String, shard: Int, step: Int, redone: Int)
    /// A step whose shard failed on two workers was given up (`--on-nonfinite skip`).
    case stepSkipped(step: Int, reason: String)
    /// Two workers disagree on `shard` and no third is live to settle it.
    case needTieBreaker(shard: Int, step: Int)
}

/// One training step, whoever computes the shards: take the plan's next step, deal its shards to the pool's
/// live workers, collect exactly one result per shard, and hand them to the plan, which sums them along its
/// fixed reduction tree as they come and applies Adam. The rules, all here and all on the injected clock:
/// - workers pull work: each holds at most `maxHeld` shards (one order per shard), and as its results come
///   back (or, for results summed up the workers' tree, word that it computed them: `PoolEvent.computed`) it is
///   dealt the next undealt shards, lowest index first (in runs, `ShardRuns`, where workers sum what they hold),
///   so faster workers compute more; and only if it would
///   finish one of the shards left first (by how long the workers' shards take, `Membership.shareByFinish`), so a
///   slow worker is not handed a shard a faster one would be done with sooner. The least loaded worker is dealt
///   first (ties: join order), and workers still busy with orders of an earlier step last;
/// - once no shard is left to deal, an idle worker is dealt a copy of a straggler's shard (`speculateAfter`),
///   the one out the longest, at most two holders at a time and never to a worker that holds it already, nor of a
///   shard summed up the workers' tree (`ShardPool.isSummedByWorkers`);
/// - shards of a worker that is lost (it left, a send to it failed, it reported an error, or it held an order
///   past `deadline`) are dealt again;
/// - a result counts only from a worker that was dealt that shard in this step, and only the first one: late
///   results of earlier steps, repeats and results for undealt shards are counted and dropped. A pool may
///   deliver a whole subtree's sum instead (`PoolEvent.sum`); it counts only if none of its shards is in yet;
/// - nothing is dealt while fewer than `minWorkers` workers are live;
/// - with `verify` F, a fraction F of the shards is computed again on another worker and must agree bit for
///   bit (`Audit`); a worker in the minority is distrusted and its results of the step computed again.
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
    /// Shard → how often a worker holding it reported an error in this step.
    private var failures: [Int: Int] = [:]
    /// Workers a check found lying (or broken): never admitted again in this run.
    private var distrusted: Set<WorkerID> = []
    private var tieBreakersAsked: Set<Int> = []
    /// Which shard each worker is dealt next, in this step, when workers sum their shards (`ShardRuns`).
    private var runs: ShardRuns

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
        runs = ShardRuns(shards: plan.shardCount)
    }

    /// Workers that may be dealt shards now.
    public var liveWorkers: Int { members.count }
    /// The live workers in join order.
    public var workers: [Membership.Member] { members.live }

    /// Runs one step. Nil when a stop was requested before it completed: the plan is then as it was before the
    /// step (no state, weights or position changed), so a checkpoint written now resumes at this step.
    public func advance() throws -> StepSummary? {
        let planned = plan.next()
        var audit = Audit(step: planned.globalStep, shardCount: plan.shardCount, fraction: rules.verify, seed: rules.verifySeed)
        // A checked shard can expose a worker whose other results of the step are then thrown away: with checks,
        // nothing is reduced until every shard is settled.
        var reduction = StepReduction(plan: plan, holdAll: !audit.shards.isEmpty)
        members.beginStep()
        runs = ShardRuns(shards: plan.shardCount)
        failures = [:]
        tieBreakersAsked = []
        while !reduction.isComplete {
            if shouldStop() { return nil }
            let now = clock.now()
            for worker in members.overdue(now: now, deadline: rules.deadline) {
                lose(worker, because: "no result within \(rules.deadline) s")
            }
            let undealt = reduction.missing.filter { members.inFlight[$0] == nil }
            let checks = undealt.filter { audit.votes[$0] != nil }
            let fresh = undealt.filter { audit.votes[$0] == nil }
            if !fresh.isEmpty { deal(fresh, of: planned, now: now) }
            if !checks.isEmpty { try dealChecks(checks, of: planned, audit: audit, into: &reduction, now: now) }
            if undealt.isEmpty { speculate(planned, audit: audit, now: now) }
            do {
                for event in try pool.poll(until: now + rules.pollInterval) {
                    try handle(event, step: planned.globalStep, audit: &audit, into: &reduction)
                }
            } catch DealingError.shardFailed(let step, let shard, let worker, let message) where plan.onNonFinite == .skip {
                report(.stepSkipped(step: step, reason: "shard \(shard) failed twice, last on worker \(worker): \(message)"))
                return plan.skip()
            }
        }
        reduction.flush()
        return try plan.finish()
    }

    private func deal(_ shards: [Int], of planned: PlannedStep, now: Double) {
        guard members.count >= rules.minWorkers else {
            if !waiting { report(.waiting(live: members.count, needed: rules.minWorkers)) }
            waiting = true
            return
        }
        waiting = false
        // Only to a worker that would finish one of these shards first: a slower worker with room is not handed one
        // it would still be computing, queued behind another, when a faster one could have done it.
        var share = members.shareByFinish(shards.count, now: now, resolution: rules.pollInterval, excluding: stragglers(now: now))
        var left = shards
        while !left.isEmpty {
            let candidates = members.live.map(\.id).filter { id in share.map { $0[id, default: 0] > 0 } ?? true }
            guard let worker = leastLoaded(candidates) else { return }
            share?[worker, default: 0] -= 1
            // Runs only where workers sum what they hold: results one by one reach the driver's reducer, which holds
            // one pending sum per run, and holds the fewest when they come in index order.
            let shard = pool.workersSumTheirShards ? runs.pick(for: worker, undealt: left, workers: members.count) : left[0]
            left.removeAll { $0 == shard }
            give(shard, to: worker, of: planned, now: now)
        }
    }

    /// Workers whose front shard has been computing for more than `speculateAfter` times their usual shard time
    /// (and a poll interval longer): copies of what they hold go to idle workers, and they take no planned shard.
    private func stragglers(now: Double) -> Set<WorkerID> {
        Set(members.straggling(now: now, factor: rules.speculateAfter, margin: rules.pollInterval))
    }

    /// Of `candidates`, the worker with room for another shard that should take it: workers still busy with an
    /// earlier step's orders last, then the fewest unanswered orders, then join order (`candidates`' order).
    private func leastLoaded(_ candidates: [WorkerID]) -> WorkerID? {
        func rank(_ k: Int, _ id: WorkerID) -> (Int, Int, Int) {
            (members.byID[id]!.earlier.isEmpty ? 0 : 1, members.load(of: id), k)
        }
        return candidates.enumerated().filter { members.load(of: $0.element) < rules.maxHeld }
            .min { rank($0.offset, $0.element) < rank($1.offset, $1.element) }?.element
    }

    /// Deals one shard as an order of its own, so its result comes back as soon as it is computed.
    private func give(_ shard: Int, to worker: WorkerID, of planned: PlannedStep, now: Double) {
        members.assign(shard, to: worker, now: now)
        let order = WorkOrder(epoch: planned.epoch, shards: [planned.shards[shard]], weights: plan.state.weights.storage)
        if !pool.send(order, step: planned.globalStep, to: worker) { lose(worker, because: "cannot deliver its work") }
    }

    /// With nothing left to deal: each idle worker (no order unanswered) is dealt a copy of a shard held by a
    /// straggler alone, the one dealt the longest ago first. Which copy's result counts changes no bit.
    private func speculate(_ planned: PlannedStep, audit: Audit, now: Double) {
        guard members.count >= rules.minWorkers, rules.speculateAfter.isFinite else { return }
        // A shard a poll interval late is no straggler: on shards of a few milliseconds that is scheduling noise.
        let late = stragglers(now: now)
        guard !late.isEmpty else { return }
        // Not a shard summed up the workers' tree: a copy would keep the tree's sum from counting (see the pool).
        var candidates = members.inFlight.values.compactMap { holders in
            holders.count == 1 && late.contains(holders[0].worker) && !pool.isSummedByWorkers(holders[0].shard, step: planned.globalStep)
                ? holders[0] : nil
        }.sorted { ($0.since, $0.shard) < ($1.since, $1.shard) }
        for idle in members.live.map(\.id) where members.load(of: idle) == 0 {
            guard let k = candidates.firstIndex(where: {
                !members.held(by: idle).contains($0.shard) && !audit.voters(of: $0.shard).contains(idle)
            }) else { continue }
            stats.speculativeShards += 1
            give(candidates.remove(at: k).shard, to: idle, of: planned, now: now)
        }
    }

    /// Deals each shard that has a result but no agreement yet to a worker that neither returned nor holds it: the least
    /// loaded with room, earlier joiners first. A shard nobody else can check while one worker alone is live is
    /// taken as it is.
    private func dealChecks(
        _ shards: [Int], of planned: PlannedStep, audit: Audit, into reduction: inout StepReduction, now: Double
    ) throws(DealingError) {
        for s in shards {
            let voters = audit.voters(of: s)
            let eligible = members.live.map(\.id).filter { !voters.contains($0) && !members.held(by: $0).contains(s) }
            guard !eligible.isEmpty else {
                let votes = audit.votes[s]!
                if votes.count == 1 && members.count <= 1 {
                    _ = reduction.add(votes[0].result, by: nil)
                    stats.unverifiedShards += 1
                } else if votes.count >= 3 {
                    throw .irreconcilable(step: planned.globalStep, shard: s)
                } else if votes.count == 2 && tieBreakersAsked.insert(s).inserted {
                    report(.needTieBreaker(shard: s, step: planned.globalStep))
                }
                continue
            }
            // Every eligible worker busy: the check waits for one to have room.
            guard let worker = leastLoaded(eligible) else { continue }
            give(s, to: worker, of: planned, now: now)
        }
    }

    private func handle(
        _ event: PoolEvent, step: Int, audit: inout Audit, into reduction: inout StepReduction
    ) throws(DealingError) {
        switch event {
        case .joined(let worker, let name):
            if distrusted.contains(worker) {
                pool.forget(worker)
                return
            }
            if members.admit(worker, name: name) {
                stats.joins += 1
                report(.joined(name: name, live: members.count))
            }
        case .left(let worker, let reason):
            lose(worker, because: reason)
        case .failed(let worker, let message):
            guard let name = members.byID[worker]?.name else { return }
            report(.workerFailed(name: name, message: message))
            // A shard's result is the same wherever it runs, so a shard that failed twice fails everywhere
            // (a diverged run's non-finite gradient): dealing it again would loop forever.
            let held = members.held(by: worker).filter { members.inFlight[$0] != nil }
            for s in held { failures[s, default: 0] += 1 }
            if let s = held.first(where: { failures[$0]! >= 2 }) {
                throw .shardFailed(step: step, shard: s, worker: name, message: message)
            }
            lose(worker, because: "it reported an error")
        case .sum(let sumStep, let part, let holders):
            // A sum cannot be checked shard by shard, nor taken apart if one of its shards is in already: it counts
            // only whole and new. Its shards' holders then send their own results (the pool's business).
            guard sumStep == step else {
                stats.staleResults += part.node.count
                return
            }
            guard audit.shards.isEmpty, holders.count == part.node.count, part.node.shards.allSatisfy({ !reduction.has($0) }) else {
                stats.duplicateResults += part.node.count
                return
            }
            let now = clock.now()
            for (s, worker) in zip(part.node.shards, holders) {
                members.answered(s, by: worker, now: now)
                members.completed(s, by: worker)
            }
            reduction.add(part)
        case .released(let worker, let releasedStep, let shard):
            // Only once the shard is in: until then the worker's order is what the step waits for.
            if releasedStep == step {
                guard reduction.has(shard) else { return }
                members.released(shard, by: worker, now: clock.now())
            } else if releasedStep < step {
                members.answeredEarlier(1, by: worker, now: clock.now())
            }
        case .computed(let worker, let computedStep, let shard):
            // An earlier step's order is settled by its result or a release, as before.
            guard computedStep == step else { return }
            if reduction.has(shard) {
                members.answered(shard, by: worker, now: clock.now())
            } else {
                members.computed(shard, by: worker, now: clock.now())
            }
        case .results(let worker, let resultStep, let results):
            let now = clock.now()
            guard resultStep == step else {
                stats.staleResults += results.count
                members.answeredEarlier(results.count, by: worker, now: now)
                return
            }
            for r in results { members.answered(r.index, by: worker, now: now) }
            for r in results where !distrusted.contains(worker) {
                guard members.wasDealt(r.index, to: worker) else {
                    stats.undealtResults += 1
                    pool.penalize(worker)
                    continue
                }
                guard audit.shards.contains(r.index) else {
                    if reduction.add(r, by: worker) {
                        members.completed(r.index, by: worker)
                    } else {
                        stats.duplicateResults += 1
                    }
                    continue
                }
                guard !reduction.has(r.index), !audit.hasVoted(worker, on: r.index) else {
                    stats.duplicateResults += 1
                    continue
                }
                audit.record(r, from: worker)
                members.completed(r.index, by: worker)
                if let (agreed, minority) = audit.verdict(on: r.index) {
                    _ = reduction.add(agreed, by: nil)
                    stats.verifiedShards += 1
                    if !minority.isEmpty { stats.mismatches += 1 }
                    for w in minority { distrust(w, shard: r.index, step: step, audit: &audit, reduction: &reduction) }
                } else if audit.votes[r.index]!.count >= 3 {
                    throw .irreconcilable(step: step, shard: r.index)
                }
            }
        }
    }

    private func distrust(_ worker: WorkerID, shard: Int, step: Int, audit: inout Audit, reduction: inout StepReduction) {
        guard distrusted.insert(worker).inserted else { return }
        let name = members.byID[worker]?.name ?? "unknown"
        members.remove(worker)
        pool.forget(worker)
        audit.strike(worker)
        let redone = reduction.discard(from: worker)
        stats.distrustedWorkers += 1
        report(.distrusted(name: name, shard: shard, step: step, redone: redone.count))
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
