/// Everything the core can refuse, each with a one-line description fit for a user.
public enum CharRNNError: Error, Equatable, CustomStringConvertible {
    case invalidOption(String)
    case data(String)
    case checkpoint(String)
    case io(String)
    /// Step `step` (0-based) produced a loss or gradient that is not finite.
    case diverged(step: Int, loss: Double, gradientNorm: Float)

    public var description: String {
        switch self {
        case .invalidOption(let m): return "invalid option: \(m)"
        case .data(let m): return "data: \(m)"
        case .checkpoint(let m): return "checkpoint: \(m)"
        case .io(let m): return "i/o: \(m)"
        case .diverged(let step, let loss, let norm):
            return "training diverged at step \(step + 1): loss \(loss), gradient norm \(norm); the checkpoint of step \(step) is the last good one (lower --lr, set --clip-norm, or resume with --on-nonfinite skip)"
        }
    }
}
