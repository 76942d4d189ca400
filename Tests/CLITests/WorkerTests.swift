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

    /// A worker computing a long step keeps reading the coordinator's pings, so they never fill its receive
    /// queue (libzmq then stops reading the connection and the heartbeat drops it: a busy worker was lost
    /// after ~250 s of pings, 1,000 at 4/s). Scaled down: pings as fast as the coordinator loops and a queue of
    /// 10 against a step of seconds.
    func testBusyWorkerIsNotLostToPings() throws {
        let dir = try CLI.temporaryDirectory(self)
        let group = ProcessGroup(self, dir: dir)
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        let endpoint = "ipc://\(dir.path)/c.sock"
        let c = try group.start("coordinator", [
            "coordinator", "--bind", endpoint, "--data", data, "--checkpoint-dir", dir.appendingPathComponent("ckpt").path,
            "--steps", "2", "--shards", "1", "--batch", "64", "--seq", "100", "--embed", "256", "--units", "1024",
            "--log-every", "1", "--deadline", "600", "--ping-interval", "0.001",
        ])
        let w = try group.worker(endpoint, name: "busy", extra: ["--receive-queue", "10"])
        XCTAssertEqual(c.waitExit(timeout: 600), 0, c.output)
        XCTAssertTrue(c.output.contains("workers lost 0,"), c.output)
        XCTAssertEqual(w.waitExit(timeout: 20), 0, w.output)
    }

    /// A CURVE worker facing a coordinator that accepts connections but never answers (stopped, overloaded)
    /// keeps trying: such a handshake only runs out of time, it is no refusal. (Each failure was counted twice
    /// and blamed on the key: the worker gave up after two handshake intervals, ~60 s.) A coordinator with
    /// another key is still refused: SecurityTests.testOnlyAuthorizedWorkersJoinAndWorkersCheckTheCoordinator.
    func testCurveWorkerKeepsRetryingAnUnresponsiveCoordinator() throws {
        let dir = try CLI.temporaryDirectory(self)
        let group = ProcessGroup(self, dir: dir)
        for name in ["coordinator", "worker"] {
            XCTAssertEqual(try CLI.run(["keygen", "--output", dir.appendingPathComponent(name).path]).status, 0)
        }
        let (fd, port) = try silentListener()
        defer { close(fd) }
        let w = try group.start("worker", [
            "worker", "--connect", "tcp://127.0.0.1:\(port)", "--secret-key", dir.appendingPathComponent("worker.key").path,
            "--coordinator-key", dir.appendingPathComponent("coordinator.pub").path, "--handshake-timeout", "1",
        ])
        usleep(7_000_000)  // several handshake intervals
        XCTAssertTrue(w.isRunning, w.output)
        w.signal(SIGTERM)
        XCTAssertEqual(w.waitExit(timeout: 5), 143, w.output)
    }

    /// A TCP port on loopback whose connections the kernel completes but nobody ever reads or answers.
    private func silentListener() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        XCTAssertTrue(ok && listen(fd, 128) == 0)
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }
}
