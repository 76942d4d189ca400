import CharRNN
import Foundation

/// How a coordinator listens. (How patient it is with workers is the step driver's `DealingRules`.)
public struct CoordinatorOptions: Sendable {
    /// ZeroMQ endpoint to bind, e.g. `tcp://*:5555` or `ipc:///tmp/charrnn.sock`.
    public var endpoint: String
    /// How often live workers are pinged; a ping that cannot be delivered means the worker is gone.
    public var pingInterval: Double = 0.25
    /// CURVE: the coordinator's key pair and the workers' public keys it lets in. Nil: no authentication
    /// and no encryption (the CLI allows that only on ipc, or with --insecure).
    public var curve: (keys: CurveKeyPair, authorized: Set<CurveKey>)? = nil
    /// Children per node of the relay tree the weights go down (`RelayRoute`); 0 sends every worker the
    /// weights directly. Only workers that announce a relay endpoint are in the tree (with `curve`, and their
    /// key: relay links are CURVE too).
    public var relayFanout = 2

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

/// What the coordinator's transport counted, for logs, tests and the benchmark. (What the dealing counted is
/// the step driver's `DealingStats`.)
public struct CoordinatorStats: Sendable {
    public var badFrames = 0
    /// Peers ignored for sending bad messages again and again.
    public var bannedPeers = 0
    /// Seconds spent encoding, sending, receiving and decoding (not waiting).
    public var messagingSeconds = 0.0
    /// Worker-steps whose weights the coordinator sent itself (in an order, or as a child of the tree's root),
    /// that came down the relay tree instead, and that it sent again because a worker asked (its relay stalled
    /// or died).
    public var weightsDirect = 0
    public var weightsRelayed = 0
    public var weightsResent = 0
    /// Steps whose orders put the workers in the reduction up the tree; the sums received whole and used (the root,
    /// or its two halves from `workersForRootHere` relaying workers on), and sum messages (their chunks) refused
    /// (overlapping results or chunks already in, of another step, not a node we take, or from a worker not holding
    /// its first shard).
    public var reducedSteps = 0
    public var sumsReceived = 0
    public var sumsRefused = 0
    /// Shard results received one by one (every result when the tree is off; when it is on, those of orders
    /// dealt again and of workers whose patience ran out).
    public var resultsReceived = 0
}

/// The workers behind a ZeroMQ ROUTER socket, as a shard pool for the step driver: it welcomes workers that
/// say hello, pings them, carries work orders out and results back, and reports who joined, left or failed.
/// Every rule about who computes what, and which result counts, is the driver's; this class is plumbing:
/// the socket, CURVE, pings, ignoring peers that keep sending garbage, and how weights and gradients travel
/// (the relay tree down, the reduction tree up).
///
/// The reduction up the tree: the first order of each shard in a step, one shard per order to a worker that
/// relays, says where the sum of the shard's top node goes (`SumTarget`, `ReductionShare`): to the holder of the
/// shard the node above starts at, an earlier shard, dealt before (the driver deals the lowest undealt shard
/// first), so its holder is known. The workers sum the tree among themselves and shard 0's holder sends the root,
/// one gradient instead of S, however many shards each pulled (from `workersForRootHere` relaying workers on, the
/// root's two halves come from their first shards' holders, and we sum them): a worker that has computed a shard says so
/// (`computed`) and is dealt the next. The root counts only if none of its shards came in otherwise; results of
/// orders dealt again, and of workers that gave up waiting on a peer, come one by one as before.
///
/// Single-threaded: the driver's loop calls it.
public final class Coordinator: ShardPool {
    public let runID: UInt64
    public let shape: RunShape
    public private(set) var stats = CoordinatorStats()

    private let options: CoordinatorOptions
    private let context: ZMQContext
    private let socket: ZMQSocket
    private let codec: WireCodec
    private let log: (String) -> Void
    private let authenticator: Authenticator?
    /// Workers that said hello and were not forgotten since: the ones pinged.
    private var peers: Set<WorkerID> = []
    /// Workers the driver declared lost that have not said hello since: told to exit at the end all the same
    /// (a worker lost to a deadline may well be alive). Bounded, as peers choose their ids.
    private var forgotten: Set<WorkerID> = []
    static let forgottenLimit = 4096
    private var pending: [PoolEvent] = []
    private var lastPing = -Double.infinity
    /// The weights of the step being dealt, copied once per step: work orders send them zero-copy, and the
    /// plan's own weights change (Adam) while libzmq may still hold a reference.
    private var snapshot: (step: Int, weights: FloatBuffer)?
    /// Worker → the step whose weights it was last sent: its later orders of that step go without them (a
    /// worker pulls several orders a step; the weights are most of each). Cleared when the worker is forgotten
    /// or says hello, so a worker that may have lost its state gets them again.
    private var weightsSent: [WorkerID: Int] = [:]
    /// Workers that relay: their endpoint, and when they (last) said hello, which orders the tree.
    private var relays: [WorkerID: (peer: RelayPeer, since: Int)] = [:]
    private var hellos = 0
    /// The current step's tree: each member's parent (nil: a child of the coordinator), and who asked for the
    /// weights. A worker that asked while its parent did not marks a link that failed: the parent stalled or does
    /// not pass chunks on, or the worker's endpoint cannot be reached from the parent's host. Which one is not
    /// known here, so both sit out the next `benchSteps` trees (and get the weights in their orders): a link that
    /// failed once (a restart, a pause) gets another chance, one that keeps failing costs a wait every
    /// `benchSteps` steps only.
    private var parents: [WorkerID: WorkerID?] = [:]
    private var askers: Set<WorkerID> = []
    /// Worker → the first step it is in the tree again.
    private var benched: [WorkerID: Int] = [:]
    static let benchSteps = 20
    /// Worker → the step it last asked the weights of: a second request for a step is a protocol violation
    /// (each costs a full copy of the weights).
    private var resentTo: [WorkerID: Int] = [:]
    /// Orders the driver handed over since it last polled: sent at the poll, when the dealing is whole.
    private var outbox: [(order: WorkOrder, step: Int, worker: WorkerID)] = []
    /// The step being dealt and, with the tree on, the worker each shard's first order went to with a sum target
    /// (nil: not dealt yet, or answered directly).
    private var reduction: (step: Int, holders: [WorkerID?]?, sumsRoot: Bool)?
    /// Shards of the current step whose results (alone or in a sum) went to the driver.
    private var delivered: Set<Int> = []
    /// Shards of the step being reduced whose holder's own answer (the root, or its result) went to the driver.
    private var answered: Set<Int> = []
    /// Shard → the workers sent an order for it in the current step: only their results count as delivered.
    private var dealt: [Int: Set<WorkerID>] = [:]
    /// The last step whose root sum (or both its halves) was used.
    private var rootStep: Int?
    /// The nodes we take from the workers in the step being reduced (`sumInputs`) as their chunks come in (each
    /// holder sends a chunk as soon as it is summed, so the sum crosses our link while the workers still compute
    /// the last chunks): per node the chunks in, and the losses and states, which come with chunk 0; and the nodes
    /// used.
    private var sums: (step: Int, parts: [ReductionNode: (floats: FloatBuffer, chunks: Set<Int>, shards: (losses: [Double], states: [FloatBuffer])?)],
                       used: Set<ReductionNode>)?
    /// From this many relaying workers on, we sum the root of the reduction tree ourselves, from its two halves
    /// (`SumTarget.coordinatorSumsRoot`). Shard 0's holder otherwise takes a whole gradient from each level of the
    /// tree below it, ⌈log₂ N⌉ with one shard per worker (81 MB per step at 16 workers at the tutorial's size, with
    /// the weights), and at 1 Gbit/s its link sets the step's pace; this way it takes one sum fewer and our link
    /// one more: two in all, at any N. Measured at 1 Gbit/s (BENCHMARKS.md): steps 13 % shorter at 8 workers and
    /// 8 % at 16; at 3 and 4 the same within 2 %. With 2 workers it would put both gradients on our link instead
    /// of one on each, a step about 0.13 s longer at 1 Gbit/s.
    static let workersForRootHere = 4
    /// Bad messages per peer; at `strikeLimit` the peer is ignored (a restarted worker has a new identity,
    /// so this never locks out an honest worker for good).
    private var strikes = Strikes(limit: Coordinator.strikeLimit, capacity: 4096)
    static let strikeLimit = 10

    /// Listens for the workers of `plan`'s run.
    public convenience init(plan: StepPlan, options: CoordinatorOptions, log: @escaping @Sendable (String) -> Void) throws {
        let shape: RunShape
        do {
            shape = try RunShape(
                config: plan.state.config, seq: plan.options.seq, rowsPerShard: plan.rowsPerShard, shardCount: plan.shardCount,
                dropout: plan.options.dropoutMasks)
        } catch {
            throw CoordinatorError.setup("this model cannot be distributed: \(error)")
        }
        try self.init(shape: shape, options: options, log: log)
    }

    public init(shape: RunShape, options: CoordinatorOptions, log: @escaping @Sendable (String) -> Void) throws {
        self.shape = shape
        self.options = options
        self.log = log
        var generator = SystemRandomNumberGenerator()
        runID = generator.next()
        codec = WireCodec(runID: runID, shape: shape)
        context = try ZMQContext()
        socket = try ZMQSocket(context, .router)
        if let curve = options.curve {
            guard CurveKey.isAvailable else { throw CoordinatorError.setup(CurveError.unavailable.description) }
            if options.relayFanout > 0 && curve.authorized.count > RelayRoute.maxEndpoints {
                throw CoordinatorError.setup("relays admit at most \(RelayRoute.maxEndpoints) worker keys, and --authorized-keys has \(curve.authorized.count): use --relay-fanout 0")
            }
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
        // Refuse any frame larger than a result's first frame or a chunk before libzmq allocates it.
        try socket.setOption(.maxMessageSize, WireCodec.largestFrame(shape))
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

    // MARK: ShardPool

    /// Queued until the next poll (a failed send is then reported as the worker leaving).
    public func send(_ order: WorkOrder, step: Int, to worker: WorkerID) -> Bool {
        if snapshot?.step != step {
            snapshot = (step, order.weights.copy())
            (delivered, answered, dealt) = ([], [], [:])
            broadcast(step: step)
        }
        outbox.append((order, step, worker))
        return true
    }

    /// Sends the orders queued since the last poll, each shard's first of the step with a sum target when it can
    /// be reduced up the tree.
    private func sendOrders() {
        let orders = outbox
        outbox = []
        guard let step = orders.last?.step else { return }
        if reduction?.step != step {
            let relaying = relays.keys.filter(peers.contains).count
            reduction = (step, options.relayFanout > 0 && shape.shardCount > 1 ? Array(repeating: nil, count: shape.shardCount) : nil,
                         relaying >= Self.workersForRootHere)
        }
        // All targets before any send: a failed send drops its worker, whose relay a later target may name.
        let targets = orders.map { sumTarget($0.order, step: $0.step, to: $0.worker) }
        for ((order, step, worker), target) in zip(orders, targets) {
            for shard in order.shards { dealt[shard.index, default: []].insert(worker) }
            let direct = weightsSent[worker] != step
            let message: WireMessage = direct
                ? .work(WorkOrder(epoch: order.epoch, shards: order.shards, weights: snapshot!.weights), sum: target)
                : .workSameWeights(epoch: order.epoch, shards: order.shards, sum: target)
            if let reason = transmit(message, step: step, to: worker) {
                pending.append(.left(worker, reason: reason))
                continue
            }
            if direct { stats.weightsDirect += 1 }
            weightsSent[worker] = step
        }
    }

    /// Every shard of the step being reduced is in: the holders whose results went into a sum that did not count
    /// (the step was completed with results one by one, and copies) will not answer their orders, and need not.
    private func releaseHolders() {
        guard let step = reduction?.step, let holders = reduction?.holders, step == snapshot?.step, delivered.count == shape.shardCount else { return }
        for s in 0..<shape.shardCount where !answered.contains(s) {
            if let holder = holders[s] { pending.append(.released(holder, step: step, shard: s)) }
        }
        answered = Set(0..<shape.shardCount)
    }

    /// The nodes we take from the workers: the root, or its two halves when we sum it ourselves.
    private func sumInputs(sumsRoot: Bool) -> [ReductionNode] {
        let tree = ReductionTree(shards: shape.shardCount)
        guard sumsRoot, let (left, right) = tree.children(of: tree.root) else { return [tree.root] }
        return [left, right]
    }

    /// Where `worker` sends the sum of the top node (`ReductionTree.top(of:)`) of `order`'s shard, which it then
    /// holds in the tree; nil (answer directly) unless the tree is on, the order is of one shard, the shard's first
    /// of the step, and the worker relays (its relay socket takes peers' sums). The node above starts at an earlier
    /// shard, dealt before; if its first order was answered directly (or its holder is gone), so is this one: the
    /// node above could never be whole.
    private func sumTarget(_ order: WorkOrder, step: Int, to worker: WorkerID) -> SumTarget? {
        guard reduction?.step == step, var holders = reduction?.holders, order.shards.count == 1, relays[worker] != nil else { return nil }
        let shard = order.shards[0].index
        guard holders[shard] == nil, dealt[shard] == nil else { return nil }
        let tree = ReductionTree(shards: shape.shardCount)
        let sumsRoot = reduction!.sumsRoot
        let top = sumsRoot ? tree.topBelowRoot(of: shard) : tree.top(of: shard)
        let target: SumTarget
        if let parent = tree.parentAndSibling(of: top)?.parent, !(sumsRoot && parent == tree.root) {
            guard let holder = holders[parent.lo], let peer = relays[holder]?.peer else { return nil }
            target = holder == worker ? .kept : .peer(peer)
        } else {
            target = sumsRoot ? .coordinatorSumsRoot : .coordinator
        }
        // Every chain of receivers ends at shard 0, where the root (or its left half) starts: a step is counted as
        // reduced by the tree when shard 0 has a target. (With the root here, the right half's chain ends at its own
        // first shard, and may have targets when shard 0 has none.)
        if shard == 0 { stats.reducedSteps += 1 }
        holders[shard] = worker
        reduction!.holders = holders
        return target
    }

    /// Sends the step's weights down the relay tree: chunk by chunk to the root's children, each with the route
    /// below it. Every worker in the tree is then counted as sent the weights (its orders go without them); one
    /// that does not get them asks (need-weights).
    private func broadcast(step: Int) {
        benchFailedLinks(step: step)
        guard options.relayFanout > 0, let snapshot else { return }
        // In hello order; of two live peers at one endpoint (a restarted worker whose old self is not yet
        // forgotten) the newer. Beyond the most a route can name, workers get the weights in their orders.
        var byEndpoint: [String: WorkerID] = [:]
        for (peer, relay) in relays.filter({ peers.contains($0.key) && benched[$0.key] == nil }).sorted(by: { $0.value.since < $1.value.since }) {
            byEndpoint[relay.peer.endpoint] = peer
        }
        let members = Array(byEndpoint.values.sorted { relays[$0]!.since < relays[$1]!.since }.prefix(RelayRoute.maxEndpoints + 1))
        guard !members.isEmpty else { return }
        let route = RelayRoute(fanout: min(options.relayFanout, RelayRoute.maxFanout), peers: members.map { relays[$0]!.peer })
        func record(_ route: RelayRoute, under parent: WorkerID?) {
            for (child, below) in route.children() {
                parents[byEndpoint[child.endpoint]!] = .some(parent)
                record(below, under: byEndpoint[child.endpoint]!)
            }
        }
        record(route, under: nil)
        let top = route.children()
        for (child, below) in top {
            if sendWeights(snapshot.weights, step: step, route: below, to: byEndpoint[child.endpoint]!) { stats.weightsDirect += 1 }
        }
        for member in members { weightsSent[member] = step }
        stats.weightsRelayed += members.count - top.count
    }

    /// Benches both ends of every link of the last tree that failed (see `parents`), from `step` on.
    private func benchFailedLinks(step: Int) {
        for asker in askers {
            // A parent that is gone (lost, or its chunks could not be sent) is out of the tree already: its children
            // asked through no fault of a link.
            guard let parent = parents[asker] ?? nil, peers.contains(parent), !askers.contains(parent) else { continue }
            for end in [parent, asker] { benched[end] = step + Coordinator.benchSteps }
            log("a relay did not pass the weights on to the worker below it: both sit out the tree for \(Coordinator.benchSteps) steps")
        }
        // Left: only workers still benched at `step`.
        benched = benched.filter { $0.value > step }
        (parents, askers) = ([:], [])
    }

    /// Every chunk of `weights` to `peer`, with `route` below it; stops at the first that cannot be delivered.
    /// Whether all went.
    @discardableResult
    private func sendWeights(_ weights: FloatBuffer, step: Int, route: RelayRoute, to peer: WorkerID) -> Bool {
        for index in 0..<WireCodec.chunkCount(floats: weights.count) {
            if let reason = transmit(.weights(WeightsChunk(index: index, floats: weights, route: route)), step: step, to: peer) {
                pending.append(.left(peer, reason: reason))
                return false
            }
        }
        return true
    }

    public func poll(until deadline: Double) throws -> [PoolEvent] {
        sendOrders()
        while true {
            let now = PhaseClock.now()
            if now - lastPing >= options.pingInterval { pingAll(now: now) }
            if !pending.isEmpty || now >= deadline { break }
            let wait = min(deadline - now, options.pingInterval)
            try receive(timeoutMs: max(0, Int((wait * 1000).rounded(.up))))
        }
        defer { pending = [] }
        return pending
    }

    public func forget(_ worker: WorkerID) {
        drop(worker)
        weightsSent[worker] = nil
        resentTo[worker] = nil
        strikes.forget(worker.bytes)
        if forgotten.count < Self.forgottenLimit { forgotten.insert(worker) }
    }

    public func penalize(_ worker: WorkerID) { strike(worker) }

    /// Until a result of the step came on its own: the root cannot count after that, and every holder sends its own
    /// results once its patience runs out, so a copy costs the tree nothing more.
    public func isSummedByWorkers(_ shard: Int, step: Int) -> Bool {
        guard let reduction, reduction.step == step, shard < shape.shardCount, reduction.holders?[shard] != nil else { return false }
        let input = sumInputs(sumsRoot: reduction.sumsRoot).first { $0.shards.contains(shard) }!
        return delivered.isDisjoint(with: input.shards)
    }

    /// With the tree on and a worker that relays (and so takes its peers' sums): the driver then deals runs.
    public var workersSumTheirShards: Bool { options.relayFanout > 0 && shape.shardCount > 1 && !relays.isEmpty }

    /// Tells every worker to exit, giving libzmq a moment to deliver it (as the socket closes).
    public func shutdownWorkers() {
        let live = peers.count
        for peer in peers.union(forgotten) { _ = transmit(.shutdown, step: 0, to: peer) }
        log("told \(live) worker(s) to exit")
    }

    /// No longer pinged, and out of the relay tree.
    private func drop(_ peer: WorkerID) {
        peers.remove(peer)
        relays[peer] = nil
    }

    // MARK: Sending

    private func pingAll(now: Double) {
        lastPing = now
        // The step being dealt: a relaying worker with no order of it yet still knows which chunks are current. Once
        // its root is in, the next: the workers drop what they kept for the step, rather than take the pause before
        // the next one (a checkpoint, validation) for a stalled peer and send their results again.
        let step = snapshot.map { $0.step + (rootStep == $0.step ? 1 : 0) } ?? 0
        for peer in peers {
            if let reason = transmit(.ping, step: step, to: peer) { pending.append(.left(peer, reason: reason)) }
        }
    }

    /// Sends without blocking. Returns why the message could not be delivered (the peer is then forgotten:
    /// gone, or its queue full), or nil.
    private func transmit(_ message: WireMessage, step: Int, to peer: WorkerID) -> String? {
        var clock = PhaseClock()
        defer { stats.messagingSeconds += clock.lap() }
        do {
            try socket.send([.bytes(peer.bytes)] + codec.encode(message, step: step), dontWait: true)
            return nil
        } catch let error as ZMQError {
            drop(peer)
            return error.code == EHOSTUNREACH ? "disconnected" : "cannot send: \(error)"
        } catch {
            log("cannot encode a message: \(error)")
            return "cannot encode a message for it: \(error)"
        }
    }

    private func strike(_ peer: WorkerID) {
        guard strikes.strike(peer.bytes) else { return }
        drop(peer)
        stats.bannedPeers += 1
        log("ignoring a peer from now on: \(Coordinator.strikeLimit) bad messages")
        pending.append(.left(peer, reason: "it sent bad messages"))
    }

    // MARK: Receiving

    private func receive(timeoutMs: Int) throws {
        guard let frames = try socket.receiveMultipart(timeoutMs: timeoutMs), frames.count >= 2 else { return }
        var clock = PhaseClock()
        defer { stats.messagingSeconds += clock.lap() }
        let peer = WorkerID(frames[0].array)
        if strikes.isBanned(peer.bytes) { return }
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
                _ = transmit(.error(refusal), step: 0, to: peer)
                log("refused worker \(hello.name): \(refusal)")
                return
            }
            // Every hello is answered: a worker the driver declared lost comes back this way.
            weightsSent[peer] = nil
            // With keys, a relay needs its own key (its parent connects as a CURVE client of it) and the run's
            // worker keys, which its socket admits: sent before the welcome, so that they are in place before any
            // parent can connect to it as a member of the run.
            var relay = hello.relay
            if let announced = relay,
               !(announced.endpoint.hasPrefix("tcp://") || announced.endpoint.hasPrefix("ipc://")) || (announced.key != nil) != (options.curve != nil)
            {
                log("worker \(hello.name) announced a relay this run cannot use (\(announced.endpoint), \(announced.key == nil ? "no key" : "a key")): it gets the weights directly")
                relay = nil
            }
            var refusal: String?
            if relay != nil, let curve = options.curve { refusal = transmit(.relayKeys(Array(curve.authorized)), step: 0, to: peer) }
            if let reason = refusal ?? transmit(.welcome(shape), step: 0, to: peer) {
                pending.append(.left(peer, reason: reason))
            } else {
                peers.insert(peer)
                hellos += 1
                if let relay { relays[peer] = (relay, hellos) }
                forgotten.remove(peer)
                pending.append(.joined(peer, name: hello.name))
            }
        case .result(let results):
            stats.resultsReceived += results.count
            if envelope.step == snapshot?.step { delivered.formUnion(results.map(\.index).filter { dealt[$0]?.contains(peer) == true }) }
            if let holders = reduction?.holders, reduction?.step == envelope.step {
                answered.formUnion(results.map(\.index).filter { $0 < holders.count && holders[$0] == peer })
            }
            pending.append(.results(peer, step: envelope.step, results))
            // After the results: the driver must have the shard in before it releases the order.
            releaseHolders()
        case .sum(let part):
            // Only a node we take comes here (the root, or its halves when we sum it), chunk by chunk, from the holder of
            // its first shard, of the step being reduced; it counts once whole, and only if none of its shards came
            // otherwise (a sum cannot be taken apart).
            guard let reduction, let all = reduction.holders, reduction.step == envelope.step, reduction.step == snapshot?.step,
                  sumInputs(sumsRoot: reduction.sumsRoot).contains(part.node) else {
                stats.sumsRefused += 1
                return
            }
            let step = reduction.step
            let holders = all[part.node.shards].compactMap { $0 }
            guard holders.count == part.node.count else {
                stats.sumsRefused += 1
                return
            }
            guard peer == holders[0] else {
                stats.sumsRefused += 1
                return strike(peer)
            }
            if sums?.step != step { sums = (step, [:], []) }
            var assembly = sums!.parts[part.node] ?? (FloatBuffer(uninitializedCount: shape.parameterCount), [], nil)
            let range = WireCodec.floatRange(part.chunks, parameters: shape.parameterCount)
            guard delivered.isDisjoint(with: part.node.shards), assembly.chunks.isDisjoint(with: part.chunks) else {
                stats.sumsRefused += 1
                return
            }
            (assembly.floats.base + range.lowerBound).update(from: part.floats.base, count: range.count)
            assembly.chunks.formUnion(part.chunks)
            if let shards = part.shards { assembly.shards = shards }
            guard assembly.chunks.count == WireCodec.chunkCount(floats: shape.parameterCount), let shards = assembly.shards else {
                sums!.parts[part.node] = assembly
                return
            }
            sums!.parts[part.node] = nil
            sums!.used.insert(part.node)
            stats.sumsReceived += 1
            if sums!.used.count == sumInputs(sumsRoot: reduction.sumsRoot).count { rootStep = step }
            delivered.formUnion(part.node.shards)
            answered.formUnion(part.node.shards)
            pending.append(.sum(step: step, SubtreeSum(node: part.node, gradient: assembly.floats, losses: shards.losses, states: shards.states), holders: holders))
        case .error(let message):
            weightsSent[peer] = nil
            pending.append(.failed(peer, message: message))
        case .needWeights:
            guard peers.contains(peer), let snapshot, snapshot.step == envelope.step else { return }
            guard resentTo[peer] != envelope.step else { return strike(peer) }
            resentTo[peer] = envelope.step
            askers.insert(peer)
            stats.weightsResent += 1
            sendWeights(snapshot.weights, step: envelope.step, route: .leaf, to: peer)
        case .computed(let shard):
            // Only from the worker whose order put the shard in the tree: its load is the driver's business.
            guard envelope.step == snapshot?.step, reduction?.step == envelope.step, reduction?.holders?[shard] == peer else { return }
            pending.append(.computed(peer, step: envelope.step, shard: shard))
        case .ping:
            break
        case .welcome, .work, .workSameWeights, .shutdown, .weights, .relayKeys, .treeAlive:
            stats.badFrames += 1
            strike(peer)
        }
    }
}
