//! `shoal get` as a user runs it, against `shoal serve` processes on `127.0.0.1:0`: killed with
//! SIGKILL at random moments and run again, a full disk, an existing target, and handing the
//! download to a node that runs on the same state directory.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{MIB, Proc, Rng, Serve, Tmpfs, json, random_bytes};

const RUN_LIMIT: Duration = Duration::from_secs(120);

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A node sharing `data` as `name`, with `extra` flags, indexed and ready.
fn serving(root: &Path, name: &str, data: &[u8], extra: &[&str]) -> Serve {
    let dir = root.join("share");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
    let mut args = vec!["--secret", "x"];
    args.extend_from_slice(extra);
    let node = Serve::start(&dir, &root.join("node-state"), &args);
    node.wait_indexed(name);
    node
}

fn same_file(path: &Path, data: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|got| got == data)
}

/// The final name is either absent or holds the complete, right file.
fn assert_no_partial_target(target: &Path, data: &[u8], when: &str) {
    if target.exists() {
        assert!(
            same_file(target, data),
            "{when}: {} exists but is not the complete file",
            target.display()
        );
    }
}

// A. SIGKILL at random moments; the same command run again finishes the file.
// The node serves at 5 MiB/s so that five kills (each at most 1.4 s into a run) come before the
// 40 MiB file is complete, and the last run's summary shows it fetched only what was missing.
#[test]
fn killed_at_random_moments_and_run_again_the_file_is_whole() {
    let root = tempfile::tempdir().unwrap();
    let data = random_bytes(40 * MIB, 0xA);
    let node = serving(root.path(), "big.bin", &data, &["--max-upload-rate", "5M"]);
    let out = root.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let target = out.join("big.bin");
    let state = root.path().join("get-state");
    let (target_s, state_s) = (path(&target), path(&state));
    let args = [
        "get", "big.bin", "--peer", &node.url, "-o", &target_s, "--state", &state_s, "--json",
    ];
    let mut rng = Rng(0x5eed_0001);
    let mut kills = 0;
    let mut done_pieces = 0usize;
    // The stdout of the run that exited by itself, if one did.
    let mut finished: Option<Vec<String>> = None;
    for round in 0..5 {
        let mut get = Proc::shoal(&args);
        // Wait until the progress shows bytes done (or the run ends).
        let deadline = Instant::now() + RUN_LIMIT;
        let mut started = false;
        let mut seen: Vec<String> = Vec::new();
        while Instant::now() < deadline {
            let Some(line) = get.line(Duration::from_millis(200)) else {
                if get.child.try_wait().unwrap().is_some() {
                    break;
                }
                continue;
            };
            let progressed = json(&line).is_some_and(|v| v["event"] == "progress" && v["done"].as_u64().unwrap_or(0) > 0);
            seen.push(line);
            if progressed {
                started = true;
                break;
            }
        }
        if started {
            // Fault injection: the kill comes at a random moment after the first progress.
            std::thread::sleep(Duration::from_millis(rng.range(0, 400)));
        }
        if get.child.try_wait().unwrap().is_some() {
            let (status, lines, stderr) = get.finish(Duration::from_secs(5));
            assert!(status.success(), "round {round}: shoal get failed: {status}: {stderr}");
            seen.extend(lines);
            finished = Some(seen);
            break;
        }
        get.kill();
        kills += 1;
        assert_no_partial_target(&target, &data, &format!("after kill {kills}"));
        if target.exists() {
            // The kill came after the file was in place: complete, nothing to resume.
            break;
        }
        let now = check_resume_record(&state, &target, &data);
        assert!(
            now >= done_pieces,
            "kill {kills}: the record lost pieces ({now} done, {done_pieces} before)"
        );
        done_pieces = now;
    }
    if !target.exists() {
        let (status, lines, stderr) = Proc::shoal(&args).finish(RUN_LIMIT);
        assert!(status.success(), "the last run failed: {status}: {stderr}");
        finished = Some(lines);
    }
    println!(
        "{kills} kills, {done_pieces} pieces kept by the last kill, last run printed a summary: {}",
        finished.is_some()
    );
    assert!(kills >= 1, "the download was killed at least once");
    assert!(done_pieces > 0, "some progress was kept across a kill");
    assert!(same_file(&target, &data), "the final file is byte-identical");
    assert!(!target.with_file_name(".big.bin.shoal-part").exists(), "the partial file is gone");
    if let Some(lines) = finished {
        let done = lines
            .iter()
            .filter_map(|l| json(l))
            .find(|v| v["event"] == "done")
            .expect("a done event");
        assert_eq!(done["size"].as_u64(), Some(data.len() as u64));
        let fetched: u64 = done["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .map(|s| s["bytes"].as_u64().unwrap_or(0))
            .sum();
        assert!(
            fetched < data.len() as u64,
            "the last run resumed instead of starting over ({fetched} bytes fetched)"
        );
    }
}

/// After a kill: every piece the resume record in `state` calls done holds the right bytes in the
/// partial file (nothing is counted before it is written). Returns how many pieces are done.
fn check_resume_record(state: &Path, target: &Path, data: &[u8]) -> usize {
    use shoal_node::engine::{PIECE_SIZE, part_path, record};
    let db = redb::Database::create(state.join(shoal_node::node::STORE_FILE)).expect("the state store opens after a kill");
    let records = record::Records::new(std::sync::Arc::new(db)).expect("the download table");
    let Some(found) = records.get(target).expect("reading the record") else {
        // Killed before the first record was written.
        return 0;
    };
    let count = (data.len() as u64).div_ceil(PIECE_SIZE);
    let done = record::decode_done(&found.done, count);
    let part = std::fs::read(part_path(target)).expect("the partial file is kept beside the target");
    for (index, _) in done.iter().enumerate().filter(|(_, d)| **d) {
        let range = index * PIECE_SIZE as usize..((index + 1) * PIECE_SIZE as usize).min(data.len());
        assert!(
            part.get(range.clone()) == Some(&data[range]),
            "piece {index} is recorded done but its bytes are not on disk"
        );
    }
    done.iter().filter(|d| **d).count()
}

// B. A disk too small: a clear error; with space freed, the same command succeeds.
#[test]
fn a_full_disk_fails_clearly_and_the_rerun_succeeds() {
    let root = tempfile::tempdir().unwrap();
    let mount_point = root.path().join("small");
    std::fs::create_dir_all(&mount_point).unwrap();
    let disk = match Tmpfs::mount(&mount_point, "20m") {
        Ok(disk) => disk,
        Err(reason) => {
            println!("skipped: cannot mount tmpfs: {reason}");
            return;
        }
    };
    let ballast = disk.dir.join("ballast");
    std::fs::write(&ballast, vec![1u8; 10 * MIB]).unwrap();
    let data = random_bytes(12 * MIB, 0xB);
    let node = serving(root.path(), "twelve.bin", &data, &[]);
    let target = disk.dir.join("twelve.bin");
    let state = root.path().join("get-state");
    let (target_s, state_s) = (path(&target), path(&state));
    let args = ["get", "twelve.bin", "--peer", &node.url, "-o", &target_s, "--state", &state_s];
    let (status, _, stderr) = Proc::shoal(&args).finish(RUN_LIMIT);
    assert_eq!(status.code(), Some(1), "a full disk is an error: {stderr}");
    assert!(stderr.contains("not enough space"), "stderr says so: {stderr}");
    assert!(!target.exists(), "no file at the target");
    std::fs::remove_file(&ballast).unwrap();
    let (status, _, stderr) = Proc::shoal(&args).finish(RUN_LIMIT);
    assert!(status.success(), "with space, the rerun succeeds: {stderr}");
    assert!(same_file(&target, &data), "the file is byte-identical");
}

// C. An existing file is never replaced without --force.
#[test]
fn an_existing_target_is_left_alone_without_force() {
    let root = tempfile::tempdir().unwrap();
    let data = random_bytes(2 * MIB, 0xC);
    let node = serving(root.path(), "c.bin", &data, &[]);
    let target = root.path().join("c.bin");
    std::fs::write(&target, b"mine").unwrap();
    let state = root.path().join("get-state");
    let (target_s, state_s) = (path(&target), path(&state));
    let (status, _, stderr) = Proc::shoal(&["get", "c.bin", "--peer", &node.url, "-o", &target_s, "--state", &state_s]).finish(RUN_LIMIT);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--force"), "the message names --force: {stderr}");
    assert_eq!(std::fs::read(&target).unwrap(), b"mine", "the file is untouched");
    let (status, _, stderr) =
        Proc::shoal(&["get", "c.bin", "--peer", &node.url, "-o", &target_s, "--state", &state_s, "--force"]).finish(RUN_LIMIT);
    assert!(status.success(), "{stderr}");
    assert!(same_file(&target, &data));
}

/// Runs `shoal get` on the state directory of a running node and checks the node did the work.
/// With `knows_holder`, the node is started with `--peer <holder>`; otherwise only `shoal get`
/// is told where the file is.
fn hand_over(node_extra: &[&str], seed: u64, knows_holder: bool, get_env: &[(&str, &str)]) {
    let root = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * MIB, seed);
    let holder = serving(root.path(), "d.bin", &data, &[]);
    let state = root.path().join("local-state");
    let local_share = root.path().join("local-share");
    let mut extra: Vec<&str> = node_extra.to_vec();
    if knows_holder {
        extra.extend(["--peer", holder.url.as_str()]);
    }
    let _local = Serve::start(&local_share, &state, &extra);
    let target = root.path().join("out").join("d.bin");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let (target_s, state_s) = (path(&target), path(&state));
    let (status, _, stderr) = Proc::shoal_env(
        &["get", "d.bin", "--peer", &holder.url, "-o", &target_s, "--state", &state_s],
        get_env,
    )
    .finish(RUN_LIMIT);
    assert!(status.success(), "handing over succeeds: {stderr}");
    assert!(
        stderr.contains("a node runs on this state directory"),
        "the node did the download: {stderr}"
    );
    assert!(same_file(&target, &data), "the file arrived");
}

// D. A node runs on the state directory: `shoal get` hands the download to it.
#[test]
fn get_beside_a_running_node_hands_the_download_over() {
    hand_over(&[], 0xD, false, &[]);
}

// D1. The same, with a node that knows the holder already (hand-over without relying on --peer).
#[test]
fn get_beside_a_node_that_knows_the_holder_hands_the_download_over() {
    hand_over(&[], 0xD1, true, &[]);
}

// D2. The same, with a node that was given its secret on the command line: `get` takes the
// secret from SHOAL_SECRET, and without it says so (and writes no secret file of its own).
#[test]
fn get_beside_a_node_started_with_a_secret_hands_the_download_over() {
    hand_over(&["--secret", "x"], 0xD2, false, &[("SHOAL_SECRET", "x")]);
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let _node = Serve::start(&root.path().join("share"), &state, &["--secret", "x"]);
    let out = path(&root.path().join("out.bin"));
    let (status, _, stderr) = Proc::shoal(&["get", "d.bin", "-o", &out, "--state", &path(&state)]).finish(RUN_LIMIT);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SHOAL_SECRET"), "the message says how to give the secret: {stderr}");
    assert!(!state.join("secret").exists(), "get makes no secret of its own");
}
