import Foundation
import XCTest

/// The systemd, Kubernetes and container recipes in Deploy/, checked as far as this machine allows: systemd
/// units through `systemd-analyze` and by running their ExecStart lines for real; manifests and the
/// Dockerfile offline; and every charrnn command line any recipe runs, against charrnn's own --help.
final class DeployRecipeTests: XCTestCase {
    let tinyModel = "--embed 16 --units 32 --batch 16 --seq 30 --log-every 5"

    // MARK: systemd

    func testSystemdUnitsPassVerifyAndSecurityReview() throws {
        guard DeployShell.which("systemd-analyze") != nil else { throw XCTSkip("systemd-analyze is not installed") }
        // verify resolves dependencies and executables inside --root, so lay out a small system: systemd's own
        // units, ours, the launcher and an environment file where the units expect them.
        let root = try CLI.temporaryDirectory(self)
        let units = root.appendingPathComponent("etc/systemd/system")
        try FileManager.default.createDirectory(at: units, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("usr/local/bin"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("usr/lib/systemd"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("etc/charrnn"), withIntermediateDirectories: true)
        let systemUnits = ["/usr/lib/systemd/system", "/lib/systemd/system"].first { FileManager.default.fileExists(atPath: $0) }
        try FileManager.default.copyItem(atPath: try XCTUnwrap(systemUnits, "no systemd unit directory"),
                                         toPath: root.appendingPathComponent("usr/lib/systemd/system").path)
        for unit in Systemd.units { try FileManager.default.copyItem(at: Systemd.directory.appendingPathComponent(unit), to: units.appendingPathComponent(unit)) }
        try FileManager.default.copyItem(at: DeployShell.launcher, to: root.appendingPathComponent("usr/local/bin/charrnn-node"))
        try FileManager.default.copyItem(at: CLI.executable, to: root.appendingPathComponent("usr/local/bin/charrnn"))
        try FileManager.default.copyItem(at: DeployShell.root.appendingPathComponent("Deploy/config.env.example"),
                                         to: root.appendingPathComponent("etc/charrnn/charrnn.env"))

        let names = ["charrnn-coordinator.service", "charrnn-worker@1.service"]
        let verify = try DeployShell.run(["systemd-analyze", "verify", "--root=\(root.path)"] + names)
        XCTAssertEqual(verify.status, 0, verify.stderr)
        // verify reports unknown keys and bad values as warnings, with exit status 0.
        XCTAssertEqual(verify.stdout + verify.stderr, "", "systemd-analyze verify complains")
        for name in names {
            // systemd's exposure score, 0 (locked down) to 10, compared here in tenths: ours are about 2.
            let review = try DeployShell.run(["systemd-analyze", "security", "--offline=true", "--root=\(root.path)", "--threshold=30", name])
            XCTAssertEqual(review.status, 0, "\(name) is exposed more than 3.0 by systemd's measure:\n\(review.stdout.suffix(600))")
        }
    }

    /// The units' ExecStart lines, with the environment systemd would give them, on loopback: a coordinator
    /// and two workers train; the coordinator crashes and is started again, as Restart=on-failure does, and
    /// resumes; the run ends with the bits of an uninterrupted one, and its checkpoint generates text.
    func testSystemdExecStartLinesTrainCrashAndResume() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        let checkpoints = dir.appendingPathComponent("ckpt").path
        let port = freeTCPPort()
        let envFile = dir.appendingPathComponent("charrnn.env")
        try """
        # what an administrator writes in /etc/charrnn/charrnn.env
        CHARRNN=\(CLI.executable.path)
        CHARRNN_COORDINATOR=127.0.0.1:\(port)
        CHARRNN_BIND=tcp://127.0.0.1:\(port)
        CHARRNN_SHARDS=2
        CHARRNN_THREADS=1
        CHARRNN_DATA=\(data)
        CHARRNN_CHECKPOINT_DIR=\(checkpoints)
        CHARRNN_TRAIN_ARGS="\(tinyModel) --epochs 100 --steps 600 --checkpoint-every 5 --min-workers 2"

        """.write(to: envFile, atomically: true, encoding: .utf8)

        let etc = dir.appendingPathComponent("etc")
        try DeployShell.makeKeys(in: etc)

        let group = ProcessGroup(self, dir: dir)
        addTeardownBlock { for p in group.all { for child in DeployShell.children(of: p.pid) { kill(child, SIGKILL) } } }
        let coordinatorUnit = try Systemd.Unit(name: "charrnn-coordinator.service")
        let workerUnit = try Systemd.Unit(name: "charrnn-worker@.service")
        XCTAssertEqual(coordinatorUnit.service["Restart"], ["on-failure"])
        XCTAssertEqual(workerUnit.service["Restart"], ["always"])
        var started = 0
        func start(_ unit: Systemd.Unit, instance: String = "", name: String) throws -> Spawned {
            started += 1
            let (argv, environment) = try unit.execStart(environmentFile: envFile, instance: instance, etc: etc,
                                                         credentials: dir.appendingPathComponent("credentials-\(started)"))
            return try group.start(name, ["-i"] + environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } + argv,
                                   executable: URL(fileURLWithPath: "/usr/bin/env"))
        }

        let first = try start(coordinatorUnit, name: "coordinator")
        let workers = try (1...2).map { try start(workerUnit, instance: "\($0)", name: "worker-\($0)") }
        XCTAssertTrue(first.waitFor("checkpoint \(checkpoints)/step-000000010"), first.output)
        // A crash: the coordinator process dies; its unit's main process (the launcher) fails with it.
        let coordinatorProcess = try XCTUnwrap(DeployShell.children(of: first.pid).first, "the launcher started no charrnn")
        kill(coordinatorProcess, SIGKILL)
        XCTAssertEqual(first.waitExit(timeout: 20), 128 + SIGKILL, first.output)

        // With --min-workers 2 the restarted coordinator waits until both workers have rejoined (each within its
        // --rejoin-after), so both are members when the run ends and are told to exit.
        let second = try start(coordinatorUnit, name: "coordinator-restarted")
        XCTAssertEqual(second.waitExit(timeout: 120), 0, second.output)
        XCTAssertFalse(second.output.contains("insecure"), second.output)
        XCTAssertTrue(second.output.contains("resuming from \(checkpoints)/step-0000000"), second.output)
        for w in workers {
            XCTAssertEqual(w.waitExit(timeout: 20), 0, "worker was not told to exit: \(w.output)")
            XCTAssertTrue(w.output.contains("worker \(ProcessInfo.processInfo.hostName.split(separator: ".")[0])-"), w.output)
        }

        let reference = dir.appendingPathComponent("reference").path
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", reference, "--shards", "2", "--epochs", "100", "--steps", "600"]
                            + tinyModel.split(separator: " ").map(String.init))
        XCTAssertEqual(r.status, 0, r.stderr)
        assertSameCheckpoint("\(reference)/step-000000600", "\(checkpoints)/step-000000600")
        let prime = CLI.text(characters: 5)
        let g = try CLI.run(["generate", "--checkpoint", checkpoints, "--prime", prime, "--length", "40", "--threads", "1"])
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertTrue(g.stdout.hasPrefix(prime), g.stdout)
    }

    /// Stopped by a signal, the launcher passes it on, lets charrnn finish and exits 143, so that a supervisor
    /// can tell a stopped run from a finished one.
    func testLauncherExits143WhenStopped() throws {
        let dir = try CLI.temporaryDirectory(self)
        let group = ProcessGroup(self, dir: dir)
        addTeardownBlock { for p in group.all { for child in DeployShell.children(of: p.pid) { kill(child, SIGKILL) } } }
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        // No worker will come, so the coordinator waits: a run stopped before its end.
        let launcher = try group.start("launcher", [
            "CHARRNN=\(CLI.executable.path)", "CHARRNN_DATA=\(data)", "CHARRNN_CHECKPOINT_DIR=\(dir.path)/ckpt",
            "CHARRNN_BIND=ipc://\(dir.path)/c.sock", "CHARRNN_SHARDS=2", "CHARRNN_TRAIN_ARGS=\(tinyModel)",
            DeployShell.launcher.path, "coordinator",
        ], executable: URL(fileURLWithPath: "/usr/bin/env"))
        XCTAssertNotNil(CoordinatorStatusFile.wait(dir.appendingPathComponent("ckpt")) { $0.workers.isEmpty }, launcher.output)
        let child = try XCTUnwrap(DeployShell.children(of: launcher.pid).first)
        launcher.signal(SIGTERM)
        XCTAssertEqual(launcher.waitExit(timeout: 30), 143, launcher.output)
        XCTAssertNotEqual(kill(child, 0), 0, "charrnn outlived its launcher")
        XCTAssertTrue(launcher.output.contains("stopping after the current step"), launcher.output)

        let usage = try DeployShell.run([DeployShell.launcher.path, "neither"])
        XCTAssertEqual(usage.status, 64, usage.stderr)
    }

    // MARK: Kubernetes and the container image

    func testKubernetesManifestsAreValidAndAgree() throws {
        let objects = try Kubernetes.objects()
        func named(_ kind: String) throws -> [String: Any] {
            try XCTUnwrap(objects.first { $0["kind"] as? String == kind }, "no \(kind) in Deploy/kubernetes")
        }
        for object in objects {
            XCTAssertNotNil(object["apiVersion"] as? String, "\(object)")
            XCTAssertNotNil(object.at("metadata", "name") as? String, "\(object)")
        }
        let config = try XCTUnwrap(try named("ConfigMap")["data"] as? [String: String])
        XCTAssertEqual(Set(config.keys).subtracting(DeployShell.vocabulary), [], "settings outside the shared vocabulary")

        let service = try named("Service"), job = try named("Job"), workers = try named("Deployment")
        let policy = try named("NetworkPolicy"), claim = try named("PersistentVolumeClaim")
        let coordinatorPod = try XCTUnwrap(job.at("spec", "template") as? [String: Any])
        let workerPod = try XCTUnwrap(workers.at("spec", "template") as? [String: Any])
        let coordinatorLabels = try XCTUnwrap(coordinatorPod.at("metadata", "labels") as? [String: String])
        let workerLabels = try XCTUnwrap(workerPod.at("metadata", "labels") as? [String: String])
        func selects(_ selector: Any?, _ labels: [String: String]) -> Bool {
            guard let s = selector as? [String: String], !s.isEmpty else { return false }
            return s.allSatisfy { labels[$0.key] == $0.value }
        }
        XCTAssertTrue(selects(service.at("spec", "selector"), coordinatorLabels), "the Service does not select the coordinator")
        XCTAssertFalse(selects(service.at("spec", "selector"), workerLabels), "the Service also selects workers")
        XCTAssertTrue(selects(workers.at("spec", "selector", "matchLabels"), workerLabels))
        XCTAssertTrue(selects(policy.at("spec", "podSelector", "matchLabels"), coordinatorLabels), "the NetworkPolicy does not guard the coordinator")
        let allowed = (policy.at("spec", "ingress") as? [[String: Any]])?.flatMap { ($0["from"] as? [[String: Any]]) ?? [] } ?? []
        XCTAssertEqual(allowed.count, 1)
        XCTAssertTrue(allowed.allSatisfy { selects($0.at("podSelector", "matchLabels"), workerLabels) }, "the coordinator's port is open to more than the workers")

        // Workers reach the coordinator through the Service, on the port the coordinator listens on.
        let address = try XCTUnwrap(config["CHARRNN_COORDINATOR"]).split(separator: ":")
        XCTAssertEqual(String(address[0]), service.at("metadata", "name") as? String)
        let servicePort = try XCTUnwrap((service.at("spec", "ports") as? [[String: Any]])?.first)
        XCTAssertEqual(servicePort["port"] as? Int, Int(address[1]))
        let coordinator = try XCTUnwrap((coordinatorPod.at("spec", "containers") as? [[String: Any]])?.first)
        let containerPort = try XCTUnwrap((coordinator["ports"] as? [[String: Any]])?.first)
        XCTAssertEqual(containerPort["containerPort"] as? Int, Int(address[1]))
        XCTAssertEqual(servicePort["targetPort"] as? String, containerPort["name"] as? String)

        // The checkpoints live on the claimed volume.
        let volume = try XCTUnwrap((coordinatorPod.at("spec", "volumes") as? [[String: Any]])?.first)
        XCTAssertEqual(volume.at("persistentVolumeClaim", "claimName") as? String, claim.at("metadata", "name") as? String)
        let mount = try XCTUnwrap((coordinator["volumeMounts"] as? [[String: Any]])?.first { $0["name"] as? String == volume["name"] as? String })
        XCTAssertTrue(try XCTUnwrap(config["CHARRNN_CHECKPOINT_DIR"]).hasPrefix("\(try XCTUnwrap(mount["mountPath"] as? String))/"))
        // Both roles run with keys, from files the Secret volume holds.
        let worker = try XCTUnwrap((workerPod.at("spec", "containers") as? [[String: Any]])?.first)
        for (pod, container) in [(coordinatorPod, coordinator), (workerPod, worker)] {
            var environment: [String: String] = [:]
            for item in container["env"] as? [[String: Any]] ?? [] { environment[item["name"] as? String ?? ""] = item["value"] as? String }
            XCTAssertEqual(Set(environment.keys).subtracting(DeployShell.vocabulary.union(["XDG_CACHE_HOME"])), [])
            let keyFiles = environment.filter { $0.key.hasSuffix("_KEY") || $0.key.hasSuffix("_KEYS") }.map(\.value)
            XCTAssertEqual(keyFiles.count, 2, "\(environment)")
            let volumes = pod.at("spec", "volumes") as? [[String: Any]] ?? []
            for path in keyFiles {
                let mount = (container["volumeMounts"] as? [[String: Any]] ?? []).first { path.hasPrefix("\($0["mountPath"] as? String ?? "?")/") }
                let volume = volumes.first { $0["name"] as? String == mount?["name"] as? String }
                let items = (volume?.at("secret", "items") as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
                XCTAssertTrue(items.contains { path.hasSuffix("/\($0)") }, "\(path) is not in a Secret volume")
            }
        }
        // A stop writes a checkpoint first: the grace period must allow for it.
        XCTAssertGreaterThanOrEqual(coordinatorPod.at("spec", "terminationGracePeriodSeconds") as? Int ?? 30, 60)

        // The pod for reaching the checkpoints mounts the same claim at the same place, with the same image.
        let inspector = try XCTUnwrap(try Kubernetes.objects([Kubernetes.directory.appendingPathComponent("checkpoints-pod.yaml").path]).first)
        XCTAssertEqual((inspector.at("spec", "volumes") as? [[String: Any]])?.first?.at("persistentVolumeClaim", "claimName") as? String,
                       claim.at("metadata", "name") as? String)
        let inspectorContainer = try XCTUnwrap((inspector.at("spec", "containers") as? [[String: Any]])?.first)
        XCTAssertEqual((inspectorContainer["volumeMounts"] as? [[String: Any]])?.first?["mountPath"] as? String, mount["mountPath"] as? String)
        let image = try XCTUnwrap((try Kubernetes.parse([Kubernetes.directory.appendingPathComponent("kustomization.yaml").path]).first?["images"] as? [[String: Any]])?.first)
        XCTAssertEqual(inspectorContainer["image"] as? String, "\(image["newName"] ?? "")" + ":" + "\(image["newTag"] ?? "")")

        // Offline schema validation, where the validator is installed (Deploy/test.sh installs it).
        let files = try Kubernetes.manifestFiles().filter { !$0.hasSuffix("kustomization.yaml") }
        if DeployShell.which("kubernetes-validate") != nil {
            // The oldest version the manifests claim (Deploy/README.md), and the validator's newest.
            for version in [["-k", "1.29.0"], []] {
                let v = try DeployShell.run(["kubernetes-validate", "--strict", "--quiet"] + version + files)
                XCTAssertEqual(v.status, 0, "\(version): \(v.stdout) \(v.stderr)")
            }
        } else {
            print("note: kubernetes-validate not installed; Kubernetes schemas not checked (pip install kubernetes-validate)")
        }
        if DeployShell.which("kubectl") != nil {
            let k = try DeployShell.run(["kubectl", "kustomize", Kubernetes.directory.path])
            XCTAssertEqual(k.status, 0, k.stderr)
            XCTAssertEqual(k.stdout.components(separatedBy: "\n---\n").count, objects.count, "kustomization.yaml does not list every manifest")
        }
    }

    func testDockerfileBuildsFromWhatTheRepositoryHas() throws {
        let dockerfile = try Dockerfile()
        XCTAssertEqual(dockerfile.stages.count, 2, "a build stage and a runtime stage")
        XCTAssertTrue(dockerfile.stages.last?.hasPrefix("debian:") ?? false, "runtime stage: \(dockerfile.stages)")
        // What it copies from the build context exists (and gets past the ignore file).
        let ignored = try String(contentsOf: Kubernetes.directory.appendingPathComponent("Dockerfile.dockerignore"), encoding: .utf8)
        for source in dockerfile.copiedFromContext {
            XCTAssertTrue(FileManager.default.fileExists(atPath: DeployShell.root.appendingPathComponent(source).path), "COPY \(source): no such file")
            XCTAssertTrue(ignored.contains("!\(source)\n"), "\(source) is excluded by Dockerfile.dockerignore")
        }
        XCTAssertTrue(dockerfile.installed.isSuperset(of: ["libopenblas0", "libzmq5", "libopenblas-dev", "libzmq3-dev"]), "\(dockerfile.installed)")
        // The images are Debian 12, like this machine: its package lists say whether those packages exist.
        let probe = try DeployShell.run(["apt-cache", "show", "--no-all-versions", "libc6"])
        if probe.status == 0 && !probe.stdout.isEmpty {
            let r = try DeployShell.run(["apt-cache", "show", "--no-all-versions"] + dockerfile.installed.sorted())
            for package in dockerfile.installed {
                XCTAssertTrue(r.stdout.contains("Package: \(package)\n"), "no Debian package \(package): \(r.stderr)")
            }
        } else {
            print("note: no apt package lists here; the Dockerfile's package names were not checked")
        }
    }

    // MARK: Every charrnn command line

    /// Runs each recipe's entry point with a stand-in charrnn that records its arguments, then checks each
    /// recorded command line against `charrnn <subcommand> --help`: the subcommand exists, every --flag is
    /// one of its options, and every option that takes a value has one.
    func testEveryCommandLineUsesRealSubcommandsAndFlags() throws {
        let dir = try CLI.temporaryDirectory(self)
        let recorder = try CommandRecorder(dir: dir)
        let example = try Systemd.environmentFile(DeployShell.root.appendingPathComponent("Deploy/config.env.example"))
        XCTAssertEqual(Set(example.keys).subtracting(DeployShell.vocabulary), [], "config.env.example uses names outside the vocabulary")

        // The launcher, with the example settings, on a first start and on a restart (a checkpoint exists).
        var settings = example.merging(recorder.environment) { $1 }
        settings["CHARRNN_CHECKPOINT_DIR"] = dir.appendingPathComponent("ckpt").path
        try recorder.record("charrnn-node coordinator", [DeployShell.launcher.path, "coordinator"], environment: settings)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("ckpt/step-000000007"), withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: dir.appendingPathComponent("ckpt/step-000000007/checkpoint.json"))
        let resumed = try recorder.record("charrnn-node coordinator, restarted", [DeployShell.launcher.path, "coordinator"], environment: settings)
        XCTAssertTrue(resumed.first?.contains("--resume") ?? false, "\(resumed)")
        try recorder.record("charrnn-node worker", [DeployShell.launcher.path, "worker"], environment: settings)

        // The systemd units' ExecStart lines.
        try DeployShell.makeKeys(in: dir.appendingPathComponent("etc"))
        for name in Systemd.units {
            let (argv, environment) = try Systemd.Unit(name: name).execStart(
                environmentFile: DeployShell.root.appendingPathComponent("Deploy/config.env.example"), instance: "3",
                etc: dir.appendingPathComponent("etc"), credentials: dir.appendingPathComponent("credentials-\(name)"))
            try recorder.record(name, argv, environment: environment.merging(recorder.environment) { $1 })
        }

        // The sbatch script, with srun, scontrol and scancel stood in for: each task's command is recorded.
        try recorder.record("charrnn.sbatch", ["bash", DeployShell.root.appendingPathComponent("Deploy/slurm/charrnn.sbatch").path],
                            environment: recorder.environment.merging(recorder.slurmEnvironment) { $1 }
                                .merging(["CHARRNN_TRAIN_ARGS": example["CHARRNN_TRAIN_ARGS"] ?? ""]) { $1 })

        // The Dockerfile's own charrnn commands, and its entry point.
        let dockerfile = try Dockerfile()
        for command in dockerfile.charrnnCommands { recorder.add("Dockerfile RUN", command) }
        try recorder.record("Dockerfile ENTRYPOINT", dockerfile.entrypoint.map { $0 == "charrnn-node" ? DeployShell.launcher.path : $0 },
                            environment: settings)

        // The Kubernetes containers, with their ConfigMap and env.
        if let objects = try? Kubernetes.objects() {
            let config = objects.first { $0["kind"] as? String == "ConfigMap" }?["data"] as? [String: String] ?? [:]
            for object in objects {
                for container in object.at("spec", "template", "spec", "containers") as? [[String: Any]] ?? [] {
                    var environment = config.merging(recorder.environment) { $1 }
                    environment["CHARRNN_CHECKPOINT_DIR"] = dir.appendingPathComponent("k8s-\(container["name"] ?? "")").path
                    for item in container["env"] as? [[String: Any]] ?? [] {
                        if let n = item["name"] as? String, let v = item["value"] as? String { environment[n] = v }
                    }
                    let argv = (container["command"] as? [String] ?? dockerfile.entrypoint) + (container["args"] as? [String] ?? [])
                    try recorder.record("Kubernetes container \(container["name"] ?? "?")",
                                        argv.map { $0 == "charrnn-node" ? DeployShell.launcher.path : $0 }, environment: environment)
                }
            }
        } else {
            print("note: no PyYAML here; the Kubernetes containers' command lines were not checked")
        }

        let help = try CharrnnHelp()
        XCTAssertGreaterThanOrEqual(recorder.commands.count, 12, "\(recorder.commands)")
        for (source, argv) in recorder.commands {
            for problem in help.problems(argv) { XCTFail("\(source): \(problem) in `charrnn \(argv.joined(separator: " "))`") }
        }
        XCTAssertEqual(Set(recorder.commands.compactMap { $0.argv.first }), ["coordinator", "worker", "keygen", "--help"])
        // The recipes run with keys (the example settings leave them to the units; the image to its users).
        for (source, argv) in recorder.commands where ["coordinator", "worker"].contains(argv[0])
            && !source.hasPrefix("charrnn-node") && !source.hasPrefix("Dockerfile") {
            XCTAssertTrue(argv.contains("--secret-key"), "\(source) runs without keys: \(argv)")
        }

        // And, as a net for lines the runs above do not reach: every --flag written in the units, manifests and
        // the example settings (comments aside) is an option of some charrnn subcommand.
        let files = Systemd.units.map { Systemd.directory.appendingPathComponent($0).path }
            + ((try? Kubernetes.manifestFiles()) ?? []) + [DeployShell.root.appendingPathComponent("Deploy/config.env.example").path]
        for file in files {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            for line in text.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).hasPrefix("#") {
                for flag in " \(line)".matches(of: /[^\w-](--[a-z][a-z0-9-]*)/).map({ String($0.output.1) }) where !help.allOptions.contains(flag) {
                    XCTFail("\(file): \(flag) is no option of any charrnn subcommand")
                }
            }
        }
    }
}

// MARK: - Helpers

/// Shell-level helpers shared by the Deploy and Slurm tests.
enum DeployShell {
    static let root = CLI.packageRoot
    static let launcher = root.appendingPathComponent("Deploy/charrnn-node")
    /// The shared settings, as documented in Deploy/README.md.
    static let vocabulary: Set<String> = ["CHARRNN", "CHARRNN_COORDINATOR", "CHARRNN_BIND", "CHARRNN_SHARDS", "CHARRNN_THREADS",
                                          "CHARRNN_DATA", "CHARRNN_CHECKPOINT_DIR", "CHARRNN_TRAIN_ARGS",
                                          "CHARRNN_SECRET_KEY", "CHARRNN_AUTHORIZED_KEYS", "CHARRNN_COORDINATOR_KEY"]

    /// What an administrator puts in /etc/charrnn for the systemd units (Deploy/README.md), made in `etc`.
    static func makeKeys(in etc: URL) throws {
        try FileManager.default.createDirectory(at: etc, withIntermediateDirectories: true)
        for name in ["coordinator", "worker"] {
            let r = try CLI.run(["keygen", "--output", etc.appendingPathComponent(name).path])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        try FileManager.default.copyItem(at: etc.appendingPathComponent("worker.pub"), to: etc.appendingPathComponent("workers.pub"))
    }

    /// A process for a program found on PATH or in sbin (daemons live there; a test runner's PATH may lack
    /// it). It starts through bash, which first closes every descriptor but stdio: Foundation learns that a
    /// child exited when a socket it shares with the child closes, so a daemon or a background job that
    /// inherited that socket would keep us waiting for as long as it runs.
    static func process(_ argv: [String], environment: [String: String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        let program = argv[0].contains("/") ? argv[0] : try XCTUnwrap(which(argv[0]), "\(argv[0]) not found")
        p.arguments = ["-c", #"for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done; exec "$@""#, "bash", program]
            + argv.dropFirst()
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        p.standardInput = FileHandle.nullDevice
        return p
    }

    /// Runs a program to its end, capturing its output.
    static func run(_ argv: [String], environment: [String: String] = [:]) throws -> CLI.Result {
        try CLI.capture(process(argv, environment: environment))
    }

    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return (path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"]).map { "\($0)/\(name)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A process's children, from /proc.
    static func children(of pid: Int32) -> [Int32] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        return text.split(separator: " ").compactMap { Int32($0) }
    }
}

/// systemd's unit and environment-file syntax, as far as our units use it.
enum Systemd {
    static let directory = DeployShell.root.appendingPathComponent("Deploy/systemd")
    static let units = ["charrnn-coordinator.service", "charrnn-worker@.service"]
    /// Where Deploy/README.md installs the launcher; the tests run the repository's copy instead.
    static let installedLauncher = "/usr/local/bin/charrnn-node"

    struct Unit {
        /// [Service] settings, each key's values in order.
        var service: [String: [String]] = [:]

        init(name: String) throws {
            var section = ""
            for raw in try String(contentsOf: Systemd.directory.appendingPathComponent(name), encoding: .utf8).split(separator: "\n") {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
                if line.hasPrefix("[") { section = line; continue }
                guard section == "[Service]", let eq = line.firstIndex(of: "=") else { continue }
                service[String(line[..<eq]), default: []].append(String(line[line.index(after: eq)...]))
            }
        }

        /// ExecStart as systemd would run it: LoadCredential= files copied into a credentials directory (%d),
        /// Environment= first, then the environment file over it, specifiers and ${VARIABLES} expanded. Paths
        /// under /etc/charrnn are read from `etc`, and the launcher's installed path is the repository's.
        func execStart(environmentFile: URL, instance: String, etc: URL, credentials: URL) throws -> (argv: [String], environment: [String: String]) {
            let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
            func expand(_ word: String) -> String {
                let w = word.replacingOccurrences(of: "%%", with: "\u{0}").replacingOccurrences(of: "%i", with: instance)
                    .replacingOccurrences(of: "%H", with: host).replacingOccurrences(of: "%d", with: credentials.path)
                    .replacingOccurrences(of: "\u{0}", with: "%")
                XCTAssertFalse(w.contains("%"), "unexpanded specifier in \(word)")
                return w.hasPrefix("/etc/charrnn/") ? etc.appendingPathComponent(String(w.dropFirst(13))).path : w
            }
            try FileManager.default.createDirectory(at: credentials, withIntermediateDirectories: true)
            for credential in service["LoadCredential"] ?? [] {
                let parts = credential.split(separator: ":", maxSplits: 1).map(String.init)
                try FileManager.default.copyItem(atPath: expand(parts[1]), toPath: credentials.appendingPathComponent(parts[0]).path)
            }
            var environment = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
            for assignments in service["Environment"] ?? [] {
                for word in Systemd.words(assignments) {
                    let parts = word.split(separator: "=", maxSplits: 1).map(String.init)
                    environment[parts[0]] = parts.count > 1 ? expand(parts[1]) : ""
                }
            }
            environment.merge(try Systemd.environmentFile(environmentFile)) { $1 }
            let line = try XCTUnwrap(service["ExecStart"]?.last, "no ExecStart")
            var argv: [String] = []
            for word in Systemd.words(line) {
                var w = expand(word)
                for (name, value) in environment { w = w.replacingOccurrences(of: "${\(name)}", with: value) }
                XCTAssertFalse(w.contains("$"), "unexpanded variable in \(word)")
                argv.append(w == Systemd.installedLauncher ? DeployShell.launcher.path : w)
            }
            return (argv, environment)
        }
    }

    /// Whitespace-separated words; double quotes group.
    static func words(_ line: String) -> [String] {
        var words: [String] = [], current = "", quoted = false, any = false
        for c in line {
            if c == "\"" { quoted.toggle(); any = true } else if c.isWhitespace && !quoted {
                if any { words.append(current) }
                current = ""; any = false
            } else { current.append(c); any = true }
        }
        if any { words.append(current) }
        return words
    }

    /// KEY=VALUE lines; comments and blank lines skipped; one pair of surrounding quotes removed.
    static func environmentFile(_ url: URL) throws -> [String: String] {
        var result: [String: String] = [:]
        for raw in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            guard let eq = line.firstIndex(of: "=") else { continue }
            var value = String(line[line.index(after: eq)...])
            if value.count >= 2, let q = value.first, q == "\"" || q == "'", value.last == q { value = String(value.dropFirst().dropLast()) }
            result[String(line[..<eq])] = value
        }
        return result
    }
}

enum Kubernetes {
    static let directory = DeployShell.root.appendingPathComponent("Deploy/kubernetes")

    static func manifestFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }.sorted()
            .map { directory.appendingPathComponent($0).path }
    }

    /// What `kubectl apply -k` applies: the files kustomization.yaml lists.
    static func resources() throws -> [String] {
        let kustomization = try XCTUnwrap(try parse([directory.appendingPathComponent("kustomization.yaml").path]).first)
        return try XCTUnwrap(kustomization["resources"] as? [String]).map { directory.appendingPathComponent($0).path }
    }

    /// Every object in these manifests (by default those `apply -k` applies).
    static func objects(_ files: [String]? = nil) throws -> [[String: Any]] {
        try parse(files ?? resources())
    }

    /// YAML documents, parsed by PyYAML (the test skips without it).
    static func parse(_ files: [String]) throws -> [[String: Any]] {
        let script = "import sys, json, yaml; json.dump([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d], sys.stdout)"
        let r = try DeployShell.run(["python3", "-c", script] + files)
        if r.status != 0 && r.stderr.contains("No module named 'yaml'") { throw XCTSkip("PyYAML is not installed (pip install pyyaml)") }
        guard r.status == 0 else { throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "YAML: \(r.stderr)"]) }
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
    }
}

extension Dictionary where Key == String, Value == Any {
    /// The value at a path of keys in nested dictionaries.
    func at(_ path: String...) -> Any? {
        var current: Any? = self
        for key in path { current = (current as? [String: Any])?[key] }
        return current
    }
}

/// The parts of Deploy/kubernetes/Dockerfile the tests look at.
struct Dockerfile {
    var stages: [String] = []
    var copiedFromContext: [String] = []
    var installed: Set<String> = []
    var charrnnCommands: [[String]] = []
    var entrypoint: [String] = []

    init() throws {
        let text = try String(contentsOf: Kubernetes.directory.appendingPathComponent("Dockerfile"), encoding: .utf8)
        // Instructions, with continuation lines joined and comments dropped.
        let instructions = text.replacingOccurrences(of: "\\\n", with: " ").split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        var args: [String: String] = [:]
        var command: [String] = []
        for line in instructions {
            let words = line.split(separator: " ").map(String.init)
            switch words[0] {
            case "ARG":
                let kv = words[1].split(separator: "=", maxSplits: 1)
                args[String(kv[0])] = kv.count > 1 ? String(kv[1]) : ""
            case "FROM":
                var image = words[1]
                for (k, v) in args { image = image.replacingOccurrences(of: "${\(k)}", with: v) }
                stages.append(image)
            case "COPY" where !words.contains { $0.hasPrefix("--from") }:
                copiedFromContext += words.dropFirst().dropLast()
            case "RUN":
                for part in line.dropFirst(4).components(separatedBy: "&&") {
                    let w = part.split(separator: " ").map(String.init).filter { $0 != ">/dev/null" }
                    if w.first == "charrnn" { charrnnCommands.append(Array(w.dropFirst())) }
                    if let i = w.firstIndex(of: "install"), w.first == "DEBIAN_FRONTEND=noninteractive" || w.first == "apt-get" {
                        installed.formUnion(w[(i + 1)...].filter { !$0.hasPrefix("-") })
                    }
                }
            case "ENTRYPOINT": command = try Self.json(line.dropFirst(11)) + command
            case "CMD": command += try Self.json(line.dropFirst(4))
            default: break
            }
        }
        entrypoint = command
    }

    private static func json(_ text: Substring) throws -> [String] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String], "not an exec-form list: \(text)")
    }
}

/// Runs recipes with a stand-in `charrnn` that writes down its arguments.
final class CommandRecorder {
    private let log: URL
    private let bin: URL
    private(set) var commands: [(source: String, argv: [String])] = []
    let environment: [String: String]
    /// What Slurm puts in a job's environment, for a 3-task job on node n1.
    let slurmEnvironment: [String: String]

    init(dir: URL) throws {
        log = dir.appendingPathComponent("commands.log")
        bin = dir.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        // One argument per line, then an empty line.
        try Self.write(bin, "charrnn", "printf '%s\\n' \"$@\" '' >> '\(log.path)'")
        try Self.write(bin, "srun", "for task in 0 1; do SLURM_PROCID=$task \"${@: -3}\"; done")
        try Self.write(bin, "scontrol", "[ \"$1 $2\" = 'show hostnames' ] && echo n1 || true")
        try Self.write(bin, "scancel", "true")
        environment = ["CHARRNN": bin.appendingPathComponent("charrnn").path,
                       "PATH": "\(bin.path):\(ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")"]
        slurmEnvironment = ["SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "n1", "SLURM_NTASKS": "3", "SLURM_STEP_ID": "0",
                            "SLURMD_NODENAME": "n1", "SLURM_SUBMIT_DIR": dir.path, "SLURM_CPUS_PER_TASK": "1"]
    }

    private static func write(_ bin: URL, _ name: String, _ body: String) throws {
        let url = bin.appendingPathComponent(name)
        try Data("#!/usr/bin/env bash\n\(body)\n".utf8).write(to: url)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: url.path)
    }

    /// Runs `argv`, which must succeed, and returns the command lines charrnn was called with.
    @discardableResult
    func record(_ source: String, _ argv: [String], environment: [String: String]) throws -> [[String]] {
        try? FileManager.default.removeItem(at: log)
        let r = try DeployShell.run(argv, environment: environment)
        XCTAssertEqual(r.status, 0, "\(source): \(r.stderr)")
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        let calls = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { $0.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
        XCTAssertFalse(calls.isEmpty, "\(source) never ran charrnn: \(r.stdout) \(r.stderr)")
        for call in calls { add(source, call) }
        return calls
    }

    func add(_ source: String, _ argv: [String]) { commands.append((source, argv)) }
}

/// charrnn's subcommands and each one's options, read from its --help.
struct CharrnnHelp {
    /// Subcommand → option → takes a value.
    private var options: [String: [String: Bool]] = [:]
    var allOptions: Set<String> { Set(options.values.flatMap(\.keys)) }

    init() throws {
        let top = try CLI.run(["--help"])
        XCTAssertEqual(top.status, 0)
        let listing = top.stdout.components(separatedBy: "SUBCOMMANDS:").last ?? ""
        let subcommands = listing.matches(of: /\n  ([a-z][a-z0-9-]*)\s\s/).map { String($0.output.1) }
        XCTAssertTrue(subcommands.contains("coordinator") && subcommands.contains("worker"), top.stdout)
        for sub in subcommands where sub != "help" {
            let h = try CLI.run([sub, "--help"])
            XCTAssertEqual(h.status, 0, "charrnn \(sub) --help: \(h.stderr)")
            var found: [String: Bool] = [:]
            for m in h.stdout.matches(of: /\n  (?:-\w, )?(--[a-z0-9-]+)( <[^>]+>)?/) { found[String(m.output.1)] = m.output.2 != nil }
            options[sub] = found
        }
    }

    func problems(_ argv: [String]) -> [String] {
        guard let sub = argv.first else { return ["no subcommand"] }
        if sub == "--help" { return [] }
        guard let known = options[sub] else { return ["no subcommand \(sub)"] }
        var out: [String] = []
        var i = 1
        while i < argv.count {
            let word = argv[i]
            i += 1
            guard word.hasPrefix("--") else { continue }
            let flag = String(word.split(separator: "=", maxSplits: 1)[0])
            guard let takesValue = known[flag] else { out.append("\(sub) has no option \(flag)"); continue }
            if takesValue && !word.contains("=") {
                if i >= argv.count || argv[i].hasPrefix("--") { out.append("\(flag) has no value") } else { i += 1 }
            }
        }
        return out
    }
}
