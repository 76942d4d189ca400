import Foundation
import XCTest
import CharRNN
@testable import CharRNNDistributed

final class WireTests: XCTestCase {
    private let config = ModelConfig(vocab: 11, embed: 3, units: 4)
    private let runID: UInt64 = 0xC0FF_EE00_1234_5678
    private lazy var shape = try! RunShape(config: config, seq: 5, rowsPerShard: 2, shardCount: 3)
    private lazy var codec = WireCodec(runID: runID, shape: shape)

    // MARK: Fixtures

    private func floats(_ count: Int, seed: UInt64) -> FloatBuffer {
        var rng = RandomSource(seed: seed)
        let buffer = FloatBuffer(count: count)
        for i in 0..<count { buffer[i] = rng.nextUnitFloat() * 2 - 1 }
        return buffer
    }

    private func rows(seed: UInt64) -> ShardRows {
        var rng = RandomSource(seed: seed)
        let n = shape.rowsPerShard * shape.seq
        let ids = (0..<(2 * n)).map { _ in Int32(rng.next() % UInt64(config.vocab)) }
        return ShardRows(rows: shape.rowsPerShard, seq: shape.seq, inputs: Array(ids[..<n]), targets: Array(ids[n...]))
    }

    private var stateCount: Int { shape.rowsPerShard * config.units }

    private func workOrder() -> WorkOrder {
        WorkOrder(
            epoch: 3,
            shards: [
                WorkShard(index: 2, state: nil, rows: rows(seed: 1)),
                WorkShard(index: 0, state: floats(stateCount, seed: 2), rows: rows(seed: 3)),
            ],
            weights: floats(shape.parameterCount, seed: 4))
    }

    private func results() -> [ShardResult] {
        [1, 2].map { i in
            ShardResult(
                index: i, loss: 4.17 + Double(i), state: floats(stateCount, seed: 10 + UInt64(i)),
                gradient: floats(shape.parameterCount, seed: 20 + UInt64(i)))
        }
    }

    /// What the peer's socket would hand over: every frame's bytes.
    private func bytes(_ frames: [ZMQFrame]) -> [[UInt8]] {
        frames.map { frame in
            switch frame {
            case .bytes(let b): return b
            case .zeroCopy(let b, _): return Array(b)
            }
        }
    }

    private func decode(_ frames: [[UInt8]], with codec: WireCodec? = nil) throws(WireError) -> WireEnvelope {
        try (codec ?? self.codec).decode(frames.map(ZMQMessage.init(copying:)))
    }

    private func encoded(_ message: WireMessage, step: Int = 42) throws -> [[UInt8]] {
        bytes(try codec.encode(message, step: step))
    }

    /// Recomputes the checksum so a deliberately broken frame gets past the integrity check to the deeper ones.
    private func reseal(_ frames: inout [[UInt8]]) {
        guard frames.first.map({ $0.count >= WireCodec.headerSize }) == true else { return }
        var sum = WireChecksum()
        frames[0].withUnsafeBytes { f in
            sum.add(UnsafeRawBufferPointer(rebasing: f[..<32]))
            sum.add(UnsafeRawBufferPointer(rebasing: f[WireCodec.headerSize...]))
        }
        for frame in frames.dropFirst() { frame.withUnsafeBytes { sum.add($0) } }
        withUnsafeBytes(of: sum.value.littleEndian) { frames[0].replaceSubrange(32..<40, with: $0) }
    }

    private func put<T: FixedWidthInteger>(_ value: T, at offset: Int, in frame: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { frame.replaceSubrange(offset..<(offset + MemoryLayout<T>.size), with: $0) }
    }

    private func assertRejects(
        _ frames: [[UInt8]], with codec: WireCodec? = nil, _ expected: WireError,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            _ = try decode(frames, with: codec)
            XCTFail("decoded, expected \(expected)", file: file, line: line)
        } catch {
            XCTAssertEqual(error, expected, file: file, line: line)
        }
    }

    private func assertMalformed(
        _ frames: [[UInt8]], with codec: WireCodec? = nil, containing text: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            _ = try decode(frames, with: codec)
            XCTFail("decoded, expected a malformed error about \(text)", file: file, line: line)
        } catch {
            guard case .malformed(let message) = error, message.contains(text) else {
                return XCTFail("\(error) is not malformed(…\(text)…)", file: file, line: line)
            }
        }
    }

    // MARK: Round trips

    func testHelloRoundTripIgnoresRunID() throws {
        let worker = WireCodec()
        let frames = bytes(try worker.encode(.hello(WorkerHello(name: "node-7 wörker", blasThreads: 2))))
        XCTAssertEqual(frames.count, 1)
        let envelope = try decode(frames)
        XCTAssertEqual(envelope.runID, 0)
        guard case .hello(let hello) = envelope.message else { return XCTFail("\(envelope.message)") }
        XCTAssertEqual(hello, WorkerHello(name: "node-7 wörker", blasThreads: 2))
        XCTAssertEqual(hello.identity, NumericsIdentity.current)

        let other = NumericsIdentity(kernel: "Prescott", version: "0.0.1", probe: 0xDEAD_BEEF)
        let sent = WorkerHello(name: "w", blasThreads: 1, identity: other)
        guard case .hello(let got) = try decode(bytes(try worker.encode(.hello(sent)))).message else { return XCTFail() }
        XCTAssertEqual(got, sent)
        XCTAssertNotNil(NumericsIdentity.current.refusal(of: other))
        XCTAssertNil(NumericsIdentity.current.refusal(of: .current))
        XCTAssertEqual(NumericsIdentity(parsing: other.description), other)
        let bad = WorkerHello(name: "w", blasThreads: 1, identity: NumericsIdentity(kernel: "Has\nwell", version: "1", probe: 0))
        XCTAssertThrowsError(try worker.encode(.hello(bad)))
    }

    func testWelcomeRoundTripTeachesTheWorkerTheRun() throws {
        let envelope = try decode(try encoded(.welcome(shape), step: 0), with: WireCodec())
        XCTAssertEqual(envelope.runID, runID)
        guard case .welcome(let received) = envelope.message else { return XCTFail("\(envelope.message)") }
        XCTAssertEqual(received, shape)
    }

    /// Dropout travels in the welcome, so every worker draws the coordinator's masks; a rate outside [0, 1) is refused.
    func testWelcomeCarriesDropout() throws {
        let lstm = ModelConfig(vocab: 11, embed: 3, units: 4, cell: .lstm, layers: 2)
        let withDropout = try RunShape(config: lstm, seq: 5, rowsPerShard: 2, shardCount: 3, dropout: Dropout(rate: 0.2, seed: 77))
        let frames = try bytes(WireCodec(runID: runID, shape: withDropout).encode(.welcome(withDropout), step: 0))
        guard case .welcome(let received) = try decode(frames, with: WireCodec()).message else { return XCTFail() }
        XCTAssertEqual(received, withDropout)

        // A rate of 0 is no dropout, and that is what arrives.
        let none = try RunShape(config: lstm, seq: 5, rowsPerShard: 2, shardCount: 3, dropout: Dropout(rate: 0, seed: 9))
        XCTAssertNil(none.dropout)
        XCTAssertThrowsError(try RunShape(config: lstm, seq: 5, rowsPerShard: 2, shardCount: 3, dropout: Dropout(rate: .nan, seed: 9)))

        var bad = frames
        put(Float(1).bitPattern, at: 40 + 40, in: &bad[0])
        reseal(&bad)
        assertMalformed(bad, with: WireCodec(), containing: "dropout rate 1.0 outside")
    }

    func testWorkRoundTrip() throws {
        let order = workOrder()
        let frames = try codec.encode(.work(order), step: 42)
        XCTAssertEqual(frames.count, 2)
        guard case .zeroCopy(let weightBytes, let owner) = frames[1] else { return XCTFail("weights not zero-copy") }
        XCTAssert(owner === order.weights)
        XCTAssertEqual(weightBytes.baseAddress, UnsafeRawPointer(order.weights.base))

        let envelope = try decode(bytes(frames))
        XCTAssertEqual(envelope.runID, runID)
        XCTAssertEqual(envelope.step, 42)
        guard case .work(let received, _) = envelope.message else { return XCTFail("\(envelope.message)") }
        XCTAssertEqual(received.epoch, 3)
        XCTAssert(received.weights.bitwiseEqual(order.weights))
        XCTAssertEqual(received.shards.map(\.index), [2, 0])
        XCTAssertNil(received.shards[0].state)
        XCTAssert(try XCTUnwrap(received.shards[1].state).bitwiseEqual(try XCTUnwrap(order.shards[1].state)))
        XCTAssertEqual(received.shards.map(\.rows), order.shards.map(\.rows))
    }

    func testResultRoundTrip() throws {
        let sent = results()
        let frames = try codec.encode(.result(sent), step: 42)
        XCTAssertEqual(frames.count, 3)
        let envelope = try decode(bytes(frames))
        guard case .result(let received) = envelope.message else { return XCTFail("\(envelope.message)") }
        XCTAssertEqual(received.count, 2)
        for (r, s) in zip(received, sent) {
            XCTAssertEqual(r.index, s.index)
            XCTAssertEqual(r.loss.bitPattern, s.loss.bitPattern)
            XCTAssert(r.state.bitwiseEqual(s.state))
            XCTAssert(r.gradient.bitwiseEqual(s.gradient))
        }
    }

    func testControlMessagesRoundTrip() throws {
        guard case .ping = try decode(try encoded(.ping)).message else { return XCTFail("ping") }
        guard case .shutdown = try decode(try encoded(.shutdown)).message else { return XCTFail("shutdown") }
        guard case .error(let text) = try decode(try encoded(.error("worker: out of memory\nat step 42"))).message else {
            return XCTFail("error")
        }
        XCTAssertEqual(text, "worker: out of memory\nat step 42")
    }

    // MARK: Rejections

    func testTruncatedFramesAreRejected() throws {
        var frames = try encoded(.work(workOrder()))
        assertRejects([Array(frames[0][..<39])], .truncated(expected: 40, present: 39))
        assertRejects([], .truncated(expected: 40, present: 0))
        let full = frames[1].count
        frames[1].removeLast()
        let declared = frames[0].count - 40 + full
        assertRejects(frames, .truncated(expected: declared, present: declared - 1))
    }

    func testHugeLengthFieldIsRejectedBeforeAnythingIsSized() throws {
        var frames = try encoded(.work(workOrder()))
        put(UInt64.max, at: 24, in: &frames[0])
        do {
            _ = try decode(frames)
            XCTFail("decoded a frame declaring \(UInt64.max) bytes")
        } catch {
            guard case .oversized(UInt64.max, _) = error else { return XCTFail("\(error) is not oversized") }
        }
        // A control message may not carry a payload at all.
        var ping = try encoded(.ping)
        put(UInt64(1 << 40), at: 24, in: &ping[0])
        assertRejects(ping, .oversized(declared: 1 << 40, limit: 0))
    }

    func testTrailingBytesAreRejected() throws {
        var frames = try encoded(.ping)
        frames[0].append(0)
        assertMalformed(frames, containing: "1 bytes beyond the declared payload")
        put(UInt64(1), at: 24, in: &frames[0])
        reseal(&frames)
        assertRejects(frames, .oversized(declared: 1, limit: 0))
    }

    func testHeaderFieldsAreChecked() throws {
        let frames = try encoded(.work(workOrder()))

        var badMagic = frames
        badMagic[0][0] = UInt8(ascii: "X")
        assertRejects(badMagic, .badMagic)

        var newer = frames
        put(WireCodec.version + 1, at: 4, in: &newer[0])
        assertRejects(newer, .unsupportedVersion(WireCodec.version + 1))
        XCTAssertEqual(WireError.unsupportedVersion(3).description, "unsupported protocol version 3 (this build speaks \(WireCodec.version))")

        var unknown = frames
        put(UInt16(99), at: 6, in: &unknown[0])
        assertRejects(unknown, .unknownType(99))

        assertRejects(frames, with: WireCodec(runID: 7, shape: shape), .wrongRun(expected: 7, got: runID))
    }

    func testCorruptionAnywhereFailsTheChecksum() throws {
        let frames = try encoded(.result(results()))
        for (frame, offset) in [(0, 20), (0, 60), (1, 0), (2, frames[2].count - 1)] {
            var corrupted = frames
            corrupted[frame][offset] ^= 0x10
            assertRejects(corrupted, .badChecksum)
        }
        // Moving bytes between frames keeps the total length but not the checksum.
        var shifted = frames
        shifted[2].insert(shifted[1].removeLast(), at: 0)
        assertRejects(shifted, .badChecksum)
    }

    func testWorkAndResultNeedTheRunShape() throws {
        let frames = try encoded(.work(workOrder()))
        assertMalformed(frames, with: WireCodec(runID: runID), containing: "before the run's sizes are known")
        XCTAssertThrowsError(try WireCodec().encode(.result(results())))
    }

    func testShardIndexOutOfRangeIsRejected() throws {
        // Encoded for a run with more shards, so the frame is otherwise valid with a correct checksum.
        let wider = WireCodec(runID: runID, shape: try RunShape(config: config, seq: 5, rowsPerShard: 2, shardCount: 8))
        var order = workOrder()
        order.shards[0].index = 5
        let frames = bytes(try wider.encode(.work(order)))
        assertMalformed(frames, containing: "shard index 5 outside 0..<3")
        XCTAssertThrowsError(try codec.encode(.work(order)))

        order.shards[0].index = 0
        XCTAssertThrowsError(try codec.encode(.work(order))) { error in
            XCTAssertEqual(error as? WireError, .malformed("shard 0 appears twice"))
        }
    }

    func testTokenOutsideTheVocabularyIsRejected() throws {
        var frames = try encoded(.work(workOrder()))
        // Shard 2 is the first in the body and has no state: body = epoch, count, n, 4 shard fields, inputs.
        let firstInput = 40 + 8 + 8 + 4 + 16
        put(Int32(11), at: firstInput, in: &frames[0])
        reseal(&frames)
        assertMalformed(frames, containing: "token id 11 in inputs of shard 2 outside 0..<11")
        put(Int32(-1), at: firstInput, in: &frames[0])
        reseal(&frames)
        assertMalformed(frames, containing: "token id -1")

        var order = workOrder()
        order.shards[1].rows.targets[3] = 64
        XCTAssertThrowsError(try codec.encode(.work(order))) { error in
            XCTAssertEqual(error as? WireError, .malformed("token id 64 in targets of shard 0 outside 0..<11"))
        }
    }

    func testNonFiniteFloatsAreRejected() throws {
        var frames = try encoded(.result(results()))
        let nan = Float.nan.bitPattern
        put(nan, at: 4 * 17, in: &frames[2])
        reseal(&frames)
        assertRejects(frames, .nonFinite("gradient of shard 2"))

        var sent = results()
        sent[0].gradient[3] = .infinity
        XCTAssertThrowsError(try codec.encode(.result(sent))) { error in
            XCTAssertEqual(error as? WireError, .nonFinite("gradient of shard 1"))
        }
        sent = results()
        sent[1].loss = .nan
        XCTAssertThrowsError(try codec.encode(.result(sent))) { error in
            XCTAssertEqual(error as? WireError, .nonFinite("loss of shard 2"))
        }
        let order = workOrder()
        let state = try XCTUnwrap(order.shards[1].state)
        state[0] = -.infinity
        XCTAssertThrowsError(try codec.encode(.work(order))) { error in
            XCTAssertEqual(error as? WireError, .nonFinite("hidden state of shard 0"))
        }
    }

    func testWrongSizesAreRejected() throws {
        var sent = results()
        sent[0].gradient = FloatBuffer(count: shape.parameterCount - 1)
        XCTAssertThrowsError(try codec.encode(.result(sent)))

        // A result missing one gradient frame (length field and checksum fixed up to match).
        var frames = try encoded(.result(results()))
        frames.removeLast()
        put(UInt64(frames[0].count - 40 + frames[1].count), at: 24, in: &frames[0])
        reseal(&frames)
        assertMalformed(frames, containing: "2 shards but 1 gradient frames")

        // A welcome whose sizes would overflow arithmetic.
        var welcome = try encoded(.welcome(shape))
        put(UInt32.max, at: 40, in: &welcome[0])
        reseal(&welcome)
        assertMalformed(welcome, with: WireCodec(), containing: "vocab 4294967295 outside")

        XCTAssertThrowsError(try RunShape(config: config, seq: 1 << 20, rowsPerShard: 1 << 20, shardCount: 1))
    }

    func testNamesAreBoundedAndPrintable() throws {
        let worker = WireCodec()
        XCTAssertThrowsError(try worker.encode(.hello(WorkerHello(name: String(repeating: "x", count: 257), blasThreads: 1))))
        XCTAssertThrowsError(try worker.encode(.hello(WorkerHello(name: "evil\u{1B}[2J", blasThreads: 1))))
        XCTAssertThrowsError(try worker.encode(.hello(WorkerHello(name: "w", blasThreads: 0))))
        XCTAssertNoThrow(try worker.encode(.hello(WorkerHello(name: String(repeating: "é", count: 128), blasThreads: 1))))

        var frames = bytes(try worker.encode(.hello(WorkerHello(name: "abc", blasThreads: 1))))
        frames[0][40 + 8] = 0xFF
        reseal(&frames)
        assertMalformed(frames, containing: "worker name is not UTF-8")
    }

    // MARK: Chunks

    /// Weights and gradients that take three frames each (a little over 1 MiB).
    private lazy var bigShape = try! RunShape(config: ModelConfig(vocab: 65, embed: 64, units: 256), seq: 3, rowsPerShard: 2, shardCount: 4)
    private lazy var bigCodec = WireCodec(runID: runID, shape: bigShape)

    func testBulkVectorsTravelInZeroCopyChunksOfAtMost512KiB() throws {
        let p = bigShape.parameterCount
        let k = WireCodec.chunkCount(floats: p)
        XCTAssertEqual(k, 3)
        let weights = floats(p, seed: 5)
        let tokens = [Int32](repeating: 7, count: bigShape.tokenCount)
        let order = WorkOrder(epoch: 1, shards: [WorkShard(index: 3, state: nil, rows: ShardRows(rows: 2, seq: 3, inputs: tokens, targets: tokens))], weights: weights)
        let frames = try bigCodec.encode(.work(order), step: 7)
        XCTAssertEqual(frames.count, 1 + k)
        var offset = 0
        for frame in frames.dropFirst() {
            guard case .zeroCopy(let chunk, let owner) = frame else { return XCTFail("a chunk is not zero-copy") }
            XCTAssert(owner === weights)
            XCTAssertEqual(chunk.baseAddress, UnsafeRawPointer(weights.base) + offset)
            XCTAssertLessThanOrEqual(chunk.count, WireCodec.chunkBytes)
            offset += chunk.count
        }
        XCTAssertEqual(offset, 4 * p)
        let wire = bytes(frames)
        XCTAssert(wire.allSatisfy { $0.count <= WireCodec.largestFrame(bigShape) })
        guard case .work(let received, _) = try decode(wire, with: bigCodec).message else { return XCTFail("not work") }
        XCTAssert(received.weights.bitwiseEqual(weights))

        let sent = (0..<2).map { i in
            ShardResult(index: i, loss: 1, state: floats(bigShape.stateCount, seed: 30), gradient: floats(p, seed: 31 + UInt64(i)))
        }
        let result = bytes(try bigCodec.encode(.result(sent), step: 7))
        XCTAssertEqual(result.count, 1 + 2 * k)
        guard case .result(let back) = try decode(result, with: bigCodec).message else { return XCTFail("not a result") }
        XCTAssert(zip(back, sent).allSatisfy { $0.gradient.bitwiseEqual($1.gradient) })

        // A vector cut any other way is refused: two chunks merged, a byte moved across a cut, a chunk split.
        var merged = wire
        merged[1] += merged.remove(at: 2)
        reseal(&merged)
        assertMalformed(merged, with: bigCodec, containing: "weights in \(k - 1) frames, expected \(k)")
        var moved = wire
        moved[2].insert(moved[1].removeLast(), at: 0)
        reseal(&moved)
        assertMalformed(moved, with: bigCodec, containing: "frame 1 of weights has \(WireCodec.chunkBytes - 1) bytes")
        var split = result
        let last = split.removeLast()
        split += [Array(last[..<4]), Array(last[4...])]
        reseal(&split)
        assertMalformed(split, with: bigCodec, containing: "2 shards but \(2 * k + 1) gradient frames")
    }

    // MARK: The relay tree's messages

    /// A chunk leaves the coordinator as a zero-copy view of the whole weights and a relay forwards the chunk it
    /// decoded (its own floats only): both encode to the same bytes, and the route and floats come through.
    func testWeightsChunksRoundTripFromTheWholeWeightsOrTheChunkAlone() throws {
        let p = bigShape.parameterCount
        let weights = floats(p, seed: 8)
        let route = RelayRoute(fanout: 3, endpoints: ["tcp://10.0.0.2:5000", "ipc:///tmp/r 1".replacingOccurrences(of: " ", with: "_")])
        let ranges = WireCodec.chunkRanges(floats: p)
        for index in ranges.indices {
            let frames = try bigCodec.encode(.weights(WeightsChunk(index: index, floats: weights, route: route)), step: 9)
            XCTAssertEqual(frames.count, 2)
            guard case .zeroCopy(let chunk, let owner) = frames[1] else { return XCTFail("a chunk is not zero-copy") }
            XCTAssert(owner === weights)
            XCTAssertEqual(chunk.baseAddress, UnsafeRawPointer(weights.base) + ranges[index].lowerBound)
            let envelope = try decode(bytes(frames), with: bigCodec)
            XCTAssertEqual(envelope.step, 9)
            guard case .weights(let received) = envelope.message else { return XCTFail("\(envelope.message)") }
            XCTAssertEqual(received.index, index)
            XCTAssertEqual(received.route, route)
            XCTAssertEqual(4 * received.floats.count, ranges[index].count)
            XCTAssertEqual(memcmp(received.floats.base, UnsafeRawPointer(weights.base) + ranges[index].lowerBound, ranges[index].count), 0)
            let forwarded = bytes(try bigCodec.encode(.weights(received), step: 9))
            XCTAssertEqual(forwarded, bytes(frames), "chunk \(index) forwarded differs")
            XCTAssert(forwarded.allSatisfy { $0.count <= WireCodec.headerSize + max(WireCodec.chunkBytes, WireCodec.largestWeightsBody) })
        }
        var assembly = WeightsAssembly(step: 9, parameters: p)
        for index in ranges.indices.reversed() {
            guard case .weights(let chunk) = try decode(bytes(try bigCodec.encode(.weights(WeightsChunk(index: index, floats: weights, route: .leaf)))), with: bigCodec).message
            else { return XCTFail() }
            XCTAssertFalse(assembly.isComplete)
            assembly.add(chunk)
            assembly.add(chunk)
        }
        XCTAssert(assembly.isComplete)
        XCTAssert(assembly.weights.bitwiseEqual(weights), "chunks put together out of order")
    }

    func testWeightsChunksAreChecked() throws {
        let p = bigShape.parameterCount
        let k = WireCodec.chunkCount(floats: p)
        let weights = floats(p, seed: 8)
        XCTAssertThrowsError(try bigCodec.encode(.weights(WeightsChunk(index: k, floats: weights, route: .leaf))))
        XCTAssertThrowsError(try bigCodec.encode(.weights(WeightsChunk(index: 0, floats: floats(5, seed: 1), route: .leaf))))
        for bad in ["tcp://host name:1", String(repeating: "x", count: 257), "ipc:///é"] {
            XCTAssertThrowsError(try bigCodec.encode(.weights(WeightsChunk(index: 0, floats: weights, route: RelayRoute(fanout: 1, endpoints: [bad])))), bad)
            XCTAssertThrowsError(try WireCodec().encode(.hello(WorkerHello(name: "w", blasThreads: 1, relay: RelayPeer(endpoint: bad)))), bad)
        }
        let good = bytes(try bigCodec.encode(.weights(WeightsChunk(index: 1, floats: weights, route: RelayRoute(fanout: 2, endpoints: ["ipc:///a"]))), step: 3))

        var outOfRange = good
        put(UInt32(k), at: WireCodec.headerSize, in: &outOfRange[0])
        reseal(&outOfRange)
        assertMalformed(outOfRange, with: bigCodec, containing: "weight chunk \(k) of \(k)")
        var otherChunk = good
        put(UInt32(k - 1), at: WireCodec.headerSize, in: &otherChunk[0])
        reseal(&otherChunk)
        assertMalformed(otherChunk, with: bigCodec, containing: "expected \(WireCodec.chunkRanges(floats: p)[k - 1].count)")
        var noFanout = good
        put(UInt32(0), at: WireCodec.headerSize + 4, in: &noFanout[0])
        reseal(&noFanout)
        assertMalformed(noFanout, with: bigCodec, containing: "fan-out 0")
        var longRoute = good
        put(UInt32(RelayRoute.maxEndpoints + 1), at: WireCodec.headerSize + 8, in: &longRoute[0])
        reseal(&longRoute)
        assertMalformed(longRoute, with: bigCodec, containing: "a route of")
        var notPrintable = good
        notPrintable[0][WireCodec.headerSize + 20] = 0x0A
        reseal(&notPrintable)
        assertMalformed(notPrintable, with: bigCodec, containing: "not printable")
        var nan = good
        withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { nan[1].replaceSubrange(8..<12, with: $0) }
        reseal(&nan)
        assertRejects(nan, with: bigCodec, .nonFinite("weights"))
        var empty = good
        put(UInt32(0), at: WireCodec.headerSize + 16, in: &empty[0])
        empty[0].removeSubrange((WireCodec.headerSize + 20)..<(WireCodec.headerSize + 20 + "ipc:///a".utf8.count))
        put(UInt64(empty[0].count - WireCodec.headerSize + empty[1].count), at: 24, in: &empty[0])
        reseal(&empty)
        assertMalformed(empty, with: bigCodec, containing: "an empty relay endpoint")
        XCTAssertThrowsError(try bigCodec.encode(.weights(WeightsChunk(index: 0, floats: weights, route: RelayRoute(fanout: 1, endpoints: [""])))))
        var ragged = good
        ragged[1].removeLast()
        put(UInt64(ragged[0].count - WireCodec.headerSize + ragged[1].count), at: 24, in: &ragged[0])
        reseal(&ragged)
        assertMalformed(ragged, with: bigCodec, containing: "has \(ragged[1].count) bytes")
        var twoFrames = good
        twoFrames.append([0, 0, 0, 0])
        reseal(&twoFrames)
        assertMalformed(twoFrames, with: bigCodec, containing: "in 3 frames")
        XCTAssertThrowsError(try WireCodec().decode(good.map(ZMQMessage.init(copying:))), "a chunk before the run's sizes are known")
    }

    func testHelloCarriesTheRelayEndpointAndNeedWeightsIsEmpty() throws {
        let sent = WorkerHello(name: "w", blasThreads: 1, relay: RelayPeer(endpoint: "tcp://10.0.0.2:45678"))
        guard case .hello(let got) = try decode(bytes(try WireCodec().encode(.hello(sent)))).message else { return XCTFail() }
        XCTAssertEqual(got, sent)
        guard case .hello(let none) = try decode(bytes(try WireCodec().encode(.hello(WorkerHello(name: "w", blasThreads: 1))))).message
        else { return XCTFail() }
        XCTAssertNil(none.relay)
        let keys = try CurveKeyPair.generate()
        let keyed = WorkerHello(name: "w", blasThreads: 1, relay: RelayPeer(endpoint: "tcp://10.0.0.2:1", key: keys.publicKey))
        guard case .hello(let back) = try decode(bytes(try WireCodec().encode(.hello(keyed)))).message else { return XCTFail() }
        XCTAssertEqual(back, keyed)
        guard case .relayKeys(let list) = try decode(try encoded(.relayKeys([keys.publicKey, keys.secretKey]))).message else { return XCTFail() }
        XCTAssertEqual(list, [keys.publicKey, keys.secretKey])
        let route = RelayRoute(fanout: 2, peers: [RelayPeer(endpoint: "ipc:///a", key: keys.publicKey), RelayPeer(endpoint: "ipc:///b", key: keys.secretKey)])
        let chunk = WeightsChunk(index: 0, floats: floats(shape.parameterCount, seed: 3), route: route)
        guard case .weights(let got) = try decode(try encoded(.weights(chunk))).message else { return XCTFail() }
        XCTAssertEqual(got.route, route)
        let mixed = RelayRoute(fanout: 2, peers: [RelayPeer(endpoint: "ipc:///a", key: keys.publicKey), RelayPeer(endpoint: "ipc:///b")])
        XCTAssertThrowsError(try codec.encode(.weights(WeightsChunk(index: 0, floats: chunk.floats, route: mixed))), "keys for some workers only")

        // A hello's key of another length, or a key without an endpoint; a keys flag other than 0 or 1; too many
        // relay keys, or fewer than counted.
        let hello = bytes(try WireCodec().encode(.hello(keyed)))
        let keyAt = hello[0].count - 32 - 4
        var shortKey = hello
        put(UInt32(16), at: keyAt, in: &shortKey[0])
        shortKey[0].removeLast(16)
        put(UInt64(shortKey[0].count - WireCodec.headerSize), at: 24, in: &shortKey[0])
        reseal(&shortKey)
        assertMalformed(shortKey, with: WireCodec(), containing: "relay key of 16 bytes")
        let noEndpoint = bytes(try WireCodec().encode(.hello(WorkerHello(name: "w", blasThreads: 1))))
        var keyAlone = noEndpoint
        put(UInt32(32), at: keyAlone[0].count - 4, in: &keyAlone[0])
        keyAlone[0] += keys.publicKey.bytes
        put(UInt64(keyAlone[0].count - WireCodec.headerSize), at: 24, in: &keyAlone[0])
        reseal(&keyAlone)
        assertMalformed(keyAlone, with: WireCodec(), containing: "relay key of 32 bytes")
        var flag = try encoded(.weights(chunk))
        put(UInt32(2), at: WireCodec.headerSize + 12, in: &flag[0])
        reseal(&flag)
        assertMalformed(flag, containing: "route keys flag 2")
        var many = try encoded(.relayKeys([keys.publicKey]))
        put(UInt32(RelayRoute.maxEndpoints + 1), at: WireCodec.headerSize, in: &many[0])
        reseal(&many)
        assertMalformed(many, containing: "relay keys exceed")
        var fewer = try encoded(.relayKeys([keys.publicKey]))
        put(UInt32(2), at: WireCodec.headerSize, in: &fewer[0])
        reseal(&fewer)
        XCTAssertThrowsError(try decode(fewer), "two keys counted, one present")
        XCTAssertThrowsError(try codec.encode(.relayKeys(Array(repeating: keys.publicKey, count: RelayRoute.maxEndpoints + 1))))
        let ask = try encoded(.needWeights, step: 12)
        XCTAssertEqual(ask.map(\.count), [WireCodec.headerSize])
        let envelope = try decode(ask)
        XCTAssertEqual(envelope.step, 12)
        guard case .needWeights = envelope.message else { return XCTFail("\(envelope.message)") }
    }

    /// Computed: a shard index of the run, nothing else.
    func testComputedCarriesAShardOfTheRun() throws {
        let word = try encoded(.computed(shard: shape.shardCount - 1), step: 12)
        XCTAssertEqual(word.map(\.count), [WireCodec.headerSize + 4])
        let envelope = try decode(word)
        XCTAssertEqual(envelope.step, 12)
        guard case .computed(let shard) = envelope.message else { return XCTFail("\(envelope.message)") }
        XCTAssertEqual(shard, shape.shardCount - 1)
        XCTAssertThrowsError(try codec.encode(.computed(shard: shape.shardCount)))
        var beyond = word
        put(UInt32(shape.shardCount), at: WireCodec.headerSize, in: &beyond[0])
        reseal(&beyond)
        assertMalformed(beyond, containing: "out of range")
    }

    // MARK: The fused pass over bulk frames

    /// Floats whose exponent is all ones (NaN, quiet or signalling, either sign; ±infinity) and finite
    /// neighbours at the edges (largest finite, smallest subnormal, −0).
    private static let nonFiniteBits: [UInt32] = [0x7FC0_0000, 0xFFC0_0000, 0x7F80_0001, 0xFFFF_FFFF, 0x7F80_0000, 0xFF80_0000]
    private static let finiteEdgeBits: [UInt32] = [0x7F7F_FFFF, 0xFF7F_FFFF, 0x0000_0001, 0x8000_0000, 0x0080_0000]

    /// The fused pass (checksum + copy + finite check) against the three separate passes, for every length of
    /// 0…40 floats (every tail: whole 32-byte blocks, whole words, a last half word) and for chunk-sized frames,
    /// after a prefix segment so the lanes carry state in.
    func testFusedPassIsChecksumCopyAndFiniteCheck() {
        let lengths = Array(0...40) + [WireCodec.chunkBytes / 4, WireCodec.chunkBytes / 4 - 1, WireCodec.chunkBytes / 4 - 7]
        for n in lengths {
            let source = floats(n, seed: UInt64(n))
            for (i, bits) in Self.finiteEdgeBits.enumerated() where i < n { source[n - 1 - i] = Float(bitPattern: bits) }
            let prefix: [UInt8] = Array("prefix".utf8)
            var separate = WireChecksum()
            prefix.withUnsafeBytes { separate.add($0) }
            separate.add(source.rawBytes)
            var fused = WireChecksum()
            prefix.withUnsafeBytes { fused.add($0) }
            let copy = FloatBuffer(count: n)
            XCTAssertTrue(fused.add(floats: source.rawBytes, copyingTo: UnsafeMutableRawPointer(copy.base)), "\(n) finite floats")
            XCTAssertEqual(fused.value, separate.value, "checksum of \(n) floats")
            XCTAssert(copy.bitwiseEqual(source), "copy of \(n) floats")
        }
    }

    /// A NaN or infinity at any position of frames of 1…40 floats is found, the last float included (alone in a
    /// zero-padded last word when the count is odd), and the checksum is still the plain one.
    func testFusedPassFindsEveryNonFiniteFloat() {
        for n in 1...40 {
            for position in 0..<n {
                for bits in Self.nonFiniteBits {
                    let source = floats(n, seed: 99)
                    source[position] = Float(bitPattern: bits)
                    var plain = WireChecksum()
                    plain.add(source.rawBytes)
                    var fused = WireChecksum()
                    let copy = FloatBuffer(count: n)
                    XCTAssertFalse(fused.add(floats: source.rawBytes, copyingTo: UnsafeMutableRawPointer(copy.base)),
                                   "\(String(bits, radix: 16)) at \(position) of \(n)")
                    XCTAssertEqual(fused.value, plain.value)
                }
            }
        }
    }

    /// A result of two gradients of an odd number of floats in several chunks each, the last chunk ending in
    /// half a word: the fused decode finds a NaN or infinity in the first float, across a cut, in the last word
    /// of the last (partial) chunk, of either shard; a corrupted last byte fails the checksum; chunks cut
    /// otherwise are refused; and a clean message decodes bit for bit.
    func testResultDecodeChecksEveryFloatOfEveryChunk() throws {
        let config = try XCTUnwrap((300...360).lazy.map { ModelConfig(vocab: 65, embed: 64, units: $0) }
            .first { ParameterLayout($0).count % 8 != 0 && ParameterLayout($0).count % 2 == 1 })
        let shape = try RunShape(config: config, seq: 3, rowsPerShard: 2, shardCount: 4)
        let codec = WireCodec(runID: runID, shape: shape)
        let p = shape.parameterCount
        let k = WireCodec.chunkCount(floats: p)
        XCTAssertGreaterThanOrEqual(k, 3)
        XCTAssertEqual((4 * p) % 8, 4, "the last chunk ends in half a word")
        let sent = (0..<2).map { i in
            ShardResult(index: 2 * i + 1, loss: 1, state: floats(shape.stateCount, seed: 40), gradient: floats(p, seed: 41 + UInt64(i)))
        }
        let wire = bytes(try codec.encode(.result(sent), step: 9))
        XCTAssertEqual(wire.count, 1 + 2 * k)
        guard case .result(let back) = try decode(wire, with: codec).message else { return XCTFail("not a result") }
        XCTAssert(zip(back, sent).allSatisfy { $0.gradient.bitwiseEqual($1.gradient) && $0.index == $1.index })

        let lastChunk = wire[k].count
        // (frame, byte offset) of floats to poison, and the shard whose gradient it is.
        let places: [(frame: Int, offset: Int, shard: Int)] = [
            (1, 0, 1), (2, 0, 1), (1, WireCodec.chunkBytes - 4, 1), (k, lastChunk - 4, 1), (k, lastChunk - 8, 1),
            (k + 1, 0, 3), (2 * k, lastChunk - 4, 3), (2 * k, lastChunk - 12, 3),
        ]
        for place in places {
            for bits in Self.nonFiniteBits {
                var frames = wire
                put(bits, at: place.offset, in: &frames[place.frame])
                reseal(&frames)
                assertRejects(frames, with: codec, .nonFinite("gradient of shard \(place.shard)"))
            }
        }
        for frame in [k, 2 * k] {
            var corrupted = wire
            corrupted[frame][lastChunk - 1] ^= 0x01
            assertRejects(corrupted, with: codec, .badChecksum)
        }
        // The last chunk one float short, the first one float long: the right total, cut wrong.
        var recut = wire
        recut[1] += recut[k][..<4]
        recut[k].removeFirst(4)
        reseal(&recut)
        assertMalformed(recut, with: codec, containing: "frame 1 of gradient of shard 1 has \(WireCodec.chunkBytes + 4) bytes")
        // The same, with a NaN as well: the sizes are reported first, as before the fused pass.
        put(Self.nonFiniteBits[0], at: 0, in: &recut[1])
        reseal(&recut)
        assertMalformed(recut, with: codec, containing: "frame 1 of gradient of shard 1")
    }

    // MARK: The reduction up the tree

    private func sum(_ lo: Int, _ hi: Int) -> SumPart {
        SumPart(node: ReductionNode(lo: lo, hi: hi), chunks: 0..<1, floats: floats(shape.parameterCount, seed: 30),
                shards: ((lo..<hi).map { 1.5 + Double($0) }, (lo..<hi).map { floats(stateCount, seed: 40 + UInt64($0)) }))
    }

    func testSumRoundTripsWithItsStatesInFramesOfTheirOwn() throws {
        let sent = sum(0, 2)
        let frames = try codec.encode(.sum(sent), step: 9)
        XCTAssertEqual(frames.count, 1 + 1 + 2, "the gradient, then a state per shard, each a frame of its own here")
        let envelope = try decode(bytes(frames))
        guard case .sum(let received) = envelope.message else { return XCTFail("\(envelope.message)") }
        XCTAssertEqual(envelope.step, 9)
        XCTAssertEqual(received.node, sent.node)
        XCTAssertEqual(received.chunks, 0..<1)
        XCTAssertEqual(received.shards?.losses.map(\.bitPattern), sent.shards?.losses.map(\.bitPattern))
        XCTAssert(received.floats.bitwiseEqual(sent.floats))
        for (r, s) in zip(received.shards!.states, sent.shards!.states) { XCTAssert(r.bitwiseEqual(s)) }
    }

    /// A sum goes chunk by chunk between workers: any run of chunks, losses and states with chunk 0 only.
    func testSumChunksRoundTrip() throws {
        let big = try RunShape(config: ModelConfig(vocab: 65, embed: 64, units: 256), seq: 3, rowsPerShard: 2, shardCount: 4)
        let bigCodec = WireCodec(runID: runID, shape: big)
        let k = WireCodec.chunkCount(floats: big.parameterCount)
        XCTAssertEqual(k, 3)
        for chunks in [0..<1, 1..<2, 2..<3, 1..<3, 0..<3] {
            let range = WireCodec.floatRange(chunks, parameters: big.parameterCount)
            let part = SumPart(node: ReductionNode(lo: 2, hi: 4), chunks: chunks, floats: floats(range.count, seed: 3),
                               shards: chunks.lowerBound == 0 ? ([1, 2], [floats(big.stateCount, seed: 4), floats(big.stateCount, seed: 5)]) : nil)
            let frames = try bigCodec.encode(.sum(part), step: 2)
            XCTAssertEqual(frames.count, 1 + chunks.count + (chunks.lowerBound == 0 ? 2 : 0))
            guard case .sum(let back) = try decode(bytes(frames), with: bigCodec).message else { return XCTFail("not a sum") }
            XCTAssertEqual(back.chunks, chunks)
            XCTAssert(back.floats.bitwiseEqual(part.floats))
            XCTAssertEqual(back.shards?.losses, part.shards?.losses)
        }
        let wrongSize = SumPart(node: ReductionNode(lo: 0, hi: 1), chunks: 1..<2, floats: floats(10, seed: 1), shards: nil)
        XCTAssertThrowsError(try bigCodec.encode(.sum(wrongSize)))
        let statesLater = SumPart(node: ReductionNode(lo: 0, hi: 1), chunks: 2..<3, floats: floats(WireCodec.floatRange(2..<3, parameters: big.parameterCount).count, seed: 1),
                                  shards: ([1], [floats(big.stateCount, seed: 4)]))
        XCTAssertThrowsError(try bigCodec.encode(.sum(statesLater)), "losses and states go with chunk 0 only")
    }

    func testSumsAreChecked() throws {
        XCTAssertThrowsError(try codec.encode(.sum(sum(1, 3))), "1..<3 is no node of the tree over 3 shards")
        var frames = try encoded(.sum(sum(2, 3)))
        put(UInt32(1), at: WireCodec.headerSize, in: &frames[0])
        reseal(&frames)
        assertMalformed(frames, containing: "not a node of the reduction tree")
        // A state frame too many, the length and checksum made to match: the frame count gives it away.
        frames = try encoded(.sum(sum(2, 3)))
        frames.append(frames[2])
        put(UInt64(frames.dropFirst().reduce(frames[0].count - WireCodec.headerSize) { $0 + $1.count }), at: 24, in: &frames[0])
        reseal(&frames)
        assertMalformed(frames, containing: "expected 2")
        frames = try encoded(.sum(sum(0, 2)))
        put(UInt32(2), at: WireCodec.headerSize + 24, in: &frames[0])
        reseal(&frames)
        assertMalformed(frames, containing: "chunks 0..<2 of 1")
        frames = try encoded(.sum(sum(0, 2)))
        put(Float.nan.bitPattern, at: 4, in: &frames[3])
        reseal(&frames)
        assertRejects(frames, .nonFinite("hidden state of shard 1"))
        frames = try encoded(.sum(sum(0, 2)))
        put(Double.infinity.bitPattern, at: WireCodec.headerSize + 28 + 8, in: &frames[0])
        reseal(&frames)
        assertRejects(frames, .nonFinite("loss of shard 1"))
    }

    /// Tree-alive: a top node, a token (origin, number) and the sender's relay; checked both ways.
    func testTreeAliveRoundTripsAndIsChecked() throws {
        let relay = RelayPeer(endpoint: "tcp://10.0.0.4:7000", key: CurveKey(bytes: Array(repeating: 5, count: 32)))
        for (origin, seq, age, expected) in [("tcp://10.0.0.9:7000", UInt64(1), 0.0, 0.0), ("ipc:///w", UInt64.max, 1.2341, 1.235), ("ipc:///w", 2, 1e9, 86_400)] {
            let envelope = try decode(try encoded(.treeAlive(node: ReductionNode(lo: 2, hi: 3), origin: origin, seq: seq, age: age, from: relay), step: 6))
            guard case .treeAlive(let node, let gotOrigin, let gotSeq, let gotAge, let from) = envelope.message else { return XCTFail("\(envelope.message)") }
            XCTAssertEqual(gotAge, expected, accuracy: 1e-9, "ages in whole milliseconds, rounded up, at most a day")
            XCTAssertEqual(envelope.step, 6)
            XCTAssertEqual(node, ReductionNode(lo: 2, hi: 3))
            XCTAssertEqual(gotOrigin, origin)
            XCTAssertEqual(gotSeq, seq)
            XCTAssertEqual(from, relay)
        }
        func word(_ lo: Int, _ hi: Int, seq: UInt64 = 1, age: Double = 0, origin: String = "ipc:///o", from: RelayPeer = relay) -> WireMessage {
            .treeAlive(node: ReductionNode(lo: lo, hi: hi), origin: origin, seq: seq, age: age, from: from)
        }
        XCTAssertThrowsError(try codec.encode(word(1, 3)), "no node of the tree over 3 shards")
        XCTAssertThrowsError(try codec.encode(word(0, 1, seq: 0)), "token 0")
        XCTAssertThrowsError(try codec.encode(word(0, 1, age: -1)))
        XCTAssertThrowsError(try codec.encode(word(0, 1, age: .nan)))
        XCTAssertThrowsError(try codec.encode(word(0, 1, origin: "")))
        XCTAssertThrowsError(try codec.encode(word(0, 1, from: RelayPeer(endpoint: ""))))
        // Decoding: a node that is empty or not the tree's (what stops ReductionNode's precondition), token 0.
        for (lo, hi, why) in [(2, 2, "an empty node 2..<2"), (2, 1, "an empty node 2..<1"), (1, 3, "not a node of the reduction tree")] {
            var frames = try encoded(word(0, 1))
            put(UInt32(lo), at: WireCodec.headerSize, in: &frames[0])
            put(UInt32(hi), at: WireCodec.headerSize + 4, in: &frames[0])
            reseal(&frames)
            assertMalformed(frames, containing: why)
        }
        var frames = try encoded(word(0, 1))
        put(UInt64(0), at: WireCodec.headerSize + 8, in: &frames[0])
        reseal(&frames)
        assertMalformed(frames, containing: "token 0")
        frames = try encoded(word(0, 1))
        put(UInt32(86_400_001), at: WireCodec.headerSize + 16, in: &frames[0])
        reseal(&frames)
        assertMalformed(frames, containing: "86400001 ms old")
        // The origin cut out (its length 0, the payload length made to match).
        frames = try encoded(word(0, 1, origin: "ipc:///o"))
        put(UInt32(0), at: WireCodec.headerSize + 20, in: &frames[0])
        frames[0].removeSubrange((WireCodec.headerSize + 24)..<(WireCodec.headerSize + 24 + "ipc:///o".utf8.count))
        put(UInt64(frames[0].count - WireCodec.headerSize), at: 24, in: &frames[0])
        reseal(&frames)
        assertMalformed(frames, containing: "without the token's origin")
        // The sender's relay cut out the same way: no way to answer.
        let plain = RelayPeer(endpoint: "ipc:///r")
        frames = try encoded(word(0, 1, origin: "ipc:///o", from: plain))
        let at = WireCodec.headerSize + 24 + "ipc:///o".utf8.count
        put(UInt32(0), at: at, in: &frames[0])
        frames[0].removeSubrange((at + 4)..<(at + 4 + plain.endpoint.utf8.count))
        put(UInt64(frames[0].count - WireCodec.headerSize), at: 24, in: &frames[0])
        reseal(&frames)
        assertMalformed(frames, containing: "without the sender's relay")
    }

    func testWorkOrdersCarryTheirSumTarget() throws {
        let one = WorkOrder(epoch: 1, shards: [WorkShard(index: 1, state: nil, rows: rows(seed: 5))], weights: floats(shape.parameterCount, seed: 4))
        let targets: [SumTarget?] = [nil, .coordinator, .coordinatorSumsRoot, .kept, .peer(RelayPeer(endpoint: "tcp://10.0.0.7:4100")),
                                     .peer(RelayPeer(endpoint: "ipc:///r", key: CurveKey(bytes: Array(repeating: 3, count: 32))))]
        for target in targets {
            guard case .work(_, let got) = try decode(try encoded(.work(one, sum: target))).message else { return XCTFail("work") }
            XCTAssertEqual(got, target)
            guard case .workSameWeights(_, _, let same) = try decode(try encoded(.workSameWeights(epoch: 1, shards: one.shards, sum: target))).message
            else { return XCTFail("work without weights") }
            XCTAssertEqual(same, target)
        }
        XCTAssertThrowsError(try codec.encode(.work(workOrder(), sum: .kept)), "a target is for an order of one shard")
        var frames = try encoded(.workSameWeights(epoch: 1, shards: one.shards, sum: .kept))
        put(UInt32(9), at: frames[0].count - 4, in: &frames[0])
        reseal(&frames)
        assertMalformed(frames, containing: "unknown sum target 9")
    }

    // MARK: Fuzzing

    /// Thousands of mutated valid frames: every outcome must be a clean decode or a `WireError` (the
    /// typed `throws` guarantees nothing else escapes), never a crash or a runaway allocation.
    func testMutatedFramesNeverCrash() throws {
        let corpus: [[[UInt8]]] = [
            bytes(try WireCodec().encode(.hello(WorkerHello(name: "fuzz", blasThreads: 4)))),
            try encoded(.welcome(shape)),
            try encoded(.work(workOrder())),
            try encoded(.result(results())),
            try encoded(.ping),
            try encoded(.shutdown),
            try encoded(.error("boom")),
            try encoded(.weights(WeightsChunk(index: 0, floats: floats(shape.parameterCount, seed: 6), route: RelayRoute(fanout: 2, endpoints: ["ipc:///a", "tcp://10.0.0.3:7"])))),
            try encoded(.needWeights),
            try encoded(.computed(shard: 1)),
            bytes(try WireCodec().encode(.hello(WorkerHello(name: "fuzz", blasThreads: 4, relay: RelayPeer(endpoint: "tcp://10.0.0.2:6000"))))),
            bytes(try WireCodec().encode(.hello(WorkerHello(name: "fuzz", blasThreads: 4, relay: RelayPeer(endpoint: "ipc:///r", key: CurveKey(bytes: Array(repeating: 7, count: 32))))))),
            try encoded(.weights(WeightsChunk(index: 0, floats: floats(shape.parameterCount, seed: 6),
                                              route: RelayRoute(fanout: 1, peers: [RelayPeer(endpoint: "ipc:///a", key: CurveKey(bytes: Array(repeating: 9, count: 32)))])))),
            try encoded(.relayKeys([CurveKey(bytes: Array(repeating: 1, count: 32)), CurveKey(bytes: Array(repeating: 2, count: 32))])),
            try encoded(.sum(sum(0, 2))),
            try encoded(.treeAlive(node: ReductionNode(lo: 2, hi: 3), origin: "tcp://10.0.0.5:7000", seq: 7, age: 0.25, from: RelayPeer(endpoint: "tcp://10.0.0.4:7000"))),
            try encoded(.workSameWeights(epoch: 1, shards: [WorkShard(index: 1, state: nil, rows: rows(seed: 5))], sum: .peer(RelayPeer(endpoint: "ipc:///r")))),
        ]
        // CI runs 4,000 mutations; a longer hunt: CHARRNN_FUZZ_ITERATIONS=10000000 CHARRNN_FUZZ_SEED=7 swift test
        // -c release --filter testMutatedFramesNeverCrash
        let env = ProcessInfo.processInfo.environment
        let iterations = env["CHARRNN_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 4000
        var rng = RandomSource(seed: env["CHARRNN_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0xF022)
        var outcomes: [String: Int] = [:]
        let start = ContinuousClock.now
        for _ in 0..<iterations {
            var frames = corpus[Int(rng.next() % UInt64(corpus.count))]
            for _ in 0...(rng.next() % 3) { mutate(&frames, &rng) }
            // Half the time fix the checksum so mutations reach the body checks.
            if rng.next() % 2 == 0 { reseal(&frames) }
            do {
                _ = try decode(frames)
                outcomes["decoded", default: 0] += 1
            } catch {
                outcomes[kind(error), default: 0] += 1
            }
        }
        if iterations == 4000 { XCTAssertLessThan(ContinuousClock.now - start, .seconds(5)) }
        for expected in ["decoded", "malformed", "badChecksum", "truncated", "oversized"] {
            XCTAssertGreaterThan(outcomes[expected, default: 0], 0, "\(outcomes)")
        }
    }

    private func kind(_ error: WireError) -> String {
        switch error {
        case .truncated: return "truncated"
        case .oversized: return "oversized"
        case .badMagic: return "badMagic"
        case .unsupportedVersion: return "unsupportedVersion"
        case .unknownType: return "unknownType"
        case .wrongRun: return "wrongRun"
        case .badChecksum: return "badChecksum"
        case .malformed: return "malformed"
        case .nonFinite: return "nonFinite"
        }
    }

    private func mutate(_ frames: inout [[UInt8]], _ rng: inout RandomSource) {
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(max(n, 1))) }
        let f = pick(frames.count)
        switch rng.next() % 7 {
        case 0 where !frames[f].isEmpty:
            frames[f][pick(frames[f].count)] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
        case 1:
            frames[f].removeLast(pick(frames[f].count + 1))
        case 2:
            frames[f] += (0..<pick(64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        case 3 where frames[0].count >= 32:
            // A length field near the truth or anywhere.
            let truth = UInt64(bitPattern: Int64(frames.reduce(-40) { $0 + $1.count }))
            let value = rng.next() % 2 == 0 ? truth &+ (rng.next() % 9) &- 4 : rng.next()
            put(value, at: 24, in: &frames[0])
        case 4 where frames[0].count >= 48:
            // A count or size field in the body: small values, zero, or huge.
            let choices: [UInt32] = [0, 1, 2, 3, 4, 11, 255, 257, 4096, .max]
            put(choices[pick(choices.count)], at: 40 + 4 * pick((frames[0].count - 40) / 4), in: &frames[0])
        case 5 where frames.count > 1:
            frames.remove(at: 1 + pick(frames.count - 1))
        case 6:
            frames.append(frames[f])
        default:
            frames[f][pick(frames[f].count)...].reverse()
        }
    }
}
