import XCTest
@testable import CharRNN

/// `--verify`: checked shards computed twice on different workers, forgers caught and their work redone; the
/// weights always end as the honest run's.
final class AuditTests: XCTestCase {
    func testDrawIsUniformAndPicksAboutTheFraction() {
        let picked = (0..<100).map { Audit(step: $0, shardCount: 100, fraction: 0.25, seed: 5).shards.count }.reduce(0, +)
        XCTAssertEqual(Double(picked) / 10_000, 0.25, accuracy: 0.02)
        XCTAssertEqual(Audit(step: 3, shardCount: 8, fraction: 1, seed: 1).shards, Set(0..<8))
        XCTAssertEqual(Audit(step: 3, shardCount: 8, fraction: 0, seed: 1).shards, [])
        XCTAssertNotEqual(Audit(step: 3, shardCount: 64, fraction: 0.5, seed: 1).shards,
                          Audit(step: 3, shardCount: 64, fraction: 0.5, seed: 2).shards, "another secret, other shards")
    }

    func testForgerIsCaughtItsWorkRedoneAndTheWeightsAreHonest() throws {
        let h = try StepDriverTests.Harness(verify: 1)
        h.pool.join("a", at: 0)
        h.pool.join("forger", at: 0, behaviour: .forges)
        h.pool.join("c", at: 0)
        try h.finish()
        XCTAssertEqual(h.driver.stats.distrustedWorkers, 1)
        XCTAssertGreaterThanOrEqual(h.driver.stats.mismatches, 1)
        XCTAssertEqual(h.driver.workers.map(\.name), ["a", "c"])
        XCTAssertTrue(h.events.contains { if case .distrusted(name: "forger", _, step: 0, _) = $0 { true } else { false } })
        XCTAssertFalse(h.pool.dealt.contains { $0.worker == "forger" && $0.step > 0 }, "a distrusted worker is dealt nothing more")
        XCTAssertEqual(h.driver.stats.verifiedShards, 4 * StepDriverTests.steps)
    }

    /// A forger that rejoins (a new hello with its id) is not admitted again.
    func testDistrustedWorkerIsNotReadmitted() throws {
        let h = try StepDriverTests.Harness(verify: 1)
        h.pool.join("a", at: 0, behaviour: .answersAfter(1))
        h.pool.join("forger", at: 0, behaviour: .forges)
        h.pool.join("c", at: 0, behaviour: .answersAfter(1))
        h.pool.join("forger", at: 2.5, behaviour: .forges)
        try h.finish()
        XCTAssertEqual(h.driver.stats.distrustedWorkers, 1)
        XCTAssertEqual(h.driver.stats.joins, 3)
        XCTAssertGreaterThan(h.clock.t, 2.5, "the run was still going when the forger came back")
        XCTAssertFalse(h.pool.dealt.contains { $0.worker == "forger" && $0.at >= 2.5 })
    }

    func testOneWorkerAloneCannotBeCheckedAndIsTakenAsItIs() throws {
        let h = try StepDriverTests.Harness(verify: 1)
        h.pool.join("alone", at: 0)
        try h.finish()
        XCTAssertEqual(h.driver.stats.unverifiedShards, 4 * StepDriverTests.steps)
        XCTAssertEqual(h.driver.stats.verifiedShards, 0)
    }

    func testHonestWorkersAgreeAndPartialChecksCostAboutTheirFraction() throws {
        let h = try StepDriverTests.Harness(verify: 0.5)
        h.pool.join("a", at: 0)
        h.pool.join("b", at: 0)
        try h.finish()
        let s = h.driver.stats
        XCTAssertEqual(s.mismatches, 0)
        XCTAssertEqual(s.distrustedWorkers, 0)
        XCTAssertGreaterThan(s.verifiedShards, 0)
        XCTAssertLessThan(s.verifiedShards, 4 * StepDriverTests.steps)
        let computed = h.pool.dealt.map(\.shards.count).reduce(0, +)
        XCTAssertEqual(computed, 4 * StepDriverTests.steps + s.verifiedShards, "each checked shard is computed once more")
    }

    /// Two workers disagree and no third is live: the step waits for one, which settles it.
    func testTieBrokenByALateThirdWorker() throws {
        let h = try StepDriverTests.Harness(verify: 1)
        h.pool.join("a", at: 0)
        h.pool.join("forger", at: 0, behaviour: .forges)
        h.pool.join("c", at: 5)
        try h.finish()
        XCTAssertTrue(h.events.contains { if case .needTieBreaker = $0 { true } else { false } })
        XCTAssertEqual(h.driver.stats.distrustedWorkers, 1)
    }
}
