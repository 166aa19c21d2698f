//! `e^x` for `x <= 0` in straight-line arithmetic that the compiler vectorises. libm's `exp` is a call
//! per element, which made it a third of a training step on a wide sigmoid layer (64-1024-10, batch
//! 1024); this runs 8 or 16 lanes at a time. The sigmoid (`e^-|z|`) and the softmax (`e^(z - max)`)
//! only ever need non-positive arguments, which keeps the range reduction simple.
//!
//! Method (Cephes' `exp` and `expf`): `x = n ln2 + r` with `n = round(x / ln2)` and `ln2` split in two
//! parts so that `r` is exact; `e^r` by a Padé form (f64) or a minimax polynomial (f32); then `2^n` by
//! writing exponent bits, in two halves so that results down to the smallest subnormal come out right.
//! Errors are within 2 ulp of the exact value (tested against libm over the whole range).

/// Adding 1.5 * 2^52 (f64) or 1.5 * 2^23 (f32) rounds to an integer, held in the low mantissa bits.
const MAGIC64: f64 = 6_755_399_441_055_744.0;
const MAGIC32: f32 = 12_582_912.0;

/// `e^x` for `x <= 0` (and NaN for NaN); larger arguments are outside its contract.
#[inline]
#[allow(clippy::excessive_precision, clippy::unreadable_literal)] // Cephes' constants, as published
pub fn exp_nonpos_f64(x: f64) -> f64 {
    // Below this e^x is under half the smallest subnormal: clamp, and the scaling below gives 0.
    let x = if x < -746.0 { -746.0 } else { x };
    let t = x * std::f64::consts::LOG2_E + MAGIC64;
    let n = t - MAGIC64;
    let r = x - n * 6.93145751953125e-1 - n * 1.42860682030941723212e-6;
    let rr = r * r;
    let p = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr + 9.99999999999999999910e-1);
    let q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr + 2.27265548208155028766e-1) * rr
        + 2.00000000000000000009e0;
    let y = 1.0 + 2.0 * p / (q - p);
    let n = t.to_bits().wrapping_sub(MAGIC64.to_bits()) as i64; // n, exactly: |n| <= 1077
    let half = n >> 1;
    y * pow2_f64(half) * pow2_f64(n - half)
}

/// `2^n` for a normal result (-1022 <= n <= 1023).
#[inline]
fn pow2_f64(n: i64) -> f64 {
    f64::from_bits(((n + 1023) as u64) << 52)
}

/// `e^x` for `x <= 0` (and NaN for NaN), in f32.
#[inline]
#[allow(clippy::excessive_precision, clippy::unreadable_literal)]
pub fn exp_nonpos_f32(x: f32) -> f32 {
    let x = if x < -105.0 { -105.0 } else { x };
    let t = x * std::f32::consts::LOG2_E + MAGIC32;
    let n = t - MAGIC32;
    let r = x - n * 0.693359375 - n * -2.12194440e-4;
    let p = ((((1.9875691500e-4 * r + 1.3981999507e-3) * r + 8.3334519073e-3) * r + 4.1665795894e-2) * r
        + 1.6666665459e-1)
        * r
        + 5.0000001201e-1;
    let y = p * r * r + r + 1.0;
    let n = t.to_bits().wrapping_sub(MAGIC32.to_bits()) as i32; // |n| <= 152
    let half = n >> 1;
    y * pow2_f32(half) * pow2_f32(n - half)
}

/// `2^n` for a normal result (-126 <= n <= 127).
#[inline]
fn pow2_f32(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point
mod tests {
    use super::*;

    /// Distance in representable values between two non-negative floats.
    fn ulps64(a: f64, b: f64) -> u64 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn f64_is_within_2_ulp_of_libm_down_to_the_smallest_subnormal() {
        for i in 0..=2_000_000 {
            let x = -746.0 * f64::from(i) / 2e6;
            let (got, want) = (exp_nonpos_f64(x), x.exp());
            assert!(ulps64(got, want) <= 2, "exp({x}) = {got}, libm {want}");
        }
        for x in [0.0, -0.0, -1e-300, -1e-10, -0.5, -1.0, -708.0, -745.0] {
            assert!(ulps64(exp_nonpos_f64(x), x.exp()) <= 2, "{x}");
        }
        assert_eq!(exp_nonpos_f64(0.0), 1.0);
        assert_eq!(exp_nonpos_f64(-800.0), 0.0);
        assert_eq!(exp_nonpos_f64(f64::NEG_INFINITY), 0.0);
        assert!(exp_nonpos_f64(f64::NAN).is_nan());
    }

    #[test]
    fn f32_is_within_2_ulp_of_libm_down_to_the_smallest_subnormal() {
        for i in 0..=2_000_000 {
            let x = -104.0 * i as f32 / 2e6;
            let (got, want) = (exp_nonpos_f32(x), x.exp());
            assert!(got.to_bits().abs_diff(want.to_bits()) <= 2, "exp({x}) = {got}, libm {want}");
        }
        assert_eq!(exp_nonpos_f32(0.0), 1.0);
        assert_eq!(exp_nonpos_f32(-200.0), 0.0);
        assert!(exp_nonpos_f32(f32::NAN).is_nan());
    }
}
