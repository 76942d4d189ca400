import ArgumentParser
import CharRNN
import Foundation

/// Everything that defines a training run; shared by `train` and `coordinator`.
struct TrainingArguments: ParsableArguments {
    @Option(help: "Training text (UTF-8). Default: $CHARRNN_DATA, else Tiny Shakespeare from the cache or the tutorial's URL.")
    var data: String?
    @Option(help: "Passes over the data.") var epochs = 10
    @Option(help: "Sequences per batch.") var batch = 64
    @Option(help: "Characters per sequence.") var seq = 100
    @Option(help: "Embedding width.") var embed = 256
    @Option(help: "Units per recurrent layer.") var units = 1024
    @OptionGroup var architecture: Architecture
    @Option(help: "Adam learning rate.") var lr: Float = 1e-3
    @Option(help: "Shuffle buffer (sequences), as tf.data's shuffle(buffer).") var buffer = 10_000
    @Option(help: "Seed for initial weights and shuffling.") var seed: UInt64 = 0
    @Option(help: "Clip the global gradient norm to this value (default: no clipping).") var clipNorm: Float?
    @Option(help: "Dropout rate on each recurrent layer's output, in training (default: none).") var dropout: Float?
    @Option(help: "Stop after this many steps in total, writing a final checkpoint.") var steps: Int?
    @Flag(help: "Take sequences in order instead of shuffling.") var noShuffle = false
    @Option(name: .customLong("init"), help: "Start from these weights (.safetensors with Keras tensor names).")
    var initWeights: String?
    @Option(help: "Directory holding one subdirectory per checkpoint.") var checkpointDir = "checkpoints"
    @Option(help: "Also write a checkpoint every N steps (always at each epoch's end and at the end).") var checkpointEvery: Int?
    @Option(help: "Checkpoints to keep.") var keep = 3
    @Flag(help: "Continue from the latest checkpoint in --checkpoint-dir.") var resume = false
    @Option(help: "Print a progress line every N steps (when output is not a terminal).") var logEvery = 100
    @Option(help: "Hold out this fraction of the text's end for validation at each epoch's end.") var valFraction = 0.0
    @Option(help: "Print and save a sample every N steps.") var sampleEvery: Int?
    @Option(help: "Characters per training-time sample.") var sampleLength = 200
    @Option(help: "Prime for training-time samples (default: the text's first character).") var samplePrime: String?
    @OptionGroup var output: OutputOptions

    func options(shards: Int) -> TrainingOptions {
        var o = TrainingOptions()
        o.batch = batch
        o.seq = seq
        o.shards = shards
        o.seed = seed
        o.buffer = buffer
        o.shuffle = !noShuffle
        o.epochs = epochs
        o.adam.learningRate = lr
        o.clipNorm = clipNorm
        o.dropout = dropout
        o.validationFraction = valFraction
        return o
    }

    /// Builds the run's starting state: a fresh model, `--init` weights, or the latest checkpoint (`--resume`),
    /// checking that the text, sizes and options agree with what the checkpoint was trained with.
    func prepare(shards: Int, log: (String) -> Void) throws -> (plan: StepPlan, policy: CheckpointPolicy, extras: LoopExtras) {
        var requested = options(shards: shards)
        try requested.validate()
        try model(vocab: 1).validate()
        if let k = checkpointEvery, k <= 0 { throw CharRNNError.invalidOption("--checkpoint-every must be positive, got \(k)") }
        if keep <= 0 { throw CharRNNError.invalidOption("--keep must be positive, got \(keep)") }
        if let n = sampleEvery, n <= 0 { throw CharRNNError.invalidOption("--sample-every must be positive, got \(n)") }
        if sampleLength <= 0 { throw CharRNNError.invalidOption("--sample-length must be positive, got \(sampleLength)") }
        if resume && initWeights != nil { throw CharRNNError.invalidOption("--resume and --init cannot be used together") }

        let path = try DataSource.resolve(explicit: data, log: log)
        let text = try Corpus.read(path: path)
        let root = URL(fileURLWithPath: checkpointDir, isDirectory: true)
        let policy = CheckpointPolicy(directory: root, every: checkpointEvery, keep: keep)
        for name in Checkpoint.removeStaleTemporaries(in: root) { log("removed \(name), left by a save that was interrupted") }
        let state: TrainingState
        if resume {
            guard let found = try Checkpoint.latest(in: root, warn: log) else {
                throw CharRNNError.checkpoint("no checkpoint in \(root.path) to resume from")
            }
            var stored = found.state
            guard stored.config == model(vocab: stored.config.vocab) else {
                throw CharRNNError.checkpoint("\(found.url.path) is a model with \(stored.config.sizes); options say \(model(vocab: stored.config.vocab).sizes)")
            }
            // More epochs may be asked for on resume; anything else would change the run's result.
            requested.epochs = stored.options.epochs
            try TrainingArguments.requireSame(stored.options, requested, checkpoint: found.url.path)
            stored.options.epochs = epochs
            guard Vocabulary(text: text) == stored.vocabulary else {
                throw CharRNNError.checkpoint("\(found.url.path) was trained on a text with another vocabulary than \(path)")
            }
            log("resuming from \(found.url.path) at step \(stored.position.globalStep)")
            state = stored
        } else {
            if !(try Checkpoint.list(in: root)).isEmpty {
                throw CharRNNError.checkpoint("\(root.path) already holds checkpoints: pass --resume to continue, or choose another --checkpoint-dir")
            }
            let vocabulary = Vocabulary(text: text)
            let config = model(vocab: vocabulary.count)
            var fresh = TrainingState.fresh(vocabulary: vocabulary, config: config, options: requested)
            if let file = initWeights {
                fresh.weights = try Checkpoint.loadWeights(from: URL(fileURLWithPath: file), config: config)
                log("initial weights from \(file)")
            }
            state = fresh
        }
        let corpus = try Corpus(text: text, vocabulary: state.vocabulary)
        let split = Int(Double(corpus.ids.count) * (1 - state.options.validationFraction))
        var extras = LoopExtras(sampleEvery: sampleEvery, sampleLength: sampleLength)
        if state.options.validationFraction > 0 {
            let held = Array(corpus.ids[split...])
            guard held.count > seq else {
                throw CharRNNError.invalidOption("--val-fraction \(valFraction) holds out \(held.count) characters, fewer than one sequence of \(seq + 1)")
            }
            extras.validation = held
        }
        extras.samplePrime = try samplePrime.map { try state.vocabulary.encode($0) } ?? [corpus.ids[0]]
        let plan = try StepPlan(state: state, ids: Array(corpus.ids[..<split]), stopAfter: steps)
        log("text \(path): \(corpus.ids.count) characters, \(corpus.vocabulary.count) symbols, \(plan.sequences.count) sequences, \(plan.stepsPerEpoch) steps per epoch"
            + (extras.validation.map { ", \($0.count) held out for validation" } ?? ""))
        log("model \(state.config), \(state.weights.count) parameters; batch \(requested.batch), seq \(requested.seq), shards \(shards)"
            + (state.options.dropout.map { ", dropout \($0)" } ?? ""))
        return (plan, policy, extras)
    }

    func model(vocab: Int) -> ModelConfig { architecture.model(vocab: vocab, embed: embed, units: units) }

    static func requireSame(_ stored: TrainingOptions, _ requested: TrainingOptions, checkpoint: String) throws {
        let pairs: [(String, String, String)] = [
            ("--batch", "\(stored.batch)", "\(requested.batch)"), ("--seq", "\(stored.seq)", "\(requested.seq)"),
            ("--shards", "\(stored.shards)", "\(requested.shards)"), ("--seed", "\(stored.seed)", "\(requested.seed)"),
            ("--buffer", "\(stored.buffer)", "\(requested.buffer)"), ("--no-shuffle", "\(!stored.shuffle)", "\(!requested.shuffle)"),
            ("--lr", "\(stored.adam.learningRate)", "\(requested.adam.learningRate)"),
            ("--clip-norm", "\(stored.clipNorm.map { "\($0)" } ?? "none")", "\(requested.clipNorm.map { "\($0)" } ?? "none")"),
            ("--val-fraction", "\(stored.validationFraction)", "\(requested.validationFraction)"),
            ("--dropout", "\(stored.dropout ?? 0)", "\(requested.dropout ?? 0)"),
        ]
        if let (name, was, now) = pairs.first(where: { $0.1 != $0.2 }) {
            throw CharRNNError.checkpoint("\(checkpoint) was trained with \(name) \(was), not \(now): resume with the same options")
        }
        guard stored == requested else {
            throw CharRNNError.checkpoint("\(checkpoint) was trained with other optimizer settings: resume with the same options")
        }
    }
}

/// The recurrent stack's shape, shared by training and the benchmarks; inference reads it from the checkpoint.
struct Architecture: ParsableArguments {
    @Option(help: "Recurrent cell: \(Cell.allCases.map(\.rawValue).joined(separator: " or ")).") var cell = Cell.gru
    @Option(help: "Stacked recurrent layers.") var layers = 1

    func model(vocab: Int, embed: Int, units: Int) -> ModelConfig {
        ModelConfig(vocab: vocab, embed: embed, units: units, cell: cell, layers: layers)
    }
}

extension Cell: ExpressibleByArgument {}

private extension ModelConfig {
    /// The sizes an option can set, for a mismatch message.
    var sizes: String { "E \(embed), H \(units), \(layers) \(cell.rawValue.uppercased()) layer\(layers == 1 ? "" : "s")" }
}

/// Stderr, for logs that must not mix with generated text on stdout.
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
