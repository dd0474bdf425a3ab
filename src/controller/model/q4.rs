//! Matrix × vector over Q4_1 weights as the GGUF file stores them (blocks of 32: a scale, a
//! minimum and 32 four-bit values), the one-token step's kernel. A step reads every weight
//! once per token, so its speed is the bytes it reads: Q4_1 is a quarter of f16's. The vector
//! is quantized to 8 bits per block of 32 (a scale and its sum, as llama.cpp's Q8_1), and each
//! block's dot product is integer arithmetic (AVX2 where the CPU has it). Pure; no candle.

/// Values per block.
pub const BLOCK: usize = 32;
/// Bytes of one Q4_1 block in a GGUF file: f16 scale, f16 minimum, 16 bytes of nibbles.
const FILE_BLOCK: usize = 20;

/// One block of weights: value `i` is `d * q[i] + m`, where `qs[j]` holds `q[j]` in its low
/// nibble and `q[j + 16]` in its high one.
#[derive(Clone, Copy)]
#[repr(C)]
struct Q4Block {
    d: f32,
    m: f32,
    qs: [u8; 16],
}

/// One block of the vector: value `i` is about `d * qs[i]`; `s` is `d * Σ qs`.
#[derive(Clone, Copy)]
#[repr(C)]
struct Q8Block {
    d: f32,
    s: f32,
    qs: [i8; BLOCK],
}

/// A `rows × cols` Q4_1 matrix, row-major.
pub struct Q4Matrix {
    blocks: Vec<Q4Block>,
    pub rows: usize,
    pub cols: usize,
}

/// An IEEE half-precision value's bits as `f32`.
fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

impl Q4Matrix {
    /// The matrix from the file's bytes (`rows × cols / 32` blocks of 20 bytes); `None` when
    /// `cols` is not a multiple of 32 or the bytes do not match the shape.
    pub fn from_file_bytes(bytes: &[u8], rows: usize, cols: usize) -> Option<Q4Matrix> {
        if cols % BLOCK != 0 || bytes.len() != rows * cols / BLOCK * FILE_BLOCK {
            return None;
        }
        let blocks = bytes
            .chunks_exact(FILE_BLOCK)
            .map(|b| Q4Block {
                d: f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
                m: f16_to_f32(u16::from_le_bytes([b[2], b[3]])),
                qs: b[4..20].try_into().expect("16 bytes"),
            })
            .collect();
        Some(Q4Matrix { blocks, rows, cols })
    }

    /// `out[r] = Σ_c w[r][c] · x[c]` for every row `r` (`x` has `cols` values, `out` `rows`).
    pub fn matvec(&self, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), self.cols, "the vector's length");
        assert_eq!(out.len(), self.rows, "the output's length");
        let q = quantize(x);
        let dot = kernel();
        let per_row = self.cols / BLOCK;
        for (o, row) in out.iter_mut().zip(self.blocks.chunks_exact(per_row)) {
            *o = dot(row, &q);
        }
    }
}

/// The vector in 8-bit blocks: per block, the scale that maps its largest magnitude to 127.
fn quantize(x: &[f32]) -> Vec<Q8Block> {
    x.chunks_exact(BLOCK)
        .map(|c| {
            let amax = c.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut qs = [0i8; BLOCK];
            let mut sum = 0i32;
            for (q, v) in qs.iter_mut().zip(c) {
                *q = (v * id).round() as i8;
                sum += *q as i32;
            }
            Q8Block {
                d,
                s: d * sum as f32,
                qs,
            }
        })
        .collect()
}

/// One row's dot product with the quantized vector:
/// `Σ_blocks d_w · d_x · Σ_i q_w[i] · q_x[i] + m_w · s_x`.
type Dot = fn(&[Q4Block], &[Q8Block]) -> f32;

/// The fastest dot product this CPU runs (checked at run time, so a build for older CPUs still
/// uses AVX2 where it is there).
fn kernel() -> Dot {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return |row, x| {
            // SAFETY: this CPU has AVX2 and FMA (checked above).
            unsafe { dot_avx2(row, x) }
        };
    }
    dot_portable
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(row: &[Q4Block], x: &[Q8Block]) -> f32 {
    use std::arch::x86_64::*;
    let low = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    for (w, v) in row.iter().zip(x) {
        // SAFETY: unaligned loads of a block's 16 nibble bytes and 32 quantized bytes.
        let (packed, qx) = unsafe {
            (
                _mm_loadu_si128(w.qs.as_ptr() as *const __m128i),
                _mm256_loadu_si256(v.qs.as_ptr() as *const __m256i),
            )
        };
        // Low nibbles are values 0..16, high nibbles 16..32.
        let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        let qw = _mm256_and_si256(both, low);
        // Unsigned weights × signed values summed in pairs (i16: 15 · 127 · 2 fits), then in
        // fours (i32).
        let pairs = _mm256_maddubs_epi16(qw, qx);
        let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(w.d * v.d), sums, acc);
        mins += w.m * v.s;
    }
    let hi = _mm256_extractf128_ps(acc, 1);
    let s = _mm_add_ps(_mm256_castps256_ps128(acc), hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s) + mins
}

fn dot_portable(row: &[Q4Block], x: &[Q8Block]) -> f32 {
    row.iter()
        .zip(x)
        .map(|(w, v)| {
            let mut sum = 0i32;
            for j in 0..16 {
                sum += (w.qs[j] & 0x0f) as i32 * v.qs[j] as i32;
                sum += (w.qs[j] >> 4) as i32 * v.qs[j + 16] as i32;
            }
            w.d * v.d * sum as f32 + w.m * v.s
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A matrix of file bytes with varied scales, minimums and nibbles, and its values.
    fn matrix(rows: usize, cols: usize) -> (Vec<u8>, Vec<Vec<f32>>) {
        let mut bytes = Vec::new();
        let mut dense = vec![vec![0f32; cols]; rows];
        for (r, row) in dense.iter_mut().enumerate() {
            for b in 0..cols / BLOCK {
                let k = (r * 31 + b * 7) as u16;
                // Scales 2^-6..2^-3 (exponent bits), minimums of both signs.
                let d = 0x2400 + (k % 4) * 0x0400 + (k * 13) % 0x3ff;
                let m = 0x2c00 + (k * 29) % 0x3ff + if k % 2 == 0 { 0x8000 } else { 0 };
                bytes.extend(d.to_le_bytes());
                bytes.extend(m.to_le_bytes());
                let qs: Vec<u8> = (0..16)
                    .map(|j| ((k as usize * 5 + j * 11) % 256) as u8)
                    .collect();
                let (df, mf) = (f16_to_f32(d), f16_to_f32(m));
                for j in 0..16 {
                    row[b * BLOCK + j] = df * (qs[j] & 0x0f) as f32 + mf;
                    row[b * BLOCK + j + 16] = df * (qs[j] >> 4) as f32 + mf;
                }
                bytes.extend(qs);
            }
        }
        (bytes, dense)
    }

    #[test]
    fn a_product_matches_the_dequantized_matrix_within_the_vectors_rounding() {
        let (rows, cols) = (7, 96);
        let (bytes, dense) = matrix(rows, cols);
        let m = Q4Matrix::from_file_bytes(&bytes, rows, cols).expect("the shape fits");
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let mut got = vec![0f32; rows];
        m.matvec(&x, &mut got);
        let q = quantize(&x);
        for (r, row) in dense.iter().enumerate() {
            let want: f32 = row.iter().zip(&x).map(|(w, v)| w * v).sum();
            // The vector's 8-bit rounding: at most half a step per value, times |w|.
            let bound: f32 = row
                .iter()
                .enumerate()
                .map(|(c, w)| w.abs() * q[c / BLOCK].d * 0.5)
                .sum();
            assert!(
                (got[r] - want).abs() <= bound + 1e-4,
                "row {r}: {} vs {want} (bound {bound})",
                got[r]
            );
            // The kernel and the portable sum agree on the same quantized vector.
            let blocks = &m.blocks[r * cols / BLOCK..(r + 1) * cols / BLOCK];
            let portable = dot_portable(blocks, &q);
            assert!((got[r] - portable).abs() <= 1e-4 * portable.abs().max(1.0));
        }
    }

    #[test]
    fn a_shape_the_bytes_do_not_hold_is_refused() {
        let (bytes, _) = matrix(2, 64);
        assert!(Q4Matrix::from_file_bytes(&bytes, 2, 64).is_some());
        assert!(Q4Matrix::from_file_bytes(&bytes, 3, 64).is_none());
        assert!(Q4Matrix::from_file_bytes(&bytes[..40], 2, 48).is_none());
    }
}
