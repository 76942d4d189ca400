/// The input side of a stacked layer (l ≥ 1), which reads the output sequence of the layer below. Layer 0
/// reads symbols and gets the same product from `InputTable`; above it there is no table to fold into.
///
/// Forward:   xw = Hs·W + b0              Hs [N, H] (N = T·b output states below), W [H, G·H], b0 [G·H]
/// Backward:  dW = Hsᵀ·dxw   db0 = Σ_n dxw[n]   dHs = dxw·Wᵀ
/// (G gate blocks: 3 for a GRU, 4 for an LSTM; b0 is bias row 0 of a GRU, the only bias row of an LSTM.)
public enum LayerInput {
    public static func forward(
        _ p: Parameters, layer l: Int, below: UnsafePointer<Float>, count n: Int, into xw: UnsafeMutablePointer<Float>
    ) {
        let (h, width) = (p.config.units, p.config.cell.gates * p.config.units)
        gemm(below, p[.kernel(l)], into: xw, m: n, n: width, k: h, bias: p[.bias(l)])
    }

    public static func backward(
        _ p: Parameters, layer l: Int, below: UnsafePointer<Float>, count n: Int, dXW: UnsafePointer<Float>,
        grads g: Parameters, dBelow: UnsafeMutablePointer<Float>
    ) {
        let (h, width) = (p.config.units, p.config.cell.gates * p.config.units)
        gemm(below, transA: true, dXW, into: g[.kernel(l)], m: h, n: width, k: n)
        columnSums(dXW, rows: n, cols: width, stride: width, into: g[.bias(l)])
        gemm(dXW, p[.kernel(l)], transB: true, into: dBelow, m: n, n: h, k: width)
    }
}
