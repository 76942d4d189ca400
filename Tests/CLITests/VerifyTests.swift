import Foundation
import XCTest

/// `coordinator --verify`: a worker returning forged but finite gradients is caught by a second computation on
/// another worker, dealt nothing more, and its work redone: the run ends with the honest run's bits.
final class VerifyTests: XCTestCase {
    let model = ["--embed", "16", "--units", "32", "--batch", "16", "--seq", "30", "--shards", "4", "--seed", "5",
                 "--buffer", "100", "--epochs", "1000"]

    func testForgedGradientsAreCaughtAndTheWeightsAreTheHonestRuns() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        let group = ProcessGroup(self, dir: dir)
        let endpoint = "ipc://\(dir.path)/c.sock"
        let ckpt = dir.appendingPathComponent("ckpt")
        // Open-ended, like the fault tests: the run is stopped once the forger has been caught, whenever it joined.
        let c = try group.start("coordinator", ["coordinator", "--bind", endpoint, "--data", data, "--checkpoint-dir", ckpt.path,
                                                "--min-workers", "3", "--verify", "1"] + model)
        let honest = try (0..<3).map { try group.worker(endpoint, name: "honest-\($0)") }
        let forger = try group.worker(endpoint, name: "forger", extra: ["--fault-forge-from-step", "0"])
        XCTAssertNotNil(CoordinatorStatusFile.wait(ckpt) { $0.distrustedWorkers == 1 && $0.step >= 6 }, c.output)
        c.signal(SIGTERM)
        XCTAssertEqual(c.waitExit(), 143, c.output)
        let status = try XCTUnwrap(CoordinatorStatusFile.read(ckpt), c.output)
        XCTAssertEqual(status.distrustedWorkers, 1, c.output)
        XCTAssertGreaterThanOrEqual(status.mismatches, 1)
        XCTAssertGreaterThanOrEqual(status.verifiedShards, 4 * status.step, "every shard checked")
        XCTAssertEqual(status.names.sorted(), ["honest-0", "honest-1", "honest-2"])
        try assertMatchesUninterruptedRun(ckpt, data: data, options: model)
        for w in honest + [forger] { XCTAssertEqual(w.waitExit(timeout: 20), 0, w.output) }
    }

    func testVerifyOutOfRangeIsRefused() throws {
        let r = try CLI.run(["coordinator", "--verify", "1.5"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains("--verify must be a fraction from 0 to 1"), r.stderr)
    }
}
