//! Members trained side by side on the GPU against the same networks trained alone on it: bit for bit,
//! through every path of a group (the fused kernel and the tiled kernels, shared and own batches,
//! activations in workgroup or global memory, several dispatches and submissions, a remainder batch,
//! failures and stops). Skipped without an
//! adapter unless `RUSTBP_REQUIRE_GPU=1`.
#![allow(clippy::unwrap_used, clippy::panic, clippy::float_cmp, clippy::print_stderr)] // tests fail loudly

use super::*;
use crate::activation::Activation;
use crate::backend::FitExtras;
use crate::loss::Loss;
use crate::network::Bias;
use crate::optim::Optimizer;
use crate::population::{gather, Population};

/// Shapes (with batch rows) that reach both fused variants: activations in workgroup memory, and, for the
/// third, in global memory (its fit's remainder batch of 20 rows is local again); then two the fused
/// kernel does not take: too many parameters (3,070), and too many rows (300, with products of 128 x
/// 128 tiles; its fit's remainder batch of 61 rows takes the fused kernel, activations in global memory).
fn shapes() -> Vec<(Config, usize)> {
    let c = |ni, nh, no, hidden, output, loss, bias| Config {
        hidden_activation: hidden,
        output_activation: output,
        loss,
        bias,
        ..Config::new(ni, nh, no)
    };
    let all = vec![
        (c(2, 2, 2, Activation::Sigmoid, Activation::Sigmoid, Loss::HalfSse, Bias::PerNeuron), 1),
        (c(5, 7, 3, Activation::Relu, Activation::Softmax, Loss::CrossEntropy, Bias::PerNeuron), 6),
        (c(16, 16, 8, Activation::Tanh, Activation::Identity, Loss::Mse, Bias::Shared), 100),
        (
            Config {
                train_bias: false,
                ..c(4, 6, 3, Activation::Sigmoid, Activation::Sigmoid, Loss::BinaryCrossEntropy, Bias::PerNeuron)
            },
            3,
        ),
        (c(40, 60, 10, Activation::Relu, Activation::Softmax, Loss::CrossEntropy, Bias::PerNeuron), 8),
        (c(6, 130, 8, Activation::Tanh, Activation::Identity, Loss::Mse, Bias::Shared), 300),
    ];
    assert!(all.iter().enumerate().all(|(k, (c, rows))| fused::fits(c, *rows) == (k < TILED)));
    all
}

/// The first of `shapes` the tiled kernels train.
const TILED: usize = 4;

/// Steps that take several dispatches of the fused kernel, or several of the tiled kernels' steps.
fn some_steps(net: &GpuNetwork, rows: usize) -> usize {
    if net.uses_fused(rows) {
        2 * net.fused_steps_per_dispatch(rows) + 7
    } else {
        9
    }
}

/// Member i's optimizer: plain, momentum, Nesterov with decay and Adam, at rates of their own.
fn optimizer(i: usize) -> Optimizer {
    let lr = 0.02 * (i + 1) as f64;
    match i % 4 {
        0 => Optimizer::sgd(lr),
        1 => Optimizer::Sgd { lr, momentum: 0.9, nesterov: false, weight_decay: 0.0 },
        2 => Optimizer::Sgd { lr, momentum: 0.8, nesterov: true, weight_decay: 0.01 },
        _ => Optimizer::adam(lr / 10.0),
    }
}

/// Five members of shape `c` (the last an Adam that has taken 3 steps already), or None without an adapter.
fn members(c: Config, lr_of: impl Fn(usize) -> Optimizer) -> Option<Vec<GpuNetwork>> {
    let mut all = Vec::new();
    for i in 0..5 {
        match GpuNetwork::new(Config { optimizer: lr_of(i), ..c }, 10 + i as u64) {
            Ok(g) => all.push(g),
            Err(Error::GpuUnavailable(why)) if std::env::var("RUSTBP_REQUIRE_GPU").as_deref() != Ok("1") => {
                eprintln!("skipped: {why}");
                return None;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (x, t) = sample(&c, 2, 99);
    all[4].train(&x, &t, 3, &mut || true).unwrap();
    Some(all)
}

fn sample(c: &Config, rows: usize, seed: usize) -> (Vec<f32>, Vec<f32>) {
    let x = (0..rows * c.n_in).map(|i| ((i * 37 + seed * 11) % 23) as f32 / 23.0 - 0.4).collect();
    let t =
        (0..rows * c.n_out).map(|i| if (i + seed) % c.n_out == (i / c.n_out) % c.n_out { 1.0 } else { 0.0 }).collect();
    (x, t)
}

fn same(a: &GpuNetwork, b: &GpuNetwork, what: &str) {
    assert_eq!(a.read_params().unwrap(), b.read_params().unwrap(), "{what}: parameters");
    assert_eq!(a.read_state().unwrap(), b.read_state().unwrap(), "{what}: optimizer state");
}

#[test]
fn members_train_side_by_side_exactly_as_alone() {
    for ((c, rows), at_once) in shapes().into_iter().flat_map(|s| [(s, false), (s, true)]) {
        let (Some(mut group), Some(mut alone)) = (members(c, optimizer), members(c, optimizer)) else { return };
        let (x, t) = sample(&c, rows, 1);
        // Enough steps for several dispatches: in submissions sized by the pace measured on the way
        // (lavapipe's: a few dispatches each), or, with a pace that fast, in one submission.
        let steps = some_steps(&group[0], rows);
        if at_once {
            group[0].pace = Some(1e-15);
        }
        let mut losses = vec![f64::NAN; 5 * steps];
        let results = GpuNetwork::train_together(&mut group, &x, &t, steps, &mut losses, &mut || true).unwrap();
        for (i, (net, r)) in alone.iter_mut().zip(results).enumerate() {
            r.unwrap();
            let own = net.train(&x, &t, steps, &mut || true).unwrap();
            assert_eq!(losses[i * steps..][..steps], own[..], "{c:?} member {i}: losses");
            same(&group[i], net, &format!("{c:?} member {i}"));
        }
    }
}

#[test]
fn members_fit_side_by_side_exactly_as_alone() {
    for (c, rows) in shapes() {
        let (Some(mut group), Some(mut alone)) = (members(c, optimizer), members(c, optimizer)) else { return };
        // A remainder batch; each member on its own rows, and with its own rate per epoch, in turn.
        let n = 2 * rows + rows / 5 + 1;
        let (x, y) = sample(&c, n + 3, 2);
        let picks: Vec<Vec<usize>> = (0..5).map(|i| (0..n).map(|j| (j * (i + 2) + i) % (n + 3)).collect()).collect();
        let rates: Vec<Vec<f64>> = (1..=5).map(|i| vec![0.01 * f64::from(i), 0.002, 0.005]).collect();
        let plan = FitPlan { epochs: 3, batch_size: rows, shuffle: true, first_epoch: 1 };
        let seeds = [3, 4, 5, 6, 7];
        for (own_rows, lrs) in [(false, None), (true, Some(&rates[..]))] {
            let picked: Vec<&[usize]> = picks.iter().map(Vec::as_slice).collect();
            let data = Data { x: &x, y: &y, weights: None, rows: own_rows.then_some(&picked[..]) };
            let mut losses = vec![f64::NAN; 5 * 3];
            let results =
                GpuNetwork::fit_together(&mut group, data, plan, &seeds, lrs, &mut losses, &mut || true).unwrap();
            for (i, (net, r)) in alone.iter_mut().zip(results).enumerate() {
                r.unwrap();
                let extras = FitExtras { lrs: lrs.map_or(&[][..], |l| &l[i]), sample_weight: None };
                let (xi, yi) = if own_rows {
                    (gather(&x, c.n_in, &picks[i]).unwrap(), gather(&y, c.n_out, &picks[i]).unwrap())
                } else {
                    (x.clone(), y.clone())
                };
                let own = net.fit_with(&xi, &yi, plan, seeds[i], extras, &mut || true).unwrap();
                assert_eq!(losses[i * 3..][..3], own[..], "{c:?} member {i} own rows {own_rows}: losses");
                same(&group[i], net, &format!("{c:?} member {i} own rows {own_rows}"));
                assert_eq!(group[i].config, net.config);
            }
        }
    }
}

#[test]
fn members_evaluate_together_exactly_as_alone() {
    for (c, rows) in shapes() {
        let Some(group) = members(c, optimizer) else { return };
        // Member 1's work buffers grown by a larger batch first: the batch is copied into a part of them.
        let (big, _) = sample(&c, rows + 40, 5);
        group[1].forward(&big).unwrap();
        // The fused kernel's batch, and one past it (the tiled kernels' plan).
        for n in [rows, 300] {
            let (x, t) = sample(&c, n, 3);
            let outputs = GpuNetwork::evaluate_together(&group, &x, None).unwrap().unwrap();
            let losses = GpuNetwork::evaluate_together(&group, &x, Some(&t)).unwrap().unwrap();
            let per = n * c.n_out;
            assert_eq!((outputs.len(), losses.len()), (5 * per, 5), "{c:?} {n} rows");
            for (i, net) in group.iter().enumerate() {
                assert_eq!(outputs[i * per..][..per], net.forward(&x).unwrap()[..], "{c:?} {n} rows: member {i}");
                assert_eq!(f64::from(losses[i]), net.loss(&x, &t).unwrap(), "{c:?} {n} rows: member {i}'s loss");
            }
        }
    }
}

/// Member 2 diverges: a rate no network survives.
fn diverging(i: usize) -> Optimizer {
    if i == 2 {
        Optimizer::sgd(1e30)
    } else {
        optimizer(i)
    }
}

#[test]
fn a_failing_member_fails_as_its_network_does_and_the_others_finish() {
    for (c, rows) in [shapes()[1], shapes()[TILED]] {
        a_failing_member_fails_in(c, rows);
    }
}

fn a_failing_member_fails_in(c: Config, rows: usize) {
    let (Some(mut group), Some(mut alone)) = (members(c, diverging), members(c, diverging)) else { return };
    let (x, t) = sample(&c, rows, 1);
    let mut losses = vec![f64::NAN; 5 * 40];
    let results = GpuNetwork::train_together(&mut group, &x, &t, 40, &mut losses, &mut || true).unwrap();
    for (i, (net, r)) in alone.iter_mut().zip(results).enumerate() {
        let own = net.train(&x, &t, 40, &mut || true);
        match (r, own) {
            (Ok(()), Ok(own)) => assert_eq!(losses[i * 40..][..40], own[..], "member {i}"),
            (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "member {i}"),
            (a, b) => panic!("member {i}: {a:?} side by side, {b:?} alone"),
        }
        same(&group[i], net, &format!("member {i}"));
    }
    let (x, y) = sample(&c, 20, 2);
    let plan = FitPlan { epochs: 3, batch_size: rows, shuffle: true, first_epoch: 0 };
    let (Some(mut group), Some(mut alone)) = (members(c, diverging), members(c, diverging)) else { return };
    let data = Data { x: &x, y: &y, weights: None, rows: None };
    let mut losses = vec![f64::NAN; 5 * 3];
    let results = GpuNetwork::fit_together(&mut group, data, plan, &[1, 2, 3, 4, 5], None, &mut losses, &mut || true);
    for (i, (net, r)) in alone.iter_mut().zip(results.unwrap()).enumerate() {
        let own = net.fit(&x, &y, plan, 1 + i as u64, &mut || true);
        assert!(r.is_err() == (i == 2), "member {i}: {r:?}");
        match (r, own) {
            (Ok(()), Ok(own)) => assert_eq!(losses[i * 3..][..3], own[..], "member {i}"),
            (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "member {i}"),
            (a, b) => panic!("member {i}: {a:?} side by side, {b:?} alone"),
        }
        same(&group[i], net, &format!("member {i}"));
    }
}

#[test]
fn a_stop_reaches_every_member_at_a_whole_step() {
    for (c, rows) in [shapes()[1], shapes()[TILED]] {
        a_stop_reaches_every_member_in(c, rows);
    }
}

fn a_stop_reaches_every_member_in(c: Config, rows: usize) {
    let (Some(mut group), Some(mut alone)) = (members(c, optimizer), members(c, optimizer)) else { return };
    let (x, t) = sample(&c, rows, 1);
    let mut polls = 0;
    let mut losses = vec![f64::NAN; 5 * 100_000];
    let mut keep_going = || {
        polls += 1;
        polls < 3
    };
    let results = GpuNetwork::train_together(&mut group, &x, &t, 100_000, &mut losses, &mut keep_going).unwrap();
    let completed = match &results[0] {
        Err(Error::Interrupted { completed }) => *completed,
        other => panic!("{other:?}"),
    };
    assert!(completed > 0 && completed < 100_000, "{completed}");
    for (i, (net, r)) in alone.iter_mut().zip(results).enumerate() {
        assert!(matches!(r, Err(Error::Interrupted { completed: c }) if c == completed), "member {i}: {r:?}");
        let own = net.train(&x, &t, completed, &mut || true).unwrap();
        assert_eq!(losses[i * 100_000..][..completed], own[..], "member {i}");
        same(&group[i], net, &format!("member {i}"));
    }
    let (x, y) = sample(&c, 50, 2);
    let data = Data { x: &x, y: &y, weights: None, rows: None };
    let plan = FitPlan { epochs: 10_000, batch_size: rows, shuffle: true, first_epoch: 0 };
    let before: Vec<u64> = group.iter().map(|m| m.read_state().unwrap().1).collect();
    let mut polls = 0;
    let mut keep_going = || {
        polls += 1;
        polls < 4
    };
    let mut losses = vec![f64::NAN; 5 * 10_000];
    let results =
        GpuNetwork::fit_together(&mut group, data, plan, &[1, 2, 3, 4, 5], None, &mut losses, &mut keep_going);
    for (i, r) in results.unwrap().into_iter().enumerate() {
        let Err(Error::Interrupted { completed }) = r else { panic!("member {i}: {r:?}") };
        assert!(completed > 0, "member {i}");
        assert_eq!(group[i].read_state().unwrap().1, before[i] + completed as u64, "member {i}");
    }
}

#[test]
fn a_population_on_the_gpu_trains_its_members_side_by_side() {
    let (c, rows) = shapes()[0];
    let (Some(group), Some(mut alone)) = (members(c, optimizer), members(c, optimizer)) else { return };
    // Members too large for the fused kernel train side by side too, as many as the buffers hold.
    assert!(together(&c, rows) >= 5 && together(&Config::new(64, 64, 10), 32) >= 5);
    assert_eq!(together(&Config::new(4096, 4096, 10), 4096), 1);
    let mut pop = Population::new(group).unwrap();
    let (x, t) = sample(&c, rows, 1);
    let losses = pop.train(&x, &t, 500, &mut || true).unwrap();
    // Members 1 and 4 sit out a bagged fit (as early stopping has them); the others fit side by side.
    let (xs, ys) = sample(&c, 9, 2);
    let plan = FitPlan { epochs: 2, batch_size: 4, shuffle: true, first_epoch: 0 };
    let active = [true, false, true, true, false];
    let seeds = [5, 6, 7, 8, 9];
    let picks: Vec<Vec<usize>> = (0..5).map(|i| (0..9).map(|j| (j * (i + 2) + i) % 9).collect()).collect();
    let picked: Vec<&[usize]> = picks.iter().map(Vec::as_slice).collect();
    let data = Data { x: &xs, y: &ys, weights: None, rows: Some(&picked) };
    let fitted = pop.fit(data, plan, &seeds, None, Some(&active), &mut || true).unwrap();
    for (i, net) in alone.iter_mut().enumerate() {
        assert_eq!(losses[i], net.train(&x, &t, 500, &mut || true).unwrap()[..], "member {i}");
        if active[i] {
            let (xi, yi) = (gather(&xs, c.n_in, &picks[i]).unwrap(), gather(&ys, c.n_out, &picks[i]).unwrap());
            assert_eq!(fitted[i], net.fit(&xi, &yi, plan, seeds[i], &mut || true).unwrap()[..], "member {i}");
            // Side by side throughout: never alone, so its own pace was never measured.
            assert!(pop.members()[i].pace.is_none(), "member {i}");
        } else {
            assert!(fitted[i].is_empty());
        }
        same(&pop.members()[i], net, &format!("member {i}"));
    }
}
