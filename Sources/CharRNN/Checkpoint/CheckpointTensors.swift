import Foundation

/// The three tensor files of a step directory, to and from a `TrainingState`, by Keras name and shape:
///
///     model.safetensors      the weights, loadable from Python (and Keras) as they are
///     optimizer.safetensors  Adam's moments as m/<name> and v/<name>, t in the metadata
///     state.safetensors      hidden [batch, L·H] (an LSTM: [batch, 2·L·H]; see `ModelConfig.stateWidth`)
///
/// Reading checks every tensor's presence, dtype and shape, and refuses tensors the model does not have.
enum CheckpointTensors {
    static let model = "model.safetensors"
    static let optimizer = "optimizer.safetensors"
    static let state = "state.safetensors"

    /// The files in the order they are written, each encoded only when its turn comes.
    static var files: [(name: String, contents: (TrainingState) -> SafeTensors)] {
        [(model, modelFile), (optimizer, optimizerFile), (state, stateFile)]
    }

    static func modelMetadata(_ c: ModelConfig) -> [String: String] {
        ["format": CheckpointManifest.formatName, "vocab": String(c.vocab), "embed": String(c.embed), "units": String(c.units)]
    }

    private static func modelFile(_ s: TrainingState) -> SafeTensors {
        var metadata = modelMetadata(s.config)
        metadata[VocabularyMetadata.key] = VocabularyMetadata.encode(s.vocabulary)
        return SafeTensors(tensors: tensors(s.weights, prefix: ""), metadata: metadata)
    }

    private static func optimizerFile(_ s: TrainingState) -> SafeTensors {
        SafeTensors(tensors: tensors(s.adam.m, prefix: "m/") + tensors(s.adam.v, prefix: "v/"), metadata: ["t": String(s.adam.t)])
    }

    private static func stateFile(_ s: TrainingState) -> SafeTensors {
        SafeTensors(tensors: [
            SafeTensors.Tensor(name: "hidden", shape: [s.options.batch, s.config.stateWidth], floats: UnsafeBufferPointer(s.hidden.buffer)),
        ])
    }

    private static func tensors(_ p: Parameters, prefix: String) -> [SafeTensors.Tensor] {
        p.names.map {
            SafeTensors.Tensor(name: prefix + p.layout.keras($0), shape: $0.shape(p.config), floats: UnsafeBufferPointer(p.tensor($0)))
        }
    }

    static func weightNames(_ c: ModelConfig, prefix: String) -> Set<String> {
        Set(TensorName.all(c).map { prefix + $0.keras(c) })
    }

    static func parameters(from file: SafeTensors, config: ModelConfig, prefix: String, source: String) throws -> Parameters {
        let p = Parameters(config)
        for name in p.names {
            try copy(file, prefix + p.layout.keras(name), shape: name.shape(config), into: p[name], source: source)
        }
        return p
    }

    static func copy(_ file: SafeTensors, _ name: String, shape: [Int], into destination: UnsafeMutablePointer<Float>, source: String) throws {
        guard let t = file[name] else { throw CharRNNError.checkpoint("\(source): missing tensor \(name)") }
        guard t.dtype == .f32 else { throw CharRNNError.checkpoint("\(source): \(name) has dtype \(t.dtype.rawValue), expected F32") }
        guard t.shape == shape else { throw CharRNNError.checkpoint("\(source): \(name) has shape \(t.shape), expected \(shape)") }
        t.copyFloats(to: destination)
    }

    static func requireOnly(_ names: Set<String>, in file: SafeTensors, source: String) throws {
        if let extra = file.tensors.map(\.name).filter({ !names.contains($0) }).sorted().first {
            throw CharRNNError.checkpoint("\(source): unexpected tensor \(extra)")
        }
    }

    /// Safetensors errors name the problem but not the file; this adds the file.
    static func decode(_ bytes: Data, source: String) throws -> SafeTensors {
        do {
            return try SafeTensors(decoding: bytes)
        } catch CharRNNError.checkpoint(let message) {
            throw CharRNNError.checkpoint("\(source): \(message)")
        }
    }
}
