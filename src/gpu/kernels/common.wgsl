// Shared by every kernel (prepended when the module is built, after the constants that gpu::kernels
// generates from the Rust enums: ACT_*, LOSS_*, BIAS_*, OPTIM_*, EPILOGUE_*, TRANS_*, WEIGHTS_DIVERGED):
// activations and their derivatives, with the same formulas as src/activation.rs (softmax is applied
// row by row, in rows.wgsl and fused.wgsl only).

// The logistic function in the form whose exp never overflows.
fn sigmoid(z: f32) -> f32 {
    if (z >= 0.0) {
        return 1.0 / (1.0 + exp(-z));
    }
    let e = exp(z);
    return e / (1.0 + e);
}

// tanh without the cancellation of (1 - e) / (1 + e) near 0, where the continued fraction is used
// instead; drivers' own tanh is often computed that way and loses digits on small inputs.
fn tanh_accurate(z: f32) -> f32 {
    let a = abs(z);
    if (a < 0.625) {
        let z2 = z * z;
        return z / (1.0 + z2 / (3.0 + z2 / (5.0 + z2 / (7.0 + z2 / (9.0 + z2 / 11.0)))));
    }
    let e = exp(-2.0 * a);
    return sign(z) * (1.0 - e) / (1.0 + e);
}

fn activate(act: u32, z: f32) -> f32 {
    switch act {
        case ACT_SIGMOID: { return sigmoid(z); }
        case ACT_TANH: { return tanh_accurate(z); }
        case ACT_RELU: { return max(z, 0.0); }
        default: { return z; }
    }
}

// f'(z) written in terms of the output a = f(z), as backpropagation keeps it.
fn derivative(act: u32, a: f32) -> f32 {
    switch act {
        case ACT_SIGMOID: { return a * (1.0 - a); }
        case ACT_TANH: { return 1.0 - a * a; }
        case ACT_RELU: { return select(0.0, 1.0, a > 0.0); }
        default: { return 1.0; }
    }
}

// One element's binary cross-entropy from its logit z, as src/loss.rs: max(z, 0) - z t + ln(1 + e^-|z|),
// with ln(1 + u) corrected for the rounding of 1 + u, since WGSL has no log1p.
fn bce(z: f32, t: f32) -> f32 {
    let u = exp(-abs(z));
    let v = 1.0 + u;
    var l = u;
    if (v != 1.0) {
        l = log(v) * (u / (v - 1.0));
    }
    return max(z, 0.0) - z * t + l;
}

// torch.lerp(a, b, w): a + w (b - a), evaluated from the nearer end as PyTorch does.
fn lerp_torch(a: f32, b: f32, w: f32) -> f32 {
    if (w < 0.5) {
        return a + w * (b - a);
    }
    return b - (b - a) * (1.0 - w);
}

// Parameter layout in the one `theta` buffer: [w1 | w2 | b1 | b2], so that the trained values are a
// prefix when biases are frozen.
fn bias_len(mode: u32, width: u32) -> u32 {
    switch mode {
        case BIAS_PER_NEURON: { return width; }
        case BIAS_SHARED: { return 1u; }
        default: { return 0u; }
    }
}

// Whether x is neither infinite nor NaN, from its bits: WGSL lets compilers assume floats are finite,
// so comparisons such as x != x may be folded away.
fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// An optimizer and its settings, as optim.wgsl's and fused.wgsl's Params hold them.
struct Rule {
    kind: u32, lr: f32, mu: f32, wd: f32,    // kind: OPTIM_*
    beta1w: f32, beta2: f32, beta2w: f32, eps: f32,    // beta1w = 1 - beta1, beta2w = 1 - beta2
}

// One parameter after one update: its value, momentum buffer or first moment m, second moment v, and
// whether all of them are finite.
struct Update {
    w: f32, m: f32, v: f32, ok: bool,
}

// One optimizer update of parameter w with gradient g, as src/optim.rs:
//   SGD: d = g + wd w; with momentum mu: m = mu m + d, d = d + mu m (Nesterov) or d = m; w -= lr d.
//   Adam: d = g + wd w; m = lerp(m, d, 1 - beta1); v = beta2 v + (1 - beta2) d^2;
//         w += (-step_size m) / (sqrt(v) / bc2_sqrt + eps), with sc = (step_size, bc2_sqrt) computed on
//         the host in f64 for each step: step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t).
fn optimizer_step(r: Rule, w: f32, g: f32, m: f32, v: f32, sc: vec2<f32>) -> Update {
    let d = g + r.wd * w;
    var u = Update(w, m, v, true);
    switch r.kind {
        case OPTIM_SGD: {
            u.w = w - r.lr * d;
        }
        case OPTIM_MOMENTUM, OPTIM_NESTEROV: {
            u.m = m * r.mu + d;
            u.ok = is_finite(u.m);
            u.w = w - r.lr * select(u.m, d + r.mu * u.m, r.kind == OPTIM_NESTEROV);
        }
        default: {
            u.m = lerp_torch(m, d, r.beta1w);
            u.v = v * r.beta2 + r.beta2w * d * d;
            u.ok = is_finite(u.m) && is_finite(u.v);
            u.w = w + (-sc.x * u.m) / (sqrt(u.v) / sc.y + r.eps);
        }
    }
    u.ok = u.ok && is_finite(u.w);
    // State below the smallest normal f32 is kept as zero, as src/optim.rs's `kept` explains.
    u.m = select(u.m, 0.0, abs(u.m) < 1.17549435e-38);
    u.v = select(u.v, 0.0, abs(u.v) < 1.17549435e-38);
    return u;
}
