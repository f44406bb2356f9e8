//! Which thread may use which GPU, and when: one mutex per GPU, and the rule that keeps calls
//! that hold several GPUs at once from deadlocking each other.
//!
//! A single-device call locks its GPU for the whole call ([`DeviceSlots::lock_one`]). A
//! multi-device call runs one member thread per GPU, and scan members meet at barriers while
//! they hold their GPUs. If each member locked its own GPU on its own thread, two calls could each
//! hold one GPU of the other's set at a barrier and wait for each other forever (call A holds
//! GPU 0 and waits at its barrier for its member on GPU 1, call B holds GPU 1 and waits for its
//! member on GPU 0; `ema(...).over("symbol")` with `device="gpus"` runs many such calls at once).
//!
//! The rule ([`DeviceSlots::with_set`]): a multi-device call takes every member's lock on the
//! calling thread, in ascending GPU index order, before any member starts, and releases them only
//! after every member has finished. Locks taken in one global order cannot form a cycle, and a
//! call that is still acquiring holds no barrier, so every call finishes. The members then only
//! take their own, uncontended, per-member handle ([`LockedSet::with`]). docs/gpu_auto_profiling.md,
//! "Concurrency rules of device sets", states the rule for users.
//!
//! The slots are generic so the host-built test GPUs go through exactly this locking.

use std::sync::{Mutex, MutexGuard};

use super::error::GpuError;

/// One mutex-guarded state per GPU ordinal.
pub struct DeviceSlots<S> {
    slots: Vec<Mutex<S>>,
}

impl<S: Send> DeviceSlots<S> {
    /// `count` slots, each starting as `init()`.
    pub fn new(count: usize, mut init: impl FnMut() -> S) -> Self {
        DeviceSlots {
            slots: (0..count).map(|_| Mutex::new(init())).collect(),
        }
    }

    /// Locks GPU `index` alone (single-device calls). A poisoned lock is taken over: the state
    /// behind it is a cache that each call rebinds, and a panic never leaves it half written in a
    /// way a later call relies on.
    pub fn lock_one(&self, index: usize) -> Result<MutexGuard<'_, S>, GpuError> {
        let slot = self.slots.get(index).ok_or(GpuError::NoDevice(index))?;
        Ok(slot.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` with every GPU of `indices` locked; member `m` of the set is GPU `indices[m]`.
    /// The locks are taken here, on the calling thread, in ascending index order (see the module
    /// docs), and released after `f` returns. A GPU listed twice is an error: a member could
    /// never lock a GPU its own call already holds.
    pub fn with_set<T>(
        &self,
        indices: &[usize],
        f: impl FnOnce(&LockedSet<'_, S>) -> T,
    ) -> Result<T, GpuError> {
        let mut order: Vec<(usize, usize)> = indices
            .iter()
            .enumerate()
            .map(|(member, &index)| (index, member))
            .collect();
        order.sort_unstable();
        if order.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(GpuError::DeviceSet(
                "a GPU is listed twice in the device set",
            ));
        }
        let mut guards: Vec<(usize, MutexGuard<'_, S>)> = Vec::with_capacity(order.len());
        for (index, member) in order {
            guards.push((member, self.lock_one(index)?));
        }
        let mut states: Vec<Option<&mut S>> = (0..indices.len()).map(|_| None).collect();
        for (member, guard) in guards.iter_mut() {
            states[*member] = Some(&mut **guard);
        }
        // Every member got its guard above (the members are a permutation of 0..len).
        let members = states
            .into_iter()
            .map(|s| s.map(Mutex::new))
            .collect::<Option<Vec<_>>>()
            .ok_or(GpuError::DeviceSet("a member of the device set has no GPU"))?;
        Ok(f(&LockedSet { members }))
    }
}

/// The GPUs of one multi-device call, all locked by [`DeviceSlots::with_set`]. Each member
/// thread reaches its own GPU's state through [`LockedSet::with`]; the per-member mutex is
/// only ever taken by that member, so it never blocks.
pub struct LockedSet<'a, S> {
    members: Vec<Mutex<&'a mut S>>,
}

impl<S> LockedSet<'_, S> {
    /// Runs `f` with member `member`'s state.
    pub fn with<R>(&self, member: usize, f: impl FnOnce(&mut S) -> R) -> Result<R, GpuError> {
        let slot = self
            .members
            .get(member)
            .ok_or(GpuError::DeviceSet("no such member of the device set"))?;
        let mut state = slot.lock().unwrap_or_else(|e| e.into_inner());
        Ok(f(&mut state))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_get_their_own_gpu_whatever_the_order() {
        let slots = DeviceSlots::new(4, || 0usize);
        for (i, s) in [10, 11, 12, 13].into_iter().enumerate() {
            *slots.lock_one(i).unwrap() = s;
        }
        let seen = slots
            .with_set(&[3, 0, 2], |set| {
                (0..set.len())
                    .map(|m| set.with(m, |s| *s).unwrap())
                    .collect::<Vec<_>>()
            })
            .unwrap();
        assert_eq!(seen, vec![13, 10, 12]);
    }

    #[test]
    fn a_gpu_listed_twice_or_missing_is_an_error_not_a_hang() {
        let slots = DeviceSlots::new(2, || ());
        assert!(slots.with_set(&[1, 0, 1], |_| ()).is_err());
        assert_eq!(
            slots.with_set(&[0, 5], |_| ()).unwrap_err(),
            GpuError::NoDevice(5)
        );
        // Nothing stays locked after a refusal.
        assert!(slots.with_set(&[0, 1], |set| set.len()).is_ok());
    }
}
