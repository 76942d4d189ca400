import Foundation

/// When to write checkpoints: every N steps (optional), at each epoch's end, and when the run stops.
public struct CheckpointPolicy: Sendable {
    public var directory: URL
    public var every: Int?
    public var keep: Int

    public init(directory: URL, every: Int? = nil, keep: Int = 3) {
        self.directory = directory
        self.every = every
        self.keep = keep
    }
}
