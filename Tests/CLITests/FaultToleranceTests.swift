import Foundation
import XCTest

/// Workers die, stall and come back; coordinators are killed and resumed; checkpoints fail or rot.
/// Every run must still end with the bits of a run in which nothing went wrong.
final class FaultToleranceTests: XCTestCase {
    let model = ["--embed", "16", "--units", "32", "--batch", "16", "--seq", "30", "--shards", "4", "--seed", "8",
                 "--buffer", "100", "--log-every", "1"]

    struct Run {
        let dir: URL
        let data: String
        let group: ProcessGroup
        let endpoint: String

        func checkpoint(_ name: String, step: Int) -> String {
            dir.appendingPathComponent(name).path + "/" + String(format: "step-%09d", step)
        }
    }

    func prepare() throws -> Run {
        let dir = try CLI.temporaryDirectory(self)
        return Run(dir: dir, data: try CLI.write(CLI.text(characters: 40_000), in: dir), group: ProcessGroup(self, dir: dir),
                   endpoint: "ipc://\(dir.path)/coordinator.sock")
    }

    /// The uninterrupted in-process run every faulty run must equal.
    func reference(_ run: Run, steps: Int) throws -> String {
        let r = try CLI.run(["train", "--data", run.data, "--checkpoint-dir", run.dir.appendingPathComponent("reference").path,
                             "--steps", "\(steps)"] + model)
        XCTAssertEqual(r.status, 0, r.stderr)
        return run.checkpoint("reference", step: steps)
    }

    func coordinator(_ run: Run, _ name: String, steps: Int, extra: [String] = []) throws -> Spawned {
        try run.group.start(name, ["coordinator", "--bind", run.endpoint, "--data", run.data, "--steps", "\(steps)",
                                   "--checkpoint-dir", run.dir.appendingPathComponent("ckpt").path] + model + extra)
    }

    /// kill -9 workers at random moments (computing, sending, idle between steps), starting replacements.
    func testWorkersKilledAtRandomPoints() throws {
        for trial in 0..<3 {
            let run = try prepare()
            let steps = 40
            let expected = try reference(run, steps: steps)
            let c = try coordinator(run, "coordinator", steps: steps, extra: ["--deadline", "10"])
            var pool = try (0..<3).map { try run.group.worker(run.endpoint, name: "t\(trial)-w\($0)") }
            var rng = SystemRandomNumberGenerator()
            var kills = 0
            XCTAssertTrue(c.waitFor("epoch 1 step 3/"), c.output)
            while c.isRunning && kills < 4 {
                usleep(UInt32.random(in: 5_000...80_000, using: &rng))
                guard c.isRunning else { break }
                let victim = Int.random(in: 0..<pool.count, using: &rng)
                pool[victim].signal(SIGKILL)
                kills += 1
                pool[victim] = try run.group.worker(run.endpoint, name: "t\(trial)-r\(kills)")
            }
            XCTAssertEqual(c.waitExit(), 0, c.output)
            XCTAssertGreaterThan(kills, 0)
            assertSameCheckpoint(expected, run.checkpoint("ckpt", step: steps))
        }
    }

    /// A stopped worker is declared lost at the deadline; its late reply, once it wakes, is not applied twice.
    func testStoppedWorkerPastTheDeadline() throws {
        let run = try prepare()
        let steps = 30
        let expected = try reference(run, steps: steps)
        let c = try coordinator(run, "coordinator", steps: steps, extra: ["--deadline", "1"])
        let sleeper = try run.group.worker(run.endpoint, name: "sleeper")
        let steady = try run.group.worker(run.endpoint, name: "steady")
        XCTAssertTrue(c.waitFor("epoch 1 step 4/"), c.output)
        sleeper.signal(SIGSTOP)
        XCTAssertTrue(c.waitFor("worker sleeper lost", timeout: 30), c.output)
        usleep(1_500_000)
        sleeper.signal(SIGCONT)
        XCTAssertEqual(c.waitExit(), 0, c.output)
        XCTAssertEqual(steady.waitExit(timeout: 20), 0)
        assertSameCheckpoint(expected, run.checkpoint("ckpt", step: steps))
    }

    /// kill -9 the coordinator; a new one resumes from the last checkpoint and the workers rejoin by themselves.
    func testCoordinatorKilledAndResumed() throws {
        let run = try prepare()
        let steps = 40
        let expected = try reference(run, steps: steps)
        let first = try coordinator(run, "first", steps: steps, extra: ["--checkpoint-every", "3"])
        let pool = try (0..<2).map { try run.group.worker(run.endpoint, name: "w\($0)") }
        XCTAssertTrue(first.waitFor("step-000000009"), first.output)
        first.signal(SIGKILL)
        _ = first.waitExit()
        let second = try coordinator(run, "second", steps: steps, extra: ["--checkpoint-every", "3", "--resume"])
        XCTAssertEqual(second.waitExit(), 0, second.output)
        XCTAssertTrue(second.output.contains("resuming from"), second.output)
        for w in pool {
            XCTAssertEqual(w.waitExit(timeout: 20), 0, w.output)
            XCTAssertGreaterThanOrEqual(w.count("joined run"), 2, "worker did not rejoin: \(w.output)")
        }
        assertSameCheckpoint(expected, run.checkpoint("ckpt", step: steps))
    }

    /// SIGTERM: the coordinator writes a checkpoint and tells its workers to exit; a resume finishes exactly.
    func testGracefulStopThenResume() throws {
        let run = try prepare()
        let steps = 30
        let expected = try reference(run, steps: steps)
        let first = try coordinator(run, "first", steps: steps)
        let worker = try run.group.worker(run.endpoint, name: "w")
        XCTAssertTrue(first.waitFor("epoch 1 step 6/"), first.output)
        first.signal(SIGTERM)
        XCTAssertEqual(first.waitExit(timeout: 30), 0, first.output)
        XCTAssertEqual(worker.waitExit(timeout: 20), 0, "worker was not told to exit: \(worker.output)")
        XCTAssertTrue(first.output.contains("checkpoint "), first.output)
        let second = try coordinator(run, "second", steps: steps, extra: ["--resume"])
        let again = try run.group.worker(run.endpoint, name: "w2")
        XCTAssertEqual(second.waitExit(), 0, second.output)
        XCTAssertEqual(again.waitExit(timeout: 20), 0)
        assertSameCheckpoint(expected, run.checkpoint("ckpt", step: steps))
    }

    /// The checkpoint directory becomes unwritable mid-run: the failure is reported, training goes on, the
    /// earlier checkpoints stay intact, and once it is writable again the run ends with the exact weights.
    func testUnwritableCheckpointDirectoryMidRun() throws {
        let run = try prepare()
        let steps = 24
        let expected = try reference(run, steps: steps)
        let c = try coordinator(run, "coordinator", steps: steps, extra: ["--checkpoint-every", "2", "--keep", "20"])
        let worker = try run.group.worker(run.endpoint, name: "w")
        XCTAssertTrue(c.waitFor("step-000000004"), c.output)
        // Pausing the only worker pauses the run, so the directory can be swapped at a known point.
        worker.signal(SIGSTOP)
        let ckpt = run.dir.appendingPathComponent("ckpt")
        let aside = run.dir.appendingPathComponent("ckpt-aside")
        try FileManager.default.moveItem(at: ckpt, to: aside)
        try Data("not a directory".utf8).write(to: ckpt)    // root ignores permissions; a file in the way does not
        worker.signal(SIGCONT)
        XCTAssertTrue(c.waitFor("checkpoint not written"), c.output)
        worker.signal(SIGSTOP)
        try FileManager.default.removeItem(at: ckpt)
        try FileManager.default.moveItem(at: aside, to: ckpt)
        worker.signal(SIGCONT)
        XCTAssertEqual(c.waitExit(), 0, c.output)
        assertSameCheckpoint(expected, run.checkpoint("ckpt", step: steps))
        let v = try CLI.run(["evaluate", "--checkpoint", run.checkpoint("ckpt", step: 4), "--data", run.data])
        XCTAssertEqual(v.status, 0, "an earlier checkpoint was damaged: \(v.stderr)")
    }

    /// A corrupted latest checkpoint is detected by its checksum and the previous one is used.
    func testTruncatedLatestCheckpointFallsBackToThePrevious() throws {
        let run = try prepare()
        let expected = try reference(run, steps: 18)
        let ckpt = run.dir.appendingPathComponent("ckpt").path
        let base = ["train", "--data", run.data, "--checkpoint-dir", ckpt, "--checkpoint-every", "3"] + model
        XCTAssertEqual(try CLI.run(base + ["--steps", "12"]).status, 0)
        let latest = URL(fileURLWithPath: run.checkpoint("ckpt", step: 12) + "/model.safetensors")
        let bytes = try Data(contentsOf: latest)
        try bytes.prefix(bytes.count - 100).write(to: latest)
        let resumed = try CLI.run(base + ["--steps", "18", "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("skipping unusable checkpoint step-000000012"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("resuming from \(run.checkpoint("ckpt", step: 9))"), resumed.stdout)
        assertSameCheckpoint(expected, run.checkpoint("ckpt", step: 18))
    }
}
