#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The learning rate as a pure function of the global step s (0-based: the step being taken), so a resumed
/// or distributed run takes exactly the rates of an uninterrupted one. With base rate η, warm-up W steps,
/// floor η_min:
///
///     s < W:     η · (s + 1) / W                                      (linear warm-up, every kind)
///     constant:  η
///     step:      max(η_min, η · f^⌊(s − W) / N⌋)                      (× f every N steps)
///     cosine:    η_min + (η − η_min) · (1 + cos(π · min(1, (s − W) / N))) / 2    (over N steps, then η_min)
///
/// Computed in Double and rounded once to Float, so every process gets the same bits.
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable { case constant, step, cosine }

    public var kind: Kind = .constant
    public var warmupSteps: Int = 0
    /// N: steps between decays (step), or the length of the cosine's descent.
    public var decayEvery: Int? = nil
    /// f, for `step` (nil: 0.1).
    public var decayFactor: Double? = nil
    public var minRate: Float = 0

    public init(kind: Kind = .constant, warmupSteps: Int = 0, decayEvery: Int? = nil, decayFactor: Double? = nil, minRate: Float = 0) {
        self.kind = kind
        self.warmupSteps = warmupSteps
        self.decayEvery = decayEvery
        self.decayFactor = decayFactor
        self.minRate = minRate
    }

    /// The tutorial's: η at every step.
    public static let constant = LearningRateSchedule()

    public func rate(base: Float, step s: Int) -> Float {
        let eta = Double(base), floor = Double(minRate)
        if s < warmupSteps { return Float(eta * Double(s + 1) / Double(warmupSteps)) }
        let after = Double(s - warmupSteps)
        switch kind {
        case .constant:
            return base
        case .step:
            let n = Double(decayEvery ?? 1)
            return Float(max(floor, eta * pow(decayFactor ?? 0.1, (after / n).rounded(.down))))
        case .cosine:
            let progress = min(1, after / Double(decayEvery ?? 1))
            return Float(floor + (eta - floor) * (1 + cos(Double.pi * progress)) / 2)
        }
    }

    /// Refuses ranges that make no schedule; names the option at fault. `base` is the run's `--lr`.
    public func validate(base: Float) throws {
        func bad(_ message: String) -> CharRNNError { .invalidOption(message) }
        if warmupSteps < 0 { throw bad("--warmup-steps must not be negative, got \(warmupSteps)") }
        if let n = decayEvery, n <= 0 { throw bad("--lr-decay-every must be positive, got \(n)") }
        if !(minRate >= 0) || !minRate.isFinite { throw bad("--min-lr must be a number at least 0, got \(minRate)") }
        if minRate > base { throw bad("--min-lr \(minRate) must not exceed --lr \(base)") }
        switch kind {
        case .constant:
            if decayEvery != nil { throw bad("--lr-decay-every needs --lr-schedule step or cosine") }
            if minRate != 0 { throw bad("--min-lr needs --lr-schedule step or cosine") }
            if decayFactor != nil { throw bad("--lr-decay-factor needs --lr-schedule step") }
        case .step:
            if decayEvery == nil { throw bad("--lr-schedule step needs --lr-decay-every") }
            if let f = decayFactor, !(f > 0 && f < 1) { throw bad("--lr-decay-factor must be above 0 and below 1, got \(f)") }
        case .cosine:
            if decayEvery == nil { throw bad("--lr-schedule cosine needs the length of its descent (--lr-decay-every)") }
            if decayFactor != nil { throw bad("--lr-decay-factor needs --lr-schedule step") }
        }
    }
}
