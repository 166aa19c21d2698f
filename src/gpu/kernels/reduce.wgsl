// out[out_off (+ counter.step)] = scale * sum(x[in_off .. in_off + n]), by one workgroup: each thread
// sums a strided share, then a tree in workgroup memory. Used for the batch loss (written to the
// loss history at the current step) and for a shared bias's gradient (the sum over its neurons).
// Workgroup m sums member m's values of a population (n after the previous member's) into its
// destination, `out_stride` after the previous member's, at its own step.

struct Params {
    n: u32, in_off: u32, out_off: u32, at_step: u32,   // at_step: 1 to add counter.step to out_off
    scale: f32, out_stride: u32, _pad1: u32, _pad2: u32,
}

struct Counter {
    step: u32,
    row: u32,
}

// Sizes and destination.
@group(0) @binding(0) var<storage, read> p: Params;
// Values to sum.
@group(0) @binding(1) var<storage, read> x: array<f32>;
// Each member's step counter of the current submission.
@group(0) @binding(2) var<storage, read> counters: array<Counter>;
// Destination.
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let m = wid.x;
    let in_off = p.in_off + m * p.n;
    var s = 0.0;
    for (var i = lid; i < p.n; i += 256u) {
        s += x[in_off + i];
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if (lid < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[p.out_off + m * p.out_stride + select(0u, counters[m].step, p.at_step == 1u)] = partial[0] * p.scale;
    }
}
