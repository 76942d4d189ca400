/// Everything the core can refuse, each with a one-line description fit for a user.
public enum CharRNNError: Error, Equatable, CustomStringConvertible {
    case invalidOption(String)
    case data(String)
    case checkpoint(String)
    case io(String)

    public var description: String {
        switch self {
        case .invalidOption(let m): return "invalid option: \(m)"
        case .data(let m): return "data: \(m)"
        case .checkpoint(let m): return "checkpoint: \(m)"
        case .io(let m): return "i/o: \(m)"
        }
    }
}
