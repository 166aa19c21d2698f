//! The stand-in for builds without the `gpu` feature: the GPU backend's names, each failing with
//! `Error::GpuUnavailable`, so that everything above it builds unchanged (candle's dummy backend).

use super::{not_built, AdapterSummary};
use crate::error::Result;
use crate::network::{Config, KeepGoing, Network, StepTrace};

/// No adapters: this build cannot reach any.
pub fn devices() -> Result<Vec<AdapterSummary>> {
    Err(not_built())
}

/// Cannot be constructed: every constructor fails, so the methods are never reached.
#[derive(Debug)]
pub struct GpuNetwork {
    never: std::convert::Infallible,
}

#[allow(clippy::unused_self, clippy::needless_pass_by_value, clippy::missing_const_for_fn)]
impl GpuNetwork {
    pub fn new(_config: Config, _seed: u64) -> Result<Self> {
        Err(not_built())
    }
    pub fn from_cpu(_net: &Network<f32>) -> Result<Self> {
        Err(not_built())
    }
    pub fn config(&self) -> &Config {
        match self.never {}
    }
    pub fn adapter(&self) -> AdapterSummary {
        match self.never {}
    }
    pub fn uses_fused(&self, _rows: usize) -> bool {
        match self.never {}
    }
    pub fn forward(&mut self, _x: &[f32]) -> Result<Vec<f32>> {
        match self.never {}
    }
    pub fn loss(&mut self, _x: &[f32], _t: &[f32]) -> Result<f64> {
        match self.never {}
    }
    pub fn train_step(&mut self, _x: &[f32], _t: &[f32]) -> Result<f64> {
        match self.never {}
    }
    pub fn train(&mut self, _x: &[f32], _t: &[f32], _steps: usize, _keep_going: KeepGoing) -> Result<Vec<f64>> {
        match self.never {}
    }
    pub fn fit(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        _epochs: usize,
        _batch_size: usize,
        _shuffle: bool,
        _seed: u64,
        _first_epoch: usize,
        _keep_going: KeepGoing,
    ) -> Result<Vec<f64>> {
        match self.never {}
    }
    pub fn params(&self) -> Result<[Vec<f32>; 4]> {
        match self.never {}
    }
    pub fn set_params(&mut self, _params: [Vec<f32>; 4]) -> Result<()> {
        match self.never {}
    }
    pub fn optimizer_state(&self) -> Result<([Vec<Vec<f32>>; 4], u64)> {
        match self.never {}
    }
    pub fn set_optimizer_state(&mut self, _state: [Vec<Vec<f32>>; 4], _updates: u64) -> Result<()> {
        match self.never {}
    }
    pub fn explain_step(&mut self, _x: &[f32], _t: &[f32]) -> Result<StepTrace<f32>> {
        match self.never {}
    }
}
