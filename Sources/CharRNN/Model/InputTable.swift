/// The embedding and the first recurrent layer's input kernel, folded into one lookup table.
///
/// Forward:   T[v] = E[v]·W + b0                        E [V, E], W [E, G·H], b0 [G·H], T [V, G·H]
///            xw(b, t) = T[x(b, t)]                      (instead of a [B·T, E]×[E, 3H] product)
/// Backward:  dT[v] = Σ_{(b,t): x(b,t)=v} dxw(b, t)     (scatter-add, done by the recurrence's backward)
///            dW = Eᵀ·dT   dE = dT·Wᵀ   db0 = Σ_v dT[v]
/// (G gate blocks; b0 is a GRU's bias row 0, an LSTM's only bias.) With V ≪ B·T this removes most of the
/// input-side work; the result is the same sum regrouped.
public enum InputTable {
    public static func forward(_ p: Parameters, into table: UnsafeMutablePointer<Float>) {
        let c = p.config
        let width = c.cell.gates * c.units
        gemm(p[.embedding], p[.kernel], into: table, m: c.vocab, n: width, k: c.embed, bias: p[.bias])
    }

    public static func backward(_ p: Parameters, dTable: UnsafePointer<Float>, grads g: Parameters) {
        let c = p.config
        let width = c.cell.gates * c.units
        gemm(p[.embedding], transA: true, dTable, into: g[.kernel], m: c.embed, n: width, k: c.vocab)
        gemm(dTable, p[.kernel], transB: true, into: g[.embedding], m: c.vocab, n: c.embed, k: width)
        columnSums(dTable, rows: c.vocab, cols: width, stride: width, into: g[.bias])
    }
}
