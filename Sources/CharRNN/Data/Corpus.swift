import Foundation

/// The training text: read, checked and encoded.
public struct Corpus: Sendable {
    /// The tutorial's corpus, as published with the TensorFlow tutorial.
    public static let tinyShakespeareURL = "https://storage.googleapis.com/download.tensorflow.org/data/shakespeare.txt"
    public static let tinyShakespeareSHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

    public let text: String
    public let vocabulary: Vocabulary
    public let ids: [Int32]

    public init(text: String) throws {
        guard !text.isEmpty else { throw CharRNNError.data("the text is empty") }
        self.text = text
        vocabulary = Vocabulary(text: text)
        ids = try vocabulary.encode(text)
    }

    /// Encodes `text` with an existing vocabulary (a checkpoint's), refusing symbols it lacks.
    public init(text: String, vocabulary: Vocabulary) throws {
        guard !text.isEmpty else { throw CharRNNError.data("the text is empty") }
        self.text = text
        self.vocabulary = vocabulary
        ids = try vocabulary.encode(text)
    }

    /// Reads a UTF-8 text file; a missing, unreadable, empty or non-UTF-8 file is a one-line error.
    public static func read(path: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CharRNNError.data("\(path): no such file")
        }
        if isDir.boolValue { throw CharRNNError.data("\(path): is a directory, expected a text file") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CharRNNError.data("\(path): cannot be read")
        }
        if data.isEmpty { throw CharRNNError.data("\(path): the file is empty") }
        guard let text = String(validatingUTF8Data: data) else {
            throw CharRNNError.data("\(path): not valid UTF-8 text")
        }
        return text
    }
}

extension String {
    /// Strict UTF-8 decoding: nil on any invalid sequence instead of repairing it with U+FFFD.
    public init?(validatingUTF8Data data: Data) {
        guard let s = data.withUnsafeBytes({ String(validating: $0.bindMemory(to: UInt8.self), as: UTF8.self) }) else {
            return nil
        }
        self = s
    }
}
