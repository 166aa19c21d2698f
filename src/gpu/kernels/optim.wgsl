// One optimizer update of the trained prefix theta[0 .. n] from the gradients, as src/optim.rs:
//   SGD: d = g + wd p; with momentum mu: b = mu b + d, d = d + mu b (Nesterov) or d = b; p -= lr d.
//   Adam: d = g + wd p; m = lerp(m, d, 1 - beta1); v = beta2 v + (1 - beta2) d^2;
//         p += (-step_size m) / (sqrt(v) / bc2_sqrt + eps), with step_size = lr / (1 - beta1^t) and
//         bc2_sqrt = sqrt(1 - beta2^t) computed on the host in f64 for each step (`sched`).
// State slots live in one buffer: slot s of element i at s * stride + i.

struct Params {
    n: u32, kind: u32, stride: u32, _pad: u32,   // kind: 0 sgd, 1 momentum, 2 nesterov, 3 adam
    lr: f32, mu: f32, wd: f32, beta1w: f32,      // beta1w = 1 - beta1
    beta2: f32, beta2w: f32, eps: f32, _pad1: f32,
}

struct Counter {
    step: u32,
    row: u32,
}

// Settings.
@group(0) @binding(0) var<uniform> p: Params;
// Parameters, updated in place.
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
// Gradients, same layout.
@group(0) @binding(2) var<storage, read> grad: array<f32>;
// Momentum buffer, or Adam's two moments.
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
// Adam's (step_size, bc2_sqrt) for each step of the submission.
@group(0) @binding(4) var<storage, read> sched: array<vec2<f32>>;
// Which step of the submission this is.
@group(0) @binding(5) var<storage, read> counter: Counter;
// Loss history of the submission, as bits: an update with a non-finite result marks its step.
@group(0) @binding(6) var<storage, read_write> losses: array<atomic<u32>>;

// A grid-stride loop: a network may have more parameters than one dispatch dimension holds threads.
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.n; i += nwg.x * 64u) {
        update(i);
    }
}

fn update(i: u32) {
    let w = theta[i];
    let d = grad[i] + p.wd * w;
    var ok = true;
    switch p.kind {
        case 0u: {
            theta[i] = w - p.lr * d;
        }
        case 1u, 2u: {
            let b = state[i] * p.mu + d;
            state[i] = b;
            ok = is_finite(b);
            theta[i] = w - p.lr * select(b, d + p.mu * b, p.kind == 2u);
        }
        default: {
            let s = sched[counter.step];
            let m = lerp_torch(state[i], d, p.beta1w);
            let v = state[p.stride + i] * p.beta2 + p.beta2w * d * d;
            state[i] = m;
            state[p.stride + i] = v;
            ok = is_finite(m) && is_finite(v);
            theta[i] = w + (-s.x * m) / (sqrt(v) / s.y + p.eps);
        }
    }
    if (!(ok && is_finite(theta[i]))) {
        atomicStore(&losses[counter.step], WEIGHTS_DIVERGED);
    }
}
