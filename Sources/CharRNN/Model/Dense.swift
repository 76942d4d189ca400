/// The output layer over every step at once.
///
/// Forward:   logits = Hs·K + c          Hs [N, H] (N = T·b output states), K [H, V], c [V]
/// Backward:  dK = Hsᵀ·dlogits   dc = Σ_n dlogits[n]   dHs = dlogits·Kᵀ
public enum Dense {
    public static func forward(
        _ p: Parameters, states: UnsafePointer<Float>, count n: Int, into logits: UnsafeMutablePointer<Float>
    ) {
        let (h, v) = (p.config.units, p.config.vocab)
        gemm(states, p[.denseKernel], into: logits, m: n, n: v, k: h, bias: p[.denseBias])
    }

    public static func backward(
        _ p: Parameters, states: UnsafePointer<Float>, count n: Int, dLogits: UnsafePointer<Float>,
        grads g: Parameters, dStates: UnsafeMutablePointer<Float>
    ) {
        let (h, v) = (p.config.units, p.config.vocab)
        gemm(states, transA: true, dLogits, into: g[.denseKernel], m: h, n: v, k: n)
        columnSums(dLogits, rows: n, cols: v, stride: v, into: g[.denseBias])
        gemm(dLogits, p[.denseKernel], transB: true, into: dStates, m: n, n: h, k: v)
    }
}
