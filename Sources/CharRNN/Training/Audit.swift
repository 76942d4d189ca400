/// Verified results (`--verify F`): results are bitwise deterministic, so a second computation of a shard on
/// another worker must give the same bits; checking a fraction F of the shards costs about F of a step.
///
/// Which shards of a step are checked is a draw from the coordinator's own seed, which workers never see, so a
/// worker cannot tell a checked shard from another. A checked shard's result counts once two workers agree on
/// it bit for bit. When two disagree, a third settles it; the worker in the minority is distrusted: it is
/// dealt nothing more in the run, and its results of the step are thrown away and computed again. Its
/// unchecked results of earlier steps are already in the weights: with F < 1 a forger is caught with
/// probability 1 − (1 − F)ᵏ after k forged shards, not at once.
struct Audit {
    /// One distinct result for a shard and the workers that returned it.
    struct Vote {
        var result: ShardResult
        var voters: [WorkerID]
    }

    /// The checked shards of this step.
    let shards: Set<Int>
    private(set) var votes: [Int: [Vote]] = [:]

    init(step: Int, shardCount: Int, fraction: Double, seed: UInt64) {
        shards = fraction <= 0 ? [] : Set((0..<shardCount).filter { Audit.draw(seed: seed, step: step, shard: $0) < fraction })
    }

    /// A uniform number in [0, 1) for (seed, step, shard): SplitMix64 over the three.
    static func draw(seed: UInt64, step: Int, shard: Int) -> Double {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15 &* (UInt64(step) &* 0x1_0000_0001 &+ UInt64(shard) &+ 1)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53)
    }

    /// Whether `worker` already returned a result for `shard`.
    func hasVoted(_ worker: WorkerID, on shard: Int) -> Bool {
        votes[shard]?.contains { $0.voters.contains(worker) } ?? false
    }

    /// Workers that returned a result for `shard`: a check must go to someone else.
    func voters(of shard: Int) -> Set<WorkerID> { Set(votes[shard]?.flatMap(\.voters) ?? []) }

    mutating func record(_ r: ShardResult, from worker: WorkerID) {
        if let k = votes[r.index]?.firstIndex(where: { Audit.same($0.result, r) }) {
            votes[r.index]![k].voters.append(worker)
        } else {
            votes[r.index, default: []].append(Vote(result: r, voters: [worker]))
        }
    }

    /// The result two workers agree on, if any, and the workers that returned something else.
    func verdict(on shard: Int) -> (result: ShardResult, minority: [WorkerID])? {
        guard let all = votes[shard], let agreed = all.first(where: { $0.voters.count >= 2 }) else { return nil }
        return (agreed.result, all.filter { !Audit.same($0.result, agreed.result) }.flatMap(\.voters))
    }

    /// Forgets `worker`'s votes (it is distrusted).
    mutating func strike(_ worker: WorkerID) {
        for (s, all) in votes {
            votes[s] = all.compactMap { v in
                var v = v
                v.voters.removeAll { $0 == worker }
                return v.voters.isEmpty ? nil : v
            }
        }
    }

    static func same(_ a: ShardResult, _ b: ShardResult) -> Bool {
        a.loss.bitPattern == b.loss.bitPattern && a.state.bitwiseEqual(b.state) && a.gradient.bitwiseEqual(b.gradient)
    }
}
