//! `nnc export FILE [--weights CKPT] [--onnx OUT.onnx] [--pytorch DIR]`: a model and its
//! trained weights as files another framework runs (see `nnc_export`).

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use nnc::checkpoint::Checkpoint;

use super::{Outcome, Ui, fail};

/// `nnc export` options.
pub struct ExportCommand {
    pub file: PathBuf,
    /// The checkpoint; `None`: the run directory's.
    pub weights: Option<PathBuf>,
    pub model: Option<String>,
    /// Where to write the ONNX model.
    pub onnx: Option<PathBuf>,
    /// The directory to write `model.py` and `model.safetensors` to.
    pub pytorch: Option<PathBuf>,
    /// Use weights trained from another version of the model's text.
    pub allow_changed_model: bool,
}

/// Runs `nnc export`.
pub fn run(opts: &ExportCommand, ui: &Ui) -> Outcome {
    if opts.onnx.is_none() && opts.pytorch.is_none() {
        eprintln!("error: say what to write: --onnx OUT.onnx, --pytorch DIR, or both");
        return Outcome::Failed;
    }
    let (project, weights) = match super::load_trained(
        &opts.file,
        opts.model.as_deref(),
        opts.weights.as_deref(),
        ui,
    ) {
        Ok(loaded) => loaded,
        Err(outcome) => return outcome,
    };
    let ckpt = match Checkpoint::load(&weights)
        .map(|mut c| {
            if opts.allow_changed_model {
                c.adopt_model(&project);
            }
            c
        })
        .and_then(|c| c.check_fits_model(&weights, &project).map(|()| c))
    {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // How the data source stores samples and preprocesses them (an IDX source's headers are
    // read): the exported graph takes the stored values.
    let layout = match project.data_layout() {
        Ok(l) => l,
        Err(e) => return ui.report(&e),
    };
    let tensors: Vec<nnc_export::Tensor> = ckpt
        .params
        .iter()
        .map(|t| nnc_export::Tensor {
            name: t.name.clone(),
            shape: t.shape.clone(),
            data: t.data.clone(),
        })
        .collect();
    let file = opts.file.display().to_string();
    let weights_shown = weights.display().to_string();
    let origin = nnc_export::Origin {
        file: &file,
        weights: &weights_shown,
    };
    let model = &project.model;
    if let Some(onnx) = &opts.onnx {
        let bytes = match nnc_export::onnx::export(model, &layout.input, &tensors, &origin) {
            Ok(b) => b,
            Err(e) => return fail(e),
        };
        if let Err(e) = nnc::files::write_atomic(onnx, &bytes) {
            return fail(e);
        }
        eprintln!(
            "`{}` exported to {} (ONNX, IR version {}, opset {}, {} bytes)",
            model.name,
            onnx.display(),
            nnc_export::onnx::IR_VERSION,
            nnc_export::onnx::OPSET,
            bytes.len()
        );
    }
    if let Some(dir) = &opts.pytorch {
        let module = match nnc_export::pytorch::export(model, &layout.input, &tensors, &origin) {
            Ok(m) => m,
            Err(e) => return fail(e),
        };
        if let Err(e) = write_pytorch(dir, &module) {
            return fail(e);
        }
        eprintln!(
            "`{}` exported to {} (model.py: class {}; model.safetensors: its state dict)",
            model.name,
            dir.display(),
            module.class
        );
    }
    Outcome::Ok
}

/// `model.py` and `model.safetensors` in `dir` (made if missing).
fn write_pytorch(dir: &Path, module: &nnc_export::pytorch::PyTorchModel) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create `{}`: {}",
            dir.display(),
            nnc::files::reason(&e)
        )
    })?;
    let bytes: Vec<(&str, Vec<u8>, &[usize])> = module
        .tensors
        .iter()
        .map(|t| {
            let data = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (t.name.as_str(), data, t.shape.as_slice())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, data, shape)| {
            TensorView::new(Dtype::F32, shape.to_vec(), data).map(|v| (name.to_string(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    // `format: pt`, as safetensors.torch.save_file writes it.
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())?;
    nnc::files::write_atomic(&dir.join("model.safetensors"), &weights)?;
    nnc::files::write_atomic(&dir.join("model.py"), module.source.as_bytes())
}
