import Foundation
import XCTest

/// Several hosts on one machine: network namespaces joined by a bridge, one address each. The coordinator runs
/// in one, workers in others; a worker's link is cut for longer than the deadline and then restored.
final class NetworkPartitionTests: XCTestCase {
    let model = ["--embed", "16", "--units", "32", "--batch", "16", "--seq", "30", "--shards", "4", "--seed", "8",
                 "--buffer", "100", "--log-every", "1", "--epochs", "1000"]

    func testWorkerLinkCutAndRestored() throws {
        let net = try TestNetwork(hosts: 3, test: self)
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        let group = ProcessGroup(self, dir: dir)
        let endpoint = "tcp://\(net.address(1)):5555"
        let ckpt = dir.appendingPathComponent("ckpt")
        // Across hosts the coordinator insists on keys: CURVE end to end, as on a real cluster.
        let key = { (name: String) in dir.appendingPathComponent(name).path }
        for name in ["coordinator", "worker"] { XCTAssertEqual(try CLI.run(["keygen", "--output", key(name)]).status, 0) }
        let coordinator = try net.start(group, "coordinator", in: 1, ["coordinator", "--bind", endpoint, "--data", data,
            "--deadline", "1", "--checkpoint-dir", ckpt.path, "--secret-key", key("coordinator.key"),
            "--authorized-keys", key("worker.pub")] + model)
        let worker = ["worker", "--connect", endpoint, "--threads", "1", "--rejoin-after", "1",
                      "--secret-key", key("worker.key"), "--coordinator-key", key("coordinator.pub"), "--name"]
        let cut = try net.start(group, "cut", in: 2, worker + ["cut"])
        let kept = try net.start(group, "kept", in: 3, worker + ["kept"])
        XCTAssertNotNil(CoordinatorStatusFile.wait(ckpt) { Set($0.names) == ["cut", "kept"] && $0.step >= 3 }, coordinator.output)
        net.setLink(2, up: false)
        XCTAssertNotNil(CoordinatorStatusFile.wait(ckpt, timeout: 30) { $0.names == ["kept"] }, coordinator.output)
        usleep(2_500_000)
        net.setLink(2, up: true)
        // Back on the network, the worker introduces itself again and gets shards.
        let rejoined = CoordinatorStatusFile.wait(ckpt, timeout: 30) { s in s.joins == 3 && s.workers.contains { $0.name == "cut" && $0.shards > 0 } }
        XCTAssertNotNil(rejoined, coordinator.output)
        coordinator.signal(SIGTERM)
        XCTAssertEqual(coordinator.waitExit(), 143, coordinator.output)
        XCTAssertEqual(kept.waitExit(timeout: 20), 0, kept.output)
        XCTAssertEqual(cut.waitExit(timeout: 20), 0, cut.output)

        try assertMatchesUninterruptedRun(ckpt, data: data, options: model)
    }
}

/// Network namespaces `crnnP-hN` on a bridge `crnnP-br`, addresses 10.213.0.N/24, removed at teardown.
/// Throws XCTSkip (with the reason) where namespaces cannot be made: not root, no `ip`, no permission.
struct TestNetwork {
    let prefix: String
    let hosts: Int

    init(hosts: Int, test: XCTestCase) throws {
        prefix = "crnn\(getpid() % 10000)"
        self.hosts = hosts
        guard getuid() == 0 else { throw XCTSkip("network namespaces need root") }
        guard TestNetwork.sh("command -v ip && command -v nsenter") == 0 else { throw XCTSkip("ip (iproute2) or nsenter is not installed") }
        let bridge = "\(prefix)-br"
        var script = "set -e; ip link add \(bridge) type bridge; ip link set \(bridge) up;"
        for n in 1...hosts {
            let ns = "\(prefix)-h\(n)", veth = "\(prefix)-v\(n)"
            script += """
             ip netns add \(ns); ip link add \(veth) type veth peer name eth0 netns \(ns);
             ip link set \(veth) master \(bridge); ip link set \(veth) up;
             ip -n \(ns) addr add \(address(n))/24 dev eth0; ip -n \(ns) link set eth0 up; ip -n \(ns) link set lo up;
            """
        }
        let me = self
        test.addTeardownBlock { me.teardown() }
        let status = TestNetwork.sh(script)
        if status != 0 {
            teardown()
            throw XCTSkip("cannot create network namespaces here (ip exited with \(status))")
        }
    }

    func address(_ n: Int) -> String { "10.213.0.\(n)" }

    /// Starts `charrnn args` inside host n's namespace. nsenter (unlike `ip netns exec`) leaves /sys alone
    /// and execs in place, so the process's pid is charrnn's own and signals reach it.
    func start(_ group: ProcessGroup, _ name: String, in n: Int, _ args: [String]) throws -> Spawned {
        try group.start(name, ["--net=/run/netns/\(prefix)-h\(n)", CLI.executable.path] + args,
                        executable: URL(fileURLWithPath: "/usr/bin/nsenter"))
    }

    func setLink(_ n: Int, up: Bool) {
        _ = TestNetwork.sh("ip link set \(prefix)-v\(n) \(up ? "up" : "down")")
    }

    func teardown() {
        var script = "ip link del \(prefix)-br 2>/dev/null;"
        for n in 1...hosts { script += " ip netns del \(prefix)-h\(n) 2>/dev/null; ip link del \(prefix)-v\(n) 2>/dev/null;" }
        _ = TestNetwork.sh(script + " true")
    }

    @discardableResult
    static func sh(_ script: String) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }
}
