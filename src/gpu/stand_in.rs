//! The stand-in for builds without the `gpu` feature: the GPU backend's names, each failing with
//! `Error::GpuUnavailable`, so that everything above it builds unchanged (candle's dummy backend). It
//! implements `Backend` too, so a method the trait gains is a compile error here, not a drift.

use super::{not_built, AdapterSummary};
use crate::backend::{Backend, OptimizerState, Params};
use crate::error::Result;
use crate::network::{Config, Network};

/// No adapters: this build cannot reach any.
pub fn devices() -> Result<Vec<AdapterSummary>> {
    Err(not_built())
}

/// Cannot be constructed: every constructor fails, so the methods are never reached.
#[derive(Debug)]
pub struct GpuNetwork {
    never: std::convert::Infallible,
}

#[allow(clippy::unused_self, clippy::missing_const_for_fn)]
impl GpuNetwork {
    pub fn new(_config: Config, _seed: u64) -> Result<Self> {
        Err(not_built())
    }
    pub fn from_cpu(_net: &Network<f32>) -> Result<Self> {
        Err(not_built())
    }
    pub fn uses_fused(&self, _rows: usize) -> bool {
        match self.never {}
    }
}

#[allow(clippy::needless_pass_by_value)]
impl Backend for GpuNetwork {
    type T = f32;
    type Data<'a> = std::convert::Infallible;

    fn config(&self) -> &Config {
        match self.never {}
    }
    fn adapter(&self) -> Option<AdapterSummary> {
        match self.never {}
    }
    fn outputs(&self, _x: &[f32], _rows: usize) -> Result<Vec<f32>> {
        match self.never {}
    }
    fn batch_loss(&self, _x: &[f32], _t: &[f32], _rows: usize) -> Result<f64> {
        match self.never {}
    }
    fn steps_per_poll(&self, _rows: usize) -> usize {
        match self.never {}
    }
    fn run_steps(&mut self, _x: &[f32], _t: &[f32], _rows: usize, _steps: usize, _losses: &mut Vec<f64>) -> Result<()> {
        match self.never {}
    }
    fn prepare<'a>(
        &mut self,
        _x: &'a [f32],
        _y: &'a [f32],
        _weights: Option<&'a [f32]>,
        _n: usize,
        _batch_size: usize,
    ) -> Result<Self::Data<'a>> {
        match self.never {}
    }
    fn run_batches(
        &mut self,
        _data: &mut Self::Data<'_>,
        _order: Option<&[usize]>,
        _batches: std::ops::Range<usize>,
        _losses: &mut Vec<f64>,
    ) -> Result<()> {
        match self.never {}
    }
    fn read_params(&self) -> Result<Params<f32>> {
        match self.never {}
    }
    fn write_params(&mut self, _params: Params<f32>) -> Result<()> {
        match self.never {}
    }
    fn read_state(&self) -> Result<OptimizerState<f32>> {
        match self.never {}
    }
    fn write_state(&mut self, _state: OptimizerState<f32>) -> Result<()> {
        match self.never {}
    }
    fn set_lr(&mut self, _lr: f64) -> Result<()> {
        match self.never {}
    }
}
