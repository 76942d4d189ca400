import CharRNN

/// Where a worker sends the sum of its shard's top node (`ReductionTree.top(of:)`) once it has summed it: the
/// part of a work order that puts the worker in the step's reduction up the tree. An order without one is
/// answered with a plain result, as before the tree.
public enum SumTarget: Equatable, Sendable {
    /// The top node is the root: the step's sum goes to the coordinator.
    case coordinator
    /// The coordinator sums the root itself, from its two halves: the sum of the shard's top node below the root
    /// (`ReductionTree.topBelowRoot(of:)`), one of those halves, goes to it.
    case coordinatorSumsRoot
    /// This worker holds the shard the node above starts at, too: the sum stays here and goes into that node.
    case kept
    /// Another worker holds that shard: the sum goes to its relay socket.
    case peer(RelayPeer)
}

/// Some chunks of a node's summed gradient on their way up the tree: chunks `chunks` of the P floats, cut as
/// `WireCodec.chunkRanges` cuts them, and with chunk 0 each shard's loss and final state. Between workers a sum
/// travels chunk by chunk, each passed on as soon as it is summed (as the weights come down), so a level of the
/// tree waits for one chunk of the level below, not for its whole sum; the root's chunks go to the coordinator so too.
public struct SumPart: Sendable {
    public let node: ReductionNode
    public let chunks: Range<Int>
    /// The floats of those chunks, in order.
    public let floats: FloatBuffer
    /// With chunk 0: each shard's mean loss and final state, shard `node.lo` first.
    public let shards: (losses: [Double], states: [FloatBuffer])?

    public init(node: ReductionNode, chunks: Range<Int>, floats: FloatBuffer, shards: (losses: [Double], states: [FloatBuffer])?) {
        self.node = node
        self.chunks = chunks
        self.floats = floats
        self.shards = shards
    }
}

// The sum message (type 11), from a worker to the worker that sums the node above (its relay socket), or the
// root's to the coordinator:
// | body   | u32 lo, u32 hi (a node of the tree over S shards), u64 gradient count (= P), u32 rows (= R), u32 first chunk f, u32 chunk count c (f + c ≤ k); with f = 0 then hi − lo f64 mean losses, shard lo first |
// | frames | c: chunks f..<f+c of the node's P f32 summed gradient, cut as above; with f = 0 then hi − lo states, each R·W f32 in ceil(4·R·W / 524288) frames, shard lo first |
// States travel as frames rather than in the body so that no frame exceeds a chunk: a relay's socket bounds
// frames before it knows the run's sizes.
//
// The tree-alive message (type 12), between neighbours in a step's reduction tree (a worker and the worker that
// sums the node above its top node, either way), while the step lasts for the sender (see `ReductionShare`):
// | body   | u32 lo, u32 hi (the top node the two have in common), u64 token number (≥ 1), u32 the progress's age in milliseconds (≤ 86,400,000, rounded up), u32 length and the origin's relay endpoint (printable ASCII, not empty), the sender's relay endpoint and key as in hello (not empty) |
// | frames | none |
//
// A work order's target follows its shards: u32 kind (0 none: answer with a result; 1 coordinator; 2 kept;
// 3 peer, then its relay endpoint and key as in hello; 4 coordinator, which sums the root from its halves).

extension WireCodec {
    /// The largest target: kind, then an endpoint and a key.
    static let largestTarget = 12 + RelayRoute.maxEndpointBytes + 32

    static func writeTarget(_ target: SumTarget?, into body: inout WireWriter) throws(WireError) {
        switch target {
        case nil: body.u32(0)
        case .coordinator: body.u32(1)
        case .kept: body.u32(2)
        case .peer(let peer):
            body.u32(3)
            try writeRelay(peer, into: &body)
        case .coordinatorSumsRoot: body.u32(4)
        }
    }

    static func readTarget(_ reader: inout WireReader) throws(WireError) -> SumTarget? {
        switch try reader.u32("sum target") {
        case 0: return nil
        case 1: return .coordinator
        case 2: return .kept
        case 3:
            guard let peer = try readRelay(&reader) else { throw .malformed("a sum target with no relay endpoint") }
            return .peer(peer)
        case 4: return .coordinatorSumsRoot
        case let kind: throw .malformed("unknown sum target \(kind)")
        }
    }

    /// The oldest progress a tree-alive word tells of, in milliseconds (a day): an older one is sent as this.
    static let maxAgeMilliseconds = 86_400_000

    func encodeTreeAlive(_ node: ReductionNode, origin: String, seq: UInt64, age: Double, from: RelayPeer, into body: inout WireWriter) throws(WireError) {
        try Self.checkNode(node, try requireShape("tree-alive"))
        guard seq >= 1 else { throw .malformed("token 0") }
        guard age >= 0 else { throw .malformed("progress \(age) s old") }
        guard !from.endpoint.isEmpty else { throw .malformed("tree-alive without the sender's relay") }
        body.u32(node.lo)
        body.u32(node.hi)
        body.u64(seq)
        // Rounded up: a token must never look fresher than it is.
        body.u32(Int(min(age * 1000, Double(Self.maxAgeMilliseconds)).rounded(.up)))
        try Self.writeEndpoint(origin, into: &body, allowEmpty: false)
        try Self.writeRelay(from, into: &body)
    }

    /// A node's bounds, checked before `ReductionNode` (whose precondition would stop the process) and against the
    /// run's tree.
    static func readNode(_ reader: inout WireReader, _ shape: RunShape) throws(WireError) -> ReductionNode {
        let lo = Int(try reader.u32("node start"))
        let hi = Int(try reader.u32("node end"))
        guard lo < hi else { throw .malformed("an empty node \(lo)..<\(hi)") }
        let node = ReductionNode(lo: lo, hi: hi)
        try checkNode(node, shape)
        return node
    }

    func decodeTreeAlive(_ reader: inout WireReader) throws(WireError) -> WireMessage {
        let node = try Self.readNode(&reader, try requireShape("tree-alive"))
        let seq = try reader.u64("token")
        guard seq >= 1 else { throw .malformed("token 0") }
        let age = Int(try reader.u32("age"))
        guard age <= Self.maxAgeMilliseconds else { throw .malformed("progress \(age) ms old, more than \(Self.maxAgeMilliseconds)") }
        guard let origin = try Self.readEndpoint(&reader) else { throw .malformed("tree-alive without the token's origin") }
        guard let from = try Self.readRelay(&reader) else { throw .malformed("tree-alive without the sender's relay") }
        return .treeAlive(node: node, origin: origin, seq: seq, age: Double(age) / 1000, from: from)
    }

    /// The state frames of one shard.
    static func stateChunks(_ shape: RunShape) -> Int { chunkCount(floats: shape.stateCount) }

    /// The floats chunks `chunks` of a P-float vector cover.
    static func floatRange(_ chunks: Range<Int>, parameters: Int) -> Range<Int> {
        let ranges = chunkRanges(floats: parameters)
        return (ranges[chunks.lowerBound].lowerBound / 4)..<(ranges[chunks.upperBound - 1].upperBound / 4)
    }

    /// Writes the body; returns the bulk vectors: the chunks, then each shard's state.
    func encodeSum(_ part: SumPart, into body: inout WireWriter) throws(WireError) -> [FloatBuffer] {
        let shape = try requireShape("sum")
        try Self.checkNode(part.node, shape)
        let k = Self.chunkCount(floats: shape.parameterCount)
        guard !part.chunks.isEmpty, part.chunks.upperBound <= k, part.floats.count == Self.floatRange(part.chunks, parameters: shape.parameterCount).count else {
            throw .malformed("chunks \(part.chunks) of \(part.node) with \(part.floats.count) floats")
        }
        guard (part.chunks.lowerBound == 0) == (part.shards != nil) else { throw .malformed("losses and states go with chunk 0, and only with it") }
        body.u32(part.node.lo)
        body.u32(part.node.hi)
        body.u64(shape.parameterCount)
        body.u32(shape.rowsPerShard)
        body.u32(part.chunks.lowerBound)
        body.u32(part.chunks.count)
        if let (losses, states) = part.shards {
            guard losses.count == part.node.count, states.count == part.node.count else { throw .malformed("one loss and one state per shard of \(part.node)") }
            for (s, (loss, state)) in zip(part.node.shards, zip(losses, states)) {
                guard loss.isFinite else { throw .nonFinite("loss of shard \(s)") }
                guard state.count == shape.stateCount else { throw .malformed("state of shard \(s) has \(state.count) floats, expected \(shape.stateCount)") }
                try Self.checkFinite(state.rawBytes, "hidden state of shard \(s)")
                body.u64(loss.bitPattern)
            }
        }
        try Self.checkFinite(part.floats.rawBytes, "gradient of \(part.node)")
        // Each chunk a frame of its own, as `chunkSegments` cuts a vector that starts at a chunk boundary.
        return [part.floats] + (part.shards?.states ?? [])
    }

    /// `received`: the gradient chunks, copied into one buffer, and the states, as the checksum pass copied them
    /// (nil when the frames are not cut as the format cuts them).
    func decodeSum(
        _ reader: inout WireReader, frames: ArraySlice<UnsafeRawBufferPointer>, received: (gradient: ReceivedVectors, states: ReceivedVectors?)?
    ) throws(WireError) -> WireMessage {
        let shape = try requireShape("sum")
        let node = try Self.readNode(&reader, shape)
        let lo = node.lo
        try Self.checkParameters(try reader.u64("gradient count"), shape, "gradient")
        try Self.checkShardRows(Int(try reader.u32("rows")), lo, shape)
        let first = Int(try reader.u32("first chunk"))
        let count = Int(try reader.u32("chunk count"))
        let k = Self.chunkCount(floats: shape.parameterCount)
        guard count >= 1, first < k, count <= k - first else { throw .malformed("chunks \(first)..<\(first + count) of \(k)") }
        var losses: [Double] = []
        if first == 0 {
            for s in node.shards {
                let loss = Double(bitPattern: try reader.u64("loss of shard \(s)"))
                guard loss.isFinite else { throw .nonFinite("loss of shard \(s)") }
                losses.append(loss)
            }
        }
        try reader.finish()
        let chunks = first..<(first + count)
        let ranges = Self.chunkRanges(floats: shape.parameterCount)[chunks]
        let expected = count + (first == 0 ? node.count * Self.stateChunks(shape) : 0)
        guard frames.count == expected, zip(frames, ranges).allSatisfy({ $0.count == $1.count }), let received,
              (received.states?.buffers.count ?? 0) == (first == 0 ? node.count : 0) else {
            throw .malformed("chunks \(chunks) of \(node) in \(frames.count) frames, expected \(expected), cut as the wire format cuts them")
        }
        guard received.gradient.finite[0] else { throw .nonFinite("gradient of \(node)") }
        if let k = received.states?.finite.firstIndex(of: false) { throw .nonFinite("hidden state of shard \(lo + k)") }
        return .sum(SumPart(node: node, chunks: chunks, floats: received.gradient.buffers[0],
                            shards: first == 0 ? (losses, received.states!.buffers) : nil))
    }

    /// The checksum pass over a sum's frames: the gradient chunks (as many as the body says, read ahead of its
    /// checks: a wrong count only makes the copy fail the checks that follow) copied into one buffer, the states
    /// each into its own. Buffers are sized from frames whose total length was already checked.
    static func checksumSum(
        _ frames: ArraySlice<UnsafeRawBufferPointer>, body: UnsafeRawBufferPointer, _ shape: RunShape, into sum: inout WireChecksum
    ) -> (gradient: ReceivedVectors, states: ReceivedVectors?)? {
        let count = body.count >= 28 ? Int(body.loadUnaligned(fromByteOffset: 24, as: UInt32.self).littleEndian) : 0
        guard (1...frames.count).contains(count), frames.prefix(count).allSatisfy({ $0.count % 4 == 0 }) else {
            for frame in frames { sum.add(frame) }
            return nil
        }
        let gradient = FloatBuffer(uninitializedCount: frames.prefix(count).reduce(0) { $0 + $1.count } / 4)
        var offset = 0
        var finite = true
        for frame in frames.prefix(count) {
            if !sum.add(floats: frame, copyingTo: UnsafeMutableRawPointer(gradient.base) + offset) { finite = false }
            offset += frame.count
        }
        let rest = frames.dropFirst(count)
        let states = rest.isEmpty ? nil : checksumChunks(rest, floats: shape.stateCount, into: &sum)
        guard rest.isEmpty || states != nil else { return nil }
        return (ReceivedVectors(buffers: [gradient], finite: [finite]), states)
    }

    static func checkNode(_ node: ReductionNode, _ shape: RunShape) throws(WireError) {
        guard ReductionTree(shards: shape.shardCount).contains(node) else {
            throw .malformed("\(node) is not a node of the reduction tree over \(shape.shardCount) shards")
        }
    }
}
