import CharRNN
import CharRNNDistributed
import Foundation
import XCTest

/// Only our own workers get in; hostile or broken input never changes a run's result.
final class SecurityTests: XCTestCase {
    let model = ["--embed", "16", "--units", "32", "--batch", "16", "--seq", "30", "--shards", "4", "--seed", "3",
                 "--buffer", "100", "--log-every", "1", "--epochs", "1000"]

    func keygen(_ dir: URL, _ names: [String]) throws {
        for name in names {
            let r = try CLI.run(["keygen", "--output", dir.appendingPathComponent(name).path])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let mode = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("\(names[0]).key").path)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600, "secret keys are readable by their owner only")
    }

    func testOnlyAuthorizedWorkersJoinAndWorkersCheckTheCoordinator() throws {
        let dir = try CLI.temporaryDirectory(self)
        try keygen(dir, ["coordinator", "good", "intruder", "impostor"])
        let key = { (name: String, ext: String) in dir.appendingPathComponent("\(name).\(ext)").path }
        try Data(contentsOf: URL(fileURLWithPath: key("good", "pub"))).write(to: dir.appendingPathComponent("authorized"))
        let data = try CLI.write(CLI.text(characters: 20_000), in: dir)
        let endpoint = "tcp://127.0.0.1:\(freeTCPPort())"
        let group = ProcessGroup(self, dir: dir)
        let c = try group.start("coordinator", ["coordinator", "--bind", endpoint, "--data", data, "--steps", "8",
                                                "--checkpoint-dir", dir.appendingPathComponent("ckpt").path,
                                                "--secret-key", key("coordinator", "key"), "--authorized-keys", dir.appendingPathComponent("authorized").path] + model)
        XCTAssertTrue(c.waitFor("CURVE on"), c.output)

        // A worker whose key is not on the list is refused, and says so.
        let intruder = try CLI.run(["worker", "--connect", endpoint, "--secret-key", key("intruder", "key"), "--coordinator-key", key("coordinator", "pub")])
        XCTAssertNotEqual(intruder.status, 0)
        XCTAssertTrue(intruder.stderr.contains("refused this worker's key"), intruder.stderr)
        XCTAssertTrue(c.output.contains("is not authorized"), c.output)
        // A worker expecting another coordinator (a different public key) refuses to work for this one.
        let misled = try CLI.run(["worker", "--connect", endpoint, "--secret-key", key("good", "key"), "--coordinator-key", key("impostor", "pub")])
        XCTAssertNotEqual(misled.status, 0)
        XCTAssertTrue(misled.stderr.contains("CURVE handshake"), misled.stderr)
        XCTAssertFalse(c.output.contains("joined"), "nobody may have joined yet: \(c.output)")

        let good = try group.start("good", ["worker", "--connect", endpoint, "--secret-key", key("good", "key"), "--coordinator-key", key("coordinator", "pub")])
        XCTAssertEqual(c.waitExit(), 0, c.output)
        XCTAssertEqual(good.waitExit(timeout: 20), 0, good.output)
        XCTAssertTrue(c.output.contains("joined"), c.output)
    }

    /// Without keys only an ipc socket is allowed (file permissions decide who connects): any local user can
    /// reach a TCP port, loopback included, so TCP without keys needs --insecure.
    func testKeylessCoordinatorNeedsIPCUnlessInsecure() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 20_000), in: dir)
        let group = ProcessGroup(self, dir: dir)
        // In the background: a coordinator that (wrongly) listened would never exit by itself.
        let loopback = try group.start("loopback", ["coordinator", "--bind", "tcp://127.0.0.1:\(freeTCPPort())", "--data", data,
                                                    "--checkpoint-dir", dir.appendingPathComponent("ckpt").path] + model)
        XCTAssertEqual(loopback.waitExit(timeout: 20), 1, loopback.output)
        XCTAssertEqual(loopback.output.split(separator: "\n").count, 1, loopback.output)
        XCTAssertTrue(loopback.output.contains("without keys"), loopback.output)
        let open = "tcp://0.0.0.0:\(freeTCPPort())"
        let args = ["coordinator", "--bind", open, "--data", data, "--checkpoint-dir", dir.appendingPathComponent("ckpt").path] + model
        assertCleanFailure(try CLI.run(args), mentions: "without keys")
        let insecure = try group.start("insecure", args + ["--insecure"])
        XCTAssertTrue(insecure.waitFor("coordinator listening"), insecure.output)
        XCTAssertTrue(insecure.output.contains("insecure: no authentication"), insecure.output)
        insecure.signal(SIGTERM)
        XCTAssertEqual(insecure.waitExit(timeout: 30), 143)
        assertCleanFailure(try CLI.run(args + ["--secret-key", data]), mentions: "go together")
    }

    /// An open-ended keyless run on an ipc socket in a fresh directory (the attacks below are local ones).
    private func startCoordinator() throws -> (data: String, endpoint: String, group: ProcessGroup, ckpt: String, coordinator: Spawned) {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        let endpoint = "ipc://\(dir.path)/c.sock"
        let group = ProcessGroup(self, dir: dir)
        let ckpt = dir.appendingPathComponent("ckpt").path
        let c = try group.start("coordinator", ["coordinator", "--bind", endpoint, "--data", data, "--checkpoint-dir", ckpt] + model)
        return (data, endpoint, group, ckpt, c)
    }

    /// Garbage, oversized length fields, forged results: all dropped, and the run's bits are unchanged.
    func testGarbageAndForgedResultsDoNotChangeTheRun() throws {
        let (data, endpoint, group, ckpt, c) = try startCoordinator()
        _ = try group.worker(endpoint, name: "honest")
        XCTAssertTrue(c.waitFor("epoch ", times: 3), c.output)

        let context = try ZMQContext()
        var rng = RandomSource(seed: 99)
        // 1. Random bytes, and frames that start like ours but lie about their length or version.
        for round in 0..<40 {
            let raw = try ZMQSocket(context, .dealer)
            try raw.setOption(.linger, 0)
            try raw.connect(endpoint)
            var frame = (0..<(40 + rng.nextIndex(below: 200))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if round % 2 == 0 { frame.replaceSubrange(0..<4, with: Array("CRNN".utf8)); frame[4] = 1; frame[5] = 0 }
            if round % 4 == 0 { for k in 24..<32 { frame[k] = 0xFF } }    // a payload length of 2^64 − 1
            try raw.send([.bytes(frame)] + (round % 3 == 0 ? [.bytes(Array(repeating: 0xAB, count: 1 << 16))] : []))
            usleep(2_000)
        }
        // 2. A peer that says hello like a worker, then sends forged results for shards it was never given.
        let forger = try ZMQSocket(context, .dealer)
        try forger.setOption(.linger, 0)
        try forger.connect(endpoint)
        // The numerics identity is no secret: a refusal names the coordinator's, and the forger claims it.
        let stranger = NumericsIdentity(kernel: "stranger", version: "0", probe: 0)
        try forger.send(WireCodec().encode(.hello(WorkerHello(name: "forger", blasThreads: 1, identity: stranger))))
        var codec = WireCodec()
        let deadline = Date().addingTimeInterval(20)
        while codec.shape == nil && Date() < deadline {
            guard let frames = try forger.receiveMultipart(timeoutMs: 100), let envelope = try? WireCodec().decode(frames) else { continue }
            switch envelope.message {
            case .error(let refusal):
                let claimed = try XCTUnwrap(refusal.components(separatedBy: "the coordinator runs ").last?.components(separatedBy: ", this worker").first)
                let identity = try XCTUnwrap(NumericsIdentity(parsing: claimed), refusal)
                try forger.send(WireCodec().encode(.hello(WorkerHello(name: "forger", blasThreads: 1, identity: identity))))
            case .welcome(let shape):
                codec = WireCodec(runID: envelope.runID, shape: shape)
            default:
                break
            }
        }
        let shape = try XCTUnwrap(codec.shape, "the forger never got a welcome")
        // As a member it is dealt shards (results for those are --verify's business): it takes two, the most a
        // worker holds, never answers them, and so is dealt nothing more; it forges results for every other shard.
        var dealt: Set<[Int]> = []
        while dealt.count < 2 && Date() < deadline {
            guard let frames = try forger.receiveMultipart(timeoutMs: 100), let envelope = try? codec.decode(frames) else { continue }
            switch envelope.message {
            case .work(let order, _): dealt.formUnion(order.shards.map { [envelope.step, $0.index] })
            case .workSameWeights(_, let shards, _): dealt.formUnion(shards.map { [envelope.step, $0.index] })
            default: break
            }
        }
        XCTAssertEqual(dealt.count, 2, "the forger was not dealt its two shards")
        let current = c.count("epoch ")
        for step in current..<(current + 300) where !dealt.contains([step, step % shape.shardCount]) {
            let poison = FloatBuffer(count: shape.parameterCount)
            for i in 0..<poison.count { poison[i] = 1e3 }
            let result = ShardResult(index: step % shape.shardCount, loss: 0, state: FloatBuffer(count: shape.rowsPerShard * shape.config.units), gradient: poison)
            try forger.send(codec.encode(.result([result]), step: step), dontWait: true)
        }
        usleep(300_000)
        c.signal(SIGTERM)
        XCTAssertEqual(c.waitExit(), 143, c.output)
        XCTAssertTrue(c.output.contains("bad frames"), c.output)
        let summary = try XCTUnwrap(c.output.split(separator: "\n").last { $0.hasPrefix("workers lost") })
        XCTAssertFalse(summary.contains("bad frames 0,"), String(summary))
        print("coordinator summary under attack: \(summary)")

        try assertMatchesUninterruptedRun(URL(fileURLWithPath: ckpt), data: data, options: model)
    }

    /// A worker whose gradients turn NaN (injected) cannot poison the weights: its shards are recomputed.
    func testNaNGradientsNeverReachTheOptimizer() throws {
        let (data, endpoint, group, ckpt, c) = try startCoordinator()
        _ = try group.worker(endpoint, name: "poisoned", extra: ["--fault-nan-from-step", "3"])
        _ = try group.worker(endpoint, name: "honest")
        XCTAssertTrue(c.waitFor("worker poisoned reports"), c.output)
        XCTAssertTrue(c.waitFor("epoch ", times: 20), c.output)
        c.signal(SIGTERM)
        XCTAssertEqual(c.waitExit(), 143, c.output)
        try assertMatchesUninterruptedRun(URL(fileURLWithPath: ckpt), data: data, options: model)
    }
}
