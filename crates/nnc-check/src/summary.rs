//! The model summary, as a table for people (like Keras' `model.summary()`) and as JSON for tools.

use std::fmt::Write;

use serde::Serialize;

use crate::model::{Data, Model, num};

/// `61706` → `61,706`
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as `241.0 KiB`.
pub fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", units[u])
    }
}

/// The summary table of a model.
pub fn table(model: &Model) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        model.input.name.clone(),
        "input".into(),
        model.input.shape.to_string(),
        "0".into(),
        "0".into(),
    ]];
    for l in &model.layers {
        rows.push([
            l.name.clone(),
            l.describe(),
            l.output_shape.to_string(),
            thousands(l.param_count()),
            thousands(l.flops),
        ]);
    }
    let header = ["Layer", "Kind", "Output shape", "Params", "FLOPs"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4]
        )
        .trim_end()
        .to_string()
    };
    let total_width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    let rule = "─".repeat(total_width);
    let mut out = String::new();
    let _ = writeln!(out, "Model: {}", model.name);
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(out, "{}", line(header));
    let _ = writeln!(out, "{rule}");
    for r in &rows {
        let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    let _ = writeln!(out, "{rule}");
    let params = model.param_count();
    let _ = writeln!(
        out,
        "Trainable params: {} ({} as f32)",
        thousands(params),
        bytes(params * 4)
    );
    let _ = writeln!(
        out,
        "Forward FLOPs per sample: {} (2 per multiply-add)",
        thousands(model.flops_per_sample())
    );
    if let Some(t) = &model.train {
        let schedule = if t.schedule.is_constant() {
            String::new()
        } else {
            format!(", {} schedule", t.schedule)
        };
        let _ = writeln!(
            out,
            "Training: {}, {}{schedule}, batch {}, {} epoch{}, seed {}",
            t.loss.keyword(),
            t.optimizer,
            t.batch,
            t.epochs,
            if t.epochs == 1 { "" } else { "s" },
            t.seed
        );
        let _ = writeln!(out, "Data: {}", data(&t.data));
        if let Some(test) = &t.test {
            let _ = writeln!(out, "Test data: {}", data(test));
        }
    }
    out
}

fn data(d: &Data) -> String {
    match d {
        Data::Mnist {
            pad,
            scale,
            shift,
            flatten,
        } => {
            let shape = d.sample_shape().map(|s| s.compact()).unwrap_or_default();
            let mut opts = vec![format!("scale {}", num(*scale))];
            if *shift != 0.0 {
                opts.push(format!("shift {}", num(*shift)));
            }
            if *pad > 0 {
                opts.push(format!("pad {pad}"));
            }
            if *flatten {
                opts.push("flattened".into());
            }
            format!(
                "MNIST, 60,000 train / 10,000 test images of {shape} ({}), 10 classes",
                opts.join(", ")
            )
        }
        Data::Idx { images, labels, .. } => format!("IDX images {images:?}, labels {labels:?}"),
        Data::Csv { path, target } => format!("CSV {path:?}, target {}", target.join(", ")),
        Data::Inline { inputs, targets } => format!(
            "inline table, {} row{} of {} -> {}",
            inputs.len(),
            if inputs.len() == 1 { "" } else { "s" },
            inputs.first().map_or(0, Vec::len),
            targets.first().map_or(0, Vec::len)
        ),
    }
}

/// The JSON form of a model summary.
#[derive(Serialize)]
pub struct Json {
    pub model: String,
    pub layers: Vec<JsonLayer>,
    pub total_params: u64,
    pub flops_per_sample: u64,
}

#[derive(Serialize)]
pub struct JsonLayer {
    pub name: String,
    pub kind: String,
    pub output_shape: Vec<usize>,
    pub params: u64,
    pub flops: u64,
}

pub fn json(model: &Model) -> Json {
    Json {
        model: model.name.clone(),
        layers: model
            .layers
            .iter()
            .map(|l| JsonLayer {
                name: l.name.clone(),
                kind: l.kind.keyword().to_string(),
                output_shape: l.output_shape.0.clone(),
                params: l.param_count(),
                flops: l.flops,
            })
            .collect(),
        total_params: model.param_count(),
        flops_per_sample: model.flops_per_sample(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(61706), "61,706");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(bytes(246824), "241.0 KiB");
    }
}
