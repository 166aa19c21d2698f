//! The loops written once over `Backend`, tested once and run on every device: CPU f64, CPU f32 and,
//! with the `gpu` feature, the GPU (skipped without an adapter unless `RUSTBP_REQUIRE_GPU=1`).
#![allow(clippy::unwrap_used, clippy::panic, clippy::float_cmp, clippy::print_stderr)] // tests fail loudly

use super::*;
use crate::activation::Activation;
use crate::network::Bias;
use crate::optim::Optimizer;

/// Writes the test `$test` (a function generic over the backend, given a constructor) once per device.
macro_rules! test_device {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[test]
            fn cpu_f64() {
                super::$test(|c, seed| Some(crate::network::Network::<f64>::new(c, seed).unwrap()));
            }
            #[test]
            fn cpu_f32() {
                super::$test(|c, seed| Some(crate::network::Network::<f32>::new(c, seed).unwrap()));
            }
            #[cfg(feature = "gpu")]
            #[test]
            fn gpu() {
                super::$test(super::gpu);
            }
        }
    )+};
}

test_device!(
    one_fit_call_trains_like_one_call_per_epoch,
    train_is_repeated_train_steps,
    explain_step_changes_the_network_only_when_applied,
    divergence_is_numbered_within_the_call_and_keeps_the_last_finite_step,
    interruption_stops_at_a_completed_step,
    rates_per_epoch_train_like_setting_each_epochs_rate,
    binary_cross_entropy_trains_alike_on_every_device,
);

#[cfg(feature = "gpu")]
fn gpu(config: Config, seed: u64) -> Option<crate::gpu::GpuNetwork> {
    match crate::gpu::GpuNetwork::new(config, seed) {
        Ok(g) => Some(g),
        Err(Error::GpuUnavailable(why)) if std::env::var("RUSTBP_REQUIRE_GPU").as_deref() != Ok("1") => {
            eprintln!("skipped: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn values<T: Scalar>(n: usize, seed: usize) -> Vec<T> {
    (0..n).map(|i| T::of(((i * 37 + seed * 11) % 23) as f64 / 23.0 - 0.4)).collect()
}

fn config() -> Config {
    Config {
        hidden_activation: Activation::Tanh,
        bias: Bias::Shared,
        optimizer: Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.01 },
        ..Config::new(3, 5, 2)
    }
}

fn one_fit_call_trains_like_one_call_per_epoch<B: Backend>(make: impl Fn(Config, u64) -> Option<B>) {
    let (Some(mut a), Some(mut b)) = (make(config(), 1), make(config(), 1)) else { return };
    let (x, y) = (values::<B::T>(7 * 3, 1), values::<B::T>(7 * 2, 2));
    let plan = FitPlan { epochs: 3, batch_size: 3, shuffle: true, first_epoch: 0 };
    let once = a.fit(&x, &y, plan, 9, &mut || true).unwrap();
    let mut each = vec![];
    for epoch in 0..3 {
        each.extend(b.fit(&x, &y, FitPlan { epochs: 1, first_epoch: epoch, ..plan }, 9, &mut || true).unwrap());
    }
    assert_eq!(once, each);
    assert_eq!(a.read_params().unwrap(), b.read_params().unwrap());
    assert_eq!(a.read_state().unwrap(), b.read_state().unwrap());
    // Each epoch's loss is the mean over its samples of the losses its steps measured: the last
    // epoch's three batches (3, 3 and 1 rows) reproduced with train_step, in the same order.
    let (Some(mut c), Some(mut d)) = (make(config(), 1), make(config(), 1)) else { return };
    let plan = FitPlan { epochs: 1, shuffle: false, ..plan };
    let fit = c.fit(&x, &y, plan, 0, &mut || true).unwrap();
    let mut total = 0.0;
    for (start, rows) in [(0, 3), (3, 3), (6, 1)] {
        total +=
            d.train_step(&x[start * 3..(start + rows) * 3], &y[start * 2..(start + rows) * 2]).unwrap() * rows as f64;
    }
    assert_eq!(fit, [total / 7.0]);
    assert_eq!(c.read_params().unwrap(), d.read_params().unwrap());
}

fn train_is_repeated_train_steps<B: Backend>(make: impl Fn(Config, u64) -> Option<B>) {
    let (Some(mut a), Some(mut b)) = (make(config(), 2), make(config(), 2)) else { return };
    let (x, t) = (values::<B::T>(4 * 3, 3), values::<B::T>(4 * 2, 4));
    let losses = a.train(&x, &t, 6, &mut || true).unwrap();
    let steps: Vec<f64> = (0..6).map(|_| b.train_step(&x, &t).unwrap()).collect();
    assert_eq!(losses, steps);
    assert_eq!(a.read_params().unwrap(), b.read_params().unwrap());
    assert_eq!(a.read_state().unwrap().1, 6);
    assert_eq!(a.loss(&x, &t).unwrap(), b.loss(&x, &t).unwrap());
    assert_eq!(a.forward(&x).unwrap(), b.forward(&x).unwrap());
}

fn explain_step_changes_the_network_only_when_applied<B: Backend>(make: impl Fn(Config, u64) -> Option<B>) {
    let cfg = Config { optimizer: Optimizer::adam(0.01), ..config() };
    let (Some(mut a), Some(mut b)) = (make(cfg, 3), make(cfg, 3)) else { return };
    let (x, t) = (values::<B::T>(3, 5), values::<B::T>(2, 6));
    let before = (a.read_params().unwrap(), a.read_state().unwrap());
    let dry = a.explain_step(&x, &t, false).unwrap();
    assert_eq!((a.read_params().unwrap(), a.read_state().unwrap()), before, "a dry run changes nothing");
    let applied = a.explain_step(&x, &t, true).unwrap();
    assert_eq!(dry.loss, applied.loss);
    assert_eq!(dry.params_after, applied.params_after);
    assert_eq!(a.read_params().unwrap(), applied.params_after, "applied: the network takes the step");
    assert_eq!(a.read_state().unwrap().1, 1);
    // The explained step is the CPU's step from the same weights (bit for bit on the CPU).
    let loss = b.train_step(&x, &t).unwrap();
    if b.adapter().is_none() {
        assert_eq!(loss, applied.loss);
        assert_eq!(b.read_params().unwrap(), applied.params_after);
    } else {
        assert!((loss - applied.loss).abs() <= 1e-6 * loss.abs(), "{loss} vs {}", applied.loss);
    }
}

fn divergence_is_numbered_within_the_call_and_keeps_the_last_finite_step<B: Backend>(
    make: impl Fn(Config, u64) -> Option<B>,
) {
    let cfg = Config {
        hidden_activation: Activation::Identity,
        output_activation: Activation::Identity,
        optimizer: Optimizer::Sgd { lr: 1e3, momentum: 0.9, nesterov: false, weight_decay: 0.0 },
        ..Config::new(2, 4, 1)
    };
    let (x, t) = ([3.0, -2.0, 1.0, 0.5].map(B::T::of), [1.0, -1.0].map(B::T::of));
    let Some(mut net) = make(cfg, 0) else { return };
    let Err(Error::Diverged { step, losses, .. }) = net.train(&x, &t, 100, &mut || true) else {
        panic!("must diverge")
    };
    assert!(step > 0);
    assert_eq!(losses.len(), step);
    // The weights are those of `step` finite steps.
    let mut again = make(cfg, 0).unwrap();
    assert_eq!(again.train(&x, &t, step, &mut || true).unwrap(), losses);
    assert_eq!(net.read_params().unwrap(), again.read_params().unwrap());
    assert_eq!(net.read_state().unwrap(), again.read_state().unwrap());
    // In fit, steps count from the call's first, and the losses are those of the completed epochs.
    let mut fit = make(cfg, 0).unwrap();
    let plan = FitPlan { epochs: 100, batch_size: 1, shuffle: false, first_epoch: 0 };
    let Err(Error::Diverged { step, losses, .. }) = fit.fit(&x, &t, plan, 0, &mut || true) else {
        panic!("must diverge")
    };
    assert_eq!(losses.len(), step / 2, "two batches per epoch");
    let mut by_step = make(cfg, 0).unwrap();
    for s in 0..step {
        let r = s % 2;
        by_step.train_step(&x[2 * r..2 * r + 2], &t[r..=r]).unwrap();
    }
    assert_eq!(fit.read_params().unwrap(), by_step.read_params().unwrap());
}

fn interruption_stops_at_a_completed_step<B: Backend>(make: impl Fn(Config, u64) -> Option<B>) {
    let Some(mut net) = make(config(), 4) else { return };
    let (x, t) = (values::<B::T>(3, 7), values::<B::T>(2, 8));
    let mut calls = 0;
    let mut stop_second_time = || {
        calls += 1;
        calls < 2
    };
    // The first run of steps is as long as the network said before it (a GPU sizes later ones by time).
    let first = net.steps_per_poll(1);
    match net.train(&x, &t, 3 * first, &mut stop_second_time) {
        Err(Error::Interrupted { completed }) => {
            assert_eq!(completed, first);
            assert_eq!(net.read_state().unwrap().1, completed as u64);
        }
        other => panic!("{other:?}"),
    }
    let mut never = || false;
    let before = net.read_params().unwrap();
    let plan = FitPlan { epochs: 3, batch_size: 1, shuffle: true, first_epoch: 0 };
    let Err(Error::Interrupted { completed: 0 }) = net.fit(&x, &t, plan, 0, &mut never) else { panic!() };
    assert_eq!(net.read_params().unwrap(), before, "nothing trained before the first question");
}

fn rates_per_epoch_train_like_setting_each_epochs_rate<B: Backend>(make: impl Fn(Config, u64) -> Option<B>) {
    let adam = Config { optimizer: Optimizer::adam(0.05), ..config() };
    for c in [config(), adam] {
        let (Some(mut a), Some(mut b)) = (make(c, 3), make(c, 3)) else { return };
        let (x, y) = (values::<B::T>(7 * 3, 5), values::<B::T>(7 * 2, 6));
        let rates = [0.1, 0.05, 0.025, 0.0125];
        let extras = FitExtras { lrs: &rates, sample_weight: None };
        let plan = FitPlan { epochs: 4, batch_size: 3, shuffle: true, first_epoch: 0 };
        let once = a.fit_with(&x, &y, plan, 9, extras, &mut || true).unwrap();
        let mut each = vec![];
        for (epoch, &lr) in rates.iter().enumerate() {
            b.set_lr(lr).unwrap();
            each.extend(b.fit(&x, &y, FitPlan { epochs: 1, first_epoch: epoch, ..plan }, 9, &mut || true).unwrap());
        }
        assert_eq!(once, each);
        assert_eq!(a.read_params().unwrap(), b.read_params().unwrap());
        assert_eq!(a.read_state().unwrap(), b.read_state().unwrap());
        assert_eq!(a.config().optimizer, b.config().optimizer, "both keep the last epoch's rate");
        let short = FitExtras { lrs: &rates[..2], sample_weight: None };
        assert!(matches!(
            a.fit_with(&x, &y, FitPlan { epochs: 3, ..plan }, 9, short, &mut || true),
            Err(Error::InvalidConfig { arg: "lrs", .. })
        ));
        assert!(matches!(a.set_lr(f64::NAN), Err(Error::InvalidConfig { arg: "lr", .. })));
    }
}

/// Binary cross-entropy's loss and gradient are the same on every device: checked against the CPU's
/// float64 network (on the GPU, through the fused kernel for batches of 6 and the tiled one for 40).
fn binary_cross_entropy_trains_alike_on_every_device<B: Backend>(make: impl Fn(Config, u64) -> Option<B>) {
    let c = Config { loss: crate::loss::Loss::BinaryCrossEntropy, ..config() };
    for rows in [6, 40] {
        let (Some(mut a), Ok(mut reference)) = (make(c, 4), Network::<f64>::new(c, 4)) else { return };
        let x = values::<f64>(rows * 3, 7);
        let t: Vec<f64> = values::<f64>(rows * 2, 8).iter().map(|v| (v + 0.4).clamp(0.0, 1.0)).collect();
        let cast = |v: &[f64]| v.iter().map(|&v| B::T::of(v)).collect::<Vec<_>>();
        let (xa, ta) = (cast(&x), cast(&t));
        let got = a.train(&xa, &ta, 5, &mut || true).unwrap();
        let want = reference.train(&x, &t, 5, &mut || true).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 * w.abs(), "{rows} rows: loss {g} vs {w}");
        }
        for (p, q) in a.read_params().unwrap().iter().zip(reference.read_params().unwrap().iter()) {
            for (&p, &q) in p.iter().zip(q) {
                let p = p.to_f64().unwrap();
                assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{rows} rows: {p} vs {q}");
            }
        }
    }
}
