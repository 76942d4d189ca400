import CharRNN
import Foundation

/// How a coordinator listens and how patient it is with workers.
public struct CoordinatorOptions: Sendable {
    /// ZeroMQ endpoint to bind, e.g. `tcp://*:5555` or `ipc:///tmp/charrnn.sock`.
    public var endpoint: String
    /// Do not compute a step with fewer live workers than this; wait for them instead.
    public var minWorkers = 1
    /// A worker holding shards longer than this (seconds) is declared lost and its shards go elsewhere.
    public var deadline: Double = 30
    /// How often live workers are pinged; a ping that cannot be delivered means the worker is gone.
    public var pingInterval: Double = 0.25
    /// CURVE: the coordinator's key pair and the workers' public keys it lets in. Nil: no authentication
    /// and no encryption (the CLI allows that only on ipc, or with --insecure).
    public var curve: (keys: CurveKeyPair, authorized: Set<CurveKey>)? = nil

    public init(endpoint: String) { self.endpoint = endpoint }
}

public enum CoordinatorError: Error, CustomStringConvertible {
    case cannotBind(String, ZMQError)
    case setup(String)

    public var description: String {
        switch self {
        case .cannotBind(let endpoint, let e):
            return e.code == EADDRINUSE
                ? "cannot bind \(endpoint): the address is in use (is another coordinator running?)"
                : "cannot bind \(endpoint): \(e)"
        case .setup(let m): return m
        }
    }
}

/// What the coordinator counted, for logs, tests and the benchmark.
public struct CoordinatorStats: Sendable {
    public var badFrames = 0
    public var staleResults = 0
    public var duplicateResults = 0
    public var lostWorkers = 0
    public var reassignedShards = 0
    /// Results for shards the sender was not given this step (refused).
    public var undealtResults = 0
    /// Peers dropped for sending bad messages again and again.
    public var bannedPeers = 0
    /// Seconds spent encoding, sending, receiving and decoding (not waiting).
    public var messagingSeconds = 0.0
}

/// The step plan with ZeroMQ between it and the shard steps: each step it deals the shards out to the live
/// workers, collects one result per shard (from whoever delivers it first; results are bitwise the same
/// wherever a shard runs), reassigns the shards of workers that die or stall, then reduces in shard order.
///
/// Single-threaded: one loop owns the socket, the plan and the membership.
public final class Coordinator: StepRunner {
    public let plan: StepPlan
    public let runID: UInt64
    public private(set) var stats = CoordinatorStats()

    private let options: CoordinatorOptions
    private let context: ZMQContext
    private let socket: ZMQSocket
    private let codec: WireCodec
    private var members = Membership()
    private let log: (String) -> Void
    private let shouldStop: () -> Bool
    private let authenticator: Authenticator?
    private var lastPing = 0.0
    private var waitingLogged = false
    /// Bad messages per peer; at `strikeLimit` the peer is ignored (a restarted worker has a new identity,
    /// so this never locks out an honest worker for good).
    private var strikes = Strikes(limit: Coordinator.strikeLimit, capacity: 4096)
    static let strikeLimit = 10

    public init(
        plan: StepPlan, options: CoordinatorOptions,
        log: @escaping @Sendable (String) -> Void, shouldStop: @escaping () -> Bool = { false }
    ) throws {
        self.plan = plan
        self.options = options
        self.log = log
        self.shouldStop = shouldStop
        var generator = SystemRandomNumberGenerator()
        runID = generator.next()
        let shape: RunShape
        do {
            shape = try RunShape(
                config: plan.state.config, seq: plan.options.seq, rowsPerShard: plan.rowsPerShard, shardCount: plan.shardCount,
                dropout: plan.options.dropoutMasks)
        } catch {
            throw CoordinatorError.setup("this model cannot be distributed: \(error)")
        }
        codec = WireCodec(runID: runID, shape: shape)
        context = try ZMQContext()
        socket = try ZMQSocket(context, .router)
        if let curve = options.curve {
            guard CurveKey.isAvailable else { throw CoordinatorError.setup(CurveError.unavailable.description) }
            authenticator = try Authenticator(context: context, allowed: curve.authorized, log: log)
            try socket.setOption(.curveServer, 1)
            try socket.setOption(.curveSecretKey, Array(curve.keys.secretKey.z85.utf8))
            try socket.setOption(.zapDomain, Array("charrnn".utf8))
        } else {
            authenticator = nil
        }
        try socket.setOption(.linger, 500)
        try socket.setOption(.routerMandatory, 1)
        try socket.setOption(.heartbeatInterval, 250)
        try socket.setOption(.heartbeatTimeout, 1500)
        // A single frame is at most one shard's gradient (4·P bytes) plus a little; refuse anything larger
        // before libzmq allocates it.
        try socket.setOption(.maxMessageSize, 4 * shape.parameterCount + (1 << 20) + 64 * shape.shardCount * (shape.stateCount + 2 * shape.tokenCount))
        do {
            try IPCEndpoint.requireFree(options.endpoint)
            try socket.bind(options.endpoint)
        } catch {
            throw CoordinatorError.cannotBind(options.endpoint, error)
        }
        log("coordinator listening on \(options.endpoint), run \(String(runID, radix: 16)), \(shape)")
        if let curve = options.curve {
            log("CURVE on: public key \(curve.keys.publicKey.z85), \(curve.authorized.count) authorized worker key(s)")
        }
    }

    deinit {
        socket.close()
        authenticator?.stop()
    }

    /// Runs one step across the workers. Nil when a stop was requested before the step completed (the plan's
    /// position is then unchanged, so a checkpoint written now resumes at this step).
    public func advance() throws -> StepSummary? {
        let planned = plan.next()
        let weights = plan.state.weights.storage.copy()  // sent zero-copy; must outlive every send of this step
        var results = [ShardResult?](repeating: nil, count: plan.shardCount)
        var pending = Set(0..<plan.shardCount)
        members.clearAssignments()

        while !pending.isEmpty {
            if shouldStop() { return nil }
            let now = PhaseClock.now()
            for worker in members.overdue(now: now, deadline: options.deadline) {
                lose(worker, because: "no result within \(options.deadline) s")
            }
            let unassigned = pending.filter { members.inFlight[$0] == nil }.sorted()
            if !unassigned.isEmpty { dispatch(unassigned, of: planned, weights: weights, now: now) }
            if now - lastPing >= options.pingInterval { pingAll(now: now) }
            try receive(timeoutMs: 20, step: planned.globalStep, into: &results, pending: &pending)
        }

        let layout = ParameterLayout(plan.state.config)
        for (s, result) in results.enumerated() {
            let r = result!
            plan.hidden(shard: s).update(from: r.state.base, count: r.state.count)
            plan.accumulate(shard: s, gradient: Parameters(layout: layout, storage: r.gradient), loss: r.loss)
        }
        return plan.finish()
    }

    /// Tells every member to exit, giving libzmq a moment to deliver it.
    public func shutdownWorkers() {
        for member in members.live { send(.shutdown, step: 0, to: member.id) }
        log("told \(members.live.count) worker(s) to exit")
    }

    public var liveWorkers: Int { members.live.filter(\.welcomed).count }
    public var workerCount: Int { liveWorkers }

    // MARK: Dealing out shards

    private func dispatch(_ shards: [Int], of planned: PlannedStep, weights: FloatBuffer, now: Double) {
        guard liveWorkers >= options.minWorkers else {
            if !waitingLogged {
                log("waiting for workers: \(liveWorkers) live, at least \(options.minWorkers) needed")
                waitingLogged = true
            }
            return
        }
        waitingLogged = false
        let reset = planned.stepInEpoch == 0
        for (worker, block) in members.assign(shards, now: now) {
            let work = block.map { s -> WorkShard in
                let state: FloatBuffer? = reset ? nil : FloatBuffer(count: plan.state.config.stateCount(rows: plan.rowsPerShard))
                state?.base.update(from: plan.hidden(shard: s), count: state!.count)
                return WorkShard(index: s, state: state, rows: planned.shards[s])
            }
            send(.work(WorkOrder(epoch: planned.epoch, shards: work, weights: weights)), step: planned.globalStep, to: worker)
        }
    }

    private func pingAll(now: Double) {
        lastPing = now
        for member in members.live { send(.ping, step: 0, to: member.id) }
    }

    /// Sends without blocking; a peer that cannot take the message (gone, or its queue full) is lost.
    private func send(_ message: WireMessage, step: Int, to worker: [UInt8]) {
        var clock = PhaseClock()
        defer { stats.messagingSeconds += clock.lap() }
        do {
            try socket.send([.bytes(worker)] + codec.encode(message, step: step), dontWait: true)
        } catch let error as ZMQError {
            lose(worker, because: error.code == EHOSTUNREACH ? "disconnected" : "cannot send: \(error)")
        } catch {
            log("cannot encode a message: \(error)")
        }
    }

    private func lose(_ worker: [UInt8], because reason: String) {
        guard let member = members.members[worker] else { return }
        let orphans = members.remove(worker)
        strikes.forget(worker)
        stats.lostWorkers += 1
        stats.reassignedShards += orphans.count
        let shards = orphans.isEmpty ? "" : "; its shards \(orphans) go to the others"
        log("worker \(member.name) lost (\(reason))\(shards); \(liveWorkers) live")
    }

    private func strike(_ peer: [UInt8]) {
        guard strikes.strike(peer) else { return }
        stats.bannedPeers += 1
        log("ignoring a peer from now on: \(Coordinator.strikeLimit) bad messages")
        lose(peer, because: "it sent bad messages")
    }

    // MARK: Receiving

    private func receive(timeoutMs: Int, step: Int, into results: inout [ShardResult?], pending: inout Set<Int>) throws {
        guard let frames = try socket.receiveMultipart(timeoutMs: timeoutMs), frames.count >= 2 else { return }
        var clock = PhaseClock()
        defer { stats.messagingSeconds += clock.lap() }
        let peer = frames[0].array
        if strikes.isBanned(peer) { return }
        let envelope: WireEnvelope
        do {
            envelope = try codec.decode(frames.dropFirst())
        } catch {
            stats.badFrames += 1
            if stats.badFrames <= 10 || stats.badFrames % 1000 == 0 {
                log("dropped a bad frame (\(stats.badFrames) so far): \(error)")
            }
            // A frame of an earlier run is a worker that has not yet heard of this one, not an attack.
            if case .wrongRun = error {} else { strike(peer) }
            return
        }
        switch envelope.message {
        case .hello(let hello):
            if let refusal = NumericsIdentity.current.refusal(of: hello.identity) {
                send(.error(refusal), step: 0, to: peer)
                log("refused worker \(hello.name): \(refusal)")
                return
            }
            let isNew = members.admit(peer, name: hello.name)
            send(.welcome(codec.shape!), step: 0, to: peer)
            members.markWelcomed(peer)
            if isNew { log("worker \(hello.name) joined (\(hello.blasThreads) BLAS threads); \(liveWorkers) live") }
        case .result(let shardResults):
            // Only a hello makes a member: a worker declared lost hears no more pings, says hello again
            // after its --rejoin-after, and is dealt shards from then on.
            guard envelope.step == step else {
                stats.staleResults += 1
                return
            }
            for r in shardResults {
                guard members.wasDealt(r.index, to: peer) else {
                    stats.undealtResults += 1
                    strike(peer)
                    continue
                }
                if pending.remove(r.index) != nil {
                    results[r.index] = r
                    members.completed(r.index)
                } else {
                    stats.duplicateResults += 1
                }
            }
        case .error(let message):
            let name = members.members[peer]?.name ?? "unknown"
            log("worker \(name) reports: \(message)")
            lose(peer, because: "it reported an error")
        case .ping:
            break
        case .welcome, .work, .shutdown:
            stats.badFrames += 1
            strike(peer)
        }
    }
}
