import CharRNNDistributed
import Foundation
import XCTest

/// Key files as `keygen` writes them: the secret readable by its owner only, never overwritten.
final class CurveKeyFileTests: XCTestCase {
    func testWriteLoadAndRefuseToOverwrite() throws {
        guard CurveKey.isAvailable else { throw XCTSkip("this libzmq has no CURVE") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("charrnn-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let prefix = dir.appendingPathComponent("node").path

        let pair = try CurveKeyPair.generate()
        try pair.write(prefix: prefix)
        let mode = try FileManager.default.attributesOfItem(atPath: prefix + ".key")[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)
        XCTAssertEqual(try CurveKeyPair.load(secretKeyFile: prefix + ".key").publicKey, pair.publicKey)
        XCTAssertEqual(try CurveKeyFile.readPublicKeys(prefix + ".pub"), [pair.publicKey])

        XCTAssertThrowsError(try CurveKeyPair.generate().write(prefix: prefix)) { error in
            XCTAssertTrue("\(error)".contains("exists; not overwriting"), "\(error)")
        }
        XCTAssertEqual(try CurveKeyPair.load(secretKeyFile: prefix + ".key").publicKey, pair.publicKey, "the first key is kept")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["node.key", "node.pub"])
    }
}
