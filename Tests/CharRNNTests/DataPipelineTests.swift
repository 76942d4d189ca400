import XCTest
@testable import CharRNN

final class DataPipelineTests: XCTestCase {
    func testVocabularyIsSortedUnicodeScalars() throws {
        let v = Vocabulary(text: "hello\r\nwörld é")
        XCTAssertEqual(v.scalars.map(\.value), [10, 13, 32, 100, 101, 104, 108, 111, 114, 119, 233, 246])
        XCTAssertEqual(v.decode(try v.encode("\r\nhé")), "\r\nhé")
        XCTAssertThrowsError(try v.encode("hex")) { error in
            XCTAssertTrue("\(error)".contains("not in the model's vocabulary"), "\(error)")
        }
        XCTAssertThrowsError(try Vocabulary(codePoints: [66, 65]))
        XCTAssertThrowsError(try Vocabulary(codePoints: [0xD800]))
        XCTAssertEqual(try Vocabulary(codePoints: v.codePoints), v)
    }

    func testChunkingDropsTheRemainder() {
        let set = SequenceSet(ids: (0..<23).map { Int32($0) }, seq: 4)
        XCTAssertEqual(set.count, 4)
        var inputs = [Int32](repeating: 0, count: 8), targets = inputs
        set.copy(1, inputs: &inputs, targets: &targets, row: 0)
        set.copy(3, inputs: &inputs, targets: &targets, row: 1)
        XCTAssertEqual(inputs, [5, 6, 7, 8, 15, 16, 17, 18])
        XCTAssertEqual(targets, [6, 7, 8, 9, 16, 17, 18, 19])
    }

    func testShuffleIsASeededPermutationPerEpoch() {
        let a = Shuffler.order(count: 1000, buffer: 100, seed: 5, epoch: 0)
        XCTAssertEqual(a.sorted(), Array(0..<1000))
        XCTAssertEqual(a, Shuffler.order(count: 1000, buffer: 100, seed: 5, epoch: 0))
        XCTAssertNotEqual(a, Shuffler.order(count: 1000, buffer: 100, seed: 5, epoch: 1))
        XCTAssertNotEqual(a, Shuffler.order(count: 1000, buffer: 100, seed: 6, epoch: 0))
        XCTAssertNotEqual(a, Array(0..<1000))
        // A buffer of one cannot reorder; a buffer of b can move an element at most b − 1 places earlier.
        XCTAssertEqual(Shuffler.order(count: 50, buffer: 1, seed: 1, epoch: 0), Array(0..<50))
        for (position, element) in a.enumerated() { XCTAssertLessThan(element, position + 100) }
    }

    func testBatchesShardsAndStatefulCarry() throws {
        let config = ModelConfig(vocab: 5, embed: 3, units: 4)
        var options = TrainingOptions()
        (options.batch, options.seq, options.shards, options.shuffle, options.epochs) = (4, 3, 2, false, 2)
        let ids = (0..<40).map { Int32($0 % 5) }
        let vocab = try Vocabulary(codePoints: [97, 98, 99, 100, 101])
        let plan = try StepPlan(state: .fresh(vocabulary: vocab, config: config, options: options), ids: ids)
        XCTAssertEqual(plan.stepsPerEpoch, 2)     // 40 / 4 = 10 sequences → 2 batches of 4
        XCTAssertEqual(plan.finalStep, 4)

        // Unshuffled: batch b row i is sequence b·B + i; shard s holds rows s·B/S ..< (s+1)·B/S.
        let driver = StepDriver.inProcess(plan: plan)
        let first = plan.next()
        XCTAssertEqual(first.shards.count, 2)
        XCTAssertEqual(first.shards[1].rows.inputs, [ids[8], ids[9], ids[10], ids[12], ids[13], ids[14]])
        XCTAssertTrue(first.shards.allSatisfy { $0.state == nil }, "an epoch's first step starts from zeros")

        // The carry: row states after step 0 are the states the step-1 shards start from.
        let step = ShardStep(config: config, maxRows: 2, seq: 3)
        step.load(weights: plan.state.weights)
        var expected: [[Float]] = []
        for shard in first.shards {
            var h = [Float](repeating: 0, count: 2 * config.units)
            _ = h.withUnsafeMutableBufferPointer { step.loss(shard.rows, state: $0.baseAddress!) }
            expected.append(h)
        }
        let order = WorkOrder(epoch: 0, shards: first.shards, weights: plan.state.weights.storage)
        for result in step.compute(order, step: 0, gradient: { FloatBuffer(count: plan.state.weights.count) }) {
            plan.accumulate(result)
        }
        _ = plan.finish()
        let second = plan.next()
        XCTAssertEqual(second.shards[1].state?.array, expected[1])
        XCTAssertNotEqual(expected[1], [Float](repeating: 0, count: 8))

        _ = try driver.advance()                 // step 1 ends epoch 0
        XCTAssertEqual(plan.state.position, TrainingPosition(epoch: 1, stepInEpoch: 0, globalStep: 2))
        XCTAssertTrue(plan.next().shards.allSatisfy { $0.state == nil }, "epoch 1 starts from zero states")
    }

    func testTooShortTextIsRefused() throws {
        var options = TrainingOptions()
        options.batch = 8
        options.seq = 10
        let vocab = try Vocabulary(codePoints: [97, 98])
        let state = TrainingState.fresh(vocabulary: vocab, config: ModelConfig(vocab: 2, embed: 2, units: 2), options: options)
        XCTAssertThrowsError(try StepPlan(state: state, ids: [Int32](repeating: 0, count: 50))) { error in
            XCTAssertTrue("\(error)".contains("fewer than one batch"), "\(error)")
        }
        options.shards = 3
        XCTAssertThrowsError(try options.validate())
    }
}
