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

    /// A fake coordinator (this test, speaking the wire format) welcomes a worker to a run far larger than
    /// the worker may hold: the worker refuses with one line, before allocating, instead of trying to
    /// allocate it (a squatter's welcome once made a worker allocate 17 GB).
    func testWorkerRefusesAWelcomeBeyondItsMemoryLimit() throws {
        let dir = try CLI.temporaryDirectory(self)
        let group = ProcessGroup(self, dir: dir)
        let endpoint = "ipc://\(dir.path)/fake.sock"
        let context = try ZMQContext()
        let fake = try ZMQSocket(context, .router)
        try fake.setOption(.linger, 0)
        try fake.bind(endpoint)
        // About 3 GiB by the worker's estimate: one big layer, every shard at once.
        let shape = try RunShape(config: ModelConfig(vocab: 65, embed: 256, units: 2048, cell: .gru, layers: 2),
                                 seq: 100, rowsPerShard: 64, shardCount: 8)
        XCTAssertGreaterThan(shape.workerBytes, 2 << 30)
        let w = try group.start("worker", ["worker", "--connect", endpoint, "--max-memory", "1"])
        let codec = WireCodec(runID: 42, shape: shape)
        var welcomed = false, refusal: String?
        let end = Date().addingTimeInterval(20)
        while refusal == nil && Date() < end {
            guard let frames = try fake.receiveMultipart(timeoutMs: 100) else { continue }
            let peer = frames[0].array
            switch try codec.decode(frames.dropFirst()).message {
            case .hello where !welcomed:
                try fake.send([.bytes(peer)] + codec.encode(.welcome(shape)))
                welcomed = true
            case .error(let text): refusal = text
            default: break
            }
        }
        XCTAssertNotNil(refusal, "the worker did not tell the coordinator why it left: \(w.output)")
        XCTAssertEqual(w.waitExit(timeout: 10), 1, w.output)
        let lines = w.output.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        XCTAssertEqual(lines.count, 1, w.output)
        XCTAssertTrue(lines.first?.contains("more than --max-memory 1.0 GiB") == true, w.output)
        assertCleanFailure(try CLI.run(["worker", "--max-memory", "0"]), mentions: "--max-memory")
    }

    /// --name is checked (one line, instead of a worker whose hello cannot be encoded looping silently), and
    /// long names never collide: two workers whose names share their first 250 bytes both join (the routing id
    /// was the name cut at 250 bytes, so the second was ignored).
    func testWorkerNamesAreCheckedAndLongNamesDoNotCollide() throws {
        let dir = try CLI.temporaryDirectory(self)
        let group = ProcessGroup(self, dir: dir)
        let endpoint = "ipc://\(dir.path)/c.sock"
        for bad in [String(repeating: "n", count: 257), "red\u{1B}[31m"] {
            let w = try group.start("bad-name", ["worker", "--connect", endpoint, "--name", bad])
            XCTAssertEqual(w.waitExit(timeout: 10), 1, w.output)
            XCTAssertEqual(w.output.split(separator: "\n").count, 1, w.output)
            XCTAssertTrue(w.output.hasPrefix("Error: invalid option: --name: worker name"), w.output)
        }
        let data = try CLI.write(CLI.text(characters: 20_000), in: dir)
        let c = try group.start("coordinator", [
            "coordinator", "--bind", endpoint, "--data", data, "--checkpoint-dir", dir.appendingPathComponent("ckpt").path,
            "--steps", "3", "--min-workers", "2", "--embed", "16", "--units", "32", "--batch", "16", "--seq", "30", "--shards", "2",
        ])
        let long = String(repeating: "x", count: 250)
        let a = try group.start("a", ["worker", "--connect", endpoint, "--name", long + "a"])
        let b = try group.start("b", ["worker", "--connect", endpoint, "--name", long + "b"])
        XCTAssertEqual(c.waitExit(timeout: 60), 0, c.output)
        XCTAssertEqual(a.waitExit(timeout: 20), 0, a.output)
        XCTAssertEqual(b.waitExit(timeout: 20), 0, b.output)
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
