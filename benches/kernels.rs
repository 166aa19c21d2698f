//! Criterion benchmarks of the Rust kernels, through the public API only, in f32 and f64:
//! - `forward`: `Backend::forward` of the CPU network on a batch (`z1 = X w1^T + b1`, `h = f(z1)`, `z2 = h w2^T + b2`,
//!   `o = g(z2)`);
//! - `backward`: the three products of backpropagation with `linalg::matmul`, on the shapes the network
//!   uses: `dw2 = dz2^T h` (`n_out x n_hidden`), `dz1 = dz2 w2` (`B x n_hidden`) and `dw1 = dz1^T X`
//!   (`n_hidden x n_in`);
//! - `step`: `Backend::train_step`, a full training step (forward, loss, backward, optimizer update);
//! - `population`: 64 networks trained 100 steps on one sample, as a loop of `Backend::train` and as one
//!   `Population::train` (whose tiny members run side by side in SIMD lanes), per network-step.
//!
//! Shapes: the article's 2-2-2 and the nets 16-16-16, 32-32-32 and 128-128-128 on one sample (the
//! one-sample path: rows in registers and rows in blocks; SGD's update written in place), 64-32-10 on a
//! batch of 32 (a population member on the digits), 64-128-10 on a batch of 64 (the digits network), and
//! 784-1024-10 on a batch of 256 (MNIST-sized). `cargo bench` runs them all; `cargo bench -- step/f32`
//! picks a subset. A regression shows here before it shows in `rustbp bench`.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rustbp::linalg::{matmul, Mat};
use rustbp::{Activation, Backend, Config, Loss, Network, Optimizer, Population, Scalar};
use std::hint::black_box;

/// `(name, n_in, n_hidden, n_out, batch)` of every benchmarked shape.
const SHAPES: [(&str, usize, usize, usize, usize); 7] = [
    ("2-2-2_b1", 2, 2, 2, 1),
    ("16-16-16_b1", 16, 16, 16, 1),
    ("32-32-32_b1", 32, 32, 32, 1),
    ("128-128-128_b1", 128, 128, 128, 1),
    ("64-32-10_b32", 64, 32, 10, 32),
    ("64-128-10_b64", 64, 128, 10, 64),
    ("784-1024-10_b256", 784, 1024, 10, 256),
];

fn config(n_in: usize, n_hidden: usize, n_out: usize) -> Config {
    if n_hidden == 2 {
        // The article's: sigmoid layers, half_sse, plain SGD with lr 0.5.
        return Config::new(n_in, n_hidden, n_out);
    }
    Config {
        hidden_activation: Activation::Relu,
        output_activation: Activation::Softmax,
        loss: Loss::CrossEntropy,
        optimizer: Optimizer::Sgd { lr: 0.01, momentum: 0.9, nesterov: false, weight_decay: 0.0 },
        ..Config::new(n_in, n_hidden, n_out)
    }
}

/// Deterministic inputs in [0, 1) and one-hot targets, without a random-number dependency.
fn data<T: Scalar>(n_in: usize, n_out: usize, batch: usize) -> (Vec<T>, Vec<T>) {
    let x = (0..batch * n_in).map(|i| T::of(((i * 7919) % 1000) as f64 / 1000.0)).collect();
    let t = (0..batch * n_out).map(|i| T::of(f64::from(u8::from(i % n_out == (i / n_out) % n_out)))).collect();
    (x, t)
}

/// Multiply-adds of the forward pass of one batch.
fn forward_work(n_in: usize, n_hidden: usize, n_out: usize, batch: usize) -> u64 {
    (batch * (n_in * n_hidden + n_hidden * n_out)) as u64
}

fn bench_dtype<T: Scalar>(c: &mut Criterion, dtype: &str) {
    for &(name, n_in, n_hidden, n_out, batch) in &SHAPES {
        let Ok(mut net) = Network::<T>::new(config(n_in, n_hidden, n_out), 0) else {
            return;
        };
        let (x, t) = data::<T>(n_in, n_out, batch);
        let work = forward_work(n_in, n_hidden, n_out, batch);

        let mut g = c.benchmark_group(format!("forward/{dtype}"));
        g.throughput(Throughput::Elements(work));
        g.bench_with_input(BenchmarkId::from_parameter(name), &x, |b, x| {
            b.iter(|| net.forward(black_box(x)));
        });
        g.finish();

        // The backward products, on buffers shaped like the network's.
        let h = vec![T::of(0.5); batch * n_hidden];
        let dz2 = vec![T::of(0.01); batch * n_out];
        let w2 = vec![T::of(0.1); n_out * n_hidden];
        let (mut dw2, mut dz1, mut dw1) =
            (vec![T::zero(); n_out * n_hidden], vec![T::zero(); batch * n_hidden], vec![T::zero(); n_hidden * n_in]);
        let mut g = c.benchmark_group(format!("backward/{dtype}"));
        g.throughput(Throughput::Elements(2 * work));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                matmul(n_out, n_hidden, batch, Mat::t(&dz2, n_out), Mat::n(&h, n_hidden), &mut dw2, false);
                matmul(batch, n_hidden, n_out, Mat::n(&dz2, n_out), Mat::n(&w2, n_hidden), &mut dz1, false);
                matmul(n_hidden, n_in, batch, Mat::t(&dz1, n_hidden), Mat::n(black_box(&x), n_in), &mut dw1, false);
                black_box((&dw2, &dw1));
            });
        });
        g.finish();

        let mut g = c.benchmark_group(format!("step/{dtype}"));
        g.throughput(Throughput::Elements(3 * work));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| net.train_step(black_box(&x), black_box(&t)));
        });
        g.finish();
    }
}

fn bench_population<T: Scalar>(c: &mut Criterion, dtype: &str) {
    const MEMBERS: usize = 64;
    const STEPS: usize = 100;
    let mut g = c.benchmark_group(format!("population/{dtype}"));
    g.throughput(Throughput::Elements((MEMBERS * STEPS) as u64));
    for (name, n) in [("2-2-2_b1", 2), ("16-16-16_b1", 16)] {
        let Ok(nets) =
            (0..MEMBERS as u64).map(|i| Network::<T>::new(config(n, n, n), i)).collect::<Result<Vec<_>, _>>()
        else {
            return;
        };
        let (x, t) = data::<T>(n, n, 1);
        // From the same start every time: trained on for long, the nets would saturate and compute with
        // subnormal numbers, which is another benchmark.
        g.bench_function(BenchmarkId::new("loop", name), |b| {
            b.iter_batched_ref(
                || nets.clone(),
                |nets| nets.iter_mut().map(|net| net.train(black_box(&x), &t, STEPS, &mut || true)).count(),
                BatchSize::SmallInput,
            );
        });
        g.bench_function(BenchmarkId::new("population", name), |b| {
            b.iter_batched_ref(
                || Population::new(nets.clone()),
                |pop| {
                    if let Ok(pop) = pop {
                        black_box(pop.train(black_box(&x), &t, STEPS, &mut || true)).ok();
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

fn kernels(c: &mut Criterion) {
    bench_dtype::<f32>(c, "f32");
    bench_dtype::<f64>(c, "f64");
    bench_population::<f32>(c, "f32");
    bench_population::<f64>(c, "f64");
}

criterion_group! {
    name = benches;
    // Short runs: the machine is small and shared; medians over 20 samples are enough to catch regressions.
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = kernels
}
criterion_main!(benches);
