import Foundation

/// What a `train` or `coordinator` command line asks for. Nil means "not given": a fresh run takes the
/// default, a resumed run the value stored in its checkpoint. Only a given value that differs from the
/// stored one is refused, since it would change the run's result.
public struct RunRequest: Sendable {
    /// The tutorial's model and the defaults of a fresh run.
    public static let defaultEmbed = 256
    public static let defaultUnits = 1024

    public var embed: Int?
    public var units: Int?
    public var cell: Cell?
    public var layers: Int?

    public var batch: Int?
    public var seq: Int?
    public var shards: Int?
    public var seed: UInt64?
    public var buffer: Int?
    public var shuffle: Bool?
    public var learningRate: Float?
    public var clipNorm: Float?
    public var validationFraction: Double?
    public var dropout: Float?
    public var schedule: LearningRateSchedule.Kind?
    public var warmupSteps: Int?
    public var decayEvery: Int?
    public var decayFactor: Double?
    public var minRate: Float?

    /// May grow on resume.
    public var epochs: Int?
    /// Stop after this many steps in total.
    public var steps: Int?
    public var resume = false
    public var initWeights: String?
    /// `--shards` when not given on a fresh run: 1 in process, 8 for a coordinator.
    public var defaultShards = 1

    /// Per invocation, never stored: where checkpoints go and what the loop does besides training.
    public var checkpoints: CheckpointPolicy
    public var samplePrime: String?
    public var sampleEvery: Int?
    public var sampleLength = 200
    public var validateEvery: Int?
    public var earlyStopPatience: Int?

    public init(checkpoints: CheckpointPolicy) {
        self.checkpoints = checkpoints
    }
}

/// Everything `RunSetup` can refuse that is about the run rather than one option's range.
public enum RunSetupError: Error, Equatable, CustomStringConvertible {
    /// An option given on `--resume` that differs from the checkpoint's.
    case conflict(checkpoint: String, option: String, stored: String, given: String)
    /// The text at the stored path is no longer the one the run was trained on.
    case textChanged(checkpoint: String, path: String)
    /// `--data` names another text than the run's.
    case otherText(checkpoint: String, path: String, trainedOn: String)
    case otherVocabulary(checkpoint: String, path: String)
    case nothingToResume(directory: String)
    case directoryInUse(directory: String)
    case resumeWithInit

    public var description: String {
        switch self {
        case let .conflict(checkpoint, option, stored, given):
            return "\(checkpoint) was trained with \(option) \(stored), not \(given): omit \(option) to continue with the stored value"
        case let .textChanged(checkpoint, path):
            return "\(path) has changed since \(checkpoint) was written (its SHA-256 differs): restore it, or start a new run"
        case let .otherText(checkpoint, path, trainedOn):
            return "\(path) is not the text \(checkpoint) was trained on (\(trainedOn); the SHA-256 differs)"
        case let .otherVocabulary(checkpoint, path):
            return "\(checkpoint) was trained on a text with another vocabulary than \(path)"
        case let .nothingToResume(directory):
            return "no checkpoint in \(directory) to resume from"
        case let .directoryInUse(directory):
            return "\(directory) already holds checkpoints: pass --resume to continue, or choose another --checkpoint-dir"
        case .resumeWithInit:
            return "--resume and --init cannot be used together"
        }
    }
}

/// A run ready to train: the step plan with its state, the checkpoint policy and the loop's monitoring.
public struct PreparedRun {
    public let plan: StepPlan
    public let policy: CheckpointPolicy
    public let monitoring: Monitoring
}

/// Builds a run's starting state from a request: a fresh model, `--init` weights, or the latest checkpoint
/// (`--resume`), whose stored options fill in whatever the request leaves out.
public enum RunSetup {
    /// `readText(storedPath)` returns the text to train on and where it was read: the given `--data`, else
    /// `storedPath` (a resumed run's), else a default source.
    public static func prepare(
        _ request: RunRequest, readText: (_ storedPath: String?) throws -> (path: String, text: String),
        log: (String) -> Void, warn: (String) -> Void
    ) throws -> PreparedRun {
        let r = request
        let root = r.checkpoints.directory
        for name in Checkpoint.removeStaleTemporaries(in: root) { log("removed \(name), left by a save that was interrupted") }
        if r.resume && r.initWeights != nil { throw RunSetupError.resumeWithInit }
        let found: (url: URL, state: TrainingState)?
        if r.resume {
            guard let latest = try Checkpoint.latest(in: root, warn: warn) else { throw RunSetupError.nothingToResume(directory: root.path) }
            found = latest
        } else {
            if !(try Checkpoint.list(in: root)).isEmpty { throw RunSetupError.directoryInUse(directory: root.path) }
            found = nil
        }
        let stored = found?.state
        let pick = Resolver(checkpoint: found?.url.path)

        var options = TrainingOptions()
        let defaults = TrainingOptions()
        let was = stored?.options
        options.batch = try pick("--batch", r.batch, was?.batch, defaults.batch)
        options.seq = try pick("--seq", r.seq, was?.seq, defaults.seq)
        // The one run-defining option a resume may change: the batch's rows keep their hidden states and their
        // dropout masks (both are per global row); only their grouping into shards, and so the order of the
        // reduction, changes. More workers than the old shard count can then take part.
        options.shards = r.shards ?? was?.shards ?? r.defaultShards
        if let old = was?.shards, options.shards != old {
            warn("resharding from \(old) to \(options.shards) shards per batch: rows keep their hidden states, but from here on the bits differ from an uninterrupted run with --shards \(old)")
        }
        options.seed = try pick("--seed", r.seed, was?.seed, defaults.seed)
        options.buffer = try pick("--buffer", r.buffer, was?.buffer, defaults.buffer)
        options.shuffle = !(try pick("--no-shuffle", r.shuffle.map { !$0 }, was.map { !$0.shuffle }, !defaults.shuffle))
        options.adam.learningRate = try pick("--lr", r.learningRate, was?.adam.learningRate, defaults.adam.learningRate)
        options.clipNorm = try pick("--clip-norm", r.clipNorm.map { Optional($0) }, was.map(\.clipNorm), nil) { $0.map { "\($0)" } ?? "none" }
        options.validationFraction = try pick("--val-fraction", r.validationFraction, was?.validationFraction, defaults.validationFraction)
        options.dropout = try pick("--dropout", r.dropout.map { $0 == 0 ? nil : $0 }, was.map(\.dropout), nil) { "\($0 ?? 0)" }
        if let was { options.adam = AdamConfig(learningRate: options.adam.learningRate, beta1: was.adam.beta1, beta2: was.adam.beta2, epsilon: was.adam.epsilon) }
        let oldSchedule = was.map { $0.schedule ?? .constant }
        var schedule = LearningRateSchedule()
        schedule.kind = try pick("--lr-schedule", r.schedule, oldSchedule?.kind, .constant) { $0.rawValue }
        schedule.warmupSteps = try pick("--warmup-steps", r.warmupSteps, oldSchedule?.warmupSteps, 0)
        schedule.decayEvery = try pick("--lr-decay-every", r.decayEvery.map { Optional($0) }, oldSchedule.map(\.decayEvery), nil) { $0.map { "\($0)" } ?? "none" }
        schedule.decayFactor = try pick("--lr-decay-factor", r.decayFactor.map { Optional($0) }, oldSchedule.map(\.decayFactor), nil) { $0.map { "\($0)" } ?? "none" }
        schedule.minRate = try pick("--min-lr", r.minRate, oldSchedule?.minRate, 0)
        options.epochs = r.epochs ?? was?.epochs ?? defaults.epochs

        let config = ModelConfig(
            vocab: stored?.config.vocab ?? 1,
            embed: try pick("--embed", r.embed, stored?.config.embed, RunRequest.defaultEmbed),
            units: try pick("--units", r.units, stored?.config.units, RunRequest.defaultUnits),
            cell: try pick("--cell", r.cell, stored?.config.cell, .gru) { $0.rawValue },
            layers: try pick("--layers", r.layers, stored?.config.layers, 1))
        try config.validate()
        // The schedule is checked once its default length is known, below.
        try options.validate()
        if let s = r.steps, s <= 0 { throw CharRNNError.invalidOption("--steps must be positive, got \(s)") }

        let (path, text) = try readText(stored?.text?.path)
        let source = TextSource(path: path, text: text)
        var state: TrainingState
        if var resumed = stored, let found {
            let place = found.url.path
            if let trained = resumed.text {
                if trained.sha256 != source.sha256 {
                    throw trained.path == path
                        ? RunSetupError.textChanged(checkpoint: place, path: path)
                        : RunSetupError.otherText(checkpoint: place, path: path, trainedOn: trained.path)
                }
            } else if Vocabulary(text: text) != resumed.vocabulary {
                throw RunSetupError.otherVocabulary(checkpoint: place, path: path)
            }
            resumed.options = options
            resumed.text = source
            log("resuming from \(place) at step \(resumed.position.globalStep)")
            state = resumed
        } else {
            let vocabulary = Vocabulary(text: text)
            var fresh = config
            fresh.vocab = vocabulary.count
            state = TrainingState.fresh(vocabulary: vocabulary, config: fresh, options: options)
            state.text = source
            if let file = r.initWeights {
                let (weights, notice) = try InitialWeights.load(URL(fileURLWithPath: file), config: fresh, vocabulary: vocabulary)
                state.weights = weights
                log("initial weights from \(file)")
                if let notice { log(notice) }
            }
        }

        let corpus = try Corpus(text: text, vocabulary: state.vocabulary)
        let split = Int(Double(corpus.ids.count) * (1 - options.validationFraction))
        let training = Array(corpus.ids[..<split])
        if stored == nil, schedule.kind == .cosine, schedule.decayEvery == nil {
            // By default the cosine descends over the whole run as first planned; stored, so resumes keep it.
            let planned = min(options.epochs * (SequenceSet(ids: training, seq: options.seq).count / options.batch), r.steps ?? .max)
            schedule.decayEvery = max(1, planned - schedule.warmupSteps)
        }
        state.options.schedule = schedule
        try state.options.validate()

        var monitoring = Monitoring(sampleEvery: r.sampleEvery, sampleLength: r.sampleLength)
        monitoring.validateEvery = r.validateEvery
        monitoring.earlyStopPatience = r.earlyStopPatience
        if options.validationFraction > 0 {
            let held = Array(corpus.ids[split...])
            guard held.count > options.seq else {
                throw CharRNNError.invalidOption(
                    "--val-fraction \(options.validationFraction) holds out \(held.count) characters, fewer than one sequence of \(options.seq + 1)")
            }
            monitoring.validation = held
        } else if r.validateEvery != nil || r.earlyStopPatience != nil {
            throw CharRNNError.invalidOption("--eval-every and --early-stop-patience need --val-fraction")
        }
        do {
            monitoring.samplePrime = try r.samplePrime.map { try state.vocabulary.encode($0) } ?? [corpus.ids[0]]
        } catch {
            throw CharRNNError.invalidOption("--sample-prime: \(error)")
        }
        let plan = try StepPlan(state: state, ids: training, stopAfter: r.steps)
        log("text \(path): \(corpus.ids.count) characters, \(corpus.vocabulary.count) symbols, \(plan.sequences.count) sequences, \(plan.stepsPerEpoch) steps per epoch"
            + (monitoring.validation.map { ", \($0.count) held out for validation" } ?? ""))
        log("model \(state.config), \(state.weights.count) parameters; batch \(options.batch), seq \(options.seq), shards \(options.shards)"
            + (options.dropout.map { ", dropout \($0)" } ?? ""))
        return PreparedRun(plan: plan, policy: r.checkpoints, monitoring: monitoring)
    }
}

/// Chooses each option's value: on resume the stored one (a differing given value is a conflict), on a fresh
/// run the given one or the default.
private struct Resolver {
    let checkpoint: String?

    func callAsFunction<T: Equatable>(
        _ option: String, _ given: T?, _ stored: T?, _ fallback: T, show: (T) -> String = { "\($0)" }
    ) throws -> T {
        guard let stored, let checkpoint else { return given ?? fallback }
        if let given, given != stored {
            throw RunSetupError.conflict(checkpoint: checkpoint, option: option, stored: show(stored), given: show(given))
        }
        return stored
    }
}
