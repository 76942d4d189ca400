import CharRNN
import Foundation
import XCTest

/// Workers pull shards (more shards than workers), and a stopped worker's shards are copied to the others,
/// with real processes: the bits stay those of the in-process run.
final class PullDealingTests: XCTestCase {
    static let steps = 10
    let model = ["--embed", "16", "--units", "32", "--batch", "12", "--seq", "30", "--shards", "6", "--seed", "5",
                 "--buffer", "100", "--log-every", "1", "--epochs", "1000"]

    /// 6 shards over 2 workers (ipc and tcp) and over 5 (tcp: an uneven share) equal `train --shards 6` bit for bit.
    func testMoreShardsThanWorkersGiveTheInProcessBits() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        let reference = dir.appendingPathComponent("reference").path
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", reference, "--steps", "\(Self.steps)"] + model)
        XCTAssertEqual(r.status, 0, r.stderr)
        let group = ProcessGroup(self, dir: dir)
        for (transport, workers) in [("ipc", 2), ("tcp", 2), ("tcp", 5)] {
            let endpoint = transport == "tcp" ? "tcp://127.0.0.1:\(freeTCPPort())" : "ipc://\(dir.path)/c.sock"
            let ckpt = dir.appendingPathComponent("run-\(transport)-\(workers)").path
            let coordinator = try group.start("coordinator", ["coordinator", "--bind", endpoint, "--data", data, "--checkpoint-dir", ckpt,
                                                              "--steps", "\(Self.steps)", "--min-workers", "\(workers)"]
                                              + model + (transport == "tcp" ? ["--insecure"] : []))
            let pool = try (0..<workers).map { try group.worker(endpoint, name: "\(transport)-\(workers)-w\($0)") }
            XCTAssertEqual(coordinator.waitExit(), 0, coordinator.output)
            for w in pool { XCTAssertEqual(w.waitExit(timeout: 20), 0, "worker did not exit on shutdown: \(w.output)") }
            let status = try XCTUnwrap(CoordinatorStatusFile.read(URL(fileURLWithPath: ckpt)), coordinator.output)
            XCTAssertEqual(status.lostWorkers, 0, coordinator.output)
            XCTAssertEqual(status.workers.map(\.shards).reduce(0, +), 6 * Self.steps, "every shard counted once")
            XCTAssertTrue(status.workers.allSatisfy { $0.shards > 0 }, "\(status.workers)")
            let name = String(format: "step-%09d", Self.steps)
            assertSameCheckpoint("\(reference)/\(name)", "\(ckpt)/\(name)")
        }
    }

    /// One of three workers is stopped (SIGSTOP) for 5 s with --deadline 60. Its shards are copied to the
    /// others as soon as they are idle, so no step waits for it: not the deadline, and not even the 1.5 s
    /// after which the transport's heartbeat drops it. Once it is continued the run goes on with the same bits.
    func testStoppedWorkerCostsNoStepItsStall() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        let group = ProcessGroup(self, dir: dir)
        let endpoint = "ipc://\(dir.path)/c.sock"
        let ckpt = dir.appendingPathComponent("ckpt")
        let coordinator = try group.start("coordinator", ["coordinator", "--bind", endpoint, "--data", data, "--checkpoint-dir", ckpt.path,
                                                          "--deadline", "60"] + model)
        let pool = try (0..<3).map { try group.worker(endpoint, name: "w\($0)") }
        XCTAssertNotNil(CoordinatorStatusFile.wait(ckpt) { $0.names.count == 3 && $0.step >= 20 }, coordinator.output)
        try stallForFiveSeconds(pool[1], named: "w1", steps: 20, within: 4, ckpt: ckpt, coordinator: coordinator)
        let status = try XCTUnwrap(CoordinatorStatusFile.read(ckpt))
        XCTAssertGreaterThan(status.speculativeShards, 0, coordinator.output)
        coordinator.signal(SIGTERM)
        XCTAssertEqual(coordinator.waitExit(), 143, "a stopped run exits 128 + SIGTERM: \(coordinator.output)")
        // The longest step of the whole run, stall included, is far below both the deadline and the heartbeat.
        let times = try MetricsLog.read(ckpt.appendingPathComponent(MetricsLog.jsonName)).filter { $0.loss != nil }.map(\.wallTime)
        let steps = zip(times.dropFirst(), times).map { $0 - $1 }
        let longest = steps.max() ?? .infinity
        // With the step's index and the coordinator's account, so that a rare failure can be read afterwards.
        XCTAssertLessThan(longest, 1.0, "the longest step, step \((steps.firstIndex(of: longest) ?? -1) + 2), took \(longest) s; \(status)\n\(coordinator.output)")
        try assertMatchesUninterruptedRun(ckpt, data: data, options: model)
    }
}
