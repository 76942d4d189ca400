/// Vectorised sigmoid and tanh for the recurrent cells' gates.
///
/// The gates evaluate ~20 M transcendental functions per training step at the tutorial's size; libm's
/// scalar `expf` would cost more than a tenth of the step. This `exp` reduces x = n·ln2 + r with
/// |r| ≤ ln2/2 and evaluates a degree-6 polynomial: relative error ≈ 2e-7, well inside the float32
/// tolerance of the golden tests (1e-5 absolute).
public typealias Vec = SIMD16<Float>

public enum Activations {
    @inline(__always)
    public static func exp(_ x: Vec) -> Vec {
        // `replacing(with:where:)` compiles to vector selects; `clamped` and `pointwiseMin` do not (10× slower).
        var x = x.replacing(with: 88, where: x .> 88)
        x.replace(with: -87, where: x .< -87)
        // Adding 1.5·2²³ rounds x·log2(e) to the integer n and leaves n in the low mantissa bits.
        let shifted = x * 1.442_695_04 + 12_582_912.0
        let n = shifted - 12_582_912.0
        let r = x - n * 0.693_145_751_953_125 - n * 1.428_606_765_330_187e-06
        var p = Vec(repeating: 1.0 / 720)
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let bits = (unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        return p * unsafeBitCast(bits, to: Vec.self)
    }

    @inline(__always)
    public static func sigmoid(_ x: Vec) -> Vec { 1 / (1 + exp(-x)) }

    /// tanh(x) = 2σ(2x) − 1; its absolute error near 0 is ~1e-7, which is what the tolerances measure.
    @inline(__always)
    public static func tanh(_ x: Vec) -> Vec { 2 / (1 + exp(-2 * x)) - 1 }
}

/// Loads `n` ≤ 16 floats (zero-padded) so loops over rows of any width share one vector body.
@inline(__always)
func load(_ p: UnsafePointer<Float>, _ n: Int) -> Vec {
    if n == Vec.scalarCount { return UnsafeRawPointer(p).loadUnaligned(as: Vec.self) }
    var v = Vec()
    for k in 0..<n { v[k] = p[k] }
    return v
}

@inline(__always)
func store(_ v: Vec, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if n == Vec.scalarCount { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vec.self); return }
    for k in 0..<n { p[k] = v[k] }
}
