//! How many output rows one GPU piece holds: `THREADX_GPU_PIECE_ROWS` when set, else what half
//! the device's free memory holds with every array a piece needs. Free memory, read at the time
//! of the call: a GPU shared with another process (or with another threadx call's leftovers in
//! its memory pool) has less free than total memory, and pieces sized from its total fail with
//! out-of-memory, which sends the whole call back to the CPU.

use crate::exec::config;
use crate::kernels::Spec;

/// Fewest rows a piece is cut to, whatever the free memory: smaller pieces cost more in launches
/// and copies than they save.
const MIN_PIECE_ROWS: usize = 1 << 16;

/// Piece rows on one GPU with `free_rows` f64 rows of free memory.
pub fn piece_rows(spec: &Spec, free_rows: usize) -> usize {
    sized(spec, free_rows, config::gpu_piece_rows())
}

/// Piece rows of each member of a multi-device call, each from that member's own free memory.
pub fn member_piece_rows(spec: &Spec, free_rows: &[usize]) -> Vec<usize> {
    let forced = config::gpu_piece_rows();
    free_rows.iter().map(|f| sized(spec, *f, forced)).collect()
}

fn sized(spec: &Spec, free_rows: usize, forced: Option<usize>) -> usize {
    if let Some(r) = forced {
        return r;
    }
    let arrays = spec.inputs().len() + spec.outputs().len() + 6;
    (free_rows / 2 / arrays).max(MIN_PIECE_ROWS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: usize = 1 << 30;

    /// Two 80 GiB GPUs, the second shared with another process that leaves it 2 GiB free: each
    /// member's pieces fit in half of its own free memory (sized from the total, as before, a
    /// piece of the second would need 40 GiB).
    #[test]
    fn each_member_is_sized_from_its_own_free_memory() {
        let spec = Spec::ema(10).unwrap();
        let arrays = 1 + 1 + 6;
        let free = [70 * GIB / 8, 2 * GIB / 8];
        let rows: Vec<usize> = free.iter().map(|f| sized(&spec, *f, None)).collect();
        for (r, f) in rows.iter().zip(free) {
            assert!(
                r * arrays <= f / 2,
                "{r} rows of {arrays} arrays in {f} free rows"
            );
        }
        assert!(rows[0] > rows[1], "{rows:?}");
        assert_eq!(rows[1], 2 * GIB / 8 / 2 / arrays);
        // More arrays (STOCH: 3 inputs, 2 outputs) mean fewer rows in the same memory.
        let stoch = Spec::stoch(14, 3, 3).unwrap();
        assert!(sized(&stoch, free[1], None) < rows[1]);
    }

    #[test]
    fn a_nearly_full_gpu_still_gets_the_minimum_and_the_setting_wins() {
        let spec = Spec::macd(12, 26, 9).unwrap();
        assert_eq!(sized(&spec, 0, None), MIN_PIECE_ROWS);
        assert_eq!(sized(&spec, 1000, None), MIN_PIECE_ROWS);
        assert_eq!(sized(&spec, 70 * GIB / 8, Some(4096)), 4096);
    }
}
