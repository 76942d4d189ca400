import CharRNN
import Foundation
import XCTest

/// Workers that relay (`worker --relay`) take the weights down a tree from each other, chunk by chunk, and the
/// bits stay those of the in-process run: with 1, 3 and 5 workers (5 make an uneven tree), over ipc, tcp and tcp
/// with keys (CURVE relay links), GRU and LSTM; and with a relay stopped halfway through passing a step's
/// weights on, then continued or killed.
final class RelayTests: XCTestCase {
    static let steps = 8
    /// H 256 so the weights take 3 chunks and a relay can be caught between them.
    let model = ["--embed", "64", "--units", "256", "--batch", "12", "--seq", "20", "--shards", "6", "--seed", "7",
                 "--buffer", "100", "--log-every", "1", "--epochs", "1000"]

    private func relayEndpoint(_ transport: String, _ dir: URL, _ name: String) -> String {
        transport == "tcp" ? "tcp://127.0.0.1:*" : "ipc://\(dir.path)/\(name).relay"
    }

    /// A coordinator on ipc with `options` (after the model's), in a fresh directory with a text.
    private func startCoordinator(_ options: [String], model: [String]? = nil) throws -> (dir: URL, data: String, group: ProcessGroup, endpoint: String, ckpt: URL, coordinator: Spawned) {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        let group = ProcessGroup(self, dir: dir)
        let endpoint = "ipc://\(dir.path)/c.sock"
        let ckpt = dir.appendingPathComponent("ckpt")
        let coordinator = try group.start("coordinator", ["coordinator", "--bind", endpoint, "--data", data, "--checkpoint-dir", ckpt.path] + options + (model ?? self.model))
        return (dir, data, group, endpoint, ckpt, coordinator)
    }

    func testRelayedWeightsGiveTheInProcessBits() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        let group = ProcessGroup(self, dir: dir)
        var references: [String: String] = [:]
        for name in ["coordinator", "worker"] {
            XCTAssertEqual(try CLI.run(["keygen", "--output", dir.appendingPathComponent(name).path]).status, 0)
        }
        let key = { (name: String, ext: String) in dir.appendingPathComponent("\(name).\(ext)").path }
        for (transport, workers, cell) in [("ipc", 1, "gru"), ("tcp", 1, "lstm"), ("ipc", 3, "lstm"), ("tcp", 3, "gru"),
                                           ("ipc", 5, "gru"), ("tcp", 5, "lstm"), ("keys", 3, "lstm")] {
            let options = model + ["--cell", cell]
            let name = String(format: "step-%09d", Self.steps)
            if references[cell] == nil {
                let reference = dir.appendingPathComponent("reference-\(cell)").path
                let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", reference, "--steps", "\(Self.steps)"] + options)
                XCTAssertEqual(r.status, 0, r.stderr)
                references[cell] = "\(reference)/\(name)"
            }
            let run = "\(transport)-\(workers)-\(cell)"
            let endpoint = transport == "ipc" ? "ipc://\(dir.path)/\(run).sock" : "tcp://127.0.0.1:\(freeTCPPort())"
            let ckpt = dir.appendingPathComponent(run)
            let coordinator = try group.start("coordinator-\(run)", ["coordinator", "--bind", endpoint, "--data", data, "--checkpoint-dir", ckpt.path,
                                                                     "--steps", "\(Self.steps)", "--min-workers", "\(workers)"]
                                              + options + (transport == "tcp" ? ["--insecure"] : [])
                                              + (transport == "keys" ? ["--secret-key", key("coordinator", "key"), "--authorized-keys", key("worker", "pub")] : []))
            let pool = try (0..<workers).map { k in
                try group.worker(endpoint, name: "\(run)-w\(k)", extra: ["--relay", relayEndpoint(transport == "ipc" ? "ipc" : "tcp", dir, "\(run)-w\(k)")]
                                 + (transport == "keys" ? ["--secret-key", key("worker", "key"), "--coordinator-key", key("coordinator", "pub")] : []))
            }
            XCTAssertEqual(coordinator.waitExit(), 0, coordinator.output)
            for w in pool { XCTAssertEqual(w.waitExit(timeout: 20), 0, "worker did not exit on shutdown: \(w.output)") }
            let status = try XCTUnwrap(CoordinatorStatusFile.read(ckpt), coordinator.output)
            XCTAssertEqual(status.lostWorkers, 0, "\(run): \(coordinator.output)")
            // Fan-out 2: the coordinator sends each step's weights to two workers at most; the others get them
            // from those, and nobody had to ask.
            XCTAssertEqual(status.weightsDirect, min(2, workers) * Self.steps, "\(run): \(coordinator.output)")
            XCTAssertEqual(status.weightsRelayed, (workers - min(2, workers)) * Self.steps, run)
            XCTAssertEqual(status.weightsResent, 0, run)
            // 6 shards, summed up the tree however many workers pull them (one worker, two at a time, sums all six
            // itself): the coordinator receives one gradient per step, or from four workers on the root's two halves,
            // which it sums itself (`Coordinator.workersForRootHere`).
            XCTAssertEqual(status.reducedSteps, Self.steps, "\(run): \(coordinator.output)")
            XCTAssertEqual(status.sumsReceived, Self.steps * (workers >= 4 ? 2 : 1), run)
            XCTAssertEqual(status.sumsRefused, 0, run)
            XCTAssertEqual(status.resultsReceived, 0, run)
            assertSameCheckpoint(references[cell]!, ckpt.appendingPathComponent(name).path)
        }
    }

    /// A chain of four relays (fan-out 1); the first stops itself (SIGSTOP) halfway through passing step 4's
    /// weights on, so the three below it have only some of the chunks. They ask the coordinator for the weights
    /// after --relay-patience, the stopped relay's shards are computed by them, and the run ends with the bits
    /// of an uninterrupted in-process run, whether the relay is then continued or killed with SIGKILL.
    func testRelayStoppedMidBroadcastIsRoutedAround() throws {
        for ending in ["continued", "killed"] {
            let (dir, data, group, endpoint, ckpt, coordinator) = try startCoordinator(
                ["--steps", "\(Self.steps)", "--min-workers", "3", "--relay-fanout", "1", "--deadline", "60"])
            func relay(_ k: Int, _ extra: [String] = []) throws -> Spawned {
                try group.worker(endpoint, name: "w\(k)", extra: ["--relay", relayEndpoint("ipc", dir, "w\(k)"), "--relay-patience", "1"] + extra)
            }
            // The tree follows the order of hellos: w0 heads the chain.
            let head = try relay(0, ["--fault-stop-mid-relay", "4"])
            XCTAssertNotNil(CoordinatorStatusFile.wait(ckpt) { $0.names == ["w0"] }, coordinator.output)
            let rest = try (1...3).map { try relay($0) }
            XCTAssertTrue(waitForStopped(head.pid), "the relay never stopped itself: \(head.output)")
            end(head, ending, coordinator: coordinator, rest: rest)
            let status = try XCTUnwrap(CoordinatorStatusFile.read(ckpt), coordinator.output)
            XCTAssertGreaterThanOrEqual(status.weightsResent, 2, "the workers below the stopped relay asked: \(coordinator.output)")
            // In the step of the stop only (3 workers below it, a little slack): the next trees leave the failed
            // link out, so its children do not wait out the patience again every step.
            XCTAssertLessThanOrEqual(status.weightsResent, 5, "\(ending): \(coordinator.output)")
            // Waiting out --deadline (60 s) or more would mean the fall-back did not happen.
            let longest = try longestStep(ckpt)
            XCTAssertLessThan(longest, 10, "\(ending): the longest step took \(longest) s")
            try assertMatchesUninterruptedRun(ckpt, data: data, options: model)
        }
    }

    /// Four workers, five shards: shard 3's holder sends its result to shard 2's, which stops itself (SIGSTOP)
    /// at step 4 holding the sum of shards 2..<4, as it is about to send it to shard 0's holder. With no progress
    /// for --relay-patience, the others send their own results to the coordinator directly, the stopped
    /// worker's shard is dealt again as a straggler's, and the run ends with the bits of an uninterrupted
    /// in-process run, whether the stopped worker is then continued or killed with SIGKILL.
    func testWorkerStoppedMidReductionIsRoutedAround() throws {
        let model = self.model.map { ["12": "10", "6": "5"][$0] ?? $0 }
        XCTAssertEqual(model[model.firstIndex(of: "--shards")! + 1], "5")
        for ending in ["continued", "killed"] {
            let (dir, data, group, endpoint, ckpt, coordinator) = try startCoordinator(
                ["--steps", "\(Self.steps)", "--min-workers", "3", "--deadline", "60"], model: model)
            // Every worker has the fault; only the one holding shard 2 at step 4 sends a sum of several shards to a peer
            // (shards 2..<4 to shard 0's holder, with three workers or four: the tree over 5 shards is
            // ((0..<2 + 2..<4) + 4), and shard 4 goes to shard 0's holder or, with 0..<4, to the coordinator).
            let pool = try (0..<4).map { k in
                try group.worker(endpoint, name: "w\(k)", extra: ["--relay", relayEndpoint("ipc", dir, "w\(k)"), "--relay-patience", "1",
                                                                  "--fault-stop-mid-reduction", "4"])
            }
            let pid = try XCTUnwrap(waitForStopped(pool.map(\.pid)), "no worker stopped itself: \(coordinator.output)")
            let stopped = pool.first { $0.pid == pid }!
            end(stopped, ending, coordinator: coordinator, rest: pool.filter { $0.pid != pid })
            let status = try XCTUnwrap(CoordinatorStatusFile.read(ckpt), coordinator.output)
            // Step 4's sums never came (the root, or from four workers the root's left half, and the right half too
            // if its holder is one that gave up); its shards came one by one: after the patience, and one dealt again.
            // Every other step's sums came (one, or two from four workers), but perhaps the next step's.
            XCTAssertEqual(status.reducedSteps, Self.steps, "\(ending): \(coordinator.output)")
            XCTAssertLessThanOrEqual(status.sumsReceived, 2 * Self.steps - 1, "\(ending): \(status)")
            XCTAssertGreaterThanOrEqual(status.sumsReceived, Self.steps - 2, "\(ending): \(status)\n\(coordinator.output)\n\(pool.map(\.output).joined(separator: "\n"))")
            XCTAssertGreaterThanOrEqual(status.resultsReceived, 4, "\(ending): \(status)")
            let longest = try longestStep(ckpt)
            XCTAssertLessThan(longest, 10, "\(ending): the longest step took \(longest) s, as if waiting out --deadline")
            try assertMatchesUninterruptedRun(ckpt, data: data, options: model)
        }
    }

    /// One of three relaying workers is stopped (SIGSTOP) for 5 s mid-run, holding shards in the tree. They are not
    /// copied at once (a copy's result would keep the root from counting); once its peers see no progress for
    /// `--relay-patience` (1 s) they send their own results, the root can no longer count, and the stopped worker's
    /// shards are copied to them (or dealt again once the heartbeat drops it, 1.5 s). The step it stalls costs about
    /// the patience, not the stall; the run goes on without it, then with it, with the same bits. (Copying only after
    /// the heartbeat, the longest step was 1.80-1.84 s; with copies once the tree gave up, 1.05-1.12 s.)
    /// With four workers the coordinator sums the root's halves, and the stopped worker holds shards of both.
    func testStoppedWorkerInTheTreeCostsThePatienceNotItsStall() throws {
        for workers in [3, 4] {
            let (dir, data, group, endpoint, ckpt, coordinator) = try startCoordinator(["--deadline", "60"])
            let pool = try (0..<workers).map { k in
                try group.worker(endpoint, name: "w\(k)", extra: ["--relay", relayEndpoint("ipc", dir, "w\(k)"), "--relay-patience", "1"])
            }
            XCTAssertNotNil(CoordinatorStatusFile.wait(ckpt) { $0.names.count == workers && $0.step >= 5 }, coordinator.output)
            try stallForFiveSeconds(pool[1], named: "w1", steps: 3, within: 5, ckpt: ckpt, coordinator: coordinator)
            coordinator.signal(SIGTERM)
            XCTAssertEqual(coordinator.waitExit(), 143, "a stopped run exits 128 + SIGTERM: \(coordinator.output)")
            let status = try XCTUnwrap(CoordinatorStatusFile.read(ckpt))
            XCTAssertGreaterThan(status.sumsReceived, 0, "\(workers) workers: \(status)")
            XCTAssertGreaterThan(status.resultsReceived, 0, "\(workers) workers: the stalled step's results came one by one: \(status)")
            let longest = try longestStep(ckpt)
            XCTAssertLessThan(longest, 3, "\(workers) workers: the longest step took \(longest) s")
            try assertMatchesUninterruptedRun(ckpt, data: data, options: model)
        }
    }

    /// Three workers, six shards (two each), one of them slow: 1.5 s more per order (hidden `--fault-delay`), so it
    /// finishes the first step 3 s after the others, three times `--relay-patience` (1 s). (From then on the
    /// dealing knows its shard time and deals the fast two every shard.) Its tokens of progress reach every worker
    /// in the tree, and nobody gives up: every step is summed up the tree and reaches the coordinator as one root,
    /// no result one by one, with the bits of an in-process run. (Before the tree-alive words, the two fast workers
    /// sent their results directly after the patience in every step: seen failing, 0 roots, 30 results.)
    func testSlowWorkerKeepsTheTreeTogether() throws {
        let started = Date()
        let ckpt = try runWholeTree { k in ["--relay-patience", "1"] + (k == 1 ? ["--fault-delay", "1.5"] : []) }
        // The slow worker was slow, and in the tree: else nothing here would have been tested.
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 3, "the run took less than the slow worker's two orders")
        let computed = try XCTUnwrap(CoordinatorStatusFile.read(ckpt)).workers.first { $0.name == "w1" }?.shards ?? 0
        XCTAssertGreaterThanOrEqual(computed, 2, "shards the slow worker computed")
    }

    /// Workers send the parts of their gradient that are final up the tree while they compute the rest. With two
    /// layers of H 600 (each recurrent kernel's gradient in two bands of rows) all but the chunks of layer 0's last
    /// band are final before it: the bits stay the in-process run's, and every step reaches the coordinator as one sum.
    func testPartsSentWhileComputingKeepTheInProcessBits() throws {
        _ = try runWholeTree(model: model.map { $0 == "256" ? "600" : $0 } + ["--layers", "2"])
    }

    /// Two workers pull the six shards, more than the two each holds at a time, one of them slow (0.4 s more per
    /// order): each says when it has computed a shard and is dealt the next, so the fast one computes more of them,
    /// and still every step is one sum up the tree with the bits of an in-process run. (Before, a step whose first
    /// dealing did not cover every shard was answered one result at a time.)
    func testPulledShardsAreSummedUpTheTree() throws {
        let ckpt = try runWholeTree(workers: 2) { k in k == 1 ? ["--fault-delay", "0.4"] : [] }
        let status = try XCTUnwrap(CoordinatorStatusFile.read(ckpt))
        let computed = Dictionary(uniqueKeysWithValues: status.workers.map { ($0.name, $0.shards) })
        XCTAssertEqual(computed.values.reduce(0, +), 6 * 4, "every shard counted once")
        // The slow worker computes the two it is dealt at the start; the fast one the rest.
        XCTAssertGreaterThan(computed["w0"] ?? 0, computed["w1"] ?? 0, "\(computed)")
    }

    /// Four steps with `workers` workers relaying over ipc (`extra(k)`: worker k's further options): every step reaches the
    /// coordinator as one root, no result comes one by one, and the checkpoint has an in-process run's bits.
    private func runWholeTree(workers: Int = 3, model: [String]? = nil, extra: (Int) -> [String] = { _ in [] }) throws -> URL {
        let (steps, model) = (4, model ?? self.model)
        let (dir, data, group, endpoint, ckpt, coordinator) = try startCoordinator(["--steps", "\(steps)", "--min-workers", "\(workers)"], model: model)
        let pool = try (0..<workers).map { k in try group.worker(endpoint, name: "w\(k)", extra: ["--relay", relayEndpoint("ipc", dir, "w\(k)")] + extra(k)) }
        XCTAssertEqual(coordinator.waitExit(), 0, coordinator.output)
        for w in pool { XCTAssertEqual(w.waitExit(timeout: 20), 0, w.output) }
        let status = try XCTUnwrap(CoordinatorStatusFile.read(ckpt), coordinator.output)
        let outputs = coordinator.output + "\(status)\n" + pool.map(\.output).joined(separator: "\n----\n")
        XCTAssertEqual(status.reducedSteps, steps, outputs)
        XCTAssertEqual(status.sumsReceived, steps, outputs)
        XCTAssertEqual(status.sumsRefused, 0, outputs)
        XCTAssertEqual(status.resultsReceived, 0, "results one by one: someone gave up on the tree. \(outputs)")
        try assertMatchesUninterruptedRun(ckpt, data: data, options: model)
        return ckpt
    }

    /// With --verify every worker's weights come from the coordinator: two workers below one lying relay would
    /// agree on a wrong result.
    func testVerifyTurnsTheRelayTreeOff() throws {
        let (dir, _, group, endpoint, ckpt, coordinator) = try startCoordinator(["--steps", "3", "--min-workers", "3", "--verify", "1"])
        let pool = try (0..<3).map { try group.worker(endpoint, name: "w\($0)", extra: ["--relay", relayEndpoint("ipc", dir, "w\($0)")]) }
        XCTAssertEqual(coordinator.waitExit(), 0, coordinator.output)
        for w in pool { XCTAssertEqual(w.waitExit(timeout: 20), 0, w.output) }
        let status = try XCTUnwrap(CoordinatorStatusFile.read(ckpt), coordinator.output)
        XCTAssertEqual(status.weightsRelayed, 0)
        XCTAssertGreaterThan(status.verifiedShards, 0)
    }

    func testBadRelayOptionsAreOneLineErrors() throws {
        let dir = try CLI.temporaryDirectory(self)
        assertCleanFailure(try CLI.run(["worker", "--relay", "tcp://127.0.0.1:*", "--connect", "ipc://\(dir.path)/c.sock"]), mentions: "ipc://")
        assertCleanFailure(try CLI.run(["worker", "--relay", "udp://x", "--connect", "tcp://127.0.0.1:1"]), mentions: "tcp://ADDRESS:PORT")
        assertCleanFailure(try CLI.run(["worker", "--relay", "tcp://*:\(freeTCPPort())", "--connect", "tcp://127.0.0.1:1"]), mentions: "an address other workers can reach")
        // With keys the relay's ZAP handler is already running when the bind fails: the worker still exits at once.
        for name in ["w", "c"] { XCTAssertEqual(try CLI.run(["keygen", "--output", dir.appendingPathComponent(name).path]).status, 0) }
        assertCleanFailure(try CLI.run(["worker", "--relay", "tcp://*:\(freeTCPPort())", "--connect", "tcp://127.0.0.1:1",
                                        "--secret-key", dir.appendingPathComponent("w.key").path, "--coordinator-key", dir.appendingPathComponent("c.pub").path]),
                           mentions: "an address other workers can reach")
        assertCleanFailure(try CLI.run(["worker", "--relay-patience", "0"]), mentions: "--relay-patience")
        assertCleanFailure(try CLI.run(["coordinator", "--relay-fanout", "65"]), mentions: "--relay-fanout")
    }

    /// Continues `stopped` after 3 s (`ending` "continued") or kills it with SIGKILL, then waits for the run to end
    /// and the `rest` of the workers to exit.
    private func end(_ stopped: Spawned, _ ending: String, coordinator: Spawned, rest: [Spawned]) {
        if ending == "continued" {
            usleep(3_000_000)
            stopped.signal(SIGCONT)
        } else {
            stopped.signal(SIGKILL)
        }
        XCTAssertEqual(coordinator.waitExit(), 0, coordinator.output)
        for w in rest { XCTAssertEqual(w.waitExit(timeout: 20), 0, "worker did not exit on shutdown: \(w.output)") }
    }

    /// The longest step of the run in `ckpt`, from its metrics.
    private func longestStep(_ ckpt: URL) throws -> Double {
        let times = try MetricsLog.read(ckpt.appendingPathComponent(MetricsLog.jsonName)).filter { $0.loss != nil }.map(\.wallTime)
        return zip(times.dropFirst(), times).map { $0 - $1 }.max() ?? .infinity
    }

    /// Whether process `pid` is stopped (state T in /proc/PID/stat) within 60 s.
    private func waitForStopped(_ pid: Int32) -> Bool { waitForStopped([pid]) != nil }

    /// The first of `pids` to be stopped (state T in /proc/PID/stat) within 60 s.
    private func waitForStopped(_ pids: [Int32]) -> Int32? {
        let end = Date().addingTimeInterval(60)
        while Date() < end {
            for pid in pids {
                if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                   let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] == "T" {
                    return pid
                }
            }
            usleep(20_000)
        }
        return nil
    }
}
