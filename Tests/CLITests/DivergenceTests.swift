import Foundation
import XCTest

/// A diverged run (a learning rate of 1e30) stops with one line naming the step and keeps its last good
/// checkpoint, in process and across workers; `--on-nonfinite skip` goes on from there.
final class DivergenceTests: XCTestCase {
    let model = ["--embed", "8", "--units", "16", "--batch", "8", "--seq", "20", "--shards", "2", "--seed", "3",
                 "--buffer", "100", "--epochs", "1000", "--lr", "1e30", "--checkpoint-every", "1", "--keep", "100"]

    func steps(in dir: URL) throws -> [Int] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).compactMap { $0.hasPrefix("step-") ? Int($0.dropFirst(5)) : nil }.sorted()
    }

    func testInProcessStopsAtTheDivergedStepAndSkipGoesOn() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 20_000), in: dir)
        let ckpt = dir.appendingPathComponent("ckpt")
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt.path, "--steps", "10"] + model)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.stderr)
        let last = try XCTUnwrap(try steps(in: ckpt).last)
        XCTAssertTrue(lines[0].contains("training diverged at step \(last + 1)"), r.stderr)
        let good = ckpt.appendingPathComponent(String(format: "step-%09d", last))
        XCTAssertEqual(try CLI.run(["evaluate", "--checkpoint", good.path, "--data", data]).status, 0, "the last checkpoint is usable")

        let resumed = try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt.path, "--steps", "\(last + 3)", "--resume",
                                   "--on-nonfinite", "skip"] + model)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(resumed.stdout.components(separatedBy: "update skipped").count - 1, 3, resumed.stdout)
        // Skipped steps change nothing but the position: the weights are the last good step's.
        let end = ckpt.appendingPathComponent(String(format: "step-%09d", last + 3))
        XCTAssertEqual(FileManager.default.contents(atPath: end.appendingPathComponent("model.safetensors").path),
                       FileManager.default.contents(atPath: good.appendingPathComponent("model.safetensors").path))
    }

    /// A diverging coordinator (with `extra` options) and two workers over ipc, started.
    func distributedRun(_ extra: [String] = []) throws -> (coordinator: Spawned, workers: [Spawned], checkpoints: URL) {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 20_000), in: dir)
        let ckpt = dir.appendingPathComponent("ckpt")
        let group = ProcessGroup(self, dir: dir)
        let endpoint = "ipc://\(dir.path)/c.sock"
        let c = try group.start("coordinator", ["coordinator", "--bind", endpoint, "--data", data, "--checkpoint-dir", ckpt.path,
                                                "--min-workers", "2"] + model + extra)
        return (c, try (0..<2).map { try group.worker(endpoint, name: "w\($0)") }, ckpt)
    }

    /// Workers cannot send a non-finite gradient (the wire refuses it), so they report an error; a shard that
    /// failed twice fails the step. Before, the shards went round the workers forever.
    func testDistributedRunStopsInsteadOfDealingTheShardsRoundForever() throws {
        let (c, workers, ckpt) = try distributedRun()
        XCTAssertEqual(c.waitExit(timeout: 60), 1, c.output)
        // Either the coordinator sees the non-finite update itself, or the workers' errors fail the step.
        let error = c.output.split(separator: "\n").filter { $0.hasPrefix("Error: ") }
        XCTAssertEqual(error.count, 1, c.output)
        XCTAssertTrue(error.first.map { $0.contains("training diverged at step") || $0.contains("cannot be computed") } ?? false, c.output)
        let last = try XCTUnwrap(try steps(in: ckpt).last)
        XCTAssertGreaterThan(last, 0)
        for w in workers { XCTAssertEqual(w.waitExit(timeout: 20), 0, "worker not told to exit: \(w.output)") }
    }

    /// With `--on-nonfinite skip` a distributed run goes on to its end, skipping what cannot be computed.
    func testDistributedRunSkipsWhenToldTo() throws {
        let (c, workers, ckpt) = try distributedRun(["--steps", "6", "--on-nonfinite", "skip"])
        XCTAssertEqual(c.waitExit(timeout: 60), 0, c.output)
        XCTAssertEqual(CoordinatorStatusFile.read(ckpt)?.step, 6, c.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ckpt.appendingPathComponent("step-000000006").path))
        for w in workers { XCTAssertEqual(w.waitExit(timeout: 20), 0, w.output) }
    }
}
