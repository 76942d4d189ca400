import XCTest
@testable import CharRNN

/// The step driver's rules, each with a scripted pool on a fake clock: no processes, no sleeps. Every fault
/// must leave the weights bit for bit where a fault-free run leaves them.
final class StepDriverTests: XCTestCase {
    static let config = ModelConfig(vocab: 7, embed: 4, units: 8)
    static let steps = 3

    static func plan(shards: Int = 4) throws -> StepPlan {
        var options = TrainingOptions()
        (options.batch, options.seq, options.shards, options.seed) = (8, 5, shards, 3)
        var rng = RandomSource(seed: 11)
        let ids = (0..<(8 * 6 * 5)).map { _ in Int32(rng.nextIndex(below: config.vocab)) }
        let vocab = try Vocabulary(codePoints: (0..<7).map { UInt32(97 + $0) })
        return try StepPlan(state: .fresh(vocabulary: vocab, config: config, options: options), ids: ids, stopAfter: steps)
    }

    /// The fault-free run's weights after `steps` steps, in process.
    static let reference: [Float] = reference(shards: 4)

    static func reference(shards: Int) -> [Float] {
        let plan = try! StepDriverTests.plan(shards: shards)
        let driver = StepDriver.inProcess(plan: plan)
        while !plan.isFinished { _ = try! driver.advance() }
        return plan.state.weights.storage.array
    }

    struct Harness {
        let plan: StepPlan
        let clock = FakeClock()
        let pool: ScriptedPool
        let driver: StepDriver
        var events: [DealingEvent] { pool.reported }

        let reference: [Float]

        /// `timeLimit`: a step still running then stops (`advance` returns nil), so a test of a rule that does not hold
        /// fails instead of hanging.
        init(minWorkers: Int = 1, deadline: Double = 10, verify: Double = 0, shards: Int = 4, stop: (() -> Bool)? = nil,
             timeLimit: Double? = nil) throws {
            plan = try StepDriverTests.plan(shards: shards)
            reference = shards == 4 ? StepDriverTests.reference : StepDriverTests.reference(shards: shards)
            pool = ScriptedPool(clock: clock, config: StepDriverTests.config, rows: plan.rowsPerShard, seq: plan.options.seq, shards: shards)
            let pool = self.pool
            var rules = DealingRules(minWorkers: minWorkers, deadline: deadline)
            (rules.verify, rules.verifySeed) = (verify, 99)
            driver = StepDriver(
                plan: plan, pool: pool, rules: rules, clock: clock,
                report: { pool.reported.append($0) }, shouldStop: timeLimit.map { [clock] limit in { clock.t > limit } } ?? stop ?? { false })
        }

        /// Runs to the end; fails the test if the clock runs past `limit` (a step that hangs).
        func finish(limit: Double = 1_000, file: StaticString = #filePath, line: UInt = #line) throws {
            while !plan.isFinished {
                XCTAssertNotNil(try driver.advance(), file: file, line: line)
                XCTAssertLessThan(clock.t, limit, "the run hangs", file: file, line: line)
                if clock.t >= limit { return }
            }
            XCTAssertEqual(plan.state.weights.storage.array, reference, "weights differ from the fault-free run",
                           file: file, line: line)
        }
    }

    func testHonestWorkersGiveTheInProcessBits() throws {
        let h = try Harness()
        h.pool.join("a", at: 0)
        h.pool.join("b", at: 0)
        h.pool.join("c", at: 0)
        try h.finish()
        var expected = DealingStats()
        expected.joins = 3
        XCTAssertEqual(h.driver.stats, expected)
        // One shard per order, to the least loaded worker, ties in join order: 4 shards over 3 workers.
        XCTAssertEqual(h.pool.dealt.prefix(4).map(\.shards), [[0], [1], [2], [3]])
        XCTAssertEqual(h.pool.dealt.prefix(4).map(\.worker), ["a", "b", "c", "a"])
    }

    func testWorkerThatDiesHoldingShardsHasThemDealtAgain() throws {
        let h = try Harness()
        h.pool.join("a", at: 0)
        h.pool.join("doomed", at: 0, behaviour: .diesOnOrder(2))
        try h.finish()
        // It answers its first order (shard 1) and dies on its second (shard 3).
        XCTAssertEqual(h.driver.stats.lostWorkers, 1)
        XCTAssertEqual(h.driver.stats.reassignedShards, 1)
        XCTAssertEqual(h.driver.workers.map(\.name), ["a"])
    }

    func testStallPastTheDeadlineLosesTheWorkerAndItsLateResultIsNotUsedTwice() throws {
        let h = try Harness(deadline: 10)
        h.pool.join("a", at: 0, behaviour: .answersAfter(6))
        h.pool.join("slow", at: 0, behaviour: .answersAfter(25))
        try h.finish()
        // Idle at 6, a takes a copy of the straggler's first shard; the straggler is lost at step 0's deadline
        // (t 10) and a takes its other shard (done at 16); the slow worker's answers for step 0 arrive at 25,
        // in step 1: counted as stale, not applied.
        XCTAssertEqual(h.driver.stats.lostWorkers, 1)
        XCTAssertEqual(h.driver.stats.speculativeShards, 1)
        XCTAssertEqual(h.driver.stats.reassignedShards, 1)
        XCTAssertEqual(h.driver.stats.staleResults, 2)
        XCTAssertTrue(h.events.contains { if case .lost(name: "slow", reason: let r, _, _) = $0 { r.contains("no result within 10") } else { false } })
    }

    func testResultsSentTwiceCountOnce() throws {
        let h = try Harness()
        h.pool.join("echo", at: 0, behaviour: .answersTwice)
        try h.finish()
        XCTAssertEqual(h.driver.stats.duplicateResults, 4 * StepDriverTests.steps)
    }

    func testResultForAShardNotDealtIsRefusedAndPenalized() throws {
        let h = try Harness()
        h.pool.join("a", at: 0)
        h.pool.join("forger", at: 0, behaviour: .alsoForgesShard(0))
        try h.finish()
        let forged = h.pool.dealt.filter { $0.worker == "forger" && !$0.shards.contains(0) }.count
        XCTAssertGreaterThanOrEqual(forged, StepDriverTests.steps)
        XCTAssertEqual(h.driver.stats.undealtResults, forged)
        XCTAssertEqual(h.pool.penalized, Array(repeating: "forger", count: forged))
    }

    func testWorkerReportingAnErrorIsLostAndItsShardsGoElsewhere() throws {
        let h = try Harness()
        h.pool.join("a", at: 0)
        h.pool.join("broken", at: 0, behaviour: .fails)
        try h.finish()
        XCTAssertEqual(h.driver.stats.lostWorkers, 1)
        XCTAssertTrue(h.events.contains { if case .workerFailed(name: "broken", _) = $0 { true } else { false } })
    }

    func testJoinMidStepGetsWorkFromTheNextDealing() throws {
        let h = try Harness()
        h.pool.join("first", at: 0, behaviour: .diesOnOrder(1))
        h.pool.join("late", at: 0.5)
        try h.finish()
        XCTAssertEqual(h.driver.workers.map(\.name), ["late"])
        XCTAssertTrue(h.pool.dealt.contains { $0.worker == "late" && $0.step == 0 }, "the late joiner takes over step 0")
    }

    func testLeaveAndRejoin() throws {
        let h = try Harness()
        h.pool.join("a", at: 0)
        h.pool.join("b", at: 0)
        h.pool.leave("b", at: 0.001)
        h.pool.join("b", at: 0.015)
        try h.finish()
        XCTAssertEqual(h.driver.stats.lostWorkers, 1)
        XCTAssertEqual(h.driver.stats.joins, 3)
        XCTAssertEqual(Set(h.driver.workers.map(\.name)), ["a", "b"])
        XCTAssertTrue(h.pool.dealt.contains { $0.worker == "b" && $0.step == 2 }, "the returning worker is dealt shards again")
    }

    func testAllWorkersLeaveAndOneComesBack() throws {
        let h = try Harness()
        h.pool.join("a", at: 0, behaviour: .diesOnOrder(2))
        h.pool.join("b", at: 0, behaviour: .diesOnOrder(2))
        h.pool.join("c", at: 50)
        try h.finish()
        XCTAssertEqual(h.driver.stats.lostWorkers, 2)
        XCTAssertTrue(h.events.contains { if case .waiting(live: 0, needed: 1) = $0 { true } else { false } })
        XCTAssertEqual(h.driver.workers.map(\.name), ["c"])
    }

    func testNothingIsDealtBeforeMinWorkersAreLive() throws {
        let h = try Harness(minWorkers: 3)
        h.pool.join("a", at: 0)
        h.pool.join("b", at: 1)
        h.pool.join("c", at: 7)
        try h.finish()
        let firstDeal = try XCTUnwrap(h.pool.dealt.first)
        XCTAssertGreaterThanOrEqual(firstDeal.at, 7)
        XCTAssertEqual(Set(h.pool.dealt.prefix(3).map(\.worker)), ["a", "b", "c"])
    }

    func testStopRequestedMidStepLeavesThePlanUntouched() throws {
        var stop = false
        let h = try Harness(stop: { stop })
        h.pool.join("a", at: 0, behaviour: .answersAfter(5))
        let before = (h.plan.state.weights.storage.array, h.plan.state.hidden.array, h.plan.state.position)
        h.pool.onPoll = { if h.clock.t > 2 { stop = true } }
        XCTAssertNil(try h.driver.advance())
        XCTAssertEqual(h.plan.state.weights.storage.array, before.0)
        XCTAssertEqual(h.plan.state.hidden.array, before.1)
        XCTAssertEqual(h.plan.state.position, before.2)
    }

    func testInMemoryPoolRecyclesGradientBuffers() throws {
        let plan = try StepDriverTests.plan(shards: 1)
        let pool = InMemoryPool(plan: plan)
        let driver = StepDriver.inProcess(plan: plan, pool: pool)
        _ = try driver.advance()
        let seen = try pool.poll(until: 0)   // nothing queued: no events, no allocation
        XCTAssertTrue(seen.isEmpty)
        _ = try driver.advance()
        XCTAssertEqual(pool.gradientBuffers, 1, "a one-shard run keeps reusing one gradient buffer")
    }
}

/// A clock that moves only when the scripted pool says time passes.
final class FakeClock: TimeSource {
    var t = 0.0
    func now() -> Double { t }
}

/// Workers that compute real shard results (tiny model) on the fake clock, each with a scripted behaviour.
final class ScriptedPool: ShardPool {
    enum Behaviour {
        case honest
        /// Answers each order after this many seconds.
        case answersAfter(Double)
        case answersTwice
        /// Is gone (the transport notices) when its n-th order (1-based) arrives; never answers it.
        case diesOnOrder(Int)
        /// Answers honestly, and also sends a made-up result for shard s when s was not dealt to it.
        case alsoForgesShard(Int)
        /// Reports an error instead of answering.
        case fails
        /// Answers with finite, wrong gradients: a forger.
        case forges
        /// Computes its orders one at a time in arrival order, each shard taking this many seconds, and makes
        /// no progress at all during `stalled` (SIGSTOP).
        case paced(Double, stalled: Range<Double>? = nil)
    }

    struct Deal {
        var worker: String
        var step: Int
        var shards: [Int]
        var at: Double
    }

    let clock: FakeClock
    private let step: ShardStep
    private var scheduled: [(at: Double, order: Int, event: PoolEvent)] = []
    private var counter = 0
    private var behaviours: [WorkerID: Behaviour] = [:]
    private var orders: [WorkerID: Int] = [:]
    private var gone: Set<WorkerID> = []
    /// Paced workers: when each is done with the orders it was sent.
    private var busyUntil: [WorkerID: Double] = [:]
    private(set) var dealt: [Deal] = []
    private(set) var penalized: [String] = []
    /// As relaying workers do over the reduction tree: the first order of each shard of a step that a paced worker
    /// computes goes into a sum among the workers instead of back (the worker says `.computed`), and the root comes
    /// as one sum `treeLatency` after the last of them; copies dealt again answer directly. When a holder leaves
    /// before the root, the others give up on the tree after `patience` and send their results directly.
    var summedUpTree = false
    var treeLatency = 0.1
    var patience = 2.0
    private var tree: (step: Int, leaves: [Int: (result: ShardResult, worker: WorkerID, at: Double)], broken: Bool)?
    private let shardCount: Int
    var reported: [DealingEvent] = []
    var onPoll: () -> Void = {}

    init(clock: FakeClock, config: ModelConfig, rows: Int, seq: Int, shards: Int) {
        self.clock = clock
        shardCount = shards
        step = ShardStep(config: config, maxRows: rows, seq: seq)
    }

    static func id(_ name: String) -> WorkerID { WorkerID(Array(name.utf8)) }

    func join(_ name: String, at t: Double, behaviour: Behaviour = .honest) {
        behaviours[Self.id(name)] = behaviour
        schedule(at: t, .joined(Self.id(name), name: name))
    }

    func leave(_ name: String, at t: Double) { schedule(at: t, .left(Self.id(name), reason: "disconnected")) }

    private func schedule(at t: Double, _ event: PoolEvent) {
        counter += 1
        scheduled.append((t, counter, event))
    }

    func send(_ order: WorkOrder, step s: Int, to worker: WorkerID) -> Bool {
        let name = String(decoding: worker.bytes, as: UTF8.self)
        dealt.append(Deal(worker: name, step: s, shards: order.shards.map(\.index), at: clock.t))
        orders[worker, default: 0] += 1
        let results = step.compute(order, step: s) { FloatBuffer(count: ParameterLayout(step.config).count) }
        let now = clock.t + 0.01
        switch behaviours[worker] ?? .honest {
        case .honest:
            schedule(at: now, .results(worker, step: s, results))
        case .answersAfter(let delay):
            schedule(at: clock.t + delay, .results(worker, step: s, results))
        case .answersTwice:
            schedule(at: now, .results(worker, step: s, results))
            schedule(at: now, .results(worker, step: s, results))
        case .diesOnOrder(let n):
            if orders[worker]! >= n {
                schedule(at: now, .left(worker, reason: "disconnected"))
            } else {
                schedule(at: now, .results(worker, step: s, results))
            }
        case .alsoForgesShard(let forged):
            var all = results
            if !order.shards.contains(where: { $0.index == forged }) {
                let bogus = FloatBuffer(count: results[0].gradient.count)
                for k in 0..<bogus.count { bogus[k] = 1 }
                all.append(ShardResult(index: forged, loss: 0, state: results[0].state, gradient: bogus))
            }
            schedule(at: now, .results(worker, step: s, all))
        case .fails:
            schedule(at: now, .failed(worker, message: "cannot compute"))
        case .forges:
            for r in results { r.gradient[0] += 0.01 }
            schedule(at: now, .results(worker, step: s, results))
        case .paced(let seconds, let stalled):
            var start = max(clock.t, busyUntil[worker] ?? 0)
            var end = start + seconds * Double(results.count)
            if let stalled, start < stalled.upperBound, end > stalled.lowerBound {
                if start >= stalled.lowerBound { start = stalled.upperBound }
                end = start + seconds * Double(results.count) + max(0, stalled.upperBound - max(start, stalled.lowerBound))
            }
            busyUntil[worker] = end
            guard summedUpTree, order.shards.count == 1 else {
                schedule(at: end, .results(worker, step: s, results))
                return true
            }
            putInTree(results[0], by: worker, step: s, at: end)
        }
        return true
    }

    private func putInTree(_ result: ShardResult, by worker: WorkerID, step s: Int, at end: Double) {
        if tree?.step != s { tree = (s, [:], false) }
        guard tree!.leaves[result.index] == nil, !dealt.dropLast().contains(where: { $0.step == s && $0.shards == [result.index] }) else {
            schedule(at: end, .results(worker, step: s, [result]))
            return
        }
        if tree!.broken {
            schedule(at: end + patience, .results(worker, step: s, [result]))
            return
        }
        tree!.leaves[result.index] = (result, worker, end)
        schedule(at: end, .computed(worker, step: s, shard: result.index))
        guard tree!.leaves.count == shardCount else { return }
        var reducer = TreeReducer(tree: ReductionTree(shards: shardCount), gradientCount: result.gradient.count)
        for (_, leaf) in tree!.leaves { reducer.add(SubtreeSum(leaf.result)) }
        let root = reducer.root()
        let last = tree!.leaves.values.map(\.at).max()!
        let holders = (0..<shardCount).map { tree!.leaves[$0]!.worker }
        schedule(at: last + treeLatency, .sum(step: s, SubtreeSum(node: ReductionNode(lo: 0, hi: shardCount), gradient: root.gradient,
                                                                   losses: root.losses, states: root.states), holders: holders))
    }

    /// A holder of the step's tree left: the root will not come, and the others send their results once their
    /// patience runs out.
    private func breakTree(leaving worker: WorkerID) {
        guard summedUpTree, var t = tree, !t.broken, t.leaves.values.contains(where: { $0.worker == worker }) else { return }
        t.broken = true
        scheduled.removeAll { if case .sum = $0.event { return true } else { return false } }
        for (_, leaf) in t.leaves.sorted(by: { $0.key < $1.key }) where leaf.worker != worker {
            schedule(at: max(leaf.at, clock.t) + patience, .results(leaf.worker, step: t.step, [leaf.result]))
        }
        tree = t
    }

    func poll(until deadline: Double) throws -> [PoolEvent] {
        onPoll()
        guard let first = scheduled.map(\.at).min(), first <= deadline else {
            clock.t = max(clock.t, deadline)
            return []
        }
        clock.t = max(clock.t, first)
        let due = scheduled.filter { $0.at <= clock.t }.sorted { ($0.at, $0.order) < ($1.at, $1.order) }
        scheduled.removeAll { $0.at <= clock.t }
        for case .left(let worker, _) in due.map(\.event) { breakTree(leaving: worker) }
        return due.map(\.event)
    }

    func isSummedByWorkers(_ shard: Int, step s: Int) -> Bool { tree?.step == s && tree?.broken == false && tree?.leaves[shard] != nil }
    var workersSumTheirShards: Bool { summedUpTree }

    func forget(_ worker: WorkerID) {}
    func penalize(_ worker: WorkerID) { penalized.append(String(decoding: worker.bytes, as: UTF8.self)) }
}
