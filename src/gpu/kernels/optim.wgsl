// One optimizer update (common.wgsl's optimizer_step) of the trained prefix theta[0 .. n] from the
// gradients. State slots live in one buffer: slot s of element i at s * stride + i. Workgroups (., m)
// update member m of a population with its own settings (row m of the settings), its parameters and
// gradients at theta_off, its state at state_off, its loss history and Adam's schedule at step_off.

struct Params {
    n: u32, kind: u32, stride: u32, _pad: u32,   // kind: OPTIM_*
    lr: f32, mu: f32, wd: f32, beta1w: f32,      // beta1w = 1 - beta1
    beta2: f32, beta2w: f32, eps: f32, _pad1: f32,
    theta_off: u32, state_off: u32, step_off: u32, _pad2: u32,
}

struct Counter {
    step: u32,
    row: u32,
}

// Each member's settings.
@group(0) @binding(0) var<storage, read> settings: array<Params>;
// Parameters, updated in place.
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
// Gradients, same layout.
@group(0) @binding(2) var<storage, read> grad: array<f32>;
// Momentum buffer, or Adam's two moments.
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
// Adam's (step_size, bc2_sqrt) for each step of the submission.
@group(0) @binding(4) var<storage, read> sched: array<vec2<f32>>;
// Which step of the submission this is, for each member.
@group(0) @binding(5) var<storage, read> counters: array<Counter>;
// Loss history of the submission, as bits: an update with a non-finite result marks its step.
@group(0) @binding(6) var<storage, read_write> losses: array<atomic<u32>>;

// A grid-stride loop: a network may have more parameters than one dispatch dimension holds threads.
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = settings[gid.y];
    let step = p.step_off + counters[gid.y].step;
    for (var i = gid.x; i < p.n; i += nwg.x * 64u) {
        update(p, p.theta_off + i, p.state_off + i, step);
    }
}

// Element i of the parameters and gradients, s of the first state slot, at the loss history's `step`.
fn update(p: Params, i: u32, s: u32, step: u32) {
    let rule = Rule(p.kind, p.lr, p.mu, p.wd, p.beta1w, p.beta2, p.beta2w, p.eps);
    var m = 0.0;
    var v = 0.0;
    if (p.kind != OPTIM_SGD) {
        m = state[s];
    }
    if (p.kind == OPTIM_ADAM) {
        v = state[p.stride + s];
    }
    let u = optimizer_step(rule, theta[i], grad[i], m, v, sched[step]);
    theta[i] = u.w;
    if (p.kind != OPTIM_SGD) {
        state[s] = u.m;
    }
    if (p.kind == OPTIM_ADAM) {
        state[p.stride + s] = u.v;
    }
    if (!u.ok) {
        atomicStore(&losses[step], WEIGHTS_DIVERGED);
    }
}
