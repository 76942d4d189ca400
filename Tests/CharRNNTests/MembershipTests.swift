import XCTest
@testable import CharRNN

/// The bookkeeping under the step driver: who is live, who holds which shard since when.
final class MembershipTests: XCTestCase {
    let (a, b, c) = (WorkerID([1]), WorkerID([2]), WorkerID([3]))

    func testContiguousBlocksInJoinOrderWithTheRemainderToEarlierJoiners() {
        var m = Membership()
        m.admit(b, name: "b")
        m.admit(a, name: "a")
        m.admit(c, name: "c")
        XCTAssertFalse(m.admit(a, name: "a again"), "a member is admitted once")
        let deal = m.assign([0, 1, 2, 3, 4, 5, 6], now: 0)
        XCTAssertEqual(deal.map(\.worker), [b, a, c])
        XCTAssertEqual(deal.map(\.shards), [[0, 1, 2], [3, 4], [5, 6]])
        // More workers than shards: the later joiners get none.
        XCTAssertEqual(m.assign([7], now: 0).map(\.worker), [b])
    }

    func testRemovingAWorkerReturnsTheShardsItHeldButItsResultsStillCount() {
        var m = Membership()
        m.admit(a, name: "a")
        m.admit(b, name: "b")
        _ = m.assign([0, 1, 2, 3], now: 0)
        m.completed(2, by: b)
        XCTAssertEqual(m.remove(b), [3])
        XCTAssertNil(m.inFlight[3])
        XCTAssertEqual(m.live.map(\.name), ["a"])
        // Its results are bitwise those anyone would compute: one for a shard it was dealt still counts.
        XCTAssertTrue(m.wasDealt(3, to: b))
        XCTAssertFalse(m.wasDealt(0, to: b))
        m.beginStep()
        XCTAssertFalse(m.wasDealt(3, to: b), "a new step forgets who was dealt what")
    }

    func testOverdueIsMeasuredFromEachDealing() {
        var m = Membership()
        m.admit(a, name: "a")
        m.admit(b, name: "b")
        _ = m.assign([0, 1], now: 0)
        XCTAssertEqual(m.overdue(now: 10, deadline: 10), [], "exactly at the deadline is not late")
        XCTAssertEqual(m.overdue(now: 10.5, deadline: 10), [a, b])
        _ = m.assign([1], now: 5)     // dealt again to a, later
        m.completed(0, by: a)
        XCTAssertEqual(m.overdue(now: 10.5, deadline: 10), [])
        XCTAssertEqual(m.overdue(now: 15.5, deadline: 10), [a])
        XCTAssertEqual(m.live.first { $0.id == a }?.shardsComputed, 1)
    }
}
