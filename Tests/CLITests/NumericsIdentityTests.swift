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
}
