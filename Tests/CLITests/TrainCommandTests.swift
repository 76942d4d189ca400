import Foundation
import XCTest

/// `charrnn train`, `generate` and `evaluate` end to end, as real processes.
final class TrainCommandTests: XCTestCase {
    let tiny = ["--embed", "16", "--units", "48", "--batch", "16", "--seq", "40", "--threads", "1", "--log-every", "50"]

    func testTrainingLearnsThenGenerateAndEvaluate() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 120_000), in: dir)
        let ckpt = dir.appendingPathComponent("ckpt").path
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "300", "--lr", "0.01"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)

        let losses = r.stdout.split(separator: "\n").compactMap { line -> Double? in
            guard let range = line.range(of: "loss ") else { return nil }
            return Double(line[range.upperBound...].prefix { $0 != " " })
        }
        let vocab = Double(Set(CLI.text(characters: 120_000).unicodeScalars).count)
        XCTAssertGreaterThan(losses.count, 3, r.stdout)
        XCTAssertLessThan(losses.last!, 0.6 * log(vocab), "loss did not fall well below ln(V): \(r.stdout)")

        let g = try CLI.run(["generate", "--checkpoint", ckpt, "--prime", "Th", "--length", "300", "--seed", "3"])
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertTrue(g.stdout.hasPrefix("Th"))
        XCTAssertEqual(g.stdout.unicodeScalars.count, 2 + 300 + 1)
        let again = try CLI.run(["generate", "--checkpoint", ckpt, "--prime", "Th", "--length", "300", "--seed", "3"])
        XCTAssertEqual(again.stdout, g.stdout, "sampling with a seed is reproducible")

        let file = dir.appendingPathComponent("sample.txt")
        let saved = try CLI.run(["generate", "--checkpoint", ckpt, "--prime", "Th", "--length", "300", "--seed", "3", "--output", file.path])
        XCTAssertEqual(saved.status, 0, saved.stderr)
        XCTAssertEqual(saved.stdout, "")
        XCTAssertEqual(try String(contentsOf: file, encoding: .utf8), g.stdout, "--output writes what stdout would show")
        let nucleus = try CLI.run(["generate", "--checkpoint", ckpt, "--prime", "Th", "--length", "100", "--top-p", "0.9", "--count", "3"])
        XCTAssertEqual(nucleus.status, 0, nucleus.stderr)
        XCTAssertEqual(nucleus.stdout.components(separatedBy: "\n\n").count, 3, nucleus.stdout)
        assertCleanFailure(try CLI.run(["generate", "--checkpoint", ckpt, "--top-p", "2"]), mentions: "--top-p")

        let e = try CLI.run(["evaluate", "--checkpoint", ckpt, "--data", data])
        XCTAssertEqual(e.status, 0, e.stderr)
        let evalLoss = Double(e.stdout.split(separator: " ")[1])!
        XCTAssertLessThan(evalLoss, 0.6 * log(vocab), e.stdout)
    }

    /// Stopping at step k and resuming gives the same bits as never stopping, across an epoch boundary.
    func testResumeIsBitwiseIdentical() throws {
        try checkResumeIsBitwiseIdentical(model: [])
    }

    /// The same for a 2-layer LSTM with dropout: both states of every layer, and the dropout masks of the steps
    /// after the resume, must continue exactly. Its checkpoint then generates and evaluates with no model options.
    func testTwoLayerLSTMWithDropoutResumesBitwiseAndGenerates() throws {
        let ckpt = try checkResumeIsBitwiseIdentical(model: ["--cell", "lstm", "--layers", "2", "--dropout", "0.2"])
        let g = try CLI.run(["generate", "--checkpoint", ckpt, "--prime", "Th", "--length", "50", "--seed", "3"])
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertTrue(g.stdout.hasPrefix("Th"))
        XCTAssertEqual(g.stdout.unicodeScalars.count, 2 + 50 + 1)
        let manifest = try String(contentsOfFile: "\(ckpt)/step-000000017/checkpoint.json", encoding: .utf8)
        XCTAssertTrue(manifest.contains("\"lstm\""), manifest)
    }

    /// An LSTM with dropout learns: its evaluated loss (no dropout) ends well below ln(V).
    func testLSTMWithDropoutLearns() throws {
        let dir = try CLI.temporaryDirectory(self)
        let text = CLI.text(characters: 60_000)
        let data = try CLI.write(text, in: dir)
        let ckpt = dir.appendingPathComponent("ckpt").path
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt, "--steps", "200", "--lr", "0.01",
                             "--cell", "lstm", "--dropout", "0.1"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        let e = try CLI.run(["evaluate", "--checkpoint", ckpt, "--data", data])
        XCTAssertEqual(e.status, 0, e.stderr)
        let loss = Double(e.stdout.split(separator: " ")[1])!
        XCTAssertLessThan(loss, 0.6 * log(Double(Set(text.unicodeScalars).count)), e.stdout)
    }

    @discardableResult
    private func checkResumeIsBitwiseIdentical(model: [String]) throws -> String {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 12_000), in: dir)    // 7 steps per epoch
        let whole = dir.appendingPathComponent("whole").path
        let parts = dir.appendingPathComponent("parts").path
        let common = ["--data", data, "--buffer", "50", "--seed", "9", "--epochs", "3"] + tiny + model
        XCTAssertEqual(try CLI.run(["train", "--checkpoint-dir", whole, "--steps", "17"] + common).status, 0)
        XCTAssertEqual(try CLI.run(["train", "--checkpoint-dir", parts, "--steps", "5"] + common).status, 0)
        let resumed = try CLI.run(["train", "--checkpoint-dir", parts, "--steps", "17", "--resume"] + common)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from"), resumed.stdout)

        for file in ["model.safetensors", "optimizer.safetensors", "state.safetensors"] {
            let a = try Data(contentsOf: URL(fileURLWithPath: "\(whole)/step-000000017/\(file)"))
            let b = try Data(contentsOf: URL(fileURLWithPath: "\(parts)/step-000000017/\(file)"))
            XCTAssertEqual(a, b, "\(file) differs after resume")
        }
        // And the run really moved: step 17's weights are not step 5's.
        let early = try Data(contentsOf: URL(fileURLWithPath: "\(parts)/step-000000005/model.safetensors"))
        XCTAssertNotEqual(early, try Data(contentsOf: URL(fileURLWithPath: "\(parts)/step-000000017/model.safetensors")))
        return parts
    }

    func testInitStartsFromGivenWeights() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 12_000), in: dir)
        let first = dir.appendingPathComponent("a").path
        XCTAssertEqual(try CLI.run(["train", "--data", data, "--checkpoint-dir", first, "--steps", "2"] + tiny).status, 0)
        let weights = "\(first)/step-000000002/model.safetensors"
        let second = dir.appendingPathComponent("b").path
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", second, "--steps", "1", "--init", weights] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("initial weights from"))
        let wrongSize = try CLI.run(["train", "--data", data, "--checkpoint-dir", dir.appendingPathComponent("c").path,
                                     "--steps", "1", "--init", weights, "--embed", "16", "--units", "32", "--batch", "16", "--seq", "40"])
        assertCleanFailure(wrongSize, mentions: "shape")
    }
}
