// Ends a step: advances the step counter (which indexes the loss history and Adam's schedule) and
// the row cursor of mini-batch training. One thread.

struct Counter {
    step: u32,
    row: u32,
}

struct Params {
    rows: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

// Rows consumed by this step.
@group(0) @binding(0) var<storage, read> p: Params;
// The counter.
@group(0) @binding(1) var<storage, read_write> counter: Counter;

@compute @workgroup_size(1)
fn main() {
    counter.step += 1u;
    counter.row += p.rows;
}
