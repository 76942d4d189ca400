import ArgumentParser
import CharRNN
import Foundation

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sample text from a checkpoint, streamed as it is produced.")

    @Option(help: "A checkpoint directory, or a --checkpoint-dir (its latest checkpoint is used).") var checkpoint: String
    @Option(help: "Text to start from; every character must be in the model's vocabulary.") var prime = "ROMEO: "
    @Option(help: "Characters to generate after the prime.") var length = 1000
    @Option(help: "Softmax temperature: lower is more conservative.") var temperature: Float = 1.0
    @Option(help: "Sample only among the k most likely characters.") var topK: Int?
    @Option(help: "Sample only among the most likely characters that together hold this probability (0–1].") var topP: Float?
    @Option(help: "Sampling seed.") var seed: UInt64 = 0
    @Option(help: "Samples to generate together (batched); each is printed after the prime, separated by a blank line.")
    var count = 1
    @Option(help: "Write the text to this file instead of standard output.") var output: String?
    @Option(help: ArgumentHelp(threadsHelp)) var threads: Int?

    func run() throws {
        BLASRuntime.setThreads(try ThreadCount.resolve(threads))
        let options = SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed)
        try options.validate()
        if length < 0 { throw CharRNNError.invalidOption("--length must not be negative, got \(length)") }
        if prime.isEmpty { throw CharRNNError.invalidOption("--prime must not be empty") }
        if count <= 0 { throw CharRNNError.invalidOption("--count must be positive, got \(count)") }
        let state = try loadCheckpoint(checkpoint)
        let ids = try state.vocabulary.encode(prime)
        let sampler = Sampler(weights: state.weights, count: count)
        let out = try output.map { path -> FileHandle in
            guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
                throw CharRNNError.io("cannot write \(path)")
            }
            return handle
        } ?? FileHandle.standardOutput
        func text(_ id: Int32) -> String { String(state.vocabulary.scalars[Int(id)]) }
        if count == 1 {
            // One sample streams as it is produced.
            out.write(Data(prime.utf8))
            sampler.generate(prime: ids, length: length, options: options) { out.write(Data(text($0[0]).utf8)) }
            out.write(Data("\n".utf8))
            return
        }
        var samples = [String](repeating: prime, count: count)
        sampler.generate(prime: ids, length: length, options: options) { step in
            for (i, id) in step.enumerated() { samples[i] += text(id) }
        }
        out.write(Data(samples.joined(separator: "\n\n").appending("\n").utf8))
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mean loss and bits/char of a checkpoint on a text (in order, no shuffle).")

    @Option(help: "A checkpoint directory, or a --checkpoint-dir (its latest checkpoint is used).") var checkpoint: String
    @Option(help: "Text to evaluate on (UTF-8).") var data: String
    @Option(help: "Sequences evaluated together.") var batch = 64
    @Option(help: "Characters per sequence (default: the training value).") var seq: Int?
    @Option(help: ArgumentHelp(threadsHelp)) var threads: Int?

    func run() throws {
        BLASRuntime.setThreads(try ThreadCount.resolve(threads))
        if batch <= 0 { throw CharRNNError.invalidOption("--batch must be positive, got \(batch)") }
        if let s = seq, s <= 0 { throw CharRNNError.invalidOption("--seq must be positive, got \(s)") }
        let state = try loadCheckpoint(checkpoint)
        let corpus = try Corpus(text: try Corpus.read(path: data), vocabulary: state.vocabulary)
        let (loss, count) = try Evaluator.meanLoss(weights: state.weights, ids: corpus.ids, seq: seq ?? state.options.seq, batch: batch)
        print(String(format: "loss %.4f  bits/char %.4f  over %d sequences", loss, loss / M_LN2, count))
    }
}

/// A step directory, or a checkpoint root whose latest usable checkpoint is taken.
func loadCheckpoint(_ path: String) throws -> TrainingState {
    let url = URL(fileURLWithPath: path, isDirectory: true)
    guard FileManager.default.fileExists(atPath: url.path) else { throw CharRNNError.checkpoint("\(path): no such directory") }
    if FileManager.default.fileExists(atPath: url.appendingPathComponent("checkpoint.json").path) {
        return try Checkpoint.load(url)
    }
    guard let found = try Checkpoint.latest(in: url, warn: printError) else {
        throw CharRNNError.checkpoint("\(path) holds no checkpoint")
    }
    return found.state
}
