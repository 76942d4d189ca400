import CharRNN

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

extension WireCodec {
    static func encodeWelcome(_ shape: RunShape, into body: inout WireWriter) {
        let c = shape.config
        let cell = Cell.allCases.firstIndex(of: c.cell)!
        for value in [c.vocab, c.embed, c.units, shape.seq, shape.rowsPerShard, shape.shardCount, cell, c.layers] {
            body.u32(value)
        }
        body.u64(shape.parameterCount)
        body.f32(shape.dropout?.rate ?? 0)
        body.u64(shape.dropout?.seed ?? 0)
    }

    func decodeWelcome(_ reader: inout WireReader) throws(WireError) -> WireMessage {
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
}
