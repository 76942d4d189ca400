import ArgumentParser
import CharRNN
import Foundation

/// Everything a training run is given on the command line; shared by `train` and `coordinator`. Options that
/// define the run are optional: a fresh run takes the default shown, `--resume` the checkpoint's value.
struct TrainingArguments: ParsableArguments {
    @OptionGroup(title: "Model") var model: ModelArguments
    @OptionGroup(title: "Data") var data: DataArguments
    @OptionGroup(title: "Schedule") var schedule: ScheduleArguments
    @OptionGroup(title: "Checkpoints") var checkpoints: CheckpointArguments
    @OptionGroup(title: "Output") var output: OutputOptions

    /// The request for the core's `RunSetup`; `shards` and its default come from the command.
    func request(shards: Int?, defaultShards: Int) -> RunRequest {
        var r = RunRequest(checkpoints: CheckpointPolicy(
            directory: URL(fileURLWithPath: checkpoints.checkpointDir, isDirectory: true), every: checkpoints.checkpointEvery, keep: checkpoints.keep))
        (r.embed, r.units, r.cell, r.layers, r.dropout) = (model.embed, model.units, model.cell, model.layers, model.dropout)
        (r.batch, r.seq, r.seed, r.buffer, r.shuffle, r.validationFraction) = (data.batch, data.seq, data.seed, data.buffer, data.shuffle, data.valFraction)
        (r.learningRate, r.clipNorm, r.epochs, r.steps) = (schedule.lr, schedule.clipNorm, schedule.epochs, schedule.steps)
        (r.schedule, r.warmupSteps, r.decayEvery, r.decayFactor, r.minRate) =
            (schedule.lrSchedule, schedule.warmupSteps, schedule.lrDecayEvery, schedule.lrDecayFactor, schedule.minLr)
        (r.validateEvery, r.earlyStopPatience) = (schedule.evalEvery, schedule.earlyStopPatience)
        (r.resume, r.initWeights) = (checkpoints.resume, checkpoints.initWeights)
        (r.sampleEvery, r.sampleLength, r.samplePrime) = (output.sampleEvery, output.sampleLength, output.samplePrime)
        (r.shards, r.defaultShards) = (shards, defaultShards)
        return r
    }

    /// Builds the run (see `RunSetup`): the text is `--data`, else the resumed run's, else the default source.
    func prepare(shards: Int?, defaultShards: Int, log: (String) -> Void, warn: (String) -> Void) throws -> PreparedRun {
        try RunSetup.prepare(request(shards: shards, defaultShards: defaultShards), readText: { stored in
            // Absolute, so the checkpoint finds its text again from any directory.
            let path = URL(fileURLWithPath: try DataSource.resolve(explicit: data.data ?? stored, log: log)).standardizedFileURL.path
            return (path, try Corpus.read(path: path))
        }, log: log, warn: warn)
    }
}

/// A given count must be positive: the check every count option shares.
func requirePositive(_ name: String, _ value: Int?) throws {
    if let v = value, v <= 0 { throw ValidationError("\(name) must be positive, got \(v)") }
}

struct ModelArguments: ParsableArguments {
    @Option(help: "Embedding width (default: \(RunRequest.defaultEmbed)).") var embed: Int?
    @Option(help: "Units per recurrent layer (default: \(RunRequest.defaultUnits)).") var units: Int?
    @Option(help: "Recurrent cell: \(Cell.allCases.map(\.rawValue).joined(separator: " or ")) (default: gru).") var cell: Cell?
    @Option(help: "Stacked recurrent layers (default: 1).") var layers: Int?
    @Option(help: "Dropout rate on each recurrent layer's output, in training (default: none).") var dropout: Float?
}

struct DataArguments: ParsableArguments {
    @Option(help: "Training text (UTF-8). Default: the resumed run's, else $CHARRNN_DATA, else Tiny Shakespeare from the cache or the tutorial's URL.")
    var data: String?
    @Option(help: "Sequences per batch (default: 64).") var batch: Int?
    @Option(help: "Characters per sequence (default: 100).") var seq: Int?
    @Option(help: "Shuffle buffer (sequences), as tf.data's shuffle(buffer) (default: 10000).") var buffer: Int?
    @Option(help: "Seed for initial weights and shuffling (default: 0).") var seed: UInt64?
    @Flag(inversion: .prefixedNo, help: "Shuffle sequences (default), or take them in order.") var shuffle: Bool?
    @Option(help: "Hold out this fraction of the text's end for validation (default: 0).") var valFraction: Double?
}

extension LearningRateSchedule.Kind: ExpressibleByArgument {}

struct ScheduleArguments: ParsableArguments {
    @Option(help: "Passes over the data (default: 10, or the resumed run's; may grow on resume).") var epochs: Int?
    @Option(help: "Stop after this many steps in total, writing a final checkpoint.") var steps: Int?
    @Option(help: "Adam learning rate (default: 0.001).") var lr: Float?
    @Option(help: "Learning rate schedule: constant, step (× --lr-decay-factor every --lr-decay-every steps) or cosine (down to --min-lr over --lr-decay-every steps, default: the whole run).")
    var lrSchedule: LearningRateSchedule.Kind?
    @Option(help: "Raise the learning rate linearly over the first N steps (default: 0).") var warmupSteps: Int?
    @Option(help: "Steps between decays (step), or of the descent (cosine).") var lrDecayEvery: Int?
    @Option(help: "Factor per decay, above 0 and below 1 (step; default: 0.1).") var lrDecayFactor: Double?
    @Option(help: "Floor of the learning rate (step, cosine; default: 0).") var minLr: Float?
    @Option(help: "Clip the global gradient norm to this value (default: no clipping).") var clipNorm: Float?
    @Option(help: "Also validate every N steps (default: at each epoch's end only; needs --val-fraction).") var evalEvery: Int?
    @Option(help: "Stop, with a final checkpoint, after K validations in a row without a new best.") var earlyStopPatience: Int?
    @Option(help: "When a step's loss, gradient or update is not finite: stop (keeping the last good checkpoint) or skip its update.")
    var onNonfinite = NonFinitePolicy.stop

    /// The run-defining options are checked by the core (`RunSetup`), once their stored or default values
    /// are known; these two only steer the loop.
    func validate() throws {
        try requirePositive("--eval-every", evalEvery)
        try requirePositive("--early-stop-patience", earlyStopPatience)
    }
}

struct CheckpointArguments: ParsableArguments {
    @Option(help: "Directory holding one subdirectory per checkpoint.") var checkpointDir = "checkpoints"
    @Option(help: "Also write a checkpoint every N steps (always at each epoch's end and at the end).") var checkpointEvery: Int?
    @Option(help: "Checkpoints to keep.") var keep = 3
    @Flag(help: "Continue from the latest checkpoint in --checkpoint-dir, with its options.") var resume = false
    @Option(name: .customLong("init"), help: "Start from these weights (.safetensors with Keras tensor names), fitted to the text's vocabulary by character.")
    var initWeights: String?

    func validate() throws {
        try requirePositive("--checkpoint-every", checkpointEvery)
        try requirePositive("--keep", keep)
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
extension NonFinitePolicy: ExpressibleByArgument {}

/// `--threads` on every command that computes.
let threadsHelp = "Compute threads (default: the cores this process may use: its CPU affinity mask, capped by its cgroup CPU quota)."

/// Stderr, for logs that must not mix with generated text on stdout.
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
