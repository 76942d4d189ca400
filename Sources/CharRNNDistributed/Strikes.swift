/// Bad messages per peer, and the peers ignored for sending too many. Peers choose their own ids, so both
/// tables are bounded: a flood of made-up ids cannot grow them without limit (the smallest count, then the
/// oldest ban, makes room), and a peer that leaves takes its count along. A ban is not forever either way:
/// a peer with a new id starts afresh, which is why a ban is about noise, not trust.
struct Strikes {
    let limit: Int
    let capacity: Int
    private var counts: [[UInt8]: Int] = [:]
    private var banned: Set<[UInt8]> = []
    /// Bans in the order they happened, to drop the oldest first.
    private var banOrder: [[UInt8]] = []

    init(limit: Int, capacity: Int) {
        precondition(limit >= 1 && capacity >= 1)
        self.limit = limit
        self.capacity = capacity
    }

    func isBanned(_ peer: [UInt8]) -> Bool { banned.contains(peer) }

    var trackedPeers: Int { counts.count }
    var bannedPeers: Int { banned.count }

    /// Counts a bad message from `peer`; true when this one bans it.
    mutating func strike(_ peer: [UInt8]) -> Bool {
        if counts[peer] == nil, counts.count >= capacity, let least = counts.min(by: { $0.value < $1.value })?.key {
            counts[least] = nil
        }
        counts[peer, default: 0] += 1
        guard counts[peer]! >= limit, !banned.contains(peer) else { return false }
        counts[peer] = nil
        if banned.count >= capacity {
            banned.remove(banOrder.removeFirst())
        }
        banned.insert(peer)
        banOrder.append(peer)
        return true
    }

    /// `peer` left: its count goes (a ban stays).
    mutating func forget(_ peer: [UInt8]) { counts[peer] = nil }
}
