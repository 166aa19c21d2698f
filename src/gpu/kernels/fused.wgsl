// Many training steps of a small network in ONE dispatch of ONE workgroup per network, so that a step
// costs no launch and a population's members train side by side (workgroup i trains member i, whose
// settings and offsets in the shared buffers are members[i]). The parameters stay in workgroup memory
// for the whole dispatch and each thread keeps the optimizer state of the parameters it owns
// (i = thread + 256 r) in registers: networks of at most FUSED_MAX_PARAMS values of w1, w2, b1, b2.
// Per step, with barriers between phases:
//   h = f(x w1^T + b1); z2 = h w2^T + b2; o = g(z2), row losses, dz2 (as rows.wgsl);
//   loss history[step] = sum of row losses * loss_scale; dz1 = (dz2 w2) * f'(h);
//   each owner computes its gradient (dw1 = dz1^T x, dw2 = dz2^T h, bias: column sums) and updates
//   its parameter with common.wgsl's optimizer_step. All gradients use the weights before the step.
// Activations live in `scratch`, which the host defines before this source with `scratch_barrier()`,
// the barrier that orders it: global memory touched by this workgroup only (`fused`: a storage binding
// and storageBarrier), or, when they fit, workgroup memory (`fused_local`: workgroupBarrier), which
// spares each phase a round trip through the caches.

// One member's settings, and where its values sit in the shared buffers (offsets in elements).
struct Params {
    n_in: u32, n_hidden: u32, n_out: u32, rows: u32,
    steps: u32, hidden_act: u32, out_act: u32, loss: u32,
    bias_mode: u32, n_trained: u32, kind: u32, n_params: u32,
    lr: f32, mu: f32, wd: f32, beta1w: f32,
    beta2: f32, beta2w: f32, eps: f32, scale: f32,
    loss_scale: f32, x_off: u32, t_off: u32, theta_off: u32,
    state_off: u32, loss_off: u32, sched_off: u32, scratch_off: u32,
}

struct Counter {
    step: u32,
    row: u32,
}

// Parameters each thread owns at most.
const OWN: u32 = (FUSED_MAX_PARAMS + 255u) / 256u;

// Each member's sizes, activations, loss, optimizer, offsets and the number of steps of this dispatch.
@group(0) @binding(0) var<storage, read> members: array<Params>;
// Inputs of the batch (rows, n_in).
@group(0) @binding(1) var<storage, read> x: array<f32>;
// Targets (rows, n_out).
@group(0) @binding(2) var<storage, read> t: array<f32>;
// Parameters [w1 | w2 | b1 | b2]: read at the start, written back at the end.
@group(0) @binding(3) var<storage, read_write> theta: array<f32>;
// Optimizer state, slot s of parameter i at s * n_params + i.
@group(0) @binding(4) var<storage, read_write> state: array<f32>;
// Adam's (step_size, bc2_sqrt) per step of the submission.
@group(0) @binding(5) var<storage, read> sched: array<vec2<f32>>;
// Loss history of the submission.
@group(0) @binding(6) var<storage, read_write> losses: array<f32>;
// Each member's step counter of the submission, advanced by this dispatch.
@group(0) @binding(7) var<storage, read_write> counters: array<Counter>;
// `scratch` (from the host; binding 8 in `fused`): h (rows, n_hidden) | z2 | o | dz2 (rows, n_out each) |
// dz1 (rows, n_hidden) | row losses (rows).

var<workgroup> w: array<f32, FUSED_MAX_PARAMS>;
var<workgroup> sums: array<f32, 256>;
// Set when this step's update made a parameter or optimizer state non-finite (see optim.wgsl).
var<workgroup> diverged: atomic<u32>;

fn bias_of(mode: u32, off: u32, j: u32) -> f32 {
    switch mode {
        case BIAS_PER_NEURON: { return w[off + j]; }
        case BIAS_SHARED: { return w[off]; }
        default: { return 0.0; }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) member: vec3<u32>) {
    // Read-only and indexed by the workgroup, so uniform: the barriers in loops bounded by it are allowed.
    let p = members[member.x];
    let ni = p.n_in;
    let nh = p.n_hidden;
    let no = p.n_out;
    let rows = p.rows;
    let o_w2 = nh * ni;
    let o_b1 = o_w2 + no * nh;
    let o_b2 = o_b1 + bias_len(p.bias_mode, nh);
    let xo = p.x_off;
    let to = p.t_off;
    let s_h = p.scratch_off;
    let s_z2 = s_h + rows * nh;
    let s_o = s_z2 + rows * no;
    let s_dz2 = s_o + rows * no;
    let s_dz1 = s_dz2 + rows * no;
    let s_loss = s_dz1 + rows * nh;

    var m: array<f32, OWN>;
    var v: array<f32, OWN>;
    for (var r = 0u; r < OWN; r++) {
        let i = lid + 256u * r;
        if (i < p.n_params) {
            w[i] = theta[p.theta_off + i];
        }
        if (i < p.n_trained) {
            if (p.kind != OPTIM_SGD) {
                m[r] = state[p.state_off + i];
            }
            if (p.kind == OPTIM_ADAM) {
                v[r] = state[p.state_off + p.n_params + i];
            }
        }
    }
    let step0 = counters[member.x].step;
    let rule = Rule(p.kind, p.lr, p.mu, p.wd, p.beta1w, p.beta2, p.beta2w, p.eps);
    workgroupBarrier();

    for (var s = 0u; s < p.steps; s++) {
        // Hidden layer.
        for (var idx = lid; idx < rows * nh; idx += 256u) {
            let b = idx / nh;
            let j = idx % nh;
            var acc = 0.0;
            for (var i = 0u; i < ni; i++) {
                acc = fma(x[xo + b * ni + i], w[j * ni + i], acc);
            }
            scratch[s_h + idx] = activate(p.hidden_act, acc + bias_of(p.bias_mode, o_b1, j));
        }
        scratch_barrier();
        // Output layer net input.
        for (var idx = lid; idx < rows * no; idx += 256u) {
            let b = idx / no;
            let k = idx % no;
            var acc = 0.0;
            for (var j = 0u; j < nh; j++) {
                acc = fma(scratch[s_h + b * nh + j], w[o_w2 + k * nh + j], acc);
            }
            scratch[s_z2 + idx] = acc + bias_of(p.bias_mode, o_b2, k);
        }
        scratch_barrier();
        // Outputs, row losses and dz2, one thread per row.
        for (var b = lid; b < rows; b += 256u) {
            let base = b * no;
            var loss = 0.0;
            if (p.out_act == ACT_SOFTMAX) {
                var mx = scratch[s_z2 + base];
                for (var k = 1u; k < no; k++) {
                    mx = max(mx, scratch[s_z2 + base + k]);
                }
                var sum = 0.0;
                var mass = 0.0;
                for (var k = 0u; k < no; k++) {
                    let e = exp(scratch[s_z2 + base + k] - mx);
                    scratch[s_o + base + k] = e;
                    sum += e;
                    mass += t[to + base + k];
                }
                let lse = mx + log(sum);
                for (var k = 0u; k < no; k++) {
                    let pk = scratch[s_o + base + k] / sum;
                    let tk = t[to + base + k];
                    scratch[s_o + base + k] = pk;
                    if (tk != 0.0) {
                        loss -= tk * (scratch[s_z2 + base + k] - lse);
                    }
                    scratch[s_dz2 + base + k] = (pk * mass - tk) * p.scale;
                }
            } else {
                for (var k = 0u; k < no; k++) {
                    let zk = scratch[s_z2 + base + k];
                    let ok = activate(p.out_act, zk);
                    let tk = t[to + base + k];
                    scratch[s_o + base + k] = ok;
                    if (p.loss == LOSS_BINARY_CROSS_ENTROPY) {
                        loss += bce(zk, tk);
                        scratch[s_dz2 + base + k] = (ok - tk) * p.scale;
                    } else {
                        let diff = tk - ok;
                        loss += diff * diff;
                        scratch[s_dz2 + base + k] = (ok - tk) * p.scale * derivative(p.out_act, ok);
                    }
                }
                if (p.loss == LOSS_HALF_SSE) {
                    loss *= 0.5;
                }
            }
            scratch[s_loss + b] = loss;
        }
        scratch_barrier();
        // The batch loss, and the hidden delta.
        var part = 0.0;
        for (var b = lid; b < rows; b += 256u) {
            part += scratch[s_loss + b];
        }
        sums[lid] = part;
        for (var idx = lid; idx < rows * nh; idx += 256u) {
            let b = idx / nh;
            let j = idx % nh;
            var acc = 0.0;
            for (var k = 0u; k < no; k++) {
                acc = fma(scratch[s_dz2 + b * no + k], w[o_w2 + k * nh + j], acc);
            }
            scratch[s_dz1 + idx] = acc * derivative(p.hidden_act, scratch[s_h + idx]);
        }
        workgroupBarrier();
        for (var half = 128u; half > 0u; half >>= 1u) {
            if (lid < half) {
                sums[lid] += sums[lid + half];
            }
            workgroupBarrier();
        }
        if (lid == 0u) {
            losses[p.loss_off + step0 + s] = sums[0] * p.loss_scale;
        }
        scratch_barrier();
        // Gradients and updates of the owned parameters; nothing reads w in this phase but its owner.
        let sc = sched[p.sched_off + step0 + s];
        for (var r = 0u; r < OWN; r++) {
            let i = lid + 256u * r;
            if (i >= p.n_trained) {
                break;
            }
            var g = 0.0;
            if (i < o_w2) {
                let j = i / ni;
                let c = i % ni;
                for (var b = 0u; b < rows; b++) {
                    g = fma(scratch[s_dz1 + b * nh + j], x[xo + b * ni + c], g);
                }
            } else if (i < o_b1) {
                let k = (i - o_w2) / nh;
                let j = (i - o_w2) % nh;
                for (var b = 0u; b < rows; b++) {
                    g = fma(scratch[s_dz2 + b * no + k], scratch[s_h + b * nh + j], g);
                }
            } else {
                // A bias: its layer's delta summed over rows, and over neurons too when shared.
                var off = s_dz1;
                var width = nh;
                var j = i - o_b1;
                if (i >= o_b2) {
                    off = s_dz2;
                    width = no;
                    j = i - o_b2;
                }
                if (p.bias_mode == BIAS_SHARED) {
                    for (var e = 0u; e < rows * width; e++) {
                        g += scratch[off + e];
                    }
                } else {
                    for (var b = 0u; b < rows; b++) {
                        g += scratch[off + b * width + j];
                    }
                }
            }
            let u = optimizer_step(rule, w[i], g, m[r], v[r], sc);
            w[i] = u.w;
            m[r] = u.m;
            v[r] = u.v;
            if (!u.ok) {
                atomicStore(&diverged, 1u);
            }
        }
        // The next step overwrites the activations that this phase read, and reads the new w.
        scratch_barrier();
        workgroupBarrier();
        if (lid == 0u && atomicExchange(&diverged, 0u) == 1u) {
            losses[p.loss_off + step0 + s] = bitcast<f32>(WEIGHTS_DIVERGED);
        }
    }

    for (var r = 0u; r < OWN; r++) {
        let i = lid + 256u * r;
        if (i < p.n_params) {
            theta[p.theta_off + i] = w[i];
        }
        if (i < p.n_trained) {
            if (p.kind != OPTIM_SGD) {
                state[p.state_off + i] = m[r];
            }
            if (p.kind == OPTIM_ADAM) {
                state[p.state_off + p.n_params + i] = v[r];
            }
        }
    }
    if (lid == 0u) {
        counters[member.x].step = step0 + p.steps;
        counters[member.x].row += rows * p.steps;
    }
}
