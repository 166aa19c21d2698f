// Mini-batch gather: dst[r, c] = src[order[counter.row + r], c] for r < rows, so a shuffled epoch
// needs only its order uploaded, not a copy of the data.

struct Params {
    rows: u32, cols: u32, _pad0: u32, _pad1: u32,
}

struct Counter {
    step: u32,
    row: u32,
}

// Batch shape.
@group(0) @binding(0) var<storage, read> p: Params;
// The whole data set (n, cols).
@group(0) @binding(1) var<storage, read> src: array<f32>;
// This epoch's sample order.
@group(0) @binding(2) var<storage, read> order: array<u32>;
// Where in the order this batch starts.
@group(0) @binding(3) var<storage, read> counter: Counter;
// The batch.
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

// A grid-stride loop, since a large batch needs more threads than one dispatch dimension holds.
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.rows * p.cols; i += nwg.x * 64u) {
        let r = i / p.cols;
        dst[i] = src[order[counter.row + r] * p.cols + i % p.cols];
    }
}
