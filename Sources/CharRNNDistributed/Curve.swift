import CharRNN
@preconcurrency import CZeroMQ
import Foundation

public enum CurveError: Error, CustomStringConvertible {
    case unavailable
    case badKeyFile(String, String)
    case io(String)

    public var description: String {
        switch self {
        case .unavailable: return "this libzmq was built without CURVE (libsodium); keys cannot be used"
        case .badKeyFile(let path, let why): return "\(path): \(why)"
        case .io(let m): return m
        }
    }
}

/// A CURVE key, held as its 40-character Z85 text (what key files contain and libzmq accepts).
public struct CurveKey: Hashable, Sendable {
    public let z85: String

    public init(z85: String) throws(CurveError) {
        guard z85.utf8.count == 40, CurveKey.decode(z85) != nil else {
            throw .badKeyFile("key", "not a 40-character Z85 CURVE key")
        }
        self.z85 = z85
    }

    /// The 32 raw bytes, as ZAP requests carry them.
    public var bytes: [UInt8] { CurveKey.decode(z85)! }

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 32)
        var out = [CChar](repeating: 0, count: 41)
        _ = zmq_z85_encode(&out, bytes, 32)
        z85 = String(cString: out)
    }

    static func decode(_ z85: String) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 32)
        return zmq_z85_decode(&out, z85) == nil ? nil : out
    }

    public static var isAvailable: Bool { zmq_has("curve") == 1 }
}

/// A long-term key pair. The secret half lives in a file only its owner can read.
public struct CurveKeyPair: Sendable {
    public let publicKey: CurveKey
    public let secretKey: CurveKey

    public static func generate() throws(CurveError) -> CurveKeyPair {
        guard CurveKey.isAvailable else { throw .unavailable }
        var pub = [CChar](repeating: 0, count: 41), sec = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&pub, &sec) == 0 else { throw .unavailable }
        return CurveKeyPair(publicKey: try CurveKey(z85: String(cString: pub)), secretKey: try CurveKey(z85: String(cString: sec)))
    }

    /// Reads a secret key file and derives its public half.
    public static func load(secretKeyFile path: String) throws(CurveError) -> CurveKeyPair {
        guard CurveKey.isAvailable else { throw .unavailable }
        let secret = try CurveKeyFile.read(path).first.map { s throws(CurveError) in try CurveKey(z85: s) }
        guard let secret else { throw .badKeyFile(path, "no key in the file") }
        var pub = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&pub, secret.z85) == 0 else { throw .badKeyFile(path, "not a CURVE secret key") }
        return CurveKeyPair(publicKey: try CurveKey(z85: String(cString: pub)), secretKey: secret)
    }

    /// Writes `PREFIX.key` (secret, mode 0600) and `PREFIX.pub`; refuses to overwrite either.
    public func write(prefix: String) throws(CurveError) {
        let secretPath = prefix + ".key", publicPath = prefix + ".pub"
        for path in [secretPath, publicPath] where FileManager.default.fileExists(atPath: path) {
            throw .io("\(path) exists; not overwriting a key")
        }
        // The mode at creation: the secret is never readable by others, not even for a moment.
        do {
            try DurableFile.write(Data((secretKey.z85 + "\n").utf8), to: URL(fileURLWithPath: secretPath), mode: 0o600, replacing: false)
            try DurableFile.write(Data((publicKey.z85 + "\n").utf8), to: URL(fileURLWithPath: publicPath), replacing: false)
        } catch {
            throw .io("\(error)")
        }
    }
}

/// Key files: one Z85 key per line; blank lines and `#` comments are ignored.
public enum CurveKeyFile {
    public static func read(_ path: String) throws(CurveError) -> [String] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw .badKeyFile(path, "cannot be read")
        }
        return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    /// An allow-list of public keys; every line must be a valid key.
    public static func readPublicKeys(_ path: String) throws(CurveError) -> Set<CurveKey> {
        var keys = Set<CurveKey>()
        for (n, line) in try read(path).enumerated() {
            guard line.utf8.count == 40, let key = try? CurveKey(z85: line) else {
                throw .badKeyFile(path, "line \(n + 1) is not a 40-character Z85 CURVE public key")
            }
            keys.insert(key)
        }
        guard !keys.isEmpty else { throw .badKeyFile(path, "no keys in the file") }
        return keys
    }
}
