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

    /// Worker c computes its shard of step 0 into a sum that never counts (the step is completed with a copy of
    /// its shard); the pool then releases its order. Without that, the order would stay unanswered until the
    /// deadline, and c would be dealt last, as a busy worker: in step 1 the others would take every shard.
    final class StalledSumPool: ShardPool {
        let clock: FakeClock
        let release: Bool
        private let step: ShardStep
        private var scheduled: [(at: Double, event: PoolEvent)] = []
        private(set) var dealt: [(worker: String, step: Int, shard: Int)] = []

        init(clock: FakeClock, plan: StepPlan, release: Bool) {
            self.clock = clock
            self.release = release
            step = ShardStep(config: plan.state.config, maxRows: plan.rowsPerShard, seq: plan.options.seq)
            scheduled = ["a", "b", "c"].map { (0, .joined(WorkerID(Array($0.utf8)), name: $0)) }
        }

        func send(_ order: WorkOrder, step s: Int, to worker: WorkerID) -> Bool {
            let name = String(decoding: worker.bytes, as: UTF8.self)
            let shard = order.shards[0].index
            let results = step.compute(order, step: s) { FloatBuffer(count: ParameterLayout(step.config).count) }
            if s == 0 && name == "c" && !dealt.contains(where: { $0.worker == "c" }) {
                dealt.append((name, s, shard))
                return true
            }
            scheduled.append((clock.t + 0.01, .results(worker, step: s, results)))
            // The copy of c's shard completes the step: its order is released.
            if let first = dealt.first(where: { $0.worker == "c" && $0.step == 0 }), s == 0, shard == first.shard, release {
                scheduled.append((clock.t + 0.01, .released(WorkerID(Array("c".utf8)), step: 0, shard: shard)))
            }
            dealt.append((name, s, shard))
            return true
        }

        func poll(until deadline: Double) throws -> [PoolEvent] {
            guard let first = scheduled.map(\.at).min(), first <= deadline else {
                clock.t = max(clock.t, deadline)
                return []
            }
            clock.t = max(clock.t, first)
            let due = scheduled.filter { $0.at <= clock.t }.map(\.event)
            scheduled.removeAll { $0.at <= clock.t }
            return due
        }

        func forget(_ worker: WorkerID) {}
        func penalize(_ worker: WorkerID) {}
    }

    func testReleasedOrderLeavesTheWorkerFreeForTheNextStep() throws {
        for release in [true, false] {
            let plan = try StepDriverTests.plan(shards: 4)
            let clock = FakeClock()
            let pool = StalledSumPool(clock: clock, plan: plan, release: release)
            let driver = StepDriver(plan: plan, pool: pool, clock: clock)
            while !plan.isFinished { XCTAssertNotNil(try driver.advance()) }
            XCTAssertEqual(plan.state.weights.storage.array, StepDriverTests.reference, "release \(release)")
            XCTAssertEqual(driver.stats.speculativeShards, 1, "c's shard of step 0 was copied")
            let cInStep1 = pool.dealt.filter { $0.step == 1 && $0.worker == "c" }.count
            XCTAssertEqual(cInStep1, release ? 1 : 0, "release \(release): c dealt in step 1 \(pool.dealt.filter { $0.step == 1 })")
        }
    }
}
