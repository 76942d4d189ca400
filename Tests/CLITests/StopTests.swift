import Foundation
import XCTest

/// A second SIGTERM exits at once, even while compute threads are inside OpenBLAS: without running the
/// library's teardown under them (seen as segmentation faults and "BLAS : Bad memory unallocation!").
final class StopTests: XCTestCase {
    func testSecondSignalExitsAtOnceWhileComputing() throws {
        let dir = try CLI.temporaryDirectory(self)
        let group = ProcessGroup(self, dir: dir)
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        // The crash needs the signal to land inside a BLAS call with its buffers in use: about one trial in
        // twenty before the fix, hence many short trials.
        for trial in 0..<16 {
            let run = try group.start("train", [
                "train", "--data", data, "--checkpoint-dir", dir.appendingPathComponent("ckpt-\(trial)").path,
                "--embed", "64", "--units", "512", "--batch", "64", "--seq", "100", "--threads", "2", "--log-every", "1",
            ])
            XCTAssertTrue(run.waitFor("model "), run.output)
            usleep(UInt32(200_000 + 50_000 * trial))  // inside a step
            run.signal(SIGTERM)
            usleep(UInt32(10_000 * (trial % 5)))
            run.signal(SIGTERM)
            XCTAssertEqual(run.waitExit(timeout: 5), 143, run.output)
            XCTAssertEqual(run.process.terminationReason, .exit, run.output)
            for crash in ["Bad memory", "Segmentation", "Fatal error"] { XCTAssertFalse(run.output.contains(crash), run.output) }
        }
    }
}
