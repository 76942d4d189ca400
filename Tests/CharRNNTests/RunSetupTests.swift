import Foundation
import XCTest
@testable import CharRNN

/// `RunSetup` without processes: defaults, values taken from a checkpoint, conflicts and texts as typed errors.
final class RunSetupTests: XCTestCase {
    private let text = String(repeating: "the quick brown fox jumps over the lazy dog.\n", count: 40)

    private func request(_ root: URL, _ change: (inout RunRequest) -> Void = { _ in }) -> RunRequest {
        var r = RunRequest(checkpoints: CheckpointPolicy(directory: root))
        (r.embed, r.units, r.batch, r.seq) = (4, 8, 4, 10)
        change(&r)
        return r
    }

    private func prepare(_ r: RunRequest, text: String? = nil, path: String = "/texts/fox.txt") throws -> PreparedRun {
        try RunSetup.prepare(r, readText: { _ in (path, text ?? self.text) }, log: { _ in }, warn: { _ in })
    }

    private func root() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("charrnn-setup-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func testFreshRunTakesDefaultsAndRecordsTheText() throws {
        let run = try prepare(request(root()))
        let o = run.plan.options
        XCTAssertEqual([o.shards, o.buffer, o.epochs], [1, 10_000, 10])
        XCTAssertEqual(o.adam.learningRate, 1e-3)
        XCTAssertEqual(run.plan.state.config.cell, .gru)
        XCTAssertEqual(run.plan.state.text, TextSource(path: "/texts/fox.txt", text: text))
        XCTAssertNil(o.schedule)
    }

    /// A cosine without its length descends over the run as planned (here --steps), stored for resumes.
    func testCosineLengthDefaultsToThePlannedRun() throws {
        let run = try prepare(request(root()) { ($0.schedule, $0.warmupSteps, $0.steps) = (.cosine, 3, 20) })
        XCTAssertEqual(run.plan.options.schedule, LearningRateSchedule(kind: .cosine, warmupSteps: 3, decayEvery: 17))
    }

    /// `--shards` may change on `--resume`: the rows keep their hidden states, only their grouping changes, and
    /// the run says that its bits now differ from an uninterrupted one.
    func testResumeMayReshardAndSaysSo() throws {
        let dir = root()
        let first = try prepare(request(dir) { ($0.shards, $0.batch) = (2, 4) })
        let driver = StepDriver.inProcess(plan: first.plan)
        _ = try driver.advance()
        try Checkpoint.save(first.plan.state, in: dir)
        var again = RunRequest(checkpoints: CheckpointPolicy(directory: dir))
        (again.resume, again.shards) = (true, 4)
        var warnings: [String] = []
        let resharded = try RunSetup.prepare(again, readText: { _ in ("/texts/fox.txt", self.text) }, log: { _ in }, warn: { warnings.append($0) })
        XCTAssertEqual(resharded.plan.shardCount, 4)
        XCTAssertEqual(resharded.plan.state.hidden.array, first.plan.state.hidden.array, "rows keep their states")
        XCTAssertEqual(resharded.plan.next().shards[3].state?.array, Array(first.plan.state.hidden.array.suffix(8)),
                       "the last row's state starts the last one-row shard")
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].hasPrefix("resharding from 2 to 4 shards"), warnings[0])
    }

    func testResumeTakesStoredValuesAndRefusesConflicts() throws {
        let dir = root()
        let first = try prepare(request(dir) { ($0.seed, $0.dropout, $0.cell, $0.shards) = (5, 0.25, .lstm, 2) })
        try Checkpoint.save(first.plan.state, in: dir)
        let place = dir.appendingPathComponent("step-000000000").path

        let bare = RunRequest(checkpoints: CheckpointPolicy(directory: dir))
        var resumeOnly = bare
        resumeOnly.resume = true
        let resumed = try prepare(resumeOnly)
        XCTAssertEqual(resumed.plan.options, first.plan.options)
        XCTAssertEqual(resumed.plan.state.config, first.plan.state.config)

        var conflicting = resumeOnly
        conflicting.seed = 6
        XCTAssertThrowsError(try prepare(conflicting)) {
            XCTAssertEqual($0 as? RunSetupError, .conflict(checkpoint: place, option: "--seed", stored: "5", given: "6"))
        }
        conflicting = resumeOnly
        conflicting.dropout = 0
        XCTAssertThrowsError(try prepare(conflicting)) {
            XCTAssertEqual($0 as? RunSetupError, .conflict(checkpoint: place, option: "--dropout", stored: "0.25", given: "0.0"))
        }
        XCTAssertThrowsError(try prepare(resumeOnly, text: text + "!")) {
            XCTAssertEqual($0 as? RunSetupError, .textChanged(checkpoint: place, path: "/texts/fox.txt"))
        }
        XCTAssertThrowsError(try prepare(resumeOnly, text: text + "!", path: "/texts/other.txt")) {
            XCTAssertEqual($0 as? RunSetupError, .otherText(checkpoint: place, path: "/texts/other.txt", trainedOn: "/texts/fox.txt"))
        }
        XCTAssertThrowsError(try prepare(bare)) { XCTAssertEqual($0 as? RunSetupError, .directoryInUse(directory: dir.path)) }
        var empty = resumeOnly
        empty.checkpoints.directory = root()
        XCTAssertThrowsError(try prepare(empty)) { XCTAssertEqual($0 as? RunSetupError, .nothingToResume(directory: empty.checkpoints.directory.path)) }
    }
}
