import CharRNN
import CharRNNDistributed
import Foundation
import XCTest

/// A worker hangs on nothing and trusts no coordinator: it always hears a stop, never blocks in a send, and
/// checks what it is told before acting on it.
final class WorkerTests: XCTestCase {
    /// With no coordinator listening, hellos are never queued up until a send blocks: a single SIGTERM stops
    /// the worker (143, as a stopped process) and --give-up-after fires, over ipc and tcp.
    func testWorkerWithNoCoordinatorStopsOnSIGTERMAndGivesUp() throws {
        let dir = try CLI.temporaryDirectory(self)
        let group = ProcessGroup(self, dir: dir)
        for dead in ["ipc://\(dir.path)/nobody.sock", "tcp://127.0.0.1:\(freeTCPPort())"] {
            let w = try group.worker(dead, name: "lonely")
            XCTAssertTrue(w.waitFor("connecting"), w.output)
            usleep(3_000_000)  // a few hellos go unanswered
            w.signal(SIGTERM)
            XCTAssertEqual(w.waitExit(timeout: 5), 143, w.output)

            let patient = try group.start("patient", ["worker", "--connect", dead, "--give-up-after", "2"])
            XCTAssertEqual(patient.waitExit(timeout: 10), 1, patient.output)
            XCTAssertTrue(patient.output.contains("giving up"), patient.output)
        }
    }
}
