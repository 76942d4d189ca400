import XCTest
@testable import CharRNN

/// TensorBoard's file format, byte for byte. The expected bytes come from TensorBoard's own Python code
/// (its protobuf classes, `RecordWriter` and `masked_crc32c`); the CLI test reads whole runs with its reader.
final class TensorBoardTests: XCTestCase {
    func testCRC32CVectors() {
        // The check value of the CRC catalogue and RFC 3720 (iSCSI) appendix B.4.
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }), 0x113F_DB5C)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        // tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c(b"123456789")
        XCTAssertEqual(CRC32C.masked(Array("123456789".utf8)), 0xC78A_B0E5)
    }

    func testRecordFraming() {
        // tensorboard.summary.writer.record_writer.RecordWriter(...).write(b"hello")
        XCTAssertEqual(Array(TensorBoardWriter.record(Data("hello".utf8))),
                       [5, 0, 0, 0, 0, 0, 0, 0, 234, 178, 4, 62, 104, 101, 108, 108, 111, 187, 31, 28, 25])
    }

    func testEventsEncodeAsProtobufDoes() {
        // event_pb2.Event(...).SerializeToString() for the same values.
        XCTAssertEqual(Array(TensorBoardEvent.scalars([("loss", 0.25)], wallTime: 1.5, step: 3)),
                       [9, 0, 0, 0, 0, 0, 0, 248, 63, 16, 3, 42, 13, 10, 11, 10, 4, 108, 111, 115, 115, 21, 0, 0, 128, 62])
        XCTAssertEqual(Array(TensorBoardEvent.text("samples", "Thé", wallTime: 2, step: 300)),
                       [9, 0, 0, 0, 0, 0, 0, 0, 64, 16, 172, 2, 42, 31, 10, 29, 10, 7, 115, 97, 109, 112, 108, 101, 115,
                        66, 8, 8, 7, 66, 4, 84, 104, 195, 169, 74, 8, 10, 6, 10, 4, 116, 101, 120, 116])
        XCTAssertEqual(Array(TensorBoardEvent.fileVersion(wallTime: 1.25)),
                       [9, 0, 0, 0, 0, 0, 0, 244, 63, 26, 13, 98, 114, 97, 105, 110, 46, 69, 118, 101, 110, 116, 58, 50])
        XCTAssertEqual(Array(TensorBoardEvent.sessionStart(wallTime: 1.25, step: 9)),
                       [9, 0, 0, 0, 0, 0, 0, 244, 63, 16, 9, 58, 2, 8, 1])
    }

    /// A new file's name sorts after every existing one, even within the same second, because TensorBoard
    /// reads a directory's files in name order.
    func testEachRunGetsANewFileThatSortsLast() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("charrnn-tb-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let now = 1_700_000_000.5
        let first = try TensorBoardWriter(directory: dir, resumingAfter: 0, now: now)
        let second = try TensorBoardWriter(directory: dir, resumingAfter: 5, now: now)
        XCTAssertTrue(first.url.lastPathComponent.hasPrefix("events.out.tfevents.1700000000."), first.url.lastPathComponent)
        XCTAssertTrue(second.url.lastPathComponent.hasPrefix("events.out.tfevents.1700000001."), second.url.lastPathComponent)
        XCTAssertTrue(second.url.lastPathComponent.hasSuffix(".\(getpid()).charrnn"))
        let start = TensorBoardWriter.record(TensorBoardEvent.fileVersion(wallTime: now))
            + TensorBoardWriter.record(TensorBoardEvent.sessionStart(wallTime: now, step: 6))
        XCTAssertEqual(try Data(contentsOf: second.url), start)
    }
}
