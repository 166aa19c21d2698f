//! Optimizers, following `torch.optim.SGD` and `torch.optim.Adam` operation by operation, so that the
//! same start gives the same trajectory as PyTorch in float64. With g the gradient and p the parameter:
//! - SGD: d = g + wd p; with momentum mu: b = mu b + d (no dampening; b starts at 0, so the first b = d),
//!   d = d + mu b (Nesterov) or d = b; then p = p - lr d.
//! - Adam: d = g + wd p (L2, not AdamW); m = lerp(m, d, 1 - beta1); v = beta2 v + (1 - beta2) d^2;
//!   p = p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
//!
//! An update is computed into fresh buffers and committed only if every new value is finite, so a
//! diverging step leaves weights and optimizer state exactly as they were. (The one-sample path writes
//! SGD's update over the old values instead when bounds prove every new value finite; see
//! `Rule::bounds_after`.)

use crate::error::{Error, Result};
use crate::linalg::Scalar;
use crate::simd;
use rayon::prelude::*;

/// Tensors of at least this many values are updated on every rayon thread, in blocks of `CHUNK`. The
/// update is memory-bound and quick, so only large tensors repay waking the threads (at 2^16 a 64-1024-10
/// step at batch 1 took 3x longer threaded).
pub(crate) const PARALLEL: usize = 1 << 19;
const CHUNK: usize = 1 << 14;

/// The most optimizer updates a network can have counted: Adam's bias correction uses the count as an
/// f64, exact up to 2**53 (centuries of steps), and a larger count can only come from a forged state.
pub const MAX_UPDATES: u64 = 1 << 53;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    Sgd { lr: f64, momentum: f64, nesterov: bool, weight_decay: f64 },
    Adam { lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64 },
}

impl Optimizer {
    /// Plain SGD, as in the article.
    pub fn sgd(lr: f64) -> Self {
        Self::Sgd { lr, momentum: 0.0, nesterov: false, weight_decay: 0.0 }
    }

    /// Adam with PyTorch's defaults.
    pub fn adam(lr: f64) -> Self {
        Self::Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }

    /// The same optimizer with learning rate `lr`.
    #[must_use]
    pub fn with_lr(self, lr: f64) -> Self {
        match self {
            Self::Sgd { momentum, nesterov, weight_decay, .. } => Self::Sgd { lr, momentum, nesterov, weight_decay },
            Self::Adam { beta1, beta2, eps, weight_decay, .. } => Self::Adam { lr, beta1, beta2, eps, weight_decay },
        }
    }

    /// Checks every setting against PyTorch's accepted ranges.
    pub fn validate(&self) -> Result<()> {
        let (lr, weight_decay) = match *self {
            Self::Sgd { lr, momentum, nesterov, weight_decay } => {
                in_range("momentum", momentum, "a number in [0, 1)", (0.0..1.0).contains(&momentum))?;
                if nesterov && momentum == 0.0 {
                    return Err(Error::config("nesterov", "momentum > 0 with Nesterov momentum", "momentum = 0"));
                }
                (lr, weight_decay)
            }
            Self::Adam { lr, beta1, beta2, eps, weight_decay } => {
                in_range("betas[0]", beta1, "a number in [0, 1)", (0.0..1.0).contains(&beta1))?;
                in_range("betas[1]", beta2, "a number in [0, 1)", (0.0..1.0).contains(&beta2))?;
                in_range("eps", eps, "a finite number > 0", eps.is_finite() && eps > 0.0)?;
                (lr, weight_decay)
            }
        };
        in_range("lr", lr, "a finite number > 0", lr.is_finite() && lr > 0.0)?;
        in_range("weight_decay", weight_decay, "a finite number >= 0", weight_decay.is_finite() && weight_decay >= 0.0)
    }

    /// Checks optimizer state given from outside (a file, `set_optimizer_state`): every value finite,
    /// Adam's second moments (slot 1) never negative, and an update count the bias correction can use,
    /// so that impossible state is refused where it enters instead of diverging at every step.
    pub fn check_state<T: Scalar>(&self, buffers: &[Vec<T>], updates: u64) -> Result<()> {
        if updates > MAX_UPDATES {
            return Err(Error::config("optimizer_state", format!("an update count <= 2**53 ({MAX_UPDATES})"), updates));
        }
        for (slot, buffer) in buffers.iter().enumerate() {
            if let Some(v) = buffer.iter().find(|v| !v.is_finite()) {
                return Err(Error::config("optimizer_state", "finite values", v.to_f64().unwrap_or(f64::NAN)));
            }
            if matches!(self, Self::Adam { .. }) && slot == 1 {
                if let Some(v) = buffer.iter().find(|v| **v < T::zero()) {
                    let got = v.to_f64().unwrap_or(f64::NAN);
                    return Err(Error::config("optimizer_state", "Adam's exp_avg_sq >= 0 (a mean of squares)", got));
                }
            }
        }
        Ok(())
    }

    /// How many state buffers each parameter needs: momentum (1), Adam's two moments (2), or none.
    pub fn slots(&self) -> usize {
        match *self {
            Self::Sgd { momentum, .. } => usize::from(momentum != 0.0),
            Self::Adam { .. } => 2,
        }
    }

    /// The constants of update number `t` (1-based), converted to `T` once for all parameters.
    pub(crate) fn rule<T: Scalar>(&self, t: u64) -> Rule<T> {
        match *self {
            Self::Sgd { lr, momentum, nesterov, weight_decay } => {
                Rule::Sgd { lr: T::of(lr), mu: T::of(momentum), nesterov, wd: T::of(weight_decay) }
            }
            Self::Adam { lr, beta1, beta2, eps, weight_decay } => Rule::Adam(AdamStep {
                step_size: T::of(lr / (1.0 - beta1.powf(t as f64))),
                bc2_sqrt: T::of((1.0 - beta2.powf(t as f64)).sqrt()),
                b2: T::of(beta2),
                w1: T::of(1.0 - beta1),
                w2: T::of(1.0 - beta2),
                eps: T::of(eps),
                wd: T::of(weight_decay),
            }),
        }
    }
}

/// One update's constants (see `Optimizer::rule`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rule<T> {
    Sgd { lr: T, mu: T, nesterov: bool, wd: T },
    Adam(AdamStep<T>),
}

impl<T: Scalar> Rule<T> {
    /// Updates one parameter tensor. On entry `g` holds the gradient, on return the new parameter
    /// values; `next` receives the new state from `state`. Nothing else is written, so the caller
    /// commits by swapping buffers. Returns whether every new value is finite (on a non-finite value it
    /// may stop early, leaving `g` and `next` partly written: the caller then discards them).
    #[inline(always)]
    #[allow(clippy::inline_always)] // into the tiny step's wide copies (`network::tiny`)
    pub(crate) fn apply(&self, p: &[T], g: &mut [T], state: &[Vec<T>], next: &mut [Vec<T>]) -> bool {
        if p.len() < PARALLEL {
            return match (state, next) {
                ([], []) => self.kernel(p, g, (&[], &[]), (&mut [], &mut [])),
                ([s], [n]) => self.kernel(p, g, (s, &[]), (n, &mut [])),
                ([m, v], [mn, vn]) => self.kernel(p, g, (m, v), (mn, vn)),
                _ => false,
            };
        }
        self.apply_parallel(p, g, state, next)
    }

    /// Out of line, so that `apply` stays small enough to inline into the tiny networks' step.
    /// Elementwise, so chunks on the pool's threads give the same bits as one pass.
    #[inline(never)]
    fn apply_parallel(&self, p: &[T], g: &mut [T], state: &[Vec<T>], next: &mut [Vec<T>]) -> bool {
        crate::threads::install(|| {
            let (ps, gs) = (p.par_chunks(CHUNK), g.par_chunks_mut(CHUNK));
            // Each block compiled per instruction set: work handed to another thread is compiled apart
            // from the wide step that sent it.
            let block = |p, g, state, next| simd::widest(Block { rule: self, p, g, state, next });
            match (state, next) {
                ([], []) => ps.zip(gs).all(|(p, g)| block(p, g, (&[], &[]), (&mut [], &mut []))),
                ([s], [n]) => ps
                    .zip(gs)
                    .zip(s.par_chunks(CHUNK).zip(n.par_chunks_mut(CHUNK)))
                    .all(|((p, g), (s, n))| block(p, g, (s, &[]), (n, &mut []))),
                ([m, v], [mn, vn]) => ps
                    .zip(gs)
                    .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
                    .zip(mn.par_chunks_mut(CHUNK).zip(vn.par_chunks_mut(CHUNK)))
                    .all(|(((p, g), s), n)| block(p, g, s, n)),
                _ => false,
            }
        })
    }

    /// `apply` on one block: `state` and `next` are (momentum buffer, unused) for SGD with momentum,
    /// (m, v) for Adam, and empty for plain SGD.
    #[inline(always)]
    #[allow(clippy::inline_always)] // into the lanes' AVX2/AVX-512 code (`network::lanes`)
    pub(crate) fn kernel(&self, p: &[T], g: &mut [T], state: (&[T], &[T]), next: (&mut [T], &mut [T])) -> bool {
        match *self {
            // With a constant zero, `decayed` folds away and the loops are shorter.
            Self::Sgd { lr, mu, nesterov, wd } if wd == T::zero() => {
                sgd_kernel(p, g, state.0, next.0, (lr, mu, nesterov, T::zero()))
            }
            Self::Sgd { lr, mu, nesterov, wd } => sgd_kernel(p, g, state.0, next.0, (lr, mu, nesterov, wd)),
            Self::Adam(a) => {
                let mut finite = true;
                let ((m, v), (m_next, v_next)) = (state, next);
                for ((((g, &p), (&m, &v)), m_next), v_next) in
                    g.iter_mut().zip(p).zip(m.iter().zip(v)).zip(m_next.iter_mut()).zip(v_next.iter_mut())
                {
                    let (new, m, v) = adam(p, *g, m, v, a);
                    *g = new;
                    *m_next = kept(m);
                    *v_next = kept(v);
                    finite &= g.is_finite() && m.is_finite() && v.is_finite();
                }
                finite
            }
        }
    }

    /// For an update written over the values it reads (as the one-sample path does when it can): bounds
    /// on |value| and |state| after the update, from bounds before it and on |gradient|, when every
    /// value on the way is certain to stay finite (below a sixteenth of T's largest). None otherwise, and
    /// always for Adam, whose division can make a NaN of zeros. Each bound is the exact one with room for
    /// the rounding of the few operations behind it.
    pub(crate) fn bounds_after(&self, (p, s): (f64, f64), g: f64) -> Option<(f64, f64)> {
        let Self::Sgd { lr, mu, nesterov, wd } = *self else { return None };
        let (lr, mu, wd) = (lr.to_f64()?, mu.to_f64()?, wd.to_f64()?);
        let up = |x: f64| x * 1.01;
        let d = up(g + wd * p);
        let (s, step) = if mu == 0.0 {
            (0.0, d)
        } else {
            let b = up(mu * s + d);
            (b, if nesterov { up(d + mu * b) } else { b })
        };
        let p = up(p + lr * step);
        let limit = T::max_value().to_f64()? / 16.0;
        // Comparisons with a NaN are false, so a NaN bound fails too.
        (d < limit && step < limit && s < limit && p < limit).then_some((p, s))
    }
}

/// `Rule::kernel` on one block, compiled per instruction set.
struct Block<'a, T> {
    rule: &'a Rule<T>,
    p: &'a [T],
    g: &'a mut [T],
    state: (&'a [T], &'a [T]),
    next: (&'a mut [T], &'a mut [T]),
}

impl<T: Scalar> simd::Kernel for Block<'_, T> {
    type Output = bool;
    #[inline(always)]
    #[allow(clippy::inline_always)] // see `simd::Kernel`
    fn run(self) -> bool {
        self.rule.kernel(self.p, self.g, self.state, self.next)
    }
}

/// `Rule::kernel` for SGD with (lr, momentum, nesterov, weight decay); `b` and `b_next` (the momentum
/// buffer) empty for plain SGD.
#[inline(always)]
#[allow(clippy::inline_always)] // see `Rule::kernel`
fn sgd_kernel<T: Scalar>(
    p: &[T],
    g: &mut [T],
    b: &[T],
    b_next: &mut [T],
    (lr, mu, nesterov, wd): (T, T, bool, T),
) -> bool {
    let mut finite = true;
    if b.is_empty() {
        for (g, &p) in g.iter_mut().zip(p) {
            *g = sgd(p, *g, lr, wd);
            finite &= g.is_finite();
        }
    } else {
        for (((g, &p), &b), b_next) in g.iter_mut().zip(p).zip(b).zip(b_next.iter_mut()) {
            let (new, b) = momentum(p, *g, b, lr, mu, wd, nesterov);
            *g = new;
            *b_next = kept(b);
            finite &= g.is_finite() && b.is_finite();
        }
    }
    finite
}

/// The gradient `g` of a parameter `p` with weight decay: `g + wd p`, or `g` itself when `wd` is zero,
/// as PyTorch's optimizers skip the term (which changes the sign of a zero, or a NaN for an infinite p).
#[inline(always)]
#[allow(clippy::inline_always)] // into the lanes' AVX2/AVX-512 code (`network::lanes`)
pub(crate) fn decayed<T: Scalar>(g: T, p: T, wd: T) -> T {
    if wd == T::zero() {
        g
    } else {
        g + wd * p
    }
}

/// One parameter's plain SGD update from its value p and gradient g: the new value.
#[inline(always)]
#[allow(clippy::inline_always)] // into the lanes' AVX2/AVX-512 code (`network::lanes`)
pub(crate) fn sgd<T: Scalar>(p: T, g: T, lr: T, wd: T) -> T {
    p - lr * decayed(g, p, wd)
}

/// One parameter's SGD update with momentum buffer b: the new value and the new buffer (not yet `kept`).
#[inline(always)]
#[allow(clippy::inline_always)] // into the lanes' AVX2/AVX-512 code (`network::lanes`)
pub(crate) fn momentum<T: Scalar>(p: T, g: T, b: T, lr: T, mu: T, wd: T, nesterov: bool) -> (T, T) {
    let d = decayed(g, p, wd);
    let b = b * mu + d;
    (p - lr * if nesterov { d + mu * b } else { b }, b)
}

/// The constants of one Adam update (see `Optimizer::rule`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct AdamStep<T> {
    pub step_size: T,
    pub bc2_sqrt: T,
    pub b2: T,
    pub w1: T,
    pub w2: T,
    pub eps: T,
    pub wd: T,
}

/// One parameter's Adam update with moments (m, v): the new value and the new moments (not yet `kept`).
#[inline(always)]
#[allow(clippy::inline_always)] // into the lanes' AVX2/AVX-512 code (`network::lanes`)
pub(crate) fn adam<T: Scalar>(p: T, g: T, m: T, v: T, a: AdamStep<T>) -> (T, T, T) {
    let d = decayed(g, p, a.wd);
    let m = lerp(m, d, a.w1);
    let v = v * a.b2 + a.w2 * d * d;
    (p + (-a.step_size * m) / (v.sqrt() / a.bc2_sqrt + a.eps), m, v)
}

/// A state value as it is kept for the next step: zero below the smallest normal number. A unit whose
/// gradient is zero (a dead ReLU) decays its momentum or moments into the subnormal range, where 0.9
/// times the smallest subnormal rounds back to it: it would stay there for good, and x86 computes with
/// subnormals some hundred times slower (a 32-32-32 step went from 8 to 30 us). PyTorch keeps them; this
/// step's update still uses the exact value, so a weight differs from PyTorch's only where it is itself
/// below about 1e-290 (f64) or 1e-30 (f32).
#[inline(always)]
#[allow(clippy::inline_always)] // into the lanes' AVX2/AVX-512 code (`network::lanes`)
pub(crate) fn kept<T: Scalar>(x: T) -> T {
    if x.abs() < T::min_positive_value() {
        T::zero()
    } else {
        x
    }
}

/// `torch.lerp`: a + w (b - a), evaluated from the nearer end as PyTorch does.
#[inline(always)]
#[allow(clippy::inline_always)] // into the lanes' AVX2/AVX-512 code (`network::lanes`)
fn lerp<T: Scalar>(a: T, b: T, w: T) -> T {
    if w < T::of(0.5) {
        a + w * (b - a)
    } else {
        b - (b - a) * (T::one() - w)
    }
}

fn in_range(arg: &'static str, value: f64, expected: &str, ok: bool) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::config(arg, expected, value))
    }
}

#[cfg(test)]
// Tests fail by panicking, and compare exact values.
#[allow(clippy::panic, clippy::float_cmp, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The bounds of `bounds_after` hold for every value within the bounds before, at every scale up
    /// to the limit, and vouch for finite values only.
    fn bounds_after_hold<T: Scalar>() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(3);
        let max = T::max_value().to_f64().unwrap();
        let (mut vouched, mut refused) = (0, 0);
        for case in 0..20_000 {
            // Magnitudes from 1e-3 to past the limit, on a log scale.
            let mut scale = || max.powf(rng.random::<f64>() * 1.3 - 0.1) * 1e-3;
            let (p, s, g) = (scale(), scale(), scale());
            let lr = [0.5, 10.0, 1e-3][case % 3];
            let (mu, nesterov) = [(0.0, false), (0.9, false), (0.5, true)][case / 3 % 3];
            let wd = [0.0, 0.01][case / 9 % 2];
            let rule = Optimizer::Sgd { lr, momentum: mu, nesterov, weight_decay: wd }.rule::<T>(1);
            let Some((p_after, s_after)) = rule.bounds_after((p, s), g) else {
                refused += 1;
                continue;
            };
            vouched += 1;
            let Rule::Sgd { lr, mu, nesterov, wd } = rule else { unreachable!() };
            // The worst signs: the value and gradient against each other, the state along the gradient.
            for (p, s, g) in [(p, s, g), (p, -s, -g), (-p, s, g), (p, s, -g)] {
                let (p, s, g) = (T::of(p), T::of(s), T::of(g));
                let (new, b) = if mu == T::zero() {
                    (sgd(p, g, lr, wd), T::zero())
                } else {
                    momentum(p, g, s, lr, mu, wd, nesterov)
                };
                let (new, b) = (new.to_f64().unwrap(), b.to_f64().unwrap());
                assert!(new.abs() <= p_after && b.abs() <= s_after, "{rule:?} from {p:?} {s:?} {g:?}: {new} {b}");
                assert!(new.abs() < max / 16.0 && b.abs() < max / 16.0);
            }
        }
        assert!(vouched > 5000 && refused > 1000, "{vouched} vouched, {refused} refused");
        // A NaN or an infinite gradient, and Adam, are never vouched for.
        let sgd = Optimizer::sgd(0.5).rule::<T>(1);
        assert!(sgd.bounds_after((1.0, 0.0), f64::NAN).is_none());
        assert!(sgd.bounds_after((1.0, 0.0), f64::INFINITY).is_none());
        assert!(sgd.bounds_after((f64::NAN, 0.0), 1.0).is_none());
        assert!(Optimizer::adam(0.001).rule::<T>(1).bounds_after((1.0, 1.0), 1.0).is_none());
    }

    #[test]
    fn bounds_after_an_update_hold_in_f64_and_f32() {
        bounds_after_hold::<f64>();
        bounds_after_hold::<f32>();
    }

    fn run(opt: Optimizer, steps: u64) -> Vec<f64> {
        // Minimise f(p) = 1/2 p^2 (gradient p) from p = 1, recording the trajectory.
        let mut p = vec![1.0_f64];
        let mut state = vec![vec![0.0]; opt.slots()];
        let mut next = state.clone();
        let mut path = vec![];
        for t in 1..=steps {
            let mut g = p.clone();
            assert!(opt.rule::<f64>(t).apply(&p, &mut g, &state, &mut next));
            std::mem::swap(&mut p, &mut g);
            std::mem::swap(&mut state, &mut next);
            path.push(p[0]);
        }
        path
    }

    #[test]
    fn sgd_momentum_and_nesterov_follow_pytorch_recurrences() {
        let plain = run(Optimizer::sgd(0.1), 2);
        assert!((plain[0] - 0.9).abs() < 1e-15 && (plain[1] - 0.81).abs() < 1e-15);
        // momentum 0.5: b1 = 1, p1 = 0.9; b2 = 0.5 + 0.9 = 1.4, p2 = 0.9 - 0.14 = 0.76
        let heavy = run(Optimizer::Sgd { lr: 0.1, momentum: 0.5, nesterov: false, weight_decay: 0.0 }, 2);
        assert!((heavy[0] - 0.9).abs() < 1e-15 && (heavy[1] - 0.76).abs() < 1e-15, "{heavy:?}");
        // Nesterov: b1 = 1, d = 1 + 0.5 = 1.5, p1 = 0.85; b2 = 0.5 + 0.85 = 1.35, d = 0.85 + 0.675, p2 = 0.6975
        let nag = run(Optimizer::Sgd { lr: 0.1, momentum: 0.5, nesterov: true, weight_decay: 0.0 }, 2);
        assert!((nag[0] - 0.85).abs() < 1e-15 && (nag[1] - 0.6975).abs() < 1e-15, "{nag:?}");
        // weight decay 1 doubles the gradient of 1/2 p^2
        let wd = run(Optimizer::Sgd { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: 1.0 }, 1);
        assert!((wd[0] - 0.8).abs() < 1e-15);
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        // With bias correction the first Adam step is lr * g / (|g| + eps'), about lr.
        let path = run(Optimizer::adam(0.01), 1);
        assert!((path[0] - (1.0 - 0.01 / (1.0 + 1e-8))).abs() < 1e-12, "{path:?}");
    }

    /// Every optimizer layout: plain SGD (no state), momentum or Nesterov (one buffer), Adam (two).
    fn every_kind() -> [Optimizer; 5] {
        [
            Optimizer::Sgd { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: 0.01 },
            Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0 },
            Optimizer::Sgd { lr: 0.1, momentum: 0.8, nesterov: true, weight_decay: 0.02 },
            Optimizer::Adam { lr: 0.01, beta1: 0.8, beta2: 0.99, eps: 1e-8, weight_decay: 0.01 },
            Optimizer::adam(0.01),
        ]
    }

    #[test]
    fn large_tensors_update_on_threads_exactly_as_one_pass() {
        // From 2^19 values the update runs on rayon's threads in chunks; the last chunk is partial.
        let n = PARALLEL + CHUNK / 3;
        let p: Vec<f64> = (0..n).map(|i| ((i * 7919 % 10007) as f64 / 10007.0) - 0.5).collect();
        let g: Vec<f64> = (0..n).map(|i| ((i * 104_729 % 9973) as f64 / 9973.0) - 0.5).collect();
        for opt in every_kind() {
            let state: Vec<Vec<f64>> =
                (0..opt.slots()).map(|s| p.iter().map(|v| v * 0.1 * (s + 1) as f64).map(f64::abs).collect()).collect();
            let rule = opt.rule::<f64>(3);
            let (mut threaded, mut next) = (g.clone(), vec![vec![0.0; n]; opt.slots()]);
            assert!(rule.apply(&p, &mut threaded, &state, &mut next));
            let (mut serial, mut serial_next) = (g.clone(), vec![vec![0.0; n]; opt.slots()]);
            let (s0, s1) = (state.first().map_or(&[][..], |s| &s[..]), state.get(1).map_or(&[][..], |s| &s[..]));
            let mut it = serial_next.iter_mut();
            let (n0, n1) =
                (it.next().map_or(&mut [][..], |s| &mut s[..]), it.next().map_or(&mut [][..], |s| &mut s[..]));
            assert!(rule.kernel(&p, &mut serial, (s0, s1), (n0, n1)));
            assert!(threaded.iter().zip(&serial).all(|(a, b)| a.to_bits() == b.to_bits()), "{opt:?}: parameters");
            assert!(next == serial_next, "{opt:?}: state");
            // And both are the update itself, written out here for one element in every chunk.
            for i in (0..n).step_by(CHUNK / 2) {
                let want = match opt {
                    Optimizer::Sgd { lr, momentum, nesterov, weight_decay } => {
                        let d = g[i] + weight_decay * p[i];
                        if momentum == 0.0 {
                            p[i] - lr * d
                        } else {
                            let b = momentum * state[0][i] + d;
                            p[i] - lr * if nesterov { d + momentum * b } else { b }
                        }
                    }
                    Optimizer::Adam { lr, beta1, beta2, eps, weight_decay } => {
                        let d = g[i] + weight_decay * p[i];
                        let m = beta1 * state[0][i] + (1.0 - beta1) * d;
                        let v = beta2 * state[1][i] + (1.0 - beta2) * d * d;
                        p[i] - lr * (m / (1.0 - beta1.powi(3))) / ((v / (1.0 - beta2.powi(3))).sqrt() + eps)
                    }
                };
                assert!((threaded[i] - want).abs() < 1e-12, "{opt:?} at {i}: {} vs {want}", threaded[i]);
            }
        }
    }

    #[test]
    fn a_non_finite_update_is_reported_at_any_size() {
        for n in [3, PARALLEL + 1] {
            for opt in every_kind() {
                let rule = opt.rule::<f64>(1);
                let state = vec![vec![0.0; n]; opt.slots()];
                let p = vec![1.0; n];
                for bad in [f64::INFINITY, f64::NAN] {
                    let mut g = vec![0.5; n];
                    g[n - 1] = bad; // the last element: in the last chunk of the threaded path
                    let mut next = state.clone();
                    assert!(!rule.apply(&p, &mut g, &state, &mut next), "{opt:?}, n = {n}, gradient {bad}");
                }
                let (mut g, mut next) = (vec![0.5; n], state.clone());
                assert!(rule.apply(&p, &mut g, &state, &mut next), "{opt:?}, n = {n}: a finite update");
            }
        }
    }

    #[test]
    fn an_overflow_of_only_the_parameter_or_only_the_state_is_caught() {
        let one = |opt: Optimizer, p: f64, g: f64| {
            let state = vec![vec![0.0]; opt.slots()];
            let mut next = state.clone();
            opt.rule::<f64>(1).apply(&[p], &mut [g], &state, &mut next)
        };
        // momentum: b = 1e308 stays finite, p - lr b = -2e308 does not
        assert!(!one(Optimizer::Sgd { lr: 1.0, momentum: 0.5, nesterov: false, weight_decay: 0.0 }, -1e308, 1e308));
        // Adam: a step size of lr / (1 - beta1) = inf overflows the parameter, not the moments
        assert!(!one(Optimizer::Adam { lr: 1e308, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }, 0.0, 1.0));
        // Adam: v = (1 - beta2) g^2 overflows, the parameter moves by lr m / sqrt(v) = 0 and stays finite
        assert!(!one(Optimizer::adam(0.01), 0.5, 1e200));
        assert!(one(Optimizer::adam(0.01), 0.5, 1e100));
    }

    #[test]
    fn adam_follows_pytorch_over_several_steps() {
        // m = lerp(m, g, 1 - b1), v = b2 v + (1 - b2) g^2, p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
        // on f(p) = 1/2 p^2, with weight decay: written out independently of `Rule`.
        let (lr, b1, b2, eps, wd) = (0.1, 0.8, 0.95, 1e-3, 0.05);
        let path = run(Optimizer::Adam { lr, beta1: b1, beta2: b2, eps, weight_decay: wd }, 4);
        let (mut p, mut m, mut v) = (1.0_f64, 0.0, 0.0);
        for (t, got) in path.iter().enumerate() {
            let t = t as i32 + 1;
            let d = p + wd * p;
            m += (1.0 - b1) * (d - m);
            v = b2 * v + (1.0 - b2) * d * d;
            p -= lr / (1.0 - b1.powi(t)) * m / ((v / (1.0 - b2.powi(t))).sqrt() + eps);
            assert!((got - p).abs() < 1e-14, "step {t}: {got} vs {p}");
        }
    }

    #[test]
    fn weight_decay_of_zero_leaves_the_gradient_as_it_is_like_pytorch() {
        // PyTorch adds `wd p` only when wd != 0: the gradient's zero keeps its sign, and an infinite
        // parameter does not make the gradient NaN.
        assert_eq!(super::decayed(-0.0_f64, 1.0, 0.0).to_bits(), (-0.0_f64).to_bits());
        assert_eq!(super::decayed(0.5_f64, f64::INFINITY, 0.0), 0.5);
        assert_eq!(super::decayed(0.5_f64, 2.0, 0.25), 1.0);
        let (_, b) = momentum(0.0_f64, -0.0, -0.0, 0.1, 0.9, 0.0, false);
        assert_eq!(b.to_bits(), (-0.0_f64).to_bits());
    }

    #[test]
    fn lerp_evaluates_from_the_nearer_end_like_pytorch() {
        // The two forms differ in the last bit for these values; torch.lerp takes a + w (b - a) for
        // w < 0.5 and b - (b - a) (1 - w) from 0.5 on.
        let (a, b) = (0.1_f64, 0.7_f64);
        for w in [0.1_f64, 0.3, 0.49] {
            assert_eq!(lerp(a, b, w).to_bits(), (a + w * (b - a)).to_bits(), "w = {w}");
        }
        for w in [0.5_f64, 0.7, 0.999] {
            assert_eq!(lerp(a, b, w).to_bits(), (b - (b - a) * (1.0 - w)).to_bits(), "w = {w}");
        }
        let differ = [0.1_f64, 0.3, 0.49, 0.5, 0.7]
            .iter()
            .filter(|&&w| (a + w * (b - a)).to_bits() != (b - (b - a) * (1.0 - w)).to_bits())
            .count();
        assert_eq!(differ, 5, "the values above tell the two forms apart");
    }

    /// The state after `steps` updates of one parameter with a zero gradient (a dead unit), from `state`,
    /// checking after each that no value is kept below the normal range.
    fn decayed<T: Scalar>(opt: Optimizer, state: Vec<Vec<T>>, steps: u64) -> Vec<Vec<T>> {
        let (p, mut state) = (vec![T::one()], state);
        let mut next = state.clone();
        for t in 1..=steps {
            let mut g = vec![T::zero()];
            assert!(opt.rule::<T>(t).apply(&p, &mut g, &state, &mut next));
            std::mem::swap(&mut state, &mut next);
            for v in state.iter().flatten() {
                assert!(*v == T::zero() || v.is_normal(), "step {t}: {v:?} kept below the normal range");
            }
        }
        state
    }

    fn dead_units_decay_to_zero_not_into_subnormals<T: Scalar>() {
        // Without the rule, 0.9 x the smallest subnormal rounds back to it and the state stays there.
        let sgd = Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0 };
        assert_eq!(decayed::<T>(sgd, vec![vec![T::one()]], 8000), vec![vec![T::zero()]]);
        let nag = Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0 };
        assert_eq!(decayed::<T>(nag, vec![vec![-T::one()]], 8000), vec![vec![T::zero()]]);
        let adam = Optimizer::Adam { lr: 0.1, beta1: 0.5, beta2: 0.5, eps: 1e-8, weight_decay: 0.0 };
        assert_eq!(decayed::<T>(adam, vec![vec![T::one()], vec![T::one()]], 1100), vec![vec![T::zero()]; 2]);
    }

    #[test]
    fn dead_units_decay_to_zero_in_f64_and_f32() {
        dead_units_decay_to_zero_not_into_subnormals::<f64>();
        dead_units_decay_to_zero_not_into_subnormals::<f32>();
    }

    #[test]
    fn state_in_the_normal_range_is_kept_exactly() {
        let tiny = f64::MIN_POSITIVE;
        for x in [tiny, -tiny, 1.5 * tiny, -1.0, 3.0, f64::MAX, f64::NAN] {
            assert_eq!(kept(x).to_bits(), x.to_bits(), "{x:e}");
        }
        for x in [tiny / 2.0, -tiny / 2.0, 5e-324, -5e-324, 0.0] {
            assert_eq!(kept(x), 0.0, "{x:e}");
        }
        assert_eq!(kept(f32::MIN_POSITIVE), f32::MIN_POSITIVE);
        assert_eq!(kept(f32::MIN_POSITIVE / 2.0), 0.0);
    }

    #[test]
    fn plain_and_momentum_sgd_are_valid_and_count_their_state() {
        assert!(Optimizer::sgd(0.1).validate().is_ok());
        assert!(Optimizer::Sgd { lr: 0.1, momentum: 0.5, nesterov: true, weight_decay: 0.0 }.validate().is_ok());
        assert_eq!(Optimizer::sgd(0.1).slots(), 0);
        assert_eq!(Optimizer::Sgd { lr: 0.1, momentum: 0.5, nesterov: false, weight_decay: 0.0 }.slots(), 1);
        assert_eq!(Optimizer::adam(0.1).slots(), 2);
    }

    #[test]
    fn invalid_settings_are_rejected_naming_the_argument() {
        let bad = [
            (Optimizer::sgd(0.0), "lr"),
            (Optimizer::sgd(f64::NAN), "lr"),
            (Optimizer::Sgd { lr: 0.1, momentum: 1.0, nesterov: false, weight_decay: 0.0 }, "momentum"),
            (Optimizer::Sgd { lr: 0.1, momentum: 0.0, nesterov: true, weight_decay: 0.0 }, "nesterov"),
            (Optimizer::Sgd { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: -1.0 }, "weight_decay"),
            (Optimizer::Adam { lr: 0.1, beta1: 1.0, beta2: 0.9, eps: 1e-8, weight_decay: 0.0 }, "betas[0]"),
            (Optimizer::Adam { lr: 0.1, beta1: 0.9, beta2: -0.1, eps: 1e-8, weight_decay: 0.0 }, "betas[1]"),
            (Optimizer::Adam { lr: 0.1, beta1: 0.9, beta2: 0.9, eps: 0.0, weight_decay: 0.0 }, "eps"),
        ];
        for (opt, arg) in bad {
            match opt.validate() {
                Err(Error::InvalidConfig { arg: got, .. }) => assert_eq!(got, arg),
                other => panic!("{opt:?}: {other:?}"),
            }
        }
        assert!(Optimizer::adam(1e-3).validate().is_ok());
    }
}
