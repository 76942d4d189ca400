@preconcurrency import CZeroMQ
import CharRNN
import Foundation

public struct WorkerOptions: Sendable {
    /// The coordinator's endpoint, e.g. `tcp://10.0.0.1:5555`.
    public var endpoint: String
    public var name: String
    public var blasThreads: Int
    /// With no message from the coordinator for this long (seconds), introduce ourselves again: the
    /// coordinator may have restarted (with a new run id) and not know us.
    public var rejoinAfter: Double = 3
    /// With no message from the coordinator for this long (seconds), stop with an error: it is gone for good.
    /// Counted while waiting, not while computing; it must exceed the coordinator's longest pause between
    /// steps (checkpoints, validation, samples). nil waits forever, which suits supervisors that restart the
    /// coordinator (systemd, Slurm requeue).
    public var giveUpAfter: Double? = nil
    /// Bytes this worker may commit to a run; a welcome asking for more is refused (`RunShape.workerBytes`).
    public var maxMemory = WorkerOptions.defaultMaxMemory
    /// Seconds a connection may take to complete its handshake; a coordinator that does not answer within it
    /// is busy or stopped, not refusing us, and is tried again. A test knob.
    public var handshakeTimeout: Double = 30
    /// Messages from the coordinator queued at most (libzmq's default 1,000 when nil); a test knob.
    public var receiveQueue: Int? = nil
    /// Test-only fault injection: from this global step on, report NaN gradients.
    public var poisonFromStep: Int? = nil
    /// Test-only fault injection: from this global step on, report finite but wrong gradients (a forger).
    public var forgeFromStep: Int? = nil
    /// Test-only: take this many times as long per work order as the computing takes (a slower machine).
    public var slowdown = 1.0
    /// Test-only: and this many seconds more per work order.
    public var delay = 0.0
    /// CURVE: the coordinator's public key (a server with another key is never talked to) and our key pair.
    public var curve: (coordinator: CurveKey, keys: CurveKeyPair)? = nil
    /// Where to take weights from other workers and so relay them (`tcp://THIS_HOST_ADDRESS:PORT`, port `*`
    /// for any, or `ipc://PATH`); nil: from the coordinator only. With `curve`, relay links use CURVE too.
    public var relay: String? = nil
    /// Seconds an order may wait for its step's weights to arrive by relay before we ask the coordinator for them.
    public var relayPatience: Double = 2
    /// Test-only fault injection: at this global step, stop this process (SIGSTOP) after passing on half the
    /// weights' chunks, so a test can kill -9 or continue a relay caught mid-broadcast.
    public var stopMidRelayAtStep: Int? = nil
    /// Test-only fault injection: at this global step, stop this process (SIGSTOP) when about to send a peer a sum
    /// of more than one shard (one we summed from a peer's), so a test can kill -9 or continue it mid-reduction.
    public var stopMidReductionAtStep: Int? = nil

    public init(endpoint: String, name: String, blasThreads: Int) {
        self.endpoint = endpoint
        self.name = name
        self.blasThreads = blasThreads
    }
}

/// A worker: connects (and reconnects, with back-off, for as long as it runs), says hello, then computes
/// the shards it is sent with the same `ShardStep` the in-process trainer uses, and returns each shard's
/// loss, final hidden state and gradient. It keeps nothing between steps that the coordinator does not also
/// have: every work order carries its shards' starting states, so any worker can take over any shard. Orders
/// are computed one at a time, in arrival order; a step's weights come with its first order to this worker and
/// serve its later orders of the step, or, for a relaying worker, chunk by chunk down the relay tree
/// (`RelayRoute`), each chunk passed on to our children as soon as it is in. An order whose weights do not come
/// is not lost: after `relayPatience` we ask the coordinator for them (need-weights), which is how a stopped or
/// dead relay is routed around. An order with a sum target puts its result into the step's reduction up the
/// tree (`ReductionShare`) instead of answering it: summed with peers' sums, sent on as one.
public final class Worker {
    /// Others' progress in the reduction tree keeps us waiting at most this many `relayPatience` after our own
    /// last progress: 16 s by default, below the coordinator's default `--deadline` (30 s) while `--relay-patience`
    /// is below 3.75 s; past the deadline the coordinator would count every worker waiting on a very slow one as
    /// lost, not only the slow one.
    static let maxWaitPatiences = 8.0

    private let options: WorkerOptions
    private let log: (String) -> Void
    private let shouldStop: () -> Bool
    private let context: ZMQContext
    private let socket: ZMQSocket
    private var codec = WireCodec()
    private var shardStep: ShardStep?
    private var computing: (computation: ShardComputation, runID: UInt64?, target: SumTarget?)?
    /// A computation that finishes sends an empty message here, waking the loop's poll at once.
    private let finishedSignal: ZMQSocket
    private let finishedEvents: ZMQSocket
    /// Orders waiting their turn, in arrival order, all of one step (an order of a newer step drops the others:
    /// the coordinator has moved on).
    private var queue: [(order: WorkOrder, step: Int, target: SumTarget?)] = []
    /// The weights of the newest step this worker was sent, for its orders that come without them.
    private var stepWeights: (step: Int, weights: FloatBuffer)?
    /// The weights `shardStep` last computed with (received buffers are never written): the step's later
    /// orders skip regrouping them.
    private var loadedWeights: FloatBuffer?
    private let handshakes: HandshakeWatch?
    /// Our part in the relay tree, with `--relay`.
    private let relay: Relay?
    /// The chunks of the step being put together (relayed, or the coordinator's).
    private var assembly: WeightsAssembly?
    /// Orders of one step that came before their weights, in arrival order, and since when they wait.
    private var waiting: [(epoch: Int, shards: [WorkShard], step: Int, target: SumTarget?)] = []
    /// Our part in the reduction of the newest step whose orders came with sum targets (or whose peers' sums
    /// came first); dropped once the coordinator deals a later step.
    private var share: ReductionShare?
    /// When we last sent our neighbours in the reduction tree a token of our own (`ReductionShare.ownWords`).
    private var lastAlive = 0.0
    private var stoppedMidReduction = false
    private var waitingSince = 0.0
    /// The step we last asked the coordinator for weights: once per step.
    private var askedForStep: Int?
    /// The newest step the coordinator itself sent us anything of (an order, a chunk). It has finished the steps
    /// before it, so their chunks (late ones, from a slow relay) are neither put together nor passed on. Relayed
    /// chunks never advance it (a relayed chunk of a far-future step cannot make us drop the real ones).
    private var newestStep = 0
    public private(set) var stepsComputed = 0
    /// Messages queued for the coordinator at most: a result and a few hellos or errors. (The root's chunks, a
    /// message each, and word of computed shards wait in `outbox` for room here.)
    static let sendQueue = 4
    /// Messages of the step being reduced that the socket has not taken yet: word of computed shards first, then
    /// the root's chunks in the order summed.
    private var outbox: [(step: Int, message: WireMessage)] = []

    public init(options: WorkerOptions, log: @escaping @Sendable (String) -> Void, shouldStop: @escaping () -> Bool = { false }) throws {
        self.options = options
        self.log = log
        self.shouldStop = shouldStop
        context = try ZMQContext()
        socket = try ZMQSocket(context, .dealer)
        if let why = WorkerHello.problem(name: options.name) { throw WireError.malformed(why) }
        var generator = SystemRandomNumberGenerator()
        try socket.setOption(.routingID, Worker.routingID(name: options.name, using: &generator))
        try socket.setOption(.linger, 0)
        // Sends never block (they use dontWait) and at most a few messages wait for the coordinator, so with
        // none listening a hello is simply tried again later, and --give-up-after and a stop are always heard.
        try socket.setOption(.sendHighWaterMark, Worker.sendQueue)
        if let queue = options.receiveQueue { try socket.setOption(.receiveHighWaterMark, queue) }
        try socket.setOption(.reconnectInterval, 100)
        try socket.setOption(.reconnectIntervalMax, 2000)
        try socket.setOption(.heartbeatInterval, 250)
        try socket.setOption(.heartbeatTimeout, 1500)
        if let curve = options.curve {
            guard CurveKey.isAvailable else { throw CurveError.unavailable }
            try socket.setOption(.curveServerKey, Array(curve.coordinator.z85.utf8))
            try socket.setOption(.curvePublicKey, Array(curve.keys.publicKey.z85.utf8))
            try socket.setOption(.curveSecretKey, Array(curve.keys.secretKey.z85.utf8))
            try socket.setOption(.handshakeInterval, Int(options.handshakeTimeout * 1000))
            handshakes = try HandshakeWatch(socket: socket, context: context, timeout: options.handshakeTimeout)
        } else {
            handshakes = nil
        }
        try socket.connect(options.endpoint)
        let wakeups = "inproc://computed-\(generator.next())"
        finishedEvents = try ZMQSocket(context, .pair)
        try finishedEvents.setOption(.linger, 0)
        try finishedEvents.bind(wakeups)
        finishedSignal = try ZMQSocket(context, .pair)
        try finishedSignal.setOption(.linger, 0)
        try finishedSignal.connect(wakeups)
        // Last: nothing after it can fail and leave its ZAP handler's thread running without a deinit to stop it.
        if let endpoint = options.relay {
            relay = try Relay(endpoint: endpoint, keys: options.curve?.keys, context: context, stopMidBroadcastAt: options.stopMidRelayAtStep, log: log)
        } else {
            relay = nil
        }
    }

    deinit { relay?.stop() }

    /// Serves until the coordinator says shutdown (or a stop is requested).
    public func run() throws {
        log("worker \(options.name) connecting to \(options.endpoint)" + (relay.map { ", relaying weights from \($0.address.endpoint)" } ?? ""))
        var joined = false
        let hello = WorkerHello(name: options.name, blasThreads: options.blasThreads, relay: relay?.address)
        var lastHeard = PhaseClock.now()
        var lastHello = -Double.infinity
        // Never return (or throw) with a thread inside OpenBLAS: exiting would tear the library down under it.
        defer { computing?.computation.wait() }
        while !shouldStop() {
            try handshakes?.check()
            collect()
            // Our own computing is no silence of the coordinator's.
            if computing != nil { lastHeard = PhaseClock.now() }
            let now = PhaseClock.now()
            if let limit = options.giveUpAfter, now - lastHeard > limit {
                throw WorkerError.coordinatorGone(endpoint: options.endpoint, seconds: limit)
            }
            if joined && now - lastHeard > options.rejoinAfter && now - lastHello > options.rejoinAfter {
                // It may have restarted and not know us; then it answers with another run id, which resets us below.
                // Or it was only busy (a checkpoint, validation, a sample): then its next work order is still this
                // run's, so the codec and the shape stay, and that order is computed, not dropped.
                log("no word from the coordinator for \(options.rejoinAfter) s; introducing ourselves again")
                lastHello = now
                send(.hello(hello), step: 0)
            }
            if !joined && now - lastHello > 1 {
                lastHello = now
                send(.hello(hello), step: 0)
            }
            if let first = waiting.first, askedForStep != first.step, now - waitingSince >= (relay == nil ? 0 : options.relayPatience),
               send(.needWeights, step: first.step)
            {
                askedForStep = first.step
            }
            // Relayed chunks mean nothing before we know the run: they stay queued (up to the socket's limit).
            let relaying = joined ? relay : nil
            let ready = try ZMQSocket.poll(
                [(socket, outbox.isEmpty ? .readable : [.readable, .writable]), (finishedEvents, .readable)] + (relaying.map { [($0.socket, .readable)] } ?? []),
                timeoutMs: 100)
            flushOutbox()
            while try finishedEvents.receiveMultipart(timeoutMs: 0) != nil {}
            // A relayed chunk or a peer's sum may be of the step after the newest we know (it can overtake that
            // step's order and ping), not later: a far-future step number is no message of this run's, and is
            // neither used nor passed on.
            for inbound in try relaying?.receive(codec) ?? [] {
                switch inbound {
                case .chunk(let chunk, let step) where step <= newestStep + 1: take(chunk, step: step, fromCoordinator: false)
                case .sum(let part, let step) where step <= newestStep + 1 && step >= newestStep:
                    if shareOf(step) != nil { perform(share!.add(peerSum: part, now: PhaseClock.now()), step: step) }
                case .treeAlive(let node, let origin, let seq, let age, let from, let step) where share?.step == step && relaying?.canAnswer(from) == true:
                    share!.heard(node, origin: origin, seq: seq, age: age, from: from, now: PhaseClock.now())
                default: break
                }
            }
            // After reading the relay socket, so that words waiting there count before the patience is checked.
            reduceTreeWork(now: PhaseClock.now())
            guard ready[0].contains(.readable), let frames = try socket.receiveMultipart(timeoutMs: 0) else { continue }
            lastHeard = PhaseClock.now()
            let envelope: WireEnvelope
            do {
                envelope = try codec.decode(frames)
            } catch WireError.wrongRun {
                // Another run's coordinator (it restarted): forget the old run. Its message is most likely the
                // welcome answering our hello, so read it as a newcomer would; otherwise say hello at once.
                joined = false
                codec = WireCodec()
                guard let fresh = try? codec.decode(frames) else {
                    lastHello = -.infinity
                    continue
                }
                envelope = fresh
            } catch {
                log("dropped a bad frame: \(error)")
                continue
            }
            // Every message of the coordinator's (a ping too) tells which step it is dealing.
            newestStep = max(newestStep, envelope.step)
            switch envelope.message {
            case .welcome(let shape):
                guard shape.workerBytes <= options.maxMemory else {
                    let error = WorkerError.runTooLarge(shape: shape, bytes: shape.workerBytes, limit: options.maxMemory)
                    // Tell the coordinator why, best effort: a moment of linger lets the message leave.
                    codec = WireCodec(runID: envelope.runID)
                    send(.error(error.description), step: 0)
                    try? socket.setOption(.linger, 200)
                    throw error
                }
                // Orders and weights from another run cannot be used with this run's sizes.
                if codec.runID != envelope.runID {
                    (queue, stepWeights, waiting, assembly, askedForStep, newestStep, share) = ([], nil, [], nil, nil, 0, nil)
                    relay?.reset()
                }
                if !joined || codec.runID != envelope.runID { log("joined run \(String(envelope.runID, radix: 16)): \(shape)") }
                codec = WireCodec(runID: envelope.runID, shape: shape)
                if shardStep?.config != shape.config || shardStep?.maxRows != shape.rowsPerShard || shardStep?.seq != shape.seq
                    || shardStep?.dropout != shape.dropout
                {
                    shardStep = ShardStep(config: shape.config, maxRows: shape.rowsPerShard, seq: shape.seq, dropout: shape.dropout)
                    loadedWeights = nil
                }
                joined = true
            case .work(let order, let target):
                guard joined else { continue }
                let target = expect(order.shards, target: target, step: envelope.step)
                adopt(order.weights, step: envelope.step)
                enqueue(order, step: envelope.step, target: target)
            case .workSameWeights(let epoch, let shards, let target):
                guard joined else { continue }
                let target = expect(shards, target: target, step: envelope.step)
                if let known = stepWeights, known.step == envelope.step {
                    enqueue(WorkOrder(epoch: epoch, shards: shards, weights: known.weights), step: envelope.step, target: target)
                } else {
                    wait(epoch: epoch, shards: shards, step: envelope.step, target: target)
                }
            case .weights(let chunk):
                // From the coordinator: we are one of its children in the tree, or it answers our need-weights.
                guard joined else { continue }
                take(chunk, step: envelope.step, fromCoordinator: true)
            case .shutdown:
                log("coordinator says the run is over; \(stepsComputed) work orders computed")
                return
            case .error(let message):
                // The coordinator will not have us (our numerics differ from its own): saying hello again
                // would not change that.
                throw WorkerError.refused(message)
            case .relayKeys(let keys):
                relay?.allow(keys)
            case .ping, .hello, .result, .needWeights, .sum, .treeAlive, .computed:
                break
            }
        }
    }

    /// A fresh identity per process, so a restarted worker is never mistaken for its previous life: a digest
    /// of the name and a random number, of a fixed 32 bytes whatever the name's length (a cut-off name made
    /// two long names one identity, and the second worker was ignored).
    static func routingID(name: String, using generator: inout some RandomNumberGenerator) -> [UInt8] {
        var sha = SHA256()
        sha.update(Data(name.utf8))
        withUnsafeBytes(of: generator.next()) { sha.update($0) }
        return Array(sha.hexDigest().utf8.prefix(32))
    }

    /// A chunk of `step`'s weights: passed on to our children at once (the broadcast is pipelined chunk by
    /// chunk), then put in place. Chunks of a step older than the newest we know of are dropped, and so are
    /// chunks of a step whose weights we have, once passed on. A relayed chunk displaces the chunks of a newer
    /// step (which may be forged) only for a step an order waits for; the coordinator's own always do.
    private func take(_ chunk: WeightsChunk, step: Int, fromCoordinator: Bool) {
        guard let shape = codec.shape, step >= newestStep else { return }
        relay?.passOn(chunk, step: step, codec)
        guard step > stepWeights?.step ?? -1 else { return }
        // Chunks still coming is no silence: the patience counts from the last one.
        if waiting.first?.step == step { waitingSince = PhaseClock.now() }
        if let other = assembly?.step, other > step, !fromCoordinator, !waiting.contains(where: { $0.step == step }) { return }
        if assembly?.step != step { assembly = WeightsAssembly(step: step, parameters: shape.parameterCount) }
        guard !assembly!.has(chunk.index) else { return }
        assembly!.add(chunk)
        if assembly!.isComplete {
            let weights = assembly!.weights
            assembly = nil
            adopt(weights, step: step)
        }
    }

    /// `step`'s weights are in (whole, or put together from chunks): its waiting orders go to the queue.
    private func adopt(_ weights: FloatBuffer, step: Int) {
        guard step >= stepWeights?.step ?? 0 else { return }
        stepWeights = (step, weights)
        let ready = waiting.filter { $0.step == step }
        waiting.removeAll { $0.step <= step }
        for order in ready { enqueue(WorkOrder(epoch: order.epoch, shards: order.shards, weights: weights), step: step, target: order.target) }
    }

    /// An order whose weights are not here yet: it waits for them (by relay, or asked for after `relayPatience`).
    private func wait(epoch: Int, shards: [WorkShard], step: Int, target: SumTarget?) {
        waiting.removeAll { $0.step < step }
        if waiting.isEmpty { waitingSince = PhaseClock.now() }
        waiting.append((epoch, shards, step, target))
    }

    /// Queues `order` behind the others of its step (dropping those of earlier steps: the coordinator has
    /// dealt them again) and starts the next order if nothing is computing.
    private func enqueue(_ order: WorkOrder, step: Int, target: SumTarget?) {
        queue.removeAll { $0.step < step }
        queue.append((order, step, target))
        startNext()
    }

    /// The step's share: dropped once a later step is dealt; else the patience rule, the tokens heard passed on at
    /// once, and our own token every quarter of the patience (`ReductionShare`).
    private func reduceTreeWork(now: Double) {
        guard let current = share else { return }
        guard current.step >= newestStep else {
            share = nil
            return
        }
        perform(share!.check(now: now, patience: options.relayPatience, maxWait: Self.maxWaitPatiences * options.relayPatience), step: current.step)
        guard let relay else { return }
        var words = share!.passedOn(now: now)
        if now - lastAlive >= options.relayPatience / 4 {
            lastAlive = now
            words += share!.ownWords(now: now, quiet: options.relayPatience / 2)
        }
        for word in words {
            relay.send(.treeAlive(node: word.node, origin: word.origin, seq: word.seq, age: word.age, from: relay.address), step: current.step, to: word.to, codec)
        }
    }

    /// Our share of `step`'s reduction, started if there is none or only an older step's; nil for an older step.
    private func shareOf(_ step: Int) -> ReductionShare? {
        guard let shape = codec.shape else { return nil }
        if let current = share, current.step >= step { return current.step == step ? current : nil }
        // Token numbers from the wall clock in microseconds: a restarted worker on the same endpoint starts above its
        // predecessor's.
        share = ReductionShare(step: step, tree: ReductionTree(shards: shape.shardCount), parameters: shape.parameterCount,
                               origin: relay?.address.endpoint ?? options.name, firstToken: UInt64(Date().timeIntervalSince1970 * 1e6),
                               now: PhaseClock.now())
        return share
    }

    /// An order's target, registered with the step's share; nil (answer directly) without a relay socket, which
    /// peers' sums would need. A worker may hold several shards of a step in the tree (it pulls the next as soon
    /// as it has computed one).
    private func expect(_ shards: [WorkShard], target: SumTarget?, step: Int) -> SumTarget? {
        guard let target, relay != nil, shards.count == 1, shareOf(step) != nil else { return nil }
        perform(share!.expect(shards[0].index, target: target, now: PhaseClock.now()), step: step)
        return target
    }

    /// Carries out what the step's share decided: sums to a peer or the coordinator, or our results directly.
    private func perform(_ actions: [ReductionShare.Action], step: Int) {
        for action in actions {
            switch action {
            case .send(let part, .peer(let peer)):
                if step == options.stopMidReductionAtStep, part.node.count > 1, part.chunks.lowerBound == 0, !stoppedMidReduction {
                    stoppedMidReduction = true
                    log("fault injection: stopping mid-reduction at step \(step)")
                    kill(getpid(), SIGSTOP)
                }
                relay?.send(.sum(part), step: step, to: peer, codec)
            case .send(let part, _):
                outbox.append((step, .sum(part)))
                flushOutbox()
            case .leaves(let leaves):
                send(.result(leaves), step: step)
            }
        }
    }

    /// Starts computing the first waiting order, unless a computation is running.
    private func startNext() {
        guard computing == nil, !queue.isEmpty, let shardStep, let shape = codec.shape else { return }
        let (order, step, target) = queue.removeFirst()
        // Used by the finishing thread only, one computation at a time (the handoff is the thread start).
        let signal = finishedSignal
        let loaded = loadedWeights === order.weights
        loadedWeights = order.weights
        let computation = ShardComputation(
            order, step: step, shardStep: shardStep, loaded: loaded, shape: shape, faults: (options.poisonFromStep, options.forgeFromStep, options.slowdown, options.delay),
            tellParts: target != nil, wake: { _ = try? signal.send([.bytes([])], dontWait: true) })
        computing = (computation, codec.runID, target)
    }

    /// Puts the parts of the running computation's result that are final into the step's tree; sends the results of
    /// a finished computation and starts the next waiting order, if any.
    private func collect() {
        guard let (computation, runID, target) = computing else { return }
        let parts = computation.takeParts()
        if runID == codec.runID, target != nil, share?.step == computation.step {
            for part in parts { perform(share!.add(part: part.result, final: part.range, now: PhaseClock.now()), step: computation.step) }
        }
        guard let results = computation.results else { return }
        computing = nil
        stepsComputed += 1
        // Results of a run we have since left (its coordinator restarted) would only be refused.
        if runID == codec.runID {
            if target != nil, share?.step == computation.step {
                for r in results { perform(share!.add(leaf: r, now: PhaseClock.now()), step: computation.step) }
                // The result is in the tree, not on its way to the coordinator: tell it we have room for the next shard
                // (ahead of any root chunk waiting), so that it is dealt while the tree sums this one.
                if !share!.gaveUp {
                    outbox.insert(contentsOf: results.map { (computation.step, WireMessage.computed(shard: $0.index)) }, at: 0)
                    flushOutbox()
                }
            } else {
                send(.result(results), step: computation.step)
            }
        }
        startNext()
    }

    /// Sends what the socket takes now of the outbox, in order; the rest waits for the socket to be writable.
    /// Messages of a step no longer ours to reduce are dropped.
    private func flushOutbox() {
        outbox.removeAll { $0.step != share?.step }
        while let (step, message) = outbox.first, deliver(message, step: step) != .full { outbox.removeFirst() }
    }

    /// Whether the message left (or was queued); a need-weights that did not is tried again.
    @discardableResult
    private func send(_ message: WireMessage, step: Int) -> Bool { deliver(message, step: step) == .sent }

    private enum Delivery { case sent, full, failed }

    private func deliver(_ message: WireMessage, step: Int) -> Delivery {
        do {
            try socket.send(codec.encode(message, step: step), dontWait: true)
            return .sent
        } catch let error as ZMQError where error.code == EAGAIN {
            // No connection up, or the coordinator is not reading. A hello or need-weights is tried again later,
            // a root chunk as soon as the socket takes it; lost work is dealt again by the coordinator at its
            // deadline.
            switch message {
            case .hello, .needWeights, .sum, .computed: break
            default: log("cannot send to the coordinator now (not connected, or it is not reading): step \(step) dropped")
            }
            return .full
        } catch let error as WireError {
            // A non-finite gradient (diverged weights, or the fault injection) must not reach Adam: the
            // encoder refuses it, and the coordinator hears why and gives the shards to someone else.
            send(.error("step \(step): \(error)"), step: step)
        } catch {
            log("cannot send to the coordinator: \(error)")
        }
        return .failed
    }
}

public enum WorkerError: Error, CustomStringConvertible {
    case handshakeRefused(Int)
    case notAuthorized
    case coordinatorGone(endpoint: String, seconds: Double)
    case runTooLarge(shape: RunShape, bytes: Int, limit: Int)
    case refused(String)
    case relay(String)

    public var description: String {
        switch self {
        case .coordinatorGone(let endpoint, let seconds):
            return "no word from a coordinator at \(endpoint) for \(seconds) s (--give-up-after): giving up"
        case .runTooLarge(let shape, let bytes, let limit):
            return "the coordinator's run (\(shape)) needs about \(gib(bytes)) GiB on this worker, more than --max-memory \(gib(limit)) GiB: not joining"
        case .refused(let why):
            return "the coordinator refused this worker: \(why)"
        case .relay(let why):
            return "--relay: \(why)"
        case .notAuthorized:
            return "the coordinator refused this worker's key: add its .pub to the coordinator's --authorized-keys" 
        case .handshakeRefused(let n):
            return "the coordinator and this worker failed the CURVE handshake \(n) times in a row: check --coordinator-key (is it that coordinator's public key?) and that this worker's public key is in the coordinator's --authorized-keys"
        }
    }
}

private func gib(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / Double(1 << 30)) }
