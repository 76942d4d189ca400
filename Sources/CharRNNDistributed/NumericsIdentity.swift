import CharRNN
import Foundation

/// What must be equal for two processes to compute the same bits for the same shard: the OpenBLAS kernel,
/// charrnn's version, and the hash of a small fixed shard step run by each (which also catches what the
/// first two miss: another OpenBLAS build, another compiler's float code). A coordinator admits only
/// workers whose identity equals its own, so results never depend on which machine computed a shard.
public struct NumericsIdentity: Equatable, Sendable, CustomStringConvertible {
    public static let maxFieldBytes = 64

    public var kernel: String
    public var version: String
    /// The first 8 bytes of SHA-256 over the probe's loss, gradient and final state.
    public var probe: UInt64

    public init(kernel: String, version: String, probe: UInt64) {
        self.kernel = kernel
        self.version = version
        self.probe = probe
    }

    /// This process's identity, measured once (the probe takes about a millisecond).
    public static let current = NumericsIdentity(kernel: BLASRuntime.coreName, version: CharRNNVersion.current, probe: runProbe())

    public var description: String {
        let digits = String(probe, radix: 16)
        return "OpenBLAS \(kernel), charrnn \(version), probe \(String(repeating: "0", count: 16 - digits.count) + digits)"
    }

    /// Reads `description` back.
    public init?(parsing text: String) {
        let parts = text.components(separatedBy: ", ")
        guard parts.count == 3, parts[0].hasPrefix("OpenBLAS "), parts[1].hasPrefix("charrnn "), parts[2].hasPrefix("probe "),
              let probe = UInt64(parts[2].dropFirst(6), radix: 16) else { return nil }
        self.init(kernel: String(parts[0].dropFirst(9)), version: String(parts[1].dropFirst(8)), probe: probe)
    }

    /// Why a worker of identity `worker` may not join a run computed with this one; nil when it may.
    public func refusal(of worker: NumericsIdentity) -> String? {
        guard worker != self else { return nil }
        return "numerics differ: the coordinator runs \(self), this worker \(worker); its results would change the run's bits"
    }

    /// The coordinator's identity in a `refusal` message (which a worker may adopt); nil for another message.
    public static func coordinator(inRefusal message: String) -> NumericsIdentity? {
        guard let start = message.range(of: "the coordinator runs "), let end = message.range(of: ", this worker ") else { return nil }
        return NumericsIdentity(parsing: String(message[start.upperBound..<end.lowerBound]))
    }

    /// One training shard step of a small GRU over seeded weights and tokens: large enough that every
    /// kind of product the real step makes goes through the kernel, small enough to cost nothing.
    private static func runProbe() -> UInt64 {
        let config = ModelConfig(vocab: 13, embed: 16, units: 48, cell: .gru, layers: 2)
        let (rows, seq) = (8, 12)
        var rng = RandomSource(seed: 0x5EED, stream: 7)
        let ids = { (0..<(rows * seq)).map { _ in Int32(rng.nextIndex(below: config.vocab)) } }
        let shard = ShardRows(rows: rows, seq: seq, inputs: ids(), targets: ids())
        let step = ShardStep(config: config, maxRows: rows, seq: seq)
        step.load(weights: Parameters.initialized(config, seed: 0x5EED))
        let state = FloatBuffer(count: config.stateCount(rows: rows))
        let grads = Parameters(config)
        let loss = step.run(shard, state: state.base, grads: grads)
        var sha = SHA256()
        withUnsafeBytes(of: loss.bitPattern) { sha.update($0) }
        sha.update(UnsafeRawBufferPointer(grads.storage.buffer))
        sha.update(UnsafeRawBufferPointer(state.buffer))
        return sha.finalize().prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}
