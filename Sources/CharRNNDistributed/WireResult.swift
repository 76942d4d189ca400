import CharRNN

// The message's value (`ShardResult`: `Training/ShardWork.swift` in the core) and its encoding.

extension WireCodec {
    /// Writes the body; returns the bulk vectors (one gradient per shard).
    func encodeResult(_ shards: [ShardResult], into body: inout WireWriter) throws(WireError) -> [FloatBuffer] {
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
        return shards.map(\.gradient)
    }

    func decodeResult(_ reader: inout WireReader, gradients frames: ArraySlice<UnsafeRawBufferPointer>) throws(WireError) -> WireMessage {
        let shape = try requireShape("result")
        let gradientCount = try reader.u64("gradient count")
        try Self.checkParameters(gradientCount, shape, "gradients")
        let shardCount = try Self.shardCount(&reader, shape)
        let k = Self.chunkCount(floats: shape.parameterCount)
        guard frames.count == shardCount * k else {
            throw .malformed("\(shardCount) shards but \(frames.count) gradient frames, expected \(shardCount * k)")
        }
        let gradients = (0..<shardCount).map { n in frames.dropFirst(n * k).prefix(k) }
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
            try Self.checkChunks(gradient, floats: shape.parameterCount, "gradient of shard \(view.index)")
        }
        return .result(zip(views, gradients).map { view, gradient in
            ShardResult(index: view.index, loss: view.loss, state: FloatBuffer(wireBytes: view.state), gradient: FloatBuffer(wireChunks: gradient))
        })
    }
}
