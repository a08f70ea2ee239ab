//! Tests of `staging.rs` (its `mod tests`, kept in this file so that the module reads alone).

use super::*;
use crate::test_files::one_tensor;
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;

/// A file of one F32 tensor of two values.
fn sample() -> Vec<u8> {
    one_tensor("F32", &[2], 8)
}

fn stage(root: &Path, bytes: &[u8]) -> CoreResult<(Staging, FileDigest)> {
    let s = Staging::create(root, "a")?;
    let weights = OpenWeights::read(Cursor::new(bytes), bytes.len() as u64, Path::new("src"))?;
    let (d, _) = s.write_weights(weights, || true)?;
    s.write_config(b"{}")?;
    Ok((s, d))
}

#[test]
fn stage_then_publish_lays_out_a_sealed_directory() {
    let root = tempfile::tempdir().unwrap();
    let bytes = sample();
    let (s, digest) = stage(root.path(), &bytes).unwrap();
    assert_eq!(digest.size, bytes.len() as u64);
    let target = s.publish("id1", b"{\"id\":1}", PublishMode::Auto).unwrap();
    assert_eq!(fs::read(target.join(WEIGHTS_FILE)).unwrap(), bytes);
    let a = fs::metadata(target.join(WEIGHTS_FILE)).unwrap();
    let b = fs::metadata(target.join(PEFT_WEIGHTS_FILE)).unwrap();
    assert_eq!(a.ino(), b.ino(), "the PEFT name is a hard link");
    assert_eq!(a.permissions().mode() & 0o777, 0o444);
    assert!(target.join(RECORD_FILE).exists());
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&target), DIR_MODE);
    assert_eq!(mode(&root.path().join(STAGING_DIR)), STAGING_DIR_MODE);
    let mut names: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [RECORD_FILE, WEIGHTS_FILE, CONFIG_FILE, PEFT_WEIGHTS_FILE],
        "no lock file or owner record is published"
    );
    assert_eq!(
        fs::read_dir(root.path().join(STAGING_DIR)).unwrap().count(),
        0
    );
}

#[test]
fn invalid_or_changing_sources_leave_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let bytes = sample();
    let s = Staging::create(root.path(), "a").unwrap();
    // A stream shorter than the size it claims: truncated while read.
    let short = Cursor::new(&bytes[..bytes.len() - 1]);
    let weights = OpenWeights::read(short, bytes.len() as u64, Path::new("src")).unwrap();
    let err = s.write_weights(weights, || true).unwrap_err();
    assert!(err.to_string().contains("src"), "{err}");
    drop(s);
    let err = stage(root.path(), b"garbage!").unwrap_err();
    assert!(matches!(err, CoreError::InvalidSafetensors { .. }));
    assert_eq!(
        fs::read_dir(root.path().join(STAGING_DIR)).unwrap().count(),
        0
    );
}

#[test]
fn publish_onto_an_existing_adapter_fails_and_keeps_it() {
    let root = tempfile::tempdir().unwrap();
    let (s, _) = stage(root.path(), &sample()).unwrap();
    s.publish("id1", b"{}", PublishMode::Auto).unwrap();
    let before = fs::read(root.path().join("id1").join(WEIGHTS_FILE)).unwrap();
    let (s, _) = stage(root.path(), &sample()).unwrap();
    let err = s.publish("id1", b"{}", PublishMode::Auto).unwrap_err();
    assert!(matches!(err, CoreError::AlreadyExists { .. }));
    assert_eq!(
        fs::read(root.path().join("id1").join(WEIGHTS_FILE)).unwrap(),
        before
    );
    assert_eq!(
        fs::read_dir(root.path().join(STAGING_DIR)).unwrap().count(),
        0
    );
}

/// A reaped child's pid: no process has it (until the kernel reuses it).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// A staging directory as a store leaves it when it dies: lock file (free), owner record,
/// a partial copy.
fn plant(root: &Path, name: &str, owner: Option<&Owner>) -> PathBuf {
    let home = root.join(STAGING_DIR).join(name);
    fs::create_dir_all(home.join(ADAPTER_SUBDIR)).unwrap();
    fs::write(home.join(LOCK_FILE), b"").unwrap();
    if let Some(owner) = owner {
        fs::write(home.join(OWNER_FILE), owner.to_bytes()).unwrap();
    }
    fs::write(home.join(ADAPTER_SUBDIR).join(WEIGHTS_FILE), b"partial").unwrap();
    home
}

/// Set the mtime of `home` and everything in it `secs` into the past.
fn backdate(home: &Path, secs: u64) {
    let when = SystemTime::now() - Duration::from_secs(secs);
    let mut paths = vec![home.to_path_buf()];
    for dir in [home.to_path_buf(), home.join(ADAPTER_SUBDIR)] {
        paths.extend(fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()));
    }
    for path in paths {
        File::open(&path).unwrap().set_modified(when).unwrap();
    }
}

fn swept(root: &Path) -> Vec<String> {
    let mut sweep = sweep_stale(root).unwrap();
    assert_eq!(sweep.skipped, []);
    sweep.removed.sort();
    sweep.removed
}

const A_DAY_AND_A_MINUTE: u64 = 24 * 60 * 60 + 60;

#[test]
fn sweep_keeps_live_staging_and_removes_dead_or_planted_entries() {
    let root = tempfile::tempdir().unwrap();
    let (live, _) = stage(root.path(), &sample()).unwrap();
    let here = Owner::current();
    let dead = Owner {
        pid: dead_pid(),
        ..here.clone()
    };
    plant(root.path(), "dead", Some(&dead));
    std::os::unix::fs::symlink("/etc", root.path().join(STAGING_DIR).join("planted")).unwrap();
    assert_eq!(swept(root.path()), ["dead", "planted"]);
    assert!(live.path().exists());
    assert!(Path::new("/etc").exists());
    live.publish("id1", b"{}", PublishMode::Auto).unwrap();
    assert_eq!(swept(root.path()), Vec::<String>::new());
}

#[test]
fn another_hosts_staging_is_kept_until_a_day_has_passed() {
    let root = tempfile::tempdir().unwrap();
    let there = Owner {
        host: "another-host".into(),
        ..Owner::current()
    };
    // Its lock looks free here (a host-local lock would), its pid means nothing here.
    let fresh = plant(root.path(), "fresh", Some(&there));
    let stale = plant(root.path(), "stale", Some(&there));
    backdate(&fresh, 23 * 60 * 60);
    backdate(&stale, A_DAY_AND_A_MINUTE);
    assert_eq!(swept(root.path()), ["stale"]);
    assert!(fresh.exists());
}

#[test]
fn a_staging_directory_without_a_record_is_judged_by_its_name_or_its_age() {
    let root = tempfile::tempdir().unwrap();
    let here = Owner::current();
    let token = owner::boot_token(&here.boot_id);
    let gone = dead_pid();
    // Died before writing its record: its name says this boot, and its pid is gone.
    plant(root.path(), &format!("a.{gone}.0.0.{token}"), None);
    // Alive here, before its record: never swept.
    let mine = plant(root.path(), &format!("a.{}.0.0.{token}", here.pid), None);
    // Another host's (or an earlier release's name): only by age.
    let foreign = plant(root.path(), &format!("a.{gone}.0.0.ffffffffffff"), None);
    let old = plant(root.path(), "a.1.2.3", None);
    backdate(&old, A_DAY_AND_A_MINUTE);
    assert_eq!(
        swept(root.path()),
        ["a.1.2.3".into(), format!("a.{gone}.0.0.{token}")]
    );
    assert!(mine.exists() && foreign.exists());
}

#[test]
fn a_live_locked_staging_directory_is_never_swept_whatever_its_record_or_age() {
    let root = tempfile::tempdir().unwrap();
    let (live, _) = stage(root.path(), &sample()).unwrap();
    let home = live.path().parent().unwrap().to_path_buf();
    let record = home.join(OWNER_FILE);
    fs::remove_file(&record).unwrap();
    let dead = Owner {
        host: "another-host".into(),
        pid: dead_pid(),
        ..Owner::current()
    };
    fs::write(&record, dead.to_bytes()).unwrap();
    backdate(&home, 10 * A_DAY_AND_A_MINUTE);
    assert_eq!(swept(root.path()), Vec::<String>::new());
    assert!(live.path().exists());
    live.publish("id1", b"{}", PublishMode::Auto).unwrap();
    assert_eq!(
        fs::read_dir(root.path().join(STAGING_DIR)).unwrap().count(),
        0
    );
}

#[test]
fn a_symlinked_staging_directory_is_never_followed() {
    let root = tempfile::tempdir().unwrap();
    let victim = tempfile::tempdir().unwrap();
    fs::create_dir(victim.path().join("important")).unwrap();
    std::os::unix::fs::symlink(victim.path(), root.path().join(STAGING_DIR)).unwrap();
    assert!(matches!(
        sweep_stale(root.path()),
        Err(CoreError::Storage { .. })
    ));
    assert!(matches!(
        stage(root.path(), &sample()),
        Err(CoreError::Storage { .. })
    ));
    assert!(victim.path().join("important").exists());
    assert_eq!(fs::read_dir(victim.path()).unwrap().count(), 1);
}

#[test]
fn an_open_staging_directory_is_locked_by_its_owner() {
    let root = tempfile::tempdir().unwrap();
    let s = Staging::create(root.path(), "a").unwrap();
    assert!(fs::metadata(s.path()).is_ok());
    let home = s.path().parent().unwrap().to_path_buf();
    let lock = open_lock(&home.join(LOCK_FILE)).unwrap();
    assert!(!owner::try_lock(&lock).unwrap(), "held by its owner");
    assert_eq!(
        read_owner(&home.join(OWNER_FILE)),
        Some(Owner::current()),
        "the owner record names this process"
    );
    let named = owner_in_name(home.file_name().unwrap().to_str().unwrap()).unwrap();
    assert_eq!(named.0, std::process::id());
    assert_eq!(named.1, owner::boot_token(&Owner::current().boot_id));
    drop(s);
    assert!(!home.exists(), "dropping it clears it");
}
