import XCTest
@testable import CharRNN

/// Which shard a worker is dealt when workers sum what they hold (`ShardRuns`): aligned runs, and never a shard
/// whose receiver is not dealt yet (the coordinator could not name where its sum goes).
final class ShardRunsTests: XCTestCase {
    private func worker(_ k: Int) -> WorkerID { WorkerID([UInt8(k)]) }

    /// Deals every shard, asking workers in the order `asks` gives (a worker index per deal); returns who got what,
    /// and checks each shard's receiver was dealt before it.
    private func deal(shards: Int, workers: Int, asks: (Int) -> Int, file: StaticString = #filePath, line: UInt = #line) -> [Int: [Int]] {
        var runs = ShardRuns(shards: shards)
        var undealt = Array(0..<shards)
        var held: [Int: [Int]] = [:]
        for k in 0..<shards {
            let w = asks(k)
            let s = runs.pick(for: worker(w), undealt: undealt, workers: workers)
            XCTAssertTrue(undealt.contains(s), "shard \(s) dealt twice", file: file, line: line)
            if let receiver = runs.tree.receiver(of: runs.tree.top(of: s)) {
                XCTAssertFalse(undealt.contains(receiver), "shard \(s) dealt before its receiver \(receiver)", file: file, line: line)
            }
            undealt.removeAll { $0 == s }
            held[w, default: []].append(s)
        }
        return held
    }

    func testEqualWorkersTakingTurnsEachHoldAnAlignedBlock() {
        let held = deal(shards: 16, workers: 4) { $0 % 4 }
        XCTAssertEqual(held, [0: [0, 1, 2, 3], 1: [4, 5, 6, 7], 2: [8, 9, 10, 11], 3: [12, 13, 14, 15]])
    }

    func testOneShardPerWorkerIsIndexOrder() {
        XCTAssertEqual(deal(shards: 5, workers: 5) { $0 }, [0: [0], 1: [1], 2: [2], 3: [3], 4: [4]])
    }

    /// 12 shards over two workers: blocks of 4; the first to finish its block takes the third, the other then the
    /// lowest shard left.
    func testAWorkerDoneWithItsBlockTakesAFreshOneThenTheLowestLeft() {
        // Turns: 0, 1, 0, 1, then worker 0 four times (its block's end and all of block 8), then worker 1.
        let order = [0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1]
        let held = deal(shards: 12, workers: 2) { order[$0] }
        XCTAssertEqual(held[0], [0, 1, 2, 3, 8, 9, 10, 11])
        XCTAssertEqual(held[1], [4, 5, 6, 7])
        XCTAssertEqual(runsBlock(shards: 12, workers: 2), 4)
    }

    func testBlockIsThePowerOfTwoAtMostShardsPerWorker() {
        XCTAssertEqual([(1, 1), (16, 4), (12, 2), (64, 16), (7, 2), (3, 8), (100, 3)].map { runsBlock(shards: $0.0, workers: $0.1) },
                       [1, 4, 4, 4, 2, 1, 32])
    }

    /// Any order of asking, any shard and worker count: every shard dealt once, each after its receiver.
    func testEveryOrderOfAskingDealsEachShardOnceAfterItsReceiver() {
        var rng = RandomSource(seed: 5)
        for _ in 0..<300 {
            let shards = 1 + rng.nextIndex(below: 40)
            let workers = 1 + rng.nextIndex(below: 9)
            let held = deal(shards: shards, workers: workers) { _ in rng.nextIndex(below: workers) }
            XCTAssertEqual(held.values.flatMap { $0 }.sorted(), Array(0..<shards))
        }
    }

    private func runsBlock(shards: Int, workers: Int) -> Int { ShardRuns(shards: shards).block(workers: workers) }
}
