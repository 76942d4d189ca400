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
///
/// In a run with keys every relay link is CURVE too: each worker's relay socket is a CURVE server with the
/// worker's own key pair, which its parent needs to know (`RelayPeer.key`), and admits only the run's
/// authorized worker keys (sent by the coordinator, `WireMessage.relayKeys`).
public struct RelayRoute: Equatable, Sendable {
    public static let maxFanout = 64
    /// Workers a route may name; bounds a chunk's first frame.
    public static let maxEndpoints = 4096
    /// Bytes of one endpoint (an ipc path can be long; a tcp one is ~30).
    public static let maxEndpointBytes = 256

    public let fanout: Int
    /// The workers below, in pre-order.
    public let peers: [RelayPeer]

    public init(fanout: Int, peers: [RelayPeer]) {
        precondition((1...Self.maxFanout).contains(fanout), "fan-out \(fanout) outside 1…\(Self.maxFanout)")
        self.fanout = fanout
        self.peers = peers
    }

    /// Workers of a run without keys.
    public init(fanout: Int, endpoints: [String]) {
        self.init(fanout: fanout, peers: endpoints.map { RelayPeer(endpoint: $0) })
    }

    public var endpoints: [String] { peers.map(\.endpoint) }

    /// A route with nobody below.
    public static let leaf = RelayRoute(fanout: 1, peers: [])

    /// The children, each with the route below it, in order.
    public func children() -> [(peer: RelayPeer, below: RelayRoute)] {
        let n = peers.count
        let parts = min(fanout, n)
        var out: [(RelayPeer, RelayRoute)] = []
        var start = 0
        for k in 0..<parts {
            let size = n / parts + (k < n % parts ? 1 : 0)
            out.append((peers[start], RelayRoute(fanout: fanout, peers: Array(peers[(start + 1)..<(start + size)]))))
            start += size
        }
        return out
    }
}

/// A relaying worker as others reach it: its relay endpoint and, in a run with keys, its CURVE public key.
public struct RelayPeer: Hashable, Sendable {
    public let endpoint: String
    public let key: CurveKey?

    public init(endpoint: String, key: CurveKey? = nil) {
        self.endpoint = endpoint
        self.key = key
    }
}
