@testable import CharRNNDistributed
import XCTest

/// Ban bookkeeping stays bounded whatever ids peers make up.
final class StrikesTests: XCTestCase {
    func testBanAtTheLimitAndForgetOnLeaving() {
        var strikes = Strikes(limit: 3, capacity: 8)
        let peer: [UInt8] = [1]
        XCTAssertFalse(strikes.strike(peer))
        XCTAssertFalse(strikes.strike(peer))
        strikes.forget(peer)  // it left: its count goes
        XCTAssertEqual(strikes.trackedPeers, 0)
        XCTAssertFalse(strikes.strike(peer))
        XCTAssertFalse(strikes.strike(peer))
        XCTAssertTrue(strikes.strike(peer))
        XCTAssertTrue(strikes.isBanned(peer))
        XCTAssertFalse(strikes.strike(peer), "banned once")
        strikes.forget(peer)
        XCTAssertTrue(strikes.isBanned(peer), "leaving does not lift a ban")
    }

    func testAFloodOfIdsCannotGrowTheTables() {
        var strikes = Strikes(limit: 2, capacity: 16)
        for i in 0..<10_000 {
            let id = withUnsafeBytes(of: UInt32(i)) { Array($0) }
            _ = strikes.strike(id)
            if i % 2 == 0 { _ = strikes.strike(id) }  // every other id is banned
        }
        XCTAssertLessThanOrEqual(strikes.trackedPeers, 16)
        XCTAssertEqual(strikes.bannedPeers, 16)
        XCTAssertTrue(strikes.isBanned(withUnsafeBytes(of: UInt32(9_998)) { Array($0) }), "the newest bans stay")
        XCTAssertFalse(strikes.isBanned(withUnsafeBytes(of: UInt32(0)) { Array($0) }), "the oldest made room")
    }
}
