// Ends a step: advances the step counter (which indexes the loss history and Adam's schedule) and
// the row cursor of mini-batch training, of each of a population's members: a thread each.

struct Counter {
    step: u32,
    row: u32,
}

struct Params {
    rows: u32, members: u32, _pad1: u32, _pad2: u32,
}

// Rows consumed by this step, and how many members step.
@group(0) @binding(0) var<storage, read> p: Params;
// The counters.
@group(0) @binding(1) var<storage, read_write> counters: array<Counter>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m = gid.x;
    if (m < p.members) {
        counters[m].step += 1u;
        counters[m].row += p.rows;
    }
}
