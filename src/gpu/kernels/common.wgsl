// Shared by every kernel (prepended when the module is built): activations and their derivatives,
// with the same ids as `gpu::kernels::act_id` and the same formulas as src/activation.rs.
// ids: 0 sigmoid, 1 tanh, 2 relu, 3 identity, 4 softmax (applied row by row in rows.wgsl only).

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
        case 0u: { return sigmoid(z); }
        case 1u: { return tanh_accurate(z); }
        case 2u: { return max(z, 0.0); }
        default: { return z; }
    }
}

// f'(z) written in terms of the output a = f(z), as backpropagation keeps it.
fn derivative(act: u32, a: f32) -> f32 {
    switch act {
        case 0u: { return a * (1.0 - a); }
        case 1u: { return 1.0 - a * a; }
        case 2u: { return select(0.0, 1.0, a > 0.0); }
        default: { return 1.0; }
    }
}

// torch.lerp(a, b, w): a + w (b - a), evaluated from the nearer end as PyTorch does.
fn lerp_torch(a: f32, b: f32, w: f32) -> f32 {
    if (w < 0.5) {
        return a + w * (b - a);
    }
    return b - (b - a) * (1.0 - w);
}

// Parameter layout in the one `theta` buffer: [w1 | w2 | b1 | b2], so that the trained values are a
// prefix when biases are frozen. Bias modes: 0 none, 1 per neuron, 2 shared.
fn bias_len(mode: u32, width: u32) -> u32 {
    switch mode {
        case 1u: { return width; }
        case 2u: { return 1u; }
        default: { return 0u; }
    }
}

// Whether x is neither infinite nor NaN, from its bits: WGSL lets compilers assume floats are finite,
// so comparisons such as x != x may be folded away.
fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Written over a step's loss when its update made a parameter or optimizer state non-finite: a NaN
// whose payload tells the host (gpu::network::WEIGHTS_DIVERGED) that the weights, not the loss, failed.
const WEIGHTS_DIVERGED: u32 = 0x7fc00badu;
