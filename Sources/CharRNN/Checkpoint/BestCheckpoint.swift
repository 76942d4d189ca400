import Foundation

/// `best.json` in a checkpoint directory: the step whose checkpoint had the lowest validation loss.
public struct BestCheckpoint: Codable, Equatable {
    public var step: Int
    public var validationLoss: Double

    static let fileName = "best.json"

    public static func read(in dir: URL) -> BestCheckpoint? {
        FileManager.default.contents(atPath: dir.appendingPathComponent(fileName).path)
            .flatMap { try? JSONDecoder().decode(BestCheckpoint.self, from: $0) }
    }

    func write(in dir: URL) throws {
        try DurableFile.write(try JSONEncoder().encode(self), to: dir.appendingPathComponent(BestCheckpoint.fileName))
    }
}
