//! The weights file format: safetensors read as f32 whatever the stored float type, and written
//! as f32 with one metadata note. Synthetic weights, pruned models and the ONNX export share it.

use std::path::Path;

use super::bert::BertTensors;
use super::BertConfig;
use crate::error::{Error, Result};

/// Every tensor of `cfg`'s model from safetensors `bytes` (read from `origin`, named in
/// errors), as f32 whatever the file's float type.
pub fn read_f32(cfg: &BertConfig, bytes: &[u8], origin: &Path) -> Result<BertTensors<Vec<f32>>> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::Model(format!("{}: cannot read weights: {e}", origin.display())))?;
    BertTensors::read(cfg, |name, _| {
        let t = st
            .tensor(name)
            .map_err(|_| Error::Model(format!("{}: missing tensor {name}", origin.display())))?;
        let d = t.data();
        Ok(match t.dtype() {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::Model(format!(
                    "{}: tensor {name} has unsupported dtype {other:?}",
                    origin.display()
                )))
            }
        })
    })
}

/// Writes f32 tensors `(name, shape, values)` atomically to `path` as safetensors, with one
/// metadata entry `recbench = note`.
pub fn write_f32(
    path: &Path,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    note: &str,
) -> Result<()> {
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Model(format!("building tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    // One metadata entry: safetensors stores metadata from a HashMap, whose order is random,
    // so several entries would make the header (and the file) differ from run to run.
    let metadata = std::collections::HashMap::from([("recbench".to_string(), note.to_string())]);
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Model(format!("serialising {}: {e}", path.display())))?;
    crate::util::files::write_atomic(path, &bytes)
}
