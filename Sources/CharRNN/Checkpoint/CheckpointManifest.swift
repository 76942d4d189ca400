import Foundation

/// `checkpoint.json`: everything of a `TrainingState` that is not a tensor, and the SHA-256 of the step
/// directory's three tensor files. Written last, so a directory with a manifest has all its files.
struct CheckpointManifest: Codable {
    static let fileName = "checkpoint.json"
    static let formatName = "charrnn"

    var format: String
    var version: Int
    var config: ModelConfig
    var vocabulary: [UInt32]
    var options: TrainingOptions
    var position: TrainingPosition
    var adamT: Int
    var sha256: [String: String]
    /// Absent in checkpoints written before the text was recorded.
    var text: TextSource?

    init(_ state: TrainingState, sha256: [String: String]) {
        format = CheckpointManifest.formatName
        version = Checkpoint.formatVersion
        config = state.config
        vocabulary = state.vocabulary.codePoints
        options = state.options
        position = state.position
        adamT = state.adam.t
        self.sha256 = sha256
        text = state.text
    }

    func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            return try encoder.encode(self)
        } catch {
            throw CharRNNError.checkpoint("cannot encode \(CheckpointManifest.fileName): \(error)")
        }
    }

    /// `place` (the step directory) prefixes every error.
    init(decoding data: Data, place: String) throws {
        let name = CheckpointManifest.fileName
        do {
            self = try JSONDecoder().decode(CheckpointManifest.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw CharRNNError.checkpoint("\(place): \(name) lacks \(CheckpointManifest.path(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw CharRNNError.checkpoint("\(place): \(name) has a wrong value at \(CheckpointManifest.path(context.codingPath))")
        } catch {
            throw CharRNNError.checkpoint("\(place): \(name) is not valid JSON")
        }
    }

    /// Checks everything the manifest says on its own (format, version, sizes, vocabulary, options and
    /// counters) and returns its vocabulary.
    func checked(place: String) throws -> Vocabulary {
        func fail(_ message: String) -> CharRNNError { .checkpoint("\(place): \(message)") }
        let formatName = CheckpointManifest.formatName
        guard format == formatName else { throw fail("format is \"\(format)\", expected \"\(formatName)\"") }
        guard version == Checkpoint.formatVersion else { throw fail("unsupported format version \(version)") }
        let c = config
        guard c.vocab > 0, c.embed > 0, c.units > 0, c.layers > 0 else { throw fail("invalid model size \(c)") }
        let symbols: Vocabulary
        do {
            symbols = try Vocabulary(codePoints: vocabulary)
        } catch {
            throw fail("invalid vocabulary: \(error)")
        }
        guard symbols.count == c.vocab else { throw fail("vocabulary has \(symbols.count) symbols, model expects \(c.vocab)") }
        do {
            try options.validate()
        } catch {
            throw fail("invalid training options: \(error)")
        }
        let p = position
        guard p.epoch >= 0, p.stepInEpoch >= 0, p.globalStep >= 0, adamT >= 0 else { throw fail("negative step counter") }
        return symbols
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
}
