import Foundation
import XCTest

/// "Same bits whatever the workers" holds across machines: a worker that computes differently (another
/// OpenBLAS kernel here) is refused with one line naming both identities; an identical one is admitted.
final class NumericsIdentityTests: XCTestCase {
    func testWorkerWithAnotherBLASKernelIsRefused() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 20_000), in: dir)
        let group = ProcessGroup(self, dir: dir)
        let endpoint = "ipc://\(dir.path)/c.sock"
        let c = try group.start("coordinator", [
            "coordinator", "--bind", endpoint, "--data", data, "--checkpoint-dir", dir.appendingPathComponent("ckpt").path,
            "--steps", "3", "--embed", "16", "--units", "32", "--batch", "16", "--seq", "30", "--shards", "2", "--log-every", "1",
        ])
        XCTAssertTrue(c.waitFor("coordinator listening"), c.output)
        // An explicit core type always wins over the one charrnn would pick (BLASSetup).
        let odd = try group.start("odd", ["OPENBLAS_CORETYPE=Prescott", CLI.executable.path, "worker", "--connect", endpoint, "--name", "odd"],
                                  executable: URL(fileURLWithPath: "/usr/bin/env"))
        XCTAssertEqual(odd.waitExit(timeout: 30), 1, odd.output)
        let errors = odd.output.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        XCTAssertEqual(errors.count, 1, odd.output)
        XCTAssertTrue(errors.first?.contains("numerics differ") == true && errors.first?.contains("OpenBLAS Prescott") == true, odd.output)
        XCTAssertFalse(c.output.contains("worker odd joined"), c.output)

        let same = try group.worker(endpoint, name: "same")
        XCTAssertEqual(c.waitExit(timeout: 60), 0, c.output)
        XCTAssertEqual(same.waitExit(timeout: 20), 0, same.output)
        XCTAssertTrue(c.output.contains("worker same joined"), c.output)
    }

    /// A worker whose own kernel choice differs from the run's takes the run's, where its CPU can run it
    /// (here the coordinator is told Sandybridge, AVX, which every machine of this kind has; the worker would
    /// pick Haswell or SkylakeX itself), and the run ends with the bits of a Sandybridge run in one process.
    func testWorkerAdoptsTheRunsKernelWhenItCan() throws {
        guard (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.contains(" avx ") == true else {
            throw XCTSkip("this CPU has no AVX")
        }
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 20_000), in: dir)
        let group = ProcessGroup(self, dir: dir)
        let endpoint = "ipc://\(dir.path)/c.sock"
        let model = ["--steps", "3", "--embed", "16", "--units", "32", "--batch", "16", "--seq", "30", "--shards", "2", "--seed", "3"]
        let ckpt = dir.appendingPathComponent("ckpt")
        let c = try group.start("coordinator", ["OPENBLAS_CORETYPE=Sandybridge", CLI.executable.path, "coordinator", "--bind", endpoint,
                                                "--data", data, "--checkpoint-dir", ckpt.path] + model,
                                executable: URL(fileURLWithPath: "/usr/bin/env"))
        // Whatever this environment says, the worker's kernel is its own choice.
        let worker = try group.start("adaptable", ["-u", "OPENBLAS_CORETYPE", "-u", "CHARRNN_CORETYPE_CHOSEN", CLI.executable.path, "worker",
                                                   "--connect", endpoint, "--name", "adaptable", "--threads", "1"],
                                     executable: URL(fileURLWithPath: "/usr/bin/env"))
        XCTAssertEqual(c.waitExit(timeout: 60), 0, c.output)
        XCTAssertEqual(worker.waitExit(timeout: 20), 0, worker.output)
        XCTAssertEqual(CoordinatorStatusFile.read(ckpt)?.joins, 1, c.output)
        let reference = dir.appendingPathComponent("reference")
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", reference.path] + model, environment: ["OPENBLAS_CORETYPE": "Sandybridge"])
        XCTAssertEqual(r.status, 0, r.stderr)
        assertSameCheckpoint(reference.appendingPathComponent("step-000000003").path, ckpt.appendingPathComponent("step-000000003").path)
    }
}
