@testable import CharRNNDistributed
import XCTest

/// The handshake rule on a fake clock: refusals are quick closes, counted once per connection.
final class HandshakeRefusalsTests: XCTestCase {
    func testQuickClosesAreRefusalsCountedOncePerConnection() {
        var r = HandshakeRefusals(timeout: 30)
        for k in 0..<3 {
            XCTAssertFalse(r.refused)
            r.connected(at: Double(k))
            r.disconnected(at: Double(k) + 0.01)
            XCTAssertEqual(r.count, k + 1)
        }
        XCTAssertTrue(r.refused)
    }

    func testSilenceUntilTheHandshakeIntervalIsNoRefusal() {
        var r = HandshakeRefusals(timeout: 30)
        for k in 0..<100 {
            r.connected(at: 31 * Double(k))
            r.disconnected(at: 31 * Double(k) + 30.05)
        }
        XCTAssertEqual(r.count, 0)
        r.disconnected(at: 10_000)  // no connection at all (refused by the kernel): nothing to count
        XCTAssertEqual(r.count, 0)
    }

    func testASuccessfulHandshakeResetsTheCountAndItsDisconnectIsNoRefusal() {
        var r = HandshakeRefusals(timeout: 30)
        r.connected(at: 0); r.disconnected(at: 0.1)
        r.connected(at: 1); r.disconnected(at: 1.1)
        r.connected(at: 2); r.succeeded(); r.disconnected(at: 2.1)
        XCTAssertEqual(r.count, 0)
        XCTAssertFalse(r.refused)
    }
}
