//! `#[repr(C)]` mirrors of the argument blocks in `common.cuh`, one per kernel, with the kernel's
//! name. Every field is 8 bytes wide (device addresses as `u64`), so the layout has no padding and
//! matches the C side field for field; the host build of the kernels checks it in the test suite.

/// An argument block: passed by value as a kernel's only parameter.
pub trait KernelArgs: Copy + Send + Sync + cudarc::driver::DeviceRepr + 'static {
    /// The threads this launch would need with its `hi` lowered by `cut` rows (one segment of a
    /// batch, see [`Seg`]); `None` for a block whose kernel has no segmented twin.
    fn segment_threads(&self, _cut: i64) -> Option<usize> {
        None
    }
}

/// Threads of a grid kernel (one per block of `w` rows from `origin`) on output rows `[lo, hi)`.
fn grid_blocks(lo: i64, hi: i64, origin: i64, w: i64) -> usize {
    if lo >= hi {
        return 0;
    }
    ((hi - 1 - origin) / w - (lo - origin) / w + 1) as usize
}

/// Every kernel of `window.cu`, `scan.cu` and `family.cu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Moments,
    MomentsSeg,
    Extrema,
    Wma,
    Fastk,
    Roc,
    ScanDrive,
    ScanLocal,
    ScanFinish,
    CoMoments,
    VarScanLocal,
    VarScanFinish,
    Elementwise,
    ExtremaSeg,
    WmaSeg,
    FastkSeg,
    RocSeg,
    CoMomentsSeg,
    ElementwiseSeg,
    ScanDriveSeg,
    ScanLocalSeg,
    ScanFinishSeg,
    MachineSeg,
}

impl Kernel {
    pub const ALL: [Kernel; 23] = [
        Kernel::Moments,
        Kernel::MomentsSeg,
        Kernel::Extrema,
        Kernel::Wma,
        Kernel::Fastk,
        Kernel::Roc,
        Kernel::ScanDrive,
        Kernel::ScanLocal,
        Kernel::ScanFinish,
        Kernel::CoMoments,
        Kernel::VarScanLocal,
        Kernel::VarScanFinish,
        Kernel::Elementwise,
        Kernel::ExtremaSeg,
        Kernel::WmaSeg,
        Kernel::FastkSeg,
        Kernel::RocSeg,
        Kernel::CoMomentsSeg,
        Kernel::ElementwiseSeg,
        Kernel::ScanDriveSeg,
        Kernel::ScanLocalSeg,
        Kernel::ScanFinishSeg,
        Kernel::MachineSeg,
    ];

    /// The twin that runs every segment of a batch in one launch (argument block [`Seg`]).
    pub fn segmented(self) -> Option<Kernel> {
        Some(match self {
            Kernel::Moments => Kernel::MomentsSeg,
            Kernel::Extrema => Kernel::ExtremaSeg,
            Kernel::Wma => Kernel::WmaSeg,
            Kernel::Fastk => Kernel::FastkSeg,
            Kernel::Roc => Kernel::RocSeg,
            Kernel::CoMoments => Kernel::CoMomentsSeg,
            Kernel::Elementwise => Kernel::ElementwiseSeg,
            _ => return None,
        })
    }

    /// The exported (`extern "C"`) symbol.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Moments => "tx_moments",
            Kernel::MomentsSeg => "tx_moments_seg",
            Kernel::Extrema => "tx_extrema",
            Kernel::Wma => "tx_wma",
            Kernel::Fastk => "tx_fastk",
            Kernel::Roc => "tx_roc",
            Kernel::ScanDrive => "tx_scan_drive",
            Kernel::ScanLocal => "tx_scan_local",
            Kernel::ScanFinish => "tx_scan_finish",
            Kernel::CoMoments => "tx_comoments",
            Kernel::VarScanLocal => "tx_varscan_local",
            Kernel::VarScanFinish => "tx_varscan_finish",
            Kernel::Elementwise => "tx_elementwise",
            Kernel::ExtremaSeg => "tx_extrema_seg",
            Kernel::WmaSeg => "tx_wma_seg",
            Kernel::FastkSeg => "tx_fastk_seg",
            Kernel::RocSeg => "tx_roc_seg",
            Kernel::CoMomentsSeg => "tx_comoments_seg",
            Kernel::ElementwiseSeg => "tx_elementwise_seg",
            Kernel::ScanDriveSeg => "tx_scan_drive_seg",
            Kernel::ScanLocalSeg => "tx_scan_local_seg",
            Kernel::ScanFinishSeg => "tx_scan_finish_seg",
            Kernel::MachineSeg => "tx_machine_seg",
        }
    }
}

macro_rules! kernel_args {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        kernel_args!($(#[$doc])* $name { $($field: $ty),* } threads(_a, _cut) None);
    };
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }
     threads($a:ident, $cut:ident) $threads:expr) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name { $(pub $field: $ty),* }
        impl KernelArgs for $name {
            fn segment_threads(&self, $cut: i64) -> Option<usize> {
                let $a = self;
                $threads
            }
        }
        // SAFETY: plain old data of 8-byte fields, mirrored exactly by the C struct.
        unsafe impl cudarc::driver::DeviceRepr for $name {}
    };
}

/// `TxSeg<A>` (`common.cuh`): the argument block of a kernel's `_seg` twin, which runs every
/// segment of a batch in one launch. `a` is written for one series over the whole concatenation
/// (arrays from row `a.base`, `a.hi` its last row + 1); `starts` (the `nseg + 1` row bounds) and
/// `first` (`nseg + 1`: each segment's first thread) are device int64 arrays.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Seg<A> {
    pub a: A,
    pub starts: u64,
    pub first: u64,
    pub nseg: i64,
}

impl<A: KernelArgs> KernelArgs for Seg<A> {}
// SAFETY: `A` (8-byte fields only) then three 8-byte fields, mirrored exactly by `TxSeg<A>`.
unsafe impl<A: KernelArgs> cudarc::driver::DeviceRepr for Seg<A> {}

pub const MOMENTS_SMA: i64 = 0;
pub const MOMENTS_STD: i64 = 1;
pub const MOMENTS_ZSCORE: i64 = 2;
pub const MOMENTS_BOLLINGER: i64 = 3;
pub const MOMENTS_VAR: i64 = 4;
/// SUM (`r * w + S1`, `k` carries `w`); numbered apart from the others' modes.
pub const MOMENTS_SUM: i64 = 10;
/// Bands around a middle already in `out0` (`k` up, `inv_denom` down; see `common.cuh`).
pub const MOMENTS_BANDS: i64 = 11;
/// AVGDEV (the mean, then `|x - mean|` summed over the window, `/ k`; `k` carries `w`).
pub const MOMENTS_AVGDEV: i64 = 12;

pub const SCAN_EMA: i64 = 0;
pub const SCAN_MACD: i64 = 1;
pub const SCAN_SIGNAL: i64 = 2;
pub const SCAN_RSI: i64 = 3;
pub const SCAN_ATR: i64 = 4;
pub const SCAN_NATR: i64 = 5;
pub const SCAN_OBV: i64 = 6;
/// CUMSUM: the drive is the input itself; numbered apart from the others' modes.
pub const SCAN_CUMSUM: i64 = 20;
/// The moving averages of ma.rs (see `common.cuh`).
pub const SCAN_DEMA: i64 = 40;
pub const SCAN_TEMA: i64 = 41;
pub const SCAN_T3: i64 = 42;
pub const SCAN_ZLEMA: i64 = 43;
/// KAMA on the time-varying scan (see `common.cuh`).
pub const SCAN_KAMA: i64 = 45;
/// KC's two channels and three bands (see `common.cuh`).
pub const SCAN_KC: i64 = 46;

kernel_args!(
    /// `MomentsArgs`: `tx_moments`, one thread per block of the grid.
    MomentsArgs {
        x: u64, out0: u64, out1: u64, out2: u64, sa1: u64, sa2: u64,
        base: i64, lo: i64, hi: i64, origin: i64, w: i64, mode: i64,
        inv_w: f64, inv_denom: f64, k: f64,
    }
    threads(a, cut) Some(grid_blocks(a.lo, a.hi - cut, a.origin, a.w))
);

kernel_args!(
    /// `ExtremaArgs`: `tx_extrema`, one thread per block of the grid.
    ExtremaArgs {
        x: u64, out: u64, suf: u64, base: i64, lo: i64, hi: i64, w: i64, is_max: i64,
    }
    threads(a, cut) Some(grid_blocks(a.lo, a.hi - cut, 0, a.w))
);

kernel_args!(
    /// `WmaArgs`: `tx_wma`, one thread per block of the grid.
    WmaArgs {
        x: u64, out: u64, aw: u64, base: i64, lo: i64, hi: i64, w: i64, denom: f64,
    }
    threads(a, cut) Some(grid_blocks(a.lo, a.hi - cut, 0, a.w))
);

kernel_args!(
    /// `RowArgs`: `tx_fastk` and `tx_roc`, one thread per row.
    RowArgs {
        a: u64, b: u64, c: u64, out: u64, base: i64, lo: i64, hi: i64, period: i64,
    }
    threads(a, cut) Some((a.hi - cut - a.lo).max(0) as usize)
);

kernel_args!(
    /// `ScanArgs`: the three launches of the block scan (see `scan.cu`).
    ScanArgs {
        in0: u64, in1: u64, in2: u64, l: u64, ends: u64, carries: u64, powers: u64,
        out0: u64, out1: u64,
        base: i64, stride: i64, lo: i64, hi: i64, seed_row: i64, channels: i64, mode: i64,
        coef0: f64, coef1: f64, decay0: f64, decay1: f64, seed0: f64, seed1: f64,
        lag: i64, mix0: f64, mix1: f64, mix2: f64, mix3: f64, out2: u64,
    }
);

/// `TxScanSeg` (`scan.cu`): the three scan launches over every segment of a batch; `s` as for
/// [`Seg`], then each segment's seeds (device f64 pairs) and the block offset of its ends and
/// carries (device int64, `nseg + 1`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanSeg {
    pub s: Seg<ScanArgs>,
    pub seeds: u64,
    pub blocks: u64,
}

impl KernelArgs for ScanSeg {}
// SAFETY: `Seg<ScanArgs>` then two 8-byte fields, mirrored exactly by `TxScanSeg`.
unsafe impl cudarc::driver::DeviceRepr for ScanSeg {}

pub const CO_SUMS: i64 = 0;
pub const CO_CENTRED: i64 = 1;
pub const CO_CORREL: i64 = 2;
/// The LINEARREG family (`x` = the row index): value, slope, intercept, TSF.
pub const CO_LINREG_VALUE: i64 = 30;
pub const CO_LINREG_SLOPE: i64 = 31;
pub const CO_LINREG_INTERCEPT: i64 = 32;
pub const CO_LINREG_TSF: i64 = 33;
/// BETA (`x`, `y` = the inputs' one-row returns; reads one row before the window).
pub const CO_BETA: i64 = 40;

kernel_args!(
    /// `CoMomentsArgs` (`family.cu`): `tx_comoments`, one thread per block of the grid.
    CoMomentsArgs {
        x: u64, y: u64, out0: u64, out1: u64, out2: u64, out3: u64, out4: u64,
        s0: u64, s1: u64, s2: u64, s3: u64, s4: u64,
        base: i64, lo: i64, hi: i64, origin: i64, w: i64, mode: i64, inv_w: f64,
    }
    threads(a, cut) Some(grid_blocks(a.lo, a.hi - cut, a.origin, a.w))
);

kernel_args!(
    /// `VarScanArgs` (`family.cu`): `tx_varscan_local` (one thread per scan block) and
    /// `tx_varscan_finish` (one thread per row).
    VarScanArgs {
        a: u64, b: u64, pa: u64, l: u64, ends: u64, carries: u64, out: u64,
        base: i64, lo: i64, hi: i64, seed_row: i64, seed: f64,
    }
);

kernel_args!(
    /// `ElementwiseArgs` (`family.cu`): `tx_elementwise`, one thread per row; `op` is
    /// `kernels::elementwise::Op as i64`.
    ElementwiseArgs {
        a: u64, b: u64, c: u64, d: u64, out: u64, base: i64, lo: i64, hi: i64, op: i64,
    }
    threads(a, cut) Some((a.hi - cut - a.lo).max(0) as usize)
);

/// ResettingMax (`kernels::sequential`), the state machines' first step in `tx_machine_seg`.
pub const MACHINE_RESETTING_MAX: i64 = 0;

kernel_args!(
    /// `MachineArgs` (`family.cu`): `tx_machine_seg`, one thread per segment of a batch, walking
    /// its rows in order; `starts` is a device int64 array of the `nseg + 1` bounds.
    MachineArgs {
        in0: u64, in1: u64, out0: u64, out1: u64, starts: u64,
        nseg: i64, first_row: i64, machine: i64,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    /// `(NAME, value)` of the `#define TX_NAME value` lines of `src` whose NAME starts with `prefix`.
    fn defines(src: &str, prefix: &str) -> Vec<(String, i64)> {
        src.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                if words.next()? != "#define" {
                    return None;
                }
                let name = words.next()?.strip_prefix("TX_")?;
                let value = words.next()?.parse().ok()?;
                name.starts_with(prefix).then(|| (name.to_string(), value))
            })
            .collect()
    }

    /// A kernel's mode constants: the prefix of their names, the CUDA source defining them, and
    /// their names and values here.
    type Modes<'a> = (&'a str, &'a str, &'a [(&'a str, i64)]);

    /// Every mode constant here is the CUDA sources' number, and no two modes of one kernel share a
    /// number (branches adding modes independently have picked the same one before).
    #[test]
    fn mode_numbers_match_the_cuda_sources_and_differ_within_a_kernel() {
        let common = include_str!("common.cuh");
        let family = include_str!("family.cu");
        let kernels: [Modes; 4] = [
            (
                "MOMENTS_",
                common,
                &[
                    ("MOMENTS_SMA", MOMENTS_SMA),
                    ("MOMENTS_STD", MOMENTS_STD),
                    ("MOMENTS_ZSCORE", MOMENTS_ZSCORE),
                    ("MOMENTS_BOLLINGER", MOMENTS_BOLLINGER),
                    ("MOMENTS_VAR", MOMENTS_VAR),
                    ("MOMENTS_SUM", MOMENTS_SUM),
                    ("MOMENTS_BANDS", MOMENTS_BANDS),
                    ("MOMENTS_AVGDEV", MOMENTS_AVGDEV),
                ],
            ),
            (
                "SCAN_",
                common,
                &[
                    ("SCAN_EMA", SCAN_EMA),
                    ("SCAN_MACD", SCAN_MACD),
                    ("SCAN_SIGNAL", SCAN_SIGNAL),
                    ("SCAN_RSI", SCAN_RSI),
                    ("SCAN_ATR", SCAN_ATR),
                    ("SCAN_NATR", SCAN_NATR),
                    ("SCAN_OBV", SCAN_OBV),
                    ("SCAN_CUMSUM", SCAN_CUMSUM),
                    ("SCAN_DEMA", SCAN_DEMA),
                    ("SCAN_TEMA", SCAN_TEMA),
                    ("SCAN_T3", SCAN_T3),
                    ("SCAN_ZLEMA", SCAN_ZLEMA),
                    ("SCAN_KAMA", SCAN_KAMA),
                    ("SCAN_KC", SCAN_KC),
                ],
            ),
            (
                "CO_",
                family,
                &[
                    ("CO_SUMS", CO_SUMS),
                    ("CO_CENTRED", CO_CENTRED),
                    ("CO_CORREL", CO_CORREL),
                    ("CO_LINREG_VALUE", CO_LINREG_VALUE),
                    ("CO_LINREG_SLOPE", CO_LINREG_SLOPE),
                    ("CO_LINREG_INTERCEPT", CO_LINREG_INTERCEPT),
                    ("CO_LINREG_TSF", CO_LINREG_TSF),
                    ("CO_BETA", CO_BETA),
                ],
            ),
            (
                "MACHINE_",
                family,
                &[("MACHINE_RESETTING_MAX", MACHINE_RESETTING_MAX)],
            ),
        ];
        for (prefix, src, rust) in kernels {
            // TX_SCAN_BLOCK is the block size, not a mode.
            let mut cuda: Vec<(String, i64)> = defines(src, prefix)
                .into_iter()
                .filter(|(name, _)| name != "SCAN_BLOCK")
                .collect();
            let mut ours: Vec<(String, i64)> =
                rust.iter().map(|&(n, v)| (n.to_string(), v)).collect();
            cuda.sort();
            ours.sort();
            assert_eq!(cuda, ours, "{prefix} modes: the CUDA sources vs args.rs");
            let mut numbers: Vec<i64> = ours.iter().map(|&(_, v)| v).collect();
            numbers.sort_unstable();
            numbers.dedup();
            assert_eq!(
                numbers.len(),
                ours.len(),
                "two {prefix} modes share a number"
            );
        }
    }
}
