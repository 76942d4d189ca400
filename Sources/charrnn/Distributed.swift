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
    @Option(help: "ZeroMQ endpoint to listen on (tcp://ADDRESS:PORT or ipc://PATH).") var bind = "tcp://127.0.0.1:5555"
    @Option(help: "Logical shards per batch (must divide --batch).") var shards = 8
    @Option(help: "Wait for at least this many workers before computing a step.") var minWorkers = 1
    @Option(help: "Seconds a worker may hold shards before they are given to another.") var deadline: Double = 30
    @Option(help: "This coordinator's CURVE secret key file (from `charrnn keygen`).") var secretKey: String?
    @Option(help: "Public keys of the workers let in, one per line (with --secret-key).") var authorizedKeys: String?
    @Flag(help: "Listen on TCP without keys: anyone who can reach the port (on loopback: any local user) can join.") var insecure = false
    @Option(help: "Threads for the coordinator's own work (reduction, Adam, validation); workers do the rest.") var threads = 1
    @Option(help: ArgumentHelp("Test only: seconds between pings to each worker.", visibility: .hidden)) var pingInterval: Double = 0.25

    func run() throws {
        BLASRuntime.setThreads(try resolvedThreads(threads))
        if minWorkers <= 0 { throw CharRNNError.invalidOption("--min-workers must be positive, got \(minWorkers)") }
        if !(deadline > 0) { throw CharRNNError.invalidOption("--deadline must be positive") }
        var options = CoordinatorOptions(endpoint: bind)
        options.minWorkers = minWorkers
        options.deadline = deadline
        options.pingInterval = pingInterval
        switch (secretKey, authorizedKeys) {
        case let (secret?, authorized?):
            options.curve = (try CurveKeyPair.load(secretKeyFile: secret), try CurveKeyFile.readPublicKeys(authorized))
        case (nil, nil):
            if !Endpoint.isPrivate(bind) && !insecure {
                throw CharRNNError.invalidOption("refusing to listen on \(bind) without keys (any local user could join): give --secret-key and --authorized-keys, use an ipc:// endpoint in a directory only you can open, or --insecure")
            }
            if insecure { print("insecure: no authentication or encryption on \(bind); anyone who can reach it can join") }
        default:
            throw CharRNNError.invalidOption("--secret-key and --authorized-keys go together")
        }
        let logger = try training.output.makeLogger()
        let stop = StopRequest.installed()
        let (plan, policy, extras) = try training.prepare(shards: shards) { logger.info("\($0)") }
        let coordinator = try Coordinator(plan: plan, options: options, log: { logger.info("\($0)") }, shouldStop: { stop.isRequested })
        defer { coordinator.shutdownWorkers() }
        let report = Reporter(logger: logger, logEvery: training.logEvery, live: training.output.live)
        let loop = TrainingLoop(runner: coordinator, checkpoints: policy, extras: extras,
                                report: { report($0) }, shouldStop: { stop.isRequested })
        try loop.run()
        let s = coordinator.stats
        logger.info("workers lost \(s.lostWorkers), shards reassigned \(s.reassignedShards), stale results \(s.staleResults), duplicate results \(s.duplicateResults), bad frames \(s.badFrames), undealt results \(s.undealtResults), peers ignored \(s.bannedPeers)")
        try stop.exitIfStopped()
    }
}

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Compute shard gradients for a coordinator; reconnects and rejoins by itself.")

    @Option(help: "The coordinator's endpoint (tcp://HOST:PORT or ipc://PATH).") var connect = "tcp://127.0.0.1:5555"
    @Option(help: "OpenBLAS threads for this worker.") var threads = 1
    @Option(help: "Name shown in the coordinator's log (default: host-pid).") var name: String?
    @Option(help: "Re-introduce ourselves after this many seconds without word from the coordinator.") var rejoinAfter: Double = 3
    @Option(help: "Exit with an error after this many seconds of waiting without word from a coordinator; make it longer than the coordinator's checkpoint and validation pauses (default: wait forever).")
    var giveUpAfter: Double?
    @Option(help: "This worker's CURVE secret key file (from `charrnn keygen`).") var secretKey: String?
    @Option(help: "The coordinator's CURVE public key file; a coordinator with another key is refused.") var coordinatorKey: String?
    @Option(help: "GiB of memory this worker may use for a run; a coordinator asking for more is refused (default: 8, or the machine's memory if less).")
    var maxMemory: Double?
    @Option(help: ArgumentHelp("Test only: send NaN gradients from this step on.", visibility: .hidden)) var faultNanFromStep: Int?
    @Option(help: ArgumentHelp("Test only: messages from the coordinator queued at most.", visibility: .hidden)) var receiveQueue: Int?
    @Option(help: ArgumentHelp("Test only: seconds a connection may take to complete its CURVE handshake.", visibility: .hidden))
    var handshakeTimeout: Double = 30

    func run() throws {
        BLASRuntime.setThreads(try resolvedThreads(threads))
        if !(rejoinAfter > 0) { throw CharRNNError.invalidOption("--rejoin-after must be positive") }
        if let g = giveUpAfter, !(g > 0) || !g.isFinite { throw CharRNNError.invalidOption("--give-up-after must be a positive number of seconds") }
        let stop = StopRequest.installed()
        let workerName = name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        if let why = WorkerHello.problem(name: workerName) { throw CharRNNError.invalidOption("--name: \(why)") }
        var options = WorkerOptions(endpoint: connect, name: workerName, blasThreads: threads)
        options.rejoinAfter = rejoinAfter
        if let gib = maxMemory {
            guard gib > 0, gib < 1_048_576 else { throw CharRNNError.invalidOption("--max-memory must be a positive number of GiB") }
            options.maxMemory = Int(gib * Double(1 << 30))
        }
        options.giveUpAfter = giveUpAfter
        options.poisonFromStep = faultNanFromStep
        options.receiveQueue = receiveQueue
        options.handshakeTimeout = handshakeTimeout
        switch (secretKey, coordinatorKey) {
        case let (secret?, server?):
            guard let key = try CurveKeyFile.read(server).first else { throw CurveError.badKeyFile(server, "no key in the file") }
            options.curve = (try CurveKey(z85: key), try CurveKeyPair.load(secretKeyFile: secret))
        case (nil, nil):
            break
        default:
            throw CharRNNError.invalidOption("--secret-key and --coordinator-key go together")
        }
        try Worker(options: options, log: { print($0) }, shouldStop: { stop.isRequested }).run()
        try stop.exitIfStopped()
    }
}

struct Launch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a coordinator and N workers on this machine.",
        discussion: "Every other option is passed to `charrnn coordinator` (e.g. --data, --steps, --shards).")

    @Option(help: "Worker processes to start.") var workers = 2
    @Option(help: "OpenBLAS threads per worker.") var workerThreads = 1
    @Option(help: "Endpoint for coordinator and workers (default: an ipc socket in a temporary directory).") var endpoint: String?
    @Argument(parsing: .allUnrecognized, help: "Options for the coordinator.") var coordinatorOptions: [String] = []

    func run() throws {
        if workers <= 0 { throw CharRNNError.invalidOption("--workers must be positive, got \(workers)") }
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
        let coordinator = try start(["coordinator", "--bind", address] + coordinatorOptions)
        let children = try (0..<workers).map { i in
            try start(["worker", "--connect", address, "--threads", "\(workerThreads)", "--name", "worker-\(i)"])
        }
        coordinator.waitUntilExit()
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
