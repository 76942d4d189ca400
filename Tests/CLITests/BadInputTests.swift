import Foundation
import XCTest

/// Bad input gets one clear line and a non-zero exit, never a crash or a half-written checkpoint.
final class BadInputTests: XCTestCase {
    let tiny = ["--embed", "8", "--units", "16", "--batch", "4", "--seq", "20", "--threads", "1"]

    func testDataProblems() throws {
        let dir = try CLI.temporaryDirectory(self)
        let ckpt = ["--checkpoint-dir", dir.appendingPathComponent("c").path]
        assertCleanFailure(try CLI.run(["train", "--data", dir.appendingPathComponent("missing.txt").path] + ckpt + tiny), mentions: "no such file")
        let empty = try CLI.write("", in: dir, name: "empty.txt")
        assertCleanFailure(try CLI.run(["train", "--data", empty] + ckpt + tiny), mentions: "empty")
        let binary = dir.appendingPathComponent("bad.txt")
        try Data([0x48, 0x69, 0xFF, 0xFE, 0x80, 0x0A]).write(to: binary)
        assertCleanFailure(try CLI.run(["train", "--data", binary.path] + ckpt + tiny), mentions: "UTF-8")
        let short = try CLI.write("Too short for one batch.\n", in: dir, name: "short.txt")
        assertCleanFailure(try CLI.run(["train", "--data", short] + ckpt + tiny), mentions: "fewer than one batch")
        assertCleanFailure(try CLI.run(["train", "--data", dir.path] + ckpt + tiny), mentions: "directory")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("c").path), "no checkpoint from a failed start")
    }

    func testBadSizes() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 3_000), in: dir)
        let base = ["train", "--data", data, "--checkpoint-dir", dir.appendingPathComponent("c").path]
        assertCleanFailure(try CLI.run(base + ["--units", "0"]), mentions: "--units must be positive")
        assertCleanFailure(try CLI.run(base + ["--batch=-3"]), mentions: "--batch must be positive")
        assertCleanFailure(try CLI.run(base + ["--seq", "0"]), mentions: "--seq must be positive")
        assertCleanFailure(try CLI.run(base + ["--batch", "6", "--shards", "4"]), mentions: "must divide")
        assertCleanFailure(try CLI.run(base + ["--threads", "0"]), mentions: "--threads must be positive")
        assertCleanFailure(try CLI.run(base + ["--steps", "0"] + tiny), mentions: "--steps must be positive")
        assertCleanFailure(try CLI.run(base + ["--lr=-1"] + tiny), mentions: "--lr")
        assertCleanFailure(try CLI.run(base + ["--dropout", "1"] + tiny), mentions: "--dropout must be above 0 and below 1")
        assertCleanFailure(try CLI.run(base + ["--cell", "rnn"] + tiny), mentions: "--cell")
    }

    func testCheckpointProblems() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 3_000), in: dir)
        let ckpt = dir.appendingPathComponent("c").path
        XCTAssertEqual(try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "2"] + tiny).status, 0)

        assertCleanFailure(try CLI.run(["generate", "--checkpoint", ckpt, "--prime", "ROMEO€"]), mentions: "not in the model's vocabulary")
        assertCleanFailure(try CLI.run(["generate", "--checkpoint", ckpt, "--temperature", "0"]), mentions: "--temperature")
        assertCleanFailure(try CLI.run(["generate", "--checkpoint", dir.appendingPathComponent("nope").path]), mentions: "no such directory")

        // Training again into a directory with checkpoints, without --resume, would mix two runs.
        assertCleanFailure(try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "2"] + tiny), mentions: "--resume")

        // Another text against this checkpoint is named, with the one the run was trained on.
        let other = try CLI.write(String(repeating: "xyz 0123456789 QWERTY\n", count: 200), in: dir, name: "other.txt")
        assertCleanFailure(try CLI.run(["train", "--data", other, "--checkpoint-dir", ckpt, "--steps", "4", "--resume"] + tiny),
                           mentions: "\(other) is not the text \(ckpt)/step-000000002 was trained on (\(data); the SHA-256 differs)")
        assertCleanFailure(try CLI.run(["evaluate", "--checkpoint", ckpt, "--data", other]), mentions: "not in the model's vocabulary")
        // Other options than the checkpoint's.
        let changed = ["--embed", "8", "--units", "16", "--batch", "2", "--seq", "20", "--threads", "1"]
        assertCleanFailure(try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "4", "--resume"] + changed), mentions: "--batch")
        // Another stack than the checkpoint's.
        assertCleanFailure(try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "4", "--resume", "--layers", "2"] + tiny),
                           mentions: "was trained with --layers 1, not 2: omit --layers")
        assertCleanFailure(try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "4", "--resume", "--cell", "lstm"] + tiny),
                           mentions: "was trained with --cell gru, not lstm: omit --cell")
        assertCleanFailure(try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "4", "--resume", "--dropout", "0.5"] + tiny),
                           mentions: "was trained with --dropout 0.0, not 0.5")

        // A truncated weights file is caught by its checksum; with no older checkpoint, nothing is usable.
        let model = URL(fileURLWithPath: "\(ckpt)/step-000000002/model.safetensors")
        let bytes = try Data(contentsOf: model)
        try bytes.prefix(bytes.count / 2).write(to: model)
        assertCleanFailure(try CLI.run(["generate", "--checkpoint", "\(ckpt)/step-000000002"]), mentions: "checksum")
        let resumed = try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "4", "--resume"] + tiny)
        XCTAssertNotEqual(resumed.status, 0)
        XCTAssertTrue(resumed.stderr.contains("no usable checkpoint"), resumed.stderr)
    }
}
