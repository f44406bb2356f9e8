//! What every chained single pass shares (the scans of `scan.rs` and `varscan.rs`, MACD's scan
//! feeding a scan, the cascades of `cascade.rs`): units claimed in increasing order, and carries
//! published once per unit and waited for briefly.
//!
//! Not part of any spec: these decide only who computes what and when. A unit's carry is the same
//! bits whoever computes it, so the first to publish wins and a late one is recomputed rather than
//! waited for: a worker descheduled on a busy machine, or one that panicked, costs recomputation,
//! never a stall.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a unit waits for its predecessor's carry before computing it itself, in multiples of
/// the time its own local scans took (the predecessor started earlier, so in a healthy run its
/// carry is due by then; past that its worker has most likely been descheduled).
pub(super) const PATIENCE: u32 = 2;

/// Each unit's piece of the outputs, handed to whoever claims the unit. Units are claimed in
/// increasing order, so a unit's predecessors are claimed already, most of them done.
pub(super) struct Claims<P> {
    next: AtomicUsize,
    slots: Vec<Mutex<Option<P>>>,
}

impl<P> Claims<P> {
    /// One unit per piece, in order.
    pub(super) fn new(pieces: impl IntoIterator<Item = P>) -> Self {
        Claims {
            next: AtomicUsize::new(0),
            slots: pieces.into_iter().map(|p| Mutex::new(Some(p))).collect(),
        }
    }

    /// The next unclaimed unit and its piece; `None` once every unit is taken.
    pub(super) fn next(&self) -> Option<(usize, P)> {
        let u = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = self.slots.get(u)?;
        // The counter hands out each index once, so the slot is always full here.
        let piece = slot.lock().ok().and_then(|mut slot| slot.take());
        match piece {
            Some(piece) => Some((u, piece)),
            None => unreachable!("chained unit {u} claimed twice"),
        }
    }
}

/// The carry out of every unit, published once known.
pub(super) struct Carries<T> {
    cells: Vec<OnceLock<T>>,
}

impl<T: Copy> Carries<T> {
    pub(super) fn new(units: usize) -> Self {
        Carries {
            cells: (0..units).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Unit `u`'s carry out. Whoever sets it first wins; every candidate holds the same bits.
    pub(super) fn publish(&self, u: usize, c: T) {
        let _ = self.cells[u].set(c);
    }

    /// Unit `u`'s carry out, if published.
    pub(super) fn get(&self, u: usize) -> Option<T> {
        self.cells[u].get().copied()
    }

    /// The last unit's carry out: the state after the last row.
    pub(super) fn last(&self) -> Option<T> {
        self.cells.last().and_then(OnceLock::get).copied()
    }

    /// Unit `u - 1`'s carry out, waited for at most `patience`.
    pub(super) fn wait(&self, u: usize, patience: Duration) -> Option<T> {
        wait_briefly(&self.cells[u - 1], patience)
    }

    /// The carry into unit `u`, where units before `first` are empty and `seed` goes into
    /// `first`: the predecessor's, waited for at most `patience`, after which the missing ones
    /// are computed here from the last published carry, `through(v, c_in)` giving unit `v`'s
    /// carry out (published as it is found).
    pub(super) fn carry_into(
        &self,
        u: usize,
        (first, seed): (usize, T),
        patience: Duration,
        mut through: impl FnMut(usize, T) -> T,
    ) -> T {
        if u <= first {
            return seed;
        }
        if let Some(c) = self.wait(u, patience) {
            return c;
        }
        let mut j = u - 1;
        let mut c = loop {
            if j == first {
                break seed;
            }
            if let Some(c) = self.get(j - 1) {
                break c;
            }
            j -= 1;
        };
        for v in j..u {
            c = match self.get(v) {
                Some(known) => known,
                None => {
                    let out = through(v, c);
                    self.publish(v, out);
                    out
                }
            };
        }
        c
    }
}

/// Spins until `cell` is set or `patience` has passed.
fn wait_briefly<T: Copy>(cell: &OnceLock<T>, patience: Duration) -> Option<T> {
    let started = Instant::now();
    loop {
        for _ in 0..64 {
            if let Some(c) = cell.get() {
                return Some(*c);
            }
            std::hint::spin_loop();
        }
        if started.elapsed() >= patience {
            return cell.get().copied();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every unit is claimed once, in increasing order, with its own piece, across threads.
    #[test]
    fn every_unit_is_claimed_once_with_its_piece() {
        let claims = Claims::new((0..1000).map(|u| u * 3));
        let seen: Vec<Vec<(usize, usize)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        while let Some(claim) = claims.next() {
                            mine.push(claim);
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for mine in &seen {
            assert!(mine.windows(2).all(|w| w[0].0 < w[1].0), "increasing order");
        }
        let mut all: Vec<(usize, usize)> = seen.into_iter().flatten().collect();
        all.sort();
        assert_eq!(all, (0..1000).map(|u| (u, u * 3)).collect::<Vec<_>>());
        assert!(claims.next().is_none());
    }

    /// A late carry is computed from the last published one, through every missing unit in
    /// order, each published on the way; known ones are taken as they are.
    #[test]
    fn a_late_carry_is_chained_from_the_last_published_one() {
        let carries = Carries::<u64>::new(6);
        carries.publish(1, 100);
        carries.publish(3, 300);
        let mut walked = Vec::new();
        let c = carries.carry_into(5, (0, 7), Duration::ZERO, |v, c| {
            walked.push((v, c));
            c * 10 + v as u64
        });
        // Unit 3 is known; unit 4 is computed from it.
        assert_eq!(walked, vec![(4, 300)]);
        assert_eq!(c, 3004);
        assert_eq!(carries.get(4), Some(3004));
        let mut walked = Vec::new();
        let fresh = Carries::<u64>::new(4);
        fresh.publish(0, 1);
        let c = fresh.carry_into(4, (1, 7), Duration::ZERO, |v, c| {
            walked.push((v, c));
            c + 1
        });
        // Unit 0 lies before the first unit: the chain starts from the seed in unit 1.
        assert_eq!(walked, vec![(1, 7), (2, 8), (3, 9)]);
        assert_eq!(c, 10);
        assert_eq!(fresh.last(), Some(10));
        assert_eq!(fresh.carry_into(1, (1, 7), Duration::ZERO, |_, _| 0), 7);
    }
}
