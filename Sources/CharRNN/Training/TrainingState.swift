/// Options that decide the result of a run bit for bit. A resumed run must use the same ones, so they are
/// stored in every checkpoint and compared on `--resume`.
public struct TrainingOptions: Codable, Equatable, Sendable {
    public var batch: Int = 64
    public var seq: Int = 100
    public var shards: Int = 1
    public var seed: UInt64 = 0
    public var buffer: Int = 10_000
    public var shuffle: Bool = true
    public var epochs: Int = 10
    public var adam = AdamConfig()
    public var clipNorm: Float? = nil
    /// The end of the text held out for validation (0: none, the tutorial's behaviour).
    public var validationFraction: Double = 0
    /// Dropout rate on every recurrent layer's output (nil: none, the tutorial's model; a rate of 0 is stored as
    /// nil, so `--dropout 0` and no option are the same run). Optional so that checkpoints written before
    /// dropout existed still decode.
    public var dropout: Float? = nil {
        didSet { if dropout == 0 { dropout = nil } }
    }

    /// How the learning rate moves with the step (nil: constant `adam.learningRate`, the tutorial's; also what
    /// checkpoints written before schedules existed decode to). A constant schedule is stored as nil.
    public var schedule: LearningRateSchedule? = nil {
        didSet { if schedule == .constant { schedule = nil } }
    }

    public init() {}

    /// The rate Adam uses at global step `step` (0-based).
    public func learningRate(at step: Int) -> Float {
        schedule?.rate(base: adam.learningRate, step: step) ?? adam.learningRate
    }

    /// The dropout a shard step applies: the rate and the run's seed, or nil.
    public var dropoutMasks: Dropout? { dropout.map { Dropout(rate: $0, seed: seed) } }

    public func validate() throws {
        func positive(_ name: String, _ v: Int) throws {
            if v <= 0 { throw CharRNNError.invalidOption("\(name) must be positive, got \(v)") }
        }
        try positive("--batch", batch)
        try positive("--seq", seq)
        try positive("--shards", shards)
        try positive("--buffer", buffer)
        try positive("--epochs", epochs)
        if batch % shards != 0 { throw CharRNNError.invalidOption("--shards \(shards) must divide --batch \(batch)") }
        if !(adam.learningRate > 0) || !adam.learningRate.isFinite { throw CharRNNError.invalidOption("--lr must be a positive number") }
        if let c = clipNorm, !(c > 0) || !c.isFinite { throw CharRNNError.invalidOption("--clip-norm must be a positive number") }
        if let p = dropout, !(p > 0 && p < 1) { throw CharRNNError.invalidOption("--dropout must be above 0 and below 1, got \(p)") }
        if !(0..<1).contains(validationFraction) { throw CharRNNError.invalidOption("--val-fraction must be at least 0 and below 1") }
        try schedule?.validate(base: adam.learningRate)
    }
}

/// Where a run is: the next step to take is `stepInEpoch` of `epoch`; `globalStep` steps are done.
public struct TrainingPosition: Codable, Equatable, Sendable {
    public var epoch: Int = 0
    public var stepInEpoch: Int = 0
    public var globalStep: Int = 0

    public init(epoch: Int = 0, stepInEpoch: Int = 0, globalStep: Int = 0) {
        self.epoch = epoch
        self.stepInEpoch = stepInEpoch
        self.globalStep = globalStep
    }
}

/// Everything a run needs to continue exactly where it stopped: what a checkpoint holds.
public struct TrainingState: @unchecked Sendable {
    public var vocabulary: Vocabulary
    public var options: TrainingOptions
    public var position: TrainingPosition
    public var weights: Parameters
    public var adam: AdamState
    /// Recurrent state of every batch row, [batch, `config.stateWidth`] row-major; shard s owns rows
    /// s·B/S ..< (s+1)·B/S.
    public var hidden: FloatBuffer
    /// The training text, when known (checkpoints written before it was recorded have none).
    public var text: TextSource? = nil

    public var config: ModelConfig { weights.config }

    public init(
        vocabulary: Vocabulary, options: TrainingOptions, position: TrainingPosition,
        weights: Parameters, adam: AdamState, hidden: FloatBuffer
    ) {
        self.vocabulary = vocabulary
        self.options = options
        self.position = position
        self.weights = weights
        self.adam = adam
        self.hidden = hidden
    }

    /// A fresh run: initialised weights, zero moments and states, at the start of epoch 0.
    public static func fresh(vocabulary: Vocabulary, config: ModelConfig, options: TrainingOptions) -> TrainingState {
        TrainingState(
            vocabulary: vocabulary, options: options, position: TrainingPosition(),
            weights: Parameters.initialized(config, seed: options.seed), adam: AdamState(config),
            hidden: FloatBuffer(count: config.stateCount(rows: options.batch)))
    }
}
