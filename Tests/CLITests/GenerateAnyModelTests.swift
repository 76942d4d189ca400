import Foundation
import XCTest

/// Generation and evaluation on a model of any text: default prime, prime files, greedy decoding, unknown
/// characters; and `--init` across vocabularies.
final class GenerateAnyModelTests: XCTestCase {
    let tiny = ["--embed", "8", "--units", "16", "--batch", "4", "--seq", "10", "--threads", "1", "--progress", "never"]

    private func trained(_ text: String, in dir: URL, name: String) throws -> (ckpt: String, data: String) {
        let data = try CLI.write(text, in: dir, name: "\(name).txt")
        let ckpt = dir.appendingPathComponent(name).path
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "3"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        return (ckpt, data)
    }

    func testGenerateOnALowercaseModel() throws {
        let dir = try CLI.temporaryDirectory(self)
        let lower = CLI.text(characters: 3_000).lowercased()
        let (ckpt, _) = try trained(lower, in: dir, name: "lower")

        // The default prime is the training text's first character, which the model knows.
        let g = try CLI.run(["generate", "--checkpoint", ckpt, "--length", "20"])
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertTrue(g.stdout.hasPrefix(String(lower.first!)), g.stdout)
        XCTAssertEqual(g.stdout.unicodeScalars.count, 1 + 20 + 1)

        // An unknown character names the option and shows the vocabulary.
        let vocabulary = String(Set(lower.unicodeScalars).sorted { $0.value < $1.value }.map { Character($0) }).unicodeScalars
            .map { $0 == "\n" ? "\\n" : String($0) }.joined()
        assertCleanFailure(try CLI.run(["generate", "--checkpoint", ckpt, "--prime", "ROMEO: "]),
                           mentions: "--prime: character R (U+52) is not in the model's vocabulary (\(Set(lower.unicodeScalars).count) characters: \"\(vocabulary)\")")
        let primeFile = try CLI.write("the Kin", in: dir, name: "prime.txt")
        assertCleanFailure(try CLI.run(["generate", "--checkpoint", ckpt, "--prime-file", primeFile]),
                           mentions: "--prime-file \(primeFile): character K (U+4B) is not in the model's vocabulary")

        // --prime-file from a file and from standard input.
        _ = try CLI.write("the kin", in: dir, name: "prime.txt")
        let fromFile = try CLI.run(["generate", "--checkpoint", ckpt, "--prime-file", primeFile, "--length", "10", "--seed", "4"])
        XCTAssertEqual(fromFile.status, 0, fromFile.stderr)
        XCTAssertTrue(fromFile.stdout.hasPrefix("the kin"), fromFile.stdout)
        let fromStdin = try CLI.run(["generate", "--checkpoint", ckpt, "--prime-file", "-", "--length", "10", "--seed", "4"], input: "the kin")
        XCTAssertEqual(fromStdin.stdout, fromFile.stdout, fromStdin.stderr)
        assertCleanFailure(try CLI.run(["generate", "--checkpoint", ckpt, "--prime-file", primeFile, "--prime", "a"]), mentions: "together")

        // --greedy is argmax: the seed does not matter, and it equals --top-k 1.
        let greedy = ["generate", "--checkpoint", ckpt, "--prime", "the", "--length", "30", "--greedy"]
        let a = try CLI.run(greedy + ["--seed", "1"]), b = try CLI.run(greedy + ["--seed", "2"])
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertEqual(a.stdout, b.stdout)
        XCTAssertEqual(a.stdout, try CLI.run(["generate", "--checkpoint", ckpt, "--prime", "the", "--length", "30", "--top-k", "1", "--seed", "5"]).stdout)
        assertCleanFailure(try CLI.run(greedy + ["--top-p", "0.5"]), mentions: "--greedy")
    }

    /// Held-out text with characters the model never saw: refused with a pointer to --skip-unknown, or
    /// evaluated without them, saying how many were left out.
    func testEvaluateSkipsUnknownCharacters() throws {
        let dir = try CLI.temporaryDirectory(self)
        let (ckpt, _) = try trained(CLI.text(characters: 3_000).lowercased(), in: dir, name: "lower")
        let heldText = CLI.text(characters: 2_000)
        let held = try CLI.write(heldText, in: dir, name: "held.txt")
        assertCleanFailure(try CLI.run(["evaluate", "--checkpoint", ckpt, "--data", held]), mentions: "pass --skip-unknown")
        let r = try CLI.run(["evaluate", "--checkpoint", ckpt, "--data", held, "--skip-unknown"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let unknown = heldText.unicodeScalars.filter { !Set(CLI.text(characters: 3_000).lowercased().unicodeScalars).contains($0) }.count
        XCTAssertGreaterThan(unknown, 0)
        XCTAssertTrue(r.stdout.contains("skipped \(unknown) character(s) not in the model's vocabulary"), r.stdout)
        let sequences = (heldText.unicodeScalars.count - unknown) / 11
        XCTAssertTrue(r.stdout.contains("over \(sequences) sequences"), r.stdout)
    }

    /// `--init` with a checkpoint of another vocabulary: remapped by character when it covers the text,
    /// refused when it lacks characters, even at the same size.
    func testInitAcrossVocabularies() throws {
        let dir = try CLI.temporaryDirectory(self)
        let upper = CLI.text(characters: 3_000)
        let (source, _) = try trained(upper, in: dir, name: "source")
        let weights = "\(source)/step-000000003/model.safetensors"
        let metadata = try SafeTensorsHeader.metadata(of: weights)
        XCTAssertNotNil(metadata["charrnn.vocabulary"], "\(metadata)")

        // A text using some of its characters: remapped, with a notice.
        let subset = try CLI.write(String(upper.filter { $0.isLowercase || $0 == " " || $0 == "\n" }), in: dir, name: "subset.txt")
        let r = try CLI.run(["train", "--data", subset, "--checkpoint-dir", dir.appendingPathComponent("s").path, "--steps", "1", "--init", weights] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("remapped by character"), r.stdout)

        // The same number of characters, not the same ones: refused, naming what the file lacks.
        var swapped = Set(upper.unicodeScalars)
        let gone = swapped.first { $0 != "\n" && $0 != " " }!
        swapped.remove(gone)
        let stranger = String(String.UnicodeScalarView(Array(swapped) + ["€"]))
        let other = try CLI.write(String(repeating: stranger, count: 40), in: dir, name: "other.txt")
        assertCleanFailure(try CLI.run(["train", "--data", other, "--checkpoint-dir", dir.appendingPathComponent("o").path, "--steps", "1", "--init", weights] + tiny),
                           mentions: "its vocabulary lacks 1 character(s) of the text: € (U+20AC)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("o").path), "no checkpoint from a refused start")
    }
}

/// A safetensors file's `__metadata__`, read the way any other tool would: 8-byte length, JSON header.
enum SafeTensorsHeader {
    static func metadata(of path: String) throws -> [String: String] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let length = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as? [String: Any]
        return header?["__metadata__"] as? [String: String] ?? [:]
    }
}
