//! A population's members against networks given the same calls: bit for bit on the CPU.

#![allow(clippy::unwrap_used, clippy::panic, clippy::float_cmp)] // tests fail loudly
use super::*;
use crate::network::Network;
use crate::{Activation, Loss, Optimizer};

fn config(lr: f64) -> Config {
    Config {
        hidden_activation: Activation::Relu,
        output_activation: Activation::Softmax,
        loss: Loss::CrossEntropy,
        optimizer: Optimizer::Sgd { lr, momentum: 0.9, nesterov: false, weight_decay: 0.0 },
        ..Config::new(5, 7, 3)
    }
}

fn data<'a, T>(x: &'a [T], y: &'a [T], rows: Option<&'a [&'a [usize]]>) -> Data<'a, T> {
    Data { x, y, weights: None, rows }
}

/// Each member's rows as the slices `Data` takes.
fn slices(rows: &[Vec<usize>]) -> Vec<&[usize]> {
    rows.iter().map(Vec::as_slice).collect()
}

fn batch(rows: usize) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..rows * 5).map(|i| ((i * 37 % 11) as f64 - 5.0) / 4.0).collect();
    let t: Vec<f64> = (0..rows * 3).map(|i| if i % 3 == (i / 3) % 3 { 1.0 } else { 0.0 }).collect();
    (x, t)
}

fn members(size: usize) -> Vec<Network<f64>> {
    (0..size).map(|i| Network::new(config(0.05 * (i + 1) as f64), 10 + i as u64).unwrap()).collect()
}

#[test]
fn members_train_and_fit_like_networks() {
    let (x, t) = batch(23);
    let mut pop = Population::new(members(5)).unwrap();
    let mut alone = members(5);
    let losses = pop.train(&x, &t, 7, &mut || true).unwrap();
    let seeds = [3, 4, 5, 6, 7];
    let rows: Vec<Vec<usize>> = (0..5).map(|i| (0..23).map(|j| (j * (i + 2)) % 23).collect()).collect();
    let plan = FitPlan { epochs: 3, batch_size: 4, shuffle: true, first_epoch: 1 };
    let active = [true, false, true, true, true];
    let picked = slices(&rows);
    let fitted = pop.fit(data(&x, &t, Some(&picked)), plan, &seeds, None, Some(&active), &mut || true).unwrap();
    for (i, net) in alone.iter_mut().enumerate() {
        assert_eq!(losses[i], net.train(&x, &t, 7, &mut || true).unwrap());
        if i == 1 {
            assert!(fitted[i].is_empty());
        } else {
            let xi: Vec<f64> = rows[i].iter().flat_map(|&r| x[r * 5..r * 5 + 5].to_vec()).collect();
            let ti: Vec<f64> = rows[i].iter().flat_map(|&r| t[r * 3..r * 3 + 3].to_vec()).collect();
            assert_eq!(fitted[i], net.fit(&xi, &ti, plan, seeds[i], &mut || true).unwrap());
        }
        assert_eq!(pop.members()[i].params(), net.params());
        assert_eq!(pop.members()[i].optimizer_state(), net.optimizer_state());
    }
    // One (members, epochs) buffer, NaN where a member sat out.
    assert_eq!((fitted.members(), fitted.width(), fitted.longest()), (5, 3, 3));
    let values = fitted.clone().into_values();
    assert!(values[3..6].iter().all(|v| v.is_nan()) && values.iter().filter(|v| v.is_nan()).count() == 3);
    assert_eq!(values[..3], fitted[0]);
    let out = pop.forward(&x).unwrap();
    let loss = pop.loss(&x, &t).unwrap();
    for (i, net) in alone.iter().enumerate() {
        assert_eq!(out[i * 23 * 3..(i + 1) * 23 * 3], net.forward(&x).unwrap()[..]);
        assert_eq!(loss[i], net.loss(&x, &t).unwrap());
    }
}

#[test]
fn a_diverging_member_is_named_and_the_others_finish() {
    let (x, t) = batch(8);
    let mut nets = members(3);
    nets[1] = Network::new(Config { optimizer: Optimizer::sgd(1e300), ..config(0.1) }, 1).unwrap();
    let mut pop = Population::new(nets).unwrap();
    let mut other = members(3).remove(2);
    match pop.train(&x, &t, 50, &mut || true) {
        Err(Error::Member { member: 1, error }) => assert!(matches!(*error, Error::Diverged { .. })),
        other => panic!("expected member 1 to diverge, got {other:?}"),
    }
    other.train(&x, &t, 50, &mut || true).unwrap();
    assert_eq!(pop.members()[2].params(), other.params());
    assert!(pop.members()[1].params().iter().flatten().all(|v| v.is_finite()));
}

#[test]
fn a_stop_reaches_every_member_at_a_whole_step() {
    let (x, t) = batch(64);
    let mut pop = Population::new(members(4)).unwrap();
    let mut asked = 0;
    let result = pop.train(&x, &t, 1_000_000, &mut || {
        asked += 1;
        asked < 10
    });
    let Err(Error::Interrupted { completed }) = result else { panic!("expected an interruption, got {result:?}") };
    // Each member is at a whole step: it trains on from there like a network.
    let mut net = Network::with_params(*pop.members()[0].config(), pop.members()[0].params().clone()).unwrap();
    let (state, updates) = pop.members()[0].optimizer_state();
    net.set_optimizer_state(state.clone(), updates).unwrap();
    assert!(updates as usize >= completed);
    let before = pop.members()[0].params().clone();
    assert!(before.iter().flatten().all(|v| v.is_finite()));
    assert_eq!(pop.train(&x, &t, 2, &mut || true).unwrap()[0], net.train(&x, &t, 2, &mut || true).unwrap());
}

#[test]
fn bad_populations_and_arguments_are_refused() {
    assert!(matches!(Population::<Network<f64>>::new(vec![]), Err(Error::InvalidConfig { arg: "size", .. })));
    let mut nets = members(2);
    nets.push(Network::new(Config::new(5, 7, 3), 0).unwrap());
    let Err(Error::InvalidConfig { arg, got, .. }) = Population::new(nets) else { panic!() };
    assert_eq!((arg, got.starts_with("member 2")), ("members", true));
    let (x, t) = batch(4);
    let mut pop = Population::new(members(2)).unwrap();
    let plan = FitPlan { epochs: 1, batch_size: 2, shuffle: true, first_epoch: 0 };
    let err = pop.fit(data(&x, &t, None), plan, &[1], None, None, &mut || true).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { arg: "seeds", .. }), "{err}");
    let rows = vec![vec![0, 1], vec![4]];
    let picked = slices(&rows);
    let err = pop.fit(data(&x, &t, Some(&picked)), plan, &[1, 2], None, None, &mut || true).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { arg: "rows", .. }), "{err}");
    assert!(matches!(pop.forward(&x[..3]), Err(Error::ShapeMismatch { arg: "X", .. })));
    // All the losses are one buffer, refused whole when it cannot fit.
    let err = pop.train(&x, &t, 1 << 61, &mut || true).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { what: "losses", .. }), "{err}");
    assert_eq!(pop.train(&x, &t, 0, &mut || true).map(|l| (l.members(), l.width(), l.longest())), Ok((2, 0, 0)));
}

#[test]
fn an_interrupted_fit_counts_steps_not_epochs() {
    let (x, t) = batch(64);
    let mut pop = Population::new(members(3)).unwrap();
    let mut asked = 0;
    let plan = FitPlan { epochs: 1_000_000, batch_size: 4, shuffle: true, first_epoch: 0 };
    // The member sitting out ends at once, with nothing to count; the other two train side by side.
    let active = [true, false, true];
    // Stopped at the 100th poll, about half a second in: time for both to start on a busy pool.
    let result = pop.fit(data(&x, &t, None), plan, &[1, 2, 3], None, Some(&active), &mut || {
        asked += 1;
        asked < 100
    });
    let Err(Error::Interrupted { completed }) = result else { panic!("expected an interruption, got {result:?}") };
    let updates: Vec<u64> = pop.members().iter().map(|m| m.optimizer_state().1).collect();
    assert_eq!(updates[1], 0);
    assert_eq!(completed as u64, updates[0].min(updates[2]), "{updates:?}");
    if crate::threads::count() >= 2 {
        assert!(completed > 0, "both trained until the stop: {updates:?}");
    }
}

#[test]
fn members_take_their_own_rates_per_epoch_and_the_samples_weights() {
    let (x, t) = batch(12);
    let w: Vec<f64> = (0..12).map(|i| f64::from(i % 3)).collect();
    let lrs = vec![vec![0.1, 0.05], vec![0.2, 0.02]];
    let mut pop = Population::new(members(2)).unwrap();
    let mut alone = members(2);
    let plan = FitPlan { epochs: 2, batch_size: 5, shuffle: true, first_epoch: 0 };
    let got =
        pop.fit(Data { x: &x, y: &t, weights: Some(&w), rows: None }, plan, &[4, 4], Some(&lrs), None, &mut || true);
    for (i, net) in alone.iter_mut().enumerate() {
        let extras = FitExtras { lrs: &lrs[i], sample_weight: Some(&w) };
        assert_eq!(got.as_ref().unwrap()[i], net.fit_with(&x, &t, plan, 4, extras, &mut || true).unwrap());
        assert_eq!(pop.members()[i].params(), net.params());
    }
    pop.set_lrs(&[0.3, 0.4]).unwrap();
    assert!(matches!(pop.set_lrs(&[0.3]), Err(Error::InvalidConfig { arg: "lrs", .. })));
    let err = pop.set_lrs(&[0.3, -1.0]).unwrap_err();
    assert!(matches!(err, Error::Member { member: 1, .. }), "{err}");
}

// -- tiny members side by side in SIMD lanes ---------------------------------------------------------

/// A network's values as bits (so -0.0 and 0.0 differ): parameters, optimizer state, update count.
fn bits<T: crate::linalg::Scalar>(net: &Network<T>) -> Vec<u64> {
    let (state, updates) = net.optimizer_state();
    let values = net.params().iter().chain(state.iter().flatten()).flatten();
    values.map(|v| v.to_f64().unwrap().to_bits()).chain([updates]).collect()
}

/// Member i's optimizer of each kind, with settings of its own.
fn optimizer(kind: usize, i: usize) -> Optimizer {
    let f = 1.0 + 0.13 * i as f64;
    match kind {
        0 => Optimizer::Sgd { lr: 0.2 * f, momentum: 0.0, nesterov: false, weight_decay: 0.01 * f },
        1 => Optimizer::Sgd { lr: 0.1 * f, momentum: 0.5 + 0.01 * i as f64, nesterov: false, weight_decay: 0.0 },
        2 => Optimizer::Sgd { lr: 0.05 * f, momentum: 0.9, nesterov: true, weight_decay: 0.02 },
        _ => {
            Optimizer::Adam { lr: 0.01 * f, beta1: 0.8, beta2: 0.99 - 0.001 * i as f64, eps: 1e-8, weight_decay: 0.01 }
        }
    }
}

/// `size` members of `config`, member i with an optimizer of `kind(i)`: with settings of its own, or with
/// member 0's when `shared`.
fn tiny_members<T: crate::linalg::Scalar>(
    config: Config,
    size: usize,
    kind: impl Fn(usize) -> usize,
    shared: bool,
) -> Vec<Network<T>> {
    let settings = |i: usize| if shared { 0 } else { i };
    (0..size)
        .map(|i| Network::new(Config { optimizer: optimizer(kind(i), settings(i)), ..config }, 7 * i as u64).unwrap())
        .collect()
}

/// Every option a tiny network can take, for the lanes against networks alone.
fn tiny_configs() -> Vec<Config> {
    use crate::network::Bias;
    let mut all = vec![];
    let outputs = [
        (Activation::Sigmoid, Loss::HalfSse),
        (Activation::Identity, Loss::Mse),
        (Activation::Softmax, Loss::CrossEntropy),
        (Activation::Sigmoid, Loss::BinaryCrossEntropy),
        (Activation::Tanh, Loss::HalfSse),
        (Activation::Relu, Loss::Mse),
    ];
    for (n, &(n_in, n_hidden, n_out)) in [(2, 2, 2), (3, 5, 4), (1, 1, 1), (16, 16, 16), (4, 9, 1)].iter().enumerate() {
        for (a, hidden) in
            [Activation::Sigmoid, Activation::Tanh, Activation::Relu, Activation::Identity].into_iter().enumerate()
        {
            for (o, &(output, loss)) in outputs.iter().enumerate() {
                for (b, bias) in [Bias::PerNeuron, Bias::Shared, Bias::None].into_iter().enumerate() {
                    // Every pairing on the article's shape, a rotating share of them on the others.
                    if n > 0 && (a + o + b + n) % 4 != 0 {
                        continue;
                    }
                    let c = Config::new(n_in, n_hidden, n_out);
                    let train_bias = (a + o + b) % 2 == 0;
                    all.push(Config {
                        hidden_activation: hidden,
                        output_activation: output,
                        loss,
                        bias,
                        train_bias,
                        ..c
                    });
                }
            }
        }
    }
    all
}

fn sample<T: crate::linalg::Scalar>(c: &Config, seed: usize) -> (Vec<T>, Vec<T>) {
    let x = (0..c.n_in).map(|i| T::of(((i * 7 + seed) % 11) as f64 / 5.0 - 1.0)).collect();
    let t: Vec<T> = if c.loss == Loss::CrossEntropy {
        // One-hot, or soft targets whose mass is not 1 (for odd seeds).
        let (hot, rest) = if seed % 2 == 0 { (1.0, 0.0) } else { (0.6, 0.15) };
        (0..c.n_out).map(|k| T::of(if k == seed % c.n_out { hot } else { rest })).collect()
    } else {
        (0..c.n_out).map(|k| T::of(((k * 3 + seed) % 5) as f64 / 5.0 + 0.05)).collect()
    };
    (x, t)
}

/// Trains a population and the same networks alone, and checks losses and every value bit for bit;
/// returns whether a member failed.
fn population_matches_networks<T: crate::linalg::Scalar>(
    nets: Vec<Network<T>>,
    x: &[T],
    t: &[T],
    steps: usize,
) -> bool {
    let (size, config) = (nets.len(), *nets[0].config());
    let (mut alone, mut nets_again) = (nets.clone(), nets.clone());
    let mut pop = Population::new(nets).unwrap();
    let got = pop.train(x, t, steps, &mut || true);
    let want: Vec<_> = alone.iter_mut().map(|net| net.train(x, t, steps, &mut || true)).collect();
    for (i, net) in alone.iter().enumerate() {
        assert_eq!(bits(&pop.members()[i]), bits(net), "member {i} of {size}, {config:?}");
    }
    // The first member to fail fails the population, as it failed alone; else every loss is the same.
    if let Some((i, e)) = want.iter().enumerate().find_map(|(i, w)| w.as_ref().err().map(|e| (i, e))) {
        assert_eq!(got.unwrap_err(), e.clone().in_member(i));
        return true;
    }
    let got = got.unwrap();
    for (i, want) in want.into_iter().enumerate() {
        let (got, want) = (&got[i], want.unwrap());
        let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same && got.len() == steps, "{config:?}: losses {got:?} vs {want:?}");
    }
    // No member failed, so members the lanes take (tiny, on one sample, optimizers of one kind) took
    // every step side by side: none of it was left to the networks alone, which would hide a fault.
    for group in nets_again.chunks_mut(crate::network::LANES) {
        let mut losses = vec![0.0; group.len() * steps];
        if let Some((_, side_by_side)) = Network::train_lanes(group, x, t, steps, &mut losses, &mut || true) {
            assert_eq!(side_by_side, steps, "{config:?}");
        }
    }
    false
}

fn lanes_match_networks<T: crate::linalg::Scalar>(
    config: Config,
    size: usize,
    kind: impl Fn(usize) -> usize,
    shared: bool,
    steps: usize,
) {
    let (x, t) = sample::<T>(&config, size);
    population_matches_networks(tiny_members::<T>(config, size, kind, shared), &x, &t, steps);
}

#[test]
fn tiny_members_in_lanes_train_bit_for_bit_like_networks() {
    let configs = tiny_configs();
    assert!(configs.len() > 100);
    for (n, &c) in configs.iter().enumerate() {
        // A short group of 16 lanes, a full one, one member alone, two full and a short one; every
        // optimizer kind, with settings of each member's own or one for all (one update for all lanes).
        let (size, shared) = ([11, 16, 1, 35][n % 4], (n / 4) % 2 == 1);
        lanes_match_networks::<f64>(c, size, |_| n % 4, shared, 30);
        lanes_match_networks::<f32>(c, size, |_| (n + 1) % 4, shared, 30);
    }
}

#[test]
fn members_with_optimizers_of_several_kinds_train_alone_and_still_match() {
    let c = Config { bias: crate::network::Bias::Shared, ..Config::new(2, 3, 2) };
    lanes_match_networks::<f64>(c, 10, |i| i % 4, false, 40);
    lanes_match_networks::<f64>(c, 9, |i| usize::from(i == 8), true, 40);
}

/// A 2-2-2 with no activation to bound it, which a large rate makes diverge.
fn linear() -> Config {
    Config {
        hidden_activation: Activation::Identity,
        output_activation: Activation::Identity,
        loss: Loss::Mse,
        ..Config::new(2, 2, 2)
    }
}

#[test]
fn a_member_diverging_in_lanes_fails_as_its_network_does_and_its_group_finishes() {
    let c = linear();
    let (x, t) = sample::<f64>(&c, 0);
    for (steps, lrs) in [(1, [1e306, 1e306]), (3, [1e306, 1e200]), (5, [1e90, 1e306]), (2000, [1e6, 50.0])] {
        let mut nets = tiny_members::<f64>(c, 10, |_| 0, false);
        for (k, lr) in [3, 9].into_iter().zip(lrs) {
            nets[k] = Network::new(Config { optimizer: Optimizer::sgd(lr), ..c }, k as u64).unwrap();
        }
        assert_eq!(population_matches_networks(nets, &x, &t, steps), steps > 1, "steps {steps}");
    }
}

#[test]
fn a_stop_reaches_tiny_members_in_lanes_at_a_whole_step() {
    use crate::backend::Backend;
    let c = Config::new(2, 2, 2);
    let (x, t) = sample::<f64>(&c, 1);
    for stop_at in [1, 2, 4] {
        let mut members = tiny_members::<f64>(c, 6, |_| 1, false);
        let mut asked = 0;
        let mut losses = vec![0.0; 6 * 1_000_000];
        let results = Network::train_together(&mut members, &x, &t, 1_000_000, &mut losses, &mut || {
            asked += 1;
            asked < stop_at
        })
        .unwrap();
        let Err(Error::Interrupted { completed }) = results[0] else { panic!("{:?}", results[0]) };
        assert!(results.iter().all(|r| *r == Err(Error::Interrupted { completed })));
        assert_eq!(completed > 0, stop_at > 1, "{completed}");
        let mut alone = tiny_members::<f64>(c, 6, |_| 1, false);
        for (m, net) in members.iter().zip(&mut alone) {
            net.train(&x, &t, completed, &mut || true).unwrap();
            assert_eq!(bits(m), bits(net));
        }
    }
    // Larger batches and wider nets are not taken together.
    let mut members = tiny_members::<f64>(c, 2, |_| 0, false);
    assert_eq!(Network::<f64>::together(&c, 2), 1);
    assert!(Network::train_together(&mut members, &[0.0; 4], &[0.0; 4], 1, &mut [0.0; 2], &mut || true).is_none());
    assert_eq!(Network::<f64>::together(&Config::new(17, 2, 2), 1), 1);
}

/// A dataset of `rows` rows for `c`, from `sample`'s rows.
fn dataset<T: crate::linalg::Scalar>(c: &Config, rows: usize) -> (Vec<T>, Vec<T>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let (xr, yr) = sample::<T>(c, r);
        x.extend(xr);
        y.extend(yr);
    }
    (x, y)
}

/// `Population::fit` of `nets` against each network's own `fit_with`, bit for bit (losses, values,
/// errors); with `lrs`, member i takes rate `lrs[i][e]` in epoch e; with `rows`, member i fits on its
/// rows of (x, y). Returns whether a member failed. Where none failed, checks that the groups fitted every
/// step side by side when batches have one row and the members as many rows as each other, and were
/// refused otherwise.
fn fit_matches_networks<T: crate::linalg::Scalar>(
    nets: Vec<Network<T>>,
    data: Data<'_, T>,
    plan: FitPlan,
    lrs: Option<&[Vec<f64>]>,
) -> bool {
    let FitPlan { epochs, batch_size, .. } = plan;
    let (size, config) = (nets.len(), *nets[0].config());
    let seeds: Vec<u64> = (0..size as u64).map(|i| 100 + 3 * i).collect();
    let (mut alone, mut again) = (nets.clone(), nets.clone());
    let mut pop = Population::new(nets).unwrap();
    let Data { x, y, rows, .. } = data;
    let got = pop.fit(data, plan, &seeds, lrs, None, &mut || true);
    let want: Vec<_> = alone
        .iter_mut()
        .enumerate()
        .map(|(i, net)| {
            let extras = FitExtras { lrs: lrs.map_or(&[][..], |l| &l[i]), sample_weight: None };
            let (xi, yi) = match rows {
                Some(r) => (gather(x, config.n_in, r[i]).unwrap(), gather(y, config.n_out, r[i]).unwrap()),
                None => (x.to_vec(), y.to_vec()),
            };
            net.fit_with(&xi, &yi, plan, seeds[i], extras, &mut || true)
        })
        .collect();
    for (i, net) in alone.iter().enumerate() {
        assert_eq!(bits(&pop.members()[i]), bits(net), "member {i} of {size}, {config:?}");
        assert_eq!(pop.members()[i].config(), net.config(), "member {i}: its rate");
    }
    if let Some((i, e)) = want.iter().enumerate().find_map(|(i, w)| w.as_ref().err().map(|e| (i, e))) {
        assert_eq!(got.unwrap_err(), e.clone().in_member(i));
        return true;
    }
    let got = got.unwrap();
    for (i, want) in want.into_iter().enumerate() {
        let (got, want) = (&got[i], want.unwrap());
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()) && got.len() == epochs, "{config:?}");
    }
    for (g, group) in again.chunks_mut(crate::network::LANES).enumerate() {
        let these = g * crate::network::LANES..g * crate::network::LANES + group.len();
        let mut losses = vec![0.0; group.len() * epochs];
        let (lrs, seeds) = (lrs.map(|l| &l[these.clone()]), &seeds[these.clone()]);
        let rows = rows.map(|r| &r[these]);
        let counts: Vec<usize> =
            rows.map_or_else(|| vec![y.len() / config.n_out], |r| r.iter().map(|r| r.len()).collect());
        let data = Data { x, y, weights: None, rows };
        let side = Network::fit_lanes(group, data, plan, seeds, lrs, &mut losses, &mut || true);
        // Taken exactly when every batch has one row and the members as many as each other, and then
        // every step side by side.
        let n = counts[0];
        let taken = batch_size.min(n) == 1 && counts.iter().all(|&c| c == n);
        assert_eq!(side.map(|(_, steps)| steps), taken.then_some(epochs * n), "{config:?}");
    }
    false
}

#[test]
fn tiny_members_fit_in_lanes_bit_for_bit_like_networks() {
    for (k, &c) in tiny_configs().iter().enumerate().filter(|(k, _)| k % 3 == 0) {
        let (size, shared, rows) = ([11, 16, 1, 35][k % 4], (k / 4) % 2 == 1, [7, 1, 12][(k / 3) % 3]);
        let (x, y) = dataset::<f64>(&c, rows);
        let nets = tiny_members::<f64>(c, size, |_| k % 4, shared);
        // Shuffled or not, from a later epoch, one-sample batches (or one batch of the only row).
        let fit =
            FitPlan { epochs: 3, batch_size: if rows == 1 { 4 } else { 1 }, shuffle: k % 2 == 0, first_epoch: k % 5 };
        assert!(!fit_matches_networks(nets.clone(), data(&x, &y, None), fit, None), "{c:?}");
        // Batches of several rows: each member alone.
        let several = FitPlan { epochs: 2, batch_size: 3, shuffle: true, first_epoch: 0 };
        assert!(!fit_matches_networks(nets.clone(), data(&x, &y, None), several, None), "{c:?}");
        // Each member on its own rows (a resample, as bagging draws), as many as every other's; then on
        // fewer rows for odd members, which fit alone.
        let picks: Vec<Vec<usize>> = (0..size).map(|i| (0..rows).map(|j| (j * (i + 2) + i) % rows).collect()).collect();
        assert!(!fit_matches_networks(nets.clone(), data(&x, &y, Some(&slices(&picks))), fit, None), "{c:?}");
        let fewer: Vec<Vec<usize>> =
            picks.iter().enumerate().map(|(i, p)| p[i % 2 * usize::from(rows > 1)..].to_vec()).collect();
        assert!(!fit_matches_networks(nets.clone(), data(&x, &y, Some(&slices(&fewer))), fit, None), "{c:?}");
        let (x, y) = dataset::<f32>(&c, rows);
        let nets = tiny_members::<f32>(c, size, |_| (k + 1) % 4, shared);
        let lrs: Vec<Vec<f64>> = (0..size).map(|i| (0..3).map(|e| 0.01 * (1 + i + e) as f64).collect()).collect();
        let ones = FitPlan { epochs: 3, batch_size: 1, shuffle: true, first_epoch: 0 };
        assert!(!fit_matches_networks(nets, data(&x, &y, None), ones, Some(&lrs)), "{c:?}");
    }
}

#[test]
fn a_member_diverging_in_a_lanes_fit_fails_as_its_network_does() {
    let c = linear();
    let (x, y) = dataset::<f64>(&c, 5);
    // Member 3 diverges in its first step, in the second epoch, or in the third epoch's rates.
    for (lrs3, fails) in
        [([1e306, 1e306, 1e306], true), ([0.01, 1e200, 1e200], true), ([0.01, 0.01, -1.0], true), ([0.01; 3], false)]
    {
        let nets = tiny_members::<f64>(c, 10, |_| 0, false);
        let mut lrs: Vec<Vec<f64>> = (0..10).map(|i| vec![0.01 * f64::from(i + 1); 3]).collect();
        lrs[3] = lrs3.to_vec();
        let plan = FitPlan { epochs: 3, batch_size: 1, shuffle: true, first_epoch: 0 };
        assert_eq!(fit_matches_networks(nets, data(&x, &y, None), plan, Some(&lrs)), fails, "{lrs3:?}");
    }
}

#[test]
fn a_stop_reaches_tiny_members_fitting_in_lanes_at_a_whole_step() {
    let c = Config::new(2, 2, 2);
    let (x, y) = dataset::<f64>(&c, 9);
    for stop_at in [1, 2, 3] {
        let mut members = tiny_members::<f64>(c, 6, |_| 1, false);
        let seeds: Vec<u64> = (0..6).collect();
        let (mut asked, mut losses) = (0, vec![0.0; 6 * 100_000]);
        let plan = FitPlan { epochs: 100_000, batch_size: 1, shuffle: true, first_epoch: 0 };
        let (results, _) =
            Network::fit_lanes(&mut members, data(&x, &y, None), plan, &seeds, None, &mut losses, &mut || {
                asked += 1;
                asked < stop_at
            })
            .unwrap();
        let Err(Error::Interrupted { completed }) = results[0] else { panic!("{:?}", results[0]) };
        assert!(results.iter().all(|r| *r == Err(Error::Interrupted { completed })));
        assert_eq!(completed > 0, stop_at > 1, "{completed}");
        // Each member holds `completed` steps: whole epochs, then part of one.
        for (i, m) in members.iter().enumerate() {
            let mut net = tiny_members::<f64>(c, 6, |_| 1, false).remove(i);
            let (epochs, part) = (completed / 9, completed % 9);
            net.fit(&x, &y, FitPlan { epochs, ..plan }, seeds[i], &mut || true).unwrap();
            // The rest: the next epoch's first `part` rows, as `fit` orders them.
            let mut order = Vec::new();
            crate::network::epoch_order(9, seeds[i], epochs, &mut order);
            for &r in &order[..part] {
                net.train(&x[2 * r..2 * r + 2], &y[2 * r..2 * r + 2], 1, &mut || true).unwrap();
            }
            assert_eq!(bits(m), bits(&net), "member {i}");
        }
    }
}

#[test]
fn members_that_sit_out_leave_the_others_to_fit_side_by_side() {
    let c = tiny_configs()[0];
    let (x, y) = dataset::<f64>(&c, 7);
    // On all rows, then each on its own (as bagging draws).
    let picks: Vec<Vec<usize>> = (0..11).map(|i| (0..7).map(|j| (j * (i + 2) + i) % 7).collect()).collect();
    for own_rows in [false, true] {
        let nets = tiny_members::<f64>(c, 11, |_| 1, false);
        let mut pop = Population::new(nets.clone()).unwrap();
        let active: Vec<bool> = (0..11).map(|i| i % 3 != 1).collect();
        let seeds: Vec<u64> = (20..31).collect();
        let lrs: Vec<Vec<f64>> = (1..=11).map(|i| vec![0.01 * f64::from(i), 0.02]).collect();
        let plan = FitPlan { epochs: 2, batch_size: 1, shuffle: true, first_epoch: 0 };
        let picked = slices(&picks);
        let rows = own_rows.then_some(&picked[..]);
        let got = pop.fit(data(&x, &y, rows), plan, &seeds, Some(&lrs), Some(&active), &mut || true).unwrap();
        for (i, mut net) in nets.into_iter().enumerate() {
            if active[i] {
                let extras = FitExtras { lrs: &lrs[i], sample_weight: None };
                let (xi, yi) = if own_rows {
                    (gather(&x, c.n_in, &picks[i]).unwrap(), gather(&y, c.n_out, &picks[i]).unwrap())
                } else {
                    (x.clone(), y.clone())
                };
                let want = net.fit_with(&xi, &yi, plan, seeds[i], extras, &mut || true).unwrap();
                assert!(got[i].iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "member {i}");
                assert_eq!(got[i].len(), 2);
            } else {
                assert!(got[i].is_empty(), "member {i} sat out");
            }
            assert_eq!(bits(&pop.members()[i]), bits(&net), "member {i}");
            assert_eq!(pop.members()[i].config(), net.config(), "member {i}: its rate");
        }
    }
}
