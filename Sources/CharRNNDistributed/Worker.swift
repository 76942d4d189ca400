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
    /// Test-only fault injection: from this global step on, report NaN gradients.
    public var poisonFromStep: Int? = nil
    /// CURVE: the coordinator's public key (a server with another key is never talked to) and our key pair.
    public var curve: (coordinator: CurveKey, keys: CurveKeyPair)? = nil

    public init(endpoint: String, name: String, blasThreads: Int) {
        self.endpoint = endpoint
        self.name = name
        self.blasThreads = blasThreads
    }
}

/// A worker: connects (and reconnects, with back-off, for as long as it runs), says hello, then computes
/// the shards it is sent with the same `ShardStep` the in-process trainer uses, and returns each shard's
/// loss, final hidden state and gradient. It keeps nothing between steps that the coordinator does not also
/// have: every work order carries its shards' starting states, so any worker can take over any shard.
public final class Worker {
    private let options: WorkerOptions
    private let log: (String) -> Void
    private let shouldStop: () -> Bool
    private let context: ZMQContext
    private let socket: ZMQSocket
    private var codec = WireCodec()
    private var shardStep: ShardStep?
    private let handshakes: HandshakeWatch?
    public private(set) var stepsComputed = 0
    /// Messages queued for the coordinator at most: a result and a few hellos or errors.
    static let sendQueue = 4

    public init(options: WorkerOptions, log: @escaping (String) -> Void, shouldStop: @escaping () -> Bool = { false }) throws {
        self.options = options
        self.log = log
        self.shouldStop = shouldStop
        context = try ZMQContext()
        socket = try ZMQSocket(context, .dealer)
        var generator = SystemRandomNumberGenerator()
        // A fresh identity per process, so a restarted worker is never mistaken for its previous life.
        try socket.setOption(.routingID, Array("\(options.name)-\(String(generator.next(), radix: 36))".utf8.prefix(250)))
        try socket.setOption(.linger, 0)
        // Sends never block (they use dontWait): a message is queued only on a connection that is up, and at
        // most a few, so with no coordinator listening a hello is simply tried again later, and
        // --give-up-after and a stop request are always heard.
        try socket.setOption(.immediate, 1)
        try socket.setOption(.sendHighWaterMark, Worker.sendQueue)
        try socket.setOption(.reconnectInterval, 100)
        try socket.setOption(.reconnectIntervalMax, 2000)
        try socket.setOption(.heartbeatInterval, 250)
        try socket.setOption(.heartbeatTimeout, 1500)
        if let curve = options.curve {
            guard CurveKey.isAvailable else { throw CurveError.unavailable }
            try socket.setOption(.curveServerKey, Array(curve.coordinator.z85.utf8))
            try socket.setOption(.curvePublicKey, Array(curve.keys.publicKey.z85.utf8))
            try socket.setOption(.curveSecretKey, Array(curve.keys.secretKey.z85.utf8))
            handshakes = try HandshakeWatch(socket: socket, context: context)
        } else {
            handshakes = nil
        }
        try socket.connect(options.endpoint)
    }

    /// Serves until the coordinator says shutdown (or a stop is requested).
    public func run() throws {
        log("worker \(options.name) connecting to \(options.endpoint)")
        var joined = false
        var lastHeard = PhaseClock.now()
        var lastHello = -Double.infinity
        while !shouldStop() {
            try handshakes?.check()
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
                send(.hello(WorkerHello(name: options.name, blasThreads: options.blasThreads)), step: 0)
            }
            if !joined && now - lastHello > 1 {
                lastHello = now
                send(.hello(WorkerHello(name: options.name, blasThreads: options.blasThreads)), step: 0)
            }
            guard let frames = try socket.receiveMultipart(timeoutMs: 100) else { continue }
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
            switch envelope.message {
            case .welcome(let shape):
                if !joined || codec.runID != envelope.runID { log("joined run \(String(envelope.runID, radix: 16)): \(shape)") }
                codec = WireCodec(runID: envelope.runID, shape: shape)
                if shardStep?.config != shape.config || shardStep?.maxRows != shape.rowsPerShard || shardStep?.seq != shape.seq
                    || shardStep?.dropout != shape.dropout
                {
                    shardStep = ShardStep(config: shape.config, maxRows: shape.rowsPerShard, seq: shape.seq, dropout: shape.dropout)
                }
                joined = true
            case .work(let order):
                guard joined else { continue }
                compute(order, step: envelope.step)
                // Our own computing is no silence of the coordinator's: its pings wait in the queue meanwhile.
                lastHeard = PhaseClock.now()
            case .shutdown:
                log("coordinator says the run is over; \(stepsComputed) work orders computed")
                return
            case .ping, .hello, .result, .error:
                break
            }
        }
    }

    private func compute(_ order: WorkOrder, step: Int) {
        guard let shardStep, let shape = codec.shape else { return }
        let layout = ParameterLayout(shape.config)
        shardStep.load(weights: Parameters(layout: layout, storage: order.weights))
        let results = order.shards.map { work -> ShardResult in
            let state = work.state ?? FloatBuffer(count: shape.stateCount)
            let gradient = Parameters(layout: layout, storage: FloatBuffer(count: layout.count))
            let position = ShardPosition(step: step, shard: work.index, rowsPerShard: shape.rowsPerShard)
            let loss = shardStep.run(work.rows, state: state.base, grads: gradient, position: position)
            if let from = options.poisonFromStep, step >= from { gradient.storage[0] = .nan }
            return ShardResult(index: work.index, loss: loss, state: state, gradient: gradient.storage)
        }
        stepsComputed += 1
        send(.result(results), step: step)
    }

    private func send(_ message: WireMessage, step: Int) {
        do {
            try socket.send(codec.encode(message, step: step), dontWait: true)
        } catch let error as ZMQError where error.code == EAGAIN {
            // No connection up, or the coordinator is not reading. A hello is tried again later; lost work is
            // dealt again by the coordinator at its deadline.
            if case .hello = message { return }
            log("cannot send to the coordinator now (not connected, or it is not reading): step \(step) dropped")
        } catch let error as WireError {
            // A non-finite gradient (diverged weights, or the fault injection) must not reach Adam: the
            // encoder refuses it, and the coordinator hears why and gives the shards to someone else.
            send(.error("step \(step): \(error)"), step: step)
        } catch {
            log("cannot send to the coordinator: \(error)")
        }
    }
}

public enum WorkerError: Error, CustomStringConvertible {
    case handshakeRefused(Int)
    case notAuthorized
    case coordinatorGone(endpoint: String, seconds: Double)

    public var description: String {
        switch self {
        case .coordinatorGone(let endpoint, let seconds):
            return "no word from a coordinator at \(endpoint) for \(seconds) s (--give-up-after): giving up"
        case .notAuthorized:
            return "the coordinator refused this worker's key: add its .pub to the coordinator's --authorized-keys" 
        case .handshakeRefused(let n):
            return "the coordinator and this worker failed the CURVE handshake \(n) times in a row: check --coordinator-key (is it that coordinator's public key?) and that this worker's public key is in the coordinator's --authorized-keys"
        }
    }
}

/// Watches the CURVE handshakes of the worker's connection. A server with another key than the one we
/// trust, or one that does not authorize our key, closes every connection before the handshake completes;
/// after a few in a row the worker refuses to go on rather than knocking forever.
final class HandshakeWatch {
    static let limit = 3
    private let events: ZMQSocket
    private var failures = 0
    /// Whether the current connection completed its handshake (a later disconnect is then no refusal).
    private var connected = false

    init(socket: ZMQSocket, context: ZMQContext) throws {
        var generator = SystemRandomNumberGenerator()
        let watched = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
            | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_DISCONNECTED
        events = try socket.monitor(context, events: watched, endpoint: "inproc://handshakes-\(generator.next())")
    }

    /// Reads pending events; throws once the handshake has failed `limit` times without a success.
    func check() throws {
        while let frames = try events.receiveMultipart(timeoutMs: 0), let first = frames.first, first.count >= 2 {
            let event = Int32(first.bytes.loadUnaligned(as: UInt16.self))
            switch event {
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
                failures = 0
                connected = true
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                // The coordinator checked our key and said no; libzmq will not try again.
                throw WorkerError.notAuthorized
            case ZMQ_EVENT_DISCONNECTED:
                // A disconnect before any handshake succeeded on this connection counts as a refusal.
                if !connected { failures += 1 }
                connected = false
            default:
                failures += 1
            }
        }
        if failures >= HandshakeWatch.limit { throw WorkerError.handshakeRefused(failures) }
    }
}
