import Foundation
import XCTest
@testable import CharRNN

final class SafeTensorsTests: XCTestCase {
    private func floats(_ name: String, _ shape: [Int], _ values: [Float]) -> SafeTensors.Tensor {
        values.withUnsafeBufferPointer { SafeTensors.Tensor(name: name, shape: shape, floats: $0) }
    }

    private func sample() -> SafeTensors {
        let ids: [Int32] = [7, -1, Int32.max]
        return SafeTensors(
            tensors: [
                floats("gru/kernel", [2, 3], [1, -2, 3.5, .pi, -0.0, .leastNonzeroMagnitude]),
                floats("scalar", [], [42]),
                floats("empty", [0, 4], []),
                ids.withUnsafeBufferPointer { SafeTensors.Tensor(name: "ids", shape: [3], int32s: $0) },
            ],
            metadata: ["format": "charrnn", "quote\"and\\slash": "tab\there é ✓"])
    }

    /// A raw file: the given header text (unpadded, so tests control every byte) and data.
    private func file(_ header: String, _ data: [UInt8] = [], length: UInt64? = nil) -> Data {
        var out = Data()
        withUnsafeBytes(of: (length ?? UInt64(header.utf8.count)).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(header.utf8))
        out.append(contentsOf: data)
        return out
    }

    private func assertRejected(_ data: Data, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensors(decoding: data), file: file, line: line) { error in
            guard case CharRNNError.checkpoint(let message) = error else {
                return XCTFail("expected a checkpoint error, got \(error)", file: file, line: line)
            }
            XCTAssertTrue(message.contains(fragment), "\"\(message)\" lacks \"\(fragment)\"", file: file, line: line)
        }
    }

    func testRoundTrip() throws {
        let original = sample()
        let decoded = try SafeTensors(decoding: original.encoded())
        XCTAssertEqual(decoded.metadata, original.metadata)
        XCTAssertEqual(decoded.tensors.map(\.name), original.tensors.map(\.name))
        for (a, b) in zip(decoded.tensors, original.tensors) {
            XCTAssertEqual(a.dtype, b.dtype)
            XCTAssertEqual(a.shape, b.shape)
            XCTAssertEqual(a.bytes, b.bytes, a.name)
        }
        XCTAssertEqual(decoded["gru/kernel"]!.floats.map(\.bitPattern), original["gru/kernel"]!.floats.map(\.bitPattern))
        XCTAssertEqual(decoded["ids"]!.int32s, [7, -1, Int32.max])
        XCTAssertEqual(decoded["scalar"]!.floats, [42])
        XCTAssertEqual(decoded["empty"]!.elementCount, 0)
        XCTAssertEqual(decoded["empty"]!.floats, [])
        XCTAssertNil(decoded["missing"])
    }

    func testEncodingIsDeterministic() {
        XCTAssertEqual(sample().encoded(), sample().encoded())
    }

    func testHeaderByteLayout() {
        let encoded = SafeTensors(tensors: [floats("a", [2], [1, -2])], metadata: ["k": "v"]).encoded()
        let json = #"{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let padded = json + String(repeating: " ", count: (8 - json.utf8.count % 8) % 8)
        var expected = Data()
        withUnsafeBytes(of: UInt64(padded.utf8.count).littleEndian) { expected.append(contentsOf: $0) }
        expected.append(contentsOf: Array(padded.utf8))
        expected.append(contentsOf: [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0])  // 1.0, -2.0 little-endian
        XCTAssertEqual(encoded, expected)
        XCTAssertEqual((8 + padded.utf8.count) % 8, 0)
    }

    func testNoMetadataOmitsTheKey() {
        let encoded = SafeTensors(tensors: [floats("x", [1], [0])]).encoded()
        let header = String(decoding: encoded[8..<(8 + Int(encoded[0]))], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{\"x\""), header)
        XCTAssertFalse(header.contains("__metadata__"))
    }

    func testAcceptsWhitespaceAndEscapes() throws {
        let header = " { \"\\u00e9\\ud83d\\ude00\\n\" : { \"shape\" : [ 1 ] , \"data_offsets\" : [0, 4], \"dtype\" : \"F32\" } } "
        let decoded = try SafeTensors(decoding: file(header, [0, 0, 0x80, 0x3f]))
        XCTAssertEqual(decoded.tensors.first?.name, "é😀\n")
        XCTAssertEqual(decoded.tensors.first?.floats, [1])
    }

    func testRejectsTruncatedFiles() {
        let good = sample().encoded()
        assertRejected(Data([1, 2, 3]), "too short")
        assertRejected(good.prefix(20), "exceeds the")
        assertRejected(good.dropLast(4), "outside")
        assertRejected(good + Data([0, 0, 0, 0]), "cover")
    }

    func testRejectsHeaderLengthBeyondLimitOrFile() {
        assertRejected(file("{}", length: 1 << 40), "100000000-byte limit")
        assertRejected(file("{}", length: 3), "exceeds the 2 bytes after it")
    }

    func testRejectsBadJSON() {
        assertRejected(file(#"{"a":"#), "not valid JSON")
        assertRejected(file(#"{"a" 1}"#), "not valid JSON")
        assertRejected(file(#"{"a":{}} x"#), "after the JSON value")
        assertRejected(file("{\"a\u{1}\":{}}"), "control character")
        assertRejected(file(#"{"a":true}"#), "unsupported value")
        assertRejected(file(#"{"\ud800":{}}"#), "unpaired surrogate")
        assertRejected(file("[]"), "not a JSON object")
        assertRejected(file(String(repeating: "[", count: 100_000)), "nesting too deep")
    }

    func testRejectsInvalidUTF8() {
        var data = file("{\"?\":{}}")
        data[10] = 0xff
        assertRejected(data, "not valid UTF-8")
    }

    func testRejectsBadTensorEntries() {
        let four: [UInt8] = [0, 0, 0, 0]
        assertRejected(file(#"{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#, four), "unsupported dtype BF16")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, four), "needs 8 bytes, but data_offsets span 4")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, four), "non-negative integers")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, four), "only integers")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}"#, four), "too large")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}"#, four), "too large")
        assertRejected(file(#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#, four), "missing shape")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}"#, four), "unknown field extra")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#, four), "must have 2 entries")
        assertRejected(file(#"{"a":[1]}"#, four), "entry is not a JSON object")
        assertRejected(file(#"{"__metadata__":{"k":1}}"#), "metadata value for k is not a string")
    }

    func testRejectsOffsetsOutsideOrNotTilingTheData() {
        let eight = [UInt8](repeating: 0, count: 8)
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, eight), "outside the 8-byte data section")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#, eight), "outside")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, eight), "gap of 4 bytes before tensor a")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, eight),
                       "tensor b overlaps")
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, eight), "tensors cover 4")
    }

    func testRejectsDuplicateNames() {
        let four: [UInt8] = [0, 0, 0, 0]
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, four),
                       "duplicate key \"a\"")
    }

    // MARK: Python

    /// Runs `python3 -c script args…`; nil when python3 cannot be run at all.
    private func python(_ script: String, _ args: [String]) throws -> (status: Int32, output: String)? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + args
        // The sample holds non-ASCII text; Python must not fall back to ASCII for a pipe.
        process.environment = ProcessInfo.processInfo.environment.merging(["PYTHONIOENCODING": "utf-8"]) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return nil }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        if process.terminationStatus == 127 { return nil }
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    private func writeSample() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-\(UUID().uuidString).safetensors")
        try sample().encoded().write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// An independent reading of the format with nothing but Python's standard library.
    func testPythonStandardLibraryReadsTheFile() throws {
        let url = try writeSample()
        let script = """
        import json, struct, sys
        b = open(sys.argv[1], 'rb').read()
        n = struct.unpack('<Q', b[:8])[0]
        assert (8 + n) % 8 == 0, 'data not aligned'
        h = json.loads(b[8:8 + n].decode('utf-8'))
        d = b[8 + n:]
        t = h['gru/kernel']
        lo, hi = t['data_offsets']
        print(t['dtype'], t['shape'], list(struct.unpack('<6f', d[lo:hi]))[:4])
        lo, hi = h['ids']['data_offsets']
        print(list(struct.unpack('<3i', d[lo:hi])), h['__metadata__']['quote"and\\\\slash'])
        """
        guard let (status, output) = try python(script, [url.path]) else { throw XCTSkip("python3 not available") }
        XCTAssertEqual(status, 0, output)
        XCTAssertEqual(output, "F32 [2, 3] [1.0, -2.0, 3.5, 3.141592502593994]\n[7, -1, 2147483647] tab\there é ✓\n")
    }

    func testPythonSafetensorsLoadsTheFile() throws {
        guard let (status, _) = try python("import safetensors.numpy", []), status == 0 else {
            throw XCTSkip("python3 safetensors (with numpy) not installed")
        }
        let url = try writeSample()
        let script = """
        import sys
        from safetensors import safe_open
        with safe_open(sys.argv[1], framework='numpy') as f:
            print(f.metadata()['format'], f.get_tensor('gru/kernel').tolist()[0], f.get_tensor('ids').tolist(), f.get_tensor('empty').shape)
        """
        guard let (loaded, output) = try python(script, [url.path]) else { throw XCTSkip("python3 not available") }
        XCTAssertEqual(loaded, 0, output)
        XCTAssertEqual(output, "charrnn [1.0, -2.0, 3.5] [7, -1, 2147483647] (0, 4)\n")
    }
}
