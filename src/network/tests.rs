//! The article's numbers, finite-difference gradient checks, f32 vs f64, and the training contract.

// Tests fail by panicking and compare exact values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::float_cmp, clippy::needless_range_loop)]

use super::*;
use crate::backend::{Backend, FitPlan};

const X: [f64; 2] = [0.05, 0.10];
const T: [f64; 2] = [0.01, 0.99];

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol, "{what}: got {got:e}, want {want:e}");
}

fn no_stop() -> impl FnMut() -> bool {
    || true
}

#[test]
fn article_forward_pass_gradients_and_first_update() {
    let mut net = Network::<f64>::article();
    let trace = net.explain_step(&X, &T, true).unwrap();
    close(trace.net_hidden[0], 0.3775, 1e-12, "net_h1");
    close(trace.net_hidden[1], 0.3925, 1e-12, "net_h2");
    close(trace.out_hidden[0], 0.593_269_992_107_187_2, 1e-12, "out_h1");
    close(trace.out_hidden[1], 0.596_884_378_259_767, 1e-12, "out_h2");
    close(trace.net_output[0], 1.105_905_967_059_77, 1e-12, "net_o1");
    close(trace.net_output[1], 1.224_921_404_096_465_3, 1e-12, "net_o2");
    close(trace.out_output[0], 0.751_365_069_552_315_7, 1e-12, "out_o1");
    close(trace.out_output[1], 0.772_928_465_321_462_5, 1e-12, "out_o2");
    close(trace.loss, 0.298_371_108_760_002_7, 1e-12, "E_total");
    let grads = [
        0.000_438_567_734_474_346_5,
        0.000_877_135_468_948_693,
        0.000_497_712_735_260_859_9,
        0.000_995_425_470_521_719_8,
        0.082_167_040_564_230_77,
        0.082_667_627_847_533_25,
        -0.022_602_540_477_475_07,
        -0.022_740_242_215_978_222,
    ];
    let got: Vec<f64> = trace.grads[W1].iter().chain(&trace.grads[W2]).copied().collect();
    for (i, (&g, &w)) in got.iter().zip(&grads).enumerate() {
        close(g, w, 1e-12, &format!("dE/dw{}", i + 1));
    }
    assert!(trace.grads[B1].is_empty() && trace.grads[B2].is_empty(), "the article's biases are frozen");
    let after = [
        0.149_780_716_132_762_8,
        0.199_561_432_265_525_67,
        0.249_751_143_632_369_58,
        0.299_502_287_264_739_15,
        0.358_916_479_717_884_65,
        0.408_666_186_076_233_4,
        0.511_301_270_238_737_5,
        0.561_370_121_107_989_1,
    ];
    let got: Vec<f64> = net.params()[W1].iter().chain(&net.params()[W2]).copied().collect();
    for (i, (&g, &w)) in got.iter().zip(&after).enumerate() {
        close(g, w, 1e-12, &format!("w{} after one step", i + 1));
    }
    assert_eq!(net.params()[B1], vec![0.35]);
    assert_eq!(net.params()[B2], vec![0.60]);
    close(net.loss(&X, &T).unwrap(), 0.291_027_773_693_599_33, 1e-12, "E_total after one step");
}

#[test]
fn article_ten_thousand_steps() {
    let mut net = Network::<f64>::article();
    let losses = net.train(&X, &T, 10_000, &mut no_stop()).unwrap();
    let every_1000 = [
        (0, 0.298_371_108_760_002_7),
        (1000, 0.001_114_349_453_733_746),
        (2000, 0.000_444_867_703_913_268_87),
        (3000, 0.000_251_523_602_410_994_05),
        (4000, 0.000_164_277_273_632_255_36),
        (5000, 0.000_116_225_699_437_936_22),
        (6000, 8.653_979_465_934_606e-5),
        (7000, 6.676_957_838_285_888e-5),
        (8000, 5.288_555_201_099_971e-5),
        (9000, 4.274_228_425_554_508_5e-5),
        (9999, 3.510_854_812_251_261e-5),
    ];
    for (step, want) in every_1000 {
        close(losses[step], want, 1e-12, &format!("E_total at step {step}"));
    }
    close(net.loss(&X, &T).unwrap(), 3.510_187_782_978_859e-5, 1e-12, "final E_total");
    let out = net.forward(&X).unwrap();
    close(out[0], 0.015_913_620_443_550_68, 1e-12, "final out_o1");
    close(out[1], 0.984_064_273_514_623_8, 1e-12, "final out_o2");
}

/// A small deterministic generator for test data.
fn data(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| 2.0 * rng.random::<f64>() - 1.0).collect()
}

fn targets(loss: Loss, batch: usize, n_out: usize, seed: u64) -> Vec<f64> {
    let raw = data(batch * n_out, seed);
    match loss {
        // probability rows, so that the general p * sum(t) - t gradient is exercised
        Loss::CrossEntropy => raw
            .chunks(n_out)
            .flat_map(|r| {
                let e: Vec<f64> = r.iter().map(|v| v.exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(move |v| v / s)
            })
            .collect(),
        _ => raw.iter().map(|v| 0.5 + 0.4 * v).collect(),
    }
}

#[test]
fn gradients_match_central_finite_differences() {
    let hidden = [Activation::Sigmoid, Activation::Tanh, Activation::Relu, Activation::Identity];
    let outputs = [
        (Activation::Sigmoid, Loss::HalfSse),
        (Activation::Tanh, Loss::Mse),
        (Activation::Identity, Loss::HalfSse),
        (Activation::Relu, Loss::Mse),
        (Activation::Softmax, Loss::CrossEntropy),
        (Activation::Sigmoid, Loss::BinaryCrossEntropy),
    ];
    let mut case = 0_u64;
    for &hidden_activation in &hidden {
        for &(output_activation, loss) in &outputs {
            for bias in [Bias::PerNeuron, Bias::Shared, Bias::None] {
                case += 1;
                let widths = data(3, case).iter().map(|v| 1 + ((v + 1.0) * 4.0) as usize).collect::<Vec<_>>();
                let (n_in, n_hidden, n_out) = (widths[0], widths[1], widths[2].max(2));
                let config =
                    Config { hidden_activation, output_activation, loss, bias, ..Config::new(n_in, n_hidden, n_out) };
                let batch = 3;
                let mut net = Network::<f64>::new(config, case).unwrap();
                let x = data(batch * n_in, 100 + case);
                let t = targets(loss, batch, n_out, 200 + case);
                net.forward_train(&x, batch);
                net.backward(&x, &t, batch);
                let analytic = net.grads.clone();
                for i in 0..4 {
                    for j in 0..net.params[i].len() {
                        let h = 1e-6;
                        let mut probe = net.clone();
                        probe.params[i][j] += h;
                        let up = probe.loss(&x, &t).unwrap();
                        probe.params[i][j] -= 2.0 * h;
                        let down = probe.loss(&x, &t).unwrap();
                        let numeric = (up - down) / (2.0 * h);
                        let a = analytic[i][j];
                        let err = (numeric - a).abs() / a.abs().max(numeric.abs()).max(1e-3);
                        assert!(
                            err < 1e-6,
                            "{hidden_activation}/{output_activation}/{loss}/{bias} {n_in}-{n_hidden}-{n_out} {}[{j}]: \
                             analytic {a:e} numeric {numeric:e}",
                            PARAM_NAMES[i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn float32_agrees_with_float64() {
    let config = Config { hidden_activation: Activation::Tanh, ..Config::new(5, 7, 3) };
    let mut n64 = Network::<f64>::new(config, 7).unwrap();
    let mut n32 = Network::<f32>::new(config, 7).unwrap();
    for (a, b) in n64.params().iter().zip(n32.params()) {
        assert!(a.iter().zip(b).all(|(&a, &b)| a as f32 == b), "f32 weights are the f64 ones rounded");
    }
    let x = data(4 * 5, 1);
    let t = targets(Loss::HalfSse, 4, 3, 2);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let t32: Vec<f32> = t.iter().map(|&v| v as f32).collect();
    let l64 = n64.train(&x, &t, 50, &mut no_stop()).unwrap();
    let l32 = n32.train(&x32, &t32, 50, &mut no_stop()).unwrap();
    for (a, b) in l64.iter().zip(&l32) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{a} vs {b}");
    }
    for (a, b) in n64.params().iter().zip(n32.params()) {
        for (&a, &b) in a.iter().zip(b) {
            assert!((a - f64::from(b)).abs() < 1e-5, "{a} vs {b}");
        }
    }
}

#[test]
fn same_seed_same_weights_and_pytorch_init_bounds() {
    let config = Config::new(16, 9, 4);
    let a = Network::<f64>::new(config, 42).unwrap();
    let b = Network::<f64>::new(config, 42).unwrap();
    let c = Network::<f64>::new(config, 43).unwrap();
    assert_eq!(a.params(), b.params());
    assert_ne!(a.params(), c.params());
    for (i, p) in a.params().iter().enumerate() {
        let bound = 1.0 / if i < 2 { 16.0_f64 } else { 9.0 }.sqrt();
        assert!(p.iter().all(|v| v.abs() < bound), "{} within +-{bound}", PARAM_NAMES[i]);
        assert!(p.iter().any(|v| v.abs() > bound / 2.0), "{} spreads over its range", PARAM_NAMES[i]);
    }
}

#[test]
fn fit_covers_every_sample_and_reduces_loss() {
    let config = Config { optimizer: Optimizer::sgd(1.0), ..Config::new(3, 8, 2) };
    let x = data(50 * 3, 5);
    let y: Vec<f64> =
        x.chunks(3).flat_map(|r| [f64::from(u8::from(r[0] > 0.0)), f64::from(u8::from(r[1] > r[2]))]).collect();
    let mut net = Network::<f64>::new(config, 1).unwrap();
    let plan = FitPlan { epochs: 200, batch_size: 8, shuffle: true, first_epoch: 0 };
    let losses = net.fit(&x, &y, plan, 3, &mut no_stop()).unwrap();
    assert_eq!(losses.len(), 200);
    assert!(losses[199] < 0.5 * losses[0], "{} -> {}", losses[0], losses[199]);
    assert_eq!(net.updates, 200 * 7, "50 samples in batches of 8 make 7 steps per epoch");
    // Without shuffling, one epoch with the whole set as one batch is exactly one train step.
    let mut a = Network::<f64>::new(config, 1).unwrap();
    let mut b = a.clone();
    let plan = FitPlan { epochs: 1, batch_size: 50, shuffle: false, first_epoch: 0 };
    let fit = a.fit(&x, &y, plan, 0, &mut no_stop()).unwrap();
    let step = b.train_step(&x, &y).unwrap();
    assert_eq!(fit, vec![step]);
    assert_eq!(a.params(), b.params());
}

#[test]
fn divergence_keeps_the_last_finite_weights_and_state() {
    let config = Config {
        hidden_activation: Activation::Identity,
        output_activation: Activation::Identity,
        optimizer: Optimizer::Sgd { lr: 1e3, momentum: 0.9, nesterov: false, weight_decay: 0.0 },
        ..Config::new(2, 4, 1)
    };
    let mut net = Network::<f32>::new(config, 0).unwrap();
    let (x, t) = ([3.0_f32, -2.0], [1.0_f32]);
    let mut snapshots = vec![];
    let err = loop {
        snapshots.push(net.clone());
        if let Err(e) = net.train_step(&x, &t) {
            break e;
        }
        assert!(snapshots.len() < 100, "must diverge");
    };
    assert!(matches!(err, Error::Diverged { .. }), "{err:?}");
    let last = snapshots.last().unwrap();
    assert_eq!(net.params(), last.params());
    assert_eq!(net.optimizer_state(), last.optimizer_state());
    assert!(net.params().iter().flatten().all(|v| v.is_finite()));
    // In a loop, the error carries the step and the losses before it.
    let mut again = Network::<f32>::new(config, 0).unwrap();
    match again.train(&x, &t, 100, &mut no_stop()) {
        Err(Error::Diverged { step, losses, .. }) => {
            assert_eq!(step, snapshots.len() - 1);
            assert_eq!(losses.len(), step);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(again.params(), last.params());
    assert_eq!(again.optimizer_state(), last.optimizer_state());
    assert_eq!(again.updates, last.updates);
}

#[test]
fn interruption_stops_at_a_completed_step() {
    let mut net = Network::<f64>::article();
    let mut calls = 0;
    let mut stop_second_time = || {
        calls += 1;
        calls < 2
    };
    match net.train(&X, &T, 100_000_000, &mut stop_second_time) {
        Err(Error::Interrupted { completed }) => assert_eq!(net.updates, completed as u64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_configuration_and_inputs_are_errors_naming_the_argument() {
    let arg_of = |r: Result<Network<f64>>| match r {
        Err(Error::InvalidConfig { arg, .. }) => arg,
        Err(Error::OutOfMemory { .. }) => "memory",
        other => panic!("{other:?}"),
    };
    assert_eq!(arg_of(Network::new(Config::new(0, 2, 2), 0)), "n_in");
    assert_eq!(
        arg_of(Network::new(Config { loss: Loss::CrossEntropy, ..Config::new(2, 2, 2) }, 0)),
        "output_activation"
    );
    assert_eq!(
        arg_of(Network::new(Config { output_activation: Activation::Softmax, ..Config::new(2, 2, 2) }, 0)),
        "loss"
    );
    let bce = Config { loss: Loss::BinaryCrossEntropy, ..Config::new(2, 2, 2) };
    assert_eq!(arg_of(Network::new(Config { output_activation: Activation::Tanh, ..bce }, 0)), "output_activation");
    assert_eq!(arg_of(Network::new(Config { output_activation: Activation::Softmax, ..bce }, 0)), "loss");
    assert_eq!(
        arg_of(Network::new(Config { hidden_activation: Activation::Softmax, ..Config::new(2, 2, 2) }, 0)),
        "hidden_activation"
    );
    assert_eq!(arg_of(Network::new(Config::new(1 << 20, 1 << 20, 2), 0)), "memory");

    let mut net = Network::<f64>::article();
    assert!(matches!(net.forward(&[1.0, 2.0, 3.0]), Err(Error::ShapeMismatch { arg: "X", .. })));
    assert!(matches!(net.train_step(&X, &[1.0]), Err(Error::ShapeMismatch { arg: "T", .. })));
    match net.forward(&[1.0, 2.0, 3.0, f64::NAN]) {
        Err(Error::NonFinite { arg: "X", position, .. }) => assert_eq!(position, "[1, 1]"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        net.fit(&X, &T, FitPlan { epochs: 1, batch_size: 0, shuffle: true, first_epoch: 0 }, 0, &mut no_stop()),
        Err(Error::InvalidConfig { arg: "batch_size", .. })
    ));
    assert_eq!(net.updates, 0, "nothing trained on bad input");
}

/// `steps` steps of the batched path on one sample, as the network took them before the one-sample path.
fn batched_steps<T: Scalar>(net: &mut Network<T>, x: &[T], t: &[T], steps: usize) -> Vec<f64> {
    net.reserve(1).unwrap();
    (0..steps)
        .map(|_| {
            net.forward_train(x, 1);
            let loss = net.backward(x, t, 1);
            net.update(loss).unwrap();
            loss
        })
        .collect()
}

/// Shapes of every padded size (2, 4, 8, 16, 32), with widths below, at and between the sizes.
const ONE_SAMPLE_SHAPES: [(usize, usize, usize); 7] =
    [(1, 1, 1), (2, 2, 2), (3, 4, 2), (3, 5, 4), (16, 9, 7), (17, 32, 5), (32, 20, 32)];

fn one_sample_matches_batched<T: Scalar>() {
    let mut case = 500_u64;
    let of = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::of).collect() };
    for (hidden_activation, output_activation, loss) in [
        (Activation::Sigmoid, Activation::Sigmoid, Loss::HalfSse),
        (Activation::Tanh, Activation::Identity, Loss::Mse),
        (Activation::Relu, Activation::Softmax, Loss::CrossEntropy),
        (Activation::Identity, Activation::Sigmoid, Loss::BinaryCrossEntropy),
    ] {
        for (bias, train_bias) in
            [(Bias::PerNeuron, true), (Bias::Shared, true), (Bias::PerNeuron, false), (Bias::None, true)]
        {
            for optimizer in [
                Optimizer::sgd(0.3),
                Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.01 },
                Optimizer::adam(0.01),
            ] {
                case += 1;
                let (n_in, n_hidden, n_out) = ONE_SAMPLE_SHAPES[case as usize % ONE_SAMPLE_SHAPES.len()];
                let config = Config {
                    hidden_activation,
                    output_activation,
                    loss,
                    bias,
                    train_bias,
                    optimizer,
                    ..Config::new(n_in, n_hidden, n_out)
                };
                let mut fast = Network::<T>::new(config, case).unwrap();
                let mut slow = fast.clone();
                let x = of(data(n_in, case));
                let t = of(targets(loss, 1, n_out, case + 1));
                // Single steps, then a run of steps: both take the one-sample path.
                let mut got = vec![];
                for _ in 0..3 {
                    assert!(fast.is_tiny(1));
                    got.push(fast.train_step(&x, &t).unwrap());
                }
                got.extend(fast.train(&x, &t, 6, &mut no_stop()).unwrap());
                let want = batched_steps(&mut slow, &x, &t, 9);
                let bits = |v: &[f64]| v.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{config:?}");
                assert_eq!(fast.params(), slow.params(), "{config:?}");
                assert_eq!(fast.optimizer_state(), slow.optimizer_state(), "{config:?}");
            }
        }
    }
}

#[test]
fn the_one_sample_path_sees_parameters_and_state_set_between_its_runs() {
    // It keeps a padded copy of the network between runs: every other way of writing the network must
    // reach the next run.
    let config = Config { optimizer: Optimizer::adam(0.05), ..Config::new(3, 5, 2) };
    let (x, t) = ([0.3, -0.7, 0.2], [0.2, 0.9]);
    let mut fast = Network::<f64>::new(config, 1).unwrap();
    let mut slow = fast.clone();
    let other = Network::<f64>::new(config, 2).unwrap();
    let (state, updates) = other.optimizer_state();
    let mut got = fast.train(&x, &t, 3, &mut no_stop()).unwrap();
    let mut want = batched_steps(&mut slow, &x, &t, 3);
    // Each write alone, then a run.
    for params in [true, false] {
        let write = |net: &mut Network<f64>| {
            if params {
                net.set_params(other.params().clone()).unwrap();
            } else {
                net.set_optimizer_state(state.clone(), updates).unwrap();
            }
        };
        write(&mut fast);
        write(&mut slow);
        got.extend(fast.train(&x, &t, 2, &mut no_stop()).unwrap());
        want.extend(batched_steps(&mut slow, &x, &t, 2));
    }
    // A step of the batched path (a batch of two rows) in between, on both.
    let (x2, t2) = ([x, x].concat(), [t, t].concat());
    got.push(fast.train_step(&x2, &t2).unwrap());
    want.push(slow.train_step(&x2, &t2).unwrap());
    got.push(fast.train_step(&x, &t).unwrap());
    want.extend(batched_steps(&mut slow, &x, &t, 1));
    assert_eq!(got, want);
    assert_eq!(fast.params(), slow.params());
    assert_eq!(fast.optimizer_state(), slow.optimizer_state());
}

#[test]
fn one_sample_path_is_bit_identical_to_the_batched_path() {
    one_sample_matches_batched::<f64>();
    one_sample_matches_batched::<f32>();
}

/// Three settings that between them take every kind of step: the article's (sigmoid, half_sse, plain
/// SGD), a classifier's (ReLU, softmax cross-entropy, SGD with Nesterov momentum and weight decay) and a
/// regression's (tanh, identity, MSE, Adam).
pub(super) fn three_settings() -> [(Activation, Activation, Loss, Optimizer); 3] {
    [
        (Activation::Sigmoid, Activation::Sigmoid, Loss::HalfSse, Optimizer::sgd(0.5)),
        (
            Activation::Relu,
            Activation::Softmax,
            Loss::CrossEntropy,
            Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.01 },
        ),
        (Activation::Tanh, Activation::Identity, Loss::Mse, Optimizer::adam(0.01)),
    ]
}

/// Wider than 32, the one-sample path pads every row to 64, 128 or 256 values and sums in index order,
/// where the batched path's products are `gemm`'s, which sums in its own order: the two agree to
/// rounding, not bit for bit.
fn wide_one_sample_matches_batched<T: Scalar>(tol: f64) {
    let shapes = [(40, 64, 33), (100, 128, 70), (150, 200, 256)];
    for (case, (n_in, n_hidden, n_out)) in shapes.into_iter().enumerate() {
        for (hidden_activation, output_activation, loss, optimizer) in three_settings() {
            let bias = if case == 1 { Bias::Shared } else { Bias::PerNeuron };
            let config = Config {
                hidden_activation,
                output_activation,
                loss,
                bias,
                optimizer,
                ..Config::new(n_in, n_hidden, n_out)
            };
            let mut fast = Network::<T>::new(config, case as u64).unwrap();
            let mut slow = fast.clone();
            assert!(fast.is_tiny(1), "{config:?}");
            let x: Vec<T> = data(n_in, 3).into_iter().map(T::of).collect();
            let t: Vec<T> = targets(loss, 1, n_out, 4).into_iter().map(T::of).collect();
            let got = fast.train(&x, &t, 6, &mut no_stop()).unwrap();
            let want = batched_steps(&mut slow, &x, &t, 6);
            for (g, w) in got.iter().zip(&want) {
                close(*g, *w, tol * w.abs().max(1.0), &format!("loss, {config:?}"));
            }
            for (g, w) in fast.params().iter().flatten().zip(slow.params().iter().flatten()) {
                let (g, w) = (g.to_f64().unwrap(), w.to_f64().unwrap());
                close(g, w, tol * w.abs().max(1.0), &format!("a parameter, {config:?}"));
            }
            assert_eq!(fast.updates, slow.updates);
        }
    }
}

#[test]
fn wide_one_sample_path_follows_the_batched_path_to_rounding() {
    wide_one_sample_matches_batched::<f64>(1e-12);
    wide_one_sample_matches_batched::<f32>(1e-4);
}

#[test]
fn only_shapes_padded_little_take_the_wide_one_sample_path() {
    let tiny = |n_in, n_hidden, n_out, batch| {
        Network::<f64>::new(Config::new(n_in, n_hidden, n_out), 0).unwrap().is_tiny(batch)
    };
    assert!(tiny(32, 1, 32, 1), "up to 32, every shape");
    assert!(tiny(256, 256, 256, 1) && tiny(64, 64, 64, 1) && tiny(100, 128, 70, 1));
    // 64-256-10: w2's transpose would be 256 x 256 for 2,560 weights.
    assert!(!tiny(64, 256, 10, 1));
    assert!(!tiny(257, 257, 257, 1), "wider than 256");
    assert!(!tiny(64, 64, 64, 2), "one sample only");
}

#[test]
fn an_sgd_update_that_would_overflow_is_refused_and_keeps_the_weights() {
    // Small weights, a finite loss, but gradients near f32's largest (an input of 1e19 through a 1-1-1
    // net with no activation): lr 2 takes both weights past it. The bounds must send the step to the
    // checked update, which refuses it, rather than write infinities in place.
    for momentum in [0.0, 0.9] {
        let config = Config {
            hidden_activation: Activation::Identity,
            output_activation: Activation::Identity,
            loss: Loss::Mse,
            bias: Bias::None,
            optimizer: Optimizer::Sgd { lr: 2.0, momentum, nesterov: false, weight_decay: 0.0 },
            ..Config::new(1, 1, 1)
        };
        step_is_refused(config, [vec![1.0], vec![], vec![1.0], vec![]], &[1e19], &[0.0]);
    }
}

/// One step of a network with `params` on (x, t) must be refused as diverged and leave the weights and
/// optimizer state as they were.
fn step_is_refused(config: Config, params: [Vec<f32>; 4], x: &[f32], t: &[f32]) {
    let mut net = Network::<f32>::with_params(config, params).unwrap();
    let before = net.clone();
    match net.train(x, t, 1, &mut no_stop()) {
        Err(Error::Diverged { what: "weights", .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(net.params(), before.params());
    assert_eq!(net.optimizer_state(), before.optimizer_state());
}

#[test]
fn a_nan_in_a_hidden_delta_under_a_finite_loss_is_refused_and_keeps_the_weights() {
    // A 1-2-1 ReLU net in f32 whose second hidden unit is off (h = 0) but sits behind an output weight
    // of 1e30: its delta is inf * relu'(0) = inf * 0, a NaN, while the loss (1e20, summed in f64) and
    // the other unit's delta are finite. The bounds must see the NaN and send the step to the checked
    // update, which refuses it, rather than write NaN into w1 in place.
    let config = Config {
        hidden_activation: Activation::Relu,
        output_activation: Activation::Identity,
        loss: Loss::Mse,
        bias: Bias::None,
        optimizer: Optimizer::sgd(0.1),
        ..Config::new(1, 2, 1)
    };
    step_is_refused(config, [vec![1.0, -1.0], vec![], vec![1e5, 1e30], vec![]], &[1e5], &[0.0]);
}

#[test]
fn a_decayed_weight_past_the_largest_value_is_refused_and_keeps_the_weights() {
    // A weight of 3e38 on an input that is 0 changes no output and gets no gradient, so nothing in
    // the step's values shows it; only the bound measured on the weights themselves does. Weight decay
    // 3 at lr 1 takes it to -6e38, past f32's largest: the update must be checked and refused.
    let config = Config {
        hidden_activation: Activation::Identity,
        output_activation: Activation::Identity,
        loss: Loss::Mse,
        bias: Bias::None,
        optimizer: Optimizer::Sgd { lr: 1.0, momentum: 0.0, nesterov: false, weight_decay: 3.0 },
        ..Config::new(2, 2, 2)
    };
    let w1 = vec![0.5, 3e38, 0.25, 0.0];
    step_is_refused(config, [w1, vec![], vec![0.5, 0.25, 0.125, 0.5], vec![]], &[1.0, 0.0], &[0.5, 0.5]);
}

#[test]
fn sgd_past_the_bound_on_its_values_takes_the_checked_update_with_the_same_bits() {
    // SGD writes its update over the old values while bounds prove the new ones finite. Weights
    // near f32's largest (5e37, over a sixteenth of it) fail that proof, so these steps take the
    // update that is checked before it is committed: it must give the same bits, and start the cheap
    // one again once the weights are back in range.
    for optimizer in
        [Optimizer::sgd(0.5), Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0 }]
    {
        let config = Config { optimizer, ..Config::new(2, 3, 2) };
        let mut fast = Network::<f32>::new(config, 5).unwrap();
        let [w1, b1, mut w2, b2] = fast.params().clone();
        w2[0] = 5e37;
        w2[4] = -5e37;
        fast.set_params([w1, b1, w2, b2]).unwrap();
        let mut slow = fast.clone();
        let (x, t) = ([0.3_f32, -0.7], [0.2_f32, 0.9]);
        let got = fast.train(&x, &t, 4, &mut no_stop()).unwrap();
        let want = batched_steps(&mut slow, &x, &t, 4);
        assert_eq!(got, want, "{optimizer:?}");
        assert_eq!(fast.params(), slow.params());
        assert_eq!(fast.optimizer_state(), slow.optimizer_state());
        // Back in range: the big weights set to small ones, the steps go on alike.
        for net in [&mut fast, &mut slow] {
            let [w1, b1, mut w2, b2] = net.params().clone();
            w2[0] = 0.5;
            w2[4] = -0.25;
            net.set_params([w1, b1, w2, b2]).unwrap();
        }
        let got = fast.train(&x, &t, 4, &mut no_stop()).unwrap();
        let want = batched_steps(&mut slow, &x, &t, 4);
        assert_eq!(got, want, "{optimizer:?}");
        assert_eq!(fast.params(), slow.params());
    }
}

#[test]
fn binary_cross_entropy_is_the_mean_over_elements_from_the_logits() {
    // Logits far enough out that o rounds to 0 or 1, where -t ln(o) - (1 - t) ln(1 - o) would be inf.
    let z = [-800.0, -3.0, 0.0, 2.5, 40.0, 800.0];
    let t = [0.0, 1.0, 0.25, 0.5, 1.0, 0.75];
    let o: Vec<f64> = z.iter().map(|&z: &f64| 1.0 / (1.0 + (-z).exp())).collect();
    let n_out = 2;
    // -t ln(o) - (1 - t) ln(1 - o) summed in 60-digit decimals; 800 with t = 0.75 contributes 200.
    let want = 34.178_437_377_737_71;
    let n = z.len() as f64;
    close(Loss::BinaryCrossEntropy.value(&z, &o, &t, n_out), want, 1e-12, "loss");
    let mut dz = [0.0; 6];
    let loss = Loss::BinaryCrossEntropy.delta(Activation::Sigmoid, &z, &o, &t, n_out, &mut dz, &[]);
    assert_eq!(loss.to_bits(), Loss::BinaryCrossEntropy.value(&z, &o, &t, n_out).to_bits());
    for k in 0..6 {
        close(dz[k], (o[k] - t[k]) / n, 1e-15, "dL/dz");
    }
}

#[test]
fn sample_weights_weigh_each_rows_loss_and_gradient() {
    use crate::backend::FitExtras;
    let config =
        Config { hidden_activation: Activation::Tanh, optimizer: Optimizer::adam(0.05), ..Config::new(3, 5, 2) };
    let fit = |net: &mut Network<f64>, x: &[f64], y: &[f64], w: Option<&[f64]>, batch_size: usize| {
        let extras = FitExtras { lrs: &[], sample_weight: w };
        let plan = FitPlan { epochs: 4, batch_size, shuffle: true, first_epoch: 0 };
        net.fit_with(x, y, plan, 7, extras, &mut no_stop()).unwrap()
    };
    let (x, y) = (data(6 * 3, 20), targets(Loss::HalfSse, 6, 2, 21));
    let weights = [2.0, 0.0, 1.0, 3.0, 1.0, 0.0];
    // Integer weights with the whole set as one batch: the same training as rows repeated that often.
    let (mut xr, mut yr) = (vec![], vec![]);
    for (i, &w) in weights.iter().enumerate() {
        for _ in 0..w as usize {
            xr.extend_from_slice(&x[i * 3..i * 3 + 3]);
            yr.extend_from_slice(&y[i * 2..i * 2 + 2]);
        }
    }
    let (mut weighted, mut repeated) =
        (Network::<f64>::new(config, 1).unwrap(), Network::<f64>::new(config, 1).unwrap());
    let a = fit(&mut weighted, &x, &y, Some(&weights), 6);
    let b = fit(&mut repeated, &xr, &yr, None, 7);
    for (a, b) in a.iter().zip(&b) {
        close(*a, *b, 1e-12, "epoch loss");
    }
    for (p, q) in weighted.params().iter().zip(repeated.params()) {
        for (p, q) in p.iter().zip(q) {
            close(*p, *q, 1e-12, "weights");
        }
    }
    // Weights of all ones (or any constant) train bit for bit as none, in mini-batches too.
    let mut plain = Network::<f64>::new(config, 1).unwrap();
    let mut ones = plain.clone();
    assert_eq!(fit(&mut plain, &x, &y, None, 4), fit(&mut ones, &x, &y, Some(&[2.5; 6]), 4));
    assert_eq!(plain.params(), ones.params());
    // Mini-batches: each sample counts w_i n / sum(w) = 6/7 w_i times. With plain SGD, batch [0, 1, 2]
    // (weights 2, 0, 1) is then a step on rows [0, 0, 2] with the rate scaled by (6/7 / 3) / (1/3),
    // and batch [3, 4, 5] (3, 1, 0) one on [3, 3, 3, 4] scaled by (6/7 / 3) / (1/4).
    let sgd = Config { optimizer: Optimizer::sgd(0.5), ..config };
    let mut net = Network::<f64>::new(sgd, 2).unwrap();
    let mut steps = net.clone();
    let extras = FitExtras { lrs: &[], sample_weight: Some(&weights) };
    let plan = FitPlan { epochs: 1, batch_size: 3, shuffle: false, first_epoch: 0 };
    let epoch = net.fit_with(&x, &y, plan, 0, extras, &mut no_stop()).unwrap();
    let rows = |idx: &[usize]| -> (Vec<f64>, Vec<f64>) {
        (
            idx.iter().flat_map(|&i| x[i * 3..i * 3 + 3].to_vec()).collect(),
            idx.iter().flat_map(|&i| y[i * 2..i * 2 + 2].to_vec()).collect(),
        )
    };
    let mut total = 0.0;
    for (idx, ratio) in [(&[0, 0, 2][..], 6.0 / 7.0), (&[3, 3, 3, 4][..], 8.0 / 7.0)] {
        steps.set_lr(0.5 * ratio).unwrap();
        let (xs, ys) = rows(idx);
        total += steps.train_step(&xs, &ys).unwrap() * ratio * 3.0;
    }
    close(epoch[0], total / 6.0, 1e-12, "weighted epoch loss");
    for (p, q) in net.params().iter().zip(steps.params()) {
        for (p, q) in p.iter().zip(q) {
            close(*p, *q, 1e-12, "weights after weighted mini-batches");
        }
    }
    // Bad weights are refused, naming the argument.
    let bad = |w: &[f64]| {
        let mut n = Network::<f64>::new(config, 1).unwrap();
        let extras = FitExtras { lrs: &[], sample_weight: Some(w) };
        let plan = FitPlan { epochs: 1, batch_size: 2, shuffle: true, first_epoch: 0 };
        match n.fit_with(&x, &y, plan, 0, extras, &mut no_stop()) {
            Err(Error::InvalidConfig { arg, .. } | Error::ShapeMismatch { arg, .. } | Error::NonFinite { arg, .. }) => {
                assert_eq!(n.updates, 0);
                arg
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(bad(&[1.0; 5]), "sample_weight");
    assert_eq!(bad(&[1.0, -1.0, 1.0, 1.0, 1.0, 1.0]), "sample_weight");
    assert_eq!(bad(&[0.0; 6]), "sample_weight");
    assert_eq!(bad(&[1.0, f64::NAN, 1.0, 1.0, 1.0, 1.0]), "sample_weight");
}

#[test]
fn the_cap_on_parameters_counts_every_weight_and_bias() {
    // 2^16 hidden neurons: the weights number 2^16 (n_in + n_out), and the biases 0, 2 or one per neuron.
    let n = 1_usize << 16;
    let cap = 1_u128 << 32;
    let counted = |c: &Config| {
        let biases = match c.bias {
            Bias::None => 0,
            Bias::Shared => 2,
            Bias::PerNeuron => c.n_hidden + c.n_out,
        };
        (c.n_hidden * (c.n_in + c.n_out) + biases) as u128
    };
    for (n_in, bias) in
        [(n - 1, Bias::None), (n, Bias::None), (n - 2, Bias::Shared), (n - 1, Bias::Shared), (n - 3, Bias::PerNeuron)]
    {
        let config = Config { bias, ..Config::new(n_in, n, 1) };
        let params = counted(&config);
        match config.validate() {
            Ok(()) => assert!(params <= cap, "{params} parameters accepted"),
            Err(Error::OutOfMemory { what: "network parameters", elements }) => {
                assert!(params > cap, "{params} parameters refused");
                assert_eq!(elements, params);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(Config { bias: Bias::None, ..Config::new(n - 1, n, 1) }.validate().is_ok(), "exactly 2^32 is allowed");
}

/// Bytes Linux can give now (MemAvailable plus free swap), read independently of `memory`.
fn free_bytes() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |name: &str| -> Option<u128> {
        info.lines().find_map(|l| l.strip_prefix(name))?.trim().trim_end_matches("kB").trim().parse().ok()
    };
    Some((kib("MemAvailable:")? + kib("SwapFree:").unwrap_or(0)) * 1024)
}

#[test]
fn a_network_too_large_for_memory_is_refused_with_its_whole_need() {
    // Parameters, gradients, and the optimizer's buffers and their double buffer: 2 + 2 * buffers copies,
    // as PyTorch's Adam keeps exp_avg and exp_avg_sq and SGD with momentum one momentum buffer.
    let n = 1_usize << 16;
    let config = Config { bias: Bias::None, ..Config::new(n - 1, n, 1) };
    let params = 1_u128 << 32;
    let momentum = Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0 };
    for (optimizer, copies) in [(Optimizer::adam(1e-3), 6), (momentum, 4)] {
        let bytes = params * copies * 8;
        if free_bytes().is_none_or(|free| free >= bytes) {
            continue; // this machine could hold it
        }
        match Network::<f64>::new(Config { optimizer, ..config }, 0) {
            Err(Error::OutOfMemory { what: "network parameters", elements }) => {
                assert_eq!(elements, params * copies, "{optimizer:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn ctrl_c_is_asked_about_every_few_milliseconds_of_work() {
    // Between two questions, at most 10^7 multiply-adds (a few ms) but more than half of that, counting a
    // step as its three products (forward, and the two of the backward pass) plus a fixed 2048 for the
    // step's own cost; a step larger than that is asked about alone.
    for (n_in, n_hidden, n_out, rows) in
        [(2, 2, 2, 1), (784, 64, 10, 32), (10, 64, 784, 1), (3, 300, 7, 5), (1000, 1000, 1000, 100)]
    {
        let net = Network::<f32>::new(Config::new(n_in, n_hidden, n_out), 0).unwrap();
        let work = 3 * rows * (n_in * n_hidden + n_hidden * n_out) + 2048;
        let every = net.steps_per_poll(rows);
        if work >= 10_000_000 {
            assert_eq!(every, 1, "{n_in}-{n_hidden}-{n_out} x {rows}");
        } else {
            assert!(every * work <= 10_000_000 && 2 * every * work > 10_000_000, "{n_in}-{n_hidden}-{n_out}: {every}");
        }
    }
    // The article's net: 10^7 / 2072 = 4826 steps per question, so 10,000 steps ask 3 times.
    let mut net = Network::<f64>::article();
    let mut asked = 0;
    net.train(&X, &T, 10_000, &mut || {
        asked += 1;
        true
    })
    .unwrap();
    assert_eq!(asked, 3);
}

#[test]
fn fit_steps_through_the_rows_in_epoch_order() {
    let config =
        Config { hidden_activation: Activation::Tanh, optimizer: Optimizer::adam(0.01), ..Config::new(3, 5, 2) };
    let n = 11;
    let (x, y) = (data(n * 3, 30), targets(Loss::HalfSse, n, 2, 31));
    // Batches of 4 rows take the batched path; of one row, the one-sample path, checked here against
    // the batched path's steps.
    for (batch_size, shuffle) in [(4, true), (4, false), (1, true), (1, false)] {
        let mut net = Network::<f64>::new(config, 3).unwrap();
        let mut steps = net.clone();
        let plan = FitPlan { epochs: 2, batch_size, shuffle, first_epoch: 5 };
        let fit = net.fit(&x, &y, plan, 9, &mut no_stop()).unwrap();
        for (e, epoch) in (5..7).enumerate() {
            let mut order: Vec<usize> = (0..n).collect();
            if shuffle {
                epoch_order(n, 9, epoch, &mut order);
                let mut sorted = order.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "a permutation");
            }
            let mut total = 0.0;
            for rows in order.chunks(batch_size) {
                let (mut xs, mut ys) = (vec![], vec![]);
                for &r in rows {
                    xs.extend_from_slice(&x[r * 3..r * 3 + 3]);
                    ys.extend_from_slice(&y[r * 2..r * 2 + 2]);
                }
                total += if batch_size == 1 {
                    batched_steps(&mut steps, &xs, &ys, 1)[0]
                } else {
                    steps.train_step(&xs, &ys).unwrap() * rows.len() as f64
                };
            }
            close(fit[e], total / n as f64, 1e-15, "epoch loss");
        }
        assert_eq!(net.params(), steps.params(), "batch_size={batch_size}, shuffle={shuffle}");
        assert_eq!(net.optimizer_state(), steps.optimizer_state(), "batch_size={batch_size}, shuffle={shuffle}");
    }
    let (mut a, mut b) = (vec![], vec![]);
    epoch_order(n, 9, 5, &mut a);
    epoch_order(n, 9, 6, &mut b);
    assert_ne!(a, b, "each epoch has its own order");
}

#[test]
fn absent_and_frozen_biases_have_no_optimizer_state() {
    // Like PyTorch's Adam: exp_avg and exp_avg_sq for each trained parameter, nothing for the others.
    for (bias, train_bias) in
        [(Bias::PerNeuron, true), (Bias::Shared, true), (Bias::None, true), (Bias::PerNeuron, false)]
    {
        let config = Config { bias, train_bias, optimizer: Optimizer::adam(0.01), ..Config::new(3, 4, 2) };
        let mut net = Network::<f64>::new(config, 1).unwrap();
        net.train_step(&data(3, 2), &targets(Loss::HalfSse, 1, 2, 3)).unwrap();
        let lens = |w: usize| match (bias, train_bias) {
            (_, false) | (Bias::None, _) => None,
            (Bias::Shared, _) => Some(1),
            (Bias::PerNeuron, _) => Some(w),
        };
        let want = [Some(12), lens(4), Some(8), lens(2)];
        let (state, updates) = net.optimizer_state();
        assert_eq!(updates, 1);
        for (i, want) in want.into_iter().enumerate() {
            let got: Vec<usize> = state[i].iter().map(Vec::len).collect();
            assert_eq!(got, want.map_or(vec![], |n| vec![n, n]), "{bias}/{train_bias} {}", PARAM_NAMES[i]);
        }
    }
}

#[test]
fn optimizer_state_of_the_wrong_layout_is_refused_and_changes_nothing() {
    let config = Config { optimizer: Optimizer::adam(0.01), ..Config::new(3, 4, 2) };
    let mut net = Network::<f64>::new(config, 1).unwrap();
    net.train_step(&data(3, 2), &targets(Loss::HalfSse, 1, 2, 3)).unwrap();
    let (before, updates) = net.optimizer_state();
    let before = before.clone();
    // Adam's two buffers (exp_avg, exp_avg_sq) of each parameter's size: 12, 4, 8 and 2 values.
    let good: [Vec<Vec<f64>>; 4] = [12, 4, 8, 2].map(|n| vec![vec![0.5; n]; 2]);
    let mut one_missing = good.clone();
    one_missing[B1].pop();
    let mut one_short = good.clone();
    one_short[W2][1].pop();
    let mut one_extra = good.clone();
    one_extra[B2].push(vec![0.5; 2]);
    for bad in [one_missing, one_short, one_extra] {
        match net.set_optimizer_state(bad, 7) {
            Err(Error::ShapeMismatch { arg: "optimizer_state", .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(net.optimizer_state(), (&before, updates));
    }
    net.set_optimizer_state(good.clone(), 7).unwrap();
    assert_eq!(net.optimizer_state(), (&good, 7));
    assert!(net.adapter().is_none(), "the CPU network runs on no GPU adapter");
}

/// A call whose steps have parallel regions runs on the thread pool in one hand-off while the caller
/// asks whether to go on: it stops at a completed step when told to, holding exactly those steps, and
/// trains as a call on the caller's own thread does.
#[test]
fn a_call_with_parallel_regions_stops_where_asked_and_trains_as_in_place() {
    // 1024 rows of 256 hidden units: a parallel activation, with products too small to be slow here.
    let config = Config { optimizer: Optimizer::sgd(0.1), ..Config::new(2, 256, 2) };
    let rows = 1024;
    assert!(config.has_parallel_regions(rows) && !config.has_parallel_regions(rows / 2));
    let (x, t) = (data(rows * 2, 31), targets(Loss::HalfSse, rows, 2, 32));
    let caller = std::thread::current().id();
    let mut net = Network::<f64>::new(config, 3).unwrap();
    let mut asked = 0;
    let mut keep_going = || {
        assert_eq!(std::thread::current().id(), caller);
        asked += 1;
        asked < 3
    };
    // Far more steps than fit in the time (their losses' room is reserved, but only touched pages used).
    let completed = match net.train(&x, &t, 10_000_000, &mut keep_going) {
        Err(Error::Interrupted { completed }) => completed,
        other => panic!("the call did not stop: {other:?}"),
    };
    // The same steps on the caller's thread: a pool of one thread runs them in place.
    let mut replay = Network::<f64>::new(config, 3).unwrap();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    one.install(|| replay.train(&x, &t, completed, &mut no_stop())).unwrap();
    assert_eq!(net.params(), replay.params());
    assert_eq!(net.optimizer_state(), replay.optimizer_state());
    // fit too: a whole epoch's batches of 1024 rows, told to stop at once.
    let plan = FitPlan { epochs: 3, batch_size: rows, shuffle: true, first_epoch: 0 };
    let got = net.fit(&x, &t, plan, 5, &mut no_stop()).unwrap();
    let want = one.install(|| replay.fit(&x, &t, plan, 5, &mut no_stop())).unwrap();
    assert_eq!(got, want);
    assert_eq!(net.params(), replay.params());
}

/// Each kind of parallel region decides alone, from its threshold on: the products (n_in x n_hidden and
/// n_hidden x n_out, times the rows), the hidden and output activations, and the update.
#[test]
fn a_step_has_parallel_regions_from_each_kinds_threshold_on() {
    // (at the threshold, one row or unit fewer): every other kind stays below its own.
    let cases = [
        ((256, 256, 1, 256), (256, 256, 1, 255)), // 2^24 multiply-adds in the first product
        ((1, 256, 256, 256), (1, 256, 256, 255)), // in the second
        ((1, 1024, 1, 256), (1, 1024, 1, 255)),   // 2^18 hidden values
        ((1, 1, 1024, 256), (1, 1, 1024, 255)),   // 2^18 outputs
        ((510, 1024, 2, 1), (509, 1024, 2, 1)),   // 2^19 weights
    ];
    for (on, off) in cases {
        let parallel = |(i, h, o, rows): (usize, usize, usize, usize)| Config::new(i, h, o).has_parallel_regions(rows);
        assert!(parallel(on), "{on:?}");
        assert!(!parallel(off), "{off:?}");
    }
}

/// The instruction sets a kernel can be compiled for (see `simd`).
#[derive(Debug, Clone, Copy)]
enum Set {
    Baseline,
    Avx2,
    Avx512,
    Widest,
}

impl Set {
    /// The sets this CPU can run.
    fn available() -> Vec<Set> {
        let mut sets = vec![Set::Baseline, Set::Widest];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                sets.push(Set::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                sets.push(Set::Avx512);
            }
        }
        sets
    }

    fn run<K: simd::Kernel>(self, k: K) -> K::Output {
        match self {
            Set::Baseline => simd::baseline(k),
            Set::Widest => simd::widest(k),
            // SAFETY: `available` lists these only where the CPU has them.
            #[cfg(target_arch = "x86_64")]
            Set::Avx2 => unsafe { simd::avx2(k) },
            #[cfg(target_arch = "x86_64")]
            Set::Avx512 => unsafe { simd::avx512(k) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!(),
        }
    }
}

#[test]
fn batched_steps_and_forward_passes_give_the_baseline_bits_on_every_instruction_set() {
    let mut case = 900_u64;
    for (hidden_activation, output_activation, loss) in [
        (Activation::Sigmoid, Activation::Sigmoid, Loss::HalfSse),
        (Activation::Tanh, Activation::Identity, Loss::Mse),
        (Activation::Relu, Activation::Softmax, Loss::CrossEntropy),
        (Activation::Identity, Activation::Sigmoid, Loss::BinaryCrossEntropy),
    ] {
        for optimizer in [
            Optimizer::sgd(0.3),
            Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.01 },
            Optimizer::adam(0.01),
        ] {
            // Widths off every vector length; the second shape's products are past the direct loop's size.
            for ((n_in, n_hidden, n_out), batch) in [((7, 13, 10), 5), ((64, 32, 10), 32)] {
                case += 1;
                let config = Config {
                    hidden_activation,
                    output_activation,
                    loss,
                    optimizer,
                    ..Config::new(n_in, n_hidden, n_out)
                };
                let x = data(batch * n_in, case);
                let t = targets(loss, batch, n_out, case + 1);
                let w: Vec<f64> = (0..batch).map(|i| 0.5 + (i % 3) as f64).collect();
                // Each step's loss and outputs after it, and the last parameters, all as bits.
                let trained = |set: Set, weighted: bool| {
                    let mut net = Network::<f64>::new(config, case).unwrap();
                    net.reserve(batch).unwrap();
                    let mut seen = vec![];
                    for _ in 0..4 {
                        let w = weighted.then_some(&w[..]);
                        seen.push(set.run(Step { net: &mut net, x: &x, t: &t, w, batch }).unwrap().to_bits());
                        let mut acts = Forward::default();
                        acts.reserve(&config, batch).unwrap();
                        let acts = set.run(Pass { net: &net, x: &x, rows: batch, acts });
                        seen.extend(acts.o.iter().map(|o| o.to_bits()));
                    }
                    (seen, net.params().clone())
                };
                for weighted in [false, true] {
                    let baseline = trained(Set::Baseline, weighted);
                    for set in Set::available() {
                        assert_eq!(trained(set, weighted), baseline, "{set:?} {config:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn every_non_finite_value_is_found_wherever_it_lies() {
    // Values are checked in blocks of 256 before any position is looked for: one bad value, or several in
    // one block, at the start, middle or end of a block, and in the last, partial block.
    let cols = 7;
    for bad in [vec![0], vec![255], vec![256, 257], vec![300, 301, 302], vec![511, 600], vec![1000]] {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut x: Vec<f64> = (0..1001).map(|i| f64::from(i) * 0.5 - 200.0).collect();
            for &i in &bad {
                x[i] = value;
            }
            match check_rows("X", &x, cols) {
                Err(Error::NonFinite { position, .. }) => {
                    assert_eq!(position, format!("[{}, {}]", bad[0] / cols, bad[0] % cols), "{bad:?}");
                }
                other => panic!("{bad:?} {value}: {other:?}"),
            }
        }
    }
    assert_eq!(check_rows("X", &vec![1.5_f32; 7 * 300], cols).ok(), Some(300));
}
