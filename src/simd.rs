//! Code compiled once per instruction set and picked at run time. The wheel targets baseline x86-64,
//! whose vectors are SSE2's two f64 (or four f32); the same loops compiled for AVX2 or AVX-512 run four
//! or eight f64 at a time. A `Kernel` is written once, with every function on its hot path inlined into
//! `run`, and `widest` runs it compiled for the widest set the CPU has.
//!
//! The bits never depend on the choice: Rust does not contract `a * b + c` into a fused multiply-add,
//! and vectorising a loop of independent elementwise operations does not reorder any sum. A test of each
//! user (`every_instruction_set_gives_the_baseline_bits`) checks that on every set the CPU can run.

/// A piece of work to compile per instruction set. `run` must be `#[inline(always)]`, as must every
/// function it calls on the hot path: code not inlined into the wide copies runs with baseline vectors.
pub(crate) trait Kernel {
    type Output;
    fn run(self) -> Self::Output;
}

/// Keeps LLVM's loop vectorizer off the loop it is called in, whose body works on a whole row of fixed
/// length (a value of every lane, a row of a padded matrix). Otherwise it may vectorise the loop across
/// rows, an element of each, with gathers or scatters; each row's operations then become whole vector
/// instructions instead. A compiler fence: it emits no instruction.
#[inline(always)]
#[allow(clippy::inline_always)]
pub(crate) fn whole_rows() {
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Runs `k` compiled for the widest instruction set this CPU has.
#[inline]
pub(crate) fn widest<K: Kernel>(k: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, which is all the function is compiled for.
            return unsafe { avx512(k) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, which is all the function is compiled for.
            return unsafe { avx2(k) };
        }
    }
    k.run()
}

/// `k` compiled for AVX-512F (only to be called on a CPU that has it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn avx512<K: Kernel>(k: K) -> K::Output {
    k.run()
}

/// `k` compiled for AVX2 (only to be called on a CPU that has it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn avx2<K: Kernel>(k: K) -> K::Output {
    k.run()
}

/// `k` compiled for the baseline: what the others must equal.
#[cfg(test)]
pub(crate) fn baseline<K: Kernel>(k: K) -> K::Output {
    k.run()
}
