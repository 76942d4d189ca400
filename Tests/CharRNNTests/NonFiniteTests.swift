import XCTest
@testable import CharRNN

/// A run whose loss or gradient stops being finite (here: a learning rate of 1e30) stops cleanly, or skips
/// the update when told to; it never carries NaN into the weights.
final class NonFiniteTests: XCTestCase {
    func divergingPlan() throws -> StepPlan {
        let plan = try StepDriverTests.plan(shards: 2)
        var options = plan.options
        options.adam.learningRate = 1e30
        return try StepPlan(state: TrainingState.fresh(vocabulary: plan.state.vocabulary, config: plan.state.config, options: options),
                            ids: Array(0..<240).map { Int32($0 % 7) }, stopAfter: 4)
    }

    func testDivergedStepThrowsAndLeavesTheStateAsItWas() throws {
        let plan = try divergingPlan()
        let driver = StepDriver.inProcess(plan: plan)
        XCTAssertFalse(try XCTUnwrap(driver.advance()).skipped)
        let after1 = (plan.state.weights.storage.array, plan.state.adam.m.storage.array, plan.state.hidden.array)
        XCTAssertThrowsError(try driver.advance()) { error in
            guard case CharRNNError.diverged(step: 1, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".hasPrefix("training diverged at step 2"), "\(error)")
        }
        XCTAssertEqual(plan.state.position.globalStep, 1)
        XCTAssertEqual(plan.state.weights.storage.array, after1.0)
        XCTAssertEqual(plan.state.adam.m.storage.array, after1.1)
        XCTAssertEqual(plan.state.hidden.array, after1.2)
    }

    func testSkipChangesNothingButThePosition() throws {
        let plan = try divergingPlan()
        plan.onNonFinite = .skip
        let driver = StepDriver.inProcess(plan: plan)
        _ = try driver.advance()
        let after1 = (plan.state.weights.storage.array, plan.state.adam.t)
        let skipped = try XCTUnwrap(driver.advance())
        XCTAssertTrue(skipped.skipped)
        XCTAssertEqual(plan.state.position.globalStep, 2)
        XCTAssertEqual(plan.state.weights.storage.array, after1.0)
        XCTAssertEqual(plan.state.adam.t, after1.1, "a skipped step is no Adam step")
        XCTAssertTrue(plan.state.weights.storage.array.allSatisfy(\.isFinite))
    }

    /// Distributed, a worker that cannot encode its non-finite result reports an error; the shard fails the same
    /// way on every worker, so after two failures the step fails instead of being dealt round forever.
    func testShardThatFailsTwiceFailsTheStep() throws {
        var clock: FakeClock?
        let h = try StepDriverTests.Harness(stop: { clock!.t > 100 })
        clock = h.clock
        h.pool.join("a", at: 0, behaviour: .fails)
        h.pool.join("a", at: 1, behaviour: .fails)   // lost after its error, it introduces itself again
        XCTAssertThrowsError(try h.driver.advance()) { error in
            guard case DealingError.shardFailed(step: 0, shard: 0, worker: "a", message: "cannot compute") = error else {
                return XCTFail("\(error)")
            }
        }
        XCTAssertEqual(h.plan.state.position.globalStep, 0)
    }

    /// With skip, the step whose shard fails twice is given up instead: only the position moves on.
    func testShardThatFailsTwiceIsSkippedWhenToldTo() throws {
        let h = try StepDriverTests.Harness()
        h.plan.onNonFinite = .skip
        h.pool.join("a", at: 0, behaviour: .fails)
        h.pool.join("a", at: 1, behaviour: .fails)
        let before = h.plan.state.weights.storage.array
        let summary = try XCTUnwrap(h.driver.advance())
        XCTAssertTrue(summary.skipped)
        XCTAssertEqual(h.plan.state.position.globalStep, 1)
        XCTAssertEqual(h.plan.state.weights.storage.array, before)
        XCTAssertTrue(h.events.contains { if case .stepSkipped(step: 0, _) = $0 { true } else { false } })
    }
}
