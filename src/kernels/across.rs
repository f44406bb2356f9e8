//! One-channel scans run *across* the blocks of a unit: the unit's [`LANES`] full blocks stored
//! transposed, row `i` of every block side by side (`[i][block]`), so one vector instruction
//! advances every block's chain by a row. Not part of any spec: each block's local scan, carry
//! chain and fix-up evaluate exactly the formulas of `scan.rs` (`L_i = a·L_{i-1} + b_i`,
//! `C_{k+1} = L_end + a^B·C_k`, `y_i = L_i + a^{i+1}·C_k`), in the same order, so the bits are
//! those of one block at a time (tested).
//!
//! Why: a block's local scan is a serial multiply-add chain. Row-major, the CPU interleaves the
//! lanes' scalar chains and is bound by its instruction rate; transposed, the same work is a
//! quarter of the instructions (four lanes per AVX2 register), and the fix-up is as cheap as
//! before (`a^{i+1}` is one broadcast per row, the carries one register per four lanes). A
//! cascade keeps its stages transposed from the first drive to the last fix-up, so only the
//! input and the output are transposed.

use super::scan::{next_carry, Powers, LANES, SCAN_BLOCK};
use super::stream_store::Store;

/// Row `i` of every block of a unit.
pub(super) type Across = [f64; LANES];

/// `dst[i][j] = src[j·B + i]`: a unit's blocks, stored back to back, transposed.
#[inline(always)]
pub(super) fn transpose_in(src: &[[f64; 1]], dst: &mut [Across]) {
    let (src, dst) = (unit_rows(src), unit_across(dst));
    for i0 in (0..SCAN_BLOCK).step_by(4) {
        for j0 in (0..LANES).step_by(4) {
            let tile = transpose4(std::array::from_fn(|jj| quad(&src[j0 + jj][i0..])));
            for (ii, row) in tile.iter().enumerate() {
                dst[i0 + ii][j0..j0 + 4].copy_from_slice(row);
            }
        }
    }
}

/// `out[j·B + i] = src[i][j]`: a transposed unit written back in row order to `out` (the
/// unit's rows), streamed past the caches when `store` says so and `out` allows it (16-byte
/// aligned). Streaming stores also spare the cache its worst case here: the eight blocks'
/// rows lie 8 KiB apart, in one set of L1's eight ways.
#[inline(always)]
pub(super) fn store_across(src: &[Across], out: &mut [f64], store: Store) {
    let src = unit_across_ref(src);
    let out: &mut [[f64; SCAN_BLOCK]; LANES] = match out.as_chunks_mut().0.try_into() {
        Ok(blocks) => blocks,
        Err(_) => unreachable!("a unit has LANES blocks of SCAN_BLOCK rows"),
    };
    let stream = matches!(store, Store::Streaming(_)) && out.as_ptr().align_offset(16) == 0;
    for i0 in (0..SCAN_BLOCK).step_by(4) {
        for j0 in (0..LANES).step_by(4) {
            let tile = transpose4(std::array::from_fn(|ii| quad(&src[i0 + ii][j0..])));
            for (jj, col) in tile.iter().enumerate() {
                let dst = &mut out[j0 + jj][i0..i0 + 4];
                if stream {
                    stream4(dst, col);
                } else {
                    dst.copy_from_slice(col);
                }
            }
        }
    }
}

/// Four rows with non-temporal stores (`dst` 16-byte aligned).
#[inline(always)]
fn stream4(dst: &mut [f64], v: &[f64; 4]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_pd, _mm_stream_pd};
        debug_assert!(dst.len() == 4 && dst.as_ptr().align_offset(16) == 0);
        // SAFETY: `dst` holds four f64 and is 16-byte aligned (checked by the caller for the
        // whole unit; every offset here is a multiple of four rows); SSE2 is baseline x86-64.
        unsafe {
            _mm_stream_pd(dst.as_mut_ptr(), _mm_loadu_pd(v.as_ptr()));
            _mm_stream_pd(dst.as_mut_ptr().add(2), _mm_loadu_pd(v.as_ptr().add(2)));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(v);
}

/// The first four values of `v`.
#[inline(always)]
fn quad(v: &[f64]) -> [f64; 4] {
    std::array::from_fn(|k| v[k])
}

/// A 4×4 transpose in registers: four loads, eight shuffles, four stores.
#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
#[inline(always)]
fn transpose4(r: [[f64; 4]; 4]) -> [[f64; 4]; 4] {
    use std::arch::x86_64::{
        _mm256_loadu_pd, _mm256_permute2f128_pd, _mm256_storeu_pd, _mm256_unpackhi_pd,
        _mm256_unpacklo_pd,
    };
    let mut out = [[0.0f64; 4]; 4];
    // SAFETY: AVX is enabled for this build (the cfg above); every load and store is of a
    // whole local `[f64; 4]`.
    unsafe {
        let [a, b, c, d] = r.map(|row| _mm256_loadu_pd(row.as_ptr()));
        let (ab_lo, ab_hi) = (_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b));
        let (cd_lo, cd_hi) = (_mm256_unpacklo_pd(c, d), _mm256_unpackhi_pd(c, d));
        let rows = [
            _mm256_permute2f128_pd(ab_lo, cd_lo, 0x20),
            _mm256_permute2f128_pd(ab_hi, cd_hi, 0x20),
            _mm256_permute2f128_pd(ab_lo, cd_lo, 0x31),
            _mm256_permute2f128_pd(ab_hi, cd_hi, 0x31),
        ];
        for (o, v) in out.iter_mut().zip(rows) {
            _mm256_storeu_pd(o.as_mut_ptr(), v);
        }
    }
    out
}

/// A 4×4 transpose (builds without AVX).
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
#[inline(always)]
fn transpose4(r: [[f64; 4]; 4]) -> [[f64; 4]; 4] {
    std::array::from_fn(|i| std::array::from_fn(|j| r[j][i]))
}

/// The local scans of a transposed unit in place: every block's drives become its `L`.
#[inline(always)]
pub(super) fn local_across(a: f64, t: &mut [Across]) {
    let t = unit_across(t);
    let mut l = t[0];
    for row in &mut t[1..] {
        l = std::array::from_fn(|j| a * l[j] + row[j]);
        *row = l;
    }
}

/// The carries into the unit's blocks from `c_in` (the carry into its first block), and the
/// carry out of its last block at index [`LANES`].
#[inline(always)]
pub(super) fn chain_across(t: &[Across], powers: &Powers<1>, c_in: f64) -> [f64; LANES + 1] {
    let (end, p_len) = (unit_across_ref(t)[SCAN_BLOCK - 1], powers.get()[SCAN_BLOCK]);
    let mut cs = [c_in; LANES + 1];
    for j in 0..LANES {
        cs[j + 1] = next_carry([end[j]], p_len, [cs[j]])[0];
    }
    cs
}

/// The fix-up of a transposed unit in place (`y = L + a^{i+1}·C_block`).
#[inline(always)]
pub(super) fn fix_up_across(t: &mut [Across], powers: &Powers<1>, cs: &[f64; LANES + 1]) {
    let t = unit_across(t);
    let p = &powers.get()[1..=SCAN_BLOCK];
    let c: Across = std::array::from_fn(|j| cs[j]);
    for (row, pw) in t.iter_mut().zip(p) {
        *row = std::array::from_fn(|j| row[j] + pw[0] * c[j]);
    }
}

/// One stage's fix-up fused with the next stage's local scans, row by row: `y = L + a^{i+1}·C`
/// in place in `t`, and the next stage's `L' = a'·L'_{i-1} + gain·y` (its first row `gain·y`)
/// in `next`. The next stage's chains are serial; this stage's fix-up fills their latency.
#[inline(always)]
pub(super) fn fix_up_feeding_across(
    t: &mut [Across],
    powers: &Powers<1>,
    cs: &[f64; LANES + 1],
    (gain, a_next): (f64, f64),
    next: &mut [Across],
) {
    let (t, next) = (unit_across(t), unit_across(next));
    let p = &powers.get()[1..=SCAN_BLOCK];
    let c: Across = std::array::from_fn(|j| cs[j]);
    let y0: Across = std::array::from_fn(|j| t[0][j] + p[0][0] * c[j]);
    t[0] = y0;
    let mut l: Across = std::array::from_fn(|j| gain * y0[j]);
    next[0] = l;
    for ((row, pw), out) in t[1..].iter_mut().zip(&p[1..]).zip(&mut next[1..]) {
        let y: Across = std::array::from_fn(|j| row[j] + pw[0] * c[j]);
        *row = y;
        l = std::array::from_fn(|j| a_next * l[j] + gain * y[j]);
        *out = l;
    }
}

// Fixed-size views, so the loops above carry no bounds checks.
fn unit_across(t: &mut [Across]) -> &mut [Across; SCAN_BLOCK] {
    match t.try_into() {
        Ok(t) => t,
        Err(_) => unreachable!("a transposed unit has SCAN_BLOCK rows"),
    }
}

fn unit_across_ref(t: &[Across]) -> &[Across; SCAN_BLOCK] {
    match t.try_into() {
        Ok(t) => t,
        Err(_) => unreachable!("a transposed unit has SCAN_BLOCK rows"),
    }
}

fn unit_rows(src: &[[f64; 1]]) -> &[[f64; SCAN_BLOCK]; LANES] {
    match src.as_flattened().as_chunks().0.try_into() {
        Ok(blocks) => blocks,
        Err(_) => unreachable!("a unit has LANES blocks of SCAN_BLOCK rows"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::stream_store::with_store;
    use crate::kernels::testing::Lcg;

    /// In and out again, plain or streamed, gives back every bit, NaN payloads included; and
    /// transposed row `i` of block `j` is the block's row `i`.
    #[test]
    fn a_unit_goes_across_and_back_bit_for_bit() {
        let mut rng = Lcg(3);
        let unit: Vec<[f64; 1]> = (0..LANES * SCAN_BLOCK)
            .map(|k| match k % 97 {
                5 => [f64::from_bits(0x7ff8_0000_dead_0001)],
                6 => [-0.0],
                _ => [rng.normal()],
            })
            .collect();
        let mut across = vec![[0.0; LANES]; SCAN_BLOCK];
        transpose_in(&unit, &mut across);
        for (i, row) in across.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert_eq!(
                    v.to_bits(),
                    unit[j * SCAN_BLOCK + i][0].to_bits(),
                    "({i}, {j})"
                );
            }
        }
        let want: Vec<u64> = unit.iter().map(|v| v[0].to_bits()).collect();
        // Offset by one row: a misaligned output takes the plain stores.
        for offset in [0, 1] {
            for streamed in [false, true] {
                let mut out = vec![7.0; unit.len() + 1];
                let dst = &mut out[offset..offset + unit.len()];
                if streamed {
                    with_store(usize::MAX, |store| store_across(&across, dst, store));
                } else {
                    store_across(&across, dst, Store::Cached);
                }
                let got: Vec<u64> = dst.iter().map(|v| v.to_bits()).collect();
                assert!(got == want, "offset {offset}, streamed {streamed}");
            }
        }
    }
}
