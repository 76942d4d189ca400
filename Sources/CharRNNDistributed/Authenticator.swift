import Foundation

/// Answers libzmq's ZAP requests (ZeroMQ RFC 27) for a context's CURVE server sockets (the coordinator's, a
/// relaying worker's) on a thread of its own, so a handshake never waits for a training step: a CURVE client
/// gets in only if its long-term public key is on the allow-list. libzmq asks before the connection can carry a
/// single message.
final class Authenticator: @unchecked Sendable {
    static let endpoint = "inproc://zeromq.zap.01"

    private let socket: ZMQSocket
    private var allowed: Set<[UInt8]>
    private let log: @Sendable (String) -> Void
    private let lock = NSLock()
    private var stopping = false
    private var refused = 0
    private let done = DispatchSemaphore(value: 0)

    init(context: ZMQContext, allowed: Set<CurveKey>, log: @escaping @Sendable (String) -> Void) throws {
        socket = try ZMQSocket(context, .reply)
        try socket.setOption(.linger, 0)
        try socket.bind(Authenticator.endpoint)
        self.allowed = Set(allowed.map(\.bytes))
        self.log = log
        Thread.detachNewThread { [self] in serve() }
    }

    /// Replaces the allow-list (a relaying worker learns it from the coordinator after it joined).
    func allow(_ keys: Set<CurveKey>) {
        lock.withLock { allowed = Set(keys.map(\.bytes)) }
    }

    /// Stops answering and closes the socket (before the context is terminated). A second call returns at once.
    func stop() {
        guard lock.withLock({ () -> Bool in
            defer { stopping = true }
            return !stopping
        }) else { return }
        done.wait()
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func serve() {
        defer {
            socket.close()
            done.signal()
        }
        while !isStopping {
            guard let frames = try? socket.receiveMultipart(timeoutMs: 100) else { continue }
            // version, request id, domain, address, routing id, mechanism, credentials…
            guard frames.count >= 6 else { continue }
            let address = String(decoding: frames[3].array, as: UTF8.self)
            let mechanism = String(decoding: frames[5].array, as: UTF8.self)
            let key = frames.count >= 7 ? frames[6].array : []
            let ok = mechanism == "CURVE" && lock.withLock { allowed.contains(key) }
            if !ok {
                refused += 1
                // Anyone who reaches the port can knock: the first refusals are logged, then one in a thousand.
                if refused <= 10 || refused % 1000 == 0 {
                    let who = key.count == 32 ? CurveKey(bytes: key).z85 : "no key"
                    log("refused a \(mechanism) connection from \(address): key \(who) is not authorized (\(refused) refused so far)")
                }
            }
            let reply: [ZMQFrame] = [
                .bytes(Array("1.0".utf8)), .bytes(frames[1].array), .bytes(Array((ok ? "200" : "400").utf8)),
                .bytes(Array((ok ? "OK" : "key not authorized").utf8)), .bytes([]), .bytes([]),
            ]
            try? socket.send(reply)
        }
    }
}
