//! `shoal get` of folders, globs and lists, as a user runs it, against `shoal serve` processes on
//! `127.0.0.1:0`: a nested folder with its layout, a glob, re-runs that skip complete files and
//! leave different ones alone, a folder killed with SIGKILL and run again, a list mixing a
//! name, a content id and a mirror URL with a line that fails, and directory symlinks planted
//! under `-o`, refused rather than followed; `-x` reaching every file of a queue.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{MIB, Proc, Serve, json, random_bytes};

const RUN_LIMIT: Duration = Duration::from_secs(120);

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A node sharing `files` (name → bytes), all indexed.
fn serving(root: &Path, files: &BTreeMap<String, Vec<u8>>, extra: &[&str]) -> Serve {
    let dir = root.join("share");
    for (name, data) in files {
        let file = dir.join(name);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, data).unwrap();
    }
    let mut args = vec!["--secret", "x"];
    args.extend_from_slice(extra);
    let node = Serve::start(&dir, &root.join("node-state"), &args);
    for name in files.keys() {
        node.wait_indexed(name);
    }
    node
}

/// A nested folder `pics/` of small files and two of 3 MiB, and a file outside it.
fn nested() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for i in 0..24u64 {
        let name = match i % 4 {
            0 => format!("pics/p{i}.jpg"),
            1 => format!("pics/2024/p{i}.jpg"),
            2 => format!("pics/2024/raw/p{i}.raw"),
            _ => format!("pics/notes/n{i}.txt"),
        };
        files.insert(name, random_bytes(16 * 1024 + i as usize, i));
    }
    files.insert("pics/big/one.bin".into(), random_bytes(3 * MIB, 100));
    files.insert("pics/big/two.jpg".into(), random_bytes(3 * MIB + 5, 101));
    files.insert("other/outside.jpg".into(), random_bytes(1000, 102));
    files
}

/// Every file under `dir`, relative, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let name = path(entry.path().strip_prefix(dir).unwrap());
                found.insert(name, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    found
}

/// The files of `files` under `prefix`, with `prefix` removed from their names.
fn under(files: &BTreeMap<String, Vec<u8>>, prefix: &str, keep: impl Fn(&str) -> bool) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .filter(|(name, _)| name.starts_with(prefix) && keep(name))
        .map(|(name, data)| (name[prefix.len()..].to_string(), data.clone()))
        .collect()
}

/// The events of a `--json` run of one kind.
fn events(lines: &[String], kind: &str) -> Vec<serde_json::Value> {
    lines.iter().filter_map(|l| json(l)).filter(|v| v["event"] == kind).collect()
}

fn summary(lines: &[String]) -> serde_json::Value {
    events(lines, "summary")
        .pop()
        .unwrap_or_else(|| panic!("a summary line in {lines:#?}"))
}

#[test]
fn a_nested_folder_downloads_with_its_layout_and_a_rerun_fetches_nothing() {
    let root = tempfile::tempdir().unwrap();
    let files = nested();
    let node = serving(root.path(), &files, &[]);
    let out = root.path().join("out");
    let (out_s, state_s) = (path(&out), path(&root.path().join("get-state")));
    let get = |extra: &[&str]| {
        let mut args = vec!["get", "pics/", "--peer", &node.url, "-o", &out_s, "--state", &state_s, "--json"];
        args.extend_from_slice(extra);
        Proc::shoal(&args).finish(RUN_LIMIT)
    };
    let wanted = under(&files, "pics/", |_| true);
    let (status, lines, stderr) = get(&[]);
    assert!(status.success(), "the folder downloads: {stderr}");
    assert_eq!(tree(&out.join("pics")), wanted, "every file, intact, in its place");
    assert_eq!(
        tree(&out).len(),
        wanted.len(),
        "nothing beside out/pics (no partial files, no outside.jpg)"
    );
    assert_eq!(events(&lines, "done").len(), wanted.len());
    assert_eq!(summary(&lines)["done"], wanted.len());

    // Run again: every file is checked against its content id and skipped; nothing is fetched.
    let (status, lines, stderr) = get(&[]);
    assert!(status.success(), "the re-run succeeds: {stderr}");
    assert!(events(&lines, "start").is_empty(), "nothing fetched again: {lines:#?}");
    assert_eq!(summary(&lines)["skipped"], wanted.len());

    // A file that differs (same size, other bytes) is not overwritten without --force.
    let changed = out.join("pics/2024/p1.jpg");
    let mut mine = std::fs::read(&changed).unwrap();
    mine[0] ^= 0xff;
    std::fs::write(&changed, &mine).unwrap();
    let (status, lines, _) = get(&[]);
    assert!(!status.success(), "a file that differs is a failure");
    let failures = &summary(&lines)["failures"];
    assert_eq!(failures.as_array().map(Vec::len), Some(1), "{failures}");
    assert_eq!(failures[0]["name"], "pics/2024/p1.jpg");
    assert!(failures[0]["error"].as_str().unwrap().contains("already exists"), "{failures}");
    assert_eq!(std::fs::read(&changed).unwrap(), mine, "left alone");
    let (status, _, stderr) = get(&["--force"]);
    assert!(status.success(), "--force replaces it: {stderr}");
    assert_eq!(std::fs::read(&changed).unwrap(), files["pics/2024/p1.jpg"]);
}

#[test]
fn a_glob_picks_only_the_matching_files() {
    let root = tempfile::tempdir().unwrap();
    let files = nested();
    let node = serving(root.path(), &files, &[]);
    let state_s = path(&root.path().join("get-state"));
    for (glob, keep) in [
        ("pics/**/*.jpg", (|n: &str| n.ends_with(".jpg")) as fn(&str) -> bool),
        ("pics/*.jpg", |n: &str| n.ends_with(".jpg") && !n["pics/".len()..].contains('/')),
        ("pics/2024/p?.jpg", |n: &str| {
            n.starts_with("pics/2024/p") && n.len() == "pics/2024/p1.jpg".len()
        }),
    ] {
        let out = root.path().join(format!("out-{}", glob.len()));
        let (status, _, stderr) =
            Proc::shoal(&["get", glob, "--peer", &node.url, "-o", &path(&out), "--state", &state_s, "--quiet"]).finish(RUN_LIMIT);
        assert!(status.success(), "{glob}: {stderr}");
        let base = if glob.starts_with("pics/2024/") { "pics/2024/" } else { "pics/" };
        let wanted = under(&files, base, keep);
        assert!(!wanted.is_empty() && wanted.len() < files.len(), "{glob} selects some files");
        assert_eq!(tree(&out), wanted, "{glob}: only the matching files, relative to {base}");
    }
}

#[test]
fn a_folder_killed_with_sigkill_resumes_and_completes() {
    let root = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    // The two large files sort first, so they are under way when the kill comes.
    files.insert("dir/0/big-a.bin".to_string(), random_bytes(6 * MIB, 1));
    files.insert("dir/0/big-b.bin".to_string(), random_bytes(6 * MIB + 3, 2));
    for i in 0..40u64 {
        files.insert(format!("dir/s{}/f{i:02}.dat", i % 5), random_bytes(16 * 1024, 10 + i));
    }
    // At 2 MiB/s the large files take about 6 s, so their progress (one event a second) is seen
    // past 3 MiB well before they end, even on a loaded machine.
    let node = serving(root.path(), &files, &["--max-upload-rate", "2M"]);
    let out = root.path().join("out");
    let (out_s, state_s) = (path(&out), path(&root.path().join("get-state")));
    let args = [
        "get", "dir/", "--peer", &node.url, "-o", &out_s, "--state", &state_s, "--json", "-j", "3",
    ];

    let mut first = Proc::shoal(&args);
    let deadline = Instant::now() + RUN_LIMIT;
    let mut done_before = 0;
    let mut big_progress: BTreeMap<String, u64> = BTreeMap::new();
    while Instant::now() < deadline {
        let Some(line) = first.line(Duration::from_millis(200)) else {
            assert!(first.child.try_wait().unwrap().is_none(), "the first run ended before the kill");
            continue;
        };
        let Some(event) = json(&line) else { continue };
        if event["event"] == "done" {
            done_before += 1;
        }
        if event["event"] == "progress" {
            big_progress.insert(event["name"].as_str().unwrap().to_string(), event["done"].as_u64().unwrap());
        }
        if done_before >= 3 && big_progress.values().any(|done| *done >= 3 * MIB as u64) {
            break;
        }
    }
    first.kill();
    assert!(done_before >= 3, "some files were done before the kill");
    // Whatever is under a final name is the complete, right file.
    let wanted = under(&files, "", |_| true);
    for (name, data) in tree(&out) {
        if let Some(expected) = wanted.get(&name) {
            assert_eq!(&data, expected, "{name} after the kill");
        } else {
            assert!(name.ends_with(".shoal-part"), "only partial files are hidden beside: {name}");
        }
    }

    let (status, lines, stderr) = Proc::shoal(&args).finish(RUN_LIMIT);
    assert!(status.success(), "the run again completes: {stderr}");
    assert_eq!(tree(&out), wanted, "every file intact, no partial file left");
    let sum = summary(&lines);
    assert!(
        sum["skipped"].as_u64().unwrap() >= done_before,
        "files done before the kill are kept: {sum}"
    );
    // The large file that had progressed resumed from its record: only what was in flight is
    // fetched again.
    let resumed: u64 = events(&lines, "done").iter().map(|e| e["resumed"].as_u64().unwrap_or(0)).sum();
    assert!(resumed >= MIB as u64, "a large file resumed ({resumed} bytes kept)");
}

#[test]
fn a_list_mixes_a_name_an_id_and_mirrors_and_names_its_failure() {
    let root = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    files.insert("a.txt".to_string(), random_bytes(5000, 1));
    files.insert("docs/b.bin".to_string(), random_bytes(2 * MIB + 7, 2));
    files.insert("c.txt".to_string(), random_bytes(7000, 3));
    let node = serving(root.path(), &files, &[]);
    let b_id = blake3_hex(&files["docs/b.bin"]);
    let port = node.url.rsplit(':').next().unwrap();
    let list = root.path().join("list.txt");
    std::fs::write(
        &list,
        format!(
            "# a name, a content id with its own name, two mirrors of one file, a name nobody has\n\
             a.txt\n\n{b_id}\n  out=renamed-b.bin\n{url}/files/c.txt\thttp://localhost:{port}/files/c.txt\nmissing.txt\n",
            url = node.url
        ),
    )
    .unwrap();
    let out = root.path().join("out");
    let (list_s, out_s, state_s) = (path(&list), path(&out), path(&root.path().join("get-state")));
    let (status, lines, stderr) = Proc::shoal(&[
        "get", "-i", &list_s, "--peer", &node.url, "-o", &out_s, "--state", &state_s, "-j", "2",
    ])
    .finish(RUN_LIMIT);
    assert!(!status.success(), "a failed line fails the run");
    let text = lines.join("\n");
    assert!(text.contains("3 downloaded"), "{text}");
    assert!(
        text.contains("1 failed") && text.contains("failed: line 7: missing.txt"),
        "the summary names the failure: {text}"
    );
    assert!(stderr.contains("1 of 4 downloads failed"), "{stderr}");
    let mut wanted = BTreeMap::new();
    wanted.insert("a.txt".to_string(), files["a.txt"].clone());
    wanted.insert("renamed-b.bin".to_string(), files["docs/b.bin"].clone());
    wanted.insert("c.txt".to_string(), files["c.txt"].clone());
    assert_eq!(tree(&out), wanted);
}

/// Every entry under `dir`, hidden ones included, without following symlinks.
fn entries(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
            found.push(path(entry.path().strip_prefix(dir).unwrap()));
        }
    }
    found.sort();
    found
}

#[test]
fn a_directory_symlink_planted_under_the_output_directory_is_refused_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    files.insert("pics/top.jpg".to_string(), random_bytes(5000, 1));
    // A small file (one request) and a large one (the full engine) under each planted link.
    files.insert("pics/2024/a.jpg".to_string(), random_bytes(7000, 2));
    files.insert("pics/2024/big.bin".to_string(), random_bytes(3 * MIB, 3));
    files.insert("pics/raw/deep/b.raw".to_string(), random_bytes(9000, 4));
    let node = serving(root.path(), &files, &[]);
    // Another user's plant: directories of the victim's own (as ~/.config/autostart) linked
    // in where the folder's subdirectories will go.
    let victim = root.path().join("victim-autostart");
    std::fs::create_dir_all(&victim).unwrap();
    let out = root.path().join("out");
    std::fs::create_dir_all(out.join("pics")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("pics/2024")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("pics/raw")).unwrap();
    let state_s = path(&root.path().join("get-state"));
    let (status, lines, stderr) = Proc::shoal(&[
        "get",
        "pics/",
        "--peer",
        &node.url,
        "-o",
        &path(&out),
        "--state",
        &state_s,
        "--json",
    ])
    .finish(RUN_LIMIT);
    assert_eq!(entries(&victim), Vec::<String>::new(), "nothing landed through the symlinks");
    assert!(!status.success(), "the files behind the links fail the run: {stderr}");
    assert_eq!(
        common_read(&out.join("pics/top.jpg")),
        files["pics/top.jpg"],
        "the rest of the folder arrives"
    );
    let failed = events(&lines, "failed");
    assert_eq!(failed.len(), 3, "each file behind a link fails: {lines:#?}");
    for event in &failed {
        assert!(
            event["error"].as_str().unwrap().contains("symlink"),
            "the reason names the symlink: {event}"
        );
    }
    for link in ["pics/2024", "pics/raw"] {
        assert!(
            std::fs::symlink_metadata(out.join(link)).unwrap().file_type().is_symlink(),
            "{link} left as it was"
        );
    }

    // The folder's own directory planted as a link: nothing goes through it either, and a run
    // with --force changes nothing.
    let out2 = root.path().join("out2");
    std::fs::create_dir_all(&out2).unwrap();
    std::os::unix::fs::symlink(&victim, out2.join("pics")).unwrap();
    let out2_s = path(&out2);
    for extra in [&[][..], &["--force"][..]] {
        let mut args = vec!["get", "pics/", "--peer", &node.url, "-o", &out2_s, "--state", &state_s, "--json"];
        args.extend_from_slice(extra);
        let (status, lines, stderr) = Proc::shoal(&args).finish(RUN_LIMIT);
        assert!(!status.success(), "{extra:?}: {stderr}");
        assert_eq!(events(&lines, "failed").len(), files.len(), "{extra:?}: {lines:#?}");
        assert_eq!(
            entries(&victim),
            Vec::<String>::new(),
            "{extra:?}: nothing landed through the symlink"
        );
    }
}

/// The bytes of a file, with the path in the panic message.
fn common_read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn folders_are_not_handed_to_a_node_on_the_same_state() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let _node = Serve::start(&root.path().join("share"), &state, &["--secret", "x"]);
    let (status, _, stderr) = Proc::shoal(&["get", "pics/", "--state", &path(&state)]).finish(RUN_LIMIT);
    assert!(!status.success());
    assert!(
        stderr.contains("folders, globs and lists are downloaded without a node"),
        "{stderr}"
    );
}

/// The content id of `data` (its BLAKE3 hash, as `b3sum` prints it).
fn blake3_hex(data: &[u8]) -> String {
    shoal_index::hash_bytes(data).id.to_string()
}

/// `-x` reaches the files of a queue as it reaches a single download (a list, a folder and a
/// glob once ran with the engine's default of 8 connections per source whatever `-x` said).
/// nginx sends each answer at 1 MiB/s, so an engine free to ramp opens more connections; with
/// `-x 1` every range request of the file goes over one connection (nginx's `$connection`).
#[test]
fn connections_per_source_reach_the_files_of_a_list() {
    let root = tempfile::tempdir().unwrap();
    let www = root.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let data = random_bytes(4 * MIB, 31);
    std::fs::write(www.join("big.bin"), &data).unwrap();
    let nginx = shoal_testkit::Nginx::start(shoal_testkit::NginxConfig {
        root: www,
        server: "limit_rate 1m;".into(),
        ..Default::default()
    });
    let list = root.path().join("list.txt");
    std::fs::write(&list, format!("{}/big.bin\n", nginx.url())).unwrap();
    let out = root.path().join("out");
    let (list_s, out_s, state_s) = (path(&list), path(&out), path(&root.path().join("get-state")));
    let (status, lines, stderr) = Proc::shoal(&["get", "-i", &list_s, "-o", &out_s, "--state", &state_s, "-x", "1"]).finish(RUN_LIMIT);
    assert!(status.success(), "{}\n{stderr}", lines.join("\n"));
    assert_eq!(std::fs::read(out.join("big.bin")).unwrap(), data);
    let log = nginx.stop();
    let mut connections: Vec<&str> = log
        .lines()
        .filter(|line| line.split(' ').nth(2) == Some("GET"))
        .filter_map(|line| line.split(' ').next())
        .collect();
    connections.sort();
    connections.dedup();
    assert_eq!(connections.len(), 1, "GETs over more than one connection with -x 1:\n{log}");
}
