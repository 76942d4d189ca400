import Foundation
import XCTest
@testable import CharRNN

/// `--init` fits a file's rows to the text's vocabulary by character.
final class InitialWeightsTests: XCTestCase {
    private let sizes = ModelConfig(vocab: 1, embed: 2, units: 3)

    private func file(vocabulary entries: [String]?, rows: Int) throws -> (URL, Parameters) {
        var config = sizes
        config.vocab = rows
        let p = Parameters.initialized(config, seed: 7)
        let tensors = p.names.map { SafeTensors.Tensor(name: p.layout.keras($0), shape: $0.shape(config), floats: UnsafeBufferPointer(p.tensor($0))) }
        var metadata: [String: String] = [:]
        if let entries { metadata[VocabularyMetadata.key] = String(decoding: try JSONEncoder().encode(entries), as: UTF8.self) }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("charrnn-init-\(UUID().uuidString).safetensors")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        try SafeTensors(tensors: tensors, metadata: metadata).encoded().write(to: url)
        return (url, p)
    }

    private func load(_ url: URL, text: String) throws -> (Parameters, String?) {
        let vocabulary = Vocabulary(text: text)
        var config = sizes
        config.vocab = vocabulary.count
        let r = try InitialWeights.load(url, config: config, vocabulary: vocabulary)
        return (r.weights, r.notice)
    }

    func testSameVocabularyIsTakenAsItIs() throws {
        let (url, p) = try file(vocabulary: ["a", "b", "c"], rows: 3)
        let (w, notice) = try load(url, text: "cab")
        XCTAssertNil(notice)
        XCTAssertTrue(w.storage.bitwiseEqual(p.storage))
    }

    /// Another order and extra entries ("[UNK]" of a Keras StringLookup, a character the text lacks): the
    /// text's character i gets the file's row for that character in the embedding, dense kernel and bias.
    func testRowsAreRemappedByCharacter() throws {
        let entries = ["[UNK]", "c", "x", "a", "b"]
        let (url, p) = try file(vocabulary: entries, rows: 5)
        let (w, notice) = try load(url, text: "abcab")
        XCTAssertTrue(notice?.contains("remapped by character") == true, notice ?? "")
        let (e, h) = (sizes.embed, sizes.units)
        for (i, ch) in ["a", "b", "c"].enumerated() {
            let j = entries.firstIndex(of: ch)!
            for k in 0..<e { XCTAssertEqual(w[.embedding][i * e + k], p[.embedding][j * e + k]) }
            for r in 0..<h { XCTAssertEqual(w[.denseKernel][r * 3 + i], p[.denseKernel][r * 5 + j]) }
            XCTAssertEqual(w[.denseBias][i], p[.denseBias][j])
        }
        for name in [TensorName.kernel, .recurrentKernel, .bias] {
            XCTAssertEqual(Array(w.tensor(name)), Array(p.tensor(name)))
        }
    }

    func testCharactersTheFileLacksAreAnError() throws {
        let (url, _) = try file(vocabulary: ["a", "b", "c"], rows: 3)
        XCTAssertThrowsError(try load(url, text: "abd")) { error in
            XCTAssertTrue("\(error)".contains("lacks 1 character(s) of the text: d (U+64)"), "\(error)")
        }
    }

    func testWithoutVocabularyRowsAreTakenInOrderWhenSizesMatch() throws {
        let (url, p) = try file(vocabulary: nil, rows: 3)
        let (w, notice) = try load(url, text: "xyz")
        XCTAssertTrue(notice?.contains("records no vocabulary") == true, notice ?? "")
        XCTAssertTrue(w.storage.bitwiseEqual(p.storage))
        XCTAssertThrowsError(try load(url, text: "wxyz")) { XCTAssertTrue("\($0)".contains("shape"), "\($0)") }
    }
}
