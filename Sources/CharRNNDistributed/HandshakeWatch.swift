@preconcurrency import CZeroMQ
import CharRNN

/// Watches the CURVE handshakes of the worker's connection and applies `HandshakeRefusals` to them.
final class HandshakeWatch {
    private let events: ZMQSocket
    private var refusals: HandshakeRefusals

    init(socket: ZMQSocket, context: ZMQContext, timeout: Double) throws {
        var generator = SystemRandomNumberGenerator()
        // A failed handshake is reported twice (failed, then disconnected): only the disconnect is counted.
        let watched = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_DISCONNECTED
        events = try socket.monitor(context, events: watched, endpoint: "inproc://handshakes-\(generator.next())")
        refusals = HandshakeRefusals(timeout: timeout)
    }

    /// Reads pending events; throws once the handshake has been refused `HandshakeRefusals.limit` times in a row.
    func check(now: Double = PhaseClock.now()) throws {
        while let frames = try events.receiveMultipart(timeoutMs: 0), let first = frames.first, first.count >= 2 {
            switch Int32(first.bytes.loadUnaligned(as: UInt16.self)) {
            case ZMQ_EVENT_CONNECTED: refusals.connected(at: now)
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: refusals.succeeded()
            // The coordinator checked our key and said no; libzmq will not try again.
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: throw WorkerError.notAuthorized
            case ZMQ_EVENT_DISCONNECTED: refusals.disconnected(at: now)
            default: break
            }
        }
        if refusals.refused { throw WorkerError.handshakeRefused(refusals.count) }
    }
}

/// When a worker stops knocking. A server with another key than the one we trust, or one that does not
/// authorize our key, closes every connection before the handshake completes; after a few in a row the
/// worker refuses to go on. A server that does not answer at all (stopped, overloaded) is no refusal:
/// libzmq closes such a connection only when the handshake interval (`timeout`) runs out, and the worker
/// keeps trying. Each connection counts once.
struct HandshakeRefusals {
    static let limit = 3
    let timeout: Double
    private(set) var count = 0
    /// When the current connection was made, and whether it completed its handshake (a later disconnect is
    /// then no refusal).
    private var connectedAt: Double?
    private var handshaken = false

    init(timeout: Double) { self.timeout = timeout }

    var refused: Bool { count >= Self.limit }

    mutating func connected(at now: Double) {
        connectedAt = now
        handshaken = false
    }

    mutating func succeeded() {
        count = 0
        handshaken = true
    }

    /// Closed before the handshake completed: quickly, a refusal; after about the handshake interval,
    /// silence (events are read up to a loop turn late, hence the margin).
    mutating func disconnected(at now: Double) {
        if !handshaken, let at = connectedAt, now - at < timeout / 2 { count += 1 }
        connectedAt = nil
        handshaken = false
    }
}
