//! The IDX format of the MNIST files: a 4-byte magic (`00 00 type ndims`), `ndims` big-endian
//! u32 dimensions, then the elements, big-endian, row-major.
//!
//! A file is read in two steps so that nothing is allocated before the header has been checked:
//! [`IdxFile::open`] parses the header and compares the size it promises with what the file can
//! hold (the file length for a raw file, the deflate ratio bound for gzip, and
//! [`MAX_PAYLOAD_BYTES`]); only then does [`IdxFile::read_payload`] allocate exactly that size and
//! read at most one byte more, to detect trailing data.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::DataError;

/// The largest IDX payload this crate reads into memory: 2 GiB, enough for EMNIST (550 MB) and
/// far from what a 64-bit header can claim.
pub const MAX_PAYLOAD_BYTES: u64 = 2 << 30;

/// Deflate cannot expand its input more than 1032 times (a 258-byte match coded in 2 bits), so a
/// gzip file of `n` bytes decompresses to at most `1032 * n` bytes. A header that promises more
/// is rejected without decompressing anything.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// One IDX file, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Idx {
    /// The dimensions from the header, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// The elements, row-major, converted from big-endian.
    pub data: IdxData,
}

/// The elements of an IDX file, in the type its header names.
#[derive(Clone, PartialEq)]
pub enum IdxData {
    /// Type byte 0x08.
    U8(Vec<u8>),
    /// Type byte 0x09.
    I8(Vec<i8>),
    /// Type byte 0x0B.
    I16(Vec<i16>),
    /// Type byte 0x0C.
    I32(Vec<i32>),
    /// Type byte 0x0D.
    F32(Vec<f32>),
    /// Type byte 0x0E.
    F64(Vec<f64>),
}

impl IdxData {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            IdxData::U8(v) => v.len(),
            IdxData::I8(v) => v.len(),
            IdxData::I16(v) => v.len(),
            IdxData::I32(v) => v.len(),
            IdxData::F32(v) => v.len(),
            IdxData::F64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type as written in messages: `u8`, `i8`, `i16`, `i32`, `f32` or `f64`.
    pub fn type_name(&self) -> &'static str {
        match self {
            IdxData::U8(_) => "u8",
            IdxData::I8(_) => "i8",
            IdxData::I16(_) => "i16",
            IdxData::I32(_) => "i32",
            IdxData::F32(_) => "f32",
            IdxData::F64(_) => "f64",
        }
    }
}

/// Type and count only: printing 47 million pixels helps nobody.
impl fmt::Debug for IdxData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdxData::{}[{} elements]", self.type_name(), self.len())
    }
}

/// Reads one IDX file, gzip-compressed (detected by its 1f 8b magic, not its name) or raw.
///
/// Fails, without allocating the payload, when the header is malformed, promises more than the
/// file can hold or more than [`MAX_PAYLOAD_BYTES`]; fails after reading when the payload is
/// shorter or longer than promised.
pub fn read_idx(path: &Path) -> Result<Idx, DataError> {
    let file = IdxFile::open(path)?;
    let ty = file.ty;
    let dims = file.dims.clone();
    let bytes = file.read_payload()?;
    Ok(Idx {
        dims,
        data: decode(ty, &bytes),
    })
}

/// The element type named by the third magic byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ElemType {
    U8,
    I8,
    I16,
    I32,
    F32,
    F64,
}

impl ElemType {
    fn from_byte(byte: u8) -> Option<ElemType> {
        Some(match byte {
            0x08 => ElemType::U8,
            0x09 => ElemType::I8,
            0x0B => ElemType::I16,
            0x0C => ElemType::I32,
            0x0D => ElemType::F32,
            0x0E => ElemType::F64,
            _ => return None,
        })
    }

    fn size(self) -> u64 {
        match self {
            ElemType::U8 | ElemType::I8 => 1,
            ElemType::I16 => 2,
            ElemType::I32 | ElemType::F32 => 4,
            ElemType::F64 => 8,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ElemType::U8 => "u8",
            ElemType::I8 => "i8",
            ElemType::I16 => "i16",
            ElemType::I32 => "i32",
            ElemType::F32 => "f32",
            ElemType::F64 => "f64",
        }
    }
}

/// `60000x28x28 u8`: how messages show an IDX header.
pub(crate) fn shape(dims: &[impl fmt::Display], ty: ElemType) -> String {
    let dims: Vec<String> = dims.iter().map(ToString::to_string).collect();
    format!("{} {}", dims.join("x"), ty.name())
}

/// An IDX file whose header has been read and checked, its payload not yet.
pub(crate) struct IdxFile {
    pub(crate) path: PathBuf,
    pub(crate) ty: ElemType,
    pub(crate) dims: Vec<usize>,
    /// Payload bytes the header promises; at most [`MAX_PAYLOAD_BYTES`].
    payload: u64,
    gzip: bool,
    reader: Box<dyn Read>,
}

impl IdxFile {
    /// Opens `path`, reads and checks the header, and checks that the payload it promises can be
    /// there, all before allocating anything for the payload.
    pub(crate) fn open(path: &Path) -> Result<IdxFile, DataError> {
        let io_error = |source| DataError::Io {
            path: path.to_owned(),
            source,
        };
        let header_error = |detail: String| DataError::IdxHeader {
            path: path.to_owned(),
            detail,
        };

        let mut file = File::open(path).map_err(io_error)?;
        // Only a regular file has a meaningful length (not a pipe or a device).
        let file_len = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let mut magic = [0u8; 2];
        let n = read_full(&mut file, &mut magic).map_err(io_error)?;
        let gzip = magic[..n] == [0x1f, 0x8b];
        // Put the sniffed bytes back in front instead of seeking: works for pipes too.
        let raw = Cursor::new(magic[..n].to_vec()).chain(file);
        let mut reader: Box<dyn Read> = if gzip {
            Box::new(MultiGzDecoder::new(BufReader::new(raw)))
        } else {
            Box::new(BufReader::new(raw))
        };
        let holds = if gzip {
            "the decompressed file holds"
        } else {
            "the file holds"
        };
        let read_error = |e| read_error(path, gzip, e);

        let mut head = [0u8; 4];
        let n = read_full(&mut reader, &mut head).map_err(read_error)?;
        if n == 0 {
            return Err(header_error(format!(
                "empty IDX file: {holds} no bytes, expected at least a 4-byte magic number"
            )));
        }
        if n < 4 {
            return Err(header_error(format!(
                "truncated IDX header: {holds} {n} bytes, the magic number alone needs 4"
            )));
        }
        if head[..2] != [0, 0] {
            let hint = if gzip && head[..2] == [0x1f, 0x8b] {
                " (gzip-compressed twice?)"
            } else {
                ""
            };
            return Err(header_error(format!(
                "not an IDX file: the magic number must start with two zero bytes, found \
                 {:02x} {:02x}{hint}",
                head[0], head[1]
            )));
        }
        let ty = ElemType::from_byte(head[2]).ok_or_else(|| {
            header_error(format!(
                "unknown IDX element type 0x{:02x} (known: 0x08 u8, 0x09 i8, 0x0B i16, \
                 0x0C i32, 0x0D f32, 0x0E f64)",
                head[2]
            ))
        })?;
        let ndims = usize::from(head[3]);
        if !(1..=4).contains(&ndims) {
            return Err(header_error(format!(
                "an IDX file has 1 to 4 dimensions, the header says {ndims}"
            )));
        }
        let mut raw_dims = [0u8; 16];
        let raw_dims = &mut raw_dims[..4 * ndims];
        let n = read_full(&mut reader, raw_dims).map_err(read_error)?;
        if n < raw_dims.len() {
            return Err(header_error(format!(
                "truncated IDX header: {ndims} dimensions need a header of {} bytes, {holds} {}",
                4 + raw_dims.len(),
                4 + n
            )));
        }
        let dims32: Vec<u32> = raw_dims
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let shape = shape(&dims32, ty);
        let payload = dims32
            .iter()
            .try_fold(ty.size(), |acc, &d| acc.checked_mul(u64::from(d)));
        let dims: Option<Vec<usize>> = dims32.iter().map(|&d| usize::try_from(d).ok()).collect();
        let (Some(payload), Some(dims)) = (payload, dims) else {
            return Err(header_error(format!(
                "size overflow: the IDX dimensions {shape} do not fit in a 64-bit byte count"
            )));
        };
        let header_len = 4 + raw_dims.len() as u64;

        // Fail fast, before allocating: compare the promise with what the file can hold.
        match file_len {
            Some(len) if !gzip => {
                let held = len.saturating_sub(header_len);
                if held < payload {
                    return Err(DataError::IdxTruncated {
                        path: path.to_owned(),
                        expected: payload,
                        shape,
                        found: format!("the file holds {held}"),
                    });
                }
                if held > payload {
                    return Err(DataError::IdxTrailing {
                        path: path.to_owned(),
                        expected: payload,
                        shape,
                        found: format!("the file holds {held}"),
                    });
                }
            }
            Some(len) if payload > len.saturating_mul(MAX_DEFLATE_RATIO) => {
                return Err(DataError::IdxTruncated {
                    path: path.to_owned(),
                    expected: payload,
                    shape,
                    found: format!(
                        "a gzip file of {len} bytes decompresses to at most {}",
                        len.saturating_mul(MAX_DEFLATE_RATIO)
                    ),
                });
            }
            _ => {}
        }
        if payload > MAX_PAYLOAD_BYTES {
            return Err(DataError::TooLarge {
                path: path.to_owned(),
                expected: payload,
                shape,
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        Ok(IdxFile {
            path: path.to_owned(),
            ty,
            dims,
            payload,
            gzip,
            reader,
        })
    }

    /// `60000x28x28 u8`.
    pub(crate) fn shape(&self) -> String {
        shape(&self.dims, self.ty)
    }

    /// Reads the payload, exactly as many bytes as the header promises: one byte more is an
    /// error, and so is one byte less.
    pub(crate) fn read_payload(self) -> Result<Vec<u8>, DataError> {
        let expected = self.payload;
        let mut bytes = Vec::new();
        // `payload <= MAX_PAYLOAD_BYTES` (2 GiB) fits in usize on 32-bit targets too, and
        // try_reserve turns an allocation failure into an error instead of an abort.
        usize::try_from(expected)
            .ok()
            .and_then(|n| bytes.try_reserve_exact(n).ok())
            .ok_or_else(|| DataError::Content {
                path: self.path.clone(),
                detail: format!(
                    "cannot allocate {expected} bytes for the IDX payload ({})",
                    self.shape()
                ),
            })?;
        let shape = self.shape();
        let (path, gzip) = (self.path, self.gzip);
        self.reader
            .take(expected + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(&path, gzip, e))?;
        let holds = if gzip {
            "the decompressed file holds"
        } else {
            "the file holds"
        };
        let found = bytes.len() as u64;
        if found < expected {
            return Err(DataError::IdxTruncated {
                path,
                expected,
                shape,
                found: format!("{holds} {found}"),
            });
        }
        if found > expected {
            return Err(DataError::IdxTrailing {
                path,
                expected,
                shape,
                found: format!("{holds} more"),
            });
        }
        Ok(bytes)
    }
}

/// Decodes a payload of `ty` elements from big-endian bytes.
pub(crate) fn decode(ty: ElemType, bytes: &[u8]) -> IdxData {
    fn be<const N: usize, T>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| from(std::array::from_fn(|i| c[i])))
            .collect()
    }
    match ty {
        ElemType::U8 => IdxData::U8(bytes.to_vec()),
        ElemType::I8 => IdxData::I8(bytes.iter().map(|&b| b as i8).collect()),
        ElemType::I16 => IdxData::I16(be(bytes, i16::from_be_bytes)),
        ElemType::I32 => IdxData::I32(be(bytes, i32::from_be_bytes)),
        ElemType::F32 => IdxData::F32(be(bytes, f32::from_be_bytes)),
        ElemType::F64 => IdxData::F64(be(bytes, f64::from_be_bytes)),
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read. Unlike
/// `read_exact`, a short input is not an error, so an `UnexpectedEof` can only come from the
/// gzip decoder (a truncated stream).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Sorts a read error: for gzip input, flate2 reports a cut stream as `UnexpectedEof` and a
/// corrupt one (bad header, bad deflate data, bad CRC) as `InvalidInput` or `InvalidData`.
fn read_error(path: &Path, gzip: bool, e: io::Error) -> DataError {
    let path = path.to_owned();
    match e.kind() {
        io::ErrorKind::UnexpectedEof if gzip => DataError::GzipTruncated { path },
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData if gzip => DataError::Gzip {
            path,
            detail: e.to_string(),
        },
        _ => DataError::Io { path, source: e },
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    /// An IDX file: magic, dims, payload.
    fn idx(ty: u8, dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, ty, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn read(bytes: &[u8]) -> Result<Idx, DataError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.idx");
        std::fs::write(&path, bytes).unwrap();
        read_idx(&path)
    }

    #[test]
    fn every_element_type_decodes_big_endian() {
        let cases: Vec<(u8, Vec<u8>, IdxData)> = vec![
            (0x08, vec![1, 255], IdxData::U8(vec![1, 255])),
            (0x09, vec![1, 255], IdxData::I8(vec![1, -1])),
            (0x0B, vec![1, 2, 0xff, 0xfe], IdxData::I16(vec![258, -2])),
            (
                0x0C,
                [7i32.to_be_bytes(), (-9i32).to_be_bytes()].concat(),
                IdxData::I32(vec![7, -9]),
            ),
            (
                0x0D,
                [1.5f32.to_be_bytes(), (-0.25f32).to_be_bytes()].concat(),
                IdxData::F32(vec![1.5, -0.25]),
            ),
            (
                0x0E,
                [1e300f64.to_be_bytes(), 2.0f64.to_be_bytes()].concat(),
                IdxData::F64(vec![1e300, 2.0]),
            ),
        ];
        for (ty, payload, want) in cases {
            let file = idx(ty, &[2], &payload);
            let got = read(&file).unwrap();
            assert_eq!(got.dims, [2]);
            assert_eq!(got.data, want);
            // The same bytes, gzipped, read the same.
            assert_eq!(read(&gz(&file)).unwrap().data, want);
        }
    }

    #[test]
    fn four_dims_and_empty_payload() {
        let got = read(&idx(0x08, &[1, 2, 1, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(got.dims, [1, 2, 1, 3]);
        let got = read(&idx(0x08, &[0, 28, 28], &[])).unwrap();
        assert!(got.data.is_empty());
    }

    #[test]
    fn multi_member_gzip_is_one_stream() {
        let file = idx(0x08, &[4], &[1, 2, 3, 4]);
        let (a, b) = file.split_at(6);
        let got = read(&[gz(a), gz(b)].concat()).unwrap();
        assert_eq!(got.data, IdxData::U8(vec![1, 2, 3, 4]));
    }

    #[test]
    fn header_errors() {
        let message = |bytes: &[u8]| read(bytes).unwrap_err().to_string();
        assert!(message(&[]).contains("empty IDX file"));
        assert!(message(&[0, 0]).contains("truncated IDX header"));
        assert!(message(&[0, 1, 8, 1, 0, 0, 0, 0]).contains("two zero bytes, found 00 01"));
        assert!(message(&[0, 0, 0x0A, 1, 0, 0, 0, 0]).contains("element type 0x0a"));
        assert!(message(&[0, 0, 8, 0]).contains("the header says 0"));
        assert!(message(&[0, 0, 8, 2, 0, 0, 0, 1]).contains("need a header of 12 bytes"));
        let overflow = idx(0x0E, &[u32::MAX; 4], &[]);
        assert!(message(&overflow).contains("size overflow: the IDX dimensions"));
    }

    #[test]
    fn payload_size_errors() {
        let err = read(&idx(0x08, &[2, 2], &[1, 2, 3])).unwrap_err();
        assert!(
            matches!(err, DataError::IdxTruncated { expected: 4, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .ends_with("the header promises 4 bytes (2x2 u8), the file holds 3")
        );
        let err = read(&idx(0x0B, &[2], &[1, 2, 3, 4, 5])).unwrap_err();
        assert!(matches!(err, DataError::IdxTrailing { .. }), "{err}");
        // Gzip: counted after decompression.
        let err = read(&gz(&idx(0x08, &[2, 2], &[1, 2, 3]))).unwrap_err();
        assert!(
            err.to_string().ends_with("the decompressed file holds 3"),
            "{err}"
        );
        let err = read(&gz(&idx(0x08, &[2, 2], &[1, 2, 3, 4, 5]))).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("the decompressed file holds more"),
            "{err}"
        );
    }

    #[test]
    fn huge_claims_fail_before_allocating() {
        // Raw: the file length settles it.
        let err = read(&idx(0x08, &[4_000_000_000, 28, 28], &[0; 64])).unwrap_err();
        assert!(matches!(err, DataError::IdxTruncated { .. }), "{err}");
        // Gzip: the deflate ratio bound settles it, before decompressing the payload.
        let err = read(&gz(&idx(0x08, &[4_000_000_000, 28, 28], &[0; 64]))).unwrap_err();
        assert!(err.to_string().contains("decompresses to at most"), "{err}");
        // Gzip that could hold it but is over the absolute limit: 3 GiB of zeros compress to
        // ~3 MB, so the ratio bound would allow it.
        let file = idx(0x08, &[3, 1 << 30], &[]);
        let mut bytes = gz(&file);
        bytes.resize(4 << 20, 0); // pad the file: it is never decompressed that far
        let err = read(&bytes).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn gzip_errors() {
        let good = gz(&idx(0x08, &[64], &[7; 64]));
        let err = read(&good[..good.len() / 2]).unwrap_err();
        assert!(matches!(err, DataError::GzipTruncated { .. }), "{err}");
        let mut bad = good.clone();
        bad[12..20].copy_from_slice(&[0xff; 8]);
        let err = read(&bad).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{err}");
        // A wrong CRC is caught at the end of the stream.
        let mut bad_crc = good.clone();
        let at = good.len() - 8;
        bad_crc[at] ^= 1;
        let err = read(&bad_crc).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{err}");
    }

    #[test]
    fn missing_file_and_directory_are_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_idx(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err}");
        assert!(err.to_string().contains("nope: cannot read"));
        let twice = gz(&gz(&idx(0x08, &[1], &[0])));
        let err = read(&twice).unwrap_err().to_string();
        assert!(
            err.ends_with("found 1f 8b (gzip-compressed twice?)"),
            "{err}"
        );
        let err = read_idx(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err}");
    }
}
