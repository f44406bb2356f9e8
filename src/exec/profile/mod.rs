//! The persisted performance profile (docs/gpu_auto_profiling.md).
//!
//! One process-wide in-memory copy, loaded on first use; the hot path only reads it and appends
//! samples. Samples are merged into the file in batches — by a background thread at most every
//! [`FLUSH_EVERY`], and at interpreter exit (the Python package calls [`flush`] from `atexit`).
//! Nothing here can fail a query: a corrupt file is moved aside with one warning and rebuilt, an
//! unwritable location degrades to in-memory profiling with one warning.

pub mod fingerprint;
pub mod schema;
pub mod store;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use fingerprint::Fingerprint;
pub use schema::{size_bucket, MachineProfile, ProfileFile, Sample, Stat};
use store::ReadError;

/// Pending samples are written at most this often (plus at exit).
pub const FLUSH_EVERY: Duration = Duration::from_secs(3);
/// A process never holds more unflushed samples than this (older ones are flushed first).
const MAX_PENDING: usize = 10_000;

pub struct ProfileState {
    /// Where the profile lives; `None` once we fell back to in-memory profiling.
    pub path: Option<PathBuf>,
    pub fingerprint: Fingerprint,
    /// `fingerprint.id()`, computed once (it hashes the fingerprint's JSON).
    pub machine_id: String,
    /// Last known file content (this machine's entry may be stale: see `me`).
    pub file: ProfileFile,
    /// This machine's entry, with this process's samples.
    pub me: MachineProfile,
    pending: VecDeque<Sample>,
    /// Workload tags whose balance ratios changed in memory since the last write.
    balance_dirty: std::collections::BTreeSet<String>,
    last_flush: Instant,
    /// Why the profile is in memory only, if it is.
    pub memory_only: Option<String>,
}

impl ProfileState {
    /// This machine's entry.
    pub fn machine(&mut self) -> &mut MachineProfile {
        &mut self.me
    }

    /// The whole profile as this process sees it: the file with this machine's current entry.
    pub fn snapshot(&self) -> ProfileFile {
        let mut file = self.file.clone();
        if !self.me.timings.is_empty() || file.machines.contains_key(&self.machine_id) {
            file.set_machine(&self.machine_id, &self.me);
        }
        file
    }

    fn adopt(&mut self, file: ProfileFile) {
        self.me = file
            .machine(&self.machine_id)
            .unwrap_or_else(|| MachineProfile::new(self.fingerprint.clone()));
        self.file = file;
    }
}

/// `$THREADX_PROFILE`, else the user cache directory's `threadx/profile.json`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(p) = crate::exec::config::profile_path() {
        return Some(p);
    }
    cache_dir().map(|d| d.join("threadx").join("profile.json"))
}

fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(target_os = "windows") {
        return env("LOCALAPPDATA");
    }
    if cfg!(target_os = "macos") {
        return env("HOME").map(|h| h.join("Library").join("Caches"));
    }
    env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))
}

/// Prints a warning to stderr once per kind per process.
pub fn warn_once(flag: &AtomicBool, message: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        eprintln!("threadx: warning: {message}");
    }
}

static CORRUPT_WARNED: AtomicBool = AtomicBool::new(false);
static MEMORY_WARNED: AtomicBool = AtomicBool::new(false);
static FLUSHING: AtomicBool = AtomicBool::new(false);

fn load(path: Option<PathBuf>) -> ProfileState {
    let fingerprint = Fingerprint::current();
    let mut state = ProfileState {
        path: path.clone(),
        machine_id: fingerprint.id(),
        me: MachineProfile::new(fingerprint.clone()),
        fingerprint,
        file: ProfileFile::default(),
        pending: VecDeque::new(),
        balance_dirty: Default::default(),
        last_flush: Instant::now(),
        memory_only: None,
    };
    let Some(path) = path else {
        state.memory_only = Some("no profile location (set THREADX_PROFILE or HOME)".into());
        return state;
    };
    match store::read_profile(&path) {
        Ok(Some(file)) => state.adopt(file),
        Ok(None) => {}
        Err(ReadError::Corrupt(why)) => match store::move_aside(&path) {
            Ok(aside) => warn_once(
                &CORRUPT_WARNED,
                &format!(
                    "the profile {} was unusable ({why}); moved it to {} and started a new one",
                    path.display(),
                    aside.display()
                ),
            ),
            Err(e) => degrade(
                &mut state,
                format!(
                    "the profile {} is unusable ({why}) and could not be moved aside ({e})",
                    path.display()
                ),
            ),
        },
        Err(ReadError::Io(e)) => degrade(
            &mut state,
            format!("cannot read the profile {} ({e})", path.display()),
        ),
    }
    state
}

fn degrade(state: &mut ProfileState, why: String) {
    warn_once(
        &MEMORY_WARNED,
        &format!("{why}; profiling in memory only for this process"),
    );
    state.path = None;
    state.memory_only = Some(why);
}

static STATE: OnceLock<Mutex<ProfileState>> = OnceLock::new();

fn cell() -> &'static Mutex<ProfileState> {
    STATE.get_or_init(|| Mutex::new(load(default_path())))
}

/// The process-wide profile, loaded on first use. A poisoned lock (a panic elsewhere while it
/// was held) is recovered: the data is plain statistics.
pub fn state() -> MutexGuard<'static, ProfileState> {
    cell().lock().unwrap_or_else(|e| e.into_inner())
}

/// Re-resolves the location (e.g. after `THREADX_PROFILE` changed) and reloads, after flushing.
pub fn reload() {
    let _ = flush();
    *state() = load(default_path());
}

/// Adds a measured call; schedules a background flush when one is due.
pub fn record(sample: Sample) {
    let due = {
        let mut st = state();
        st.machine().push(&sample);
        if st.path.is_some() {
            if st.pending.len() >= MAX_PENDING {
                st.pending.pop_front();
            }
            st.pending.push_back(sample);
        }
        st.path.is_some() && st.last_flush.elapsed() >= FLUSH_EVERY
    };
    if due && !FLUSHING.swap(true, Ordering::AcqRel) {
        let spawned = std::thread::Builder::new()
            .name("threadx-profile".into())
            .spawn(|| {
                let _ = flush();
                FLUSHING.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            FLUSHING.store(false, Ordering::Release);
        }
    }
}

/// Merges pending samples into the file now. Errors degrade to in-memory profiling (one warning)
/// and are returned for callers that want to report them; queries never see them.
pub fn flush() -> Result<(), String> {
    // Nothing measured yet (or already written): touch neither the file nor the profile.
    if STATE.get().is_none() {
        return Ok(());
    }
    let (id, fingerprint, balance) = {
        let mut st = state();
        if st.pending.is_empty() && st.balance_dirty.is_empty() {
            return Ok(());
        }
        let tags = std::mem::take(&mut st.balance_dirty);
        let balance: Vec<(String, std::collections::BTreeMap<String, f64>)> = tags
            .into_iter()
            .filter_map(|t| st.me.balance.get(&t).map(|r| (t, r.clone())))
            .collect();
        (st.machine_id.clone(), st.fingerprint.clone(), balance)
    };
    if balance.is_empty() {
        return apply(|_| {});
    }
    apply(|file| {
        let mut m = file
            .machine(&id)
            .unwrap_or_else(|| schema::MachineProfile::new(fingerprint));
        m.balance.extend(balance);
        file.set_machine(&id, &m);
    })
}

/// The split ratios stored for `tag` (member backend name → share), if any.
pub fn balance(tag: &str) -> Option<std::collections::BTreeMap<String, f64>> {
    state().me.balance.get(tag).cloned()
}

/// Every workload tag's ratios.
pub fn balances() -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>> {
    state().me.balance.clone()
}

/// Replaces `tag`'s ratios and writes them now.
pub fn set_balance(
    tag: &str,
    ratios: std::collections::BTreeMap<String, f64>,
) -> Result<(), String> {
    {
        let mut st = state();
        st.me.balance.insert(tag.to_string(), ratios);
        st.balance_dirty.insert(tag.to_string());
    }
    flush()
}

/// The tag whose ratios a call with workload tag `tag` uses (and so refines): `tag` itself when
/// it has ratios or none exist for `default`, else `default`.
pub fn balance_tag_in_use(tag: &str) -> String {
    let st = state();
    if st.me.balance.contains_key(tag) || !st.me.balance.contains_key("default") {
        tag.to_string()
    } else {
        "default".to_string()
    }
}

/// Calls smaller than this are not recorded in the profile (timer noise dominates).
pub const MIN_RECORDED_ROWS: usize = 256;

/// Calls smaller than this do not refine balance ratios: their per-member times are too short to
/// tell the members apart from noise.
pub const MIN_REFINE_ROWS: usize = 1 << 16;

/// Moves `tag`'s ratios toward the shares `measured` (member → throughput) of one multi-device
/// call: `r += α·(measured share − r)` per member. The members of the call keep the total share
/// they had, so ratios of devices outside the call are untouched and the whole still sums to 1.
/// Members new to the tag start at their measured share. Written with the next batch.
pub fn refine_balance(tag: &str, measured: &[(String, f64)]) {
    let total: f64 = measured.iter().map(|(_, v)| v).sum();
    if !(total.is_finite() && total > 0.0) {
        return;
    }
    let mut st = state();
    let ratios = st.me.balance.entry(tag.to_string()).or_default();
    let others: f64 = ratios
        .iter()
        .filter(|(k, _)| !measured.iter().any(|(m, _)| m == *k))
        .map(|(_, v)| v)
        .sum();
    let budget = if others < 1.0 { 1.0 - others } else { 1.0 };
    for (member, v) in measured {
        let m = v / total * budget;
        let r = ratios.entry(member.clone()).or_insert(m);
        *r += schema::EWMA_ALPHA * (m - *r);
    }
    let sum: f64 = measured.iter().filter_map(|(k, _)| ratios.get(k)).sum();
    if sum > 0.0 {
        for (k, _) in measured {
            if let Some(r) = ratios.get_mut(k) {
                *r *= budget / sum;
            }
        }
    }
    st.balance_dirty.insert(tag.to_string());
}

/// Merges pending samples and applies `edit` to the file under the file lock (or in memory).
/// The in-memory lock is not held during the file I/O, so calls keep planning meanwhile; samples
/// they record are replayed onto the merged file afterwards.
pub fn apply(edit: impl FnOnce(&mut ProfileFile)) -> Result<(), String> {
    let (path, fingerprint, pending) = {
        let mut st = state();
        st.last_flush = Instant::now();
        let Some(path) = st.path.clone() else {
            let mut file = st.snapshot();
            edit(&mut file);
            st.adopt(file);
            return Ok(());
        };
        let pending: Vec<Sample> = std::mem::take(&mut st.pending).into();
        (path, st.fingerprint.clone(), pending)
    };
    let result = store::merge_and_write(&path, &fingerprint, &pending, edit);
    let mut st = state();
    match result {
        Ok((file, report)) => {
            if let Some((aside, why)) = report.moved_aside {
                warn_once(
                    &CORRUPT_WARNED,
                    &format!(
                        "the profile {} was unusable ({why}); moved it to {} and started a new one",
                        path.display(),
                        aside.display()
                    ),
                );
            }
            st.adopt(file);
            let newer: Vec<Sample> = st.pending.iter().cloned().collect();
            for s in &newer {
                st.me.push(s);
            }
            Ok(())
        }
        Err(e) => {
            let why = format!("cannot write the profile {} ({e})", path.display());
            degrade(&mut st, why.clone());
            Err(why)
        }
    }
}

/// Stores a GPU's measured link model (replacing the previous one) in this machine's entry.
pub fn set_link(backend: &str, link: schema::LinkModel) -> Result<(), String> {
    let (id, fingerprint) = {
        let st = state();
        (st.machine_id.clone(), st.fingerprint.clone())
    };
    apply(|file| {
        let mut m = file
            .machine(&id)
            .unwrap_or_else(|| schema::MachineProfile::new(fingerprint));
        m.links.insert(backend.to_string(), link);
        file.set_machine(&id, &m);
    })
}

/// Forgets this machine's entry (other machines' entries stay), on disk and in memory.
pub fn reset() -> Result<(), String> {
    let id = state().machine_id.clone();
    {
        let mut st = state();
        st.pending.clear();
        st.file.machines.remove(&id);
        st.me = MachineProfile::new(st.fingerprint.clone());
    }
    apply(|f| {
        f.machines.remove(&id);
    })
}
