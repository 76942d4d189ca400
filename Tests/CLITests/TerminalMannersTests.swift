import CharRNN
import Foundation
import XCTest

/// What a user sees: the live line's width, stderr for warnings, timestamps, --version, grouped help, and
/// `launch` waiting for all its workers and ending quietly.
final class TerminalMannersTests: XCTestCase {
    let tiny = ["--embed", "8", "--units", "16", "--batch", "4", "--seq", "10", "--threads", "1"]

    func testVersionAndHelpGroupedByTopic() throws {
        let v = try CLI.run(["--version"])
        XCTAssertEqual(v.status, 0, v.stderr)
        XCTAssertTrue(v.stdout.hasPrefix("charrnn "), v.stdout)
        XCTAssertTrue(v.stdout.contains("checkpoint format \(Checkpoint.formatVersion)"), v.stdout)
        let train = try CLI.run(["train", "--help"]).stdout
        for title in ["MODEL:", "DATA:", "SCHEDULE:", "CHECKPOINTS:", "OUTPUT:"] { XCTAssertTrue(train.contains("\n\(title)\n"), train) }
        XCTAssertTrue(try CLI.run(["coordinator", "--help"]).stdout.contains("\nCLUSTER:\n"))
    }

    /// Each redraw of the live line fits in $COLUMNS (the terminal's width when stdout is not one), so it
    /// never wraps and leaves rows behind.
    func testLiveLineFitsTheWidth() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 6_000), in: dir)
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", dir.appendingPathComponent("c").path, "--steps", "8", "--progress", "always"] + tiny,
                            environment: ["COLUMNS": "60"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let redraws = r.stdout.components(separatedBy: "\r\u{1B}[2K").dropFirst().map { $0.split(separator: "\n", omittingEmptySubsequences: false)[0] }
        XCTAssertEqual(redraws.count, 8, r.stdout)
        for line in redraws { XCTAssertLessThanOrEqual(line.count, 59, String(line)) }
        XCTAssertTrue(redraws.last!.hasPrefix("epoch 1 step 8/"), String(redraws.last!))
    }

    /// Warnings go to stderr (stdout stays the run's log); --log-format timestamped puts the UTC time first.
    func testWarningsOnStderrAndTimestamps() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 6_000), in: dir)
        let ckpt = dir.appendingPathComponent("c").path
        let args = ["train", "--data", data, "--checkpoint-dir", ckpt, "--progress", "never", "--checkpoint-every", "2"] + tiny
        XCTAssertEqual(try CLI.run(args + ["--steps", "4"]).status, 0)
        try Data("damaged".utf8).write(to: URL(fileURLWithPath: "\(ckpt)/step-000000004/model.safetensors"))
        let r = try CLI.run(args + ["--steps", "6", "--resume", "--log-format", "timestamped"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("warning: skipping unusable checkpoint step-000000004"), r.stderr)
        XCTAssertFalse(r.stdout.contains("skipping"), r.stdout)
        let stamp = try NSRegularExpression(pattern: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "#)
        let lines = (r.stdout + r.stderr).split(separator: "\n").map(String.init)
        XCTAssertGreaterThan(lines.count, 3)
        for line in lines {
            XCTAssertNotNil(stamp.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)), line)
        }
    }

    /// `launch --workers 2` computes every step with both workers (the coordinator waits for them), and a
    /// clean finish says nothing on stderr.
    func testLaunchWaitsForAllWorkersAndEndsQuietly() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 6_000), in: dir)
        let ckpt = dir.appendingPathComponent("l")
        let r = try CLI.run(["launch", "--workers", "2", "--data", data, "--checkpoint-dir", ckpt.path, "--steps", "6", "--shards", "2",
                             "--progress", "never"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "", "a clean finish is quiet on stderr")
        let records = try MetricsLog.read(ckpt.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(records.map(\.step), Array(1...6))
        XCTAssertEqual(records.map(\.workers), Array(repeating: 2, count: 6), "every step with both workers")
    }
}
