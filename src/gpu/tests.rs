//! GPU against CPU on the same start: needs an adapter (lavapipe will do); without one each test
//! says so and passes, unless `RUSTBP_REQUIRE_GPU=1`, where a missing adapter fails.
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stderr)] // tests fail, and say why, loudly

use super::context::Context;
use super::GpuNetwork;
use crate::activation::Activation;
use crate::backend::Backend;
use crate::error::Error;
use crate::loss::Loss;
use crate::network::{Bias, Config, Network};
use crate::optim::Optimizer;
use std::sync::Arc;

/// The GPU copy of `cpu`, or None (test skipped) when no adapter exists and none is required.
fn gpu_of(cpu: &Network<f32>) -> Option<GpuNetwork> {
    match GpuNetwork::from_cpu(cpu) {
        Ok(g) => Some(g),
        Err(Error::GpuUnavailable(why)) if std::env::var("RUSTBP_REQUIRE_GPU").as_deref() != Ok("1") => {
            eprintln!("skipped: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn close(a: f64, b: f64, rtol: f64, atol: f64) -> bool {
    (a - b).abs() <= atol + rtol * b.abs()
}

#[test]
fn article_net_reaches_the_articles_loss_with_the_fused_kernel() {
    let cpu = Network::<f32>::article();
    let Some(mut gpu) = gpu_of(&cpu) else { return };
    assert!(gpu.uses_fused(1));
    let losses = gpu.train(&[0.05, 0.10], &[0.01, 0.99], 10_000, &mut || true).unwrap();
    assert!((losses[0] - 0.298_371_108_760_002_7).abs() < 1e-6, "{}", losses[0]);
    assert_eq!(losses.len(), 10_000);
    let nz = losses.iter().position(|&l| l == 0.0);
    assert!(nz.is_none(), "{nz:?} {:?}", &losses[..5]);
    assert!((losses[1000] - 0.001_114_349_453_733_746).abs() < 1e-6, "{}", losses[1000]);
    assert!((losses[9999] - 3.510_854_812_251_261e-5).abs() < 1e-6, "{}", losses[9999]);
    let last = gpu.loss(&[0.05, 0.10], &[0.01, 0.99]).unwrap();
    assert!((last - 3.510_187_782_978_859e-5).abs() < 1e-6, "{last}");
}

#[test]
fn tiled_and_fused_paths_match_the_cpu() {
    // Fused: the first two (the second with wide layers of few parameters). Tiled: the rest; the fourth
    // has long k loops (k = batch in dw1); the last reaches the 128 x 128 tiles.
    let cases = [((5, 7, 3), 4), ((100, 4, 60), 7), ((80, 33, 6), 9), ((40, 8, 3), 1500), ((150, 140, 130), 130)];
    for (widths, rows) in cases {
        for opt in [
            Optimizer::sgd(0.1),
            Optimizer::Sgd { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.01 },
            Optimizer::adam(0.01),
        ] {
            if rows > 100 && matches!(opt, Optimizer::Adam { .. }) {
                // Adam amplifies the rounding noise of gradients whose batch sums cancel to +-lr per
                // step, so over large batches it agrees only loosely; the SGDs test these kernels.
                continue;
            }
            let config = Config {
                optimizer: opt,
                hidden_activation: Activation::Tanh,
                loss: Loss::Mse,
                bias: Bias::Shared,
                ..Config::new(widths.0, widths.1, widths.2)
            };
            let mut cpu = Network::<f32>::new(config, 7).unwrap();
            let Some(mut gpu) = gpu_of(&cpu) else { return };
            let x: Vec<f32> = (0..rows * widths.0).map(|i| ((i * 37 % 17) as f32 / 17.0) - 0.5).collect();
            let t: Vec<f32> = (0..rows * widths.2).map(|i| (i * 11 % 5) as f32 / 5.0).collect();
            let a = cpu.train(&x, &t, 20, &mut || true).unwrap();
            let b = gpu.train(&x, &t, 20, &mut || true).unwrap();
            for (a, b) in a.iter().zip(&b) {
                assert!(close(*b, *a, 1e-4, 1e-7), "{widths:?} {opt:?}: {a} vs {b}");
            }
            let gp = gpu.read_params().unwrap();
            for (p, q) in cpu.params().iter().zip(&gp) {
                for (a, b) in p.iter().zip(q) {
                    assert!(close(f64::from(*b), f64::from(*a), 1e-4, 1e-6), "{widths:?} {opt:?}: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn long_fused_runs_are_not_cut_short() {
    // llvmpipe ends loops after 65535 iterations; the dispatches are sized to stay under that.
    let cpu = Network::<f32>::new(Config { bias: Bias::Shared, ..Config::new(32, 32, 32) }, 1).unwrap();
    let Some(mut gpu) = gpu_of(&cpu) else { return };
    let x: Vec<f32> = (0..32 * 256).map(|i| (i % 7) as f32 / 7.0).collect();
    assert!(gpu.uses_fused(256));
    let losses = gpu.train(&x, &x, 300, &mut || true).unwrap();
    assert!(losses.iter().all(|&l| l > 0.0), "{:?}", losses.iter().position(|&l| l == 0.0));
}

#[test]
fn a_lost_device_is_a_clear_error_and_the_cpu_keeps_working() {
    let mut cpu = Network::<f32>::article();
    if gpu_of(&cpu).is_none() {
        return;
    }
    // A device of its own, so that losing it cannot disturb the tests sharing the process's context.
    let ctx = Arc::new(Context::new(None).unwrap());
    let mut gpu = GpuNetwork::on(&ctx, &cpu).unwrap();
    let (x, t) = ([0.05, 0.10], [0.01, 0.99]);
    gpu.train(&x, &t, 3, &mut || true).unwrap();
    ctx.device.destroy();
    let results =
        [gpu.train(&x, &t, 3, &mut || true).map(|_| ()), gpu.forward(&x).map(|_| ()), gpu.read_params().map(|_| ())];
    for r in results {
        match r {
            Err(Error::Gpu { message, .. }) => assert!(message.contains("lost"), "{message}"),
            other => panic!("expected a device-lost error, got {other:?}"),
        }
    }
    assert_eq!(cpu.train(&x, &t, 3, &mut || true).unwrap().len(), 3);
    // The shared context is untouched: new GPU networks still train.
    assert_eq!(gpu_of(&cpu).unwrap().train(&x, &t, 3, &mut || true).unwrap().len(), 3);
}
