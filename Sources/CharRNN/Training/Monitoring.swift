/// How the training loop watches a run learn, besides training it: held-out validation (and early stopping on
/// it) and samples as the model learns.
public struct Monitoring {
    /// Ids of the held-out text, evaluated at each epoch's end (and every `validateEvery` steps).
    public var validation: [Int32]?
    public var validateEvery: Int?
    /// Stop, with a final checkpoint, after this many validations in a row without a new best.
    public var earlyStopPatience: Int?
    public var sampleEvery: Int?
    public var samplePrime: [Int32] = []
    public var sampleLength = 200

    public init(validation: [Int32]? = nil, sampleEvery: Int? = nil, samplePrime: [Int32] = [], sampleLength: Int = 200) {
        self.validation = validation
        self.sampleEvery = sampleEvery
        self.samplePrime = samplePrime
        self.sampleLength = sampleLength
    }
}
