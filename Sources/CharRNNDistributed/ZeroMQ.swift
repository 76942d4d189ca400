@preconcurrency import CZeroMQ
#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed libzmq call: what was attempted, and the errno libzmq reported.
///
/// A struct rather than an enum because libzmq reports an open set of errno values; callers test `code`
/// against the few they handle (`EAGAIN` after a `dontWait` send, `EHOSTUNREACH` from a ROUTER with
/// `routerMandatory`, `ETERM`).
public struct ZMQError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let code: Int32

    public init(_ operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    /// Captures `zmq_errno()` right after the failing call, before anything else can overwrite it.
    static func last(_ operation: String) -> ZMQError { ZMQError(operation, code: zmq_errno()) }

    public var description: String { "\(operation): \(String(cString: zmq_strerror(code)))" }
}

/// A libzmq context: its I/O thread does the actual network transfers.
///
/// Every socket keeps its context alive, so `zmq_ctx_term` (which waits until all sockets are closed and their
/// linger has expired) only runs once the last socket is gone and cannot deadlock on a socket still in use.
/// libzmq contexts are thread-safe.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    public init() throws(ZMQError) {
        guard let handle = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        self.handle = handle
    }

    deinit {
        // EINTR only means a signal arrived while waiting for lingering messages: keep waiting.
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }
}

/// The socket types this project uses: the coordinator binds a ROUTER, each worker connects a DEALER; the
/// coordinator's authenticator answers libzmq's ZAP requests on a REP socket; a relaying worker binds a PULL
/// for the weights its parent forwards and connects a PUSH to each of its children.
public enum ZMQSocketKind: Sendable {
    case router, dealer, reply, pair, push, pull

    var code: Int32 {
        switch self {
        case .router: return ZMQ_ROUTER
        case .dealer: return ZMQ_DEALER
        case .reply: return ZMQ_REP
        case .pair: return ZMQ_PAIR
        case .push: return ZMQ_PUSH
        case .pull: return ZMQ_PULL
        }
    }
}

/// An integer socket option. libzmq takes most as C `int` but some as `int64_t`; the option knows which.
public struct ZMQIntOption: Sendable, CustomStringConvertible {
    let code: Int32
    let is64Bit: Bool
    public let description: String

    /// Milliseconds that unsent messages are kept after close; libzmq's default of -1 makes the context wait
    /// forever for a peer that never takes them.
    public static let linger = ZMQIntOption(code: ZMQ_LINGER, is64Bit: false, description: "linger")
    /// Messages queued per peer before a send fails (with `dontWait`) or blocks.
    public static let sendHighWaterMark = ZMQIntOption(code: ZMQ_SNDHWM, is64Bit: false, description: "sndhwm")
    public static let receiveHighWaterMark = ZMQIntOption(code: ZMQ_RCVHWM, is64Bit: false, description: "rcvhwm")
    /// 1: a ROUTER send to an unknown or disconnected peer fails with EHOSTUNREACH instead of being dropped.
    public static let routerMandatory = ZMQIntOption(code: ZMQ_ROUTER_MANDATORY, is64Bit: false, description: "router_mandatory")
    public static let heartbeatInterval = ZMQIntOption(code: ZMQ_HEARTBEAT_IVL, is64Bit: false, description: "heartbeat_ivl")
    public static let heartbeatTimeout = ZMQIntOption(code: ZMQ_HEARTBEAT_TIMEOUT, is64Bit: false, description: "heartbeat_timeout")
    /// Largest single frame accepted; a peer sending more is disconnected before the frame is buffered.
    public static let maxMessageSize = ZMQIntOption(code: ZMQ_MAXMSGSIZE, is64Bit: true, description: "maxmsgsize")
    /// Milliseconds a new connection may take to complete its ZMTP (and CURVE) handshake before it is closed.
    public static let handshakeInterval = ZMQIntOption(code: ZMQ_HANDSHAKE_IVL, is64Bit: false, description: "handshake_ivl")
    public static let reconnectInterval = ZMQIntOption(code: ZMQ_RECONNECT_IVL, is64Bit: false, description: "reconnect_ivl")
    public static let reconnectIntervalMax = ZMQIntOption(code: ZMQ_RECONNECT_IVL_MAX, is64Bit: false, description: "reconnect_ivl_max")
    /// 1: this socket is the CURVE server (it has the long-term key clients must know).
    public static let curveServer = ZMQIntOption(code: ZMQ_CURVE_SERVER, is64Bit: false, description: "curve_server")
}

/// A byte-string socket option.
public struct ZMQBytesOption: Sendable, CustomStringConvertible {
    let code: Int32
    public let description: String

    /// The identity a DEALER presents to a ROUTER (1…255 bytes, not starting with a zero byte).
    public static let routingID = ZMQBytesOption(code: ZMQ_ROUTING_ID, description: "routing_id")
    /// CURVE keys: 32 bytes, or their 40-character Z85 text.
    public static let curvePublicKey = ZMQBytesOption(code: ZMQ_CURVE_PUBLICKEY, description: "curve_publickey")
    public static let curveSecretKey = ZMQBytesOption(code: ZMQ_CURVE_SECRETKEY, description: "curve_secretkey")
    public static let curveServerKey = ZMQBytesOption(code: ZMQ_CURVE_SERVERKEY, description: "curve_serverkey")
    /// A non-empty domain makes libzmq consult the ZAP handler for every connection.
    public static let zapDomain = ZMQBytesOption(code: ZMQ_ZAP_DOMAIN, description: "zap_domain")
}

/// One frame of an outgoing multipart message.
public enum ZMQFrame {
    /// Copied into libzmq during `send`.
    case bytes([UInt8])
    /// Sent without copying: libzmq reads the memory from its I/O thread after `send` returns and retains
    /// `owner` until it is done. The memory must belong to `owner` and must not change until libzmq releases
    /// it (the owner's reference count drops back); changing it earlier sends torn data.
    case zeroCopy(UnsafeRawBufferPointer, owner: AnyObject)
}

/// A received frame, owned in place: large frames are read straight from libzmq's buffer, never copied into
/// an array. Immutable once received, so it may cross threads.
public final class ZMQMessage: @unchecked Sendable {
    let message: UnsafeMutablePointer<zmq_msg_t>

    /// An empty message for `zmq_msg_recv` to fill.
    init() {
        message = .allocate(capacity: 1)
        zmq_msg_init(message)
    }

    /// A message holding a copy of `bytes`: what a frame received from a peer with this content looks like.
    public init(copying bytes: [UInt8]) {
        message = .allocate(capacity: 1)
        // Only ENOMEM can fail here, which Swift treats as fatal for any allocation.
        if zmq_msg_init_size(message, bytes.count) != 0 { fatalError("zmq_msg_init_size: out of memory") }
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { zmq_msg_data(message).copyMemory(from: base, byteCount: source.count) }
        }
    }

    deinit {
        zmq_msg_close(message)
        message.deallocate()
    }

    /// Valid while this object is alive; no alignment is guaranteed (read with `loadUnaligned` or copy).
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: zmq_msg_data(message), count: zmq_msg_size(message))
    }

    public var count: Int { zmq_msg_size(message) }

    public var array: [UInt8] { Array(bytes) }
}

/// Events to wait for, or that occurred, in `ZMQSocket.poll`.
public struct ZMQPollEvents: OptionSet, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    /// A whole message can be received.
    public static let readable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLIN))
    /// A message can be sent without blocking.
    public static let writable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLOUT))
}

/// A ZeroMQ socket.
///
/// libzmq sockets are not thread-safe: use one from a single thread at a time. Handing it to another thread is
/// allowed when the handoff itself synchronises (thread start or join, a lock, a queue), which is why the class
/// is `@unchecked Sendable`. Closed explicitly with `close()` or when released; set `.linger` first.
public final class ZMQSocket: @unchecked Sendable {
    public let kind: ZMQSocketKind
    private let context: ZMQContext
    private var handle: UnsafeMutableRawPointer?

    public init(_ context: ZMQContext, _ kind: ZMQSocketKind) throws(ZMQError) {
        guard let handle = zmq_socket(context.handle, kind.code) else { throw ZMQError.last("zmq_socket \(kind)") }
        self.context = context
        self.kind = kind
        self.handle = handle
    }

    deinit { close() }

    /// Closes the socket; later calls on it fail with ENOTSOCK. Unsent messages linger as `.linger` says.
    public func close() {
        if let handle { zmq_close(handle) }
        handle = nil
    }

    private func requireOpen(_ operation: @autoclosure () -> String) throws(ZMQError) -> UnsafeMutableRawPointer {
        guard let handle else { throw ZMQError(operation(), code: ENOTSOCK) }
        return handle
    }

    public func bind(_ endpoint: String) throws(ZMQError) {
        let socket = try requireOpen("bind \(endpoint)")
        if zmq_bind(socket, endpoint) != 0 { throw ZMQError.last("bind \(endpoint)") }
    }

    /// Connects in the background: succeeds before (and whether or not) the peer is there; libzmq reconnects.
    public func connect(_ endpoint: String) throws(ZMQError) {
        let socket = try requireOpen("connect \(endpoint)")
        if zmq_connect(socket, endpoint) != 0 { throw ZMQError.last("connect \(endpoint)") }
    }

    public func setOption(_ option: ZMQIntOption, _ value: Int) throws(ZMQError) {
        let operation = "set \(option) \(value)"
        let socket = try requireOpen(operation)
        let rc: Int32
        if option.is64Bit {
            var v = Int64(value)
            rc = zmq_setsockopt(socket, option.code, &v, MemoryLayout<Int64>.size)
        } else {
            guard var v = Int32(exactly: value) else { throw ZMQError(operation, code: EINVAL) }
            rc = zmq_setsockopt(socket, option.code, &v, MemoryLayout<Int32>.size)
        }
        if rc != 0 { throw ZMQError.last(operation) }
    }

    public func setOption(_ option: ZMQBytesOption, _ value: [UInt8]) throws(ZMQError) {
        let operation = "set \(option)"
        let socket = try requireOpen(operation)
        let rc = value.withUnsafeBytes { zmq_setsockopt(socket, option.code, $0.baseAddress, $0.count) }
        if rc != 0 { throw ZMQError.last(operation) }
    }

    /// Publishes this socket's connection events (`ZMQ_EVENT_*` bits in `events`) on an inproc PAIR endpoint;
    /// returns a socket connected to it that receives them.
    public func monitor(_ context: ZMQContext, events: Int32, endpoint: String) throws(ZMQError) -> ZMQSocket {
        let socket = try requireOpen("monitor")
        if zmq_socket_monitor(socket, endpoint, events) != 0 { throw ZMQError.last("monitor \(endpoint)") }
        let reader = try ZMQSocket(context, .pair)
        try reader.setOption(.linger, 0)
        try reader.connect(endpoint)
        return reader
    }

    /// The endpoint of the last bind or connect, with a wildcard port resolved (`tcp://127.0.0.1:*` →
    /// `tcp://127.0.0.1:40123`).
    public func lastEndpoint() throws(ZMQError) -> String {
        let socket = try requireOpen("get last_endpoint")
        var buffer = [CChar](repeating: 0, count: 1024)
        var size = buffer.count
        if zmq_getsockopt(socket, ZMQ_LAST_ENDPOINT, &buffer, &size) != 0 { throw ZMQError.last("get last_endpoint") }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Sends `frames` as one multipart message, delivered whole or not at all. With `dontWait` a full queue
    /// fails with EAGAIN instead of blocking (forever: no send timeout is set). Sending to a ROUTER
    /// peer means putting its routing id in the first frame.
    public func send(_ frames: [ZMQFrame], dontWait: Bool = false) throws(ZMQError) {
        let socket = try requireOpen("send")
        let message = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        defer { message.deallocate() }
        for (i, frame) in frames.enumerated() {
            let flags = (i + 1 < frames.count ? ZMQ_SNDMORE : 0) | (dontWait ? ZMQ_DONTWAIT : 0)
            try Self.initialize(message, with: frame)
            // On success libzmq owns the content (and will call the free callback); on failure we still do.
            if zmq_msg_send(message, socket, flags) < 0 {
                let error = ZMQError.last("send frame \(i + 1) of \(frames.count)")
                zmq_msg_close(message)
                throw error
            }
        }
    }

    private static func initialize(_ message: UnsafeMutablePointer<zmq_msg_t>, with frame: ZMQFrame) throws(ZMQError) {
        switch frame {
        case .bytes(let bytes):
            if zmq_msg_init_size(message, bytes.count) != 0 { throw ZMQError.last("zmq_msg_init_size") }
            bytes.withUnsafeBytes { source in
                if let base = source.baseAddress { zmq_msg_data(message).copyMemory(from: base, byteCount: source.count) }
            }
        case .zeroCopy(let bytes, let owner):
            // The retained owner travels as the callback's hint; libzmq calls the callback exactly once, from
            // whichever thread drops the last reference to the content.
            let hint = Unmanaged.passRetained(owner).toOpaque()
            let data = UnsafeMutableRawPointer(mutating: bytes.baseAddress)
            let release: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { _, hint in
                if let hint { Unmanaged<AnyObject>.fromOpaque(hint).release() }
            }
            if zmq_msg_init_data(message, data, bytes.count, release, hint) != 0 {
                Unmanaged<AnyObject>.fromOpaque(hint).release()
                throw ZMQError.last("zmq_msg_init_data")
            }
        }
    }

    /// Receives one multipart message, waiting at most `timeoutMs` (negative: forever). Returns nil on timeout
    /// or when a signal interrupts the wait. A ROUTER's first frame is the sender's routing id.
    public func receiveMultipart(timeoutMs: Int) throws(ZMQError) -> [ZMQMessage]? {
        let socket = try requireOpen("receive")
        guard try Self.poll([(self, .readable)], timeoutMs: timeoutMs)[0].contains(.readable) else { return nil }
        var frames: [ZMQMessage] = []
        repeat {
            let frame = ZMQMessage()
            // libzmq delivers multipart messages atomically: once the first frame is readable, the rest are
            // queued too, so only the first receive can come back empty.
            if zmq_msg_recv(frame.message, socket, ZMQ_DONTWAIT) < 0 {
                let error = ZMQError.last("receive frame \(frames.count + 1)")
                if frames.isEmpty && (error.code == EAGAIN || error.code == EINTR) { return nil }
                throw error
            }
            frames.append(frame)
        } while zmq_msg_more(frames[frames.count - 1].message) != 0
        return frames
    }

    /// Waits until one of `items` has one of the events asked for, or `timeoutMs` passes (negative: forever).
    /// Returns the events that occurred, per item; all empty on timeout or when a signal interrupts the wait.
    public static func poll(_ items: [(ZMQSocket, ZMQPollEvents)], timeoutMs: Int) throws(ZMQError) -> [ZMQPollEvents] {
        var pollItems: [zmq_pollitem_t] = []
        for (socket, events) in items {
            pollItems.append(zmq_pollitem_t(socket: try socket.requireOpen("poll"), fd: 0, events: events.rawValue, revents: 0))
        }
        if zmq_poll(&pollItems, Int32(pollItems.count), timeoutMs) < 0 {
            let error = ZMQError.last("poll")
            if error.code == EINTR { return Array(repeating: [], count: items.count) }
            throw error
        }
        return pollItems.map { ZMQPollEvents(rawValue: $0.revents) }
    }
}
