import CharRNN

// The coordinator<->worker wire format, version 3. Every message is one ZeroMQ multipart message:
// frame 0 holds a fixed header and a body; bulk float vectors (weights, gradients) travel as frames of their
// own so they can be sent zero-copy straight from the trainer's buffers. All integers and floats are
// little-endian; floats are IEEE float32 unless marked f64.
//
// Header (first 40 bytes of frame 0)
// | offset | size | field          | notes                                                               |
// |--------|------|----------------|---------------------------------------------------------------------|
// | 0      | 4    | magic          | ASCII "CRNN"                                                        |
// | 4      | 2    | version        | u16, 3                                                              |
// | 6      | 2    | type           | u16: 1 hello, 2 welcome, 3 work, 4 result, 5 ping, 6 shutdown, 7 error |
// | 8      | 8    | run id         | u64, chosen by the coordinator; 0 in hello (the worker knows none yet) |
// | 16     | 8    | step           | u64, global step the message belongs to (0 outside training)        |
// | 24     | 8    | payload length | u64, bytes after the header in frame 0 plus all bytes of frames 1…  |
// | 32     | 8    | checksum       | u64, see below                                                      |
//
// Bodies (rest of frame 0) and extra frames, by type
// | type     | body                                                                  | frames 1…              |
// |----------|-----------------------------------------------------------------------|------------------------|
// | hello    | u32 BLAS threads (1…1024), u32 name length (≤ 256), name (UTF-8, no control characters); the header's version is the worker's protocol version | none |
// | welcome  | u32 vocab V, u32 embed E, u32 units H, u32 seq T, u32 rows per shard R, u32 shard count S, u32 cell (0 GRU, 1 LSTM), u32 layers L, u64 parameter count P, f32 dropout rate (0 none, else in (0, 1)), u64 dropout seed | none |
// | work     | u64 epoch, u64 weight count (= P), u32 shard count n (1…S), then n shards: u32 index (< S, unique), u32 flags (bit 0: reset state; other bits 0), u32 rows (= R), u32 seq (= T), [R·W f32 hidden state (W = L·H, an LSTM's 2·L·H), absent when reset], R·T i32 inputs, R·T i32 targets (ids < V) | 1: P f32 weights |
// | result   | u64 gradient count (= P), u32 shard count n (1…S), then n shards: u32 index (< S, unique), u32 rows (= R), f64 mean loss, R·W f32 final hidden state | n: P f32 gradient of each shard, in body order |
// | ping     | empty                                                                 | none                   |
// | shutdown | empty                                                                 | none                   |
// | error    | u32 length (≤ 4096), message (UTF-8)                                  | none                   |
//
// Checksum: an integrity check against corruption and framing bugs, not an authenticator. Segments are
// header bytes 0..<32, the body, then each extra frame in order. Four u64 lanes start at
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
// anything allocated.

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

/// The sizes of a run that every work and result message must agree with: what `welcome` tells a worker.
public struct RunShape: Equatable, Sendable, CustomStringConvertible {
    public let config: ModelConfig
    public let seq: Int
    public let rowsPerShard: Int
    public let shardCount: Int
    /// Floats in the weight and gradient vectors (`ParameterLayout(config).count`).
    public let parameterCount: Int
    /// The masks a worker's shard step draws in training; they depend on the seed, step and shard only.
    public let dropout: Dropout?

    /// Validates the sizes, so an absurd welcome can never size an allocation or overflow arithmetic.
    public init(config: ModelConfig, seq: Int, rowsPerShard: Int, shardCount: Int, dropout: Dropout? = nil) throws(WireError) {
        let bounds: [(String, Int, Int)] = [
            ("vocab", config.vocab, 1 << 24), ("embed", config.embed, 1 << 16), ("units", config.units, 1 << 16),
            ("layers", config.layers, 1 << 8),
            ("seq", seq, 1 << 20), ("rows per shard", rowsPerShard, 1 << 20), ("shard count", shardCount, 1 << 16),
        ]
        for (name, value, limit) in bounds where !(1...limit).contains(value) {
            throw .malformed("\(name) \(value) outside 1…\(limit)")
        }
        if let d = dropout, !(d.rate >= 0 && d.rate < 1) { throw .malformed("dropout rate \(d.rate) outside [0, 1)") }
        if rowsPerShard * seq > 1 << 28 || config.stateCount(rows: rowsPerShard) > 1 << 28 {
            throw .malformed("shard of \(rowsPerShard) rows too large for seq \(seq) and \(config)")
        }
        let count = ParameterLayout(config).count
        if count > 1 << 31 { throw .malformed("model of \(count) parameters too large") }
        self.config = config
        self.seq = seq
        self.rowsPerShard = rowsPerShard
        self.shardCount = shardCount
        self.parameterCount = count
        // Rate 0 is no dropout, which is how the welcome encodes none.
        self.dropout = dropout.flatMap { $0.rate > 0 ? $0 : nil }
    }

    func with(dropout: Dropout?) throws(WireError) -> RunShape {
        try RunShape(config: config, seq: seq, rowsPerShard: rowsPerShard, shardCount: shardCount, dropout: dropout)
    }

    var stateCount: Int { config.stateCount(rows: rowsPerShard) }
    var tokenCount: Int { rowsPerShard * seq }

    public var description: String {
        "\(config), seq \(seq), \(shardCount) shards of \(rowsPerShard) rows, \(parameterCount) parameters"
            + (dropout.map { ", dropout \($0.rate)" } ?? "")
    }
}

/// What a worker announces when it connects.
public struct WorkerHello: Equatable, Sendable {
    public var name: String
    public var blasThreads: Int

    public init(name: String, blasThreads: Int) {
        self.name = name
        self.blasThreads = blasThreads
    }
}

public enum WireMessage: Sendable {
    /// worker → coordinator, first message after connecting.
    case hello(WorkerHello)
    /// coordinator → worker: the run id (in the envelope) and the sizes every later message must match.
    case welcome(RunShape)
    /// coordinator → worker.
    case work(WorkOrder)
    /// worker → coordinator: one entry per shard of the work order.
    case result([ShardResult])
    /// either way: liveness.
    case ping
    /// coordinator → worker: exit cleanly.
    case shutdown
    /// worker → coordinator: why it cannot go on.
    case error(String)
}

/// A decoded message with its header fields.
public struct WireEnvelope: Sendable {
    public var runID: UInt64
    public var step: Int
    public var message: WireMessage
}

private enum MessageType: UInt16 {
    case hello = 1, welcome, work, result, ping, shutdown, error
}

/// Encodes and decodes messages of one run. A worker starts with no run id and no shape (only control messages
/// and the welcome decode) and adopts both from the welcome; the coordinator knows both from the start.
public struct WireCodec: Sendable {
    public static let version: UInt16 = 3
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
        let type: MessageType
        switch message {
        case .hello(let hello):
            type = .hello
            try Self.checkThreads(hello.blasThreads)
            let name = Array(hello.name.utf8)
            try Self.checkName(name)
            body.u32(hello.blasThreads)
            body.u32(name.count)
            body.bytes(name)
        case .welcome(let shape):
            type = .welcome
            let c = shape.config
            let cell = Cell.allCases.firstIndex(of: c.cell)!
            for value in [c.vocab, c.embed, c.units, shape.seq, shape.rowsPerShard, shape.shardCount, cell, c.layers] {
                body.u32(value)
            }
            body.u64(shape.parameterCount)
            body.f32(shape.dropout?.rate ?? 0)
            body.u64(shape.dropout?.seed ?? 0)
        case .work(let order):
            type = .work
            let shape = try requireShape("work")
            guard order.epoch >= 0 else { throw .malformed("negative epoch \(order.epoch)") }
            try Self.checkShardIndices(order.shards.map(\.index), shape)
            try Self.checkParameters(order.weights.count, shape, "weights")
            body.u64(order.epoch)
            body.u64(order.weights.count)
            body.u32(order.shards.count)
            for shard in order.shards {
                guard shard.rows.rows == shape.rowsPerShard, shard.rows.seq == shape.seq else {
                    throw .malformed("shard \(shard.index) is \(shard.rows.rows)×\(shard.rows.seq), expected \(shape.rowsPerShard)×\(shape.seq)")
                }
                for (part, ids) in [("inputs", shard.rows.inputs), ("targets", shard.rows.targets)] {
                    if let id = ids.withUnsafeBytes({ Self.outOfVocabulary($0, shape) }) {
                        throw Self.tokenError(id, shape, "\(part) of shard \(shard.index)")
                    }
                }
                body.u32(shard.index)
                body.u32(shard.state == nil ? 1 : 0)
                body.u32(shard.rows.rows)
                body.u32(shard.rows.seq)
                if let state = shard.state {
                    guard state.count == shape.stateCount else {
                        throw .malformed("state of shard \(shard.index) has \(state.count) floats, expected \(shape.stateCount)")
                    }
                    try Self.checkFinite(state.rawBytes, "hidden state of shard \(shard.index)")
                    body.bytes(state.rawBytes)
                }
                shard.rows.inputs.withUnsafeBytes { body.bytes($0) }
                shard.rows.targets.withUnsafeBytes { body.bytes($0) }
            }
            try Self.checkFinite(order.weights.rawBytes, "weights")
            bulk = [order.weights]
        case .result(let shards):
            type = .result
            let shape = try requireShape("result")
            try Self.checkShardIndices(shards.map(\.index), shape)
            body.u64(shape.parameterCount)
            body.u32(shards.count)
            for shard in shards {
                guard shard.loss.isFinite else { throw .nonFinite("loss of shard \(shard.index)") }
                guard shard.state.count == shape.stateCount else {
                    throw .malformed("state of shard \(shard.index) has \(shard.state.count) floats, expected \(shape.stateCount)")
                }
                try Self.checkParameters(shard.gradient.count, shape, "gradient of shard \(shard.index)")
                try Self.checkFinite(shard.state.rawBytes, "hidden state of shard \(shard.index)")
                try Self.checkFinite(shard.gradient.rawBytes, "gradient of shard \(shard.index)")
                body.u32(shard.index)
                body.u32(shape.rowsPerShard)
                body.u64(shard.loss.bitPattern)
                body.bytes(shard.state.rawBytes)
            }
            bulk = shards.map(\.gradient)
        case .ping:
            type = .ping
        case .shutdown:
            type = .shutdown
        case .error(let text):
            type = .error
            let utf8 = Array(text.utf8)
            guard utf8.count <= Self.maxErrorBytes else { throw .malformed("error message of \(utf8.count) bytes exceeds \(Self.maxErrorBytes)") }
            body.u32(utf8.count)
            body.bytes(utf8)
        }

        var frame = WireWriter()
        frame.bytes(Self.magic)
        frame.u16(Self.version)
        frame.u16(type.rawValue)
        frame.u64(runID ?? 0)
        frame.u64(step)
        frame.u64(body.output.count + bulk.reduce(0) { $0 + $1.count * 4 })
        var checksum = WireChecksum()
        frame.output.withUnsafeBytes { checksum.add($0) }
        body.output.withUnsafeBytes { checksum.add($0) }
        for buffer in bulk { checksum.add(buffer.rawBytes) }
        frame.u64(checksum.value)
        frame.output.append(contentsOf: body.output)
        return [.bytes(frame.output)] + bulk.map { .zeroCopy($0.rawBytes, owner: $0) }
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
        for frame in frames.dropFirst() { sum.add(frame) }
        guard sum.value == checksum else { throw .badChecksum }
        guard let stepValue = Int(exactly: step) else { throw .malformed("step \(step) out of range") }

        var reader = WireReader(body)
        let message: WireMessage
        switch type {
        case .hello: message = try decodeHello(&reader)
        case .welcome: message = try decodeWelcome(&reader)
        case .work: message = try decodeWork(&reader, weights: frames[1])
        case .result: message = try decodeResult(&reader, gradients: Array(frames.dropFirst()))
        case .ping: message = .ping
        case .shutdown: message = .shutdown
        case .error: message = try decodeError(&reader)
        }
        try reader.finish()
        return WireEnvelope(runID: run, step: stepValue, message: message)
    }

    /// The largest payload a message of `type` can carry, and how many frames it can have.
    private func limits(_ type: MessageType) throws(WireError) -> (Int, ClosedRange<Int>) {
        switch type {
        case .hello: return (8 + Self.maxNameBytes, 1...1)
        case .welcome: return (52, 1...1)
        case .ping, .shutdown: return (0, 1...1)
        case .error: return (4 + Self.maxErrorBytes, 1...1)
        case .work:
            let s = try requireShape("work")
            let shard = 16 + 4 * s.stateCount + 8 * s.tokenCount
            return (20 + s.shardCount * shard + 4 * s.parameterCount, 2...2)
        case .result:
            let s = try requireShape("result")
            let shard = 16 + 4 * s.stateCount + 4 * s.parameterCount
            return (12 + s.shardCount * shard, 2...(s.shardCount + 1))
        }
    }

    private func decodeHello(_ reader: inout WireReader) throws(WireError) -> WireMessage {
        let threads = Int(try reader.u32("BLAS threads"))
        try Self.checkThreads(threads)
        let length = Int(try reader.u32("name length"))
        guard length <= Self.maxNameBytes else { throw .malformed("worker name of \(length) bytes exceeds \(Self.maxNameBytes)") }
        let name = Array(try reader.take(length, "worker name"))
        try Self.checkName(name)
        return .hello(WorkerHello(name: String(decoding: name, as: UTF8.self), blasThreads: threads))
    }

    private func decodeWelcome(_ reader: inout WireReader) throws(WireError) -> WireMessage {
        var sizes: [Int] = []
        for field in ["vocab", "embed", "units", "seq", "rows per shard", "shard count", "cell", "layers"] {
            sizes.append(Int(try reader.u32(field)))
        }
        guard Cell.allCases.indices.contains(sizes[6]) else { throw .malformed("cell \(sizes[6]) unknown") }
        let shape = try RunShape(
            config: ModelConfig(vocab: sizes[0], embed: sizes[1], units: sizes[2], cell: Cell.allCases[sizes[6]], layers: sizes[7]),
            seq: sizes[3], rowsPerShard: sizes[4], shardCount: sizes[5])
        let count = try reader.u64("parameter count")
        // Different counts for the same sizes mean the two builds lay out parameters differently.
        guard count == UInt64(shape.parameterCount) else {
            throw .malformed("coordinator counts \(count) parameters for \(shape.config), this build \(shape.parameterCount)")
        }
        let dropout = Dropout(rate: try reader.f32("dropout rate"), seed: try reader.u64("dropout seed"))
        return .welcome(try shape.with(dropout: dropout))
    }

    private func decodeWork(_ reader: inout WireReader, weights: UnsafeRawBufferPointer) throws(WireError) -> WireMessage {
        let shape = try requireShape("work")
        let epoch = try reader.u64("epoch")
        guard let epochValue = Int(exactly: epoch) else { throw .malformed("epoch \(epoch) out of range") }
        let weightCount = try reader.u64("weight count")
        try Self.checkParameters(weightCount, shape, "weights")
        guard weights.count == 4 * shape.parameterCount else {
            throw .malformed("weights frame of \(weights.count) bytes, expected \(4 * shape.parameterCount)")
        }
        let shardCount = try Self.shardCount(&reader, shape)

        // First pass: locate and check every part; the second pass only copies.
        var views: [(index: Int, state: UnsafeRawBufferPointer?, inputs: UnsafeRawBufferPointer, targets: UnsafeRawBufferPointer)] = []
        for _ in 0..<shardCount {
            let index = Int(try reader.u32("shard index"))
            let flags = try reader.u32("shard flags")
            guard flags <= 1 else { throw .malformed("unknown flags \(flags) in shard \(index)") }
            try Self.checkShardSize(&reader, index, shape)
            var state: UnsafeRawBufferPointer?
            if flags == 0 {
                state = try reader.take(4 * shape.stateCount, "hidden state of shard \(index)")
                try Self.checkFinite(state!, "hidden state of shard \(index)")
            }
            let inputs = try reader.take(4 * shape.tokenCount, "inputs of shard \(index)")
            let targets = try reader.take(4 * shape.tokenCount, "targets of shard \(index)")
            try Self.checkTokens(inputs, shape, "inputs of shard \(index)")
            try Self.checkTokens(targets, shape, "targets of shard \(index)")
            views.append((index, state, inputs, targets))
        }
        try reader.finish()
        try Self.checkShardIndices(views.map(\.index), shape)
        try Self.checkFinite(weights, "weights")

        let shards = views.map { view in
            WorkShard(
                index: view.index, state: view.state.map(FloatBuffer.init(wireBytes:)),
                rows: ShardRows(rows: shape.rowsPerShard, seq: shape.seq, inputs: Self.int32s(view.inputs), targets: Self.int32s(view.targets)))
        }
        return .work(WorkOrder(epoch: epochValue, shards: shards, weights: FloatBuffer(wireBytes: weights)))
    }

    private func decodeResult(_ reader: inout WireReader, gradients: [UnsafeRawBufferPointer]) throws(WireError) -> WireMessage {
        let shape = try requireShape("result")
        let gradientCount = try reader.u64("gradient count")
        try Self.checkParameters(gradientCount, shape, "gradients")
        let shardCount = try Self.shardCount(&reader, shape)
        guard gradients.count == shardCount else {
            throw .malformed("\(shardCount) shards but \(gradients.count) gradient frames")
        }
        var views: [(index: Int, loss: Double, state: UnsafeRawBufferPointer)] = []
        for _ in 0..<shardCount {
            let index = Int(try reader.u32("shard index"))
            try Self.checkShardRows(Int(try reader.u32("shard rows")), index, shape)
            let loss = Double(bitPattern: try reader.u64("loss of shard \(index)"))
            guard loss.isFinite else { throw .nonFinite("loss of shard \(index)") }
            let state = try reader.take(4 * shape.stateCount, "hidden state of shard \(index)")
            try Self.checkFinite(state, "hidden state of shard \(index)")
            views.append((index, loss, state))
        }
        try reader.finish()
        try Self.checkShardIndices(views.map(\.index), shape)
        for (view, gradient) in zip(views, gradients) {
            guard gradient.count == 4 * shape.parameterCount else {
                throw .malformed("gradient frame of shard \(view.index) has \(gradient.count) bytes, expected \(4 * shape.parameterCount)")
            }
            try Self.checkFinite(gradient, "gradient of shard \(view.index)")
        }
        return .result(zip(views, gradients).map { view, gradient in
            ShardResult(index: view.index, loss: view.loss, state: FloatBuffer(wireBytes: view.state), gradient: FloatBuffer(wireBytes: gradient))
        })
    }

    private func decodeError(_ reader: inout WireReader) throws(WireError) -> WireMessage {
        let length = Int(try reader.u32("error length"))
        guard length <= Self.maxErrorBytes else { throw .malformed("error message of \(length) bytes exceeds \(Self.maxErrorBytes)") }
        let text = try reader.take(length, "error message")
        guard let string = String(validating: text, as: UTF8.self) else { throw .malformed("error message is not UTF-8") }
        return .error(string)
    }

    // MARK: Checks shared by encoding and decoding

    private func requireShape(_ what: String) throws(WireError) -> RunShape {
        guard let shape else { throw .malformed("\(what) message before the run's sizes are known") }
        return shape
    }

    private static func checkThreads(_ threads: Int) throws(WireError) {
        guard (1...1024).contains(threads) else { throw .malformed("BLAS threads \(threads) outside 1…1024") }
    }

    /// Names end up in logs and status lines: bounded, UTF-8, and unable to forge lines or terminal escapes.
    private static func checkName(_ name: [UInt8]) throws(WireError) {
        guard name.count <= maxNameBytes else { throw .malformed("worker name of \(name.count) bytes exceeds \(maxNameBytes)") }
        guard let string = String(validating: name, as: UTF8.self) else { throw .malformed("worker name is not UTF-8") }
        guard !string.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .malformed("worker name contains control characters")
        }
    }

    private static func checkParameters<I: BinaryInteger>(_ count: I, _ shape: RunShape, _ what: String) throws(WireError) {
        guard count == shape.parameterCount else { throw .malformed("\(what) have \(count) floats, expected \(shape.parameterCount)") }
    }

    private static func shardCount(_ reader: inout WireReader, _ shape: RunShape) throws(WireError) -> Int {
        let count = Int(try reader.u32("shard count"))
        guard (1...shape.shardCount).contains(count) else { throw .malformed("\(count) shards in one message, expected 1…\(shape.shardCount)") }
        return count
    }

    private static func checkShardSize(_ reader: inout WireReader, _ index: Int, _ shape: RunShape) throws(WireError) {
        let rows = Int(try reader.u32("shard rows"))
        let seq = Int(try reader.u32("shard seq"))
        guard rows == shape.rowsPerShard, seq == shape.seq else {
            throw .malformed("shard \(index) is \(rows)×\(seq), expected \(shape.rowsPerShard)×\(shape.seq)")
        }
    }

    private static func checkShardRows(_ rows: Int, _ index: Int, _ shape: RunShape) throws(WireError) {
        guard rows == shape.rowsPerShard else { throw .malformed("shard \(index) has \(rows) rows, expected \(shape.rowsPerShard)") }
    }

    private static func checkShardIndices(_ indices: [Int], _ shape: RunShape) throws(WireError) {
        guard (1...shape.shardCount).contains(indices.count) else {
            throw .malformed("\(indices.count) shards in one message, expected 1…\(shape.shardCount)")
        }
        var seen = Set<Int>()
        for index in indices {
            guard (0..<shape.shardCount).contains(index) else { throw .malformed("shard index \(index) outside 0..<\(shape.shardCount)") }
            guard seen.insert(index).inserted else { throw .malformed("shard \(index) appears twice") }
        }
    }

    private static func checkTokens(_ bytes: UnsafeRawBufferPointer, _ shape: RunShape, _ what: String) throws(WireError) {
        if let id = outOfVocabulary(bytes, shape) { throw tokenError(id, shape, what) }
    }

    /// The first token id (int32 values in `bytes`) outside the vocabulary, if any.
    private static func outOfVocabulary(_ bytes: UnsafeRawBufferPointer, _ shape: RunShape) -> Int32? {
        let vocab = UInt32(shape.config.vocab)
        for i in 0..<bytes.count / 4 {
            // Unsigned comparison rejects negative ids too.
            let id = bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
            if id >= vocab { return Int32(bitPattern: id) }
        }
        return nil
    }

    private static func tokenError(_ id: Int32, _ shape: RunShape, _ what: String) -> WireError {
        .malformed("token id \(id) in \(what) outside 0..<\(shape.config.vocab)")
    }

    private static func checkFinite(_ bytes: UnsafeRawBufferPointer, _ what: String) throws(WireError) {
        // An all-ones exponent is NaN or infinity. OR-reducing a flag keeps the loop branch-free and vectorisable.
        var bad: UInt32 = 0
        for i in 0..<bytes.count / 4 {
            let bits = bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
            bad |= (bits & 0x7F80_0000) == 0x7F80_0000 ? 1 : 0
        }
        guard bad == 0 else { throw .nonFinite(what) }
    }

    private static func int32s(_ bytes: UnsafeRawBufferPointer) -> [Int32] {
        [Int32](unsafeUninitializedCapacity: bytes.count / 4) { buffer, count in
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: bytes)
            count = bytes.count / 4
        }
    }
}

/// Appends little-endian fields to a growing frame.
private struct WireWriter {
    var output: [UInt8] = []

    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { output.append(contentsOf: $0) } }
    mutating func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { output.append(contentsOf: $0) } }
    mutating func u64(_ v: Int) { u64(UInt64(v)) }
    mutating func f32(_ v: Float) { u32(Int(v.bitPattern)) }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { output.append(contentsOf: $0) } }
    mutating func bytes(_ b: [UInt8]) { output.append(contentsOf: b) }
    /// One memcpy: floats and token ids are already in wire order on a little-endian host.
    mutating func bytes(_ b: UnsafeRawBufferPointer) { output.append(contentsOf: b) }
}

/// Reads fields from a frame, refusing to read past its end.
private struct WireReader {
    private let input: UnsafeRawBufferPointer
    private var offset = 0

    init(_ input: UnsafeRawBufferPointer) { self.input = input }

    mutating func take(_ count: Int, _ what: @autoclosure () -> String) throws(WireError) -> UnsafeRawBufferPointer {
        guard count <= input.count - offset else { throw .malformed("body ends inside \(what())") }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: input[offset..<(offset + count)])
    }

    mutating func u16(_ what: @autoclosure () -> String) throws(WireError) -> UInt16 {
        UInt16(littleEndian: try take(2, what()).loadUnaligned(as: UInt16.self))
    }

    mutating func u32(_ what: @autoclosure () -> String) throws(WireError) -> UInt32 {
        UInt32(littleEndian: try take(4, what()).loadUnaligned(as: UInt32.self))
    }

    mutating func u64(_ what: @autoclosure () -> String) throws(WireError) -> UInt64 {
        UInt64(littleEndian: try take(8, what()).loadUnaligned(as: UInt64.self))
    }

    mutating func f32(_ what: @autoclosure () -> String) throws(WireError) -> Float {
        Float(bitPattern: try u32(what()))
    }

    func finish() throws(WireError) {
        guard offset == input.count else { throw .malformed("\(input.count - offset) unexpected bytes after the body") }
    }
}

/// The checksum of the table above: four independent multiply–rotate lanes, so the CPU overlaps the
/// multiplications instead of waiting on one chain. Internal so tests can forge frames with valid checksums.
struct WireChecksum {
    private static let multiplier: UInt64 = 0x9E37_79B9_7F4A_7C15
    private var l0: UInt64 = 0x243F_6A88_85A3_08D3
    private var l1: UInt64 = 0x1319_8A2E_0370_7344
    private var l2: UInt64 = 0xA409_3822_299F_31D0
    private var l3: UInt64 = 0x082E_FA98_EC4E_6C89

    @inline(__always)
    private static func fold(_ lane: UInt64, _ word: UInt64) -> UInt64 {
        let x = (lane ^ word) &* multiplier
        return (x << 29) | (x >> 35)
    }

    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        var i = 0
        if let base = bytes.baseAddress {
            while n - i >= 32 {
                l0 = Self.fold(l0, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                l1 = Self.fold(l1, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)))
                l2 = Self.fold(l2, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)))
                l3 = Self.fold(l3, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)))
                i += 32
            }
            var lane = 0
            while i < n {
                var word: UInt64 = 0
                let take = min(8, n - i)
                withUnsafeMutableBytes(of: &word) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)])) }
                word = UInt64(littleEndian: word)
                switch lane {
                case 0: l0 = Self.fold(l0, word)
                case 1: l1 = Self.fold(l1, word)
                case 2: l2 = Self.fold(l2, word)
                default: l3 = Self.fold(l3, word)
                }
                lane += 1
                i += take
            }
        }
        l0 = Self.fold(l0, UInt64(n))
    }

    var value: UInt64 {
        var h = Self.fold(Self.fold(Self.fold(Self.fold(0, l0), l1), l2), l3)
        h ^= h >> 33
        h &*= 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        h &*= 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 33
        return h
    }
}

private extension FloatBuffer {
    /// A buffer holding a copy of wire floats (already checked to be a whole number of finite floats).
    convenience init(wireBytes bytes: UnsafeRawBufferPointer) {
        self.init(count: bytes.count / 4)
        UnsafeMutableRawBufferPointer(buffer).copyMemory(from: bytes)
    }

    var rawBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(buffer) }
}
