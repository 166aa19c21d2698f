// Mini-batch gather: dst[r, c] = src[order[counter.row + r], c] for r < rows, so a shuffled epoch
// needs only its order uploaded, not a copy of the data. A population gathers every member's batch in
// one dispatch: workgroups (., m) fill member m's batch, at m * rows * cols in dst, from its own order
// (at m * order_len) and row cursor (counters[m]).

struct Params {
    rows: u32, cols: u32, order_len: u32, _pad0: u32,
}

struct Counter {
    step: u32,
    row: u32,
}

// Batch shape, and the length of each member's order.
@group(0) @binding(0) var<storage, read> p: Params;
// The whole data set (n, cols).
@group(0) @binding(1) var<storage, read> src: array<f32>;
// This epoch's sample order, member after member.
@group(0) @binding(2) var<storage, read> order: array<u32>;
// Where in its order each member's batch starts.
@group(0) @binding(3) var<storage, read> counters: array<Counter>;
// The batches.
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

// A grid-stride loop, since a large batch needs more threads than one dispatch dimension holds.
@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let m = wid.y;
    let n = p.rows * p.cols;
    let first = m * p.order_len + counters[m].row;
    for (var i = gid.x; i < n; i += nwg.x * 64u) {
        dst[m * n + i] = src[order[first + i / p.cols] * p.cols + i % p.cols];
    }
}
