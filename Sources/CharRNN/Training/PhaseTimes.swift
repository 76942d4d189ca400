#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall time by phase of a training step, in seconds, accumulated across shards and steps.
public struct PhaseTimes: Sendable {
    public var forwardRecurrence = 0.0
    public var backwardRecurrence = 0.0
    public var weightGradients = 0.0
    public var dense = 0.0
    /// Drawing and applying dropout masks, forward and backward.
    public var dropout = 0.0

    public init() {}

    public var total: Double { forwardRecurrence + backwardRecurrence + weightGradients + dense + dropout }
}

/// A monotonic stopwatch: `lap()` returns the seconds since the previous lap (or creation).
public struct PhaseClock {
    private var last: Double

    public init() { last = PhaseClock.now() }

    public mutating func lap() -> Double {
        let t = PhaseClock.now()
        defer { last = t }
        return t - last
    }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
