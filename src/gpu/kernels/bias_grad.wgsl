// Column sums of a layer's delta (rows, n): g[out_off + j] = sum_b delta[b, j], the gradient of a
// per-neuron bias (a shared bias then sums these with reduce.wgsl). One thread per column, so that
// threads read neighbouring values of each row. Workgroups (., m) take member m of a population: its
// delta follows the previous member's, its gradient `out_stride` values after it.

struct Params {
    n: u32, rows: u32, out_off: u32, out_stride: u32,
}

// Sizes and destination.
@group(0) @binding(0) var<storage, read> p: Params;
// The layer's delta.
@group(0) @binding(1) var<storage, read> delta: array<f32>;
// Gradient buffer.
@group(0) @binding(2) var<storage, read_write> g: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.n) {
        return;
    }
    let m = gid.y;
    let base = m * p.rows * p.n;
    var s = 0.0;
    for (var b = 0u; b < p.rows; b++) {
        s += delta[base + b * p.n + j];
    }
    g[p.out_off + m * p.out_stride + j] = s;
}
