import CharRNN

// The message's values (`WorkOrder`, `WorkShard`: `Training/ShardWork.swift` in the core) and its encoding.

extension WireCodec {
    /// Writes the body; returns the bulk vector (the weights), none for an order without them.
    func encodeWork(epoch: Int, shards: [WorkShard], weights: FloatBuffer?, target: SumTarget?, into body: inout WireWriter) throws(WireError) -> [FloatBuffer] {
        let shape = try requireShape("work")
        guard epoch >= 0 else { throw .malformed("negative epoch \(epoch)") }
        try Self.checkShardIndices(shards.map(\.index), shape)
        if let weights { try Self.checkParameters(weights.count, shape, "weights") }
        if target != nil, shards.count != 1 { throw .malformed("an order with a sum target has \(shards.count) shards, not one") }
        body.u64(epoch)
        body.u64(weights?.count ?? 0)
        body.u32(shards.count)
        for shard in shards {
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
        try Self.writeTarget(target, into: &body)
        guard let weights else { return [] }
        try Self.checkFinite(weights.rawBytes, "weights")
        return [weights]
    }

    /// `received`: the weights as `checksumChunks` copied them out of `weights` (nil when the frames are not cut
    /// as the format cuts them).
    func decodeWork(
        _ reader: inout WireReader, weights: ArraySlice<UnsafeRawBufferPointer>, received: ReceivedVectors?
    ) throws(WireError) -> WireMessage {
        let shape = try requireShape("work")
        let epoch = try reader.u64("epoch")
        guard let epochValue = Int(exactly: epoch) else { throw .malformed("epoch \(epoch) out of range") }
        let weightCount = try reader.u64("weight count")
        // 0: the worker was sent this step's weights with an earlier order.
        if weightCount != 0 { try Self.checkParameters(weightCount, shape, "weights") }
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
        let target = try Self.readTarget(&reader)
        if target != nil, shardCount != 1 { throw .malformed("an order with a sum target has \(shardCount) shards, not one") }
        try reader.finish()
        try Self.checkShardIndices(views.map(\.index), shape)
        if weightCount == 0 {
            guard weights.isEmpty else { throw .malformed("a work order without weights has \(weights.count) weight frames") }
        } else {
            guard let received, received.buffers.count == 1 else {
                try Self.checkChunks(weights, floats: shape.parameterCount, "weights")
                throw .malformed("weight frames not cut as the wire format cuts them")
            }
            guard received.finite[0] else { throw .nonFinite("weights") }
        }

        let shards = views.map { view in
            WorkShard(
                index: view.index, state: view.state.map(FloatBuffer.init(wireBytes:)),
                rows: ShardRows(rows: shape.rowsPerShard, seq: shape.seq, inputs: Self.int32s(view.inputs), targets: Self.int32s(view.targets)))
        }
        if weightCount == 0 { return .workSameWeights(epoch: epochValue, shards: shards, sum: target) }
        return .work(WorkOrder(epoch: epochValue, shards: shards, weights: received!.buffers[0]), sum: target)
    }
}
