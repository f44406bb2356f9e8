//! The persisted performance profile (docs/gpu_auto_profiling.md).
//!
//! One process-wide in-memory copy, loaded on first use; the hot path only reads it and appends
//! samples. Samples are merged into the file in batches — by a background thread at most every
//! [`FLUSH_EVERY`], and at interpreter exit (the Python package calls [`flush`] from `atexit`).
//! Nothing here can fail a query: a corrupt file is moved aside with a warning and rebuilt; a
//! location that is not a regular file is never touched (the profile stays in memory; `/dev/null`
//! switches persistence off silently); a failed write is retried with backoff on later flushes,
//! its samples kept (bounded), with one warning per run of failures.

pub mod fingerprint;
pub mod schema;
pub mod store;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use fingerprint::Fingerprint;
pub use schema::{size_bucket, MachineProfile, ProfileFile, Sample, Stat};
use store::ReadError;

/// Pending samples are written at most this often (plus at exit).
pub const FLUSH_EVERY: Duration = Duration::from_secs(3);
/// A process never holds more unflushed samples than this (older ones are flushed first).
const MAX_PENDING: usize = 10_000;

/// A run of failed writes: when the next background flush may try again.
struct Failure {
    attempts: u32,
    next_try: Instant,
}

/// Backoff after `attempts` failed writes: 3 s, 6 s, 12 s, ... at most 5 minutes.
fn backoff(attempts: u32) -> Duration {
    (FLUSH_EVERY * 2u32.saturating_pow(attempts.saturating_sub(1).min(16)))
        .min(Duration::from_secs(300))
}

pub struct ProfileState {
    /// Where the profile is persisted now; `None` while profiling in memory (by request, because
    /// the location is unusable, or while writes fail: see `memory_only`).
    pub path: Option<PathBuf>,
    /// Where writes go (the location with symbolic links resolved); kept while writes fail, so
    /// that later flushes retry. `None` when the profile is never written.
    target: Option<PathBuf>,
    /// The location as configured (what `path` shows while writes succeed).
    location: Option<PathBuf>,
    failure: Option<Failure>,
    /// `THREADX_PROFILE` is the null device: persistence is off on request (not an error).
    persist_off: bool,
    pub fingerprint: Fingerprint,
    /// `fingerprint.id()`, computed once (it hashes the fingerprint's JSON).
    pub machine_id: String,
    /// Last known file content (this machine's entry may be stale: see `me`).
    pub file: Arc<ProfileFile>,
    /// This machine's entry, with this process's samples.
    pub me: MachineProfile,
    pending: VecDeque<Sample>,
    /// Workload tags whose balance ratios changed in memory since the last write.
    balance_dirty: std::collections::BTreeSet<String>,
    last_flush: Instant,
    /// Why the profile is in memory only, if it is.
    pub memory_only: Option<String>,
    /// Identity of the file `file` was read from or written as (see [`store::FileId`]).
    file_id: Option<store::FileId>,
    /// A large file's full parse, still running: `me` was taken from the file's text by a fast
    /// search (`adopted_raw`), and [`ProfileState::settle`] joins this before `file` is used.
    /// The thread returns the file and whether it is still the one `file_id` names.
    parsing: Option<std::thread::JoinHandle<Result<(ProfileFile, bool), ReadError>>>,
    adopted_raw: Option<String>,
}

/// Files at least this large are parsed in the background: the first call only needs this
/// machine's entry (a 62 MB shared profile takes ~100 ms to parse, the entry well under 1 ms).
const BACKGROUND_PARSE_BYTES: u64 = 4 << 20;

impl ProfileState {
    /// This machine's entry.
    pub fn machine(&mut self) -> &mut MachineProfile {
        &mut self.me
    }

    /// Waits for a background parse of the file (see `parsing`) and takes its result: the file,
    /// and this machine's entry from it if the fast search found something else. A file found
    /// corrupt is moved aside, as at load.
    fn settle(&mut self) {
        let Some(parse) = self.parsing.take() else {
            return;
        };
        let result = parse
            .join()
            .unwrap_or_else(|_| Err(ReadError::Corrupt("its parse panicked".into())));
        match result {
            Ok((file, same)) => {
                if !same {
                    self.file_id = None; // changed since the scan: the next flush re-reads it
                }
                let raw = file.machines.get(&self.machine_id).map(|v| v.get());
                if raw != self.adopted_raw.as_deref() {
                    // The fast search matched inside another entry: take the real one, and
                    // this process's samples again.
                    self.me = file
                        .machine(&self.machine_id)
                        .unwrap_or_else(|| MachineProfile::new(self.fingerprint.clone()));
                    let pending: Vec<Sample> = self.pending.iter().cloned().collect();
                    for s in &pending {
                        self.me.push(s);
                    }
                }
                self.file = Arc::new(file);
            }
            Err(e) => {
                self.file_id = None;
                if let Some(target) = self.target.clone() {
                    let path = self.location.clone().unwrap_or_else(|| target.clone());
                    read_failed(self, &path, &target, e);
                }
            }
        }
        self.adopted_raw = None;
    }

    /// The whole profile as this process sees it: the file with this machine's current entry.
    pub fn snapshot(&mut self) -> ProfileFile {
        self.settle();
        let mut file = (*self.file).clone();
        if !self.me.timings.is_empty() || file.machines.contains_key(&self.machine_id) {
            file.set_machine(&self.machine_id, &self.me);
        }
        file
    }

    fn adopt(&mut self, file: ProfileFile) {
        self.me = file
            .machine(&self.machine_id)
            .unwrap_or_else(|| MachineProfile::new(self.fingerprint.clone()));
        self.file = Arc::new(file);
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

static MEMORY_WARNED: AtomicBool = AtomicBool::new(false);
static FLUSHING: AtomicBool = AtomicBool::new(false);
/// Set once this process has expired old entries of other machines (its first write).
static EXPIRED: AtomicBool = AtomicBool::new(false);

fn warn(message: &str) {
    eprintln!("threadx: warning: {message}");
}

fn warn_moved_aside(path: &std::path::Path, aside: &std::path::Path, why: &str) {
    warn(&format!(
        "the profile {} was unusable ({why}); moved it to {} and started a new one",
        path.display(),
        aside.display()
    ));
}

fn load(path: Option<PathBuf>) -> ProfileState {
    let fingerprint = Fingerprint::current();
    let mut state = ProfileState {
        path: path.clone(),
        target: None,
        location: path.clone(),
        failure: None,
        persist_off: false,
        machine_id: fingerprint.id(),
        me: MachineProfile::new(fingerprint.clone()),
        fingerprint,
        file: Arc::default(),
        pending: VecDeque::new(),
        balance_dirty: Default::default(),
        last_flush: Instant::now(),
        memory_only: None,
        file_id: None,
        parsing: None,
        adopted_raw: None,
    };
    let Some(path) = path else {
        state.memory_only = Some("no profile location (set THREADX_PROFILE or HOME)".into());
        return state;
    };
    let target = store::resolve(&path);
    match store::locate(&target) {
        Ok(store::Location::DevNull) => {
            state.path = None;
            state.persist_off = true;
            state.memory_only = Some(format!(
                "the profile location {} is the null device: not persisted",
                path.display()
            ));
            return state;
        }
        Ok(store::Location::Other(what)) => {
            degrade(
                &mut state,
                format!(
                    "the profile location {} is {what}, not a regular file: it is left alone",
                    path.display()
                ),
            );
            return state;
        }
        _ => {}
    }
    state.target = Some(target.clone());
    let id = store::file_id(&target);
    let read = store::regular_len(&target).and_then(|len| match len {
        Some(len) if len >= BACKGROUND_PARSE_BYTES => {
            if let Some(raw) = store::scan_entry(&target, &state.machine_id)? {
                state.me = MachineProfile::from_json(&raw)
                    .map(|(m, _)| m)
                    .unwrap_or_else(|| MachineProfile::new(state.fingerprint.clone()));
                state.adopted_raw = Some(raw);
            }
            // Trusted only if the full parse reads the file this scan saw (checked in `settle`).
            state.file_id = id.clone();
            let path = target.clone();
            let parse = move || {
                let file = store::read_profile(&path)?;
                let same = id.is_some() && store::file_id(&path) == id;
                Ok((file.unwrap_or_default(), same))
            };
            let handle = std::thread::Builder::new()
                .name("threadx-profile-load".into())
                .spawn(parse)
                .map_err(ReadError::Io)?;
            state.parsing = Some(handle);
            Ok(None)
        }
        _ => {
            let file = store::read_profile(&target)?;
            // Only trusted when the file did not change while it was read.
            state.file_id = id.filter(|id| store::file_id(&target).as_ref() == Some(id));
            Ok(file)
        }
    });
    match read {
        Ok(Some(file)) => state.adopt(file),
        Ok(None) => {}
        Err(e) => read_failed(&mut state, &path, &target, e),
    }
    state
}

/// What a profile that cannot be read means: see [`load`] and [`ProfileState::settle`].
fn read_failed(
    state: &mut ProfileState,
    path: &std::path::Path,
    target: &std::path::Path,
    e: ReadError,
) {
    match e {
        ReadError::NotRegular(what) => degrade(
            state,
            format!(
                "the profile location {} is {what}, not a regular file: it is left alone",
                path.display()
            ),
        ),
        ReadError::Corrupt(why) => match store::move_aside(target) {
            Ok(aside) => warn_moved_aside(path, &aside, &why),
            Err(e) => degrade(
                state,
                format!(
                    "the profile {} is unusable ({why}) and could not be moved aside ({e})",
                    path.display()
                ),
            ),
        },
        ReadError::Io(e) => degrade(
            state,
            format!("cannot read the profile {} ({e})", path.display()),
        ),
    }
}

fn degrade(state: &mut ProfileState, why: String) {
    warn_once(
        &MEMORY_WARNED,
        &format!("{why}; profiling in memory only for this process"),
    );
    state.path = None;
    state.target = None;
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
        if st.target.is_some() {
            if st.pending.len() >= MAX_PENDING {
                st.pending.pop_front();
            }
            st.pending.push_back(sample);
        }
        st.target.is_some()
            && st.last_flush.elapsed() >= FLUSH_EVERY
            && st
                .failure
                .as_ref()
                .is_none_or(|f| Instant::now() >= f.next_try)
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

/// Merges pending samples into the file now. `Ok` means everything recorded is on disk (or
/// persistence is off on request: `THREADX_PROFILE=/dev/null`). A failed write keeps the samples
/// for the next try (one warning per run of failures); while writes fail, or when the location is
/// unusable, this returns why. Queries never see these errors.
pub fn flush() -> Result<(), String> {
    // Nothing measured yet (or already written): touch neither the file nor the profile.
    if STATE.get().is_none() {
        return Ok(());
    }
    let (id, fingerprint, balance) = {
        let st = state();
        if st.target.is_none() {
            return match &st.memory_only {
                Some(why) if !st.persist_off => Err(why.clone()),
                _ => Ok(()),
            };
        }
        if st.pending.is_empty() && st.balance_dirty.is_empty() && st.failure.is_none() {
            return Ok(());
        }
        let tags = st.balance_dirty.clone();
        let balance: Vec<(String, std::collections::BTreeMap<String, f64>)> = tags
            .into_iter()
            .filter_map(|t| st.me.balance.get(&t).map(|r| (t, r.clone())))
            .collect();
        (st.machine_id.clone(), st.fingerprint.clone(), balance)
    };
    if balance.is_empty() {
        return apply(|_| {});
    }
    let tags: Vec<String> = balance.iter().map(|(t, _)| t.clone()).collect();
    let result = apply(|file| {
        let mut m = file
            .machine(&id)
            .unwrap_or_else(|| schema::MachineProfile::new(fingerprint));
        m.balance.extend(balance);
        file.set_machine(&id, &m);
    });
    if result.is_ok() {
        // Written (a tag refined again meanwhile is written with the next flush, harmlessly).
        let mut st = state();
        for t in &tags {
            st.balance_dirty.remove(t);
        }
    }
    result
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
    let expire = (!EXPIRED.load(Ordering::Relaxed))
        .then(expiry_cutoff)
        .flatten();
    apply_with(expire, edit).map(|_| ())
}

/// The `updated_unix` before which other machines' entries expire (`None`: never).
fn expiry_cutoff() -> Option<u64> {
    let days = crate::exec::config::profile_expiry_days();
    (days > 0).then(|| store::unix_now().saturating_sub(days.saturating_mul(86_400)))
}

/// Removes entries of other machines and builds not updated for `days` days (default: the
/// configured expiry, `THREADX_PROFILE_EXPIRY_DAYS`; `0`: nothing expires); returns the ids
/// removed.
pub fn prune(days: Option<u64>) -> Result<Vec<String>, String> {
    let days = days.unwrap_or_else(crate::exec::config::profile_expiry_days);
    if days == 0 {
        return Ok(Vec::new()); // 0 days: nothing expires
    }
    let cutoff = store::unix_now().saturating_sub(days.saturating_mul(86_400));
    let (target, id) = {
        let st = state();
        (st.target.clone(), st.machine_id.clone())
    };
    if target.is_none() {
        let mut st = state();
        st.settle();
        let removed = Arc::make_mut(&mut st.file).expire(cutoff, &id);
        return Ok(removed);
    }
    apply_with(Some(cutoff), |_| {})
}

fn apply_with(
    expire: Option<u64>,
    edit: impl FnOnce(&mut ProfileFile),
) -> Result<Vec<String>, String> {
    let (path, fingerprint, pending, cached) = {
        let mut st = state();
        st.last_flush = Instant::now();
        let Some(path) = st.target.clone() else {
            let mut file = st.snapshot();
            edit(&mut file);
            st.adopt(file);
            return Ok(Vec::new());
        };
        st.settle();
        let pending: Vec<Sample> = std::mem::take(&mut st.pending).into();
        let cached = st.file_id.clone().map(|id| (id, Arc::clone(&st.file)));
        (path, st.fingerprint.clone(), pending, cached)
    };
    let result = store::merge_and_write(
        &path,
        &fingerprint,
        &pending,
        expire,
        cached.as_ref().map(|(id, f)| (id, &**f)),
        edit,
    );
    let mut st = state();
    match result {
        Ok((file, report)) => {
            if expire.is_some() {
                EXPIRED.store(true, Ordering::Relaxed);
            }
            if let Some((aside, why)) = &report.moved_aside {
                warn_moved_aside(&path, aside, why);
            }
            if let Some((backup, problems)) = &report.repaired {
                let shown: Vec<&str> = problems.iter().take(8).map(String::as_str).collect();
                let more = problems.len().saturating_sub(shown.len());
                warn(&format!(
                    "the profile {}: dropped {} invalid part(s) of this machine's entry: {}{}; \
                     the original was copied to {}",
                    path.display(),
                    problems.len(),
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    },
                    backup.display()
                ));
            }
            st.failure = None;
            st.file_id = report.written.clone();
            st.path = st.location.clone();
            st.memory_only = None;
            st.adopt(file);
            let newer: Vec<Sample> = st.pending.iter().cloned().collect();
            for s in &newer {
                st.me.push(s);
            }
            Ok(report.expired)
        }
        Err(e) if store::is_not_regular(&e) => {
            let why = format!(
                "the profile location {} is unusable ({e}): it is left alone",
                path.display()
            );
            degrade(&mut st, why.clone());
            Err(why)
        }
        Err(e) => {
            let why = format!("cannot write the profile {} ({e})", path.display());
            // Keep the samples for the next try: older ones first, the newest MAX_PENDING kept.
            let newer = std::mem::take(&mut st.pending);
            st.pending = pending.into_iter().chain(newer).collect();
            while st.pending.len() > MAX_PENDING {
                st.pending.pop_front();
            }
            let attempts = st.failure.as_ref().map_or(0, |f| f.attempts) + 1;
            if attempts == 1 {
                warn(&format!(
                    "{why}; profiling in memory and retrying on later flushes"
                ));
            }
            st.failure = Some(Failure {
                attempts,
                next_try: Instant::now() + backoff(attempts),
            });
            st.path = None;
            st.memory_only = Some(format!("{why}; retrying"));
            Err(why)
        }
    }
}

/// Stores a GPU's measured link model (replacing the previous one) in this machine's entry.
pub fn set_link(backend: &str, link: schema::LinkModel) -> Result<(), String> {
    let (id, fingerprint) = {
        let mut st = state();
        st.me.links.insert(backend.to_string(), link.clone());
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
        st.settle();
        Arc::make_mut(&mut st.file).machines.remove(&id);
        st.me = MachineProfile::new(st.fingerprint.clone());
    }
    apply(|f| {
        f.machines.remove(&id);
    })
}
