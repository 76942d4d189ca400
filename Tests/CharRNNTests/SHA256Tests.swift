import Foundation
import XCTest
@testable import CharRNN

final class SHA256Tests: XCTestCase {
    private func hex(_ s: String) -> String { SHA256.hex(of: Data(s.utf8)) }

    func testKnownVectors() {
        XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    /// Lengths around the padding boundaries, where the length field spills into an extra block.
    func testPaddingBoundaries() {
        let expected = [
            55: "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
            56: "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a",
            63: "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34",
            64: "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb",
            65: "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0",
            119: "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb",
            120: "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c",
        ]
        for (n, digest) in expected {
            XCTAssertEqual(hex(String(repeating: "a", count: n)), digest, "length \(n)")
        }
    }

    func testMillionAs() {
        let data = Data(repeating: UInt8(ascii: "a"), count: 1_000_000)
        XCTAssertEqual(SHA256.hex(of: data), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Feeding the same bytes in ragged pieces must not change the digest.
    func testIncrementalUpdatesMatchOneShot() {
        let bytes = Data((0..<1000).map { UInt8(($0 * 31 + 7) % 256) })
        let expected = "5097e7d587352f5097062ae679f37bda5802d9f875aba14c8cb4d1a188ada179"
        XCTAssertEqual(SHA256.hex(of: bytes), expected)
        for chunk in [1, 3, 63, 64, 65, 200] {
            var h = SHA256()
            var start = 0
            while start < bytes.count {
                let end = min(start + chunk, bytes.count)
                h.update(bytes[start..<end])
                start = end
            }
            XCTAssertEqual(h.hexDigest(), expected, "chunk \(chunk)")
            XCTAssertEqual(h.finalize(), SHA256.digest(of: bytes))
        }
    }

    func testFinalizeLeavesHasherUsable() {
        var h = SHA256()
        h.update(Data("ab".utf8))
        _ = h.finalize()
        h.update(Data("c".utf8))
        XCTAssertEqual(h.hexDigest(), hex("abc"))
    }

    func testTinyShakespeareDigest() throws {
        // CHARRNN_DATA may name the file itself or the directory holding it.
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var candidates = [packageRoot.appendingPathComponent("../shared/data/tinyshakespeare.txt").standardizedFileURL]
        if let env = ProcessInfo.processInfo.environment["CHARRNN_DATA"] {
            let url = URL(fileURLWithPath: env)
            candidates.insert(contentsOf: [url, url.appendingPathComponent("tinyshakespeare.txt")], at: 0)
        }
        guard let url = candidates.first(where: {
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: $0.path, isDirectory: &isDirectory) && !isDirectory.boolValue
        }) else {
            throw XCTSkip("tinyshakespeare.txt not found")
        }
        XCTAssertEqual(SHA256.hex(of: try Data(contentsOf: url)), "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")
    }
}
