import CharRNN
import Foundation
import XCTest

/// A charrnn checkpoint loaded into Keras's own layers (tools/keras_sample.py) gives the logits charrnn gives.
final class KerasRoundTripTests: XCTestCase {
    static let script = CLI.packageRoot.appendingPathComponent("tools/keras_sample.py").path
    /// The backend Deploy/test.sh installs (it needs no GPU); the script takes any.
    static let backend = ["KERAS_BACKEND": "jax"]
    /// Importing Keras takes seconds; it is tried once.
    static let missing = Python.missing(["keras", "safetensors.numpy"], environment: backend)

    struct KerasLogits: Decodable {
        let prime: String
        let backend: String
        let logits: [[Float]]
    }

    /// The tutorial's model; the script also samples from it.
    func testGRU() throws {
        let (state, ckpt) = try checkLogits(model: [])
        let s = try XCTUnwrap(try Python.run(file: Self.script, [ckpt, "--prime", "Th", "--length", "20", "--seed", "1"], environment: Self.backend))
        XCTAssertEqual(s.status, 0, s.stderr)
        let sample = s.stdout.unicodeScalars.dropLast()    // the newline print adds
        XCTAssertTrue(s.stdout.hasPrefix("Th"), s.stdout)
        XCTAssertEqual(sample.count, 2 + 20, s.stdout)
        XCTAssertTrue(sample.allSatisfy { state.vocabulary.scalars.contains($0) }, s.stdout)
    }

    func testTwoLayerLSTM() throws {
        try checkLogits(model: ["--cell", "lstm", "--layers", "2"])
    }

    /// Trains a tiny model and compares Keras's logits for the text's first 40 characters with charrnn's.
    @discardableResult
    private func checkLogits(model: [String]) throws -> (TrainingState, String) {
        if let reason = Self.missing { throw XCTSkip(reason) }
        let dir = try CLI.temporaryDirectory(self)
        let text = CLI.text(characters: 6_000)
        let data = try CLI.write(text, in: dir)
        let ckpt = dir.appendingPathComponent("ckpt")
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt.path, "--steps", "30", "--lr", "0.01", "--embed", "8",
                             "--units", "16", "--batch", "4", "--seq", "10", "--threads", "1", "--progress", "never"] + model)
        XCTAssertEqual(r.status, 0, r.stderr)
        let state = try XCTUnwrap(try Checkpoint.latest(in: ckpt)).state
        let prime = String(String.UnicodeScalarView(text.unicodeScalars.prefix(40)))
        let ids = try state.vocabulary.encode(prime)

        // charrnn's logits after each prime character, from zero state: the training forward pass and the sampler.
        let (n, v) = (ids.count, state.config.vocab)
        let step = ShardStep(config: state.config, maxRows: 1, seq: n)
        step.load(weights: state.weights)
        let forward = step.logits(of: ShardRows(rows: 1, seq: n, inputs: ids, targets: ids), state: [Float](repeating: 0, count: state.config.stateCount(rows: 1)))
        let sampler = Sampler(weights: state.weights)
        var sampled: [Float] = []
        for id in ids {
            [id].withUnsafeBufferPointer { sampler.feed($0) }
            sampled += Array(sampler.logits(0))
        }

        let k = try XCTUnwrap(try Python.run(file: Self.script, [ckpt.path, "--prime", prime, "--logits"], environment: Self.backend))
        XCTAssertEqual(k.status, 0, k.stderr)
        let keras = try JSONDecoder().decode(KerasLogits.self, from: Data(k.stdout.utf8))
        XCTAssertEqual(keras.backend, "jax")
        XCTAssertEqual(keras.prime, prime)
        XCTAssertEqual(keras.logits.count, n)
        XCTAssertTrue(keras.logits.allSatisfy { $0.count == v })
        let flat = keras.logits.flatMap { $0 }
        let forwardDiff = zip(flat, forward).map { abs($0 - $1) }.max()!
        let samplerDiff = zip(flat, sampled).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(forwardDiff, 1e-5, "training forward vs Keras")
        XCTAssertLessThanOrEqual(samplerDiff, 1e-5, "sampler vs Keras")
        // The weights are trained, not the initial ones: the logits spread well beyond rounding.
        XCTAssertGreaterThan(flat.max()! - flat.min()!, 1, "\(flat.prefix(10))")
        print("Keras (\(keras.backend)) vs charrnn, max |logit difference|: forward \(forwardDiff), sampler \(samplerDiff)")
        return (state, ckpt.path)
    }
}
