import Foundation
import XCTest

/// Coordinator and workers as real processes over real sockets.
final class DistributedTests: XCTestCase {
    static let steps = 10
    let model = ["--embed", "16", "--units", "32", "--batch", "16", "--seq", "30", "--shards", "4", "--seed", "5",
                 "--buffer", "100", "--log-every", "5", "--epochs", "1000"]

    func dataFile(_ dir: URL) throws -> String { try CLI.write(CLI.text(characters: 40_000), in: dir) }

    func reference(_ dir: URL, data: String, model: [String]) throws -> String {
        let ckpt = dir.appendingPathComponent("reference").path
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "\(Self.steps)", "--threads", "2"] + model)
        XCTAssertEqual(r.status, 0, r.stderr)
        return "\(ckpt)/step-0000000\(Self.steps)"
    }

    /// The weights after N steps depend on the seed and the shard count only: in-process, or 1, 2 or 4
    /// workers, over tcp or ipc, all give the same bits.
    func testSameBitsWhateverTheWorkerCountAndTransport() throws {
        try checkSameBits(model: model, runs: [(1, "tcp"), (2, "ipc"), (4, "tcp"), (2, "tcp")])
    }

    /// The same for stacked layers, whose state per shard is every layer's.
    func testSameBitsForStackedLayers() throws {
        try checkSameBits(model: model + ["--layers", "2"], runs: [(2, "ipc"), (4, "tcp")])
    }

    /// And for a 2-layer LSTM with dropout: a shard's masks depend on the step and the shard, not on the worker.
    func testSameBitsForTwoLayerLSTMWithDropout() throws {
        try checkSameBits(model: model + ["--cell", "lstm", "--layers", "2", "--dropout", "0.3"], runs: [(1, "ipc"), (3, "tcp")])
    }

    private func checkSameBits(model: [String], runs: [(workers: Int, transport: String)]) throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try dataFile(dir)
        let expected = try reference(dir, data: data, model: model)
        let group = ProcessGroup(self, dir: dir)
        for (workers, transport) in runs {
            let endpoint = transport == "tcp" ? "tcp://127.0.0.1:\(freeTCPPort())" : "ipc://\(dir.path)/c-\(workers).sock"
            let ckpt = dir.appendingPathComponent("run-\(workers)-\(transport)").path
            let coordinator = try group.start("coordinator", ["coordinator", "--bind", endpoint, "--data", data, "--checkpoint-dir", ckpt,
                                                              "--steps", "\(Self.steps)", "--min-workers", "\(workers)"]
                                              + model + (transport == "tcp" ? ["--insecure"] : []))
            let pool = try (0..<workers).map { try group.worker(endpoint, name: "w\($0)") }
            XCTAssertEqual(coordinator.waitExit(), 0, coordinator.output)
            for w in pool { XCTAssertEqual(w.waitExit(timeout: 20), 0, "worker did not exit on shutdown: \(w.output)") }
            let status = try XCTUnwrap(CoordinatorStatusFile.read(URL(fileURLWithPath: ckpt)), coordinator.output)
            XCTAssertEqual(status.lostWorkers, 0, coordinator.output)
            XCTAssertEqual(status.workers.map(\.shards).reduce(0, +), 4 * Self.steps, "every shard computed once")
            for w in pool { XCTAssertGreaterThan(w.count("joined run"), 0) }
            assertSameCheckpoint(expected, "\(ckpt)/step-0000000\(Self.steps)")
        }
    }

    /// A longer distributed run learns like in-process training, and its checkpoint samples text.
    func testDistributedRunLearnsAndItsCheckpointGenerates() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 60_000), in: dir)
        let ckpt = dir.appendingPathComponent("ckpt").path
        let r = try CLI.run(["launch", "--workers", "2", "--data", data, "--checkpoint-dir", ckpt, "--steps", "150",
                             "--lr", "0.01", "--log-every", "50", "--embed", "16", "--units", "48", "--batch", "16", "--seq", "40", "--shards", "2"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let losses = r.stdout.split(separator: "\n").compactMap { line -> Double? in
            guard line.hasPrefix("epoch"), let range = line.range(of: "loss ") else { return nil }
            return Double(line[range.upperBound...].prefix { $0 != " " })
        }
        XCTAssertGreaterThanOrEqual(losses.count, 3, r.stdout)
        XCTAssertLessThan(losses.last!, 0.7 * log(Double(Set(CLI.text(characters: 60_000).unicodeScalars).count)), r.stdout)
        let g = try CLI.run(["generate", "--checkpoint", ckpt, "--prime", "The ", "--length", "100"])
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertEqual(g.stdout.unicodeScalars.count, 4 + 100 + 1)
    }

    /// A worker that connects mid-run is given shards from then on.
    func testLateWorkerGetsShards() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try dataFile(dir)
        let group = ProcessGroup(self, dir: dir)
        let endpoint = "ipc://\(dir.path)/late.sock"
        let ckpt = dir.appendingPathComponent("c")
        let coordinator = try group.start("coordinator", ["coordinator", "--bind", endpoint, "--data", data,
                                                          "--checkpoint-dir", ckpt.path] + model)
        let early = try group.worker(endpoint, name: "early")
        XCTAssertNotNil(CoordinatorStatusFile.wait(ckpt) { $0.step >= 5 }, coordinator.output)
        let late = try group.worker(endpoint, name: "late")
        let computed = CoordinatorStatusFile.wait(ckpt) { $0.workers.contains { $0.name == "late" && $0.shards > 0 } }
        XCTAssertNotNil(computed, "the late worker computed nothing: \(coordinator.output)")
        coordinator.signal(SIGTERM)
        XCTAssertEqual(coordinator.waitExit(), 143, "a stopped run exits 128 + SIGTERM: \(coordinator.output)")
        XCTAssertEqual(late.waitExit(timeout: 20), 0)
        XCTAssertEqual(early.waitExit(timeout: 20), 0)
    }

    func testSecondCoordinatorOnTheSamePortFailsClearly() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try dataFile(dir)
        let group = ProcessGroup(self, dir: dir)
        let endpoint = "tcp://127.0.0.1:\(freeTCPPort())"
        let first = try group.start("first", ["coordinator", "--bind", endpoint, "--data", data, "--insecure",
                                              "--checkpoint-dir", dir.appendingPathComponent("a").path] + model)
        XCTAssertNotNil(CoordinatorStatusFile.wait(dir.appendingPathComponent("a")) { _ in true }, first.output)
        let second = try CLI.run(["coordinator", "--bind", endpoint, "--data", data, "--insecure", "--checkpoint-dir", dir.appendingPathComponent("b").path] + model)
        XCTAssertNotEqual(second.status, 0)
        XCTAssertTrue(second.stderr.contains("address is in use"), second.stderr)
        XCTAssertEqual(second.stderr.split(separator: "\n").count, 1, second.stderr)
        first.signal(SIGTERM)
        XCTAssertEqual(first.waitExit(timeout: 30), 143, first.output)
    }
}
