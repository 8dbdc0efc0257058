//! The web UI in a real browser: headless Chromium driven through WebDriver (tests/ui/browser.py,
//! Selenium from Debian's python3-selenium, no network look-ups) against two `shoal serve`
//! processes on loopback: one shares a file, the other knows it as a peer. See browser.py for
//! the checks, among them the owner's session against another web server on another port of
//! the host (the browser sends it the cookie; replayed alone, the cookie is refused). With
//! SHOAL_SCREENSHOTS=DIR the script saves the README's pictures there.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{MIB, Serve, random_bytes};

/// The Python that has Debian's Selenium (a pyenv shim first in PATH may not).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn the_seed_flow_works_from_the_browser_alone() {
    let root = tempfile::tempdir().unwrap();
    let (holder_dir, mine_dir) = (root.path().join("holder"), root.path().join("mine"));
    std::fs::create_dir_all(&holder_dir).unwrap();
    std::fs::create_dir_all(&mine_dir).unwrap();
    std::fs::write(holder_dir.join("remote-notes.txt"), random_bytes(MIB, 81)).unwrap();
    std::fs::write(holder_dir.join("slow-video.bin"), random_bytes(24 * MIB, 82)).unwrap();
    std::fs::write(mine_dir.join("my-photo.jpg"), random_bytes(300_000, 83)).unwrap();
    // The holder serves at 2 MiB/s, so that the big file is still coming when it is paused.
    let holder = Serve::start(
        &holder_dir,
        &root.path().join("holder-state"),
        &["--secret", "h", "--max-upload-rate", "2M"],
    );
    holder.wait_indexed("remote-notes.txt");
    holder.wait_indexed("slow-video.bin");
    let mine = Serve::start(
        &mine_dir,
        &root.path().join("mine-state"),
        &["--secret", "owner-secret", "--peer", &holder.url, "--dht-listen", "127.0.0.1:0"],
    );
    mine.wait_indexed("my-photo.jpg");

    let mut command = Command::new(python());
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/browser.py"))
        .args([&mine.url, "owner-secret", "my-photo.jpg", "remote-notes.txt", "slow-video.bin"])
        .env("SE_OFFLINE", "true");
    if let Ok(dir) = std::env::var("SHOAL_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        command.arg(std::path::absolute(dir).unwrap());
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with selenium (apt-get install python3-selenium chromium chromium-driver)");
    // Bounded: the script's own waits are 60 s each; the whole run gets four minutes.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the browser test did not finish within four minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "browser checks failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // What the browser did is real: the files are in the share, intact.
    assert_eq!(std::fs::read(mine_dir.join("remote-notes.txt")).unwrap(), random_bytes(MIB, 81));
    assert_eq!(std::fs::read(mine_dir.join("slow-video.bin")).unwrap(), random_bytes(24 * MIB, 82));
}
