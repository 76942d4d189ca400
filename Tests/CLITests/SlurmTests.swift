import Foundation
import XCTest

/// Deploy/slurm/charrnn.sbatch on a real one-machine Slurm cluster: the job trains, is requeued the way a
/// preempted job is, resumes from its checkpoint and ends with the same bits as an uninterrupted run.
final class SlurmTests: XCTestCase {
    // Long enough (1,500 steps, several seconds even in a release build) that the requeue lands mid-run.
    let model = "--embed 16 --units 32 --batch 16 --seq 30 --epochs 100 --steps 1500 --checkpoint-every 10 --log-every 100"

    func testSbatchScriptTrainsIsRequeuedAndResumes() throws {
        continueAfterFailure = false    // each step needs the one before; the cluster is stopped either way
        let started = Date()
        defer { print("SlurmTests: \(String(format: "%.1f", Date().timeIntervalSince(started))) s, cluster start-up included") }
        let cluster = try SlurmCluster.start(self)
        let dir = cluster.dir
        let data = try CLI.write(CLI.text(characters: 40_000), in: dir)
        let checkpoints = dir.appendingPathComponent("ckpt").path
        let output = dir.appendingPathComponent("job.out")
        let submit = try cluster.run(
            ["sbatch", "--parsable", "--ntasks=3", "--overcommit", "--output=\(output.path)",
             DeployShell.root.appendingPathComponent("Deploy/slurm/charrnn.sbatch").path],
            environment: ["CHARRNN": CLI.executable.path, "CHARRNN_DATA": data, "CHARRNN_CHECKPOINT_DIR": checkpoints,
                          "CHARRNN_SHARDS": "2", "CHARRNN_TRAIN_ARGS": model])
        XCTAssertEqual(submit.status, 0, submit.stderr)
        let job = try XCTUnwrap(submit.stdout.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
        let deadline = Date().addingTimeInterval(180)
        func log() -> String { ((try? String(contentsOf: output, encoding: .utf8)) ?? "(no job output)") + cluster.logs() }

        // Preempt it once it has a checkpoint: a requeue sends SIGTERM to every task, then starts the job again.
        XCTAssertTrue(wait(until: deadline) {
            let steps = (try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []
            return steps.contains { FileManager.default.fileExists(atPath: "\(checkpoints)/\($0)/checkpoint.json") }
        }, log())
        XCTAssertEqual(try cluster.run(["scontrol", "requeue", job]).status, 0, log())
        // Slurm holds a requeued job for as long as a job credential lives (cred_expire: 120 s by default, 10 s in
        // this cluster); starting it earlier by hand gets it killed with "Job credential revoked".
        XCTAssertTrue(wait(until: deadline) { cluster.restarts(job) == 1 && ["RUNNING", "COMPLETED"].contains(cluster.jobState(job)) }, log())
        XCTAssertTrue(wait(until: deadline) { ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"].contains(cluster.jobState(job)) }, log())
        XCTAssertEqual(cluster.jobState(job), "COMPLETED", log())

        let text = log()
        XCTAssertTrue(text.contains("(restart 1)"), text)
        XCTAssertTrue(text.contains("0: resuming from \(checkpoints)/step-"), text)
        XCTAssertTrue(text.contains("0: CURVE on"), "the job ran without keys: \(text)")
        XCTAssertTrue(text.contains("1: coordinator says the run is over"), text)
        XCTAssertTrue(text.contains("2: coordinator says the run is over"), text)

        let reference = dir.appendingPathComponent("reference").path
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", reference, "--shards", "2"] + model.split(separator: " ").map(String.init))
        XCTAssertEqual(r.status, 0, r.stderr)
        assertSameCheckpoint("\(reference)/step-000001500", "\(checkpoints)/step-000001500")

        let prime = CLI.text(characters: 5)
        let g = try CLI.run(["generate", "--checkpoint", checkpoints, "--prime", prime, "--length", "40", "--threads", "1"])
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertTrue(g.stdout.hasPrefix(prime) && g.stdout.count > prime.count + 30, g.stdout)
    }

    private func wait(until deadline: Date, _ condition: () -> Bool) -> Bool {
        while Date() < deadline {
            if condition() { return true }
            usleep(100_000)
        }
        return false
    }
}

/// munged, slurmctld and slurmd for one node (this machine, 2 CPUs), with every file, port and socket of
/// their own so nothing on the machine is touched and two clusters can run at once. Skips the test when
/// Slurm or munge is not installed or we are not root; stops the daemons and removes the files afterwards.
final class SlurmCluster {
    let dir: URL
    private let environment: [String: String]

    static func start(_ test: XCTestCase) throws -> SlurmCluster {
        let tools = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "scancel", "sinfo"]
        let missing = tools.filter { DeployShell.which($0) == nil }
        if !missing.isEmpty { throw skip("needs Slurm and munge (apt-get install slurm-wlm munge); missing \(missing.joined(separator: ", "))") }
        if getuid() != 0 { throw skip("needs root to run slurmd and munged") }
        let dir = URL(fileURLWithPath: "/tmp/charrnn-slurm-\(UUID().uuidString.prefix(8))")
        let cluster = SlurmCluster(dir: dir)
        test.addTeardownBlock { cluster.stop() }
        try cluster.boot()
        return cluster
    }

    private static func skip(_ reason: String) -> XCTSkip {
        print("SlurmTests skipped: \(reason)")
        return XCTSkip(reason)
    }

    private init(dir: URL) {
        self.dir = dir
        environment = ["SLURM_CONF": dir.appendingPathComponent("slurm.conf").path]
    }

    private func boot() throws {
        let munge = dir.appendingPathComponent("munge").path
        let fm = FileManager.default
        for sub in ["state", "spool/\(hostname)", "munge"] {
            try fm.createDirectory(at: dir.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        // munged runs as its own user and refuses directories others may write to or cannot enter.
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        try require(["mungekey", "--create", "--keyfile=\(munge)/munge.key"])
        try require(["chown", "-R", "munge:munge", munge])
        try daemon(["runuser", "-u", "munge", "--", "munged", "--socket=\(munge)/socket", "--key-file=\(munge)/munge.key",
                    "--pid-file=\(munge)/munged.pid", "--log-file=\(munge)/munged.log", "--seed-file=\(munge)/seed"])
        try Data(configuration().utf8).write(to: dir.appendingPathComponent("slurm.conf"))
        try daemon(["slurmctld"])
        try daemon(["slurmd"])
        let end = Date().addingTimeInterval(30)
        while (try? run(["sinfo", "-h", "-o", "%T"]))?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) != "idle" {
            if Date() > end { throw SlurmError.notReady(logs()) }
            usleep(100_000)
        }
    }

    /// A one-node cluster; the job ids start at a random number, so the sbatch script's coordinator port
    /// (derived from the job id, below the ephemeral range) differs between runs.
    private func configuration() -> String {
        let d = dir.path
        return """
        ClusterName=charrnntest
        SlurmctldHost=\(hostname)(127.0.0.1)
        SlurmctldPort=\(freeTCPPort())
        SlurmdPort=\(freeTCPPort())
        SlurmUser=root
        SlurmdUser=root
        AuthType=auth/munge
        CredType=cred/munge
        AuthInfo=socket=\(d)/munge/socket,cred_expire=10
        ProctrackType=proctrack/linuxproc
        TaskPlugin=task/none
        JobAcctGatherType=jobacct_gather/none
        AccountingStorageType=accounting_storage/none
        MpiDefault=none
        MailProg=/bin/true
        SchedulerType=sched/backfill
        SchedulerParameters=bf_interval=1
        SelectType=select/cons_tres
        SelectTypeParameters=CR_CPU
        ReturnToService=2
        KillWait=10
        FirstJobId=\(Int.random(in: 1_000...12_000))
        StateSaveLocation=\(d)/state
        SlurmdSpoolDir=\(d)/spool/%n
        SlurmctldPidFile=\(d)/slurmctld.pid
        SlurmdPidFile=\(d)/slurmd.pid
        SlurmctldLogFile=\(d)/slurmctld.log
        SlurmdLogFile=\(d)/slurmd.log
        NodeName=\(hostname) NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
        PartitionName=test Nodes=\(hostname) Default=YES MaxTime=INFINITE State=UP

        """
    }

    /// The short host name, which slurmd takes as its node name.
    private let hostname: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.split(separator: ".").first.map(String.init) ?? "localhost"
    }()

    /// A Slurm client command against this cluster.
    @discardableResult
    func run(_ argv: [String], environment extra: [String: String] = [:]) throws -> CLI.Result {
        try DeployShell.run(argv, environment: environment.merging(extra) { $1 })
    }

    private func require(_ argv: [String]) throws {
        let r = try run(argv)
        if r.status != 0 { throw SlurmError.failed(argv.joined(separator: " "), r.stdout + r.stderr + logs()) }
    }

    /// Starts a daemon, which forks and returns. Its output goes to a file, not a pipe that the daemon
    /// could keep open.
    private func daemon(_ argv: [String]) throws {
        let log = dir.appendingPathComponent("daemons.log")
        if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }
        try handle.seekToEnd()
        let p = try DeployShell.process(argv, environment: environment)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        p.waitUntilExit()
        if p.terminationStatus != 0 {
            let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            throw SlurmError.failed(argv.joined(separator: " "), output + logs())
        }
    }

    func jobState(_ job: String) -> String {
        field("JobState", of: job)
    }

    func restarts(_ job: String) -> Int {
        Int(field("Restarts", of: job)) ?? -1
    }

    private func field(_ name: String, of job: String) -> String {
        guard let r = try? run(["scontrol", "show", "job", job]), r.status == 0,
              let range = r.stdout.range(of: " \(name)=") else { return "" }
        return String(r.stdout[range.upperBound...].prefix { !$0.isWhitespace })
    }

    /// The daemons' logs, for failure messages.
    func logs() -> String {
        ["slurmctld.log", "slurmd.log", "munge/munged.log"].map { name in
            let text = (try? String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)) ?? ""
            return "\n--- \(name) (last lines)\n" + text.split(separator: "\n").suffix(15).joined(separator: "\n")
        }.joined()
    }

    /// Cancels what still runs, then stops the daemons by their pid files and removes everything.
    func stop() {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("slurmctld.pid").path) {
            _ = try? run(["scancel", "--quiet", "--partition=test"])
            let end = Date().addingTimeInterval(20)
            while Date() < end, let q = try? run(["squeue", "-h"]), q.status == 0, !q.stdout.isEmpty { usleep(200_000) }
        }
        for pidFile in ["slurmd.pid", "slurmctld.pid", "munge/munged.pid"] {
            guard let text = try? String(contentsOf: dir.appendingPathComponent(pidFile), encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 else { continue }
            kill(pid, SIGTERM)
            let end = Date().addingTimeInterval(10)
            while kill(pid, 0) == 0 && Date() < end { usleep(50_000) }
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
        try? FileManager.default.removeItem(at: dir)
    }

    enum SlurmError: Error, CustomStringConvertible {
        case failed(String, String)
        case notReady(String)

        var description: String {
            switch self {
            case .failed(let command, let output): "\(command) failed: \(output)"
            case .notReady(let logs): "the node did not become idle within 30 s: \(logs)"
            }
        }
    }
}
