//! Image data in contractions: which operands are the u8 images scaled to floats (where the
//! sparse product, `nnc_kernels::sparse`, may skip their zeros), and where the scaling needs
//! no kernel because only contractions read it, from the bytes (`Storage::Scaled`).

use nnc_ir::{DType, Function, Op, ValueId};

/// The `to_f32` instruction of a u8 parameter that `v` is, perhaps reshaped.
fn image_source(f: &Function, mut v: ValueId) -> Option<usize> {
    loop {
        let i = f.insts.iter().position(|i| i.result == v)?;
        let inst = &f.insts[i];
        match (&inst.op, inst.args.as_slice()) {
            (Op::Reshape { .. }, &[x]) => v = x,
            (Op::ToF32 { .. }, &[x]) => {
                return (f.params.contains(&x) && f.ty(x).dtype == DType::U8).then_some(i);
            }
            _ => return None,
        }
    }
}

/// Whether `v` is image data: `to_f32` of a u8 parameter, perhaps reshaped.
pub fn from_u8_data(f: &Function, v: ValueId) -> bool {
    image_source(f, v).is_some()
}

/// Whether the contractions that read the result of instruction `i`, a `to_f32` of a u8
/// parameter, read the bytes themselves (the image scaling fused into its consumers): every
/// reader, through reshapes, is the first operand of a `matmul` whose B is not transposed (the
/// routines that take `sparse::Data::U8`), and no step result is among them. The instruction then
/// needs no kernel and its result no buffer.
pub fn read_as_bytes(f: &Function, i: usize) -> bool {
    let inst = &f.insts[i];
    let Op::ToF32 { .. } = inst.op else {
        return false;
    };
    let x = inst.args[0];
    if !(f.params.contains(&x) && f.ty(x).dtype == DType::U8) {
        return false;
    }
    // The values that are the scaled bytes: the result and its reshapes.
    let mut same = vec![inst.result];
    let mut k = 0;
    while k < same.len() {
        let v = same[k];
        k += 1;
        if f.results.contains(&v) {
            return false;
        }
        for user in f.insts.iter().filter(|u| u.args.contains(&v)) {
            match &user.op {
                Op::Reshape { .. } => same.push(user.result),
                Op::MatMul { tb: false, .. } if user.args[0] == v && user.args[1] != v => {}
                _ => return false,
            }
        }
    }
    true
}

/// The scale of the image bytes that a contraction reading `v` as its first operand reads
/// itself ([`read_as_bytes`]), if it does.
pub fn bytes_scale(f: &Function, v: ValueId) -> Option<f32> {
    let i = image_source(f, v)?;
    match f.insts[i].op {
        Op::ToF32 { scale } if read_as_bytes(f, i) => Some(scale as f32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scaling is left to the contractions only when nothing else reads it.
    #[test]
    fn images_are_read_as_bytes_only_by_contractions() {
        let scaled = |uses: &str, results: &str| {
            let text = format!(
                "func @f(%x: u8[4,2,2], %w: f32[4,3], %v: f32[3,4]) -> ({results}) {{
                   %a: f32[4,2,2] = to_f32 %x, scale=0.5
                   %r: f32[4,4] = reshape %a, shape=[4,4]
                   {uses}
                 }}"
            );
            let f = nnc_ir::parse::parse_function(&text).unwrap_or_else(|e| panic!("{e}"));
            (read_as_bytes(&f, 0), bytes_scale(&f, f.insts[1].result))
        };
        let product = "%y: f32[4,3] = matmul %r, %w\n";
        assert_eq!(
            scaled(&format!("{product} return %y"), "f32[4,3]"),
            (true, Some(0.5))
        );
        let tn = "%z: f32[4,3] = matmul_tn %r, %w\n";
        assert_eq!(
            scaled(
                &format!("{product}{tn} return %y, %z"),
                "f32[4,3], f32[4,3]"
            ),
            (true, Some(0.5))
        );
        // B transposed, an elementwise reader, the scaled images returned.
        let nt = "%z: f32[4,3] = matmul_nt %r, %v\n";
        assert_eq!(
            scaled(&format!("{nt} return %z"), "f32[4,3]"),
            (false, None)
        );
        let relu = "%z: f32[4,4] = relu %r\n";
        assert_eq!(
            scaled(
                &format!("{product}{relu} return %y, %z"),
                "f32[4,3], f32[4,4]"
            ),
            (false, None)
        );
        assert_eq!(
            scaled(&format!("{product} return %y, %r"), "f32[4,3], f32[4,4]"),
            (false, None)
        );
    }
}
