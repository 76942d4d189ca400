import Foundation

/// The vocabulary inside a weights file's safetensors `__metadata__`, so the weights never travel without
/// the meaning of their rows: key `charrnn.vocabulary`, value a JSON array of strings, entry i the character
/// of embedding row i and dense column i. In Python: `json.loads(metadata["charrnn.vocabulary"])`.
public enum VocabularyMetadata {
    public static let key = "charrnn.vocabulary"

    public static func encode(_ vocabulary: Vocabulary) -> String {
        let entries = vocabulary.scalars.map { String($0) }
        // A [String] always encodes; sorted keys are moot, escaping is JSON's own.
        return String(decoding: (try? JSONEncoder().encode(entries)) ?? Data("[]".utf8), as: UTF8.self)
    }

    /// The entries of a file's vocabulary, in row order; nil when the file records none. Entries need not be
    /// single characters (a Keras `StringLookup` has "[UNK]"): such rows can never match a character.
    public static func decode(_ metadata: [String: String], source: String) throws -> [String]? {
        guard let value = metadata[key] else { return nil }
        guard let entries = try? JSONDecoder().decode([String].self, from: Data(value.utf8)) else {
            throw CharRNNError.checkpoint("\(source): metadata \(key) is not a JSON array of strings")
        }
        return entries
    }
}
