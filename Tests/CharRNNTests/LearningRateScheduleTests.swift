import XCTest
@testable import CharRNN

final class LearningRateScheduleTests: XCTestCase {
    private func assertRates(_ s: LearningRateSchedule, base: Float, _ expected: [Float], line: UInt = #line) {
        let rates = expected.indices.map { s.rate(base: base, step: $0) }
        for (a, b) in zip(rates, expected) { XCTAssertEqual(a, b, accuracy: 1e-9, "\(rates)", line: line) }
    }

    func testConstantWithWarmup() {
        let s = LearningRateSchedule(warmupSteps: 4)
        assertRates(s, base: 0.01, [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])
        XCTAssertEqual(LearningRateSchedule.constant.rate(base: 0.01, step: 123_456), 0.01)
    }

    func testStepDecaysEveryNStepsDownToTheFloor() {
        let s = LearningRateSchedule(kind: .step, warmupSteps: 1, decayEvery: 2, decayFactor: 0.5, minRate: 0.003)
        // Warm-up step 0, then 0.02 for steps 1–2, 0.01 for 3–4, 0.005 for 5–6, then the floor.
        assertRates(s, base: 0.02, [0.02, 0.02, 0.02, 0.01, 0.01, 0.005, 0.005, 0.003, 0.003])
        XCTAssertEqual(LearningRateSchedule(kind: .step, decayEvery: 10).rate(base: 1, step: 25), Float(0.01), accuracy: 1e-9)
    }

    func testCosineFromTheBaseToTheFloorThenFlat() {
        let s = LearningRateSchedule(kind: .cosine, warmupSteps: 2, decayEvery: 4, minRate: 0.001)
        let r = (0..<9).map { s.rate(base: 0.011, step: $0) }
        XCTAssertEqual(r[0], 0.0055, accuracy: 1e-9)
        XCTAssertEqual(r[2], 0.011, accuracy: 1e-9)                                  // cos 0
        XCTAssertEqual(r[3], Float(0.001 + 0.01 * (1 + cos(Double.pi / 4)) / 2), accuracy: 1e-9)
        XCTAssertEqual(r[4], 0.006, accuracy: 1e-9)                                  // halfway
        XCTAssertEqual(r[6], 0.001, accuracy: 1e-9)
        XCTAssertEqual(r[8], 0.001, accuracy: 1e-9)
        XCTAssertEqual(Array(r.dropFirst(2)), r.dropFirst(2).sorted(by: >), "never rises after warm-up")
    }

    func testBadRangesAreRefusedByName() {
        func refuses(_ s: LearningRateSchedule, base: Float = 0.01, _ option: String, line: UInt = #line) {
            XCTAssertThrowsError(try s.validate(base: base), line: line) { error in
                XCTAssertTrue("\(error)".contains(option), "\(error)", line: line)
            }
        }
        refuses(LearningRateSchedule(warmupSteps: -1), "--warmup-steps")
        refuses(LearningRateSchedule(kind: .step), "--lr-decay-every")
        refuses(LearningRateSchedule(kind: .step, decayEvery: 0), "--lr-decay-every")
        refuses(LearningRateSchedule(kind: .step, decayEvery: 5, decayFactor: 1.5), "--lr-decay-factor")
        refuses(LearningRateSchedule(kind: .step, decayEvery: 5, decayFactor: 0), "--lr-decay-factor")
        refuses(LearningRateSchedule(kind: .cosine, decayEvery: 5, minRate: 0.5), "--min-lr")
        refuses(LearningRateSchedule(kind: .cosine, decayEvery: 5, decayFactor: 0.5), "--lr-decay-factor")
        refuses(LearningRateSchedule(decayEvery: 5), "--lr-decay-every")
        refuses(LearningRateSchedule(minRate: 0.001), "--min-lr")
        XCTAssertNoThrow(try LearningRateSchedule(kind: .step, warmupSteps: 3, decayEvery: 5, decayFactor: 0.5, minRate: 0.001).validate(base: 0.01))
    }

    /// Options from before schedules decode as constant; a constant schedule is stored as none.
    func testOldOptionsDecodeAsConstant() throws {
        var options = TrainingOptions()
        options.schedule = .constant
        XCTAssertNil(options.schedule)
        let json = String(decoding: try JSONEncoder().encode(options), as: UTF8.self)
        XCTAssertFalse(json.contains("schedule"), json)
        let decoded = try JSONDecoder().decode(TrainingOptions.self, from: Data(json.utf8))
        XCTAssertEqual(decoded.learningRate(at: 1_000), decoded.adam.learningRate)
    }
}
