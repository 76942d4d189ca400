/// Which workers are alive and which shards each holds in the current step. Pure bookkeeping with the time
/// passed in, so the step driver's liveness and dealing rules are testable without processes or sleeps.
///
/// A worker is a member from the moment it joins until it is declared lost (the pool says it left, a send to
/// it fails, or shards it holds are not back within the deadline). A worker wrongly declared lost hears no
/// more from the pool, introduces itself again and is a member again.
public struct Membership {
    public struct Member: Equatable {
        public let id: WorkerID
        public var name: String
        /// Join order: earlier joiners are dealt earlier shards.
        public let joined: Int
        /// Shards whose result from this worker counted, since it joined.
        public var shardsComputed = 0
    }

    public private(set) var byID: [WorkerID: Member] = [:]
    /// shard → (worker, when it was dealt): shards of the current step out with a worker.
    public private(set) var inFlight: [Int: (worker: WorkerID, since: Double)] = [:]
    /// shard → every worker it was dealt to in the current step: the only workers whose result for it counts.
    private var dealt: [Int: Set<WorkerID>] = [:]
    private var joinCounter = 0

    public init() {}

    /// Members in join order: the order shards are dealt in.
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

    /// Removes a worker; the shards it held are out no longer. Returns them.
    @discardableResult
    public mutating func remove(_ id: WorkerID) -> [Int] {
        byID[id] = nil
        let orphans = held(by: id)
        for s in orphans { inFlight[s] = nil }
        return orphans
    }

    /// The shards out with `id`, in order.
    public func held(by id: WorkerID) -> [Int] { inFlight.filter { $0.value.worker == id }.map(\.key).sorted() }

    /// Deals `shards` to the members in contiguous blocks (earlier joiners get the earlier blocks, and one
    /// more shard when they do not divide evenly). Returns worker → shards.
    public mutating func assign(_ shards: [Int], now: Double) -> [(worker: WorkerID, shards: [Int])] {
        let workers = live
        guard !workers.isEmpty, !shards.isEmpty else { return [] }
        var out: [(worker: WorkerID, shards: [Int])] = []
        var start = 0
        for (k, w) in workers.enumerated() {
            let count = shards.count / workers.count + (k < shards.count % workers.count ? 1 : 0)
            guard count > 0 else { continue }
            let block = Array(shards[start..<(start + count)])
            start += count
            for s in block {
                inFlight[s] = (w.id, now)
                dealt[s, default: []].insert(w.id)
            }
            out.append((w.id, block))
        }
        return out
    }

    /// Deals one shard to one member (a check of another worker's result).
    public mutating func assign(_ shard: Int, to worker: WorkerID, now: Double) {
        inFlight[shard] = (worker, now)
        dealt[shard, default: []].insert(worker)
    }

    /// Whether `worker` was dealt `shard` in this step (even if it was declared lost since).
    public func wasDealt(_ shard: Int, to worker: WorkerID) -> Bool { dealt[shard]?.contains(worker) ?? false }

    /// A shard's result arrived from `worker` and counted: the shard is no longer out.
    public mutating func completed(_ shard: Int, by worker: WorkerID) {
        inFlight[shard] = nil
        byID[worker]?.shardsComputed += 1
    }

    /// Members holding a shard dealt more than `deadline` seconds ago, in join order.
    public func overdue(now: Double, deadline: Double) -> [WorkerID] {
        let late = Set(inFlight.values.filter { now - $0.since > deadline }.map(\.worker))
        return live.map(\.id).filter(late.contains)
    }

    /// Forgets every assignment: a new step begins.
    public mutating func beginStep() {
        inFlight.removeAll()
        dealt.removeAll()
    }
}
