import CharRNN
import Foundation
import XCTest

/// `--threads` on real processes: its default follows the CPU affinity mask the process is started with.
final class ThreadsTests: XCTestCase {
    let bench = ["bench", "train", "--vocab", "5", "--embed", "8", "--units", "32", "--batch", "16", "--seq", "4",
                 "--steps", "1", "--warmup", "0"]

    /// `charrnn ARGS` under `taskset -c CPUS`; the thread count from the benchmark's table.
    func threads(cpus: String, _ extra: [String] = []) throws -> Int? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
        p.arguments = ["-c", cpus, CLI.executable.path] + bench + extra
        let r = try CLI.capture(p)
        XCTAssertEqual(r.status, 0, r.stderr)
        let row = r.stdout.split(separator: "\n").first { $0.hasPrefix("| threads ") }
        return row.flatMap { Int($0.split(separator: "|")[1].trimmingCharacters(in: .whitespaces)) }
    }

    func testDefaultThreadCountHonoursTheAffinityMask() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset"), "needs taskset (util-linux)")
        XCTAssertEqual(try threads(cpus: "0"), 1, "taskset -c 0 leaves one core")
        XCTAssertEqual(try threads(cpus: "0", ["--threads", "3"]), 3, "an explicit --threads wins")
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        if cpus >= 2 {
            // Two allowed cores give two threads, unless a cgroup quota of one CPU caps this process too.
            XCTAssertEqual(try threads(cpus: "0,1"), min(2, ThreadCount.available()))
        }
    }
}
