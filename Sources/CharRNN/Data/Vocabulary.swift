/// The sorted set of Unicode scalars of a text, as Python's `sorted(set(text))`; ids index into it.
///
/// Scalars, not Swift `Character`s: "\r\n" is one Character but two symbols to every other tool, and the
/// ids must match a Keras model trained on the same text.
public struct Vocabulary: Equatable, Sendable {
    public let scalars: [Unicode.Scalar]
    private let index: [Unicode.Scalar: Int32]

    public init(text: String) {
        self.init(uniqueSorted: Array(Set(text.unicodeScalars)).sorted { $0.value < $1.value })
    }

    /// From stored code points (a checkpoint); refuses anything that is not a strictly increasing list of
    /// valid scalars, so a corrupted vocabulary cannot silently remap ids.
    public init(codePoints: [UInt32]) throws {
        var scalars: [Unicode.Scalar] = []
        for (i, cp) in codePoints.enumerated() {
            guard let s = Unicode.Scalar(cp) else { throw CharRNNError.data("vocabulary entry \(cp) is not a Unicode scalar") }
            if i > 0, cp <= codePoints[i - 1] { throw CharRNNError.data("vocabulary is not strictly sorted") }
            scalars.append(s)
        }
        guard !scalars.isEmpty else { throw CharRNNError.data("vocabulary is empty") }
        self.init(uniqueSorted: scalars)
    }

    private init(uniqueSorted: [Unicode.Scalar]) {
        scalars = uniqueSorted
        var index: [Unicode.Scalar: Int32] = [:]
        for (i, s) in uniqueSorted.enumerated() { index[s] = Int32(i) }
        self.index = index
    }

    public var count: Int { scalars.count }
    public var codePoints: [UInt32] { scalars.map(\.value) }

    /// Ids of every scalar of `text`; throws naming the first symbol the vocabulary lacks.
    public func encode(_ text: String) throws -> [Int32] {
        var ids: [Int32] = []
        ids.reserveCapacity(text.unicodeScalars.count)
        for s in text.unicodeScalars {
            guard let id = index[s] else {
                throw CharRNNError.data("character \(s.escaped(asASCII: true)) (U+\(String(s.value, radix: 16, uppercase: true))) is not in the model's vocabulary")
            }
            ids.append(id)
        }
        return ids
    }

    /// Ids of the scalars of `text` the vocabulary has, and how many it had not and were left out.
    public func encode(_ text: String, skippingUnknown: Bool) throws -> (ids: [Int32], skipped: Int) {
        guard skippingUnknown else { return (try encode(text), 0) }
        var ids: [Int32] = []
        ids.reserveCapacity(text.unicodeScalars.count)
        var skipped = 0
        for s in text.unicodeScalars {
            if let id = index[s] { ids.append(id) } else { skipped += 1 }
        }
        return (ids, skipped)
    }

    /// The vocabulary as one quoted, escaped line (shortened past `limit` symbols), for error messages.
    public func listing(limit: Int = 120) -> String {
        // Escape only what would hide or break the line: quotes and backslashes, and control characters.
        let shown = scalars.prefix(limit).map { s -> String in
            switch s {
            case "\"", "\\": return "\\" + String(s)
            case _ where s.properties.generalCategory == .control: return s.escaped(asASCII: true)
            default: return String(s)
            }
        }.joined()
        return "\(count) characters: \"\(shown)\"" + (count > limit ? "…" : "")
    }

    public func decode(_ ids: [Int32]) -> String {
        var out = String.UnicodeScalarView()
        for id in ids { out.append(scalars[Int(id)]) }
        return String(out)
    }

    public static func == (a: Vocabulary, b: Vocabulary) -> Bool { a.scalars == b.scalars }
}
