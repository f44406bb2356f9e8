//! The profile on disk: read, move a corrupt file aside, and merge-and-write atomically.
//!
//! A write takes an advisory lock on `<file>.lock`, reads what is on disk, replays this process's
//! pending samples onto it (so concurrent processes never lose each other's samples), writes a
//! temporary file in the same directory, fsyncs it and renames it over the profile.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::fingerprint::Fingerprint;
use super::schema::{MachineProfile, ProfileFile, Sample, SCHEMA_VERSION};

#[derive(Debug)]
pub enum ReadError {
    /// The file exists but is not a profile of our schema (truncated, garbage, other version).
    Corrupt(String),
    /// The file could not be read at all (permissions, I/O).
    Io(io::Error),
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads a profile; `Ok(None)` when there is no file yet.
pub fn read_profile(path: &Path) -> Result<Option<ProfileFile>, ReadError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    parse_profile(&bytes).map(Some)
}

pub fn parse_profile(bytes: &[u8]) -> Result<ProfileFile, ReadError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| ReadError::Corrupt("not UTF-8 text".into()))?;
    if text.trim().is_empty() {
        return Err(ReadError::Corrupt("empty file".into()));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ReadError::Corrupt(format!("invalid JSON: {e}")))?;
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == SCHEMA_VERSION as u64 => {}
        other => {
            return Err(ReadError::Corrupt(format!(
                "schema_version {other:?}, expected {SCHEMA_VERSION}"
            )))
        }
    }
    serde_json::from_value(value).map_err(|e| ReadError::Corrupt(format!("unexpected layout: {e}")))
}

/// Renames an unusable profile to `<file>.corrupt-<unix time>` and returns the new path.
pub fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let mut target = path.as_os_str().to_owned();
    target.push(format!(".corrupt-{}", unix_now()));
    let target = PathBuf::from(target);
    fs::rename(path, &target)?;
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

/// What a merge-and-write did besides writing.
#[derive(Debug, Default)]
pub struct WriteReport {
    /// A corrupt file found on disk was moved here before writing a fresh one.
    pub moved_aside: Option<(PathBuf, String)>,
}

/// Under the lock: reads the file, replays `pending` onto this machine's entry, writes atomically.
/// Returns the merged profile (what is now on disk).
pub fn merge_and_write(
    path: &Path,
    fingerprint: &Fingerprint,
    pending: &[Sample],
    edit: impl FnOnce(&mut ProfileFile),
) -> io::Result<(ProfileFile, WriteReport)> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let _lock = lock_file(path)?;
    let mut report = WriteReport::default();
    let mut file = match read_profile(path) {
        Ok(Some(f)) => f,
        Ok(None) => ProfileFile::default(),
        Err(ReadError::Corrupt(why)) => {
            report.moved_aside = Some((move_aside(path)?, why));
            ProfileFile::default()
        }
        Err(ReadError::Io(e)) => return Err(e),
    };
    let id = fingerprint.id();
    let mut entry = file
        .machine(&id)
        .unwrap_or_else(|| MachineProfile::new(fingerprint.clone()));
    for s in pending {
        entry.push(s);
    }
    file.set_machine(&id, &entry);
    edit(&mut file);
    write_atomically(path, &file)?;
    Ok((file, report))
}

fn write_atomically(path: &Path, file: &ProfileFile) -> io::Result<()> {
    let text = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
    let mut tmp_path = path.as_os_str().to_owned();
    tmp_path.push(format!(".tmp-{}-{}", std::process::id(), unix_now()));
    let tmp_path = PathBuf::from(tmp_path);
    let result = (|| {
        let mut tmp = File::create(&tmp_path)?;
        tmp.write_all(&text)?;
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
        merge_and_write(&path, &fp, &a, |_| {}).unwrap();
        let b = [
            sample("sma", 1000, "cpu:1", 2e-6),
            sample("ema", 5000, "cpu:2", 1e-5),
        ];
        let (merged, _) = merge_and_write(&path, &fp, &b, |_| {}).unwrap();
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
        merge_and_write(&path, &other, &[sample("rsi", 64, "cpu:8", 1e-6)], |_| {}).unwrap();
        let fp = Fingerprint::current();
        let (file, _) =
            merge_and_write(&path, &fp, &[sample("rsi", 64, "cpu:1", 1e-6)], |_| {}).unwrap();
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
        let (_, report) =
            merge_and_write(&path, &fp, &[sample("sma", 10, "cpu:1", 1e-6)], |_| {}).unwrap();
        let (aside, _) = report.moved_aside.expect("moved aside");
        assert_eq!(fs::read(&aside).unwrap(), b"{not json");
        assert!(read_profile(&path).unwrap().is_some());
    }
}
