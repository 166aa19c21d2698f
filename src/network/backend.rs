//! The CPU network as a `Backend`: its primitives run the math of `crate::network` on the calling
//! thread (products and large elementwise loops spread over rayon's threads).

use super::{gather, Network};
use crate::backend::{Backend, FitPlan, KeepGoing, OptimizerState, Params};
use crate::error::Result;
use crate::gpu::AdapterSummary;
use crate::linalg::Scalar;
use crate::network::Config;
use crate::population::Data;
use crate::{memory, threads};

/// Multiply-adds between two questions to `keep_going`: a few milliseconds, so Ctrl-C is answered
/// quickly without paying a clock read per tiny step.
const POLL_WORK: usize = 10_000_000;

impl<T: Scalar> Network<T> {
    /// Runs `f` on the thread pool when a step on `rows` rows has a parallel region (a large product,
    /// activation or update): the run of steps is handed to the pool once, instead of once per region.
    fn in_pool<R: Send>(&mut self, rows: usize, f: impl FnOnce(&mut Self) -> R + Send) -> R {
        if self.config.has_parallel_regions(rows) {
            threads::install(|| f(self))
        } else {
            f(self)
        }
    }
}

/// A `fit` data set on the CPU: the caller's rows (and samples' loss factors), and room to gather
/// shuffled batches into.
pub struct Rows<'a, T> {
    x: &'a [T],
    y: &'a [T],
    w: Option<&'a [T]>,
    n: usize,
    batch_size: usize,
    xb: Vec<T>,
    yb: Vec<T>,
    wb: Vec<T>,
}

impl<T: Scalar> Backend for Network<T> {
    type T = T;
    type Data<'a> = Rows<'a, T>;

    fn config(&self) -> &Config {
        &self.config
    }

    fn adapter(&self) -> Option<AdapterSummary> {
        None
    }

    /// Allocates its own buffers, so many threads may predict at once.
    fn outputs(&self, x: &[T], rows: usize) -> Result<Vec<T>> {
        Ok(self.forward_wide(x, rows)?.o)
    }

    fn batch_loss(&self, x: &[T], t: &[T], rows: usize) -> Result<f64> {
        let acts = self.forward_wide(x, rows)?;
        Ok(self.config.loss.value(&acts.z2, &acts.o, t, self.config.n_out))
    }

    /// The trait's step without its loss vector: the hot path of a Python loop of single steps.
    fn train_step(&mut self, x: &[T], t: &[T]) -> Result<f64> {
        let rows = self.config.check_pair(x, t, "T")?;
        self.reserve(rows)?;
        self.in_pool(rows, |net| net.step(x, t, rows)).map_err(|e| e.at_step(0, vec![]))
    }

    fn together(config: &Config, rows: usize) -> usize {
        Self::lanes(config, rows)
    }

    fn train_together(
        members: &mut [Self],
        x: &[T],
        t: &[T],
        steps: usize,
        losses: &mut [f64],
        keep_going: KeepGoing,
    ) -> Option<Vec<Result<()>>> {
        Self::train_lanes(members, x, t, steps, losses, keep_going).map(|(results, _)| results)
    }

    fn fit_together(
        members: &mut [Self],
        data: Data<'_, T>,
        plan: FitPlan,
        seeds: &[u64],
        lrs: Option<&[Vec<f64>]>,
        losses: &mut [f64],
        keep_going: KeepGoing,
    ) -> Option<Vec<Result<()>>> {
        Self::fit_lanes(members, data, plan, seeds, lrs, losses, keep_going).map(|(results, _)| results)
    }

    fn steps_per_poll(&self, rows: usize) -> usize {
        (POLL_WORK / self.config.step_work(rows).max(1)).max(1)
    }

    fn whole_call<R: Send>(
        &mut self,
        rows: usize,
        keep_going: KeepGoing,
        work: impl FnOnce(&mut Self, KeepGoing) -> R + Send,
    ) -> R {
        // Called from a thread outside the pool (Python's), each parallel region would hand its work over
        // and wait: tens of microseconds each, several a step.
        if self.config.has_parallel_regions(rows) && threads::count() > 1 {
            threads::polled(keep_going, |keep_going| work(self, keep_going))
        } else {
            work(self, keep_going)
        }
    }

    fn run_steps(&mut self, x: &[T], t: &[T], rows: usize, steps: usize, losses: &mut Vec<f64>) -> Result<()> {
        self.reserve(rows)?;
        if self.is_tiny(rows) {
            return self.train_tiny((x, t), |_| 0, steps, &mut |l| losses.push(l));
        }
        self.in_pool(rows, |net| {
            for _ in 0..steps {
                losses.push(net.step(x, t, rows)?);
            }
            Ok(())
        })
    }

    fn prepare<'a>(
        &mut self,
        x: &'a [T],
        y: &'a [T],
        w: Option<&'a [T]>,
        n: usize,
        batch_size: usize,
    ) -> Result<Rows<'a, T>> {
        self.reserve(batch_size.min(n))?;
        Ok(Rows { x, y, w, n, batch_size, xb: Vec::new(), yb: Vec::new(), wb: Vec::new() })
    }

    fn run_batches(
        &mut self,
        data: &mut Rows<'_, T>,
        order: Option<&[usize]>,
        batches: std::ops::Range<usize>,
        losses: &mut Vec<f64>,
    ) -> Result<()> {
        let (n_in, n_out) = (self.config.n_in, self.config.n_out);
        if data.batch_size == 1 && data.w.is_none() && self.is_tiny(1) {
            // Every batch one row: one run of steps, each on its row.
            let row =
                |s: usize| order.map_or(batches.start + s, |o| o.get(batches.start + s).copied().unwrap_or(usize::MAX));
            return self.train_tiny((data.x, data.y), row, batches.len(), &mut |l| losses.push(l));
        }
        self.in_pool(data.batch_size.min(data.n), |net| {
            for b in batches {
                let (start, end) = (b * data.batch_size, ((b + 1) * data.batch_size).min(data.n));
                let (xs, ys, ws) = match order {
                    Some(order) => {
                        gather(data.x, n_in, &order[start..end], &mut data.xb);
                        gather(data.y, n_out, &order[start..end], &mut data.yb);
                        if let Some(w) = data.w {
                            gather(w, 1, &order[start..end], &mut data.wb);
                        }
                        (&data.xb[..], &data.yb[..], data.w.map(|_| &data.wb[..]))
                    }
                    None => (
                        &data.x[start * n_in..end * n_in],
                        &data.y[start * n_out..end * n_out],
                        data.w.map(|w| &w[start..end]),
                    ),
                };
                losses.push(net.step_weighted(xs, ys, ws, end - start)?);
            }
            Ok(())
        })
    }

    fn read_params(&self) -> Result<Params<T>> {
        let mut params: Params<T> = Default::default();
        for (copy, p) in params.iter_mut().zip(&self.params) {
            *copy = memory::copy("weights", p)?;
        }
        Ok(params)
    }

    fn write_params(&mut self, params: Params<T>) -> Result<()> {
        self.set_params(params)
    }

    fn read_state(&self) -> Result<OptimizerState<T>> {
        let mut state: [Vec<Vec<T>>; 4] = Default::default();
        for (copy, slots) in state.iter_mut().zip(&self.state) {
            for s in slots {
                copy.push(memory::copy("optimizer state", s)?);
            }
        }
        Ok((state, self.updates))
    }

    fn write_state(&mut self, (state, updates): OptimizerState<T>) -> Result<()> {
        self.set_optimizer_state(state, updates)
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        let optimizer = self.config.optimizer.with_lr(lr);
        optimizer.validate()?;
        self.config.optimizer = optimizer;
        Ok(())
    }
}
