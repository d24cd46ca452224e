//! `augment(shift: N)`: each training image is moved by a random whole number of pixels, up
//! to N in each direction, with zeros shifted in (MNIST's background). The shift is applied to
//! the u8 batch before it enters the step, so the step function is the same with or without
//! augmentation.
//!
//! The shift of a sample is a pure function of `(seed, epoch, position in the epoch's order)`
//! ([`key`]), so the same run always sees the same shifts, resumed or not, whatever the batch
//! size.

use nnc_ir::init::Rng;

/// The generator seed for the sample at `position` of epoch `epoch`'s order.
pub fn key(seed: u64, epoch: u64, position: u64) -> u64 {
    // Odd multipliers (from SplitMix64 and xxHash) spread the three counters over the 64 bits
    // before SplitMix64's own mixing; a rare collision only repeats a shift.
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ epoch.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ position.wrapping_mul(0x1656_67B1_9E37_79F9)
}

/// The shift (dy, dx) for a sample, each uniform in `-max..=max`.
pub fn draw(max: usize, key: u64) -> (isize, isize) {
    let mut rng = Rng::new(key);
    let span = 2 * max as u64 + 1;
    // Modulo bias is below 2^-59 for the small spans used here.
    let mut d = || (rng.next_u64() % span) as isize - max as isize;
    let dy = d();
    let dx = d();
    (dy, dx)
}

/// Shifts every image of a batch in place. `sample` is the per-image shape `[C, H, W]`;
/// `key_of(i)` gives the generator seed of the batch's `i`-th image.
pub fn shift_batch(
    images: &mut [u8],
    sample: &[usize],
    max: usize,
    key_of: impl Fn(usize) -> u64,
) -> Result<(), String> {
    let &[c, h, w] = sample else {
        return Err(format!(
            "augment shifts images of shape [C, H, W], the data has samples of shape {sample:?}"
        ));
    };
    let size = c * h * w;
    if max == 0 || size == 0 {
        return Ok(());
    }
    let mut scratch = vec![0u8; h * w];
    for (i, image) in images.chunks_exact_mut(size).enumerate() {
        let (dy, dx) = draw(max, key_of(i));
        for plane in image.chunks_exact_mut(h * w) {
            shift_plane(plane, &mut scratch, h, w, dy, dx);
        }
    }
    Ok(())
}

/// Moves an `h`×`w` plane down by `dy` and right by `dx` (negative: up, left), filling with 0.
fn shift_plane(plane: &mut [u8], scratch: &mut [u8], h: usize, w: usize, dy: isize, dx: isize) {
    if dy == 0 && dx == 0 {
        return;
    }
    scratch.fill(0);
    for y in 0..h {
        let sy = y as isize - dy;
        if sy < 0 || sy >= h as isize {
            continue;
        }
        // Destination columns x with a source column x - dx inside the image.
        let x0 = dx.max(0) as usize;
        let x1 = (w as isize + dx.min(0)).max(0) as usize;
        if x0 >= x1 {
            continue;
        }
        let src = sy as usize * w;
        let s0 = (x0 as isize - dx) as usize;
        scratch[y * w + x0..y * w + x1].copy_from_slice(&plane[src + s0..src + s0 + (x1 - x0)]);
    }
    plane.copy_from_slice(scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_with_zero_fill() {
        // 3x3 plane 1..9, moved down 1 and left 1.
        let mut p: Vec<u8> = (1..=9).collect();
        let mut s = vec![0; 9];
        shift_plane(&mut p, &mut s, 3, 3, 1, -1);
        assert_eq!(p, [0, 0, 0, 2, 3, 0, 5, 6, 0]);
        let mut p: Vec<u8> = (1..=9).collect();
        shift_plane(&mut p, &mut s, 3, 3, -2, 2);
        assert_eq!(p, [0, 0, 7, 0, 0, 0, 0, 0, 0]);
        // Shifted right out of the image entirely.
        let mut p: Vec<u8> = (1..=9).collect();
        shift_plane(&mut p, &mut s, 3, 3, 0, 5);
        assert_eq!(p, [0; 9]);
    }

    #[test]
    fn draws_cover_the_range_and_are_seeded() {
        let mut seen = std::collections::BTreeSet::new();
        for pos in 0..500 {
            let (dy, dx) = draw(2, key(7, 1, pos));
            assert!((-2..=2).contains(&dy) && (-2..=2).contains(&dx));
            seen.insert((dy, dx));
        }
        assert_eq!(seen.len(), 25, "every shift occurs");
        assert_eq!(draw(2, key(7, 1, 3)), draw(2, key(7, 1, 3)));
        let differ = (0..50).any(|p| draw(2, key(7, 1, p)) != draw(2, key(8, 1, p)));
        assert!(differ, "the seed changes the shifts");
    }

    #[test]
    fn batch_of_two_channel_images() {
        let mut images: Vec<u8> = (0..2 * 2 * 4).map(|v| v as u8 + 1).collect();
        let before = images.clone();
        shift_batch(&mut images, &[2, 2, 2], 0, |_| 0).unwrap();
        assert_eq!(images, before, "shift 0 changes nothing");
        shift_batch(&mut images, &[2, 2, 2], 1, |i| i as u64).unwrap();
        // Every image keeps its pixel count or loses some to the border, never gains.
        let ink = |v: &[u8]| v.iter().filter(|&&p| p > 0).count();
        assert!(ink(&images) <= ink(&before));
        assert!(shift_batch(&mut images, &[8], 1, |_| 0).is_err());
    }
}
