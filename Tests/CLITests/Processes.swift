import Foundation
import XCTest

/// A `charrnn` process running in the background with its output in a file, for tests that kill, stop and
/// restart real processes.
final class Spawned {
    let process = Process()
    let log: URL
    let name: String

    init(_ args: [String], log: URL, name: String, executable: URL = CLI.executable) throws {
        self.log = log
        self.name = name
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.executableURL = executable
        process.arguments = args
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        try handle.close()
    }

    var pid: Int32 { process.processIdentifier }
    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }

    func signal(_ sig: Int32) { kill(pid, sig) }

    /// Waits until the output contains `text` (true) or the time runs out (false).
    @discardableResult
    func waitFor(_ text: String, timeout: Double = 60) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if output.contains(text) { return true }
            if !process.isRunning { return output.contains(text) }
            usleep(20_000)
        }
        return false
    }

    /// Waits until `text` occurs at least `times` times.
    @discardableResult
    func waitFor(_ text: String, times: Int, timeout: Double = 60) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end && count(text) < times && process.isRunning { usleep(20_000) }
        return count(text) >= times
    }

    /// Waits until the output has not grown for `quiet` seconds: the process is idle (e.g. blocked on a
    /// stopped peer) rather than in the middle of something.
    func waitQuiet(_ quiet: Double = 0.3, timeout: Double = 30) {
        let end = Date().addingTimeInterval(timeout)
        var last = output.count, since = Date()
        while Date() < end {
            usleep(20_000)
            let now = output.count
            if now != last { (last, since) = (now, Date()) } else if Date().timeIntervalSince(since) >= quiet { return }
        }
    }

    /// Waits for exit; nil when it is still running after `timeout` (it is then killed).
    func waitExit(timeout: Double = 120) -> Int32? {
        let end = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < end { usleep(20_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    /// Counts occurrences of `text` in the output.
    func count(_ text: String) -> Int { output.components(separatedBy: text).count - 1 }
}

/// A set of processes that are all killed when the test ends, whatever happens in it.
final class ProcessGroup {
    private(set) var all: [Spawned] = []
    let dir: URL
    private var counter = 0

    init(_ test: XCTestCase, dir: URL) {
        self.dir = dir
        test.addTeardownBlock { [self] in
            for p in all where p.isRunning { kill(p.pid, SIGCONT); kill(p.pid, SIGKILL) }
            for p in all { p.process.waitUntilExit() }
        }
    }

    func start(_ name: String, _ args: [String], executable: URL = CLI.executable) throws -> Spawned {
        counter += 1
        let p = try Spawned(args, log: dir.appendingPathComponent("\(counter)-\(name).log"), name: name, executable: executable)
        all.append(p)
        return p
    }

    func worker(_ endpoint: String, name: String, extra: [String] = []) throws -> Spawned {
        try start(name, ["worker", "--connect", endpoint, "--threads", "1", "--name", name, "--rejoin-after", "1"] + extra)
    }
}

/// The files that must be equal bit for bit when two runs are "the same run".
func assertSameCheckpoint(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) {
    for name in ["model.safetensors", "optimizer.safetensors", "state.safetensors"] {
        let x = FileManager.default.contents(atPath: "\(a)/\(name)")
        let y = FileManager.default.contents(atPath: "\(b)/\(name)")
        XCTAssertNotNil(x, "\(a)/\(name) missing", file: file, line: line)
        XCTAssertNotNil(y, "\(b)/\(name) missing", file: file, line: line)
        XCTAssertTrue(x == y, "\(name) differs between \(a) and \(b)", file: file, line: line)
    }
}

/// The newest step checkpointed in `ckpt` must equal an uninterrupted in-process run of that many steps
/// (`train` with the same `options`), which is written next to it.
func assertMatchesUninterruptedRun(_ ckpt: URL, data: String, options: [String], file: StaticString = #filePath, line: UInt = #line) throws {
    let steps = try FileManager.default.contentsOfDirectory(atPath: ckpt.path).compactMap { $0.hasPrefix("step-") ? Int($0.dropFirst(5)) : nil }
    let last = try XCTUnwrap(steps.max(), "no checkpoint written in \(ckpt.path)", file: file, line: line)
    XCTAssertGreaterThan(last, 0, file: file, line: line)
    let reference = ckpt.deletingLastPathComponent().appendingPathComponent("reference-\(last)")
    let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", reference.path, "--steps", "\(last)"] + options)
    XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
    let name = String(format: "step-%09d", last)
    assertSameCheckpoint(reference.appendingPathComponent(name).path, ckpt.appendingPathComponent(name).path, file: file, line: line)
}

/// Stops `worker` (SIGSTOP) for 5 s while the run in `ckpt` goes on: it must make `steps` steps within `within`
/// seconds of the stop. Then continues the worker, and waits until it is back (as `name`) and the run made `steps`
/// more.
func stallForFiveSeconds(_ worker: Spawned, named name: String, steps: Int, within: Double, ckpt: URL, coordinator: Spawned,
                         file: StaticString = #filePath, line: UInt = #line) throws {
    worker.signal(SIGSTOP)
    let stopped = Date()
    let before = try XCTUnwrap(CoordinatorStatusFile.read(ckpt), file: file, line: line).step
    XCTAssertNotNil(CoordinatorStatusFile.wait(ckpt) { $0.step >= before + steps }, coordinator.output, file: file, line: line)
    XCTAssertLessThan(Date().timeIntervalSince(stopped), within, "the run waited for the stopped worker", file: file, line: line)
    usleep(UInt32(max(0, 5 - Date().timeIntervalSince(stopped)) * 1_000_000))
    worker.signal(SIGCONT)
    let after = try XCTUnwrap(CoordinatorStatusFile.read(ckpt), file: file, line: line).step
    XCTAssertNotNil(CoordinatorStatusFile.wait(ckpt) { $0.step >= after + steps && $0.names.contains(name) }, coordinator.output, file: file, line: line)
}

/// A TCP port nobody listens on right now (bind to port 0, read it, close).
func freeTCPPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A coordinator's `coordinator.json` (see `CoordinatorStatus` in the CLI): what the tests wait on instead of
/// log lines.
struct CoordinatorStatusFile: Decodable {
    struct Worker: Decodable {
        var name: String
        var shards: Int
    }

    var run: String
    var step: Int
    var workers: [Worker]
    var joins: Int
    var lostWorkers: Int
    var reassignedShards: Int
    var staleResults: Int
    var duplicateResults: Int
    var speculativeShards: Int
    var undealtResults: Int
    var verifiedShards: Int
    var unverifiedShards: Int
    var mismatches: Int
    var distrustedWorkers: Int
    var badFrames: Int
    var bannedPeers: Int
    var weightsDirect: Int
    var weightsRelayed: Int
    var weightsResent: Int
    var reducedSteps: Int
    var sumsReceived: Int
    var sumsRefused: Int
    var resultsReceived: Int

    var names: [String] { workers.map(\.name) }

    static func read(_ checkpointDir: URL) -> CoordinatorStatusFile? {
        FileManager.default.contents(atPath: checkpointDir.appendingPathComponent("coordinator.json").path)
            .flatMap { try? JSONDecoder().decode(CoordinatorStatusFile.self, from: $0) }
    }

    /// Waits until the coordinator writing to `checkpointDir` reports a status for which `condition` holds;
    /// returns that status, or nil when the time runs out.
    @discardableResult
    static func wait(_ checkpointDir: URL, timeout: Double = 60, until condition: (CoordinatorStatusFile) -> Bool) -> CoordinatorStatusFile? {
        let end = Date().addingTimeInterval(timeout)
        repeat {
            if let s = read(checkpointDir), condition(s) { return s }
            usleep(20_000)
        } while Date() < end
        return nil
    }
}

/// Waits until `path` exists (true) or the time runs out (false).
func waitForFile(_ path: String, timeout: Double = 60) -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while !FileManager.default.fileExists(atPath: path) {
        if Date() >= end { return false }
        usleep(20_000)
    }
    return true
}
