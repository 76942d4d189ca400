import Foundation
import XCTest

/// Workers die, stall and come back; coordinators are killed and resumed; checkpoints fail or rot.
/// Every run must still end with the bits of a run in which nothing went wrong.
final class FaultToleranceTests: XCTestCase {
    let model = ["--embed", "16", "--units", "32", "--batch", "16", "--seq", "30", "--shards", "4", "--seed", "8",
                 "--buffer", "100", "--log-every", "1", "--epochs", "1000"]

    struct Run {
        let dir: URL
        let data: String
        let group: ProcessGroup
        let endpoint: String

        var ckpt: URL { dir.appendingPathComponent("ckpt") }

        /// Waits on the coordinator's status file.
        @discardableResult
        func status(timeout: Double = 60, until condition: (CoordinatorStatusFile) -> Bool) -> CoordinatorStatusFile? {
            CoordinatorStatusFile.wait(ckpt, timeout: timeout, until: condition)
        }

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
        let r = try CLI.run(["train", "--data", run.data, "--checkpoint-dir", run.dir.appendingPathComponent("reference-\(steps)").path,
                             "--steps", "\(steps)"] + model)
        XCTAssertEqual(r.status, 0, r.stderr)
        return run.checkpoint("reference-\(steps)", step: steps)
    }

    /// Runs are open-ended (they would take hundreds of steps), so no fault can arrive after the end however
    /// fast the build is. Each test ends its run with SIGTERM, which checkpoints the last completed step k;
    /// that checkpoint must equal an uninterrupted in-process run of k steps.
    func coordinator(_ run: Run, _ name: String, extra: [String] = []) throws -> Spawned {
        // A status left by an earlier coordinator of this directory must not answer for this one.
        try? FileManager.default.removeItem(at: run.ckpt.appendingPathComponent("coordinator.json"))
        return try run.group.start(name, ["coordinator", "--bind", run.endpoint, "--data", run.data,
                                          "--checkpoint-dir", run.ckpt.path] + model + extra)
    }

    func stopAndCompare(_ run: Run, _ c: Spawned, file: StaticString = #filePath, line: UInt = #line) throws {
        c.signal(SIGTERM)
        XCTAssertEqual(c.waitExit(), 143, "a stopped run exits 128 + SIGTERM: \(c.output)", file: file, line: line)
        try assertMatchesUninterruptedRun(run.dir.appendingPathComponent("ckpt"), data: run.data, options: model, file: file, line: line)
    }

    /// kill -9 workers at random moments (computing, sending, idle between steps), starting replacements.
    func testWorkersKilledAtRandomPoints() throws {
        for trial in 0..<3 {
            let run = try prepare()
            let c = try coordinator(run, "coordinator", extra: ["--deadline", "10"])
            var pool = try (0..<3).map { try run.group.worker(run.endpoint, name: "t\(trial)-w\($0)") }
            var rng = SystemRandomNumberGenerator()
            XCTAssertNotNil(run.status { $0.step >= 3 }, c.output)
            for kill in 1...4 {
                usleep(UInt32.random(in: 5_000...150_000, using: &rng))
                let victim = Int.random(in: 0..<pool.count, using: &rng)
                pool[victim].signal(SIGKILL)
                pool[victim] = try run.group.worker(run.endpoint, name: "t\(trial)-r\(kill)")
            }
            XCTAssertNotNil(run.status { $0.names.contains("t\(trial)-r4") }, c.output)
            usleep(200_000)
            try stopAndCompare(run, c)
            XCTAssertGreaterThan(CoordinatorStatusFile.read(run.ckpt)?.lostWorkers ?? 0, 0, c.output)
        }
    }

    /// A stopped worker is declared lost at the deadline; its late reply, once it wakes, is not applied twice.
    func testStoppedWorkerPastTheDeadline() throws {
        let run = try prepare()
        let c = try coordinator(run, "coordinator", extra: ["--deadline", "1"])
        let sleeper = try run.group.worker(run.endpoint, name: "sleeper")
        _ = try run.group.worker(run.endpoint, name: "steady")
        XCTAssertNotNil(run.status { Set($0.names) == ["sleeper", "steady"] && $0.step >= 1 }, c.output)
        sleeper.signal(SIGSTOP)
        XCTAssertNotNil(run.status(timeout: 30) { !$0.names.contains("sleeper") && $0.lostWorkers >= 1 }, c.output)
        usleep(1_500_000)
        sleeper.signal(SIGCONT)
        XCTAssertNotNil(run.status(timeout: 30) { $0.names.contains("sleeper") && $0.joins >= 3 }, c.output)
        usleep(300_000)
        try stopAndCompare(run, c)
    }

    /// kill -9 the coordinator; a new one resumes from the last checkpoint and the workers rejoin by themselves.
    func testCoordinatorKilledAndResumed() throws {
        let run = try prepare()
        let first = try coordinator(run, "first", extra: ["--checkpoint-every", "3"])
        let pool = try (0..<2).map { try run.group.worker(run.endpoint, name: "w\($0)") }
        XCTAssertTrue(waitForFile(run.checkpoint("ckpt", step: 9)), first.output)
        first.signal(SIGKILL)
        _ = first.waitExit()
        let second = try coordinator(run, "second", extra: ["--checkpoint-every", "3", "--resume"])
        let resumed = run.status { s in Set(s.names) == Set(pool.map(\.name)) && s.step > 9 }
        XCTAssertNotNil(resumed, "the workers did not rejoin the resumed run: \(second.output)")
        try stopAndCompare(run, second)
        for w in pool { XCTAssertEqual(w.waitExit(timeout: 20), 0, "worker was not told to exit: \(w.output)") }
    }

    /// A coordinator killed for good: a worker with --give-up-after exits with one clear line instead of
    /// waiting forever; so does one that never finds a coordinator at all. Its own computing, here ≈1 s a step
    /// (H 768 on one thread) against a 0.5 s limit, is no silence of the coordinator's.
    func testWorkerGivesUpWhenTheCoordinatorIsGoneForGood() throws {
        let run = try prepare()
        let slow = ["--embed", "16", "--units", "768", "--batch", "64", "--seq", "100", "--shards", "1", "--epochs", "1000",
                    "--log-every", "1", "--buffer", "100"]
        let c = try run.group.start("doomed", ["coordinator", "--bind", run.endpoint, "--data", run.data,
                                               "--checkpoint-dir", run.dir.appendingPathComponent("slow").path] + slow)
        let slowStatus = run.dir.appendingPathComponent("slow")
        XCTAssertNotNil(CoordinatorStatusFile.wait(slowStatus) { _ in true }, c.output)
        let worker = try run.group.worker(run.endpoint, name: "patient", extra: ["--give-up-after", "0.5"])
        XCTAssertNotNil(CoordinatorStatusFile.wait(slowStatus) { $0.step >= 3 }, c.output)
        XCTAssertTrue(worker.isRunning, "gave up while computing: \(worker.output)")
        c.signal(SIGKILL)
        _ = c.waitExit()
        let killed = Date()
        XCTAssertEqual(worker.waitExit(timeout: 30), 1, worker.output)
        XCTAssertGreaterThan(Date().timeIntervalSince(killed), 0.4, "gave up before the time it was given")
        XCTAssertTrue(worker.output.contains("Error: no word from a coordinator at \(run.endpoint) for 0.5 s (--give-up-after): giving up"),
                      worker.output)
        XCTAssertFalse(worker.output.contains("Fatal"), worker.output)

        let alone = try run.group.worker("ipc://\(run.dir.path)/nobody.sock", name: "alone", extra: ["--give-up-after", "1"])
        XCTAssertEqual(alone.waitExit(timeout: 30), 1, alone.output)
        XCTAssertTrue(alone.output.contains("giving up"), alone.output)
    }

    /// The coordinator is busy between steps for longer than the workers' --rejoin-after (here a 2.5-million-
    /// character training-time sample, ≈2.5 s on this machine, against 0.3 s; in real runs a checkpoint on a
    /// slow disk or a long validation). A worker introduces itself again but still decodes the run's next work
    /// order, so that step is computed at once instead of after --deadline (60 s); the run ends with the same bits.
    func testCoordinatorBusyLongerThanRejoinAfter() throws {
        let run = try prepare()
        let c = try coordinator(run, "busy", extra: ["--deadline", "60", "--sample-every", "10", "--sample-length", "2500000"])
        let worker = try run.group.worker(run.endpoint, name: "w", extra: ["--rejoin-after", "0.3"])
        // The sample is written after the pause: from then on the run must go on at once.
        XCTAssertTrue(waitForFile(run.ckpt.appendingPathComponent("samples.txt").path, timeout: 90), c.output.suffix(2000).description)
        let before = try XCTUnwrap(CoordinatorStatusFile.read(run.ckpt)).step
        let noticed = Date()
        XCTAssertNotNil(run.status(timeout: 90) { $0.step >= before + 5 }, c.output.suffix(2000).description)
        XCTAssertLessThan(Date().timeIntervalSince(noticed), 30, "the run stalled after the pause")
        XCTAssertEqual(CoordinatorStatusFile.read(run.ckpt)?.lostWorkers, 0, c.output.suffix(2000).description)
        XCTAssertTrue(worker.isRunning, worker.output)
        try stopAndCompare(run, c)
    }

    /// SIGTERM: the coordinator writes a checkpoint and tells its workers to exit; a resume goes on exactly.
    func testGracefulStopThenResume() throws {
        let run = try prepare()
        let first = try coordinator(run, "first")
        let worker = try run.group.worker(run.endpoint, name: "w")
        XCTAssertNotNil(run.status { $0.step >= 6 }, first.output)
        try stopAndCompare(run, first)
        XCTAssertEqual(worker.waitExit(timeout: 20), 0, "worker was not told to exit: \(worker.output)")
        let stopped = try XCTUnwrap(CoordinatorStatusFile.read(run.ckpt)).step
        let second = try coordinator(run, "second", extra: ["--resume"])
        _ = try run.group.worker(run.endpoint, name: "w2")
        // Beyond the first stop's step: stopped there again, the comparison would find its reference run already
        // written (this waited for step 10, which a first stop at step 10 or later satisfied at once).
        XCTAssertNotNil(run.status { $0.step >= stopped + 2 && $0.names == ["w2"] }, second.output)
        try stopAndCompare(run, second)
    }

    /// The checkpoint directory becomes unwritable mid-run: the failure is reported, training goes on, the
    /// earlier checkpoints stay intact, and once it is writable again the run goes on checkpointing exactly.
    func testUnwritableCheckpointDirectoryMidRun() throws {
        let run = try prepare()
        let c = try coordinator(run, "coordinator", extra: ["--checkpoint-every", "2", "--keep", "1000"])
        let worker = try run.group.worker(run.endpoint, name: "w")
        XCTAssertTrue(waitForFile(run.checkpoint("ckpt", step: 4)), c.output)
        // Pausing the only worker pauses the run; once the coordinator is quiet (no checkpoint being
        // written) the directory can be swapped.
        worker.signal(SIGSTOP)
        c.waitQuiet()
        let ckpt = run.dir.appendingPathComponent("ckpt")
        let aside = run.dir.appendingPathComponent("ckpt-aside")
        try FileManager.default.moveItem(at: ckpt, to: aside)
        try Data("not a directory".utf8).write(to: ckpt)    // root ignores permissions; a file in the way does not
        worker.signal(SIGCONT)
        XCTAssertTrue(c.waitFor("checkpoint not written"), c.output)
        worker.signal(SIGSTOP)
        c.waitQuiet()
        try FileManager.default.removeItem(at: ckpt)
        try FileManager.default.moveItem(at: aside, to: ckpt)
        worker.signal(SIGCONT)
        usleep(200_000)
        try stopAndCompare(run, c)
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
        XCTAssertTrue(resumed.stderr.contains("warning: skipping unusable checkpoint step-000000012"), "a warning, on stderr: \(resumed.stderr)")
        XCTAssertTrue(resumed.stdout.contains("resuming from \(run.checkpoint("ckpt", step: 9))"), resumed.stdout)
        assertSameCheckpoint(expected, run.checkpoint("ckpt", step: 18))
    }
}
