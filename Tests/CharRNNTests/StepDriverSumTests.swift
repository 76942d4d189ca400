import XCTest
@testable import CharRNN

/// Sums of whole subtrees as a pool delivers them when workers reduce up the tree among themselves: they give
/// the in-process bits, and a sum that overlaps a shard already in is refused whole, never half counted.
final class StepDriverSumTests: XCTestCase {
    /// Workers that sum every step's shards along the tree themselves. `leafFirst`: shard 0's result also comes
    /// on its own, before the root; the workers then send their own results (a worker's patience running out).
    final class SummingPool: ShardPool {
        let clock: FakeClock
        let leafFirst: Bool
        private let step: ShardStep
        private let shards: Int
        private var events: [PoolEvent] = []
        private var computed: [ShardResult] = []
        private var holders: [Int: WorkerID] = [:]
        private(set) var sumsSent = 0

        init(clock: FakeClock, plan: StepPlan, leafFirst: Bool) {
            self.clock = clock
            self.leafFirst = leafFirst
            shards = plan.shardCount
            step = ShardStep(config: plan.state.config, maxRows: plan.rowsPerShard, seq: plan.options.seq)
            events = ["a", "b", "c"].map { .joined(WorkerID(Array($0.utf8)), name: $0) }
        }

        func send(_ order: WorkOrder, step s: Int, to worker: WorkerID) -> Bool {
            let results = step.compute(order, step: s) { FloatBuffer(count: ParameterLayout(step.config).count) }
            for r in results { holders[r.index] = worker }
            computed += results
            guard computed.count == shards else { return true }
            let all = computed.sorted { $0.index < $1.index }
            computed = []
            if leafFirst { events.append(.results(holders[0]!, step: s, [all[0]])) }
            var reducer = TreeReducer(tree: ReductionTree(shards: shards), gradientCount: all[0].gradient.count)
            for r in all.reversed() { reducer.add(SubtreeSum(r)) }
            events.append(.sum(step: s, reducer.drain()[0], holders: (0..<shards).map { holders[$0]! }))
            sumsSent += 1
            if leafFirst { for r in all.dropFirst() { events.append(.results(holders[r.index]!, step: s, [r])) } }
            return true
        }

        func poll(until deadline: Double) throws -> [PoolEvent] {
            clock.t = max(clock.t, deadline)
            defer { events = [] }
            return events
        }

        func forget(_ worker: WorkerID) {}
        func penalize(_ worker: WorkerID) { XCTFail("no worker broke a rule") }
    }

    func run(shards: Int, leafFirst: Bool) throws -> (StepDriver, SummingPool) {
        let plan = try StepDriverTests.plan(shards: shards)
        let clock = FakeClock()
        let pool = SummingPool(clock: clock, plan: plan, leafFirst: leafFirst)
        let driver = StepDriver(plan: plan, pool: pool, clock: clock)
        while !plan.isFinished { XCTAssertNotNil(try driver.advance()) }
        XCTAssertEqual(plan.state.weights.storage.array, StepDriverTests.reference(shards: shards), "weights differ from the in-process run")
        return (driver, pool)
    }

    func testRootSumsGiveTheInProcessBits() throws {
        for shards in [2, 4] {
            let (driver, pool) = try run(shards: shards, leafFirst: false)
            XCTAssertEqual(pool.sumsSent, StepDriverTests.steps)
            XCTAssertEqual(driver.stats.duplicateResults, 0)
        }
    }

    func testSumOverlappingAShardAlreadyInIsRefusedWhole() throws {
        let (driver, _) = try run(shards: 4, leafFirst: true)
        // Each step: the root (4 shards) refused; the three other shards then came one by one.
        XCTAssertEqual(driver.stats.duplicateResults, 4 * StepDriverTests.steps)
    }
}
