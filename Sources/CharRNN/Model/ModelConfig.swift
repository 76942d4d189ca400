/// The sizes that define a model: vocabulary V, embedding width E and GRU units H.
public struct ModelConfig: Codable, Equatable, Hashable, Sendable, CustomStringConvertible {
    public var vocab: Int
    public var embed: Int
    public var units: Int

    public init(vocab: Int, embed: Int, units: Int) {
        self.vocab = vocab
        self.embed = embed
        self.units = units
    }

    public func validate() throws {
        for (name, value) in [("vocabulary size", vocab), ("--embed", embed), ("--units", units)] where value <= 0 {
            throw CharRNNError.invalidOption("\(name) must be positive, got \(value)")
        }
    }

    public var description: String { "V \(vocab), E \(embed), H \(units)" }
}
