import CharRNN
import Foundation
import XCTest

/// Learning-rate schedules, validation every N steps and early stopping, as real processes.
final class ScheduleCadenceTests: XCTestCase {
    let tiny = ["--embed", "8", "--units", "16", "--batch", "4", "--seq", "10", "--threads", "1", "--progress", "never"]

    /// With fewer steps than an epoch, --eval-every still validates (the tries: `--steps 50 --val-fraction 0.1`).
    func testEvalEveryValidatesWithinAnEpoch() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 6_000), in: dir)
        let ckpt = dir.appendingPathComponent("c")
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt.path, "--steps", "7", "--val-fraction", "0.2", "--eval-every", "3"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        let records = try MetricsLog.read(ckpt.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(records.filter { $0.validationLoss != nil }.map(\.step), [3, 6])
        XCTAssertTrue(r.stdout.contains("step 3: validation loss"), r.stdout)
        let best = try JSONDecoder().decode(BestCheckpoint.self, from: Data(contentsOf: ckpt.appendingPathComponent("best.json")))
        XCTAssertTrue(FileManager.default.fileExists(atPath: ckpt.appendingPathComponent(Checkpoint.directoryName(step: best.step)).path),
                      "best.json names a checkpoint that exists")
    }

    /// The run stops, with a final checkpoint, at the K-th validation in a row without a new best; resuming
    /// it takes no further step.
    func testEarlyStopAfterPatienceRunsOut() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 6_000), in: dir)
        let ckpt = dir.appendingPathComponent("c")
        // A learning rate far too high makes validation worsen within a few steps.
        let args = ["train", "--data", data, "--checkpoint-dir", ckpt.path, "--steps", "200", "--val-fraction", "0.2", "--eval-every", "2",
                    "--early-stop-patience", "2", "--lr", "0.3", "--log-every", "1000"] + tiny
        let r = try CLI.run(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        let records = try MetricsLog.read(ckpt.appendingPathComponent("metrics.jsonl"))
        let validations = records.compactMap { r in r.validationLoss.map { (r.step, $0) } }
        // Where the rule says to stop: the first validation that is the 2nd in a row without a new best.
        var (lowest, since, stop) = (Double.infinity, 0, -1)
        for (step, loss) in validations where stop < 0 {
            if loss < lowest { (lowest, since) = (loss, 0) } else { since += 1 }
            if since == 2 { stop = step }
        }
        XCTAssertGreaterThan(stop, 0, "validation never worsened twice: \(validations)")
        XCTAssertEqual(records.last?.step, stop, "stopped at step \(stop)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: ckpt.appendingPathComponent(Checkpoint.directoryName(step: stop)).path))
        XCTAssertTrue(r.stdout.contains("early stop"), r.stdout)

        let again = try CLI.run(["train", "--checkpoint-dir", ckpt.path, "--resume", "--steps", "200", "--early-stop-patience", "2", "--eval-every", "2"] + tiny)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(try MetricsLog.read(ckpt.appendingPathComponent("metrics.jsonl")).last?.step, stop, again.stdout)

        // Interrupted after step 3 and resumed, the run stops at the same step with the same bits.
        let parts = dir.appendingPathComponent("parts")
        let interrupted = args.map { $0 == ckpt.path ? parts.path : $0 }
        XCTAssertEqual(try CLI.run(interrupted.map { $0 == "200" ? "3" : $0 }).status, 0)
        let resumed = try CLI.run(interrupted + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try MetricsLog.read(parts.appendingPathComponent("metrics.jsonl")).last?.step, stop, resumed.stdout)
        assertSameCheckpoint(ckpt.appendingPathComponent(Checkpoint.directoryName(step: stop)).path,
                             parts.appendingPathComponent(Checkpoint.directoryName(step: stop)).path)
    }

    func testScheduleOptionsOutOfRangeAreRefused() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 3_000), in: dir)
        let base = ["train", "--data", data, "--checkpoint-dir", dir.appendingPathComponent("c").path, "--steps", "2"] + tiny
        for (args, mention) in [(["--lr-schedule", "step", "--lr-decay-every", "5", "--lr-decay-factor", "1.5"], "--lr-decay-factor must be above 0 and below 1"),
                                (["--warmup-steps=-1"], "--warmup-steps must not be negative"),
                                (["--lr-schedule", "step"], "--lr-schedule step needs --lr-decay-every"),
                                (["--lr-schedule", "cosine", "--min-lr", "0.1"], "--min-lr 0.1 must not exceed --lr 0.001"),
                                (["--lr-decay-every", "10"], "--lr-decay-every needs --lr-schedule step or cosine"),
                                (["--lr-schedule", "linear"], "--lr-schedule"),
                                (["--lr-schedule", "step", "--lr-decay-every", "0"], "--lr-decay-every must be positive"),
                                (["--eval-every", "0", "--val-fraction", "0.2"], "--eval-every must be positive"),
                                (["--early-stop-patience", "2"], "--early-stop-patience need --val-fraction")] {
            assertCleanFailure(try CLI.run(base + args), mentions: mention)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("c").path), "no checkpoint from a refused start")
    }

    /// A cosine schedule with warm-up gives the same bits with a coordinator and two workers as in process:
    /// the rate depends on the step alone.
    func testScheduledRunIsTheSameDistributed() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 6_000), in: dir)
        let ckpt = dir.appendingPathComponent("d")
        let options = ["--shards", "2", "--seed", "3", "--lr", "0.01", "--lr-schedule", "cosine", "--warmup-steps", "2", "--lr-decay-every", "5",
                       "--min-lr", "0.001"] + tiny
        let r = try CLI.run(["launch", "--workers", "2", "--data", data, "--checkpoint-dir", ckpt.path, "--steps", "8"] + options)
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertMatchesUninterruptedRun(ckpt, data: data, options: options)
        let rates = try MetricsLog.read(ckpt.appendingPathComponent("metrics.jsonl")).map { Float($0.learningRate!) }
        XCTAssertEqual(rates.last, 0.001, "the floor after warm-up and descent: \(rates)")
    }
}
