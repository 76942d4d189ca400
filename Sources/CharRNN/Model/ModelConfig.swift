/// The recurrent cell of every layer.
public enum Cell: String, Codable, CaseIterable, Sendable {
    case gru, lstm

    /// Gate blocks per unit: a GRU's z, r, h; an LSTM's i, f, c, o.
    public var gates: Int { self == .gru ? GRU.gates : LSTM.gates }

    /// State vectors carried per layer and row: a GRU's h; an LSTM's h and c.
    public var stateVectors: Int { self == .gru ? 1 : 2 }
}

/// The sizes that define a model: vocabulary V, embedding width E, cell, L stacked layers of H units.
public struct ModelConfig: Codable, Equatable, Hashable, Sendable, CustomStringConvertible {
    public var vocab: Int
    public var embed: Int
    public var units: Int
    public var cell: Cell
    public var layers: Int

    public init(vocab: Int, embed: Int, units: Int, cell: Cell = .gru, layers: Int = 1) {
        self.vocab = vocab
        self.embed = embed
        self.units = units
        self.cell = cell
        self.layers = layers
    }

    /// Checkpoints written before cells and layers existed hold a one-layer GRU.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            vocab: try c.decode(Int.self, forKey: .vocab), embed: try c.decode(Int.self, forKey: .embed),
            units: try c.decode(Int.self, forKey: .units), cell: try c.decodeIfPresent(Cell.self, forKey: .cell) ?? .gru,
            layers: try c.decodeIfPresent(Int.self, forKey: .layers) ?? 1)
    }

    public func validate() throws {
        for (name, value) in [("vocabulary size", vocab), ("--embed", embed), ("--units", units), ("--layers", layers)] where value <= 0 {
            throw CharRNNError.invalidOption("\(name) must be positive, got \(value)")
        }
    }

    /// Floats of recurrent state per batch row: every layer's state vectors, [L·vectors, H] per row. Row-major
    /// over the batch, so a shard's rows stay one contiguous block whatever the model.
    public var stateWidth: Int { layers * cell.stateVectors * units }

    /// Floats of recurrent state for `rows` batch rows: what a checkpoint, a shard and a wire message carry.
    public func stateCount(rows: Int) -> Int { rows * stateWidth }

    public var description: String {
        let model = "V \(vocab), E \(embed), H \(units)"
        return cell == .gru && layers == 1 ? model : "\(model), \(layers)×\(cell.rawValue.uppercased())"
    }
}
