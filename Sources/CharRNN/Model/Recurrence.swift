/// One recurrent layer's pass over a shard: its sizes and the buffers the step loops read and write.
///
/// Layout is time-major so each step's rows are one contiguous matrix for BLAS (b rows, T steps, H units,
/// G gate blocks, K = the cell's cache width in blocks of H):
///   xw      [V, G·H] input table (layer 0, read through `tokens`) or [T·b, G·H] input product (layers above)
///   hs      [(T+1)·b, H]   hs[0] = h0, hs[t+1] = output state after step t
///   cs      [(T+1)·b, H]   an LSTM's cell states, laid out as hs; nil for a GRU
///   cache   [T·b, K·H]     what the forward pass keeps for the backward one; backward overwrites the first G·H
///                          columns with dg, the gradient of the recurrent product, so dU is one product
///   scratch [b, G·H]       h·U in the forward pass (block by block, see `StepBlocks`), the carried gradients (dh,
///                          an LSTM's dc) in the backward pass
///   panels  [H, G·H]       the recurrent kernel U regrouped by `StepBlocks.pack`, read by the forward pass
public struct LayerPass {
    public var rows: Int
    public var steps: Int
    public var units: Int
    public var xw: UnsafePointer<Float>
    /// Time-major [T, b] symbols when `xw` is the input table, nil when it is the input product.
    public var tokens: UnsafePointer<Int32>?
    /// V, the input table's rows, when `tokens` is set.
    public var tableRows: Int
    public var recurrentKernel: UnsafePointer<Float>
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
/// Threads: each time step is cut into the blocks of `StepBlocks` (rows × units); a block computes its own part
/// of h·U (or of dg·Uᵀ) and then its gates while they are still in cache. The only synchronisation is one
/// barrier per step, where the next step needs every row and unit of h (or of dg).
public enum Recurrence {
    /// Runs T steps forward; `p.hs[0]` (and `p.cs[0]`) must hold the initial state.
    public static func forward(_ cell: Cell, _ p: LayerPass) {
        switch cell {
        case .gru: forward(GRU.self, p)
        case .lstm: forward(LSTM.self, p)
        }
    }

    /// Backpropagates through T steps. `dhs` [T·b, H] is the loss gradient on each output state. Leaves dg in the
    /// cache, adds dxw into `dXW` (the input table's gradient [V, G·H] when `p.tokens` is set, else [T·b, G·H])
    /// and writes a GRU's db1 into `dBias` (nil for an LSTM). `partials` holds `partialCount` floats.
    public static func backward(
        _ cell: Cell, _ p: LayerPass, dhs: UnsafePointer<Float>, dXW: UnsafeMutablePointer<Float>,
        dBias: UnsafeMutablePointer<Float>?, partials: UnsafeMutablePointer<Float>
    ) {
        switch cell {
        case .gru: backward(GRU.self, p, dhs: dhs, dXW: dXW, dBias: dBias, partials: partials)
        case .lstm: backward(LSTM.self, p, dhs: dhs, dXW: dXW, dBias: dBias, partials: partials)
        }
    }

    /// Floats `backward` needs for its row blocks' partial sums, for at most `rows` rows of a layer whose
    /// inputs are symbols of a `vocab`-row table (layer 0, the most of any layer).
    public static func partialCount(_ cell: Cell, rows: Int, units: Int, vocab: Int) -> Int {
        (StepBlocks(rows: rows, units: units).rowBlocks - 1) * (vocab + (cell == .gru ? 1 : 0)) * cell.gates * units
    }

    /// After `backward`: dU = Σ_t h_tᵀ·dg_t as one [H, T·b]×[T·b, G·H] product.
    public static func weightGradients(_ cell: Cell, _ p: LayerPass, dU: UnsafeMutablePointer<Float>) {
        let (h, width) = (p.units, cell.gates * p.units)
        gemm(p.hs, transA: true, p.cache, into: dU, m: h, n: width, k: p.rows * p.steps, lda: h, ldb: cell.cacheBlocks * h)
    }

    static func forward<C: RecurrentCell>(_: C.Type, _ p: LayerPass) {
        let (b, h, g) = (p.rows, p.units, C.gates)
        let blocks = StepBlocks(rows: b, units: h)
        for t in 0..<p.steps {
            Parallel.forEach(blocks: blocks.count) { k in
                let (rows, units) = blocks[k]
                let w = units.count
                // This block's h·U [rows, G·w] = h [rows, H] · its unit block's panel [H, G·w], in one product;
                // stored as that unit block's [b, G·w] slice of the scratch.
                let hu = p.scratch + units.lowerBound * g * b + rows.lowerBound * g * w
                gemmSerial(
                    p.hs + (t * b + rows.lowerBound) * h, transA: false, p.panels + units.lowerBound * g * h, transB: false,
                    into: hu, m: rows.count, n: g * w, k: h, lda: h, ldb: g * w, ldc: g * w)
                for i in rows {
                    C.forward(units: units, step: t, row: i, hu: hu + (i - rows.lowerBound) * g * w, huStride: w, p)
                }
            }
        }
    }

    static func backward<C: RecurrentCell>(
        _: C.Type, _ p: LayerPass, dhs: UnsafePointer<Float>, dXW: UnsafeMutablePointer<Float>,
        dBias: UnsafeMutablePointer<Float>?, partials: UnsafeMutablePointer<Float>
    ) {
        let (b, h, steps, width) = (p.rows, p.units, p.steps, C.gates * p.units)
        let (ldCache, ldCarry) = (C.cacheBlocks * h, C.carryBlocks * h)
        let blocks = StepBlocks(rows: b, units: h)
        // Row block r > 0's partial sums: the table's gradient [V, G·H] (when the inputs are symbols), then db1.
        let tableFloats = p.tokens == nil ? 0 : p.tableRows * width
        let partialStride = tableFloats + (dBias == nil ? 0 : width)
        p.scratch.update(repeating: 0, count: b * ldCarry)
        dBias?.update(repeating: 0, count: width)
        partials.update(repeating: 0, count: (blocks.rowBlocks - 1) * partialStride)
        for t in stride(from: steps - 1, through: 0, by: -1) {
            Parallel.forEach(blocks: blocks.count) { k in
                let (rows, units) = blocks[k]
                if t + 1 < steps {
                    // dh[rows, units] += dg_{t+1}[rows, :]·U[units, :]ᵀ — the part of dh that comes through step t+1.
                    gemmSerial(
                        p.cache + ((t + 1) * b + rows.lowerBound) * ldCache, transA: false,
                        p.recurrentKernel + units.lowerBound * width, transB: true,
                        into: p.scratch + rows.lowerBound * ldCarry + units.lowerBound, m: rows.count, n: units.count,
                        k: width, beta: 1, lda: ldCache, ldb: width, ldc: ldCarry)
                }
                // Row block 0 adds into the outputs, the others into their partial sums (into the table's only when
                // the inputs are symbols: an input product has a row of its own for each row and step).
                let rowBlock = blocks.rowBlock(k)
                let partial = rowBlock == 0 ? nil : partials + (rowBlock - 1) * partialStride
                let dInput = p.tokens == nil ? dXW : partial ?? dXW
                let db1 = dBias == nil ? nil : partial.map { $0 + tableFloats } ?? dBias
                for i in rows {
                    let r = t * b + i
                    C.backward(
                        units: units, step: t, row: i, p, dOut: dhs + r * h, carry: p.scratch + i * ldCarry,
                        dInput: dInput + p.inputRow(r) * width, dBias: db1)
                }
            }
        }
        let others = blocks.rowBlocks - 1
        if tableFloats > 0 { addPartials(partials, stride: partialStride, blocks: others, count: tableFloats, into: dXW) }
        if let dBias { addPartials(partials + tableFloats, stride: partialStride, blocks: others, count: width, into: dBias) }
    }

    /// out[e] += partial_1[e] + partial_2[e] + …, in row-block order (partial_r at `partials + (r − 1)·stride`).
    private static func addPartials(
        _ partials: UnsafePointer<Float>, stride: Int, blocks: Int, count: Int, into out: UnsafeMutablePointer<Float>
    ) {
        guard blocks > 0 else { return }
        Parallel.forEachRange(of: count) { range in
            for r in 0..<blocks {
                let partial = partials + r * stride
                for e in range { out[e] += partial[e] }
            }
        }
    }
}

/// A recurrent time step cut into a grid of blocks fixed by the shapes, b rows and H units, never by the thread
/// count: row blocks × unit blocks.
///
/// Row i of h' needs only row i of h, and unit j's gates only column j of each gate block of h·U, so block
/// (rows R, units J) computes hu[R, J] = h[R, :]·U[:, J] (all G gates' columns J: one [|R|, H]·[H, G·|J|]
/// product against J's panel of U, see `pack`) and then the gates of rows R, units J. Backward, block (R, J)
/// adds dg_{t+1}[R, :]·U[J, :]ᵀ to dh[R, J], then runs the gates' backward for rows R, units J. Every output
/// element has one block, computed by one thread in a fixed order; the only sums over rows (a GRU's db1, and
/// layer 0's scatter into the input table's gradient) are kept per row block and added in row-block order.
///
/// Units: blocks of 64 (the last fewer), so each row's gate kernels read and write 256-byte runs; 32 units
/// cost ≈ 13 % more per step on two threads (BENCHMARKS.md). Rows: ⌊b/32⌋ blocks (at least one) of equal
/// height ±1, so the tutorial's 64 rows and H 1024 give 2 × 16 = 32 blocks per time step.
struct StepBlocks {
    static let unitsPerBlock = 64
    static let rowsPerBlock = 32

    let rows: Int
    let units: Int
    let rowBlocks: Int
    let unitBlocks: Int

    init(rows: Int, units: Int) {
        (self.rows, self.units) = (rows, units)
        rowBlocks = max(1, rows / Self.rowsPerBlock)
        unitBlocks = Parallel.blocks(of: units, size: Self.unitsPerBlock)
    }

    var count: Int { rowBlocks * unitBlocks }

    /// Block k is row block k mod R of unit block k / R: a unit block's row blocks are neighbours, so threads
    /// taking blocks in turn tend to share its panel of U.
    subscript(k: Int) -> (rows: Range<Int>, units: Range<Int>) {
        let r = rowBlock(k)
        return (r * rows / rowBlocks..<(r + 1) * rows / rowBlocks, Self.units(k / rowBlocks, of: units))
    }

    func rowBlock(_ k: Int) -> Int { k % rowBlocks }

    /// Unit block u of H units.
    static func units(_ u: Int, of h: Int) -> Range<Int> { Parallel.range(u, of: h, size: unitsPerBlock) }

    /// Regroups U [H, G·H] into one panel per unit block, panel u = U's columns of block u's units for gate 0,
    /// then gate 1, …: [H, G·w] at offset u·64·G·H (the blocks before it hold u·64 units of G·H floats each).
    static func pack(_ u: UnsafePointer<Float>, units h: Int, gates g: Int, into panels: UnsafeMutablePointer<Float>) {
        Parallel.forEach(blocks: Parallel.blocks(of: h, size: unitsPerBlock)) { k in
            let units = Self.units(k, of: h)
            let (w, panel) = (units.count, panels + units.lowerBound * g * h)
            for row in 0..<h {
                for gate in 0..<g {
                    (panel + row * g * w + gate * w).update(from: u + row * g * h + gate * h + units.lowerBound, count: w)
                }
            }
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
