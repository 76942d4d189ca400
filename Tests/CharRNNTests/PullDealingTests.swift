import XCTest
@testable import CharRNN

/// Workers pull work and idle workers take copies of a straggler's shards, on the fake clock with workers that
/// compute their orders one at a time (`ScriptedPool.Behaviour.paced`). Whoever computes what, the weights
/// must be bit for bit those of the in-process run.
final class PullDealingTests: XCTestCase {
    typealias Harness = StepDriverTests.Harness

    /// 8 shards over a worker and one at half its speed: the fast one computes about two thirds of them, and a
    /// step takes about the share-by-speed time (8 / 1.5 = 5.33 s), not the 8 s of an even split.
    func testFasterWorkerComputesMore() throws {
        let h = try Harness(deadline: 100, shards: 8)
        let steps = try stepTimes(h, fast: 1, slow: 2)
        let computed = Dictionary(uniqueKeysWithValues: h.driver.workers.map { ($0.name, $0.shardsComputed) })
        XCTAssertEqual(computed.values.reduce(0, +), 8 * StepDriverTests.steps)
        XCTAssertGreaterThanOrEqual(computed["fast"]!, 2 * computed["slow"]! - 3, "\(computed)")
        // The first step has no shard times to spot a straggler by; the later ones may use copies.
        for t in steps { XCTAssertLessThanOrEqual(t, 8 / 1.5 * 1.15, "steps took \(steps)") }
    }

    /// 8 shards over a worker and one 2.3 times slower: the best split is 6 : 2 (6 s; 5 : 3 takes 6.9 s). A shard
    /// goes to the worker that would finish it first, so the slow one is not handed a 3rd shard that it would still
    /// be computing, queued behind its 2nd, after the fast one is done.
    func testShardsGoWhereTheyWouldBeFinishedFirst() throws {
        let h = try Harness(deadline: 100, shards: 8)
        let steps = try stepTimes(h, fast: 1, slow: 2.3)
        let dealt = h.pool.dealt.reduce(into: [String: Int]()) { $0[$1.worker, default: 0] += $1.shards.count }
        // The first step has no shard times yet; each later one takes the best split's 6 s, plus answers' latency.
        for t in steps.dropFirst() { XCTAssertLessThanOrEqual(t, 6.1, "steps took \(steps), dealt: \(dealt)") }
    }

    /// The same with the workers summing the step's gradients up the tree among themselves: no result comes back
    /// before the root, but each worker's word that it computed a shard gets it the next, so the fast one still
    /// computes about two thirds and a step still takes about the share-by-speed time (plus the tree's latency).
    func testPulledShardsSummedUpTheTreeStillGoToTheFasterWorker() throws {
        let h = try Harness(deadline: 100, shards: 8, timeLimit: 100)
        h.pool.summedUpTree = true
        let steps = try stepTimes(h, fast: 1, slow: 2)
        XCTAssertEqual(h.driver.stats.speculativeShards, 0, "a worker that computed its shards is no straggler")
        let dealt = Dictionary(grouping: h.pool.dealt, by: \.worker).mapValues { $0.count }
        XCTAssertEqual(dealt.values.reduce(0, +), 8 * StepDriverTests.steps, "each shard dealt once")
        XCTAssertGreaterThanOrEqual(dealt["fast"]!, 2 * dealt["slow"]! - 3, "\(dealt)")
        for t in steps { XCTAssertLessThanOrEqual(t, 8 / 1.5 * 1.15 + h.pool.treeLatency, "steps took \(steps)") }
    }

    /// Workers that sum up the tree are dealt runs of neighbouring shards (`ShardRuns`): four equal workers and 8
    /// shards, each worker holds one aligned pair in every step, a whole subtree it sends as one sum. Dealt lowest
    /// index first, each held two shards four apart (0 and 4, 1 and 5, …), and every shard's sum went to a peer.
    func testWorkersSummingUpTheTreeAreDealtRuns() throws {
        let h = try Harness(deadline: 100, shards: 8, timeLimit: 100)
        h.pool.summedUpTree = true
        for name in ["a", "b", "c", "d"] { h.pool.join(name, at: 0, behaviour: .paced(1)) }
        try h.finish(limit: 100)
        let tree = ReductionTree(shards: 8)
        for step in Set(h.pool.dealt.map(\.step)) {
            let held = Dictionary(grouping: h.pool.dealt.filter { $0.step == step }, by: \.worker).mapValues { Set($0.flatMap(\.shards)) }
            XCTAssertEqual(held.count, 4, "step \(step): \(held)")
            for (worker, shards) in held {
                XCTAssertEqual(tree.subtrees(within: shards).count, 1, "step \(step): \(worker) holds \(shards.sorted())")
            }
        }
    }

    /// A worker that leaves after computing shards into the tree (their sums never reach the root) has them dealt
    /// again with the ones it still held; the other worker gives up on the tree after its patience and sends its
    /// own results, and the weights are those of the in-process run.
    func testWorkerLostAfterComputingIntoTheTreeHasThoseShardsDealtAgain() throws {
        let h = try Harness(deadline: 100, shards: 8, timeLimit: 60)
        h.pool.summedUpTree = true
        h.pool.join("steady", at: 0, behaviour: .paced(1))
        h.pool.join("doomed", at: 0, behaviour: .paced(1))
        h.pool.leave("doomed", at: 2.5)
        try h.finish(limit: 60)
        XCTAssertEqual(h.driver.stats.lostWorkers, 1)
        // Dealt in runs: steady 0..<4, doomed 4..<8.
        XCTAssertEqual(h.driver.stats.reassignedShards, 4, "shards 4 and 5, computed into the tree, and 6 and 7, still held")
        let again = h.pool.dealt.filter { $0.worker == "steady" && $0.step == 0 }.map(\.shards)
        XCTAssertEqual(again, [[0], [1], [2], [3], [4], [5], [6], [7]])
    }

    /// A copy's result would keep the workers' sum from counting: a shard summed up the tree is not copied to an idle
    /// worker, even from one that stalls (the transport's heartbeat and the tree's patience deal with those).
    func testShardsSummedByWorkersAreNotCopied() throws {
        let h = try Harness(deadline: 100, timeLimit: 100)
        h.pool.summedUpTree = true
        h.pool.join("steady", at: 0, behaviour: .paced(1))
        h.pool.join("stalled", at: 0, behaviour: .paced(1, stalled: 2.5..<4.8))
        try h.finish(limit: 100)
        XCTAssertEqual(h.driver.stats.speculativeShards, 0)
    }

    /// Workers as fast as each other, or merely slower, are never doubled: a copy that loses costs its worker
    /// the start of the next step.
    func testNoCopiesWithoutAStraggler() throws {
        let h = try Harness(deadline: 100, shards: 8)
        h.pool.join("a", at: 0, behaviour: .paced(1))
        h.pool.join("b", at: 0, behaviour: .paced(1.2))
        h.pool.join("c", at: 0, behaviour: .paced(2))
        try h.finish()
        XCTAssertEqual(h.driver.stats.speculativeShards, 0)
        XCTAssertEqual(h.driver.stats.duplicateResults, 0)
    }

    /// One of two workers stalls (SIGSTOP) from t 2.5 to 4.8, in step 1, holding shards 1 and 3. Once the other
    /// is idle it takes copies of both, so the step ends at 6, long before the deadline (100); the stalled
    /// worker's late answer for shard 1 is a duplicate, the one for shard 3 arrives in step 2 and is stale.
    func testStalledWorkersShardsAreCopiedAndTheFirstResultCounts() throws {
        let h = try Harness(deadline: 100)
        h.pool.join("steady", at: 0, behaviour: .paced(1))
        h.pool.join("stalled", at: 0, behaviour: .paced(1, stalled: 2.5..<4.8))
        try h.finish(limit: 20)
        XCTAssertEqual(h.driver.stats.speculativeShards, 2)
        XCTAssertEqual(h.driver.stats.duplicateResults, 1)
        XCTAssertEqual(h.driver.stats.staleResults, 1)
        XCTAssertEqual(h.driver.stats.lostWorkers, 0)
        let copies = h.pool.dealt.filter { $0.worker == "steady" && $0.step == 1 }.map(\.shards)
        XCTAssertEqual(copies, [[0], [2], [1], [3]], "its own shards, then copies of the stalled worker's")
        // Step 2 starts at 6 while the stalled worker still computes shard 3 of step 1: it is dealt after steady.
        XCTAssertEqual(h.pool.dealt.filter { $0.step == 2 }.prefix(2).map(\.worker), ["steady", "steady"])
        XCTAssertLessThan(h.clock.t, 12)
    }

    /// Stalled for good: the copies finish the step at once; the stalled worker holds its two unanswered
    /// orders, so it is dealt nothing more, and it is lost only when they pass the deadline.
    func testWorkerStalledForGoodIsWorkedAroundThenLostAtTheDeadline() throws {
        let h = try Harness(deadline: 6)
        h.pool.join("steady", at: 0, behaviour: .paced(1))
        h.pool.join("stalled", at: 0, behaviour: .paced(1, stalled: 2.5..<1_000))
        try h.finish(limit: 30)
        XCTAssertEqual(h.driver.stats.speculativeShards, 2)
        XCTAssertFalse(h.pool.dealt.contains { $0.worker == "stalled" && $0.step == 2 })
        XCTAssertEqual(h.driver.stats.lostWorkers, 1, "its orders of step 1, dealt at 2, are late at 8, in step 2")
        XCTAssertEqual(h.driver.workers.map(\.name), ["steady"])
    }

    /// Paced workers, one of which dies; with every shard checked by a second worker.
    func testLostWorkersAndChecksStillBehave() throws {
        let h = try Harness(deadline: 100, verify: 1, shards: 8)
        h.pool.join("a", at: 0, behaviour: .paced(1))
        h.pool.join("b", at: 0, behaviour: .paced(1.5))
        h.pool.join("doomed", at: 0, behaviour: .diesOnOrder(5))
        try h.finish()
        XCTAssertEqual(h.driver.stats.lostWorkers, 1)
        XCTAssertEqual(h.driver.stats.verifiedShards, 8 * StepDriverTests.steps)
        XCTAssertEqual(h.driver.stats.mismatches, 0)
    }

    /// A forger among paced workers is caught by the checks and its results computed again.
    func testForgerAmongPacedWorkersIsCaught() throws {
        let h = try Harness(deadline: 100, verify: 1, shards: 8)
        h.pool.join("a", at: 0, behaviour: .paced(1))
        h.pool.join("b", at: 0, behaviour: .paced(1))
        h.pool.join("forger", at: 0, behaviour: .forges)
        try h.finish()
        XCTAssertEqual(h.driver.stats.distrustedWorkers, 1)
        XCTAssertEqual(Set(h.driver.workers.map(\.name)), ["a", "b"])
    }

    /// Runs `h` to the end with a worker "fast" and a worker "slow" computing a shard in `fast` and `slow` seconds:
    /// each step's duration, once the weights are checked against the in-process run's (empty if the run hung).
    private func stepTimes(_ h: Harness, fast: Double, slow: Double, file: StaticString = #filePath, line: UInt = #line) throws -> [Double] {
        h.pool.join("fast", at: 0, behaviour: .paced(fast))
        h.pool.join("slow", at: 0, behaviour: .paced(slow))
        var starts: [Double] = []
        while !h.plan.isFinished {
            starts.append(h.clock.t)
            guard try h.driver.advance() != nil else {
                XCTFail("the run hangs", file: file, line: line)
                return []
            }
        }
        XCTAssertEqual(h.plan.state.weights.storage.array, h.reference, "weights differ from the in-process run", file: file, line: line)
        return zip(starts.dropFirst() + [h.clock.t], starts).map { $0 - $1 }
    }
}
