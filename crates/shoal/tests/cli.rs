//! The `shoal` command line, end to end: the real binary against real nodes (`shoal serve` on
//! `127.0.0.1:0`, temporary directories). The shell driven through piped standard input across
//! two hops, every report command's table and JSON, exit codes, colour, configuration
//! precedence, completions, the man page and the help of every subcommand.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;

use common::{Node, Output, Transcript, pattern, read, run, run_args, shoal};

/// `shoal ARGS... --node URL [--json]`.
fn against(node: &Node, args: &[&str], json: bool) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--node", &node.url]);
    if json {
        all.push("--json");
    }
    run_args(all)
}

/// The names in a JSON array of matches.
fn names(value: &serde_json::Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The whitespace-separated words of a table's header line.
fn header(out: &str) -> Vec<&str> {
    out.lines().next().unwrap_or_default().split_whitespace().collect()
}

/// The table row whose first cell is `name`.
fn row<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{out}"))
}

#[test]
fn piped_shell_searches_two_hops_fetches_gets_and_reports_errors() {
    let data = pattern(3 << 20, 7);
    let far = Node::serve(&[("far.txt", b"far away\n")], &[]);
    let near = Node::serve(&[("hello.txt", b"hello, shoal\n"), ("data.bin", &data)], &[&far.url]);
    let tmp = tempfile::tempdir().unwrap();
    let (dir, state) = (tmp.path().join("d"), tmp.path().join("s"));
    let script = [
        "help",
        "search *.txt",
        "fetch hello.txt",
        "fetch nope.txt",
        "get data.bin",
        "wait",
        "downloads",
        "ls",
        "peers",
        "bogus",
        "fetch",
        "hello not-a-url",
        "help fetch",
        "exit",
        "also-bogus",
    ]
    .join("\n");
    let mut command = shoal();
    command
        .arg("shell")
        .arg("--dir")
        .arg(&dir)
        .arg("--state")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0", "--peer", &near.url]);
    let out = run(command, &format!("{script}\n")).expect_code(0);
    let text = out.stdout();
    let mut t = Transcript::new(&text);

    t.next(&["listening on http://127.0.0.1:"]);
    // help: one line per command with its usage.
    let help = t.until(&["NAME", "NODES", "CONTENT ID"]);
    for usage in ["search PATTERN", "fetch NAME", "get TARGET...", "wait", "exit"] {
        assert!(
            help.iter().any(|l| l.trim_start().starts_with(usage)),
            "help lacks {usage:?}:\n{text}"
        );
    }
    // search: the near file and the file two hops away (shell's node -> near -> far), nothing else.
    let found = t.until(&["fetched hello.txt"]);
    let found_names: BTreeSet<&str> = found.iter().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(found_names, BTreeSet::from(["far.txt", "hello.txt"]), "search *.txt:\n{text}");
    assert_eq!(read(&dir.join("hello.txt")), b"hello, shoal\n");
    t.next(&["could not find the file nope.txt"]);
    t.next(&["downloading data.bin in the background"]);
    // wait prints the table once nothing runs, then downloads prints it again.
    t.next(&["NAME", "DONE", "BYTES", "SOURCES", "UPLOADED", "STATE"]);
    t.next(&["data.bin", "100.0%", "done"]);
    t.next(&["NAME", "DONE", "BYTES", "SOURCES", "UPLOADED", "STATE"]);
    t.next(&["data.bin", "100.0%", "3.0 MiB / 3.0 MiB", "done"]);
    // ls: the shell node's own share now holds both fetched files.
    t.next(&["NAME", "SIZE", "CONTENT ID"]);
    let listed = t.until(&["URL", "KIND", "STATE", "FAILURES"]);
    assert!(
        listed.iter().any(|l| l.starts_with("data.bin ") && l.contains("3.0 MiB")),
        "ls:\n{text}"
    );
    assert!(
        listed.iter().any(|l| l.starts_with("hello.txt ") && l.contains("13 B")),
        "ls:\n{text}"
    );
    // peers: the node given with --peer.
    t.next(&[&near.url, "shoal", "ok"]);
    assert_eq!(t.next(&["bogus"]), "unknown command \"bogus\"; type help for the list");
    assert_eq!(t.next(&["usage:"]), "usage: fetch NAME");
    let error = t.next(&["not-a-url"]);
    assert!(
        error.starts_with("hello: ") && error.contains("not a valid URL"),
        "hello not-a-url printed {error:?}"
    );
    // The shell went on after the error, and stopped reading at exit.
    t.next(&["fetch NAME: download NAME"]);
    assert!(!text.contains("also-bogus"), "a line after exit ran:\n{text}");
    assert!(read(&dir.join("data.bin")) == data, "data.bin differs from the original");
}

#[test]
fn report_commands_print_tables_and_json() {
    let data = pattern(3 << 20, 1);
    let far = Node::serve(&[("far.txt", b"far away\n")], &[]);
    let near = Node::serve(&[("hello.txt", b"hello, shoal\n"), ("data.bin", &data)], &[&far.url]);

    // ls
    let out = against(&near, &["ls"], false).expect_code(0).stdout();
    assert_eq!(header(&out), ["NAME", "SIZE", "HELD", "CONTENT", "ID"], "{out}");
    let files = against(&near, &["ls"], true).json();
    assert_eq!(names(&files), BTreeSet::from(["data.bin".to_string(), "hello.txt".to_string()]));
    for file in files.as_array().unwrap() {
        let name = file["name"].as_str().unwrap();
        let id = file["id"].as_str().unwrap();
        assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "id {id:?}");
        let expected = if name == "data.bin" { data.len() as u64 } else { 13 };
        assert_eq!(file["size"].as_u64(), Some(expected), "{file}");
        let line = row(&out, name);
        assert!(line.ends_with(id), "row {line:?} lacks the id {id}");
        assert!(line.contains(if name == "data.bin" { "3.0 MiB" } else { "13 B" }), "{line:?}");
    }
    let hello_id = files.as_array().unwrap().iter().find(|f| f["name"] == "hello.txt").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // search: a glob reaching the peer, a content id, and nothing.
    let out = against(&near, &["search", "*.txt"], false).expect_code(0).stdout();
    assert_eq!(header(&out), ["NAME", "SIZE", "NODES", "CONTENT", "ID"], "{out}");
    assert!(row(&out, "far.txt").contains("9 B"), "{out}");
    assert!(row(&out, "hello.txt").ends_with(&hello_id), "{out}");
    assert!(!out.contains("data.bin"), "{out}");
    let found = against(&near, &["search", "*.txt"], true).json();
    assert_eq!(names(&found), BTreeSet::from(["far.txt".to_string(), "hello.txt".to_string()]));
    let far_match = found.as_array().unwrap().iter().find(|m| m["name"] == "far.txt").unwrap();
    assert!(
        far_match["urls"].as_array().unwrap().iter().any(|u| u == far.url.as_str()),
        "{far_match}"
    );
    assert_eq!(far_match["size"].as_u64(), Some(9));
    let by_id = against(&near, &["search", &hello_id], true).json();
    assert_eq!(names(&by_id), BTreeSet::from(["hello.txt".to_string()]));
    let out = against(&near, &["search", "no-such-*"], false).expect_code(0).stdout();
    assert_eq!(out.trim(), "nothing matches \"no-such-*\"");
    assert_eq!(against(&near, &["search", "no-such-*"], true).json(), serde_json::json!([]));

    // peers
    let out = against(&near, &["peers"], false).expect_code(0).stdout();
    assert_eq!(header(&out), ["URL", "KIND", "STATE", "FAILURES", "VIA"], "{out}");
    let line = row(&out, &far.url);
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), [far.url.as_str(), "shoal", "ok", "0"]);
    let peers = against(&near, &["peers"], true).json();
    let peer = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["url"] == far.url.as_str())
        .unwrap_or_else(|| panic!("{peers}"));
    assert_eq!((peer["kind"].as_str(), peer["backing_off"].as_bool()), (Some("shoal"), Some(false)));

    // status, by URL and through the state directory's node.url.
    let out = against(&near, &["status"], false).expect_code(0).stdout();
    assert_eq!(
        out.lines().next().map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["node", near.url.as_str()]),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["files", "2"]),
        "{out}"
    );
    let status = against(&near, &["status"], true).json();
    assert_eq!(status["url"].as_str(), Some(near.url.as_str()));
    assert_eq!(status["files"].as_u64(), Some(2));
    let state = near.state.as_os_str();
    let status = run_args([OsString::from("status"), "--state".into(), state.into(), "--json".into()]).json();
    assert_eq!(status["url"].as_str(), Some(near.url.as_str()), "status --state found another node");
    let status = run_args([
        OsString::from("status"),
        "--state".into(),
        far.state.clone().into(),
        "--json".into(),
    ])
    .json();
    assert_eq!(status["url"].as_str(), Some(far.url.as_str()));
    let out = run_args([OsString::from("ls"), "--state".into(), state.into()])
        .expect_code(0)
        .stdout();
    assert!(
        row(&out, "data.bin").ends_with(
            files.as_array().unwrap().iter().find(|f| f["name"] == "data.bin").unwrap()["id"]
                .as_str()
                .unwrap()
        )
    );
    let found = run_args([
        OsString::from("search"),
        "far".into(),
        "--state".into(),
        state.into(),
        "--json".into(),
    ])
    .json();
    assert_eq!(names(&found), BTreeSet::from(["far.txt".to_string()]));
}

#[test]
fn downloads_command_lists_a_download_started_through_the_attached_shell() {
    let source = Node::serve(&[("hello.txt", b"hello, shoal\n")], &[]);
    let node = Node::serve(&[], &[&source.url]);
    assert_eq!(against(&node, &["downloads"], false).expect_code(0).stdout().trim(), "no downloads");
    assert_eq!(against(&node, &["downloads"], true).json(), serde_json::json!([]));

    // The shell attached to the node by its state directory (`--node` without a URL).
    let mut command = shoal();
    command
        .arg("shell")
        .arg("--state")
        .arg(&node.state)
        .args(["--node", "--secret", "x"]);
    let out = run(command, "get hello.txt\nwait\n").expect_code(0);
    assert!(
        out.stdout().contains("downloading hello.txt in the background"),
        "{}",
        out.describe()
    );
    assert_eq!(read(&node.dir.join("hello.txt")), b"hello, shoal\n");

    let out = against(&node, &["downloads"], false).expect_code(0).stdout();
    assert_eq!(header(&out), ["NAME", "DONE", "BYTES", "SOURCES", "UPLOADED", "STATE"], "{out}");
    let line = row(&out, "hello.txt");
    assert!(
        line.contains("100.0%") && line.contains("13 B / 13 B") && line.ends_with("done"),
        "{line:?}"
    );
    let rows = against(&node, &["downloads"], true).json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0]["name"].as_str(), rows[0]["size"].as_u64(), rows[0]["done"].as_u64()),
        (Some("hello.txt"), Some(13), Some(13))
    );
    assert_eq!(rows[0]["status"]["state"].as_str(), Some("done"));
}

#[test]
fn exit_codes_say_success_failure_and_usage_error() {
    let node = Node::serve(&[("a.txt", b"a")], &[]);
    against(&node, &["ls"], false).expect_code(0);

    let empty = tempfile::tempdir().unwrap();
    let out = run_args([OsString::from("ls"), "--state".into(), empty.path().into()]).expect_code(1);
    let message = out.stderr();
    assert!(
        message.contains("no node is running") && message.contains("shoal serve") && message.contains("--node"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.is_empty(), "{}", out.describe());

    let out = run_args(["get"]).expect_code(2);
    assert!(out.stderr().contains("<TARGET>"), "{}", out.describe());
    let out = run_args(["bogus"]).expect_code(2);
    assert!(out.stderr().contains("bogus"), "{}", out.describe());
    run_args(["ls", "--no-such-flag"]).expect_code(2);
}

#[test]
fn no_colour_with_no_color_and_a_pipe() {
    let node = Node::serve(&[("a.txt", b"a")], &[]);
    let state = tempfile::tempdir().unwrap();
    let state = state.path().to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["ls", "--node", &node.url],
        vec!["search", "a", "--node", &node.url],
        vec!["peers", "--node", &node.url],
        vec!["downloads", "--node", &node.url],
        vec!["status", "--node", &node.url],
        vec!["config", "--state", state],
        vec!["--help"],
        vec!["search", "--help"],
        vec!["ls", "--state", state],
        vec!["get"],
        vec!["bogus"],
    ];
    for args in cases {
        let mut command = shoal();
        command.env("NO_COLOR", "1").args(&args);
        let out = run(command, "");
        assert!(!out.stdout.is_empty() || !out.stderr.is_empty(), "shoal {args:?} printed nothing");
        assert!(
            !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b),
            "shoal {args:?} printed an escape:\n{:?}\n{:?}",
            out.stdout(),
            out.stderr()
        );
    }
}

/// The `shoal config --json` entry for `key`.
fn setting(settings: &serde_json::Value, key: &str) -> (String, String) {
    let s = settings
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {settings}"));
    (
        s["value"].as_str().unwrap_or("(none)").to_string(),
        s["origin"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn config_takes_flags_then_environment_then_file_then_defaults() {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join("config.toml"),
        "listen = \"127.0.0.1:1111\"\ndir = \"/from-file\"\n",
    )
    .unwrap();
    let config = |env: Option<&str>, flag: Option<&str>| {
        let mut command = shoal();
        command.arg("config").arg("--state").arg(state.path()).arg("--json");
        if let Some(env) = env {
            command.env("SHOAL_LISTEN", env);
        }
        if let Some(flag) = flag {
            command.args(["--listen", flag]);
        }
        run(command, "").json()
    };
    let s = config(None, None);
    assert_eq!(setting(&s, "listen"), ("127.0.0.1:1111".into(), "file".into()));
    assert_eq!(setting(&s, "dir"), ("/from-file".into(), "file".into()));
    assert_eq!(setting(&s, "url"), ("(none)".into(), "default".into()));
    assert_eq!(setting(&s, "state"), (state.path().display().to_string(), "flag".into()));
    let file = s.as_array().unwrap().iter().find(|s| s["key"] == "listen").unwrap()["from"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(file.ends_with("config.toml"), "{file}");
    let s = config(Some("127.0.0.1:2222"), None);
    assert_eq!(setting(&s, "listen"), ("127.0.0.1:2222".into(), "env".into()));
    assert_eq!(setting(&s, "dir"), ("/from-file".into(), "file".into()));
    let s = config(Some("127.0.0.1:2222"), Some("127.0.0.1:3333"));
    assert_eq!(setting(&s, "listen"), ("127.0.0.1:3333".into(), "flag".into()));

    // The table says the same for people.
    let out = run_args([OsString::from("config"), "--state".into(), state.path().into()])
        .expect_code(0)
        .stdout();
    assert_eq!(header(&out), ["KEY", "VALUE", "FROM"]);
    assert!(
        row(&out, "listen").contains("127.0.0.1:1111") && row(&out, "listen").contains("config file"),
        "{out}"
    );
    assert!(row(&out, "url").contains("default"), "{out}");
}

#[test]
fn unknown_key_in_the_config_file_is_an_error_naming_it() {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join("config.toml"),
        "listen = \"127.0.0.1:1111\"\nlisten_adress = \"x\"\n",
    )
    .unwrap();
    for command in ["config", "ls"] {
        let out = run_args([OsString::from(command), "--state".into(), state.path().into()]).expect_code(1);
        assert!(out.stderr().contains("unknown key \"listen_adress\""), "{}", out.describe());
        assert!(out.stderr().contains("config.toml"), "{}", out.describe());
    }
}

#[test]
fn serve_shares_the_directory_named_in_the_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (shared, state) = (tmp.path().join("shared-from-config"), tmp.path().join("state"));
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(shared.join("configured.txt"), b"from the config file").unwrap();
    let toml = format!("dir = {:?}\n", shared.to_str().unwrap());
    std::fs::write(state.join("config.toml"), toml).unwrap();
    let mut command = shoal();
    command
        .current_dir(tmp.path())
        .arg("serve")
        .arg("--state")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0"]);
    let node = Node::spawn(command, shared.clone(), state.clone());
    // Fails (times out) unless the node shares the configured directory.
    node.wait_until_sharing(&["configured.txt"]);
    let out = run_args([OsString::from("ls"), "--state".into(), state.clone().into()])
        .expect_code(0)
        .stdout();
    assert!(row(&out, "configured.txt").contains("20 B"), "{out}");
    assert!(!tmp.path().join("shared").exists(), "the default ./shared was used");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_args(["completions", shell]).expect_code(0).stdout();
        assert!(out.contains("shoal"), "{shell}: {out}");
        for sub in ["serve", "search", "downloads"] {
            assert!(out.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    run_args(["completions", "tcsh-like"]).expect_code(2);
}

#[test]
fn man_page_is_roff() {
    let out = run_args(["man"]).expect_code(0).stdout();
    assert!(out.starts_with('.'), "{}", &out[..out.len().min(200)]);
    assert!(out.lines().any(|l| l.starts_with(".TH shoal 1")), "{}", &out[..out.len().min(200)]);
    assert!(out.contains("serve"), "the man page lists no subcommands");
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    let top = run_args(["--help"]).expect_code(0).stdout();
    let subcommands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .collect();
    for expected in [
        "serve",
        "get",
        "shell",
        "search",
        "ls",
        "peers",
        "downloads",
        "status",
        "config",
        "completions",
        "man",
    ] {
        assert!(subcommands.contains(&expected), "shoal --help lacks {expected}:\n{top}");
    }
    for sub in subcommands {
        let out = run_args([sub, "--help"]).expect_code(0).stdout();
        assert!(out.contains("Example"), "shoal {sub} --help has no example:\n{out}");
        assert!(out.contains(&format!("shoal {sub}")), "shoal {sub} --help:\n{out}");
    }
}
