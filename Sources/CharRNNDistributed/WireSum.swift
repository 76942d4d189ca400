import CharRNN

/// Where a worker sends the sum of its shard's top node (`ReductionTree.top(of:)`) once it has summed it: the
/// part of a work order that puts the worker in the step's reduction up the tree. An order without one is
/// answered with a plain result, as before the tree.
public enum SumTarget: Equatable, Sendable {
    /// The top node is the root: the whole step's sum goes to the coordinator.
    case coordinator
    /// This worker holds the shard the node above starts at, too: the sum stays here and goes into that node.
    case kept
    /// Another worker holds that shard: the sum goes to its relay socket.
    case peer(RelayPeer)
}

// The sum message (type 11): the sum of node lo..<hi of the step's reduction tree, from a worker to the worker
// that sums the node above (its relay socket), or the root's to the coordinator.
// | body   | u32 lo, u32 hi (a node of the tree over S shards), u64 gradient count (= P), u32 rows (= R), then hi − lo f64 mean losses, shard lo first |
// | frames | k: the node's P f32 summed gradient; then hi − lo states, each R·W f32 in ceil(4·R·W / 524288) frames, shard lo first |
// States travel as frames rather than in the body, so that no frame of a sum exceeds a chunk: a relay's socket
// bounds frames before it knows the run's sizes.
//
// A work order's target follows its shards: u32 kind (0 none: answer with a result; 1 coordinator; 2 kept;
// 3 peer, then its relay endpoint and key as in hello).

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
        case let kind: throw .malformed("unknown sum target \(kind)")
        }
    }

    /// The state frames of one shard.
    static func stateChunks(_ shape: RunShape) -> Int { chunkCount(floats: shape.stateCount) }

    /// Writes the body; returns the bulk vectors: the gradient, then each shard's state.
    func encodeSum(_ part: SubtreeSum, into body: inout WireWriter) throws(WireError) -> [FloatBuffer] {
        let shape = try requireShape("sum")
        try Self.checkNode(part.node, shape)
        try Self.checkParameters(part.gradient.count, shape, "gradient of \(part.node)")
        body.u32(part.node.lo)
        body.u32(part.node.hi)
        body.u64(shape.parameterCount)
        body.u32(shape.rowsPerShard)
        for (k, loss) in part.losses.enumerated() {
            guard loss.isFinite else { throw .nonFinite("loss of shard \(part.node.lo + k)") }
            body.u64(loss.bitPattern)
        }
        for (k, state) in part.states.enumerated() {
            guard state.count == shape.stateCount else {
                throw .malformed("state of shard \(part.node.lo + k) has \(state.count) floats, expected \(shape.stateCount)")
            }
            try Self.checkFinite(state.rawBytes, "hidden state of shard \(part.node.lo + k)")
        }
        try Self.checkFinite(part.gradient.rawBytes, "gradient of \(part.node)")
        return [part.gradient] + part.states
    }

    /// `received`: the gradient and the states as the checksum pass copied them (nil when the frames are not cut
    /// as the format cuts them).
    func decodeSum(
        _ reader: inout WireReader, frames: Int, received: (gradient: ReceivedVectors, states: ReceivedVectors)?
    ) throws(WireError) -> WireMessage {
        let shape = try requireShape("sum")
        let lo = Int(try reader.u32("node start"))
        let hi = Int(try reader.u32("node end"))
        guard lo < hi else { throw .malformed("an empty node \(lo)..<\(hi)") }
        let node = ReductionNode(lo: lo, hi: hi)
        try Self.checkNode(node, shape)
        try Self.checkParameters(try reader.u64("gradient count"), shape, "gradient")
        try Self.checkShardRows(Int(try reader.u32("rows")), lo, shape)
        var losses: [Double] = []
        for s in node.shards {
            let loss = Double(bitPattern: try reader.u64("loss of shard \(s)"))
            guard loss.isFinite else { throw .nonFinite("loss of shard \(s)") }
            losses.append(loss)
        }
        try reader.finish()
        let expected = Self.chunkCount(floats: shape.parameterCount) + node.count * Self.stateChunks(shape)
        guard frames == expected, let received, received.gradient.buffers.count == 1, received.states.buffers.count == node.count else {
            throw .malformed("\(node) in \(frames) frames, expected \(expected), cut as the wire format cuts them")
        }
        guard received.gradient.finite[0] else { throw .nonFinite("gradient of \(node)") }
        if let k = received.states.finite.firstIndex(of: false) { throw .nonFinite("hidden state of shard \(lo + k)") }
        return .sum(SubtreeSum(node: node, gradient: received.gradient.buffers[0], losses: losses, states: received.states.buffers))
    }

    /// The checksum pass over a sum's frames, copying the gradient (its first k frames) and the states.
    static func checksumSum(
        _ frames: ArraySlice<UnsafeRawBufferPointer>, _ shape: RunShape, into sum: inout WireChecksum
    ) -> (gradient: ReceivedVectors, states: ReceivedVectors)? {
        let k = chunkCount(floats: shape.parameterCount)
        let gradient = checksumChunks(frames.prefix(k), floats: shape.parameterCount, into: &sum)
        let states = frames.count > k ? checksumChunks(frames.dropFirst(k), floats: shape.stateCount, into: &sum) : nil
        guard let gradient, let states else { return nil }
        return (gradient, states)
    }

    static func checkNode(_ node: ReductionNode, _ shape: RunShape) throws(WireError) {
        guard ReductionTree(shards: shape.shardCount).contains(node) else {
            throw .malformed("\(node) is not a node of the reduction tree over \(shape.shardCount) shards")
        }
    }
}
