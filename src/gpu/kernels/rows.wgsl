// The output layer, one thread per row of the batch: o = g(z2) (softmax over the row), and for
// training the row's loss and the output delta dz2 = dL/dz2, as in src/loss.rs:
//   half_sse: row loss 1/2 sum (t - o)^2,  dz2 = (o - t) * scale * g'(o), scale = 1/B
//   mse:      row loss sum (t - o)^2,      dz2 = (o - t) * scale * g'(o), scale = 2/(B n_out)
//   cross_entropy: row loss -sum t (z - logsumexp z),  dz2 = (p sum(t) - t) * scale, scale = 1/B
//   binary_cross_entropy: row loss sum bce(z, t),   dz2 = (o - t) * scale, scale = 1/(B n_out)
// The batch loss is the sum of row losses times a constant, taken by reduce.wgsl.
// Workgroups (., m) take member m of a population: its z2, o, dz2 and row losses follow the previous
// member's, its targets `t_stride` values after them (0: one batch for every member).

struct Params {
    n_out: u32, rows: u32, act: u32, loss: u32,   // loss: LOSS_*, or LOSS_NONE: outputs only
    scale: f32, t_stride: u32, _pad1: u32, _pad2: u32,
}

// Sizes and loss of this batch.
@group(0) @binding(0) var<storage, read> p: Params;
// Output layer net input z2 (rows, n_out).
@group(0) @binding(1) var<storage, read> z: array<f32>;
// Targets (rows, n_out); unread with LOSS_NONE.
@group(0) @binding(2) var<storage, read> t: array<f32>;
// Outputs o = g(z2).
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
// Output delta dz2.
@group(0) @binding(4) var<storage, read_write> dz: array<f32>;
// Each row's loss.
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;

// A grid-stride loop over rows: a batch may have more rows than one dispatch dimension holds threads.
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var r = gid.x; r < p.rows; r += nwg.x * 64u) {
        row(gid.y, r);
    }
}

// Row r of member m: z, o and dz at `base`, t at `tbase`, its loss at `lr`.
fn row(m: u32, r: u32) {
    let base = (m * p.rows + r) * p.n_out;
    let tbase = m * p.t_stride + r * p.n_out;
    let lr = m * p.rows + r;
    if (p.act == ACT_SOFTMAX) {
        // Softmax shifted by the row's maximum so that exp never overflows.
        var mx = z[base];
        for (var k = 1u; k < p.n_out; k++) {
            mx = max(mx, z[base + k]);
        }
        var sum = 0.0;
        for (var k = 0u; k < p.n_out; k++) {
            let e = exp(z[base + k] - mx);
            o[base + k] = e;
            sum += e;
        }
        for (var k = 0u; k < p.n_out; k++) {
            o[base + k] = o[base + k] / sum;
        }
        if (p.loss == LOSS_CROSS_ENTROPY) {
            let lse = mx + log(sum);
            var mass = 0.0;
            for (var k = 0u; k < p.n_out; k++) {
                mass += t[tbase + k];
            }
            var loss = 0.0;
            for (var k = 0u; k < p.n_out; k++) {
                let tk = t[tbase + k];
                if (tk != 0.0) {
                    loss -= tk * (z[base + k] - lse);
                }
                dz[base + k] = (o[base + k] * mass - tk) * p.scale;
            }
            row_loss[lr] = loss;
        }
        return;
    }
    var loss = 0.0;
    for (var k = 0u; k < p.n_out; k++) {
        let ok = activate(p.act, z[base + k]);
        o[base + k] = ok;
        if (p.loss == LOSS_HALF_SSE || p.loss == LOSS_MSE) {
            let tk = t[tbase + k];
            let diff = tk - ok;
            loss += diff * diff;
            dz[base + k] = (ok - tk) * p.scale * derivative(p.act, ok);
        } else if (p.loss == LOSS_BINARY_CROSS_ENTROPY) {
            let tk = t[tbase + k];
            loss += bce(z[base + k], tk);
            dz[base + k] = (ok - tk) * p.scale;
        }
    }
    if (p.loss == LOSS_HALF_SSE || p.loss == LOSS_MSE) {
        row_loss[lr] = select(loss, 0.5 * loss, p.loss == LOSS_HALF_SSE);
    } else if (p.loss == LOSS_BINARY_CROSS_ENTROPY) {
        row_loss[lr] = loss;
    }
}
