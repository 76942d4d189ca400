import Foundation

/// `--init FILE`: starting weights from any safetensors file with Keras tensor names, fitted to the text's
/// vocabulary by character, never by position alone.
///
/// With the file's vocabulary (`VocabularyMetadata`): the text's character i takes the file's row j where
/// entry j is that character, in the embedding (row j) and the dense layer (column j, bias j). The same
/// vocabulary is taken as it is; another order or a larger vocabulary is remapped with a notice; a
/// character of the text the file lacks is an error. Without it (a plain Keras export), the sizes must
/// match and rows are taken in order, with a notice saying so.
public enum InitialWeights {
    public static func load(_ file: URL, config: ModelConfig, vocabulary: Vocabulary) throws -> (weights: Parameters, notice: String?) {
        let source = file.path
        let header: SafeTensors
        do {
            header = try SafeTensors(decoding: try Data(contentsOf: file))
        } catch let error as CharRNNError {
            throw CharRNNError.checkpoint("\(source): \(error)")
        } catch {
            throw CharRNNError.checkpoint("\(source): cannot be read")
        }
        guard let entries = try VocabularyMetadata.decode(header.metadata, source: source) else {
            let weights = try Checkpoint.loadWeights(from: file, config: config)
            return (weights, "\(source) records no vocabulary: its \(config.vocab) rows are taken in order as the text's sorted characters")
        }
        let ours = vocabulary.scalars.map { String($0) }
        if entries == ours { return (try Checkpoint.loadWeights(from: file, config: config), nil) }

        var rowOf: [String: Int] = [:]
        for (j, entry) in entries.enumerated() where rowOf[entry] == nil { rowOf[entry] = j }
        let missing = vocabulary.scalars.filter { rowOf[String($0)] == nil }
        guard missing.isEmpty else {
            let shown = missing.prefix(8).map { "\($0.escaped(asASCII: false)) (U+\(String($0.value, radix: 16, uppercase: true)))" }
            throw CharRNNError.checkpoint("\(source): its vocabulary lacks \(missing.count) character(s) of the text: "
                + shown.joined(separator: ", ") + (missing.count > 8 ? ", …" : ""))
        }
        var stored = config
        stored.vocab = entries.count
        let from = try Checkpoint.loadWeights(from: file, config: stored)
        let to = Parameters(config)
        let rows = ours.map { rowOf[$0]! }
        let (e, h, v, w) = (config.embed, config.units, config.vocab, entries.count)
        for name in to.names {
            let (src, dst) = (from[name], to[name])
            switch name.role {
            case .embedding:    // [V, E]: row i ← row rows[i]
                for (i, j) in rows.enumerated() { (dst + i * e).update(from: src + j * e, count: e) }
            case .denseKernel:  // [H, V]: column i ← column rows[i]
                for r in 0..<h { for (i, j) in rows.enumerated() { dst[r * v + i] = src[r * w + j] } }
            case .denseBias:
                for (i, j) in rows.enumerated() { dst[i] = src[j] }
            case .kernel, .recurrentKernel, .bias:
                dst.update(from: src, count: to.tensor(name).count)
            }
        }
        let dropped = entries.count - ours.count
        return (to, "\(source): vocabulary of \(entries.count) entries remapped by character to the text's \(ours.count)"
            + (dropped > 0 ? " (\(dropped) unused)" : " (another order)"))
    }
}
