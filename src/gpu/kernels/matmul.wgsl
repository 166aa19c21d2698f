// C (m x n) = A (m x k) B (k x n), tiled in workgroup memory, with an optional fused epilogue.
// A is stored (m, k) row-major, or (k, m) when flag bit 0 is set (A^T is used); B is stored (k, n),
// or (n, k) when bit 1 is set. Offsets are in elements, so several tensors can share one buffer.
// Epilogues: EPILOGUE_STORE; EPILOGUE_BIAS_ACT c = act(acc + bias) (bias per column, shared, or none);
// EPILOGUE_DERIV c = acc * f'(d), d the activation output at the same position (dz1 = dz2 w2 * f'(h)).
// Each workgroup computes a TILE x TILE tile; each of its 16 x 16 threads PER x PER values, strided
// by 16 so that neighbouring threads touch neighbouring columns (coalesced stores, no bank conflicts).
// The host defines PER before this source: 4 for `matmul`, 8 for `matmul_wide` (128 x 128 tiles, twice
// the reuse of each loaded value) for products whose both sides are at least 128.
// Workgroups (., ., m) compute member m's product of a population, each operand `*_stride` values after
// the previous member's (0: one operand shared by every member).

struct Params {
    m: u32, n: u32, k: u32, flags: u32,
    a_off: u32, b_off: u32, c_off: u32, bias_off: u32,
    d_off: u32, epilogue: u32, act: u32, bias_mode: u32,
    a_stride: u32, b_stride: u32, c_stride: u32, bias_stride: u32,
    d_stride: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

// Sizes, offsets and epilogue of this product.
@group(0) @binding(0) var<storage, read> p: Params;
// Left operand.
@group(0) @binding(1) var<storage, read> a: array<f32>;
// Right operand.
@group(0) @binding(2) var<storage, read> b: array<f32>;
// Bias of epilogue 1 (a dummy otherwise).
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// Activation outputs of epilogue 2 (a dummy otherwise).
@group(0) @binding(4) var<storage, read> d: array<f32>;
// The result: written only, but read_write is what storage writes require.
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

const TILE: u32 = 16u * PER;
const BK: u32 = 16u;
const LOADS: u32 = BK * TILE / 256u;
// Tiles of A^T and B, both k-major: [kk * TILE + i].
var<workgroup> tile_a: array<f32, BK * TILE>;
var<workgroup> tile_b: array<f32, BK * TILE>;

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid.y * 16u + lid.x;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let a_off = p.a_off + wid.z * p.a_stride;
    let b_off = p.b_off + wid.z * p.b_stride;
    let trans_a = (p.flags & TRANS_A) != 0u;
    let trans_b = (p.flags & TRANS_B) != 0u;
    var acc: array<f32, PER * PER>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var r = 0u; r < LOADS; r++) {
            let e = t + r * 256u;
            // Pick the loading order that walks memory contiguously for the stored layout.
            var kk = e % BK;
            var mm = e / BK;
            if (trans_a) {
                kk = e / TILE;
                mm = e % TILE;
            }
            let gm = row0 + mm;
            let gk = k0 + kk;
            var v = 0.0;
            if (gm < p.m && gk < p.k) {
                v = a[a_off + select(gm * p.k + gk, gk * p.m + gm, trans_a)];
            }
            tile_a[kk * TILE + mm] = v;

            var bk = e / TILE;
            var nn = e % TILE;
            if (trans_b) {
                bk = e % BK;
                nn = e / BK;
            }
            let gn = col0 + nn;
            let gk2 = k0 + bk;
            var w = 0.0;
            if (gn < p.n && gk2 < p.k) {
                w = b[b_off + select(gk2 * p.n + gn, gn * p.k + gk2, trans_b)];
            }
            tile_b[bk * TILE + nn] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<f32, PER>;
            var bv: array<f32, PER>;
            for (var i = 0u; i < PER; i++) {
                av[i] = tile_a[kk * TILE + lid.y + 16u * i];
                bv[i] = tile_b[kk * TILE + lid.x + 16u * i];
            }
            for (var i = 0u; i < PER; i++) {
                for (var j = 0u; j < PER; j++) {
                    acc[i * PER + j] = fma(av[i], bv[j], acc[i * PER + j]);
                }
            }
        }
        workgroupBarrier();
    }
    let c_off = p.c_off + wid.z * p.c_stride;
    let bias_off = p.bias_off + wid.z * p.bias_stride;
    let d_off = p.d_off + wid.z * p.d_stride;
    for (var i = 0u; i < PER; i++) {
        let gm = row0 + lid.y + 16u * i;
        for (var j = 0u; j < PER; j++) {
            let gn = col0 + lid.x + 16u * j;
            // Bounds guard: edge tiles hang over the matrix.
            if (gm >= p.m || gn >= p.n) {
                continue;
            }
            var v = acc[i * PER + j];
            if (p.epilogue == EPILOGUE_BIAS_ACT) {
                if (p.bias_mode == BIAS_PER_NEURON) {
                    v += bias[bias_off + gn];
                } else if (p.bias_mode == BIAS_SHARED) {
                    v += bias[bias_off];
                }
                v = activate(p.act, v);
            } else if (p.epilogue == EPILOGUE_DERIV) {
                v *= derivative(p.act, d[d_off + gm * p.n + gn]);
            }
            c[c_off + gm * p.n + gn] = v;
        }
    }
}
