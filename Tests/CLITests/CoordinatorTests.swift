import Foundation
import XCTest

/// What a coordinator claims at start: its endpoint, and its checkpoint directory.
final class CoordinatorTests: XCTestCase {
    let model = ["--embed", "16", "--units", "32", "--batch", "16", "--seq", "30", "--shards", "2", "--seed", "5",
                 "--buffer", "100", "--log-every", "1", "--epochs", "1000"]

    /// An ipc path in use is refused like a TCP port in use (libzmq replaced the socket file, and the first
    /// coordinator waited forever); a stale socket file, whose coordinator was killed, is taken over.
    func testSecondCoordinatorOnTheSameIPCPathIsRefused() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 20_000), in: dir)
        let group = ProcessGroup(self, dir: dir)
        let path = dir.appendingPathComponent("c.sock").path

        // A stale file: a socket bound, then abandoned without removing it.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        close(fd)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))

        let endpoint = "ipc://\(path)"
        let first = try group.start("first", ["coordinator", "--bind", endpoint, "--data", data, "--steps", "3",
                                              "--checkpoint-dir", dir.appendingPathComponent("a").path] + model)
        XCTAssertTrue(first.waitFor("coordinator listening"), first.output)
        let second = try group.start("second", ["coordinator", "--bind", endpoint, "--data", data,
                                                "--checkpoint-dir", dir.appendingPathComponent("b").path] + model)
        XCTAssertEqual(second.waitExit(timeout: 30), 1, second.output)
        XCTAssertTrue(second.output.contains("address is in use"), second.output)
        // The first still owns the path: a worker reaches it and the run completes.
        _ = try group.worker(endpoint, name: "w")
        XCTAssertEqual(first.waitExit(timeout: 60), 0, first.output)
    }

    /// Temporary directories left by a process killed while saving a checkpoint are removed at the next
    /// start; one of a live process (another run saving into the same directory) stays.
    func testStaleTemporaryCheckpointDirectoriesAreRemovedAtStart() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 20_000), in: dir)
        let ckpt = dir.appendingPathComponent("ckpt")
        let stale = ckpt.appendingPathComponent(".tmp-step-000000007-2147483646")
        let live = ckpt.appendingPathComponent(".tmp-step-000000007-\(getpid())")
        for d in [stale, live] {
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            try Data("half a checkpoint".utf8).write(to: d.appendingPathComponent("model.safetensors"))
        }
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt.path, "--steps", "1"] + model)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale.path), "stale temporary directory left")
        XCTAssertTrue(FileManager.default.fileExists(atPath: live.path), "a live process's save was removed")
    }
}
