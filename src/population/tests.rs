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

fn data<'a>(x: &'a [f64], y: &'a [f64], rows: Option<&'a [Vec<usize>]>) -> Data<'a, f64> {
    Data { x, y, weights: None, rows }
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
    let fitted = pop
        .fit(
            data(&x, &t, Some(&rows)),
            3,
            4,
            true,
            &seeds,
            1,
            None,
            Some(&[true, false, true, true, true]),
            &mut || true,
        )
        .unwrap();
    for (i, net) in alone.iter_mut().enumerate() {
        assert_eq!(losses[i], net.train(&x, &t, 7, &mut || true).unwrap());
        if i == 1 {
            assert!(fitted[i].is_empty());
        } else {
            let xi: Vec<f64> = rows[i].iter().flat_map(|&r| x[r * 5..r * 5 + 5].to_vec()).collect();
            let ti: Vec<f64> = rows[i].iter().flat_map(|&r| t[r * 3..r * 3 + 3].to_vec()).collect();
            assert_eq!(fitted[i], net.fit(&xi, &ti, 3, 4, true, seeds[i], 1, &mut || true).unwrap());
        }
        assert_eq!(pop.members()[i].params(), net.params());
        assert_eq!(pop.members()[i].optimizer_state(), net.optimizer_state());
    }
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
    let err = pop.fit(data(&x, &t, None), 1, 2, true, &[1], 0, None, None, &mut || true).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { arg: "seeds", .. }), "{err}");
    let rows = vec![vec![0, 1], vec![4]];
    let err = pop.fit(data(&x, &t, Some(&rows)), 1, 2, true, &[1, 2], 0, None, None, &mut || true).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { arg: "rows", .. }), "{err}");
    assert!(matches!(pop.forward(&x[..3]), Err(Error::ShapeMismatch { arg: "X", .. })));
}

#[test]
fn an_interrupted_fit_counts_steps_not_epochs() {
    let (x, t) = batch(64);
    let mut pop = Population::new(members(3)).unwrap();
    let mut asked = 0;
    let result = pop.fit(data(&x, &t, None), 1_000_000, 4, true, &[1, 2, 3], 0, None, None, &mut || {
        asked += 1;
        asked < 10
    });
    let Err(Error::Interrupted { completed }) = result else { panic!("expected an interruption, got {result:?}") };
    let updates: Vec<u64> = pop.members().iter().map(|m| m.optimizer_state().1).collect();
    assert_eq!(completed as u64, *updates.iter().min().unwrap(), "{updates:?}");
}

#[test]
fn members_take_their_own_rates_per_epoch_and_the_samples_weights() {
    let (x, t) = batch(12);
    let w: Vec<f64> = (0..12).map(|i| f64::from(i % 3)).collect();
    let lrs = vec![vec![0.1, 0.05], vec![0.2, 0.02]];
    let mut pop = Population::new(members(2)).unwrap();
    let mut alone = members(2);
    let got = pop.fit(
        Data { x: &x, y: &t, weights: Some(&w), rows: None },
        2,
        5,
        true,
        &[4, 4],
        0,
        Some(&lrs),
        None,
        &mut || true,
    );
    for (i, net) in alone.iter_mut().enumerate() {
        let extras = FitExtras { lrs: &lrs[i], sample_weight: Some(&w) };
        assert_eq!(got.as_ref().unwrap()[i], net.fit_with(&x, &t, 2, 5, true, 4, 0, extras, &mut || true).unwrap());
        assert_eq!(pop.members()[i].params(), net.params());
    }
    pop.set_lrs(&[0.3, 0.4]).unwrap();
    assert!(matches!(pop.set_lrs(&[0.3]), Err(Error::InvalidConfig { arg: "lrs", .. })));
    let err = pop.set_lrs(&[0.3, -1.0]).unwrap_err();
    assert!(matches!(err, Error::Member { member: 1, .. }), "{err}");
}
