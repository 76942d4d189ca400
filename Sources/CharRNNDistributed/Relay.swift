import CharRNN
import Foundation

/// A worker's links to other workers: the socket its parent in the relay tree (`RelayRoute`) pushes a step's
/// weights chunks to and its peers push sums up the reduction tree to (`ReductionShare`), one socket per child
/// to pass each chunk on as soon as it is in, and one per peer it sends sums to. Putting the chunks together is
/// the worker's (`WeightsAssembly`): a worker that does not relay gets chunks too, from the coordinator.
///
/// With keys the relay socket is a CURVE server with the worker's own key pair, and a ZAP handler in the
/// worker's context admits only the run's worker keys, which the coordinator sends after the welcome (`allow`);
/// nobody before. Sends never block: a child that is gone or not reading loses the chunk and asks the
/// coordinator for the weights.
final class Relay {
    /// How others reach this relay: the bound endpoint (a wildcard port resolved) and, with keys, our public key.
    let address: RelayPeer
    let socket: ZMQSocket
    private let context: ZMQContext
    private let keys: CurveKeyPair?
    private let authenticator: Authenticator?
    private let log: (String) -> Void
    private var children: [RelayPeer: ZMQSocket] = [:]
    /// Peers we send sums to (the holders of the shards our top nodes' parents start at), with the step we last
    /// did: few, and stable while the workers are.
    private var receivers: [RelayPeer: (socket: ZMQSocket, step: Int)] = [:]
    /// The chunks of one step passed on: forwarding does not depend on whether the worker needed them.
    private var forwarded: (step: Int, indices: Set<Int>) = (0, [])
    /// Bad messages on the relay socket, logged sparingly: anyone who reaches it may send there.
    private var bad = 0
    private var failedSends = 0
    /// Test-only fault injection: at this step, stop the process (SIGSTOP) halfway through passing the chunks on.
    private let stopMidBroadcastAt: Int?
    private var stopped = false
    private var warnedNoKey = false

    init(endpoint: String, keys: CurveKeyPair?, context: ZMQContext, stopMidBroadcastAt: Int?, log: @escaping @Sendable (String) -> Void) throws {
        self.context = context
        self.keys = keys
        self.log = log
        self.stopMidBroadcastAt = stopMidBroadcastAt
        socket = try ZMQSocket(context, .pull)
        // Nobody gets in until the coordinator says which keys are the run's.
        let authenticator = keys == nil ? nil : try Authenticator(context: context, allowed: [], log: log)
        do {
            address = try Relay.bind(socket, endpoint, keys: keys)
        } catch {
            // Before the context goes: its termination waits for the handler's socket.
            authenticator?.stop()
            socket.close()
            throw error
        }
        self.authenticator = authenticator
    }

    /// Stops the ZAP handler (before the context is terminated).
    func stop() { authenticator?.stop() }

    /// The worker keys the relay socket admits from now on (a run with keys).
    func allow(_ keys: [CurveKey]) { authenticator?.allow(Set(keys)) }

    /// Whether a peer's tree-alive word names a relay we may answer: tcp or ipc (no other transport a peer has any
    /// business making us open), keyed exactly when our links are.
    func canAnswer(_ peer: RelayPeer) -> Bool {
        (peer.endpoint.hasPrefix("tcp://") || peer.endpoint.hasPrefix("ipc://")) && (peer.key == nil) == (keys == nil)
    }

    /// Returns how others reach `socket` once bound to `endpoint`.
    private static func bind(_ pull: ZMQSocket, _ endpoint: String, keys: CurveKeyPair?) throws -> RelayPeer {
        try pull.setOption(.linger, 0)
        if let keys {
            try pull.setOption(.curveServer, 1)
            try pull.setOption(.curveSecretKey, Array(keys.secretKey.z85.utf8))
            try pull.setOption(.zapDomain, Array("charrnn-relay".utf8))
        }
        try pull.setOption(.heartbeatInterval, 250)
        try pull.setOption(.heartbeatTimeout, 1500)
        // A chunk's first frame with the longest route, or a chunk: nothing larger is buffered.
        try pull.setOption(.maxMessageSize, WireCodec.headerSize + max(WireCodec.chunkBytes, WireCodec.largestWeightsBody))
        // Bounds what a sender can make us buffer (the sender's own queue holds the rest of a step's chunks).
        try pull.setOption(.receiveHighWaterMark, 64)
        do {
            try IPCEndpoint.requireFree(endpoint)
            try pull.bind(endpoint)
        } catch {
            throw WorkerError.relay("cannot bind \(endpoint): \(error)")
        }
        let address = try pull.lastEndpoint()
        // Other workers connect to what we advertise: a wildcard address is not one they can reach.
        if address.contains("0.0.0.0") || address.contains("[::]") {
            throw WorkerError.relay("give an address other workers can reach, e.g. tcp://10.0.0.2:* (not \(endpoint))")
        }
        guard (try? WireCodec.checkEndpoint(Array(address.utf8))) != nil else {
            throw WorkerError.relay("the endpoint \(address) is longer than \(RelayRoute.maxEndpointBytes) bytes or not printable ASCII")
        }
        return RelayPeer(endpoint: address, key: keys?.publicKey)
    }

    enum Inbound {
        case chunk(WeightsChunk, step: Int)
        case sum(SumPart, step: Int)
        case treeAlive(ReductionNode, origin: String, seq: UInt64, age: Double, from: RelayPeer, step: Int)
    }

    /// The chunks our parent has pushed and the sums peers have (anything else there is dropped), a step's worth
    /// of chunks at most per call so that the worker reads the coordinator's socket too.
    func receive(_ codec: WireCodec) throws -> [Inbound] {
        var out: [Inbound] = []
        for _ in 0..<(WireCodec.chunkCount(floats: codec.shape?.parameterCount ?? 0) + 4) {
            guard let frames = try socket.receiveMultipart(timeoutMs: 0) else { break }
            switch (try? codec.decode(frames)).map({ ($0.message, $0.step) }) {
            case (.weights(let chunk), let step)?: out.append(.chunk(chunk, step: step))
            case (.sum(let part), let step)?: out.append(.sum(part, step: step))
            case (.treeAlive(let node, let origin, let seq, let age, let from), let step)?:
                out.append(.treeAlive(node, origin: origin, seq: seq, age: age, from: from, step: step))
            default:
                bad += 1
                if bad <= 10 || bad % 1000 == 0 { log("dropped a bad message on the relay socket (\(bad) so far)") }
            }
        }
        return out
    }

    /// Pushes a sum's chunks or tree-alive of `step` to `peer`'s relay socket; whether they were queued. One that is
    /// not (the peer is stopped or gone, its queue full) is not tried again: the patience rule of `ReductionShare`
    /// gets the step done without it.
    @discardableResult
    func send(_ message: WireMessage, step: Int, to peer: RelayPeer, _ codec: WireCodec) -> Bool {
        // Peers change only when workers join or leave; sockets not used in this step go (nothing of theirs is
        // needed any more), never one a sum of this step may still be queued on.
        if receivers[peer] == nil && receivers.count >= 8 {
            for (stale, used) in receivers where used.step < step {
                used.socket.close()
                receivers[stale] = nil
            }
        }
        do {
            let push = try receivers[peer]?.socket ?? socket(to: peer, codec, words: true)
            receivers[peer] = (push, step)
            try push.send(codec.encode(message, step: step), dontWait: true)
            return true
        } catch let error as ZMQError where error.code == EAGAIN {
            // A sum's chunk that cannot go means the link is stuck (or its CURVE handshake was refused, which libzmq
            // never retries): a new socket next time. A tree-alive word is only dropped: closing would also drop the
            // sum chunks queued before it.
            if case .sum = message { receivers.removeValue(forKey: peer)?.socket.close() }
        } catch {
            failedSends += 1
            if failedSends <= 10 || failedSends % 1000 == 0 { log("cannot send to \(peer.endpoint) (\(failedSends) so far): \(error)") }
        }
        return false
    }

    /// Pushes `chunk` of `step` to each child of its route with the route below it, once per chunk and step. A
    /// chunk with nobody below (the coordinator's answer to need-weights) does not count: our parent's copy of
    /// it, with the route, may still come.
    func passOn(_ chunk: WeightsChunk, step: Int, _ codec: WireCodec) {
        let below = chunk.route.children()
        guard !below.isEmpty else { return }
        if forwarded.step != step { forwarded = (step, []) }
        guard forwarded.indices.insert(chunk.index).inserted else { return }
        // Children change only when workers join or leave; sockets to former ones go.
        for stale in children.keys where !below.contains(where: { $0.peer == stale }) {
            children.removeValue(forKey: stale)?.close()
        }
        for (child, route) in below {
            do {
                let push = try children[child] ?? socket(to: child, codec)
                children[child] = push
                try push.send(codec.encode(.weights(WeightsChunk(index: chunk.index, floats: chunk.floats, route: route)), step: step), dontWait: true)
            } catch let error as ZMQError where error.code == EAGAIN {
                // Its queue is full: the child is stopped or gone, or refused the connection, which libzmq never
                // retries (a restarted child that had not yet heard the run's keys). It asks the coordinator for
                // these weights; a new socket tries afresh with the next chunk.
                children.removeValue(forKey: child)?.close()
            } catch {
                // The child will ask the coordinator; nothing here can do better.
                if !warnedNoKey, case WorkerError.relay = error {
                    warnedNoKey = true
                    log("not passing weights on to \(child.endpoint): \(error)")
                }
            }
        }
        if step == stopMidBroadcastAt, !stopped, let shape = codec.shape, chunk.index == WireCodec.chunkCount(floats: shape.parameterCount) / 2 {
            stopped = true
            log("fault injection: stopping mid-broadcast at step \(step)")
            kill(getpid(), SIGSTOP)
        }
    }

    /// A new PUSH to `child`; with keys a CURVE client of the child's own key (a child without one is not talked
    /// to: it would take our chunks or sums in plaintext).
    /// `words`: a socket to a peer we sum for or answer, which carries tree-alive words besides sums.
    private func socket(to child: RelayPeer, _ codec: WireCodec, words: Bool = false) throws -> ZMQSocket {
        let push = try ZMQSocket(context, .push)
        try push.setOption(.linger, 0)
        if let keys {
            guard let server = child.key else { throw WorkerError.relay("a child in the tree without a key") }
            try push.setOption(.curveServerKey, Array(server.z85.utf8))
            try push.setOption(.curvePublicKey, Array(keys.publicKey.z85.utf8))
            try push.setOption(.curveSecretKey, Array(keys.secretKey.z85.utf8))
        }
        // Weights: a step's chunks twice over, so a slow child holds up nobody and a stopped one costs bounded memory.
        // Sums (the sockets that carry words): every sum we may send one peer in a step, one per shard we hold at
        // most (a worker pulling many shards can owe one peer several, sent in a burst; when they did not fit, the
        // rest were dropped and the step fell back to results one by one), over the step and the next; their floats
        // are our own buffers, which the worker's memory budget already counts per shard. And room for a few rounds
        // of words (a token of ours and those passed on), which never crowd a chunk out unless the peer has not
        // read for that long (then it is stalled, and a word that does not fit is dropped).
        let chunks = WireCodec.chunkCount(floats: codec.shape?.parameterCount ?? 0)
        try push.setOption(.sendHighWaterMark, words ? ((codec.shape?.shardCount ?? 1) + 1) * chunks + 16 : 2 * chunks + 4)
        try push.setOption(.heartbeatInterval, 250)
        try push.setOption(.heartbeatTimeout, 1500)
        try push.setOption(.reconnectInterval, 100)
        try push.setOption(.reconnectIntervalMax, 2000)
        try push.connect(child.endpoint)
        return push
    }

    /// A new run: nothing passed on yet.
    func reset() { forwarded = (0, []) }
}
