// Column sums of a layer's delta (rows, n): g[out_off + j] = sum_b delta[b, j], the gradient of a
// per-neuron bias (a shared bias then sums these with reduce.wgsl). One thread per column, so that
// threads read neighbouring values of each row.

struct Params {
    n: u32, rows: u32, out_off: u32, _pad: u32,
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
    var s = 0.0;
    for (var b = 0u; b < p.rows; b++) {
        s += delta[b * p.n + j];
    }
    g[p.out_off + j] = s;
}
