import CharRNN

// The coordinator<->worker wire format, version 11 (4 added the numerics identity to hello; 5 cut bulk vectors
// into frames of at most 512 KiB, see WireChunks.swift; 6 added the relay tree: a relay endpoint and key in hello,
// the weights message a step's weights travel down the tree in, need-weights and relay-keys, see RelayRoute.swift;
// a ping from the coordinator carries the step being dealt; 7 added the reduction up the tree: a sum target in
// work orders and the sum message, see WireSum.swift, and a ping carries the next step once the step's root sum
// is in; 8 added tree-alive, the word workers in a step's reduction tree give their neighbours in it; 9 sends the
// root sum to the coordinator chunk by chunk, as between workers, so an 8 coordinator would refuse it; 10 added
// computed, with which a worker in the reduction up the tree frees its place for the next shard it pulls; 11 added
// a sum target for a root the coordinator sums from its two halves, which a 10 worker would refuse). Every
// message is one ZeroMQ multipart message:
// frame 0 holds a fixed header and a body; each bulk float vector (weights, a gradient) travels as frames of its
// own, sent zero-copy straight from the trainer's buffers: ceil(4·P / 524288) frames, all of 524288 bytes but
// the last. All integers and floats are little-endian; floats are IEEE float32 unless marked f64.
//
// Header (first 40 bytes of frame 0)
// | offset | size | field          | notes                                                               |
// |--------|------|----------------|---------------------------------------------------------------------|
// | 0      | 4    | magic          | ASCII "CRNN"                                                        |
// | 4      | 2    | version        | u16, 11                                                             |
// | 6      | 2    | type           | u16: 1 hello, 2 welcome, 3 work, 4 result, 5 ping, 6 shutdown, 7 error, 8 weights, 9 need-weights, 10 relay-keys, 11 sum, 12 tree-alive, 13 computed |
// | 8      | 8    | run id         | u64, chosen by the coordinator; 0 in hello (the worker knows none yet) |
// | 16     | 8    | step           | u64, global step the message belongs to (0 outside training)        |
// | 24     | 8    | payload length | u64, bytes after the header in frame 0 plus all bytes of frames 1…  |
// | 32     | 8    | checksum       | u64, see below                                                      |
//
// Bodies (rest of frame 0) and extra frames, by type
// | type     | body                                                                  | frames 1…              |
// |----------|-----------------------------------------------------------------------|------------------------|
// | hello    | u32 BLAS threads (1…1024), u32 name length (≤ 256), name (UTF-8, no control characters), u32 kernel length (≤ 64), OpenBLAS kernel name (printable ASCII), u32 version length (≤ 64), charrnn version (printable ASCII), u64 probe hash (see NumericsIdentity), u32 relay endpoint length (≤ 256; 0: the worker does not relay), relay endpoint (printable ASCII, no spaces), u32 relay key length (0, or 32 with keys and an endpoint), the worker's CURVE public key; the header's version is the worker's protocol version | none |
// | welcome  | u32 vocab V, u32 embed E, u32 units H, u32 seq T, u32 rows per shard R, u32 shard count S, u32 cell (0 GRU, 1 LSTM), u32 layers L, u64 parameter count P, f32 dropout rate (0 none, else in (0, 1)), u64 dropout seed | none |
// | work     | u64 epoch, u64 weight count (= P; or 0: no weight frames, the worker computes with the step's weights, which it was sent with an earlier order or gets in weights messages, and asks for them with need-weights when they do not come), u32 shard count n (1…S), then n shards: u32 index (< S, unique), u32 flags (bit 0: reset state; other bits 0), u32 rows (= R), u32 seq (= T), [R·W f32 hidden state (W = L·H, an LSTM's 2·L·H), absent when reset], R·T i32 inputs, R·T i32 targets (ids < V); then the sum target (WireSum.swift; with a target, n = 1) | P f32 weights, in k = ceil(4·P / 524288) frames (none with weight count 0) |
// | result   | u64 gradient count (= P), u32 shard count n (1…S), then n shards: u32 index (< S, unique), u32 rows (= R), f64 mean loss, R·W f32 final hidden state | n·k: P f32 gradient of each shard, in body order, k frames each |
// | ping     | empty                                                                 | none                   |
// | shutdown | empty                                                                 | none                   |
// | error    | u32 length (≤ 4096), message (UTF-8)                                  | none                   |
// | weights  | u32 chunk index i (< k), u32 fan-out (1…64), u32 route length m (≤ 4096), u32 keyed (0 or 1), then m × (u32 length 1…256, relay endpoint, printable ASCII, no spaces, and when keyed its worker's 32-byte CURVE public key): the workers below the recipient, in pre-order (RelayRoute) | one frame: chunk i of the step's P f32 weights, cut as above |
// | relay-keys | u32 n (≤ 4096), n × 32-byte CURVE public keys: coordinator → relaying worker of a run with keys, the worker keys its relay socket admits | none |
// | need-weights | empty: worker → coordinator, asking for the weights of the header's step (an order came without them, and they did not come by relay) | none |
// | sum      | see WireSum.swift: a node's summed gradient, the losses and states of its shards | gradient, then states |
// | tree-alive | see WireSum.swift: a token of progress in a step's reduction tree, passed between neighbours there | none |
// | computed | u32 shard index (< S): worker → coordinator, the shard of the header's step, dealt with a sum target, is computed and its result is in the worker's share of the reduction tree (it is answered by the root, or later by a result) | none |
//
// Checksum: an integrity check against corruption and framing bugs, not an authenticator. Segments are
// header bytes 0..<32, the body, then each extra frame (chunk) in order. Four u64 lanes start at
// 0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89. Within a segment of n bytes,
// little-endian u64 word k (the last one zero-padded) is folded into lane k mod 4 by
// lane = rotl64((lane ^ word) · 0x9E3779B97F4A7C15, 29); then n is folded into lane 0 the same way. The
// checksum folds lanes 0…3 in order into 0 the same way, then applies the MurmurHash3 64-bit finalizer.
// Word-at-a-time in independent lanes so a 16 MB frame costs a few milliseconds, not a byte-serial pass.
//
// Decoding checks, in order: header size, magic, version, type, run id (except in hello), frame count, that the
// declared length is within the limit for the type (derived from the welcome's sizes, so nothing is ever
// sized from an unchecked field), that it equals the bytes present, the checksum, then every count, index and
// token id of the body, and that every float (weights, states, gradients, losses) is finite. Only then is
// anything handed out. (Bulk floats, a result's gradients, a work order's weights, a weights chunk, are copied
// during the checksum's pass, into buffers sized from the already-checked length, and dropped if a later check
// fails: one read of every byte instead of three.)

#if !_endian(little)
#error("the wire format copies float32 and integers in host order, which must be little-endian")
#endif

/// Why a frame was refused (or could not be built); one line each.
public enum WireError: Error, Equatable, CustomStringConvertible {
    /// Fewer bytes than the header or its length field promise.
    case truncated(expected: Int, present: Int)
    /// A declared payload length beyond what the message type can need.
    case oversized(declared: UInt64, limit: Int)
    case badMagic
    case unsupportedVersion(UInt16)
    case unknownType(UInt16)
    case wrongRun(expected: UInt64, got: UInt64)
    case badChecksum
    case malformed(String)
    /// A NaN or infinity in the named part of the message.
    case nonFinite(String)

    public var description: String {
        switch self {
        case .truncated(let expected, let present): return "truncated frame: expected \(expected) bytes, got \(present)"
        case .oversized(let declared, let limit): return "oversized frame: payload of \(declared) bytes declared, at most \(limit) allowed"
        case .badMagic: return "not a charrnn frame (bad magic)"
        case .unsupportedVersion(let v): return "unsupported protocol version \(v) (this build speaks \(WireCodec.version))"
        case .unknownType(let t): return "unknown message type \(t)"
        case .wrongRun(let expected, let got): return "message for run \(hex(got)), expected run \(hex(expected))"
        case .badChecksum: return "checksum mismatch (corrupted frame)"
        case .malformed(let m): return "malformed message: \(m)"
        case .nonFinite(let what): return "non-finite value in \(what)"
        }
    }
}

private func hex(_ v: UInt64) -> String {
    let digits = String(v, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}


public enum WireMessage: Sendable {
    /// worker → coordinator, first message after connecting.
    case hello(WorkerHello)
    /// coordinator → worker: the run id (in the envelope) and the sizes every later message must match.
    case welcome(RunShape)
    /// coordinator → worker.
    /// With a sum target, the worker sums its shard into the step's reduction tree instead of answering.
    case work(WorkOrder, sum: SumTarget? = nil)
    /// coordinator → worker: an order of a step whose weights the worker was sent with an earlier order of the
    /// step (on the wire: a work message with weight count 0 and no weight frames).
    case workSameWeights(epoch: Int, shards: [WorkShard], sum: SumTarget? = nil)
    /// worker → coordinator: one entry per shard of the work order.
    case result([ShardResult])
    /// either way: liveness.
    case ping
    /// coordinator → worker: exit cleanly.
    case shutdown
    /// worker → coordinator: why it cannot go on.
    case error(String)
    /// coordinator or a relaying worker → worker: one chunk of the step's weights, and who to pass it on to.
    case weights(WeightsChunk)
    /// worker → coordinator: an order of the step came without weights, and they did not come by relay either.
    case needWeights
    /// coordinator → relaying worker, with keys: the worker keys its relay socket lets in (the run's authorized ones).
    case relayKeys([CurveKey])
    /// worker → the worker summing the node above (its relay socket), or the root's → coordinator.
    case sum(SumPart)
    /// worker → a neighbour in the step's reduction tree (the peer it sums for, or one that sums for it, whose top
    /// node is `node`): token `seq` of progress made `age` seconds ago by the worker whose relay is `origin` (see
    /// `ReductionShare`); `from` is the sender's relay, for the answer.
    case treeAlive(node: ReductionNode, origin: String, seq: UInt64, age: Double, from: RelayPeer)
    /// worker → coordinator: `shard` of the header's step, an order with a sum target, is computed and its result
    /// is in the tree; the worker has room for the next shard (the result itself reaches the coordinator in the
    /// root, or as a result if the worker gives up on the tree).
    case computed(shard: Int)
}

/// A decoded message with its header fields.
public struct WireEnvelope: Sendable {
    public var runID: UInt64
    public var step: Int
    public var message: WireMessage
}

private enum MessageType: UInt16 {
    case hello = 1, welcome, work, result, ping, shutdown, error, weights, needWeights, relayKeys, sum, treeAlive, computed
}

/// Encodes and decodes messages of one run. A worker starts with no run id and no shape (only control messages
/// and the welcome decode) and adopts both from the welcome; the coordinator knows both from the start.
public struct WireCodec: Sendable {
    public static let version: UInt16 = 11
    public static let headerSize = 40
    public static let maxNameBytes = 256
    public static let maxErrorBytes = 4096
    private static let magic: [UInt8] = Array("CRNN".utf8)

    /// Messages for another run are refused (hello excepted); nil accepts any run.
    public var runID: UInt64?
    /// Needed to encode or decode work and results.
    public var shape: RunShape?

    public init(runID: UInt64? = nil, shape: RunShape? = nil) {
        self.runID = runID
        self.shape = shape
    }

    // MARK: Encoding

    /// The frames of `message`, validated by the same rules as decoding. Weights and gradients become
    /// zero-copy frames that reference (and retain) their `FloatBuffer`s.
    public func encode(_ message: WireMessage, step: Int = 0) throws(WireError) -> [ZMQFrame] {
        guard step >= 0 else { throw .malformed("negative step \(step)") }
        var body = WireWriter()
        var bulk: [FloatBuffer] = []
        // The frames after the first, each a zero-copy view of the buffer that owns it.
        var extra: [(bytes: UnsafeRawBufferPointer, owner: FloatBuffer)] { bulk.flatMap { b in Self.chunkSegments(b).map { ($0, b) } } }
        var chunk: (bytes: UnsafeRawBufferPointer, owner: FloatBuffer)?
        let type: MessageType
        switch message {
        case .hello(let hello):
            type = .hello
            try Self.encodeHello(hello, into: &body)
        case .welcome(let shape):
            type = .welcome
            Self.encodeWelcome(shape, into: &body)
        case .work(let order, let target):
            type = .work
            bulk = try encodeWork(epoch: order.epoch, shards: order.shards, weights: order.weights, target: target, into: &body)
        case .workSameWeights(let epoch, let shards, let target):
            type = .work
            bulk = try encodeWork(epoch: epoch, shards: shards, weights: nil, target: target, into: &body)
        case .result(let shards):
            type = .result
            bulk = try encodeResult(shards, into: &body)
        case .ping:
            type = .ping
        case .shutdown:
            type = .shutdown
        case .error(let text):
            type = .error
            try Self.encodeError(text, into: &body)
        case .weights(let weights):
            type = .weights
            chunk = (try encodeWeights(weights, into: &body), weights.floats)
        case .needWeights:
            type = .needWeights
        case .relayKeys(let keys):
            type = .relayKeys
            try Self.encodeRelayKeys(keys, into: &body)
        case .sum(let part):
            type = .sum
            bulk = try encodeSum(part, into: &body)
        case .treeAlive(let node, let origin, let seq, let age, let from):
            type = .treeAlive
            try encodeTreeAlive(node, origin: origin, seq: seq, age: age, from: from, into: &body)
        case .computed(let shard):
            type = .computed
            guard shard >= 0, shard < (try requireShape("computed")).shardCount else { throw .malformed("computed shard \(shard) out of range") }
            body.u32(shard)
        }
        let frames = chunk.map { [$0] } ?? extra

        var frame = WireWriter()
        frame.bytes(Self.magic)
        frame.u16(Self.version)
        frame.u16(type.rawValue)
        frame.u64(runID ?? 0)
        frame.u64(step)
        frame.u64(body.output.count + frames.reduce(0) { $0 + $1.bytes.count })
        var checksum = WireChecksum()
        frame.output.withUnsafeBytes { checksum.add($0) }
        body.output.withUnsafeBytes { checksum.add($0) }
        for segment in frames { checksum.add(segment.bytes) }
        frame.u64(checksum.value)
        frame.output.append(contentsOf: body.output)
        return [.bytes(frame.output)] + frames.map { .zeroCopy($0.bytes, owner: $0.owner) }
    }

    // MARK: Decoding

    /// Validates and decodes a message (without a ROUTER's routing-id frame). Nothing is allocated from the
    /// frames until every check has passed.
    public func decode(_ frames: some Collection<ZMQMessage>) throws(WireError) -> WireEnvelope {
        let messages = Array(frames)
        defer { withExtendedLifetime(messages) {} }
        return try decode(raw: messages.map(\.bytes))
    }

    private func decode(raw frames: [UnsafeRawBufferPointer]) throws(WireError) -> WireEnvelope {
        guard let first = frames.first else { throw .truncated(expected: Self.headerSize, present: 0) }
        guard first.count >= Self.headerSize else { throw .truncated(expected: Self.headerSize, present: first.count) }
        var header = WireReader(first)
        guard try header.take(4, "magic").elementsEqual(Self.magic) else { throw .badMagic }
        let version = try header.u16("version")
        guard version == Self.version else { throw .unsupportedVersion(version) }
        let rawType = try header.u16("type")
        guard let type = MessageType(rawValue: rawType) else { throw .unknownType(rawType) }
        let run = try header.u64("run id")
        if let runID, type != .hello, run != runID { throw .wrongRun(expected: runID, got: run) }
        let step = try header.u64("step")
        let declared = try header.u64("payload length")
        let checksum = try header.u64("checksum")

        let (limit, frameCounts) = try limits(type)
        guard frameCounts.contains(frames.count) else {
            throw .malformed("\(type) message in \(frames.count) frames, expected \(frameCounts.lowerBound)…\(frameCounts.upperBound)")
        }
        guard declared <= UInt64(limit) else { throw .oversized(declared: declared, limit: limit) }
        let present = frames.reduce(-Self.headerSize) { $0 + $1.count }
        guard declared <= UInt64(present) else { throw .truncated(expected: Int(declared), present: present) }
        guard declared == UInt64(present) else { throw .malformed("\(present - Int(declared)) bytes beyond the declared payload") }

        let body = UnsafeRawBufferPointer(rebasing: first[Self.headerSize...])
        var sum = WireChecksum()
        sum.add(UnsafeRawBufferPointer(rebasing: first[..<32]))
        sum.add(body)
        // Bulk floats (a result's gradients, a work order's weights, a weights chunk) are copied and checked for
        // finiteness in the checksum's pass over their frames; the checks still apply in the order listed above.
        // Other types have no frames beyond the first.
        let received = type == .result || type == .work
            ? Self.checksumChunks(frames.dropFirst(), floats: try requireShape("\(type)").parameterCount, into: &sum) : nil
        let chunk = type == .weights ? Self.checksumChunk(frames[1], into: &sum) : nil
        let summed = type == .sum ? Self.checksumSum(frames.dropFirst(), body: body, try requireShape("sum"), into: &sum) : nil
        guard sum.value == checksum else { throw .badChecksum }
        guard let stepValue = Int(exactly: step) else { throw .malformed("step \(step) out of range") }

        var reader = WireReader(body)
        let message: WireMessage
        switch type {
        case .hello: message = try decodeHello(&reader)
        case .welcome: message = try decodeWelcome(&reader)
        case .work: message = try decodeWork(&reader, weights: frames.dropFirst(), received: received)
        case .result: message = try decodeResult(&reader, gradients: frames.dropFirst(), received: received)
        case .ping: message = .ping
        case .shutdown: message = .shutdown
        case .error: message = try decodeError(&reader)
        case .weights: message = try decodeWeights(&reader, frame: frames[1], received: chunk)
        case .needWeights: message = .needWeights
        case .relayKeys: message = try decodeRelayKeys(&reader)
        case .sum: message = try decodeSum(&reader, frames: frames.dropFirst(), received: summed)
        case .treeAlive: message = try decodeTreeAlive(&reader)
        case .computed:
            let shard = Int(try reader.u32("shard index"))
            guard shard < (try requireShape("computed")).shardCount else { throw .malformed("computed shard \(shard) out of range") }
            message = .computed(shard: shard)
        }
        try reader.finish()
        return WireEnvelope(runID: run, step: stepValue, message: message)
    }

    /// The largest payload a message of `type` can carry, and how many frames it can have.
    private func limits(_ type: MessageType) throws(WireError) -> (Int, ClosedRange<Int>) {
        switch type {
        case .hello: return (8 + Self.maxNameBytes + 2 * (4 + NumericsIdentity.maxFieldBytes) + 8 + 4 + RelayRoute.maxEndpointBytes + 4 + 32, 1...1)
        case .relayKeys: return (4 + 32 * RelayRoute.maxEndpoints, 1...1)
        case .welcome: return (52, 1...1)
        case .ping, .shutdown, .needWeights: return (0, 1...1)
        case .computed: return (4, 1...1)
        case .treeAlive: return (20 + 2 * (4 + RelayRoute.maxEndpointBytes) + 4 + 32, 1...1)
        case .weights: return (Self.largestWeightsBody + Self.chunkBytes, 2...2)
        case .error: return (4 + Self.maxErrorBytes, 1...1)
        case .work:
            let s = try requireShape("work")
            let k = Self.chunkCount(floats: s.parameterCount)
            return (Self.largestBody(.work, s) + 4 * s.parameterCount, 1...(1 + k))
        case .result:
            let s = try requireShape("result")
            let k = Self.chunkCount(floats: s.parameterCount)
            return (Self.largestBody(.result, s) + s.shardCount * 4 * s.parameterCount, (1 + k)...(1 + s.shardCount * k))
        case .sum:
            let s = try requireShape("sum")
            let k = Self.chunkCount(floats: s.parameterCount)
            return (28 + 8 * s.shardCount + 4 * s.parameterCount + s.shardCount * 4 * s.stateCount, 2...(1 + k + s.shardCount * Self.stateChunks(s)))
        }
    }

    /// The largest body (frame 0 after the header) of a work order or result of a run of `s`'s sizes.
    private static func largestBody(_ type: MessageType, _ s: RunShape) -> Int {
        type == .work ? 20 + s.shardCount * (16 + 4 * s.stateCount + 8 * s.tokenCount) + largestTarget : 12 + s.shardCount * (16 + 4 * s.stateCount)
    }

    /// The largest single frame a worker of a run of `shape`'s sizes can need to send the coordinator (a result's
    /// first frame, or a chunk; a work order's first frame too, as the bound is shared), for the coordinator's
    /// socket: anything larger is refused by libzmq before it is buffered. (Weights messages, whose route can
    /// make a first frame of ~1 MB, never go to the coordinator; a relay's socket has its own bound.)
    public static func largestFrame(_ shape: RunShape) -> Int {
        headerSize + max(chunkBytes, largestBody(.work, shape), largestBody(.result, shape))
    }

    func requireShape(_ what: String) throws(WireError) -> RunShape {
        guard let shape else { throw .malformed("\(what) message before the run's sizes are known") }
        return shape
    }
}
