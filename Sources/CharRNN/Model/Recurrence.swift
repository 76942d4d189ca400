/// One recurrent layer's pass over a shard: its sizes and the buffers the step loops read and write.
///
/// Layout is time-major so each step's rows are one contiguous matrix for BLAS (b rows, T steps, H units,
/// G gate blocks, K = the cell's cache width in blocks of H):
///   xw      [V, G·H] input table (layer 0, read through `tokens`) or [T·b, G·H] input product (layers above)
///   hs      [(T+1)·b, H]   hs[0] = h0, hs[t+1] = output state after step t
///   cs      [(T+1)·b, H]   an LSTM's cell states, laid out as hs; nil for a GRU
///   cache   [T·b, K·H]     what the forward pass keeps for the backward one; backward overwrites the first G·H
///                          columns with dg, the gradient of the recurrent product, so dU is one product
///   scratch [b, G·H]       h·U in the forward pass (block by block, see `UnitBlocks`), the carried gradients (dh,
///                          an LSTM's dc) in the backward pass
///   panels                 the recurrent kernel U packed by `UnitBlocks.pack`, read by both passes
public struct LayerPass {
    public var rows: Int
    public var steps: Int
    public var units: Int
    public var xw: UnsafePointer<Float>
    /// Time-major [T, b] symbols when `xw` is the input table, nil when it is the input product.
    public var tokens: UnsafePointer<Int32>?
    public var panels: UnsafePointer<Float>
    /// A GRU's recurrent bias b1 [3H]; an LSTM has none.
    public var recurrentBias: UnsafePointer<Float>?
    public var hs: UnsafeMutablePointer<Float>
    public var cs: UnsafeMutablePointer<Float>?
    public var cache: UnsafeMutablePointer<Float>
    public var scratch: UnsafeMutablePointer<Float>

    /// Which input row step t, row i (r = t·b+i) reads: table row `tokens[r]` when the inputs are symbols (layer
    /// 0), else row r of the input product. One branch per row and step, against a whole row of gate work.
    @inline(__always)
    func inputRow(_ r: Int) -> Int { tokens.map { Int($0[r]) } ?? r }
}

/// What distinguishes one recurrent cell from another: its gates for one row over a range of units, forward
/// and backward. Everything else (the step loops, threads, the recurrent products) is `Recurrence`'s.
protocol RecurrentCell {
    /// G: gate blocks of width H in the input and recurrent products.
    static var gates: Int { get }
    /// K: floats of cache per row and step, in blocks of H (at least G; the first G are overwritten by dg).
    static var cacheBlocks: Int { get }
    /// Floats of carried gradient per row, in blocks of H: dh first, then whatever else the cell carries.
    static var carryBlocks: Int { get }

    /// Step t, row i: gates from `hu` (this row's h·U for `units`, gate g of unit j at hu[g·huStride + j − lower])
    /// and the input row; writes the next state(s) and the cache.
    static func forward(units: Range<Int>, step t: Int, row i: Int, hu: UnsafePointer<Float>, huStride: Int, _ p: LayerPass)

    /// Step t, row i, given dOut (the loss gradient on this output state) and `carry` (dh from step t+1 already
    /// added): writes dg into the cache, leaves in `carry` what step t−1 receives before dg·Uᵀ is added, adds
    /// dxw to `dInput` and, for a GRU, db1 to `dBias`.
    static func backward(
        units: Range<Int>, step t: Int, row i: Int, _ p: LayerPass, dOut: UnsafePointer<Float>,
        carry: UnsafeMutablePointer<Float>, dInput: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?)
}

/// The recurrence shared by every cell.
///
/// Threads: unit j's gates need only column j of each gate block, so each block of `UnitBlocks` owns a range of
/// units, computes its own columns of h·U (or of dg·Uᵀ) and then its gates while they are still in cache. The
/// only synchronisation is one barrier per step, where the next step needs every unit of h (or of dg). The
/// products read U packed once per step (`PackedProduct`), not re-packed by every block of every time step.
public enum Recurrence {
    /// Runs T steps forward; `p.hs[0]` (and `p.cs[0]`) must hold the initial state.
    public static func forward(_ cell: Cell, _ p: LayerPass) {
        switch cell {
        case .gru: forward(GRU.self, p)
        case .lstm: forward(LSTM.self, p)
        }
    }

    /// Backpropagates through T steps. `dhs` [T·b, H] is the loss gradient on each output state. Leaves dg in the
    /// cache, adds dxw into `dXW` (the input table's gradient when `p.tokens` is set, else [T·b, G·H]) and writes
    /// a GRU's db1 into `dBias` (nil for an LSTM).
    public static func backward(
        _ cell: Cell, _ p: LayerPass, dhs: UnsafePointer<Float>, dXW: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?
    ) {
        switch cell {
        case .gru: backward(GRU.self, p, dhs: dhs, dXW: dXW, dBias: dBias)
        case .lstm: backward(LSTM.self, p, dhs: dhs, dXW: dXW, dBias: dBias)
        }
    }

    /// After `backward`: dU = Σ_t h_tᵀ·dg_t as one [H, T·b]×[T·b, G·H] product. `rowsDone`: see `gemm`.
    public static func weightGradients(
        _ cell: Cell, _ p: LayerPass, dU: UnsafeMutablePointer<Float>, rowsDone: ((Range<Int>) -> Void)? = nil
    ) {
        let (h, width) = (p.units, cell.gates * p.units)
        gemm(
            p.hs, transA: true, p.cache, into: dU, m: h, n: width, k: p.rows * p.steps, lda: h, ldb: cell.cacheBlocks * h,
            rowsDone: rowsDone)
    }

    static func forward<C: RecurrentCell>(_: C.Type, _ p: LayerPass) {
        let (b, h, g) = (p.rows, p.units, C.gates)
        let blocks = UnitBlocks(units: h, gates: g)
        for t in 0..<p.steps {
            Parallel.forEach(blocks: blocks.count) { k in
                let units = blocks[k]
                let w = units.count
                // This block's h·U [b, G·w] = h [b, H] · its columns of U, gate by gate: hu[:, g·w ..< (g+1)·w].
                let hu = p.scratch + units.lowerBound * g * b
                for gate in 0..<g {
                    PackedProduct.multiply(
                        p.hs + t * b * h, lda: h, p.panels + blocks.forwardPanel(k, gate: gate), into: hu + gate * w, ldc: g * w,
                        m: b, n: w, k: h)
                }
                for i in 0..<b { C.forward(units: units, step: t, row: i, hu: hu + i * g * w, huStride: w, p) }
            }
        }
    }

    static func backward<C: RecurrentCell>(
        _: C.Type, _ p: LayerPass, dhs: UnsafePointer<Float>, dXW: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?
    ) {
        let (b, h, steps, width) = (p.rows, p.units, p.steps, C.gates * p.units)
        let (ldCache, ldCarry) = (C.cacheBlocks * h, C.carryBlocks * h)
        let blocks = UnitBlocks(units: h, gates: C.gates)
        p.scratch.update(repeating: 0, count: b * ldCarry)
        dBias?.update(repeating: 0, count: width)
        for t in stride(from: steps - 1, through: 0, by: -1) {
            Parallel.forEach(blocks: blocks.count) { k in
                let units = blocks[k]
                if t + 1 < steps {
                    // dh[:, units] += dg_{t+1}·U[units, :]ᵀ — the part of dh that comes through step t+1; each
                    // element's chain starts from what the cell left in the carry.
                    PackedProduct.multiply(
                        p.cache + (t + 1) * b * ldCache, lda: ldCache, p.panels + blocks.backwardPanel(k),
                        into: p.scratch + units.lowerBound, ldc: ldCarry, m: b, n: units.count, k: width, accumulate: true)
                }
                for i in 0..<b {
                    let r = t * b + i
                    C.backward(
                        units: units, step: t, row: i, p, dOut: dhs + r * h, carry: p.scratch + i * ldCarry,
                        dInput: dXW + p.inputRow(r) * width, dBias: dBias)
                }
            }
        }
    }
}

/// A recurrent time step cut into blocks of `width` units: block k owns units k·width ..< (k+1)·width of every
/// gate (the last block fewer). A function of H alone, and only a matter of speed: a block's products are
/// `PackedProduct`s, whose bits do not depend on how the columns are cut.
///
/// 32 units where that gives a time step at least 32 blocks, enough for 32 cores (H ≥ 1024: the tutorial's
/// time step has 32); below that, 64 units. A smaller model's time step is too short to spread over many cores
/// (at H 256 one step's product is ≈ 0.2 ms on one core), and its 32-unit blocks cost 5–8 % more per step on 2
/// threads and 10–14 % more CPU with 8 threads on 2 cores (BENCHMARKS.md).
///
/// U's panels, packed once per step (`pack`), hold per block its G forward panels, gate g's columns of U for the
/// block's units ([H, w] packed), then its backward panel, the block's rows of U transposed ([G·H, w] packed).
struct UnitBlocks {
    let units: Int
    let gates: Int

    var width: Int { Self.width(units: units) }

    static func width(units: Int) -> Int { units >= 32 * 32 ? 32 : 64 }

    var count: Int { Self.count(units: units) }

    static func count(units: Int) -> Int { Parallel.blocks(of: units, size: width(units: units)) }

    subscript(k: Int) -> Range<Int> { Parallel.range(k, of: units, size: width) }

    /// Floats of one block's panels, w units wide.
    private func blockFloats(_ w: Int) -> Int {
        gates * PackedProduct.count(k: units, n: w) + PackedProduct.count(k: gates * units, n: w)
    }

    /// Floats of all panels.
    var panelFloats: Int { (0..<count).reduce(0) { $0 + blockFloats(self[$1].count) } }

    /// Offset of block k's forward panel for `gate`; every block before k is full width.
    func forwardPanel(_ k: Int, gate: Int) -> Int {
        k * blockFloats(width) + gate * PackedProduct.count(k: units, n: self[k].count)
    }

    /// Offset of block k's backward panel.
    func backwardPanel(_ k: Int) -> Int { forwardPanel(k, gate: gates) }

    /// Packs U [H, G·H] into `panels` (`panelFloats`).
    func pack(_ u: UnsafePointer<Float>, into panels: UnsafeMutablePointer<Float>) {
        let (h, g) = (units, gates)
        Parallel.forEach(blocks: count) { k in
            let first = self[k].lowerBound
            let w = self[k].count
            for gate in 0..<g {
                PackedProduct.pack(u + gate * h + first, ldb: g * h, transposed: false, k: h, n: w, into: panels + forwardPanel(k, gate: gate))
            }
            PackedProduct.pack(u + first * g * h, ldb: g * h, transposed: true, k: g * h, n: w, into: panels + backwardPanel(k))
        }
    }
}

extension Cell {
    /// K: the cache's width per row and step, in blocks of H.
    var cacheBlocks: Int { self == .gru ? GRU.cacheBlocks : LSTM.cacheBlocks }
}

/// out[j] = Σ_r a[r·stride + j], summed in row order (deterministic, and vectorised along j); blocks of 256
/// columns run in parallel, each column still summed by one thread in row order.
func columnSums(_ a: UnsafePointer<Float>, rows: Int, cols: Int, stride: Int, into out: UnsafeMutablePointer<Float>) {
    let size = 256
    Parallel.forEach(blocks: Parallel.blocks(of: cols, size: size)) { blk in
        let columns = Parallel.range(blk, of: cols, size: size)
        let o = out + columns.lowerBound
        o.update(repeating: 0, count: columns.count)
        for r in 0..<rows {
            let row = a + r * stride + columns.lowerBound
            for j in 0..<columns.count { o[j] += row[j] }
        }
    }
}
