import XCTest
@testable import CharRNN

/// The one way the project writes files it must trust: whole or not at all, with the right mode.
final class DurableFileTests: XCTestCase {
    private func directory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("charrnn-durable-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    private func mode(_ url: URL) throws -> Int? {
        try FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? Int
    }

    func testWriteReplacesOrRefusesAndLeavesNoTemporaryFile() throws {
        let dir = try directory()
        let file = dir.appendingPathComponent("a.json")
        try DurableFile.write(Data("one".utf8), to: file)
        try DurableFile.write(Data("two".utf8), to: file)
        XCTAssertEqual(try Data(contentsOf: file), Data("two".utf8))
        XCTAssertThrowsError(try DurableFile.write(Data("three".utf8), to: file, replacing: false)) { error in
            XCTAssertEqual(error as? CharRNNError, .io("\(file.path) exists; not overwriting it"))
        }
        XCTAssertEqual(try Data(contentsOf: file), Data("two".utf8))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["a.json"])
    }

    func testModeIsSetAtCreation() throws {
        let dir = try directory()
        let secret = dir.appendingPathComponent("x.key")
        try DurableFile.write(Data("k".utf8), to: secret, mode: 0o600, replacing: false)
        XCTAssertEqual(try mode(secret), 0o600)
        try DurableFile.write(Data("p".utf8), to: dir.appendingPathComponent("x.pub"))
        XCTAssertEqual(try mode(dir.appendingPathComponent("x.pub")), 0o644 & ~Int(currentUmask()))
    }

    func testFailuresNameTheFileAndTheReason() throws {
        let dir = try directory()
        let missing = dir.appendingPathComponent("absent/a.json")
        XCTAssertThrowsError(try DurableFile.write(Data(), to: missing)) { error in
            XCTAssertTrue("\(error)".contains("absent/.tmp-a.json") && "\(error)".contains("No such file"), "\(error)")
        }
        XCTAssertThrowsError(try DurableFile.append(Data("x".utf8), to: dir)) { error in
            XCTAssertEqual(error as? CharRNNError, .io("cannot open \(dir.path): Is a directory"))
        }
    }

    func testAppenderAddsWholeRecords() throws {
        let file = try directory().appendingPathComponent("log")
        let log = try DurableFile.Appender(file)
        try log.append(Data("a\n".utf8))
        try DurableFile.append(Data("b\n".utf8), to: file)
        try log.append(Data("c\n".utf8))
        try log.sync()
        XCTAssertEqual(try String(contentsOf: file, encoding: .utf8), "a\nb\nc\n")
    }

    private func currentUmask() -> mode_t {
        let m = umask(0)
        umask(m)
        return m
    }
}
