import XCTest
@testable import CharRNN

/// The files the training loop writes beside its checkpoints, and how their failures are reported.
final class TrainingLoopFilesTests: XCTestCase {
    private func directory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("charrnn-loop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// A tiny run of `steps` steps with a sample every 2 steps, its events collected.
    private func train(in dir: URL, steps: Int) throws -> [TrainingEvent] {
        var options = TrainingOptions()
        (options.batch, options.seq, options.shuffle, options.epochs) = (2, 5, false, 1)
        let vocabulary = try Vocabulary(codePoints: [97, 98, 99])
        let ids = (0..<200).map { Int32($0 * 7 % 3) }
        let state = TrainingState.fresh(vocabulary: vocabulary, config: ModelConfig(vocab: 3, embed: 2, units: 4), options: options)
        let plan = try StepPlan(state: state, ids: ids, stopAfter: steps)
        var events: [TrainingEvent] = []
        let loop = TrainingLoop(
            driver: .inProcess(plan: plan), checkpoints: CheckpointPolicy(directory: dir),
            monitoring: Monitoring(sampleEvery: 2, samplePrime: [0], sampleLength: 5), report: { events.append($0) })
        try loop.run()
        return events
    }

    private func notes(_ events: [TrainingEvent]) -> [String] {
        events.compactMap { if case .note(let line) = $0 { line } else { nil } }
    }

    func testSamplesAreAppended() throws {
        let dir = try directory()
        let events = try train(in: dir, steps: 4)
        let samples = try String(contentsOf: dir.appendingPathComponent(TrainingLoop.samplesName), encoding: .utf8)
        XCTAssertEqual(samples.components(separatedBy: "--- step ").count - 1, 2, samples)
        XCTAssertFalse(notes(events).contains { $0.contains("sample not saved") }, "\(notes(events))")
    }

    /// samples.txt cannot be written (here a directory stands in its place): each sample's failure is reported,
    /// and training, metrics and checkpoints go on.
    func testSamplesWriteFailureIsReported() throws {
        let dir = try directory()
        try FileManager.default.createDirectory(at: dir.appendingPathComponent(TrainingLoop.samplesName), withIntermediateDirectories: true)
        let events = try train(in: dir, steps: 4)
        let failures = notes(events).filter { $0.contains("sample not saved") }
        XCTAssertEqual(failures.count, 2, "\(notes(events))")
        let first = failures.first ?? ""
        XCTAssertTrue(first.contains("\(dir.path)/samples.txt") && first.contains("Is a directory"), first)
        XCTAssertEqual(try MetricsLog.read(dir.appendingPathComponent(MetricsLog.jsonName)).map(\.step), [1, 2, 3, 4])
        XCTAssertEqual(try Checkpoint.list(in: dir).last?.step, 4)
    }
}
