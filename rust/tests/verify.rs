//! Tests of `verify.rs` (its `mod tests`, kept in this file so that the module reads alone).

use super::*;
use crate::hash::{hash_file, CHUNK};
use std::fs;

#[test]
fn verdicts_for_each_kind_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    fs::write(&good, vec![5u8; 3 * CHUNK + 1]).unwrap();
    let good_sha = hash_file(&good).unwrap().sha256;
    let bad = dir.path().join("bad");
    fs::write(&bad, b"tampered").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let items = vec![
        (good.clone(), good_sha.to_uppercase()),
        (bad, good_sha.clone()),
        (dir.path().join("gone"), good_sha.clone()),
        (dir.path().to_path_buf(), good_sha.clone()),
        (link, good_sha.clone()),
    ];
    let mut last = None;
    let out = verify_batch(&items, 3, |p| {
        last = Some(p);
        ControlFlow::Continue(())
    })
    .unwrap();
    let verdicts: Vec<_> = out.iter().map(|o| o.verdict).collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Ok,
            Verdict::Mismatch,
            Verdict::Missing,
            Verdict::Unreadable,
            Verdict::Unreadable
        ]
    );
    assert_eq!(out[0].size, Some(3 * CHUNK as u64 + 1));
    let last = last.unwrap();
    assert_eq!((last.files_done, last.files_total), (5, 5));
    assert_eq!(last.bytes_done, 3 * CHUNK as u64 + 1 + 8);
}

/// A published directory as staging leaves it: sealed files and the PEFT hard link.
fn sealed_adapter(dir: &Path) -> Expected {
    fs::create_dir(dir).unwrap();
    let weights = dir.join(WEIGHTS_FILE);
    fs::write(&weights, vec![3u8; CHUNK + 7]).unwrap();
    fs::write(dir.join(CONFIG_FILE), b"{}").unwrap();
    for name in [WEIGHTS_FILE, CONFIG_FILE] {
        fs::set_permissions(dir.join(name), fs::Permissions::from_mode(SEALED_MODE)).unwrap();
    }
    fs::hard_link(&weights, dir.join(PEFT_WEIGHTS_FILE)).unwrap();
    Expected {
        dir: dir.to_path_buf(),
        recorded_path: weights.clone(),
        file_hash: hash_file(&weights).unwrap().sha256,
        file_size: CHUNK as u64 + 7,
        config_hash: hash_file(&dir.join(CONFIG_FILE)).unwrap().sha256,
    }
}

#[test]
fn an_adapter_verdict_covers_hash_size_modes_and_link() {
    let root = tempfile::tempdir().unwrap();
    let intact = sealed_adapter(&root.path().join("intact"));
    let verdict = |e: &Expected| verify_adapter(e, |_| {});
    assert_eq!(verdict(&intact).verdict, Verdict::Ok);
    assert!(verdict(&intact).problems.is_empty());

    let wrong_size = Expected {
        file_size: 1,
        ..intact.clone()
    };
    let report = verdict(&wrong_size);
    assert_eq!(report.verdict, Verdict::Mismatch);
    assert!(report.problems[0].contains("1 bytes)"), "{report:?}");

    let mode = sealed_adapter(&root.path().join("mode"));
    fs::set_permissions(
        mode.dir.join(CONFIG_FILE),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let report = verdict(&mode);
    assert_eq!(report.verdict, Verdict::Mismatch);
    assert_eq!(
        report.problems,
        ["adapter_config.json has mode 0644; sealed files are 0444"]
    );

    let link = sealed_adapter(&root.path().join("link"));
    fs::remove_file(link.dir.join(PEFT_WEIGHTS_FILE)).unwrap();
    assert_eq!(verdict(&link).verdict, Verdict::Missing);
    fs::write(link.dir.join(PEFT_WEIGHTS_FILE), b"other").unwrap();
    let report = verdict(&link);
    assert_eq!(report.verdict, Verdict::Mismatch);
    assert!(report.problems[0].contains("is not the same file"));

    let elsewhere = Expected {
        recorded_path: PathBuf::from("/etc/passwd"),
        ..intact.clone()
    };
    let report = verdict(&elsewhere);
    assert_eq!(report.verdict, Verdict::Mismatch);
    assert!(
        report.problems[0].contains("/etc/passwd is not"),
        "{report:?}"
    );

    let gone = sealed_adapter(&root.path().join("gone"));
    fs::remove_file(gone.dir.join(WEIGHTS_FILE)).unwrap();
    let report = verdict(&gone);
    assert_eq!(report.verdict, Verdict::Missing);
    assert_eq!(
        report.problems.len(),
        1,
        "the seal is not judged: {report:?}"
    );
}

#[test]
fn the_worst_verdict_wins_and_names_round_trip() {
    use Verdict::*;
    assert_eq!(Ok.worst(Mismatch).worst(Ok), Mismatch);
    assert_eq!(Mismatch.worst(Unreadable), Unreadable);
    assert_eq!(Missing.worst(Unreadable), Missing);
    for v in [Ok, Mismatch, Missing, Unreadable] {
        assert_eq!(
            VERDICTS.iter().position(|n| *n == v.as_str()),
            Some(v as usize)
        );
    }
}

#[test]
fn breaking_cancels_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    fs::write(&f, b"x").unwrap();
    let items: Vec<_> = (0..1000).map(|_| (f.clone(), String::new())).collect();
    assert!(verify_batch(&items, 2, |_| ControlFlow::Break(())).is_none());
    assert_eq!(
        verify_batch(&[], 2, |_| ControlFlow::Continue(())),
        Some(vec![])
    );
}

#[test]
fn every_item_runs_once_in_any_order_of_hand_out() {
    let items: Vec<usize> = (0..1000).collect();
    let reversed: Vec<usize> = (0..1000).rev().collect();
    for (order, threads) in [(None, 1), (None, 3), (Some(&reversed[..]), 4)] {
        let mut last = None;
        let out = run_batch(
            &items,
            order,
            2,
            threads,
            |&i, j: Option<&usize>, tick| {
                for k in std::iter::once(i).chain(j.copied()) {
                    tick(Tick::Bytes(k as u64));
                    tick(Tick::FileDone);
                    tick(Tick::FileDone);
                }
                (i * 2, j.map(|j| j * 2))
            },
            |p| {
                last = Some(p);
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let last = last.unwrap();
        assert_eq!((last.files_done, last.files_total), (2000, 2000));
        assert_eq!(last.bytes_done, (0..1000).sum::<u64>());
    }
    let next = AtomicUsize::new(0);
    let mut runs = Vec::new();
    while let Some(run) = claim_run(&next, 1000, 2) {
        runs.push(run);
    }
    assert_eq!(runs.first(), Some(&(0..62)));
    let (pairs, last) = runs.split_at(runs.len() - 2);
    assert!(pairs.iter().all(|r| r.len() % 2 == 0), "pairs: {runs:?}");
    assert_eq!(last, [998..999, 999..1000], "the last, one per worker");
    let next = AtomicUsize::new(0);
    assert_eq!(claim_run(&next, 2, 2), Some(0..1), "two items, two workers");
    assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 1000);
}

#[test]
fn a_large_file_is_judged_like_a_small_one() {
    let root = tempfile::tempdir().unwrap();
    let big = sealed_adapter(&root.path().join("big"));
    let weights = big.dir.join(WEIGHTS_FILE);
    fs::set_permissions(&weights, fs::Permissions::from_mode(0o644)).unwrap();
    let data: Vec<u8> = (0..PIPELINE_FROM as usize + 3).map(|i| i as u8).collect();
    fs::write(&weights, &data).unwrap();
    fs::set_permissions(&weights, fs::Permissions::from_mode(SEALED_MODE)).unwrap();
    let intact = Expected {
        file_hash: hash_file(&weights).unwrap().sha256,
        file_size: data.len() as u64,
        ..big
    };
    let mut bytes = 0;
    let report = verify_adapter(&intact, |t| {
        if let Tick::Bytes(n) = t {
            bytes += n
        }
    });
    assert_eq!(report.verdict, Verdict::Ok, "{report:?}");
    assert_eq!(bytes, data.len() as u64 + 2);
    let wrong = Expected {
        file_hash: "0".repeat(64),
        ..intact
    };
    assert_eq!(verify_adapter(&wrong, |_| {}).verdict, Verdict::Mismatch);
}

/// Every way an adapter can be, each paired with every other (itself included, either
/// side): two adapters verified together get exactly the reports each gets alone, and
/// the same progress.
#[test]
fn two_adapters_verified_together_get_the_reports_each_gets_alone() {
    let root = tempfile::tempdir().unwrap();
    let at = |name: &str| sealed_adapter(&root.path().join(name));
    let intact = at("intact");
    let tampered = at("tampered");
    let weights = tampered.dir.join(WEIGHTS_FILE);
    let mut bytes = fs::read(&weights).unwrap();
    bytes[CHUNK / 2] ^= 1;
    fs::set_permissions(&weights, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&weights, &bytes).unwrap();
    fs::set_permissions(&weights, fs::Permissions::from_mode(SEALED_MODE)).unwrap();
    let gone = at("gone");
    fs::remove_file(gone.dir.join(WEIGHTS_FILE)).unwrap();
    let linked = at("linked");
    let config = linked.dir.join(CONFIG_FILE);
    fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink("/nonexistent", &config).unwrap();
    let wrong_size = Expected {
        file_size: 3,
        ..at("wrong_size")
    };
    let large = at("large");
    let weights = large.dir.join(WEIGHTS_FILE);
    fs::set_permissions(&weights, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&weights, vec![9u8; PIPELINE_FROM as usize + 5]).unwrap();
    fs::set_permissions(&weights, fs::Permissions::from_mode(SEALED_MODE)).unwrap();
    let large = Expected {
        file_hash: hash_file(&weights).unwrap().sha256,
        file_size: PIPELINE_FROM + 5,
        ..large
    };
    let empty = at("empty");
    let weights = empty.dir.join(WEIGHTS_FILE);
    fs::set_permissions(&weights, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&weights, b"").unwrap();
    fs::set_permissions(&weights, fs::Permissions::from_mode(SEALED_MODE)).unwrap();
    let empty = Expected {
        file_hash: hash_file(&weights).unwrap().sha256,
        file_size: 0,
        ..empty
    };
    let all = [intact, tampered, gone, linked, wrong_size, large, empty];
    fn counted(ticks: &mut (u64, usize)) -> impl FnMut(Tick) + '_ {
        move |t: Tick| match t {
            Tick::Bytes(n) => ticks.0 += n,
            Tick::FileDone => ticks.1 += 1,
        }
    }
    for a in &all {
        for b in &all {
            let mut alone = (0, 0);
            let expected = [
                verify_adapter(a, counted(&mut alone)),
                verify_adapter(b, counted(&mut alone)),
            ];
            let mut together = (0, 0);
            let got = verify_two_adapters(a, b, counted(&mut together));
            assert_eq!(
                got,
                expected,
                "{} beside {}",
                a.dir.display(),
                b.dir.display()
            );
            assert_eq!(together, alone);
        }
    }
    let verdicts: Vec<_> = all
        .iter()
        .map(|e| verify_adapter(e, |_| {}).verdict)
        .collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Ok,
            Verdict::Mismatch,
            Verdict::Missing,
            Verdict::Unreadable,
            Verdict::Mismatch,
            Verdict::Ok,
            Verdict::Ok
        ]
    );
}

/// Files of every size that matters to the lanes (empty, a block's edges, a lane buffer's
/// edges, past `PIPELINE_FROM`), verified in pairs on one thread and on two: each outcome is
/// its own file's, intact or not.
#[test]
fn files_of_every_size_verified_in_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        0,
        1,
        63,
        64,
        LANE_BYTES - 1,
        LANE_BYTES,
        LANE_BYTES + 1,
        CHUNK + 5,
        PIPELINE_FROM as usize + 3,
        65,
    ];
    let mut items = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let path = dir.path().join(format!("f{i}"));
        fs::write(
            &path,
            (0..size).map(|k| (k * 7 + i) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        let sha = hash_file(&path).unwrap().sha256;
        // Every third file's record is wrong.
        let expected = if i % 3 == 2 { "0".repeat(64) } else { sha };
        items.push((path, expected));
    }
    for threads in [1, 2] {
        let out = verify_batch(&items, threads, |_| ControlFlow::Continue(())).unwrap();
        for (i, outcome) in out.iter().enumerate() {
            let want = if i % 3 == 2 {
                Verdict::Mismatch
            } else {
                Verdict::Ok
            };
            assert_eq!(outcome.verdict, want, "file {i} of {} bytes", sizes[i]);
            assert_eq!(outcome.size, Some(sizes[i] as u64));
        }
    }
}

#[test]
fn the_seal_reads_the_same_from_descriptors_as_from_paths() {
    let root = tempfile::tempdir().unwrap();
    let a = sealed_adapter(&root.path().join("a"));
    let config = a.dir.join(CONFIG_FILE);
    fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink("/nonexistent", &config).unwrap();
    let report = verify_adapter(&a, |_| {});
    let from_paths: Vec<String> = seal_problems(&a.dir).into_iter().map(|p| p.1).collect();
    assert!(from_paths[0].contains("adapter_config.json has mode 0777"));
    assert_eq!(report.problems[1..], from_paths[..], "{report:?}");
    assert_eq!(report.verdict, Verdict::Unreadable);
}
