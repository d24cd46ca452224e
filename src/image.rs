//! Images for `nnc predict`: PNG (any colour type and bit depth) or PGM (P2 or P5) to 8-bit
//! grayscale, then the preparation that makes a drawing look like the training data:
//!
//! - MNIST digits are white on black: an image whose border is bright (a dark digit on white
//!   paper) is inverted;
//! - an image of the model's input size is used as it is; for `mnist()` models any other size
//!   is framed as MNIST was made (the ink's bounding box scaled to fit 20x20, keeping its
//!   aspect ratio, and placed in 28x28 so that its centre of mass is the centre); for other
//!   image data it is resized to the input size by area averaging.

use std::io::Cursor;
use std::path::Path;

use crate::files;

/// Image files larger than this are not read (a digit is kilobytes).
const MAX_FILE: u64 = 64 << 20;
/// Nor images with more pixels than this.
const MAX_PIXELS: usize = 1 << 26;

/// An 8-bit grayscale image, row-major; 0 is black.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gray {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `height × width` bytes, row-major.
    pub pixels: Vec<u8>,
}

impl Gray {
    fn at(&self, x: usize, y: usize) -> u8 {
        self.pixels[y * self.width + x]
    }
}

/// Reads a PNG or PGM file (told apart by their first bytes, not the name).
pub fn read(path: &Path) -> Result<Gray, String> {
    let bytes = files::read_limited(path, MAX_FILE, "an image")?;
    let shown = path.display().to_string();
    let image = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(&bytes, &shown)?
    } else if bytes.starts_with(b"P5") || bytes.starts_with(b"P2") {
        decode_pgm(&bytes, &shown)?
    } else {
        return Err(format!(
            "{shown}: not a PNG or PGM image (it starts with {})",
            bytes
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    };
    if image.width == 0 || image.height == 0 {
        return Err(format!("{shown}: the image is empty (0 pixels)"));
    }
    Ok(image)
}

fn decode_png(bytes: &[u8], shown: &str) -> Result<Gray, String> {
    let bad = |e: png::DecodingError| format!("{shown}: not a valid PNG image: {e}");
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(bad)?;
    let (width, height) = (reader.info().width as usize, reader.info().height as usize);
    if width.saturating_mul(height) > MAX_PIXELS {
        return Err(format!(
            "{shown}: {width}x{height} pixels is more than nnc reads ({MAX_PIXELS})"
        ));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| format!("{shown}: the PNG image is too large"))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let line = info.line_size;
    let mut pixels = Vec::with_capacity(w * h);
    for row in buf.chunks(line).take(h) {
        for px in row.chunks(channels).take(w) {
            pixels.push(match *px {
                [g] => g,
                // Transparent pixels count as white paper: drawings are often dark strokes on a
                // transparent background.
                [g, a] => over_white(g, a),
                [r, g, b] => luma(r, g, b),
                [r, g, b, a] => over_white(luma(r, g, b), a),
                _ => 0,
            });
        }
    }
    if pixels.len() != w * h {
        return Err(format!("{shown}: the PNG image data is incomplete"));
    }
    Ok(Gray {
        width: w,
        height: h,
        pixels,
    })
}

/// ITU-R BT.601 luma, as most image libraries convert RGB to gray.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b) + 500) / 1000) as u8
}

fn over_white(g: u8, a: u8) -> u8 {
    ((u32::from(g) * u32::from(a) + 255 * (255 - u32::from(a)) + 127) / 255) as u8
}

/// Netpbm's PGM: `P5` (binary) or `P2` (text), a header of width, height and maximum value
/// separated by whitespace and `#` comments; 8- or 16-bit samples, scaled to 0..=255.
fn decode_pgm(bytes: &[u8], shown: &str) -> Result<Gray, String> {
    let bad = |what: &str| format!("{shown}: not a valid PGM image: {what}");
    let binary = bytes.starts_with(b"P5");
    let mut pos = 2;
    let mut header = [0usize; 3];
    for (i, name) in ["width", "height", "maximum value"].iter().enumerate() {
        header[i] = pgm_number(bytes, &mut pos).ok_or_else(|| bad(&format!("no {name}")))?;
    }
    let [w, h, max] = header;
    if max == 0 || max > 65535 {
        return Err(bad(&format!("the maximum value {max} is not in 1..=65535")));
    }
    let n = w
        .checked_mul(h)
        .filter(|&n| n <= MAX_PIXELS)
        .ok_or_else(|| bad(&format!("{w}x{h} pixels is too many")))?;
    let scale = |v: usize| ((v.min(max) * 255 + max / 2) / max) as u8;
    let mut pixels = Vec::with_capacity(n);
    if binary {
        // One whitespace byte ends the header.
        let data = bytes.get(pos + 1..).unwrap_or(&[]);
        let per = if max < 256 { 1 } else { 2 };
        if data.len() < n * per {
            return Err(bad(&format!(
                "{w}x{h} pixels need {} bytes, the file holds {}",
                n * per,
                data.len()
            )));
        }
        for s in data.chunks_exact(per).take(n) {
            let v = if per == 1 {
                usize::from(s[0])
            } else {
                usize::from(u16::from_be_bytes([s[0], s[1]]))
            };
            pixels.push(scale(v));
        }
    } else {
        for i in 0..n {
            let v = pgm_number(bytes, &mut pos)
                .ok_or_else(|| bad(&format!("pixel {i} of {n} is missing or not a number")))?;
            pixels.push(scale(v));
        }
    }
    Ok(Gray {
        width: w,
        height: h,
        pixels,
    })
}

/// The next decimal number after whitespace and comments, leaving `pos` just after it.
fn pgm_number(bytes: &[u8], pos: &mut usize) -> Option<usize> {
    loop {
        match bytes.get(*pos)? {
            b'#' => {
                while *bytes.get(*pos)? != b'\n' {
                    *pos += 1;
                }
            }
            c if c.is_ascii_whitespace() => *pos += 1,
            _ => break,
        }
    }
    let start = *pos;
    while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
        *pos += 1;
    }
    std::str::from_utf8(&bytes[start..*pos]).ok()?.parse().ok()
}

/// Whether the mean of the outermost pixels is bright (over half of white): a dark digit on
/// light paper, the opposite of MNIST.
pub fn border_is_bright(img: &Gray) -> bool {
    let (w, h) = (img.width, img.height);
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in 0..h {
        for x in 0..w {
            if x == 0 || y == 0 || x + 1 == w || y + 1 == h {
                sum += u64::from(img.at(x, y));
                n += 1;
            }
        }
    }
    n > 0 && sum > 127 * n
}

/// Swaps black and white.
pub fn invert(img: &mut Gray) {
    for p in &mut img.pixels {
        *p = 255 - *p;
    }
}

/// Resizes by area averaging: each output pixel is the mean of the input area it covers
/// (fractional at the edges). Exact for whole-number scale factors in either direction.
pub fn resize(img: &Gray, width: usize, height: usize) -> Gray {
    if (img.width, img.height) == (width, height) {
        return img.clone();
    }
    let sx = img.width as f64 / width as f64;
    let sy = img.height as f64 / height as f64;
    let mut pixels = Vec::with_capacity(width * height);
    for oy in 0..height {
        let (y0, y1) = (oy as f64 * sy, (oy + 1) as f64 * sy);
        for ox in 0..width {
            let (x0, x1) = (ox as f64 * sx, (ox + 1) as f64 * sx);
            let mut sum = 0.0;
            let mut area = 0.0;
            for y in y0.floor() as usize..(y1.ceil() as usize).min(img.height) {
                let wy = (y1.min(y as f64 + 1.0) - y0.max(y as f64)).max(0.0);
                for x in x0.floor() as usize..(x1.ceil() as usize).min(img.width) {
                    let wx = (x1.min(x as f64 + 1.0) - x0.max(x as f64)).max(0.0);
                    sum += f64::from(img.at(x, y)) * wx * wy;
                    area += wx * wy;
                }
            }
            pixels.push(if area > 0.0 {
                (sum / area).round() as u8
            } else {
                0
            });
        }
    }
    Gray {
        width,
        height,
        pixels,
    }
}

/// Frames a white-on-black digit as MNIST's were (LeCun et al.): the bounding box of the ink
/// scaled to fit 20x20 with its aspect ratio kept, then placed in 28x28 with its centre of mass
/// at the centre. An image without ink becomes black.
pub fn frame_like_mnist(img: &Gray) -> Gray {
    const SIZE: usize = 28;
    const BOX: f64 = 20.0;
    // Ink: clearly brighter than the background (the darkest quarter of the range is paper).
    let ink = |p: u8| p > 64;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..img.height {
        for x in 0..img.width {
            if ink(img.at(x, y)) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    let mut out = Gray {
        width: SIZE,
        height: SIZE,
        pixels: vec![0; SIZE * SIZE],
    };
    if x0 > x1 {
        return out;
    }
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop = Gray {
        width: bw,
        height: bh,
        pixels: (y0..=y1)
            .flat_map(|y| (x0..=x1).map(move |x| (x, y)))
            .map(|(x, y)| img.at(x, y))
            .collect(),
    };
    let scale = BOX / bw.max(bh) as f64;
    let (tw, th) = (
        ((bw as f64 * scale).round() as usize).clamp(1, 20),
        ((bh as f64 * scale).round() as usize).clamp(1, 20),
    );
    let digit = resize(&crop, tw, th);
    // Centre of mass of the scaled digit.
    let (mut mx, mut my, mut m) = (0.0, 0.0, 0.0);
    for y in 0..th {
        for x in 0..tw {
            let v = f64::from(digit.at(x, y));
            mx += v * x as f64;
            my += v * y as f64;
            m += v;
        }
    }
    let (cx, cy) = if m > 0.0 {
        (mx / m, my / m)
    } else {
        (tw as f64 / 2.0, th as f64 / 2.0)
    };
    let half = (SIZE as f64 - 1.0) / 2.0;
    let ox = (half - cx).round() as isize;
    let oy = (half - cy).round() as isize;
    for y in 0..th {
        for x in 0..tw {
            let (tx, ty) = (x as isize + ox, y as isize + oy);
            if (0..SIZE as isize).contains(&tx) && (0..SIZE as isize).contains(&ty) {
                out.pixels[ty as usize * SIZE + tx as usize] = digit.at(x, y);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(w: u32, h: u32, color: png::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(data).unwrap();
        out
    }

    #[test]
    fn png_colour_types_become_gray() {
        let g = decode_png(&png_bytes(2, 1, png::ColorType::Grayscale, &[0, 200]), "x").unwrap();
        assert_eq!(g.pixels, [0, 200]);
        let rgb = png_bytes(1, 1, png::ColorType::Rgb, &[255, 255, 255]);
        assert_eq!(decode_png(&rgb, "x").unwrap().pixels, [255]);
        // Fully transparent is white paper; opaque black stays black.
        let ga = png_bytes(2, 1, png::ColorType::GrayscaleAlpha, &[0, 0, 0, 255]);
        assert_eq!(decode_png(&ga, "x").unwrap().pixels, [255, 0]);
        let err = decode_png(&rgb[..rgb.len() - 20], "d.png").unwrap_err();
        assert!(err.starts_with("d.png: not a valid PNG image"), "{err}");
    }

    #[test]
    fn pgm_binary_and_text() {
        let p5 = b"P5\n# a comment\n2 2\n255\n\x00\x10\x20\xff";
        assert_eq!(decode_pgm(p5, "x").unwrap().pixels, [0, 16, 32, 255]);
        let p2 = b"P2 3 1 15\n0 15 7\n";
        assert_eq!(decode_pgm(p2, "x").unwrap().pixels, [0, 255, 119]);
        let short = b"P5 4 4 255\n\x00";
        assert!(
            decode_pgm(short, "s.pgm")
                .unwrap_err()
                .contains("16 bytes, the file holds 1")
        );
        let huge = b"P5 99999999 99999999 255\n";
        assert!(decode_pgm(huge, "h").unwrap_err().contains("too many"));
        assert!(
            decode_pgm(b"P2 2 1 0\n", "z")
                .unwrap_err()
                .contains("maximum")
        );
    }

    #[test]
    fn area_resize_is_exact_for_whole_factors() {
        let img = Gray {
            width: 2,
            height: 2,
            pixels: vec![0, 100, 200, 40],
        };
        let big = resize(&img, 4, 4);
        assert_eq!(big.pixels[..4], [0, 0, 100, 100]);
        assert_eq!(resize(&big, 2, 2), img);
        assert_eq!(resize(&img, 1, 1).pixels, [85]);
    }

    #[test]
    fn inversion_and_framing() {
        let mut paper = Gray {
            width: 3,
            height: 3,
            pixels: vec![250, 250, 250, 250, 0, 250, 250, 250, 250],
        };
        assert!(border_is_bright(&paper));
        invert(&mut paper);
        assert!(!border_is_bright(&paper));
        // A 4x8 bar of ink in a corner of a 100x100 image: 10x20 after framing, centred.
        let mut pixels = vec![0; 100 * 100];
        for y in 0..8 {
            for x in 0..4 {
                pixels[y * 100 + x] = 255;
            }
        }
        let framed = frame_like_mnist(&Gray {
            width: 100,
            height: 100,
            pixels,
        });
        let ink: Vec<(usize, usize)> = (0..28 * 28)
            .filter(|&i| framed.pixels[i] > 0)
            .map(|i| (i % 28, i / 28))
            .collect();
        assert_eq!(ink.len(), 200);
        let (xs, ys): (Vec<_>, Vec<_>) = ink.into_iter().unzip();
        assert_eq!((xs.iter().min(), xs.iter().max()), (Some(&9), Some(&18)));
        assert_eq!((ys.iter().min(), ys.iter().max()), (Some(&4), Some(&23)));
    }
}
