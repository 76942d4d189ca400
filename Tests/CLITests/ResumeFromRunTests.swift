import CharRNN
import Foundation
import XCTest

/// `--resume` takes the run's options from its checkpoint; `info` shows a run and how to reproduce it.
final class ResumeFromRunTests: XCTestCase {
    /// Every run-defining option away from its default, so a value not taken from the checkpoint would show.
    let run = ["--embed", "8", "--units", "16", "--cell", "lstm", "--layers", "2", "--dropout", "0.1", "--batch", "4", "--seq", "10",
               "--shards", "2", "--seed", "9", "--buffer", "50", "--lr", "0.01", "--clip-norm", "1", "--val-fraction", "0.1",
               "--lr-schedule", "step", "--warmup-steps", "2", "--lr-decay-every", "4", "--lr-decay-factor", "0.5", "--epochs", "3"]
    let quiet = ["--threads", "1", "--progress", "never"]

    /// Resumed with nothing but the directory (not even --data, from another working directory), the run
    /// continues bit for bit, across the schedule's decays at steps 6 and 10, and logs the scheduled rates.
    func testResumeWithoutOptionsContinuesBitwiseAcrossDecays() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 6_000), in: dir)
        let whole = dir.appendingPathComponent("whole").path, parts = dir.appendingPathComponent("parts").path
        XCTAssertEqual(try CLI.run(["train", "--data", data, "--checkpoint-dir", whole, "--steps", "12"] + run + quiet).status, 0)
        XCTAssertEqual(try CLI.run(["train", "--data", data, "--checkpoint-dir", parts, "--steps", "5"] + run + quiet).status, 0)
        let elsewhere = dir.appendingPathComponent("elsewhere")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        let resumed = try CLI.run(["train", "--checkpoint-dir", parts, "--resume", "--steps", "12"] + quiet, in: elsewhere)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("text \(data)"), "the stored text is used: \(resumed.stdout)")
        assertSameCheckpoint("\(whole)/step-000000012", "\(parts)/step-000000012")

        // Given again with the stored values, options are accepted.
        XCTAssertEqual(try CLI.run(["train", "--checkpoint-dir", parts, "--resume", "--steps", "13", "--batch", "4", "--cell", "lstm",
                                    "--lr-schedule", "step", "--data", data] + quiet).status, 0)

        // Warm-up 0.005, 0.01; then 0.01 for 4 steps, 0.005 for 4, 0.0025 ...: the rate of step s (1-based in metrics).
        let rates = try MetricsLog.read(URL(fileURLWithPath: parts).appendingPathComponent("metrics.jsonl")).map { $0.learningRate! }
        let expected: [Double] = [0.005, 0.01, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.005, 0.0025, 0.0025, 0.0025]
        XCTAssertEqual(rates.count, expected.count)
        for (a, b) in zip(rates, expected) { XCTAssertEqual(a, b, accuracy: 1e-9, "\(rates)") }
    }

    /// A coordinator resumed with nothing but the directory takes the stored shard count (2), not its own
    /// default (8), and ends with the bits of an uninterrupted in-process run.
    func testCoordinatorResumesFromTheRunItself() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 6_000), in: dir)
        let ckpt = dir.appendingPathComponent("d")
        let options = ["--embed", "8", "--units", "16", "--batch", "4", "--seq", "10", "--shards", "2", "--seed", "4",
                       "--lr-schedule", "step", "--lr-decay-every", "3"]
        let first = try CLI.run(["launch", "--workers", "1", "--data", data, "--checkpoint-dir", ckpt.path, "--steps", "4"] + options + quiet)
        XCTAssertEqual(first.status, 0, first.stderr)
        let resumed = try CLI.run(["launch", "--workers", "2", "--checkpoint-dir", ckpt.path, "--resume", "--steps", "8"] + quiet)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("shards 2"), resumed.stdout)
        try assertMatchesUninterruptedRun(ckpt, data: data, options: options + quiet)
    }

    /// An explicitly given value that differs from the checkpoint's is refused in one line naming both.
    func testConflictingExplicitOptionIsRefused() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 6_000), in: dir)
        let ckpt = dir.appendingPathComponent("c").path
        XCTAssertEqual(try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "2"] + run + quiet).status, 0)
        let resume = ["train", "--checkpoint-dir", ckpt, "--resume", "--steps", "4"] + quiet
        for (given, message) in [(["--seq", "11"], "was trained with --seq 10, not 11"),
                                 (["--units", "32"], "was trained with --units 16, not 32"),
                                 (["--no-shuffle"], "was trained with --no-shuffle false, not true"),
                                 (["--lr-schedule", "cosine"], "was trained with --lr-schedule step, not cosine"),
                                 (["--clip-norm", "2"], "was trained with --clip-norm 1.0, not 2.0"),
                                 (["--val-fraction", "0.2"], "was trained with --val-fraction 0.1, not 0.2")] {
            assertCleanFailure(try CLI.run(resume + given), mentions: "\(ckpt)/step-000000002 \(message)")
        }
        assertCleanFailure(try CLI.run(resume + ["--init", "\(ckpt)/step-000000002/model.safetensors"]), mentions: "--resume and --init cannot be used together")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(ckpt)/step-000000004"), "no step taken by a refused resume")
    }

    /// The text is checked by its SHA-256: changed in place, or another file, it is named.
    func testChangedTextIsNamed() throws {
        let dir = try CLI.temporaryDirectory(self)
        let text = CLI.text(characters: 6_000)
        let data = try CLI.write(text, in: dir)
        let ckpt = dir.appendingPathComponent("c").path
        XCTAssertEqual(try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "2"] + run + quiet).status, 0)
        let copy = try CLI.write(text, in: dir, name: "moved.txt")
        let moved = try CLI.run(["train", "--checkpoint-dir", ckpt, "--resume", "--steps", "3", "--data", copy] + quiet)
        XCTAssertEqual(moved.status, 0, "the same text under another name: \(moved.stderr)")

        // Same characters, other order: the vocabulary check alone would not see it.
        _ = try CLI.write(String(text.reversed()), in: dir, name: "moved.txt")
        assertCleanFailure(try CLI.run(["train", "--checkpoint-dir", ckpt, "--resume", "--steps", "4"] + quiet),
                           mentions: "\(copy) has changed since \(ckpt)/step-000000003 was written")
        let other = try CLI.write(text.uppercased(), in: dir, name: "other.txt")
        assertCleanFailure(try CLI.run(["train", "--checkpoint-dir", ckpt, "--resume", "--steps", "4", "--data", other] + quiet),
                           mentions: "\(other) is not the text \(ckpt)/step-000000003 was trained on (\(copy); the SHA-256 differs)")
    }

    /// A checkpoint written before the text was recorded still resumes (given --data), checked by vocabulary.
    func testCheckpointWithoutRecordedTextStillResumes() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 6_000), in: dir)
        let ckpt = dir.appendingPathComponent("c").path
        XCTAssertEqual(try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "2"] + run + quiet).status, 0)
        let manifest = URL(fileURLWithPath: "\(ckpt)/step-000000002/checkpoint.json")
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: manifest)) as? [String: Any])
        XCTAssertNotNil(json.removeValue(forKey: "text"))
        var options = try XCTUnwrap(json["options"] as? [String: Any])
        XCTAssertNotNil(options.removeValue(forKey: "schedule"))
        json["options"] = options
        try JSONSerialization.data(withJSONObject: json).write(to: manifest)

        let r = try CLI.run(["train", "--checkpoint-dir", ckpt, "--resume", "--steps", "4", "--data", data] + quiet)
        XCTAssertEqual(r.status, 0, r.stderr)
        let info = try CLI.run(["info", ckpt])
        XCTAssertEqual(info.status, 0, info.stderr)
        XCTAssertTrue(info.stdout.contains("schedule constant"), "an old checkpoint's schedule is constant: \(info.stdout)")
        let other = try CLI.write("abc\n", in: dir, name: "other.txt")
        try FileManager.default.removeItem(atPath: "\(ckpt)/step-000000004")
        assertCleanFailure(try CLI.run(["train", "--checkpoint-dir", ckpt, "--resume", "--steps", "4", "--data", other] + quiet),
                           mentions: "another vocabulary than \(other)")
    }

    /// `info` prints options, progress, the best validation loss and a command line that, run, gives the
    /// same checkpoint bit for bit.
    func testInfoShowsTheRunAndItsCommandReproducesIt() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 6_000), in: dir)
        let ckpt = dir.appendingPathComponent("c").path
        XCTAssertEqual(try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "9", "--eval-every", "4"] + run + quiet).status, 0)
        let info = try CLI.run(["info", ckpt])
        XCTAssertEqual(info.status, 0, info.stderr)
        let best = try JSONDecoder().decode(BestCheckpoint.self, from: Data(contentsOf: URL(fileURLWithPath: "\(ckpt)/best.json")))
        for expected in ["checkpoint \(ckpt)/step-000000009", "V ", "E 8, H 16, 2×LSTM", "dropout 0.1", "text       \(data) (SHA-256 ",
                         "batch 4, seq 10, shards 2, seed 9, buffer 50", "schedule step, warm-up 2 steps, decay every 4 × 0.5",
                         "9 steps done", String(format: "validation loss %.4f", best.validationLoss)] {
            XCTAssertTrue(info.stdout.contains(expected), "info lacks \(expected): \(info.stdout)")
        }
        let line = try XCTUnwrap(info.stdout.split(separator: "\n").first { $0.hasPrefix("reproduce  charrnn train ") })
        let again = dir.appendingPathComponent("again").path
        let args = line.dropFirst("reproduce  charrnn ".count).split(separator: " ").map { $0 == "NEW_DIR" ? again : String($0) }
        XCTAssertEqual(try CLI.run(args + quiet).status, 0)
        assertSameCheckpoint("\(ckpt)/step-000000009", "\(again)/step-000000009")
        assertCleanFailure(try CLI.run(["info", dir.path]), mentions: "holds no checkpoint")
    }
}

/// `--shards` changes on `--resume`: more workers than the old shard count can then take part.
final class ReshardOnResumeTests: XCTestCase {
    func testResumeWithAnotherShardCountGoesOnAndKeepsIt() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 20_000), in: dir)
        let ckpt = dir.appendingPathComponent("ckpt").path
        let model = ["--embed", "8", "--units", "16", "--batch", "8", "--seq", "10", "--seed", "2"]
        XCTAssertEqual(try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "4", "--shards", "2"] + model).status, 0)
        let resharded = try CLI.run(["train", "--checkpoint-dir", ckpt, "--resume", "--steps", "6", "--shards", "4"])
        XCTAssertEqual(resharded.status, 0, resharded.stderr)
        XCTAssertTrue(resharded.stderr.contains("resharding from 2 to 4 shards"), resharded.stderr)
        XCTAssertTrue(resharded.stdout.contains("shards 4"), resharded.stdout)
        let again = try CLI.run(["train", "--checkpoint-dir", ckpt, "--resume", "--steps", "8"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("shards 4"), "the new shard count is the run's now: \(again.stdout)")
        XCTAssertFalse(again.stderr.contains("resharding"), again.stderr)
    }
}
