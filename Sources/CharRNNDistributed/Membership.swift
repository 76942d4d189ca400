/// Which workers are alive and which shards each holds for the current step. Pure bookkeeping with an
/// injected clock (`now` is passed in), so liveness rules are testable without processes or sleeps.
///
/// A worker is identified by its ZeroMQ routing id. It is a member from its hello until it is declared lost:
/// a send to it fails, or shards it holds are not back within the deadline. A worker wrongly declared lost
/// hears no more pings, says hello again and is a member again.
public struct Membership {
    public struct Member: Equatable {
        public let id: [UInt8]
        public var name: String
        public let joined: Int
        public var welcomed: Bool
    }

    public private(set) var members: [[UInt8]: Member] = [:]
    /// shard → (worker, when it was sent): shards of the current step out with a worker.
    public private(set) var inFlight: [Int: (worker: [UInt8], since: Double)] = [:]
    /// shard → every worker it was given to in the current step: the only peers whose result for it counts.
    private var dealt: [Int: Set<[UInt8]>] = [:]
    private var joinCounter = 0

    public init() {}

    /// Members in join order: the order shards are dealt out in.
    public var live: [Member] { members.values.sorted { $0.joined < $1.joined } }

    /// Adds a worker (no-op for a member); returns true when it is new.
    @discardableResult
    public mutating func admit(_ id: [UInt8], name: String) -> Bool {
        if members[id] != nil { return false }
        joinCounter += 1
        members[id] = Member(id: id, name: name, joined: joinCounter, welcomed: false)
        return true
    }

    public mutating func markWelcomed(_ id: [UInt8]) { members[id]?.welcomed = true }

    /// Removes a worker; the shards it held go back to the unassigned pool. Returns them.
    @discardableResult
    public mutating func remove(_ id: [UInt8]) -> [Int] {
        members[id] = nil
        let orphans = inFlight.filter { $0.value.worker == id }.map(\.key).sorted()
        for s in orphans { inFlight[s] = nil }
        return orphans
    }

    /// Deals `shards` out to the live, welcomed members in contiguous blocks (earlier joiners get the
    /// earlier blocks, and one more shard when they do not divide evenly). Returns worker → shards.
    public mutating func assign(_ shards: [Int], now: Double) -> [(worker: [UInt8], shards: [Int])] {
        let workers = live.filter(\.welcomed)
        guard !workers.isEmpty, !shards.isEmpty else { return [] }
        var out: [(worker: [UInt8], shards: [Int])] = []
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

    /// Whether `worker` was given `shard` in this step (even if it was declared lost since).
    public func wasDealt(_ shard: Int, to worker: [UInt8]) -> Bool { dealt[shard]?.contains(worker) ?? false }

    /// A shard's result arrived: it is no longer out.
    public mutating func completed(_ shard: Int) { inFlight[shard] = nil }

    /// Members holding a shard sent more than `deadline` seconds ago.
    public func overdue(now: Double, deadline: Double) -> [[UInt8]] {
        Array(Set(inFlight.values.filter { now - $0.since > deadline }.map(\.worker)))
    }

    /// Forgets every assignment (a new step begins).
    public mutating func clearAssignments() {
        inFlight.removeAll()
        dealt.removeAll()
    }
}
