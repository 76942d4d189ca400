import Foundation

/// Which text a run trains on, recorded in its checkpoints: where it was read, its SHA-256 (so a resume on
/// a changed text is refused by name) and its first characters (the default prime for generation, a
/// character the model certainly knows).
public struct TextSource: Codable, Equatable, Sendable {
    public var path: String
    public var sha256: String
    public var head: String

    /// Characters of the text kept as `head`.
    public static let headLength = 32

    public init(path: String, sha256: String, head: String) {
        self.path = path
        self.sha256 = sha256
        self.head = head
    }

    public init(path: String, text: String) {
        self.init(path: path, sha256: SHA256.hex(of: Data(text.utf8)),
                  head: String(String.UnicodeScalarView(text.unicodeScalars.prefix(Self.headLength))))
    }
}
