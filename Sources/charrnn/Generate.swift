import ArgumentParser
import CharRNN
import Foundation

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sample text from a checkpoint, streamed as it is produced.")

    @Option(help: "A checkpoint directory, or a --checkpoint-dir (its latest checkpoint is used).") var checkpoint: String
    @Option(help: "Text to start from; every character must be in the model's vocabulary (default: the first character of the training text).")
    var prime: String?
    @Option(help: "Read the prime from this file (UTF-8), or from standard input with -.") var primeFile: String?
    @Option(help: "Characters to generate after the prime.") var length = 1000
    @Option(help: "Softmax temperature: lower is more conservative.") var temperature: Float = 1.0
    @Option(help: "Sample only among the k most likely characters.") var topK: Int?
    @Option(help: "Sample only among the most likely characters that together hold this probability (0–1].") var topP: Float?
    @Option(help: "Sampling seed.") var seed: UInt64 = 0
    @Flag(help: "Always take the most likely character (argmax; the same as --top-k 1).") var greedy = false
    @Option(help: "Samples to generate together (batched); each is printed after the prime, separated by a blank line.")
    var count = 1
    @Option(help: "Write the text to this file instead of standard output.") var output: String?
    @Option(help: ArgumentHelp(threadsHelp)) var threads: Int?

    func validate() throws {
        try SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed).validate()
        if length < 0 { throw ValidationError("--length must not be negative, got \(length)") }
        if prime?.isEmpty == true { throw ValidationError("--prime must not be empty") }
        if prime != nil && primeFile != nil { throw ValidationError("--prime and --prime-file cannot be used together") }
        if greedy && (topK != nil || topP != nil) { throw ValidationError("--greedy takes the most likely character: leave out --top-k and --top-p") }
        try requirePositive("--count", count)
        try requirePositive("--threads", threads)
    }

    func run() throws {
        BLASRuntime.setThreads(try ThreadCount.resolve(threads))
        let options = SamplingOptions(temperature: temperature, topK: greedy ? 1 : topK, topP: topP, seed: seed)
        let state = try loadCheckpoint(checkpoint)
        let (prime, ids) = try primeText(state)
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

    /// The prime and its ids: `--prime`, `--prime-file`, else the training text's first character (a
    /// checkpoint that does not record its text: the vocabulary's first).
    private func primeText(_ state: TrainingState) throws -> (String, [Int32]) {
        let (text, option): (String, String)
        if let primeFile {
            let data = primeFile == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: primeFile)
            guard let data else { throw CharRNNError.invalidOption("--prime-file \(primeFile): cannot be read") }
            guard let decoded = String(validatingUTF8Data: data), !decoded.isEmpty else {
                throw CharRNNError.invalidOption("--prime-file \(primeFile): empty or not valid UTF-8")
            }
            (text, option) = (decoded, "--prime-file \(primeFile)")
        } else if let prime {
            (text, option) = (prime, "--prime")
        } else {
            let first = state.text?.head.unicodeScalars.first ?? state.vocabulary.scalars[0]
            (text, option) = (String(first), "the default prime")
        }
        do {
            return (text, try state.vocabulary.encode(text))
        } catch CharRNNError.data(let problem) {
            throw CharRNNError.invalidOption("\(option): \(problem) (\(state.vocabulary.listing()))")
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mean loss and bits/char of a checkpoint on a text (in order, no shuffle).")

    @Option(help: "A checkpoint directory, or a --checkpoint-dir (its latest checkpoint is used).") var checkpoint: String
    @Option(help: "Text to evaluate on (UTF-8).") var data: String
    @Option(help: "Sequences evaluated together.") var batch = 64
    @Option(help: "Characters per sequence (default: the training value).") var seq: Int?
    @Option(help: ArgumentHelp(threadsHelp)) var threads: Int?
    @Flag(help: "Leave out characters the model has not seen, and say how many, instead of refusing the text.") var skipUnknown = false

    func validate() throws {
        try requirePositive("--batch", batch)
        try requirePositive("--seq", seq)
        try requirePositive("--threads", threads)
    }

    func run() throws {
        BLASRuntime.setThreads(try ThreadCount.resolve(threads))
        let state = try loadCheckpoint(checkpoint)
        let ids: [Int32], skipped: Int
        do {
            (ids, skipped) = try state.vocabulary.encode(try Corpus.read(path: data), skippingUnknown: skipUnknown)
        } catch CharRNNError.data(let problem) where problem.hasPrefix("character") {
            throw CharRNNError.data("\(data): \(problem): pass --skip-unknown to leave such characters out")
        }
        let (loss, count) = try Evaluator.meanLoss(weights: state.weights, ids: ids, seq: seq ?? state.options.seq, batch: batch)
        print(String(format: "loss %.4f  bits/char %.4f  over %d sequences", loss, loss / M_LN2, count)
            + (skipUnknown ? "; skipped \(skipped) character(s) not in the model's vocabulary" : ""))
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
