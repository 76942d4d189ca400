import XCTest
@testable import CharRNN

/// The bookkeeping under the step driver: who is live, who holds which shard since when.
final class MembershipTests: XCTestCase {
    let (a, b, c) = (WorkerID([1]), WorkerID([2]), WorkerID([3]))

    func testMembersInJoinOrderAndQueuesInDealOrder() {
        var m = Membership()
        m.admit(b, name: "b")
        m.admit(a, name: "a")
        XCTAssertFalse(m.admit(a, name: "a again"), "a member is admitted once")
        XCTAssertEqual(m.live.map(\.id), [b, a])
        m.assign(3, to: a, now: 0)
        m.assign(1, to: a, now: 0)
        m.assign(2, to: c, now: 0)
        XCTAssertEqual(m.held(by: a), [3, 1], "the order it computes them in")
        XCTAssertEqual(m.held(by: c), [], "nothing is dealt to a non-member")
        XCTAssertNil(m.inFlight[2])
    }

    func testRemovingAWorkerReturnsTheShardsOnlyItHeldButItsResultsStillCount() {
        var m = Membership()
        m.admit(a, name: "a")
        m.admit(b, name: "b")
        for s in 0..<2 { m.assign(s, to: a, now: 0) }
        for s in 2..<4 { m.assign(s, to: b, now: 0) }
        m.assign(2, to: a, now: 1)   // a speculative copy
        m.answered(3, by: b, now: 1)
        m.completed(3, by: b)
        XCTAssertEqual(m.remove(b), [], "shard 2 is still out with a")
        XCTAssertEqual(m.inFlight[2]?.map(\.worker), [a])
        XCTAssertEqual(m.live.map(\.name), ["a"])
        // Its results are bitwise those anyone would compute: one for a shard it was dealt still counts.
        XCTAssertTrue(m.wasDealt(2, to: b))
        XCTAssertFalse(m.wasDealt(0, to: b))
        XCTAssertEqual(m.remove(a), [0, 1, 2])
        m.beginStep()
        XCTAssertFalse(m.wasDealt(2, to: b), "a new step forgets who was dealt what")
    }

    func testOverdueIsMeasuredFromEachDealing() {
        var m = Membership()
        m.admit(a, name: "a")
        m.admit(b, name: "b")
        m.assign(0, to: a, now: 0)
        m.assign(1, to: b, now: 0)
        XCTAssertEqual(m.overdue(now: 10, deadline: 10), [], "exactly at the deadline is not late")
        XCTAssertEqual(m.overdue(now: 10.5, deadline: 10), [a, b])
        m.answered(1, by: b, now: 2)
        m.completed(1, by: b)
        m.assign(1, to: a, now: 5)
        m.answered(0, by: a, now: 6)
        m.completed(0, by: a)
        XCTAssertEqual(m.overdue(now: 10.5, deadline: 10), [])
        XCTAssertEqual(m.overdue(now: 15.5, deadline: 10), [a])
        XCTAssertEqual(m.live.first { $0.id == a }?.shardsComputed, 1)
    }

    /// A shard computed into the workers' reduction tree: off the worker's load and queue (it is dealt the next, and
    /// no deadline runs), but still out, and dealt again if the worker is lost before its result is in.
    func testAShardComputedIntoTheTreeStaysOutButFreesItsWorker() {
        var m = Membership()
        m.admit(a, name: "a")
        m.assign(0, to: a, now: 0)
        m.assign(1, to: a, now: 0)
        m.computed(0, by: a, now: 2)
        m.computed(5, by: a, now: 2)
        XCTAssertEqual(m.load(of: a), 1)
        XCTAssertEqual(m.held(by: a), [1])
        XCTAssertEqual(m.inFlight[0]?.map(\.worker), [a])
        XCTAssertEqual(m.live.first?.shardTime, 2, "computing it took 2 s")
        m.answered(1, by: a, now: 3)
        m.completed(1, by: a)
        XCTAssertEqual(m.overdue(now: 50, deadline: 10), [], "the tree's patience bounds the wait, not the deadline")
        XCTAssertEqual(m.remove(a), [0])
    }

    func testUnansweredOrdersCarryIntoTheNextStepAndCountTowardsTheLoad() {
        var m = Membership()
        m.admit(a, name: "a")
        m.assign(0, to: a, now: 0)
        m.assign(1, to: a, now: 0)
        m.beginStep()
        XCTAssertEqual(m.live[0].earlier, [0, 0])
        XCTAssertEqual(m.load(of: a), 2)
        m.assign(2, to: a, now: 1)
        XCTAssertEqual(m.live[0].earlier, [0], "a newer order drops the queued old one; the computing one remains")
        XCTAssertEqual(m.overdue(now: 10.5, deadline: 10), [a], "an old order past the deadline is late too")
        m.answeredEarlier(1, by: a, now: 2)
        XCTAssertEqual(m.load(of: a), 1)
    }

    func testStragglersAreMeasuredAgainstTheirOwnShardTime() {
        var m = Membership()
        m.admit(a, name: "a")
        m.admit(b, name: "b")
        m.assign(0, to: a, now: 0)
        m.assign(1, to: b, now: 0)
        XCTAssertEqual(m.straggling(now: 100, factor: 1.5), [], "no shard time known yet")
        m.answered(0, by: a, now: 1)
        m.answered(1, by: b, now: 2)
        XCTAssertEqual(m.live.map(\.shardTime), [1, 2])
        m.assign(2, to: a, now: 2)
        m.assign(3, to: b, now: 2)
        XCTAssertEqual(m.straggling(now: 3.4, factor: 1.5), [], "b, half as fast, is not late at 1.4 s")
        XCTAssertEqual(m.straggling(now: 3.6, factor: 1.5), [a])
        XCTAssertEqual(m.straggling(now: 5.1, factor: 1.5), [a, b])
    }

    /// Shards left go each to whoever would finish it first: what a worker holds, and how fast it is, decide.
    func testShardsAreSharedByWhenEachWorkerWouldFinishThem() {
        var m = members(a, b)
        XCTAssertNil(m.shareByFinish(3, now: 0), "no shard time known yet: nothing to go by")
        m.assign(0, to: a, now: 0)
        m.assign(1, to: b, now: 0)
        m.answered(0, by: a, now: 1)
        m.answered(1, by: b, now: 2.5)
        // a: 1 s a shard, free now; b: 2.5 s. 3 shards: a would finish them at 1, 2, 3 s, b its first at 2.5 s.
        XCTAssertEqual(m.shareByFinish(3, now: 2.5), [a: 2, b: 1])
        XCTAssertEqual(m.shareByFinish(1, now: 2.5), [a: 1])
        // a holds two shards from 2.5 s: free at 4.5, so the next of 2 is b's (done at 5 s), then a's (5.5 s).
        m.assign(2, to: a, now: 2.5)
        m.assign(3, to: a, now: 2.5)
        XCTAssertEqual(m.shareByFinish(2, now: 2.5), [b: 1, a: 1])
        // Late on its front shard (due at 3.5 s), a is taken to finish it now; a straggler takes none.
        XCTAssertEqual(m.shareByFinish(1, now: 4, excluding: []), [a: 1], "a free at 5 s, done at 6; b at 6.5")
        XCTAssertEqual(m.shareByFinish(1, now: 4, excluding: [a]), [b: 1])
        XCTAssertNil(m.shareByFinish(1, now: 4, excluding: [a, b]), "every worker excluded: nothing to go by")
        // A newcomer counts at the others' median shard time.
        m.admit(c, name: "c")
        XCTAssertEqual(m.shareByFinish(3, now: 4), [a: 1, b: 1, c: 1], "done at 6 (a), 6.5 (b, then c: tie, join order)")
        // A released order frees c but is no shard time: the release comes when the step is done with other copies,
        // not when c computed, so it must not make c look slow.
        m.assign(4, to: c, now: 4)
        m.released(4, by: c, now: 30)
        XCTAssertEqual(m.load(of: c), 0)
        XCTAssertNil(m.live[2].shardTime)
    }

    /// A worker's first order of a step also waits for the step's weights: the dealing plans with the time of the
    /// shards after it. Here a's weights take 0.3 s to arrive and its shards 0.01 s; b's come at once, 0.045 s.
    func testTheDealingPlansWithTheShardsAfterTheFirstOfAStep() {
        var m = members(a, b)
        m.assign(0, to: a, now: 0)
        m.assign(1, to: a, now: 0)
        m.assign(2, to: b, now: 0)
        m.assign(3, to: b, now: 0)
        m.answered(2, by: b, now: 0.045)
        m.answered(3, by: b, now: 0.09)
        m.answered(0, by: a, now: 0.31)
        m.answered(1, by: a, now: 0.32)
        XCTAssertEqual(m.live[0].shardTime ?? 0, 0.25, accuracy: 1e-9, "the straggler rule's time follows a shorter shard slowly")
        XCTAssertEqual(m.live[0].nextShardTime ?? 0, 0.01, accuracy: 1e-9)
        XCTAssertEqual(m.live[1].nextShardTime ?? 0, 0.045, accuracy: 1e-9)
        XCTAssertEqual(m.shareByFinish(6, now: 0.32), [a: 5, b: 1], "a, 0.01 s a shard, does 4 before b does 1")
        XCTAssertEqual(m.shareByFinish(6, now: 0.32, resolution: 0.05), [a: 3, b: 3], "times under 0.05 s are all alike")
        m.beginStep()
        m.assign(4, to: a, now: 1)
        m.answered(4, by: a, now: 1.3)
        XCTAssertEqual(m.live[0].nextShardTime ?? 0, 0.01, accuracy: 1e-9, "again the first order of its step")
    }

    /// A membership with these workers admitted, in this order (the names do not matter here).
    private func members(_ ids: WorkerID...) -> Membership {
        var m = Membership()
        for id in ids { m.admit(id, name: "\(id.bytes)") }
        return m
    }
}
