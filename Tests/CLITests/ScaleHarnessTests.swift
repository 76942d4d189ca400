import Foundation
import XCTest

/// Deploy/scale/scale.sh, the scaling harness on emulated hosts, on the smallest setup: one rate, one and two
/// workers, a tiny model, three steps. It must print a row per configuration with a real step time, and leave
/// no namespace, bridge or veth of its run behind.
final class ScaleHarnessTests: XCTestCase {
    func testSmokeRunPrintsTheTableAndCleansUp() throws {
        guard getuid() == 0 else { throw XCTSkip("network namespaces need root") }
        guard TestNetwork.sh("command -v ip && command -v tc && command -v nsenter") == 0 else {
            throw XCTSkip("ip, tc (iproute2) or nsenter is not installed")
        }
        let script = CLI.packageRoot.appendingPathComponent("Deploy/scale/scale.sh").path
        let r = try DeployShell.run(["bash", script, "--charrnn", CLI.executable.path, "--workers", "1 2", "--rates", "1gbit",
                                     "--steps", "3", "--warmup", "1", "--embed", "8", "--units", "16", "--timeout", "30",
                                     "--compute-rows", "8", "--compute-seq", "10"])
        let output = r.stdout + r.stderr
        XCTAssertEqual(r.status, 0, output)

        let rows = tableRows(r.stdout, first: "1gbit")
        XCTAssertEqual(rows.map { $0[1] }, ["1", "2"], output)
        for row in rows {
            XCTAssertGreaterThan(Double(row[2]) ?? 0, 0, "ms/step in \(row)")
            XCTAssertEqual(row[3], "3", "steps in \(row)")
            XCTAssertGreaterThan(Double(row[4]) ?? 0, 0, "bytes out in \(row)")
            XCTAssertGreaterThan(Double(row[5]) ?? 0, 0, "bytes in in \(row)")
            // The busiest worker host received the weights at least: more than nothing each way.
            let busiest = row[7].components(separatedBy: " / ").compactMap(Double.init)
            XCTAssertEqual(busiest.count, 2, "busiest worker in \(row)")
            XCTAssertTrue(busiest.allSatisfy { $0 > 0 }, "busiest worker in \(row)")
            // CPU in steady state: measured when a poll (every 0.1 s) falls between the warm-up and the last step,
            // which this tiny model's steps may be too quick for; then both cells say so.
            XCTAssertTrue(row[8].range(of: #"^([0-9]+ / [0-9]+|- / -)$"#, options: .regularExpression) != nil, "CPU in \(row)")
            XCTAssertEqual(row[8] == "- / -", row[9] == "-", "CPU and its bound in \(row)")
            XCTAssertEqual(row[11], "0", "lost workers in \(row)")
            XCTAssertEqual(row.last, "ok", "status in \(row)")
        }
        // Two workers receive the weights twice: the coordinator's outgoing bytes grow with N today.
        if rows.count == 2, let one = Double(rows[0][4]), let two = Double(rows[1][4]) { XCTAssertGreaterThan(two, one, output) }
        // The projections, on this machine and for separate hosts: one line each for the rate, seven efficiencies,
        // 100 % at N = 1; the second only from rows with a CPU measurement.
        let projection = r.stdout.split(separator: "\n").filter {
            $0.hasPrefix("| 1gbit |") && ($0.contains("%") || $0.contains("no usable rows"))
        }
        XCTAssertEqual(projection.count, 2, output)
        XCTAssertTrue(projection.first?.contains("| 100 % |") ?? false, output)
        let measuredCPU = rows.contains { $0[8] != "- / -" }
        XCTAssertEqual(projection.last?.contains("| 100 % |") ?? false, measuredCPU, output)

        let prefix = try XCTUnwrap(r.stdout.range(of: #"scl[0-9]+"#, options: .regularExpression).map { String(r.stdout[$0]) }, output)
        let left = try DeployShell.run(["bash", "-c", "ip netns list; ip -o link"]).stdout
        XCTAssertFalse(left.contains("\(prefix)-"), "left behind:\n\(left)")
    }

    /// Issue 14's load test: 16 workers on 1 Gbit/s links at the tutorial's parameter size (16 MB of weights), with
    /// CURVE, a few steps of negligible compute. Without the relay tree the coordinator's link carries a copy of the
    /// weights out and a gradient in per worker and step (up to 2 s each way), the load under which 16 MB frames once
    /// starved libzmq's heartbeats and dropped workers; with the tree it carries about two of each. No worker may be lost
    /// either way.
    func testSixteenWorkersOnGigabitLinksLoseNoWorker() throws {
        guard getuid() == 0 else { throw XCTSkip("network namespaces need root") }
        guard TestNetwork.sh("command -v ip && command -v tc && command -v nsenter") == 0 else {
            throw XCTSkip("ip, tc (iproute2) or nsenter is not installed")
        }
        let script = CLI.packageRoot.appendingPathComponent("Deploy/scale/scale.sh").path
        let data = try CLI.write(CLI.text(characters: 20_000), in: try CLI.temporaryDirectory(self))
        var outgoing: [Double] = []
        for tree in [[], ["--relay-fanout", "2"]] {
            let r = try DeployShell.run(["bash", script, "--charrnn", CLI.executable.path, "--workers", "16", "--rates", "1gbit",
                                         "--steps", "4", "--warmup", "1", "--timeout", "120", "--data", data, "--no-compute"] + tree)
            let output = r.stdout + r.stderr
            XCTAssertEqual(r.status, 0, output)
            let row = try XCTUnwrap(tableRows(r.stdout, first: "1gbit").first, output)
            XCTAssertEqual(row[1], "16", output)
            XCTAssertEqual(row[3], "4", "steps in \(row)")
            XCTAssertEqual(row[11], "0", "lost workers in \(row)")
            XCTAssertEqual(row.last, "ok", "status in \(row)")
            outgoing.append(try XCTUnwrap(Double(row[4]), "\(row)"))
        }
        // The load was real: without the tree the coordinator sent one 16 MB copy of the weights to each worker that
        // computed in a step (fewer than 16 when a worker pulled a second shard), at least 100 MB, 0.8 s of its link;
        // with it, about two copies.
        XCTAssertGreaterThan(outgoing[0], 100, "\(outgoing)")
        XCTAssertLessThan(outgoing[1], 3 * 17, "\(outgoing)")
    }

    /// Deploy/scale/hetero.sh (a worker at half speed against the share-by-speed ideal), on a tiny model: one row
    /// with the solo and combined step times, and every shard of the combined run counted. With results one by one
    /// and with the tree; it leaves no process behind.
    func testHeterogeneousSmokeRunPrintsARound() throws {
        let script = CLI.packageRoot.appendingPathComponent("Deploy/scale/hetero.sh").path
        let data = try CLI.write(CLI.text(characters: 20_000), in: try CLI.temporaryDirectory(self))
        for mode in [[], ["--tree"]] {
            let r = try DeployShell.run(["bash", script, "--charrnn", CLI.executable.path, "--rounds", "1", "--units", "16",
                                         "--embed", "8", "--batch", "12", "--shards", "6", "--steps", "8", "--skip", "2",
                                         "--data", data] + mode)
            let output = r.stdout + r.stderr
            XCTAssertEqual(r.status, 0, output)
            let row = try XCTUnwrap(tableRows(r.stdout, first: "1", cells: 7).first, output)
            for k in 1...4 { XCTAssertGreaterThan(Double(row[k]) ?? 0, 0, "cell \(k) of \(row)") }
            XCTAssertTrue(row[6].contains(" of 48 ("), "every shard of 8 steps × 6 counted once: \(row)")
            XCTAssertEqual(TestNetwork.sh("pgrep -f 'charrnn-hetero[.]'"), 1, "a process of the run is left")
        }
        let refused = try DeployShell.run(["bash", script, "--no-such-option"])
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertTrue(refused.stderr.hasPrefix("error: unknown option --no-such-option"), refused.stderr)
    }

    /// The cells of the measurement rows whose first cell is `first` (the projection's rows end in percentages).
    func tableRows(_ text: String, first: String, cells: Int = 14) -> [[String]] {
        text.split(separator: "\n").map { line in
            line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                .map { $0.trimmingCharacters(in: .whitespaces) }
        }.filter { $0.first == first && $0.count == cells && !$0.contains { $0.hasSuffix("%") } }
    }
}
