/// Which workers are alive and which shards each holds in the current step. Pure bookkeeping with the time
/// passed in, so the step driver's liveness and dealing rules are testable without processes or sleeps.
///
/// A worker is a member from the moment it joins until it is declared lost (the pool says it left, a send to
/// it fails, or shards it holds are not back within the deadline). A worker wrongly declared lost hears no
/// more from the pool, introduces itself again and is a member again.
///
/// A worker computes its orders one at a time in the order they arrive, and answers each; an order of a newer
/// step makes it drop the orders of earlier steps still queued (not the one it is computing). So a worker's
/// shards of the step are its queue, front first, and the front has been computing since the worker's previous
/// answer (or since it was dealt, when the queue was empty).
public struct Membership {
    public struct Member: Equatable {
        public let id: WorkerID
        public var name: String
        /// Join order: earlier joiners are dealt earlier shards.
        public let joined: Int
        /// Shards whose result from this worker counted, since it joined.
        public var shardsComputed = 0
        /// When its orders of earlier steps that it has not answered were dealt, oldest first (it is still
        /// computing one, or stalled): it is dealt after the others, and lost once the oldest is past the deadline.
        public var earlier: [Double] = []
        /// How long its shards take, from the start of computing to the answer: it follows a longer shard at
        /// once and a shorter one slowly, so ordinary jitter does not make the worker look late. Nil before its
        /// first answer.
        public var shardTime: Double?
        /// How long a shard takes once the worker has the step's weights: timed from its previous answer, never on
        /// its first order of a step, which also waits for the weights (long on a slow link or down a relay tree).
        /// A plain running mean, what the dealing plans with (`shareByFinish`). Nil until it has answered an order
        /// that was not its first of the step.
        public var nextShardTime: Double?
        /// Since when its front shard has been computing; nil with nothing held.
        var busySince: Double?
    }

    /// One dealing of a shard to a worker.
    public struct Holding: Equatable {
        public let shard: Int
        public let worker: WorkerID
        public let since: Double
    }

    public private(set) var byID: [WorkerID: Member] = [:]
    /// shard → its holders in this step, earliest dealt first (a second one only for a speculative copy), while
    /// its result is not in.
    public private(set) var inFlight: [Int: [Holding]] = [:]
    /// worker → the shards of this step it holds, in the order it computes them (including shards whose result
    /// came from another worker meanwhile: it is still busy with them).
    private var queues: [WorkerID: [Holding]] = [:]
    /// worker → the shards of this step it computed whose result is on its way up the workers' reduction tree
    /// (`computed`): no load and no deadline (the tree's own patience bounds the wait, and a worker that dies is
    /// seen leaving), but dealt again if the worker is lost before they are in.
    private var parked: [WorkerID: [Int]] = [:]
    /// shard → every worker it was dealt to in the current step: the only workers whose result for it counts.
    private var dealt: [Int: Set<WorkerID>] = [:]
    /// worker → the shard of its first order in the current step.
    private var firstOrders: [WorkerID: Int] = [:]
    private var joinCounter = 0

    public init() {}

    /// Members in join order.
    public var live: [Member] { byID.values.sorted { $0.joined < $1.joined } }
    public var count: Int { byID.count }

    /// Adds a worker (no-op for a member); returns true when it is new.
    @discardableResult
    public mutating func admit(_ id: WorkerID, name: String) -> Bool {
        if byID[id] != nil { return false }
        joinCounter += 1
        byID[id] = Member(id: id, name: name, joined: joinCounter)
        return true
    }

    /// Removes a worker. Returns the shards it held that nobody else holds: out no longer.
    @discardableResult
    public mutating func remove(_ id: WorkerID) -> [Int] {
        byID[id] = nil
        let held = (queues.removeValue(forKey: id)?.map(\.shard) ?? []) + (parked.removeValue(forKey: id) ?? [])
        firstOrders[id] = nil
        var orphans: [Int] = []
        for s in held {
            guard var holders = inFlight[s] else { continue }
            holders.removeAll { $0.worker == id }
            inFlight[s] = holders.isEmpty ? nil : holders
            if holders.isEmpty { orphans.append(s) }
        }
        return orphans.sorted()
    }

    /// The shards of this step `id` holds, in the order it computes them.
    public func held(by id: WorkerID) -> [Int] { queues[id]?.map(\.shard) ?? [] }

    /// Orders `id` has not answered, of this step and earlier ones.
    public func load(of id: WorkerID) -> Int { (queues[id]?.count ?? 0) + (byID[id]?.earlier.count ?? 0) }

    /// Deals `shard` to `worker` (a member).
    public mutating func assign(_ shard: Int, to worker: WorkerID, now: Double) {
        guard byID[worker] != nil else { return }
        let holding = Holding(shard: shard, worker: worker, since: now)
        inFlight[shard, default: []].append(holding)
        dealt[shard, default: []].insert(worker)
        if queues[worker, default: []].isEmpty { byID[worker]?.busySince = now }
        if firstOrders[worker] == nil { firstOrders[worker] = shard }
        queues[worker, default: []].append(holding)
        // The new order makes the worker drop its queued orders of earlier steps: only the one it computes is left.
        if let m = byID[worker], m.earlier.count > 1 { byID[worker]!.earlier = [m.earlier[0]] }
    }

    /// Whether `worker` was dealt `shard` in this step (even if it was declared lost since).
    public func wasDealt(_ shard: Int, to worker: WorkerID) -> Bool { dealt[shard]?.contains(worker) ?? false }

    /// `worker` answered `shard` of this step (whether or not its result counted): it is no longer busy with it,
    /// and the time it took updates its `shardTime`.
    public mutating func answered(_ shard: Int, by worker: WorkerID, now: Double) {
        unqueue(shard, by: worker, now: now)
    }

    /// `worker`'s order for `shard` needs no answer any more (`PoolEvent.released`): it is no longer busy with it,
    /// but its shard time stays as it was, since the release came when the step was done, not when it computed.
    public mutating func released(_ shard: Int, by worker: WorkerID, now: Double) {
        unqueue(shard, by: worker, now: now, timed: false)
    }

    /// `worker` computed `shard` of this step, whose result went up the workers' reduction tree instead of coming
    /// back: it is no longer busy with it (as `answered`), but the shard stays out, held by it, until its result is
    /// in. Ignored unless the worker is computing it.
    public mutating func computed(_ shard: Int, by worker: WorkerID, now: Double) {
        if unqueue(shard, by: worker, now: now) { parked[worker, default: []].append(shard) }
    }

    /// Takes `shard` off `worker`'s queue, and unless `timed` is false counts the time it took into `shardTime`
    /// (and into `nextShardTime` unless it was the worker's first order of the step); false when it was not there.
    @discardableResult
    private mutating func unqueue(_ shard: Int, by worker: WorkerID, now: Double, timed: Bool = true) -> Bool {
        guard let k = queues[worker]?.firstIndex(where: { $0.shard == shard }) else { return false }
        queues[worker]!.remove(at: k)
        if timed, let since = byID[worker]?.busySince {
            let took = max(0, now - since)
            byID[worker]!.shardTime = byID[worker]!.shardTime.map { took > $0 ? took : 0.8 * $0 + 0.2 * took } ?? took
            if firstOrders[worker] != shard {
                byID[worker]!.nextShardTime = byID[worker]!.nextShardTime.map { 0.8 * $0 + 0.2 * took } ?? took
            }
        }
        byID[worker]?.busySince = queues[worker]!.isEmpty ? nil : now
        return true
    }

    /// `worker` answered `count` orders of earlier steps.
    public mutating func answeredEarlier(_ count: Int, by worker: WorkerID, now: Double) {
        guard let m = byID[worker] else { return }
        byID[worker]!.earlier.removeFirst(min(count, m.earlier.count))
        // It was busy with those: its front shard of this step starts now.
        if m.busySince != nil { byID[worker]!.busySince = now }
    }

    /// A shard's result arrived from `worker` and counted: the shard is no longer out.
    public mutating func completed(_ shard: Int, by worker: WorkerID) {
        inFlight[shard] = nil
        byID[worker]?.shardsComputed += 1
    }

    /// Members holding an unanswered order (of this step or an earlier one) dealt more than `deadline` seconds
    /// ago, in join order.
    public func overdue(now: Double, deadline: Double) -> [WorkerID] {
        live.filter { m in
            m.earlier.contains { now - $0 > deadline } || (queues[m.id]?.contains { now - $0.since > deadline } ?? false)
        }.map(\.id)
    }

    /// Members whose front shard has been computing for more than `factor` times their usual shard time (or,
    /// for a worker with no answer yet, the median of the others'), and `margin` seconds longer than it: a copy
    /// of what they hold may be dealt to an idle worker. Empty while nobody has answered anything.
    public func straggling(now: Double, factor: Double, margin: Double = 0) -> [WorkerID] {
        let known = byID.values.compactMap(\.shardTime).sorted()
        let median = known.isEmpty ? nil : known[known.count / 2]
        return live.filter { m in
            guard let since = m.busySince, let usual = m.shardTime ?? median else { return false }
            return now - since > max(factor * usual, usual + margin)
        }.map(\.id)
    }

    /// How `n` more shards are best shared out: each in turn to the worker that would finish it first, given what
    /// each holds and how long its shards take (`nextShardTime`, else `shardTime`; a worker with neither: the
    /// others' median), ties to the earlier joiner. Times under `resolution` count as `resolution`: the driver
    /// cannot tell them apart, and a worker timed at 0 would be planned every shard. Workers in `excluded`
    /// (stragglers) take none. Nil while nobody has a shard time, or when every worker is excluded: then there is
    /// nothing to go by.
    public func shareByFinish(
        _ n: Int, now: Double, resolution: Double = 0, excluding excluded: Set<WorkerID> = []
    ) -> [WorkerID: Int]? {
        let known = byID.values.compactMap { $0.nextShardTime ?? $0.shardTime }.sorted()
        guard !known.isEmpty else { return nil }
        let median = known[known.count / 2]
        var free: [(id: WorkerID, at: Double, time: Double)] = live.filter { !excluded.contains($0.id) }.map { m in
            let time = max(resolution, m.nextShardTime ?? m.shardTime ?? median)
            let queued = Double(queues[m.id]?.count ?? 0)
            // Free once it has computed what it holds. Its front shard of this step is due one shard time after it
            // started (or now, if that has passed: it is late, not yet a straggler); behind orders of an earlier
            // step it has not started.
            guard m.earlier.isEmpty else { return (m.id, now + (Double(m.earlier.count) + queued) * time, time) }
            guard queued > 0, let since = m.busySince else { return (m.id, now, time) }
            return (m.id, max(now, since + time) + (queued - 1) * time, time)
        }
        guard !free.isEmpty else { return nil }
        var share: [WorkerID: Int] = [:]
        for _ in 0..<n {
            let k = free.indices.min { free[$0].at + free[$0].time < free[$1].at + free[$1].time }!
            share[free[k].id, default: 0] += 1
            free[k].at += free[k].time
        }
        return share
    }

    /// Forgets every assignment: a new step begins. Orders still unanswered become earlier orders.
    public mutating func beginStep() {
        for (id, queue) in queues where !queue.isEmpty { byID[id]?.earlier += queue.map(\.since) }
        for id in byID.keys { byID[id]!.busySince = nil }
        queues.removeAll()
        parked.removeAll()
        inFlight.removeAll()
        dealt.removeAll()
        firstOrders.removeAll()
    }
}
