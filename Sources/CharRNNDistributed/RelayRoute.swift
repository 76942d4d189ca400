/// Who passes a step's weights on to whom: the workers below one node of the relay tree, in pre-order, and the
/// tree's fan-out. The coordinator holds the route of every relaying worker and sends each chunk of the weights
/// to its children only; every worker forwards each chunk, as soon as it has it, to its own children with their
/// routes. So the coordinator's link carries the weights `fanout` times per step, not once per worker, and the
/// route travels with the data: a worker needs no plan of its own, and a new route (workers joined or lost) takes
/// effect with the next step's first chunk.
///
/// The rule: a node's workers (itself excluded) are cut into `fanout` contiguous parts, as equal as possible, the
/// earlier ones larger; the first worker of each part is a child, the rest of the part is that child's route. With
/// fan-out 2 and workers a…g below the coordinator:
///
///                coordinator
///               /           \
///              a             e
///            /   \         /   \
///           b     d       f     g
///           |
///           c
///
/// Depth is about log_fanout(N), and fan-out 1 is a chain (each link carries the weights once; the last
/// worker's chunk has passed through N−1 others). The split changes only the route, never a result.
public struct RelayRoute: Equatable, Sendable {
    public static let maxFanout = 64
    /// Workers a route may name; bounds a chunk's first frame.
    public static let maxEndpoints = 4096
    /// Bytes of one endpoint (an ipc path can be long; a tcp one is ~30).
    public static let maxEndpointBytes = 256

    public let fanout: Int
    /// The relay endpoints of the workers below, in pre-order.
    public let endpoints: [String]

    public init(fanout: Int, endpoints: [String]) {
        precondition((1...Self.maxFanout).contains(fanout), "fan-out \(fanout) outside 1…\(Self.maxFanout)")
        self.fanout = fanout
        self.endpoints = endpoints
    }

    /// A route with nobody below.
    public static let leaf = RelayRoute(fanout: 1, endpoints: [])

    /// The children, each with the route below it, in order.
    public func children() -> [(endpoint: String, below: RelayRoute)] {
        let n = endpoints.count
        let parts = min(fanout, n)
        var out: [(String, RelayRoute)] = []
        var start = 0
        for k in 0..<parts {
            let size = n / parts + (k < n % parts ? 1 : 0)
            out.append((endpoints[start], RelayRoute(fanout: fanout, endpoints: Array(endpoints[(start + 1)..<(start + size)]))))
            start += size
        }
        return out
    }
}
