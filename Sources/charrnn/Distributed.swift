import ArgumentParser
import CharRNN
import CharRNNDistributed
import Foundation

struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Own the data, weights, optimizer and checkpoints; deal each batch's shards out to workers.",
        discussion: "Results depend on --seed and --shards only, never on how many workers there are.")

    @OptionGroup var training: TrainingArguments
    @OptionGroup(title: "Cluster") var cluster: ClusterOptions

    func run() throws {
        let (bind, shards) = (cluster.bind, cluster.shards)
        let (secretKey, authorizedKeys, insecure, threads) = (cluster.secretKey, cluster.authorizedKeys, cluster.insecure, cluster.threads)
        BLASRuntime.setThreads(try ThreadCount.resolve(threads))
        var options = CoordinatorOptions(endpoint: bind)
        options.pingInterval = cluster.pingInterval
        options.relayFanout = cluster.relayFanout
        if cluster.verify > 0 && cluster.relayFanout > 0 {
            // A relay could pass its whole subtree the same wrong weights, and two workers below it would then
            // agree on a wrong result: checks need every worker's weights to come from the coordinator, and every
            // shard's result (a sum cannot be checked).
            options.relayFanout = 0
        }
        // validate() saw that the two key options come together.
        if let secretKey, let authorizedKeys {
            options.curve = (try CurveKeyPair.load(secretKeyFile: secretKey), try CurveKeyFile.readPublicKeys(authorizedKeys))
        } else {
            if !Endpoint.isPrivate(bind) && !insecure {
                throw CharRNNError.invalidOption("refusing to listen on \(bind) without keys (any local user could join): give --secret-key and --authorized-keys, use an ipc:// endpoint in a directory only you can open, or --insecure")
            }
        }
        let logger = try training.output.makeLogger()
        let stop = StopRequest.installed()
        let run = try training.prepare(shards: shards, defaultShards: 8, log: { logger.info("\($0)") }, warn: { logger.warning("\($0)") })
        run.plan.onNonFinite = training.schedule.onNonfinite
        let coordinator = try Coordinator(plan: run.plan, options: options, log: { logger.info("\($0)") })
        defer { coordinator.shutdownWorkers() }
        // Once listening, so that a coordinator that cannot bind says only why.
        if options.curve == nil && insecure {
            printError("warning: insecure: no authentication or encryption on \(bind); anyone who can reach it can join")
        }
        var status = CoordinatorStatus(run: String(coordinator.runID, radix: 16), endpoint: bind)
        let statusFile = run.policy.directory.appendingPathComponent(CoordinatorStatus.fileName)
        // Weak: the driver holds this closure. A cycle would keep the coordinator alive past `run()`, and its
        // socket is what delivers the workers' shutdown as it closes.
        weak var weakDriver: StepDriver?
        func publish() {
            guard let driver = weakDriver else { return }
            status.update(driver: driver, transport: coordinator.stats)
            status.write(to: statusFile)
        }
        let driver = StepDriver(
            plan: run.plan, pool: coordinator, rules: cluster.dealingRules(),
            report: { event in
                logger.info("\(event.logLine)")
                publish()
            },
            shouldStop: { stop.isRequested })
        weakDriver = driver
        publish()
        let report = Reporter(logger: logger, logEvery: training.output.logEvery, live: training.output.live)
        let loop = TrainingLoop(driver: driver, checkpoints: run.policy, monitoring: run.monitoring, report: { event in
            report(event)
            if case .step = event { publish() }
        }, shouldStop: { stop.isRequested })
        try loop.run()
        publish()
        let (d, t) = (driver.stats, coordinator.stats)
        logger.info("workers lost \(d.lostWorkers), shards reassigned \(d.reassignedShards), stale results \(d.staleResults), duplicate results \(d.duplicateResults), speculative shards \(d.speculativeShards), bad frames \(t.badFrames), undealt results \(d.undealtResults), peers ignored \(t.bannedPeers)")
        try stop.exitIfStopped()
    }
}

extension DealingEvent {
    /// One log line per event.
    var logLine: String {
        switch self {
        case .joined(let name, let live):
            return "worker \(name) joined; \(live) live"
        case .lost(let name, let reason, let shards, let live):
            return "worker \(name) lost (\(reason))" + (shards.isEmpty ? "" : "; its shards \(shards) go to the others") + "; \(live) live"
        case .waiting(let live, let needed):
            return "waiting for workers: \(live) live, at least \(needed) needed"
        case .workerFailed(let name, let message):
            return "worker \(name) reports: \(message)"
        case .distrusted(let name, let shard, let step, let redone):
            return "worker \(name) returned a result for shard \(shard) of step \(step + 1) that two other workers contradict: it is dealt nothing more in this run"
                + (redone > 0 ? "; its \(redone) other result(s) of the step are computed again" : "")
        case .stepSkipped(let step, let reason):
            return "step \(step + 1) skipped (--on-nonfinite skip): \(reason)"
        case .needTieBreaker(let shard, let step):
            return "two workers disagree on shard \(shard) of step \(step + 1): waiting for a third worker to settle it"
        }
    }
}

/// The coordinator's own options: where it listens, how it deals shards, who may join.
struct ClusterOptions: ParsableArguments {
    @Option(help: "ZeroMQ endpoint to listen on (tcp://ADDRESS:PORT or ipc://PATH).") var bind = "tcp://127.0.0.1:5555"
    @Option(help: "Logical shards per batch (must divide --batch; default: 8).") var shards: Int?
    @Option(help: "Wait for at least this many workers before computing a step.") var minWorkers = 1
    @Option(help: "Seconds a worker may hold shards before they are given to another.") var deadline: Double = 30
    @Option(help: "Fraction of shards computed again on another worker and compared bit for bit; a worker caught disagreeing is dealt nothing more (default: 0).")
    var verify = 0.0
    @Option(help: "This coordinator's CURVE secret key file (from `charrnn keygen`).") var secretKey: String?
    @Option(help: "Public keys of the workers let in, one per line (with --secret-key).") var authorizedKeys: String?
    @Flag(help: "Listen on TCP without keys: anyone who can reach the port (on loopback: any local user) can join.") var insecure = false
    @Option(help: "Workers that relay (worker --relay) get the weights down a tree with this many children per node instead of from the coordinator, whose link then carries them this many times per step, not once per worker; and sum their gradients among themselves up the reduction tree (each shard's first order of a step, however many shards each worker pulls), so that the coordinator receives one gradient per step. 0: neither, every worker gets the weights directly and sends its results (so does --verify).")
    var relayFanout = 2
    @Option(help: ArgumentHelp("Test only: seconds between pings to each worker.", visibility: .hidden)) var pingInterval: Double = 0.25
    @Option(help: ArgumentHelp("Benchmarks only: shards a worker holds at most (as many as the step has: all dealt at once).", visibility: .hidden))
    var maxHeld = 2
    @Option(help: ArgumentHelp(threadsHelp + " They do the coordinator's own work (reduction, Adam, validation) while the workers wait."))
    var threads: Int?

    /// How the step driver deals with the workers; the seed that picks the checked shards is new each time.
    func dealingRules() -> DealingRules {
        var r = DealingRules(minWorkers: minWorkers, deadline: deadline)
        r.verify = verify
        r.maxHeld = maxHeld
        var secret = SystemRandomNumberGenerator()
        r.verifySeed = secret.next()
        return r
    }

    func validate() throws {
        try requirePositive("--min-workers", minWorkers)
        try requirePositive("--threads", threads)
        try requirePositive("--max-held", maxHeld)
        if !(0...RelayRoute.maxFanout).contains(relayFanout) { throw ValidationError("--relay-fanout must be from 0 to \(RelayRoute.maxFanout)") }
        if !(deadline > 0) { throw ValidationError("--deadline must be positive") }
        if !(0...1).contains(verify) { throw ValidationError("--verify must be a fraction from 0 to 1, got \(verify)") }
        if (secretKey == nil) != (authorizedKeys == nil) { throw ValidationError("--secret-key and --authorized-keys go together") }
    }
}

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Compute shard gradients for a coordinator; reconnects and rejoins by itself.")

    @Option(help: "The coordinator's endpoint (tcp://HOST:PORT or ipc://PATH).") var connect = "tcp://127.0.0.1:5555"
    @Option(help: ArgumentHelp(threadsHelp + " Several workers on one machine should split its cores."))
    var threads: Int?
    @Option(help: "Name shown in the coordinator's log (default: host-pid).") var name: String?
    @Option(help: "Re-introduce ourselves after this many seconds without word from the coordinator.") var rejoinAfter: Double = 3
    @Option(help: "Exit with an error after this many seconds of waiting without word from a coordinator; make it longer than the coordinator's checkpoint and validation pauses (default: wait forever).")
    var giveUpAfter: Double?
    @Option(help: "This worker's CURVE secret key file (from `charrnn keygen`).") var secretKey: String?
    @Option(help: "The coordinator's CURVE public key file; a coordinator with another key is refused.") var coordinatorKey: String?
    @Option(help: "GiB of memory this worker may use for a run; a coordinator asking for more is refused (default: 8, or the machine's memory if less).")
    var maxMemory: Double?
    @Option(help: "Take the weights from other workers and pass them on (a relay of the coordinator's tree, see coordinator --relay-fanout), and take part in summing the gradients up the tree, listening here: tcp://THIS_HOST_ADDRESS:PORT (PORT * for any free one) or ipc://PATH. With keys, relay links use them too.")
    var relay: String?
    @Option(help: "Seconds an order waits for its weights to come by relay before asking the coordinator for them; and seconds without progress in summing a step's gradients up the tree (a peer stopped or gone) before sending this worker's own results to the coordinator directly. A peer still computing says so, and is waited for up to 8 times this.") var relayPatience: Double = 2
    @Option(help: ArgumentHelp("Test only: send NaN gradients from this step on.", visibility: .hidden)) var faultNanFromStep: Int?
    @Option(help: ArgumentHelp("Test only: send forged (finite, wrong) gradients from this step on.", visibility: .hidden)) var faultForgeFromStep: Int?
    @Option(help: ArgumentHelp("Test only: take this many times as long per work order (a slower machine).", visibility: .hidden))
    var faultSlowdown: Double = 1
    @Option(help: ArgumentHelp("Test only: take this many seconds longer per work order (a slower machine).", visibility: .hidden))
    var faultDelay: Double = 0
    @Option(help: ArgumentHelp("Test only: messages from the coordinator queued at most.", visibility: .hidden)) var receiveQueue: Int?
    @Option(help: ArgumentHelp("Test only: stop this process (SIGSTOP) halfway through passing on this step's weights.", visibility: .hidden))
    var faultStopMidRelay: Int?
    @Option(help: ArgumentHelp("Test only: stop this process (SIGSTOP) at this step when about to pass a sum of several shards up the tree.", visibility: .hidden))
    var faultStopMidReduction: Int?
    @Option(help: ArgumentHelp("Test only: seconds a connection may take to complete its CURVE handshake.", visibility: .hidden))
    var handshakeTimeout: Double = 30

    func validate() throws {
        try requirePositive("--threads", threads)
        if !(rejoinAfter > 0) { throw ValidationError("--rejoin-after must be positive") }
        if let g = giveUpAfter, !(g > 0) || !g.isFinite { throw ValidationError("--give-up-after must be a positive number of seconds") }
        if (secretKey == nil) != (coordinatorKey == nil) { throw ValidationError("--secret-key and --coordinator-key go together") }
        if !(1...1000).contains(faultSlowdown) { throw ValidationError("--fault-slowdown must be from 1 to 1000") }
        if !(0...600).contains(faultDelay) { throw ValidationError("--fault-delay must be from 0 to 600 seconds") }
        if !(relayPatience > 0) || !relayPatience.isFinite { throw ValidationError("--relay-patience must be a positive number of seconds") }
        if let relay, relay.hasPrefix("tcp://"), secretKey == nil, !connect.hasPrefix("tcp://") {
            throw ValidationError("--relay \(relay) would listen on TCP without keys for a coordinator that is not on TCP: use an ipc:// relay endpoint")
        }
        if let relay, !relay.hasPrefix("tcp://") && !relay.hasPrefix("ipc://") { throw ValidationError("--relay takes tcp://ADDRESS:PORT or ipc://PATH, got \(relay)") }
    }

    func run() throws {
        BLASRuntime.setThreads(try ThreadCount.resolve(threads))
        let stop = StopRequest.installed()
        let workerName = name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        if let why = WorkerHello.problem(name: workerName) { throw CharRNNError.invalidOption("--name: \(why)") }
        var options = WorkerOptions(endpoint: connect, name: workerName, blasThreads: BLASRuntime.threads)
        options.rejoinAfter = rejoinAfter
        if let gib = maxMemory {
            guard gib > 0, gib < 1_048_576 else { throw CharRNNError.invalidOption("--max-memory must be a positive number of GiB") }
            options.maxMemory = Int(gib * Double(1 << 30))
        }
        options.giveUpAfter = giveUpAfter
        options.poisonFromStep = faultNanFromStep
        options.forgeFromStep = faultForgeFromStep
        options.slowdown = faultSlowdown
        options.delay = faultDelay
        options.receiveQueue = receiveQueue
        options.handshakeTimeout = handshakeTimeout
        options.relay = relay
        options.relayPatience = relayPatience
        options.stopMidRelayAtStep = faultStopMidRelay
        options.stopMidReductionAtStep = faultStopMidReduction
        if let secretKey, let coordinatorKey {
            guard let key = try CurveKeyFile.read(coordinatorKey).first else { throw CurveError.badKeyFile(coordinatorKey, "no key in the file") }
            options.curve = (try CurveKey(z85: key), try CurveKeyPair.load(secretKeyFile: secretKey))
        }
        do {
            try Worker(options: options, log: { print($0) }, shouldStop: { stop.isRequested }).run()
        } catch WorkerError.refused(let message) {
            // Refused for computing with another OpenBLAS kernel than the run: take the run's, where this CPU can.
            if let run = NumericsIdentity.coordinator(inRefusal: message), run.version == NumericsIdentity.current.version,
               BLASSetup.mayAdopt(run.kernel) {
                print("the run computes with OpenBLAS \(run.kernel), which this CPU can run: restarting with it")
                BLASSetup.adopt(run.kernel)
            }
            throw WorkerError.refused(message)
        }
        try stop.exitIfStopped()
    }
}

struct Launch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a coordinator and N workers on this machine.",
        discussion: "Every other option is passed to `charrnn coordinator` (e.g. --data, --steps, --shards).")

    @Option(help: "Worker processes to start.") var workers = 2
    @Option(help: "Compute threads per worker (default: the cores this process may use, split evenly between the workers, at least 1).")
    var workerThreads: Int?
    @Option(help: "Endpoint for coordinator and workers (default: an ipc socket in a temporary directory).") var endpoint: String?
    @Argument(parsing: .allUnrecognized, help: "Options for the coordinator.") var coordinatorOptions: [String] = []

    func validate() throws {
        try requirePositive("--workers", workers)
        try requirePositive("--worker-threads", workerThreads)
    }

    func run() throws {
        let perWorker = try workerThreads.map { try ThreadCount.resolve($0) } ?? max(1, ThreadCount.available() / workers)
        // Without keys, the socket's directory is what keeps other local users out: one only we can open.
        var template = Array("\(NSTemporaryDirectory())charrnn-launch-XXXXXX".utf8CString)
        guard endpoint != nil || mkdtemp(&template) != nil else {
            throw CharRNNError.invalidOption("cannot create a private directory in \(NSTemporaryDirectory()) for the ipc socket")
        }
        let privateDirectory = endpoint == nil ? String(cString: template) : nil
        defer { if let dir = privateDirectory { try? FileManager.default.removeItem(atPath: dir) } }
        let address = endpoint ?? "ipc://\(privateDirectory!)/coordinator.sock"
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        func start(_ args: [String]) throws -> Process {
            let p = Process()
            p.executableURL = me
            p.arguments = args
            try p.run()
            return p
        }
        // Every worker started here takes part from the first step, unless told otherwise.
        let givesMinimum = coordinatorOptions.contains { $0 == "--min-workers" || $0.hasPrefix("--min-workers=") }
        let coordinator = try start(["coordinator", "--bind", address] + coordinatorOptions + (givesMinimum ? [] : ["--min-workers", "\(workers)"]))
        let children = try (0..<workers).map { i in
            try start(["worker", "--connect", address, "--threads", "\(perWorker)", "--name", "worker-\(i)"])
        }
        coordinator.waitUntilExit()
        // After a clean finish the coordinator has told its workers to exit: give them the time to, so none is
        // stopped by a signal (and says so); after a failure, stop them now.
        let grace = Date().addingTimeInterval(coordinator.terminationStatus == 0 ? 10 : 0)
        while children.contains(where: \.isRunning) && Date() < grace { usleep(20_000) }
        for child in children where child.isRunning { child.terminate() }
        for child in children { child.waitUntilExit() }
        if coordinator.terminationStatus != 0 { throw ExitCode(coordinator.terminationStatus) }
    }
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a CURVE key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub.",
        discussion: "Give the coordinator its .key and every worker's .pub (--authorized-keys); give each worker its .key and the coordinator's .pub (--coordinator-key).")

    @Option(help: "Path prefix of the two files.") var output: String

    func run() throws {
        let pair = try CurveKeyPair.generate()
        try pair.write(prefix: output)
        print("wrote \(output).key (secret) and \(output).pub: \(pair.publicKey.z85)")
    }
}

/// Where an endpoint listens, for the rule that keyless coordinators authenticate by file permissions.
enum Endpoint {
    /// An ipc socket is opened like a file (its mode and its directory's decide who may connect); any process
    /// on the machine can reach a TCP port, loopback included.
    static func isPrivate(_ endpoint: String) -> Bool {
        endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://")
    }
}
