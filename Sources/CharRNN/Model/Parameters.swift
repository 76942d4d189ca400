/// A tensor of the model by its role and, for the recurrent layers' tensors, its layer.
public struct TensorName: Hashable, Sendable, CustomStringConvertible {
    public enum Role: Int, Sendable {
        case embedding, kernel, recurrentKernel, bias, denseKernel, denseBias
    }

    public let role: Role
    public let layer: Int

    public static let embedding = TensorName(role: .embedding, layer: 0)
    public static let denseKernel = TensorName(role: .denseKernel, layer: 0)
    public static let denseBias = TensorName(role: .denseBias, layer: 0)
    /// Layer 0's tensors, the only ones of a one-layer model.
    public static let kernel = kernel(0)
    public static let recurrentKernel = recurrentKernel(0)
    public static let bias = bias(0)

    public static func kernel(_ layer: Int) -> TensorName { TensorName(role: .kernel, layer: layer) }
    public static func recurrentKernel(_ layer: Int) -> TensorName { TensorName(role: .recurrentKernel, layer: layer) }
    public static func bias(_ layer: Int) -> TensorName { TensorName(role: .bias, layer: layer) }

    /// Every tensor of a model, in layout order: embedding, each layer's kernel, recurrent kernel and bias, dense.
    public static func all(_ c: ModelConfig) -> [TensorName] {
        [.embedding] + (0..<c.layers).flatMap { [kernel($0), recurrentKernel($0), bias($0)] } + [.denseKernel, .denseBias]
    }

    /// The name Keras gives the tensor, which is also its name in `model.safetensors`: stacked layers are
    /// `gru`, `gru_1`, `gru_2`, … (or `lstm`, …).
    public func keras(_ c: ModelConfig) -> String {
        let layerName = layer == 0 ? c.cell.rawValue : "\(c.cell.rawValue)_\(layer)"
        switch role {
        case .embedding: return "embedding/embeddings"
        case .kernel: return "\(layerName)/kernel"
        case .recurrentKernel: return "\(layerName)/recurrent_kernel"
        case .bias: return "\(layerName)/bias"
        case .denseKernel: return "dense/kernel"
        case .denseBias: return "dense/bias"
        }
    }

    /// Keras's shapes: a layer reads the embedding (layer 0) or the layer below; a GRU has two bias rows
    /// (input, recurrent), an LSTM one.
    public func shape(_ c: ModelConfig) -> [Int] {
        let (v, e, h, width) = (c.vocab, c.embed, c.units, c.cell.gates * c.units)
        switch role {
        case .embedding: return [v, e]
        case .kernel: return [layer == 0 ? e : h, width]
        case .recurrentKernel: return [h, width]
        case .bias: return c.cell == .gru ? [2, width] : [width]
        case .denseKernel: return [h, v]
        case .denseBias: return [v]
        }
    }

    public var description: String { layer == 0 ? "\(role)" : "\(role)(\(layer))" }
}

/// The model's tensors, by their Keras names, in one flat float32 buffer.
///
/// One buffer means gradients, Adam moments and wire payloads are all "a vector of `count` floats" with the
/// same layout, so reduction, the optimizer and the transport never need to know which tensor is which.
public struct ParameterLayout: Equatable, Sendable {
    public let config: ModelConfig
    public let names: [TensorName]
    public let count: Int
    private let offsets: [TensorName: Int]

    public init(_ config: ModelConfig) {
        self.config = config
        names = TensorName.all(config)
        var offsets: [TensorName: Int] = [:]
        var total = 0
        for name in names {
            offsets[name] = total
            total += name.shape(config).reduce(1, *)
        }
        self.offsets = offsets
        self.count = total
    }

    public func offset(_ name: TensorName) -> Int { offsets[name]! }
    public func size(_ name: TensorName) -> Int { name.shape(config).reduce(1, *) }
    /// The tensor's floats in the flat vector.
    public func range(_ name: TensorName) -> Range<Int> { offset(name)..<(offset(name) + size(name)) }
    public func keras(_ name: TensorName) -> String { name.keras(config) }
}

/// A flat vector in the parameter layout: the weights themselves, a gradient, or an Adam moment.
public struct Parameters: @unchecked Sendable {
    public let layout: ParameterLayout
    public let storage: FloatBuffer

    public init(_ config: ModelConfig) {
        layout = ParameterLayout(config)
        storage = FloatBuffer(count: layout.count)
    }

    public init(layout: ParameterLayout, storage: FloatBuffer) {
        precondition(storage.count == layout.count, "storage does not match the layout")
        self.layout = layout
        self.storage = storage
    }

    public var config: ModelConfig { layout.config }
    public var count: Int { layout.count }
    /// Every tensor's name, in layout order.
    public var names: [TensorName] { layout.names }

    public subscript(_ name: TensorName) -> UnsafeMutablePointer<Float> { storage.base + layout.offset(name) }

    public func tensor(_ name: TensorName) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: self[name], count: layout.size(name))
    }

    /// Keras's initialisers as the tutorial uses them: embeddings uniform ±0.05, every kernel glorot-uniform
    /// over the whole matrix, biases zero but an LSTM's forget gate's, which Keras (`unit_forget_bias`) starts
    /// at 1. The recurrent kernel too is glorot-uniform: Keras's own default there is orthogonal, but the
    /// tutorial sets glorot for its GRU, and the LSTM follows it (so a default `keras.layers.LSTM` starts
    /// elsewhere; trained weights load either way).
    public static func initialized(_ config: ModelConfig, seed: UInt64) -> Parameters {
        let p = Parameters(config)
        var rng = RandomSource(seed: seed, stream: 0x1417)
        func uniform(_ name: TensorName, limit: Float) {
            for i in p.tensor(name).indices { p[name][i] = (2 * rng.nextUnitFloat() - 1) * limit }
        }
        func glorot(_ name: TensorName) {
            let shape = name.shape(config)
            uniform(name, limit: (6 / Float(shape[0] + shape[1])).squareRoot())
        }
        uniform(.embedding, limit: 0.05)
        for l in 0..<config.layers {
            glorot(.kernel(l))
            glorot(.recurrentKernel(l))
            if config.cell == .lstm { p.tensor(.bias(l))[config.units..<2 * config.units].update(repeating: 1) }
        }
        glorot(.denseKernel)
        return p
    }
}
