//! The profile on disk: read, move a corrupt file aside, and merge-and-write atomically.
//!
//! A write takes an advisory lock on `<file>.lock`, reads what is on disk, replays this process's
//! pending samples onto it (so concurrent processes never lose each other's samples), writes a
//! temporary file in the same directory, fsyncs it and renames it over the profile.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::fingerprint::Fingerprint;
use super::schema::{MachineProfile, ProfileFile, Sample, SCHEMA_VERSION};

#[derive(Debug)]
pub enum ReadError {
    /// The file exists but is not a profile of our schema (truncated, garbage, other version).
    Corrupt(String),
    /// Something that is not a regular file is there (a FIFO, device, socket, directory): it is
    /// never read, renamed or replaced. The text says what it is.
    NotRegular(String),
    /// The file could not be read at all (permissions, I/O).
    Io(io::Error),
}

/// The error a write returns when the location holds something that is not a regular file.
#[derive(Debug)]
pub struct NotRegular(pub String);

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "it is {}, not a regular file", self.0)
    }
}

impl std::error::Error for NotRegular {}

/// Whether a write failed because the location is not a regular file (a permanent condition).
pub fn is_not_regular(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<NotRegular>())
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Follows a chain of symbolic links (at most 40), also when the last target does not exist yet,
/// so that the profile is written *through* a link: next to its target, never over the link.
pub fn resolve(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => match fs::read_link(&p) {
                Ok(t) if t.is_absolute() => p = t,
                Ok(t) => p = p.parent().map_or(t.clone(), |d| d.join(&t)),
                Err(_) => break,
            },
            _ => break,
        }
    }
    p
}

/// What is at a (resolved) location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Missing,
    Regular,
    /// The null device: persistence is switched off.
    DevNull,
    /// Anything else that exists, described ("a FIFO", "a directory", ...).
    Other(String),
}

fn describe(ft: &fs::FileType) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO".into();
        }
        if ft.is_socket() {
            return "a socket".into();
        }
        if ft.is_char_device() {
            return "a character device".into();
        }
        if ft.is_block_device() {
            return "a block device".into();
        }
    }
    if ft.is_dir() {
        "a directory".into()
    } else {
        "not a regular file".into()
    }
}

fn is_dev_null(m: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        m.file_type().is_char_device()
            && fs::metadata("/dev/null").is_ok_and(|n| n.rdev() == m.rdev())
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        false
    }
}

/// Looks at a resolved location without opening it.
pub fn locate(path: &Path) -> io::Result<Location> {
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Location::Missing),
        Err(e) => Err(e),
        Ok(m) if m.is_file() => Ok(Location::Regular),
        Ok(m) if is_dev_null(&m) => Ok(Location::DevNull),
        Ok(m) => Ok(Location::Other(describe(&m.file_type()))),
    }
}

/// `O_NONBLOCK` (no libc dependency for one constant).
#[cfg(all(unix, any(target_os = "linux", target_os = "android")))]
const O_NONBLOCK: i32 = 0o4000;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
const O_NONBLOCK: i32 = 0x0004;

/// Opens for reading without ever blocking (a FIFO swapped in is not waited on) and checks, on
/// the open file, that it is a regular file.
fn open_regular(path: &Path) -> Result<Option<File>, ReadError> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(O_NONBLOCK);
    }
    let file = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let m = file.metadata().map_err(ReadError::Io)?;
    if !m.is_file() {
        return Err(ReadError::NotRegular(describe(&m.file_type())));
    }
    Ok(Some(file))
}

/// Reads a profile; `Ok(None)` when there is no file yet.
pub fn read_profile(path: &Path) -> Result<Option<ProfileFile>, ReadError> {
    read_bytes(path)?.map(|b| parse_profile(&b)).transpose()
}

pub fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, ReadError> {
    let Some(mut file) = open_regular(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize + 1));
    io::Read::read_to_end(&mut file, &mut bytes).map_err(ReadError::Io)?;
    Ok(Some(bytes))
}

/// The length of the regular file at `path` (`None`: no file), opened as [`read_bytes`] opens it.
pub fn regular_len(path: &Path) -> Result<Option<u64>, ReadError> {
    let Some(file) = open_regular(path)? else {
        return Ok(None);
    };
    Ok(Some(file.metadata().map_err(ReadError::Io)?.len()))
}

/// The raw text of the entry under `id` in the profile at `path`, found without parsing or
/// keeping the rest: the first `"<id>":` followed by one JSON value. The file streams through one
/// small buffer (reading a 62 MB file into fresh memory costs ~50 ms of page faults alone). A fast
/// path for the first call on a large shared profile; the caller confirms it against the full
/// parse later ([`parse_profile`]), since the same characters could occur inside another entry.
pub fn scan_entry(path: &Path, id: &str) -> Result<Option<String>, ReadError> {
    let Some(mut file) = open_regular(path)? else {
        return Ok(None);
    };
    let key = format!("\"{id}\":");
    let carry = key.len() + 3; // a key cut by the chunk's end, and a cut UTF-8 sequence
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        let n = io::Read::read(&mut file, &mut buf[filled..]).map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(None);
        }
        filled += n;
        let text = match std::str::from_utf8(&buf[..filled]) {
            Ok(t) => t,
            Err(e) => std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or_default(),
        };
        if let Some(at) = text.find(&key) {
            let mut entry = buf[at + key.len()..filled].to_vec();
            return read_one_value(&mut file, &mut entry);
        }
        let keep_from = filled.saturating_sub(carry).min(text.len());
        buf.copy_within(keep_from..filled, 0);
        filled -= keep_from;
    }
}

/// The first JSON value of `entry`, reading more of `file` while it is cut short.
fn read_one_value(file: &mut File, entry: &mut Vec<u8>) -> Result<Option<String>, ReadError> {
    loop {
        let mut de = serde_json::Deserializer::from_slice(entry);
        match <Box<serde_json::value::RawValue> as serde::Deserialize>::deserialize(&mut de) {
            Ok(raw) => return Ok(Some(raw.get().to_string())),
            Err(e) if e.is_eof() => {
                let before = entry.len();
                entry.resize(before + (64 << 10), 0);
                let n = io::Read::read(file, &mut entry[before..]).map_err(ReadError::Io)?;
                entry.truncate(before + n);
                if n == 0 {
                    return Ok(None);
                }
            }
            Err(_) => return Ok(None),
        }
    }
}

pub fn parse_profile(bytes: &[u8]) -> Result<ProfileFile, ReadError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| ReadError::Corrupt("not UTF-8 text".into()))?;
    if text.trim().is_empty() {
        return Err(ReadError::Corrupt("empty file".into()));
    }
    let file: ProfileFile = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            ReadError::Corrupt(format!("unexpected layout: {e}"))
        } else {
            ReadError::Corrupt(format!("invalid JSON: {e}"))
        }
    })?;
    if file.schema_version != SCHEMA_VERSION {
        return Err(ReadError::Corrupt(format!(
            "schema_version {}, expected {SCHEMA_VERSION}",
            file.schema_version
        )));
    }
    Ok(file)
}

/// `<file>.<what>-<unix time in ns>-<pid>`, made unique (never an existing name).
fn unique_sibling(path: &Path, what: &str) -> PathBuf {
    let mut ns = unix_now_ns();
    loop {
        let mut target = path.as_os_str().to_owned();
        target.push(format!(".{what}-{ns}-{}", std::process::id()));
        let target = PathBuf::from(target);
        if fs::symlink_metadata(&target).is_err() {
            return target;
        }
        ns += 1;
    }
}

/// Renames an unusable profile to `<file>.corrupt-<unix time in ns>-<pid>` (a name no other
/// corruption can take) and returns the new path.
pub fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let target = unique_sibling(path, "corrupt");
    fs::rename(path, &target)?;
    Ok(target)
}

/// Copies the profile to `<file>.backup-<unix time in ns>-<pid>` before a rewrite drops parts of
/// it, and returns the copy's path.
pub fn back_up(path: &Path) -> io::Result<PathBuf> {
    let target = unique_sibling(path, "backup");
    fs::copy(path, &target)?;
    Ok(target)
}

fn lock_file(path: &Path) -> io::Result<File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(lock_path))?;
    file.lock()?;
    Ok(file)
}

/// Whether process `pid` may still be running (`true` when that cannot be told).
fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        return Path::new("/proc").join(pid.to_string()).exists();
    }
    true
}

/// A temporary file older than this is stale whatever its pid says (pids are reused, and a
/// shared profile may be written from other machines).
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// Under the lock: removes `<file>.tmp-<pid>-*` left by writers killed mid-write (their pid is
/// gone, or the file is over an hour old). Best effort.
fn clean_stale_tmp(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let fname = e.file_name();
        let Some(rest) = fname.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let old = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TMP);
        let dead = pid.is_some_and(|p| !pid_alive(p));
        if (dead || old) && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Identity of a file's content as last read or written: every writer replaces the file by a
/// rename (a new inode), so an unchanged identity means unchanged bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId {
    len: u64,
    modified: Option<SystemTime>,
    ino: u64,
}

/// The identity of the file at `path` (a regular file), if it can be told.
pub fn file_id(path: &Path) -> Option<FileId> {
    let m = fs::metadata(path).ok().filter(|m| m.is_file())?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some(FileId {
        len: m.len(),
        modified: Some(m.modified().ok()?),
        ino,
    })
}

/// What a merge-and-write did besides writing.
#[derive(Debug, Default)]
pub struct WriteReport {
    /// A corrupt file found on disk was moved here before writing a fresh one.
    pub moved_aside: Option<(PathBuf, String)>,
    /// This machine's entry had statistics that do not validate: the file was copied here and
    /// those (named) were dropped; the rest of the entry was kept.
    pub repaired: Option<(PathBuf, Vec<String>)>,
    /// Entries of other machines or builds expired (not updated for the configured time).
    pub expired: Vec<String>,
    /// Stale temporary files of killed writers removed.
    pub stale_tmp_removed: usize,
    /// The identity of the file written (see [`FileId`]).
    pub written: Option<FileId>,
}

/// Under the lock: reads the file, replays `pending` onto this machine's entry, drops entries of
/// other machines not updated since `expire_before` (if given), writes atomically. `path` must be
/// resolved ([`resolve`]). `cached` is the content this process last read or wrote, with its
/// identity: when the file on disk still has that identity it is not read again (a large shared
/// profile then costs no parse per flush). Returns the merged profile (what is now on disk).
pub fn merge_and_write(
    path: &Path,
    fingerprint: &Fingerprint,
    pending: &[Sample],
    expire_before: Option<u64>,
    cached: Option<(&FileId, &ProfileFile)>,
    edit: impl FnOnce(&mut ProfileFile),
) -> io::Result<(ProfileFile, WriteReport)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    match locate(path)? {
        Location::Other(what) => return Err(io::Error::other(NotRegular(what))),
        Location::DevNull => return Err(io::Error::other(NotRegular("the null device".into()))),
        Location::Missing | Location::Regular => {}
    }
    let _lock = lock_file(path)?;
    let mut report = WriteReport {
        stale_tmp_removed: clean_stale_tmp(path),
        ..Default::default()
    };
    let unchanged = cached.filter(|(id, _)| file_id(path).as_ref() == Some(*id));
    let on_disk = match unchanged {
        Some((_, f)) => Ok(Some(f.clone())),
        None => read_profile(path),
    };
    let mut file = match on_disk {
        Ok(Some(f)) => f,
        Ok(None) => ProfileFile::default(),
        Err(ReadError::Corrupt(why)) => {
            report.moved_aside = Some((move_aside(path)?, why));
            ProfileFile::default()
        }
        Err(ReadError::NotRegular(what)) => return Err(io::Error::other(NotRegular(what))),
        Err(ReadError::Io(e)) => return Err(e),
    };
    let id = fingerprint.id();
    let mut entry = match file.machine_checked(&id) {
        Some((entry, problems)) => {
            if !problems.is_empty() {
                report.repaired = Some((back_up(path)?, problems));
            }
            entry
        }
        None => {
            if file.machines.contains_key(&id) {
                report.repaired = Some((
                    back_up(path)?,
                    vec!["the whole entry (not a JSON object)".to_string()],
                ));
            }
            MachineProfile::new(fingerprint.clone())
        }
    };
    for s in pending {
        entry.push(s);
    }
    // Written now: other processes' expiry measures from here.
    entry.updated_unix = entry.updated_unix.max(unix_now());
    file.set_machine(&id, &entry);
    if let Some(cutoff) = expire_before {
        report.expired = file.expire(cutoff, &id);
    }
    edit(&mut file);
    write_atomically(path, &file)?;
    report.written = file_id(path);
    Ok((file, report))
}

fn write_atomically(path: &Path, file: &ProfileFile) -> io::Result<()> {
    // Compact: a shared profile can be large, and only programs read it (`threadx profile show`
    // pretty-prints). Streamed through a 1 MB buffer: serialising a 62 MB profile into one
    // fresh buffer first cost ~70 ms of page faults, and the write of it ~150 ms more.
    let mut tmp_path = path.as_os_str().to_owned();
    tmp_path.push(format!(".tmp-{}-{}", std::process::id(), unix_now_ns()));
    let tmp_path = PathBuf::from(tmp_path);
    let result = (|| {
        let mut out = io::BufWriter::with_capacity(1 << 20, File::create(&tmp_path)?);
        serde_json::to_writer(&mut out, file).map_err(io::Error::other)?;
        let tmp = out.into_inner().map_err(|e| e.into_error())?;
        tmp.sync_all()?;
        fs::rename(&tmp_path, path)?;
        if let Some(dir) = path.parent() {
            // Make the rename itself durable (best effort: not every platform can open a dir).
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("threadx-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn sample(ind: &str, rows: usize, backend: &str, seconds: f64) -> Sample {
        Sample {
            indicator: ind.into(),
            rows,
            backend: backend.into(),
            seconds,
            unix: 7,
        }
    }

    #[test]
    fn round_trip_and_merge_keep_every_sample() {
        let dir = temp_dir("merge");
        let path = dir.join("profile.json");
        let fp = Fingerprint::current();
        let a = [
            sample("sma", 1000, "cpu:1", 1e-6),
            sample("sma", 1000, "cpu:1", 3e-6),
        ];
        merge_and_write(&path, &fp, &a, None, None, |_| {}).unwrap();
        let b = [
            sample("sma", 1000, "cpu:1", 2e-6),
            sample("ema", 5000, "cpu:2", 1e-5),
        ];
        let (merged, _) = merge_and_write(&path, &fp, &b, None, None, |_| {}).unwrap();
        let on_disk = read_profile(&path).unwrap().unwrap();
        assert_eq!(merged, on_disk);
        let me = on_disk.machine(&fp.id()).unwrap();
        assert_eq!(me.stat("sma", "2^9", "cpu:1").unwrap().samples, 3);
        assert_eq!(me.stat("ema", "2^12", "cpu:2").unwrap().samples, 1);
    }

    #[test]
    fn other_fingerprints_are_kept_untouched() {
        let dir = temp_dir("foreign");
        let path = dir.join("profile.json");
        let mut other = Fingerprint::current();
        other.cpu_model = "Some Other CPU".into();
        merge_and_write(
            &path,
            &other,
            &[sample("rsi", 64, "cpu:8", 1e-6)],
            None,
            None,
            |_| {},
        )
        .unwrap();
        let fp = Fingerprint::current();
        let (file, _) = merge_and_write(
            &path,
            &fp,
            &[sample("rsi", 64, "cpu:1", 1e-6)],
            None,
            None,
            |_| {},
        )
        .unwrap();
        assert_eq!(file.machines.len(), 2);
        assert_eq!(
            file.machine(&other.id())
                .unwrap()
                .stat("rsi", "2^6", "cpu:8")
                .unwrap()
                .samples,
            1
        );
        assert!(file
            .machine(&fp.id())
            .unwrap()
            .stat("rsi", "2^6", "cpu:8")
            .is_none());
    }

    #[test]
    fn unusable_files_are_recognised() {
        for (bytes, what) in [
            (&b""[..], "empty"),
            (&b"{\"schema_version\": 1, \"machines\": {"[..], "truncated"),
            (&b"\x00\xff\xfe garbage"[..], "binary"),
            (
                &b"{\"schema_version\": 99, \"machines\": {}}"[..],
                "other schema",
            ),
            (&b"[1, 2, 3]"[..], "wrong shape"),
            (
                &b"{\"schema_version\": 1, \"machines\": 5}"[..],
                "wrong layout",
            ),
        ] {
            assert!(
                matches!(parse_profile(bytes), Err(ReadError::Corrupt(_))),
                "{what}"
            );
        }
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_replaced() {
        let dir = temp_dir("corrupt");
        let path = dir.join("profile.json");
        fs::write(&path, b"{not json").unwrap();
        let fp = Fingerprint::current();
        let (_, report) = merge_and_write(
            &path,
            &fp,
            &[sample("sma", 10, "cpu:1", 1e-6)],
            None,
            None,
            |_| {},
        )
        .unwrap();
        let (aside, _) = report.moved_aside.expect("moved aside");
        assert_eq!(fs::read(&aside).unwrap(), b"{not json");
        assert!(read_profile(&path).unwrap().is_some());
    }

    #[test]
    fn corrupt_names_are_unique() {
        let dir = temp_dir("unique");
        let path = dir.join("profile.json");
        let mut seen = std::collections::BTreeSet::new();
        for k in 0..5u8 {
            fs::write(&path, [b'{', k]).unwrap();
            let aside = move_aside(&path).unwrap();
            assert_eq!(fs::read(&aside).unwrap(), [b'{', k]);
            assert!(seen.insert(aside));
        }
    }

    #[cfg(unix)]
    #[test]
    fn writes_go_through_symbolic_links_and_never_over_other_files() {
        let dir = temp_dir("links");
        let target = dir.join("sub").join("real.json");
        let link = dir.join("profile.json");
        std::os::unix::fs::symlink("sub/real.json", &link).unwrap();
        let resolved = resolve(&link);
        assert_eq!(resolved, dir.join("sub/real.json"));
        let fp = Fingerprint::current();
        merge_and_write(
            &resolved,
            &fp,
            &[sample("sma", 10, "cpu:1", 1e-6)],
            None,
            None,
            |_| {},
        )
        .unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(read_profile(&target).unwrap().is_some());
        // A directory where the file should be is never replaced.
        let d = dir.join("adir");
        fs::create_dir(&d).unwrap();
        assert_eq!(locate(&d).unwrap(), Location::Other("a directory".into()));
        let e = merge_and_write(&d, &fp, &[], None, None, |_| {}).unwrap_err();
        assert!(is_not_regular(&e), "{e}");
        assert!(d.is_dir());
        assert_eq!(locate(Path::new("/dev/null")).unwrap(), Location::DevNull);
    }

    #[test]
    fn stale_temporary_files_of_dead_writers_are_removed() {
        let dir = temp_dir("stale");
        let path = dir.join("profile.json");
        let dead = dir.join("profile.json.tmp-4000000000-1");
        let mine = dir.join(format!("profile.json.tmp-{}-1", std::process::id()));
        fs::write(&dead, b"{").unwrap();
        fs::write(&mine, b"{").unwrap();
        let fp = Fingerprint::current();
        let (_, report) = merge_and_write(&path, &fp, &[], None, None, |_| {}).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(report.stale_tmp_removed, 1);
            assert!(!dead.exists());
        }
        assert!(mine.exists());
    }
}
