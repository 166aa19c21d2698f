//! A network as a safetensors file: the weights as tensors named like `PyTorch`'s
//! `nn.Sequential(Linear, activation, Linear, activation)` state dict, and everything else as string
//! metadata, so that `safetensors.torch.load_file` + `load_state_dict` reads the weights as they are.
//!
//! Tensors: `0.weight` `(n_hidden, n_in)`, `0.bias` `(n_hidden,)`, `2.weight` `(n_out, n_hidden)`,
//! `2.bias` `(n_out,)`, in the network's dtype (`F32` or `F64`). A shared bias is written once per
//! neuron (`PyTorch` has no shared bias) and must read back as one value; `bias = none` writes no bias
//! tensors.
//!
//! Metadata: `format` = `rustbp`, `format_version`, the configuration (`n_in` ... `eps`, floats in
//! Rust's shortest round-trip notation, so they parse back to the same bits), the optimizer's update
//! count and its state buffers (little-endian bytes in base64, named like `PyTorch`'s optimizer
//! state: `optimizer.0.weight.exp_avg`), and a checksum over all of it. The optimizer state lives in
//! the metadata rather than in tensors because extra tensors would make `PyTorch`'s strict
//! `load_state_dict` fail.

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::linalg::Scalar;
use crate::loss::Loss;
use crate::network::{Bias, Config, Network, B1, B2};
use crate::optim::Optimizer;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::str::FromStr;

/// The version of the layout above; a reader refuses files of any other version.
pub const FORMAT_VERSION: u32 = 1;

/// State-dict names of w1, b1, w2, b2.
pub const TENSOR_NAMES: [&str; 4] = ["0.weight", "0.bias", "2.weight", "2.bias"];

/// The metadata key of the checksum, which covers every other key and every tensor.
const CHECKSUM: &str = "checksum";

/// The element types a file can hold, with their safetensors dtype and byte order.
pub trait FileScalar: Scalar {
    const DTYPE: Dtype;
    const NAME: &'static str;
    fn write_le(values: &[Self], out: &mut Vec<u8>);
    /// `bytes.len()` is a multiple of the element size (checked by the caller).
    fn read_le(bytes: &[u8]) -> Vec<Self>;
}

macro_rules! file_scalar {
    ($t:ty, $dtype:expr, $name:expr) => {
        impl FileScalar for $t {
            const DTYPE: Dtype = $dtype;
            const NAME: &'static str = $name;
            fn write_le(values: &[Self], out: &mut Vec<u8>) {
                out.reserve(values.len() * size_of::<$t>());
                for v in values {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            fn read_le(bytes: &[u8]) -> Vec<Self> {
                bytes
                    .chunks_exact(size_of::<$t>())
                    .map(|c| {
                        let mut a = [0u8; size_of::<$t>()];
                        a.copy_from_slice(c);
                        <$t>::from_le_bytes(a)
                    })
                    .collect()
            }
        }
    };
}
file_scalar!(f32, Dtype::F32, "float32");
file_scalar!(f64, Dtype::F64, "float64");

/// A network read from a file, in the dtype the file holds.
#[derive(Debug, Clone)]
pub enum LoadedNetwork {
    F32(Network<f32>),
    F64(Network<f64>),
}

/// The safetensors bytes of `net`; with `optimizer`, its optimizer state too, so that training
/// resumes exactly where it stopped.
pub fn to_safetensors<T: FileScalar>(net: &Network<T>, optimizer: bool) -> Result<Vec<u8>> {
    let c = *net.config();
    let mut meta = config_metadata(&c);
    meta.insert("dtype".into(), T::NAME.into());
    let (state, updates) = net.optimizer_state();
    meta.insert("optimizer.saved".into(), optimizer.to_string());
    if optimizer {
        meta.insert("optimizer.updates".into(), updates.to_string());
        for (i, slots) in state.iter().enumerate() {
            for (s, buffer) in slots.iter().enumerate() {
                let mut bytes = Vec::new();
                T::write_le(buffer, &mut bytes);
                meta.insert(state_key(&c.optimizer, i, s), base64_encode(&bytes));
            }
        }
    }
    let shapes = c.shapes();
    let mut data: Vec<(&str, Vec<usize>, Vec<u8>)> = Vec::with_capacity(4);
    for (i, p) in net.params().iter().enumerate() {
        let (rows, cols) = shapes[i];
        let mut bytes = Vec::new();
        if i == B1 || i == B2 {
            if cols == 0 {
                continue;
            }
            let width = if i == B1 { c.n_hidden } else { c.n_out };
            let values = if cols == 1 && width != 1 { vec![p[0]; width] } else { p.clone() };
            T::write_le(&values, &mut bytes);
            data.push((TENSOR_NAMES[i], vec![width], bytes));
        } else {
            T::write_le(p, &mut bytes);
            data.push((TENSOR_NAMES[i], vec![rows, cols], bytes));
        }
    }
    let sum = checksum(&meta, data.iter().map(|(name, _, bytes)| (*name, bytes.as_slice())));
    meta.insert(CHECKSUM.into(), sum);
    let mut views = Vec::with_capacity(data.len());
    for (name, shape, bytes) in &data {
        let view =
            TensorView::new(T::DTYPE, shape.clone(), bytes).map_err(|e| file_error(format!("tensor {name}: {e}")))?;
        views.push((*name, view));
    }
    safetensors::serialize(views, Some(meta)).map_err(|e| match e {
        safetensors::SafeTensorError::HeaderTooLarge => file_error(
            "the optimizer state is too large for a safetensors header (100 MB); save without the optimizer state",
        ),
        other => file_error(other.to_string()),
    })
}

/// Reads a network written by `to_safetensors`, checking the format, version, checksum, every shape
/// and dtype, and that every value is finite.
pub fn from_safetensors(bytes: &[u8]) -> Result<LoadedNetwork> {
    // Every failure, including a shape or a value the network itself refuses, says it is the file's.
    read(bytes).map_err(|e| match e {
        Error::InvalidFile { .. } => e,
        other => file_error(other.to_string()),
    })
}

fn read(bytes: &[u8]) -> Result<LoadedNetwork> {
    let file =
        SafeTensors::deserialize(bytes).map_err(|e| file_error(format!("not a readable safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| file_error(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some("rustbp") {
        return Err(file_error(
            "a safetensors file, but not one written by rustbp (its metadata has no format=rustbp)",
        ));
    }
    let version = field(&meta, "format_version")?;
    if version.parse::<u32>().ok() != Some(FORMAT_VERSION) {
        return Err(file_error(format!(
            "format version {version} is not supported: this rustbp ({}) reads version {FORMAT_VERSION}",
            env!("CARGO_PKG_VERSION")
        )));
    }
    let mut tensors: Vec<(String, TensorView<'_>)> = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let stored = field(&meta, CHECKSUM)?;
    let mut rest = meta.clone();
    rest.remove(CHECKSUM);
    if checksum(&rest, tensors.iter().map(|(name, view)| (name.as_str(), view.data()))) != *stored {
        return Err(file_error("checksum mismatch: the file is corrupted"));
    }
    let config = parse_config(&meta)?;
    match field(&meta, "dtype")?.as_str() {
        "float32" => Ok(LoadedNetwork::F32(build(config, &meta, &tensors)?)),
        "float64" => Ok(LoadedNetwork::F64(build(config, &meta, &tensors)?)),
        other => Err(file_error(format!("dtype: expected float32 or float64, got {other:?}"))),
    }
}

fn build<T: FileScalar>(
    config: Config,
    meta: &HashMap<String, String>,
    tensors: &[(String, TensorView<'_>)],
) -> Result<Network<T>> {
    let shapes = config.shapes();
    let mut params: [Vec<T>; 4] = Default::default();
    for (name, view) in tensors {
        let Some(i) = TENSOR_NAMES.iter().position(|n| n == name) else {
            return Err(file_error(format!("unexpected tensor {name:?}; expected {}", TENSOR_NAMES.join(", "))));
        };
        let (rows, cols) = shapes[i];
        let expected = match i {
            B1 | B2 if cols == 0 => {
                return Err(file_error(format!("tensor {name} present, but the network has bias=none")))
            }
            B1 => vec![config.n_hidden],
            B2 => vec![config.n_out],
            _ => vec![rows, cols],
        };
        if view.dtype() != T::DTYPE {
            return Err(file_error(format!("tensor {name}: expected dtype {:?}, got {:?}", T::DTYPE, view.dtype())));
        }
        if view.shape() != expected.as_slice() {
            return Err(Error::ShapeMismatch {
                arg: TENSOR_NAMES[i],
                expected: format!("{expected:?}"),
                got: format!("{:?}", view.shape()),
            });
        }
        let mut values = T::read_le(view.data());
        if (i == B1 || i == B2) && config.bias == Bias::Shared {
            // A shared bias was written once per neuron: every copy must be the same value.
            if values.iter().any(|v| differs(*v, values[0])) {
                return Err(file_error(format!("tensor {name}: a shared bias must hold one value repeated")));
            }
            values.truncate(1);
        }
        params[i] = values;
    }
    for (i, p) in params.iter().enumerate() {
        if p.is_empty() && shapes[i].0 * shapes[i].1 > 0 {
            return Err(file_error(format!("missing tensor {}", TENSOR_NAMES[i])));
        }
    }
    let mut net = Network::with_params(config, params)?;
    let saved = field(meta, "optimizer.saved")? == "true";
    // Only the state this network has may be in the file: none for a frozen or absent parameter.
    let mut known = vec!["optimizer.saved".to_owned()];
    if saved {
        known.push("optimizer.updates".into());
        for (i, slots) in net.optimizer_state().0.iter().enumerate() {
            known.extend((0..slots.len()).map(|s| state_key(&config.optimizer, i, s)));
        }
    }
    let mut keys: Vec<&String> = meta.keys().filter(|k| k.starts_with("optimizer.") && !known.contains(k)).collect();
    keys.sort();
    if let Some(key) = keys.first() {
        return Err(file_error(format!(
            "unexpected metadata field {key:?}: this network has no such optimizer state (expected only {})",
            known.join(", ")
        )));
    }
    if saved {
        let (current, _) = net.optimizer_state();
        let mut state: [Vec<Vec<T>>; 4] = Default::default();
        for (i, slots) in current.iter().enumerate() {
            for (s, slot) in slots.iter().enumerate() {
                let key = state_key(&config.optimizer, i, s);
                let bytes =
                    base64_decode(field(meta, &key)?).ok_or_else(|| file_error(format!("{key}: invalid base64")))?;
                if bytes.len() != slot.len() * size_of::<T>() {
                    return Err(file_error(format!(
                        "{key}: expected {} values, got {} bytes",
                        slot.len(),
                        bytes.len()
                    )));
                }
                let values = T::read_le(&bytes);
                crate::network::check_finite("optimizer_state", &values, values.len().max(1))?;
                state[i].push(values);
            }
        }
        let updates = parse_field(meta, "optimizer.updates", "a non-negative integer")?;
        net.set_optimizer_state(state, updates)?;
    }
    Ok(net)
}

/// Whether two copies of a value differ, counting -0.0 and 0.0 as different (they are other bits).
fn differs<T: Scalar>(a: T, b: T) -> bool {
    a != b || a.is_sign_negative() != b.is_sign_negative()
}

fn config_metadata(c: &Config) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = HashMap::new();
    let mut put = |k: &str, v: String| m.insert(k.into(), v);
    put("format", "rustbp".into());
    put("format_version", FORMAT_VERSION.to_string());
    put("rustbp_version", env!("CARGO_PKG_VERSION").into());
    put("n_in", c.n_in.to_string());
    put("n_hidden", c.n_hidden.to_string());
    put("n_out", c.n_out.to_string());
    put("hidden_activation", c.hidden_activation.name().into());
    put("output_activation", c.output_activation.name().into());
    put("loss", c.loss.name().into());
    put("bias", c.bias.name().into());
    put("train_bias", c.train_bias.to_string());
    // `{:?}` prints the shortest decimal that parses back to the same f64.
    match c.optimizer {
        Optimizer::Sgd { lr, momentum, nesterov, weight_decay } => {
            put("optimizer", "sgd".into());
            put("lr", format!("{lr:?}"));
            put("momentum", format!("{momentum:?}"));
            put("nesterov", nesterov.to_string());
            put("weight_decay", format!("{weight_decay:?}"));
        }
        Optimizer::Adam { lr, beta1, beta2, eps, weight_decay } => {
            put("optimizer", "adam".into());
            put("lr", format!("{lr:?}"));
            put("beta1", format!("{beta1:?}"));
            put("beta2", format!("{beta2:?}"));
            put("eps", format!("{eps:?}"));
            put("weight_decay", format!("{weight_decay:?}"));
        }
    }
    m
}

fn parse_config(meta: &HashMap<String, String>) -> Result<Config> {
    let optimizer = match field(meta, "optimizer")?.as_str() {
        "sgd" => Optimizer::Sgd {
            lr: parse_field(meta, "lr", "a number")?,
            momentum: parse_field(meta, "momentum", "a number")?,
            nesterov: parse_field(meta, "nesterov", "true or false")?,
            weight_decay: parse_field(meta, "weight_decay", "a number")?,
        },
        "adam" => Optimizer::Adam {
            lr: parse_field(meta, "lr", "a number")?,
            beta1: parse_field(meta, "beta1", "a number")?,
            beta2: parse_field(meta, "beta2", "a number")?,
            eps: parse_field(meta, "eps", "a number")?,
            weight_decay: parse_field(meta, "weight_decay", "a number")?,
        },
        other => return Err(file_error(format!("optimizer: expected sgd or adam, got {other:?}"))),
    };
    let config = Config {
        n_in: parse_field(meta, "n_in", "a positive integer")?,
        n_hidden: parse_field(meta, "n_hidden", "a positive integer")?,
        n_out: parse_field(meta, "n_out", "a positive integer")?,
        hidden_activation: parse_field::<Activation>(meta, "hidden_activation", Activation::NAMES)?,
        output_activation: parse_field::<Activation>(meta, "output_activation", Activation::NAMES)?,
        loss: parse_field::<Loss>(meta, "loss", Loss::NAMES)?,
        bias: parse_field::<Bias>(meta, "bias", Bias::NAMES)?,
        train_bias: parse_field(meta, "train_bias", "true or false")?,
        optimizer,
    };
    config.validate()?;
    Ok(config)
}

fn field<'m>(meta: &'m HashMap<String, String>, key: &str) -> Result<&'m String> {
    meta.get(key).ok_or_else(|| file_error(format!("missing metadata field {key:?}")))
}

fn parse_field<V: FromStr>(meta: &HashMap<String, String>, key: &str, expected: &str) -> Result<V> {
    let value = field(meta, key)?;
    value.parse().map_err(|_| file_error(format!("metadata field {key}: expected {expected}, got {value:?}")))
}

/// `PyTorch`'s names for the optimizer state of parameter `i`, buffer `slot`.
fn state_key(optimizer: &Optimizer, i: usize, slot: usize) -> String {
    let buffer = match (optimizer, slot) {
        (Optimizer::Sgd { .. }, _) => "momentum_buffer",
        (Optimizer::Adam { .. }, 0) => "exp_avg",
        (Optimizer::Adam { .. }, _) => "exp_avg_sq",
    };
    format!("optimizer.{}.{buffer}", TENSOR_NAMES[i])
}

fn file_error(reason: impl Into<String>) -> Error {
    Error::InvalidFile { reason: reason.into() }
}

/// 64-bit FNV-1a over the metadata and the tensors, each sorted by name, as hex. It catches accidental
/// corruption (a flipped bit, a zeroed block); it is not a signature.
fn checksum<'a>(meta: &HashMap<String, String>, tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    let mut tensors: Vec<_> = tensors.collect();
    tensors.sort_by_key(|&(name, _)| name);
    let mut keys: Vec<&String> = meta.keys().collect();
    keys.sort();
    for k in keys {
        h.write(k.as_bytes());
        h.write(&[0]);
        h.write(meta[k].as_bytes());
        h.write(&[0]);
    }
    for (name, bytes) in tensors {
        h.write(name.as_bytes());
        h.write(&[0]);
        h.write(bytes);
    }
    format!("fnv1a64:{:016x}", h.0)
}

struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648).
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(B64[(n >> (18 - 6 * k)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes `base64_encode`'s output; None for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (c, chunk) in bytes.chunks(4).enumerate() {
        let last = c + 1 == bytes.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &b in &chunk[..4 - pad] {
            let v = B64.iter().position(|&a| a == b)?;
            n = (n << 6) | v as u32;
        }
        n <<= 6 * pad as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

// Tests fail by panicking: unwrap and panic are how they say so.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    fn trained(optimizer: Optimizer, bias: Bias) -> Network<f64> {
        let config = Config { optimizer, bias, hidden_activation: Activation::Tanh, ..Config::new(3, 5, 2) };
        let mut net = Network::new(config, 11).unwrap();
        let x = [0.1, -0.2, 0.3, 0.5, 0.4, -0.6];
        let t = [0.2, 0.8, 0.6, 0.3];
        net.train(&x, &t, 7, &mut || true).unwrap();
        net
    }

    fn reload(bytes: &[u8]) -> Network<f64> {
        match from_safetensors(bytes).unwrap() {
            LoadedNetwork::F64(n) => n,
            LoadedNetwork::F32(_) => panic!("dtype changed"),
        }
    }

    #[test]
    fn layers_with_one_input_or_one_neuron_round_trip() {
        // A (n, 1) weight is not a shared bias, however its shape reads.
        for (n_in, n_hidden, n_out) in [(1, 3, 2), (2, 1, 3), (1, 1, 1), (3, 4, 1)] {
            for bias in [Bias::PerNeuron, Bias::Shared, Bias::None] {
                let net = Network::<f64>::new(Config { bias, ..Config::new(n_in, n_hidden, n_out) }, 3).unwrap();
                let back = reload(&to_safetensors(&net, true).unwrap());
                assert_eq!(back.params(), net.params(), "{n_in}-{n_hidden}-{n_out} {bias:?}");
            }
        }
    }

    #[test]
    fn base64_round_trips_every_length() {
        for len in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 250) as u8).collect();
            let text = base64_encode(&bytes);
            assert_eq!(base64_decode(&text).unwrap(), bytes);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("Zm8").is_none() && base64_decode("Z=8=").is_none() && base64_decode("Zm8*").is_none());
    }

    #[test]
    fn save_then_load_is_bit_exact_and_resumes_training() {
        let x = [0.3, 0.1, -0.4];
        let t = [0.9, 0.1];
        for opt in
            [Optimizer::adam(0.01), Optimizer::Sgd { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 1e-3 }]
        {
            for bias in [Bias::PerNeuron, Bias::Shared, Bias::None] {
                let mut a = trained(opt, bias);
                let mut b = reload(&to_safetensors(&a, true).unwrap());
                assert_eq!(a.config(), b.config());
                assert_eq!(a.params(), b.params());
                assert_eq!(a.optimizer_state().0, b.optimizer_state().0);
                assert_eq!(a.optimizer_state().1, b.optimizer_state().1);
                let la = a.train(&x, &t, 5, &mut || true).unwrap();
                let lb = b.train(&x, &t, 5, &mut || true).unwrap();
                assert_eq!(la, lb);
                assert_eq!(a.params(), b.params());
            }
        }
    }

    #[test]
    fn without_optimizer_state_the_optimizer_starts_fresh() {
        let a = trained(Optimizer::adam(0.01), Bias::PerNeuron);
        let b = reload(&to_safetensors(&a, false).unwrap());
        assert_eq!(a.params(), b.params());
        assert_eq!(b.optimizer_state().1, 0);
        assert!(b.optimizer_state().0.iter().flatten().flatten().all(|&v| v == 0.0));
    }

    #[test]
    fn rejects_damaged_files() {
        let bytes = to_safetensors(&trained(Optimizer::adam(0.01), Bias::PerNeuron), true).unwrap();
        let err = |b: &[u8]| from_safetensors(b).unwrap_err().to_string();
        assert!(err(&bytes[..bytes.len() - 3]).contains("not a readable safetensors file"));
        assert!(err(&bytes[..5]).contains("not a readable safetensors file"));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(err(&flipped).contains("checksum mismatch"));
        // Same length, so the header stays valid: only the version differs.
        let (from, to) = (b"\"format_version\":\"1\"", b"\"format_version\":\"9\"");
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        let mut newer = bytes.clone();
        newer[at..at + to.len()].copy_from_slice(to);
        assert!(err(&newer).contains("format version 9 is not supported"));
    }

    #[test]
    fn float32_networks_stay_float32() {
        let config = Config::new(2, 3, 1);
        let a: Network<f32> = Network::new(config, 3).unwrap();
        match from_safetensors(&to_safetensors(&a, true).unwrap()).unwrap() {
            LoadedNetwork::F32(b) => assert_eq!(a.params(), b.params()),
            LoadedNetwork::F64(_) => panic!("dtype changed"),
        }
    }
}
