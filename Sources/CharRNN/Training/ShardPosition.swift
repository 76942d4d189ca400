/// Where a shard sits in a run: all its dropout masks depend on.
public struct ShardPosition: Equatable, Sendable {
    public var step: Int
    public var firstRow: Int

    public init(step: Int, firstRow: Int) {
        self.step = step
        self.firstRow = firstRow
    }

    /// Shard `shard` of a batch cut into shards of `rows` rows: it starts at batch row shard·rows.
    public init(step: Int, shard: Int, rowsPerShard rows: Int) {
        self.init(step: step, firstRow: shard * rows)
    }
}
