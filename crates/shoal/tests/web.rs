//! `shoal get` from the web as a user meets it, against real nginx on loopback: https with a CA
//! the test makes (trusted through `--ca-cert` or `SSL_CERT_FILE`, refused clearly otherwise),
//! redirects (followed, never from https down to http nor to an address never contacted, ranges
//! sent to the final URL), headers and credentials in the URL (used, never printed, kept from
//! another origin a redirect leads to unless `--location-trusted`) and a forward proxy from the
//! environment.

mod support;

use std::path::Path;
use std::time::Duration;

use shoal_testkit::{Nginx, NginxConfig, Pki};
use support::{MIB, Proc, random_bytes};

const RUN_LIMIT: Duration = Duration::from_secs(120);

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A directory holding `name` with `data`.
fn site(name: &str, data: &[u8]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join(name), data).unwrap();
    root
}

/// Runs `shoal get ARGS -o OUT` with a fresh state directory and the environment `env`; returns
/// the exit status, stdout lines and stderr.
fn get(args: &[&str], out: &Path, env: &[(&str, &str)]) -> (std::process::ExitStatus, Vec<String>, String) {
    let state = tempfile::tempdir().unwrap();
    let mut all: Vec<&str> = vec!["get"];
    all.extend_from_slice(args);
    let out = path(out);
    let state_s = path(state.path());
    all.extend_from_slice(&["-o", &out, "--state", &state_s, "--retry-for", "5"]);
    Proc::shoal_env(&all, env).finish(RUN_LIMIT)
}

/// Nothing is left in `dir` but what a test put there: no final name, no hidden part file.
fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn https_mirrors_work_with_the_ca_given_and_are_refused_clearly_without_it() {
    let data = random_bytes(3 * MIB + 12345, 71);
    let root = site("big.bin", &data);
    let pki = Pki::new("shoal");
    let nginx = Nginx::start(NginxConfig {
        root: root.path().into(),
        tls: Some(pki.server.clone()),
        ..Default::default()
    });
    let url = format!("{}/big.bin", nginx.localhost_url());

    // Trusted through --ca-cert: the file arrives intact.
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("big.bin");
    let ca = path(&pki.ca_cert);
    let (status, _, stderr) = get(&[&url, "--ca-cert", &ca], &target, &[]);
    assert!(status.success(), "{stderr}");
    assert_eq!(std::fs::read(&target).unwrap(), data);

    // Trusted through SSL_CERT_FILE (the platform's roots replaced, as for curl and openssl).
    let target2 = out.path().join("again.bin");
    let (status, _, stderr) = get(&[&url], &target2, &[("SSL_CERT_FILE", &ca)]);
    assert!(status.success(), "{stderr}");
    assert_eq!(std::fs::read(&target2).unwrap(), data);

    // A CA that did not sign the server's certificate: one clear line naming the host and the
    // reason, a failing exit, and nothing under the target name.
    let other = Pki::new("other");
    let refused = tempfile::tempdir().unwrap();
    let (status, _, stderr) = get(&[&url, "--ca-cert", &path(&other.ca_cert)], &refused.path().join("big.bin"), &[]);
    assert!(!status.success());
    let error: Vec<&str> = stderr.lines().filter(|l| l.contains("certificate")).collect();
    assert_eq!(error.len(), 1, "one line about the certificate: {stderr}");
    assert!(
        error[0].contains("localhost") && error[0].contains("certificate not trusted: unknown issuer"),
        "{stderr}"
    );
    assert_empty(refused.path());

    // Neither --ca-cert nor SSL_CERT_FILE: the test CA is in no platform store.
    let (status, _, stderr) = get(&[&url], &refused.path().join("big.bin"), &[]);
    assert!(!status.success() && stderr.contains("unknown issuer"), "{stderr}");
    assert_empty(refused.path());

    // A bad CA file is a clear usage error.
    let bogus = refused.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let (status, _, stderr) = get(&[&url, "--ca-cert", &path(&bogus)], &refused.path().join("x"), &[]);
    std::fs::remove_file(&bogus).unwrap();
    assert!(!status.success() && stderr.contains("bogus.pem"), "{stderr}");
    assert_empty(refused.path());
}

#[test]
fn redirects_are_followed_once_and_ranges_go_to_the_final_url_but_never_down_to_http() {
    let data = random_bytes(5 * MIB + 7, 72);
    let root = site("final.bin", &data);
    let pki = Pki::new("shoal");
    let plain = Nginx::start(NginxConfig {
        root: root.path().into(),
        ..Default::default()
    });
    let tls = Nginx::start(NginxConfig {
        root: root.path().into(),
        tls: Some(pki.server.clone()),
        server: format!(
            "location = /hop1 {{ return 302 /hop2; }}\n    location = /hop2 {{ return 301 /final.bin; }}\n    \
             location = /down {{ return 302 {}/final.bin; }}",
            plain.url()
        ),
        ..Default::default()
    });
    let ca = path(&pki.ca_cert);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("f.bin");
    let (status, _, stderr) = get(&[&format!("{}/hop1", tls.localhost_url()), "--ca-cert", &ca], &target, &[]);
    assert!(status.success(), "{stderr}");
    assert_eq!(std::fs::read(&target).unwrap(), data);

    // https -> http is refused, clearly, and nothing is fetched from the http server.
    let refused = tempfile::tempdir().unwrap();
    let (status, _, stderr) = get(
        &[&format!("{}/down", tls.localhost_url()), "--ca-cert", &ca],
        &refused.path().join("f.bin"),
        &[],
    );
    assert!(!status.success() && stderr.contains("https to http"), "{stderr}");
    assert_empty(refused.path());

    let log = tls.stop();
    // The redirecting URLs were asked once each (the check before the download); every range
    // request went to the final URL.
    let hops = log.lines().filter(|l| l.ends_with(" /hop1")).count();
    assert_eq!(hops, 1, "{log}");
    let ranged: Vec<&str> = log.lines().filter(|l| l.contains("\"bytes=")).collect();
    assert!(!ranged.is_empty(), "{log}");
    assert!(ranged.iter().all(|l| l.ends_with(" /final.bin")), "{log}");
    let fetched_plain = plain.stop();
    assert!(fetched_plain.is_empty(), "the http server was contacted: {fetched_plain}");
}

#[test]
fn headers_and_credentials_reach_the_mirror_and_credentials_are_never_printed() {
    let data = random_bytes(2 * MIB + 3, 73);
    let root = site("locked.bin", &data);
    // htpasswd line made by openssl (a real implementation of the apr1 scheme nginx reads).
    let password = "pw-s3cr3t-9f2c";
    let hashed = std::process::Command::new("openssl")
        .args(["passwd", "-apr1", password])
        .output()
        .expect("openssl");
    let users = tempfile::tempdir().unwrap();
    let htpasswd = users.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{}", String::from_utf8_lossy(&hashed.stdout))).unwrap();
    let nginx = Nginx::start(NginxConfig {
        root: root.path().into(),
        server: format!(
            "location / {{\n      auth_basic \"shoal test\";\n      auth_basic_user_file {};\n      \
             if ($http_x_token != \"sesame\") {{ return 403; }}\n    }}",
            htpasswd.display()
        ),
        ..Default::default()
    });
    let port = nginx.port();
    let with_credentials = format!("http://alice:{password}@127.0.0.1:{port}/locked.bin");
    let out = tempfile::tempdir().unwrap();

    // Without the header the server refuses: a failing exit, nothing written.
    let (status, _, stderr) = get(&[&with_credentials], &out.path().join("a.bin"), &[]);
    assert!(!status.success(), "{stderr}");
    assert!(!stderr.contains(password), "the password was printed: {stderr}");
    assert_empty(out.path());

    // With it, and with --json so that every source is printed: the file arrives, and the
    // password appears nowhere in the output or the log.
    let target = out.path().join("b.bin");
    let (status, lines, stderr) = get(
        &[&with_credentials, "-H", "X-Token: sesame", "--json"],
        &target,
        &[("SHOAL_LOG", "debug")],
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(std::fs::read(&target).unwrap(), data);
    let everything = lines.join("\n") + &stderr;
    assert!(everything.contains(&format!("127.0.0.1:{port}")), "{everything}");
    assert!(!everything.contains(password), "the password was printed: {everything}");

    // A malformed header is a usage error before anything is fetched.
    let (status, _, stderr) = get(&[&with_credentials, "-H", "no colon here"], &out.path().join("c.bin"), &[]);
    assert!(!status.success() && stderr.contains("--header"), "{stderr}");
}

/// An nginx serving `root` that logs, per request, the headers an owner may add (method,
/// Authorization, Cookie, X-Token, URI, separated by `|`) to `log`; `server` adds directives.
fn logging_headers(root: &Path, log: &Path, server: &str) -> Nginx {
    Nginx::start(NginxConfig {
        root: root.into(),
        http: "log_format heads '$request_method|$http_authorization|$http_cookie|$http_x_token|$request_uri';".into(),
        server: format!("access_log {} heads;\n    {server}", log.display()),
        ..Default::default()
    })
}

#[test]
fn headers_and_credentials_stay_with_the_origin_named_unless_location_trusted() {
    let data = random_bytes(2 * MIB + 11, 76);
    let root = site("moved.bin", &data);
    let logs = tempfile::tempdir().unwrap();
    let (named_log, other_log) = (logs.path().join("named.log"), logs.path().join("other.log"));
    // Another origin (another port of the same host, as curl counts it) serves the file...
    let other = logging_headers(root.path(), &other_log, "");
    // ...and the mirror the user names redirects there.
    let named = logging_headers(
        root.path(),
        &named_log,
        &format!("location = /moved.bin {{ return 302 {}/moved.bin; }}", other.url()),
    );
    let (token, cookie, password) = ("tok-4471aa", "c=cookie-90be1f", "pw-2b7c");
    let url = format!("http://alice:{password}@127.0.0.1:{}/moved.bin", named.port());
    let read = |log: &Path| std::fs::read_to_string(log).unwrap_or_default();
    let basic = "Basic YWxpY2U6cHctMmI3Yw=="; // alice:pw-2b7c
    let out = tempfile::tempdir().unwrap();
    let run = |target: &str, extra: &[&str]| {
        let mut args = vec!["-H", "X-Token: tok-4471aa", "-H", "Cookie: c=cookie-90be1f"];
        args.extend_from_slice(extra);
        if !extra.iter().any(|a| a.starts_with("http")) {
            args.push(&url);
        }
        let target = out.path().join(target);
        let (status, _, stderr) = get(&args, &target, &[]);
        assert!(status.success(), "{extra:?}: {stderr}");
        assert_eq!(std::fs::read(&target).unwrap(), data, "{extra:?}");
    };

    run("a.bin", &[]);
    let (to_named, to_other) = (read(&named_log), read(&other_log));
    // The other origin gets none of them, on any request...
    assert!(to_other.lines().count() >= 2, "the other origin served the file: {to_other}");
    for secret in [token, cookie, "Basic ", password] {
        assert!(!to_other.contains(secret), "{secret} reached another origin:\n{to_other}");
    }
    // ...and the named origin gets them with every request, the check and each range request
    // alike (the mirror stays the URL given; each request follows the redirect).
    let named_lines: Vec<&str> = to_named.lines().filter(|l| l.ends_with("/moved.bin")).collect();
    assert!(named_lines.len() >= 2, "the check and the ranges went to the URL given: {to_named}");
    for line in &named_lines {
        assert!(line.contains(token) && line.contains(cookie) && line.contains(basic), "{line}");
    }

    // An Authorization header given with -H (no credentials in the URL) stays home too.
    std::fs::write(&other_log, "").unwrap();
    let plain = format!("{}/moved.bin", named.url());
    run("c.bin", &["-H", "Authorization: Bearer bearer-61d2", &plain]);
    let to_other = read(&other_log);
    assert!(to_other.lines().count() >= 2, "{to_other}");
    for secret in [token, cookie, "Bearer"] {
        assert!(!to_other.contains(secret), "{secret} reached another origin:\n{to_other}");
    }
    assert!(read(&named_log).contains("Bearer bearer-61d2"), "{}", read(&named_log));

    // --location-trusted: the user trusts where the redirect leads; everything goes there too.
    std::fs::write(&other_log, "").unwrap();
    run("b.bin", &["--location-trusted"]);
    let to_other = read(&other_log);
    let other_lines: Vec<&str> = to_other.lines().filter(|l| l.ends_with("/moved.bin")).collect();
    assert!(!other_lines.is_empty(), "{to_other}");
    for line in &other_lines {
        assert!(line.contains(token) && line.contains(cookie) && line.contains(basic), "{line}");
    }
}

#[test]
fn a_mirror_redirect_to_an_address_shoal_never_contacts_is_refused() {
    let data = random_bytes(MIB + 3, 77);
    let root = site("f.bin", &data);
    let target_server = Nginx::start(NginxConfig {
        root: root.path().into(),
        ..Default::default()
    });
    // 0.0.0.0 (unspecified) reaches this machine's own servers on Linux; the policy never
    // contacts it, whoever names it, and a mirror's redirect is a third party naming it.
    let mirror = Nginx::start(NginxConfig {
        root: root.path().into(),
        server: format!("location = /go {{ return 302 http://0.0.0.0:{}/f.bin; }}", target_server.port()),
        ..Default::default()
    });
    let out = tempfile::tempdir().unwrap();
    let (status, _, stderr) = get(&[&format!("{}/go", mirror.url())], &out.path().join("f.bin"), &[]);
    assert!(!status.success(), "{stderr}");
    let reached = target_server.stop();
    assert!(reached.is_empty(), "the address named by the redirect was contacted: {reached}");
    assert!(stderr.contains("never contacts"), "the refusal is named: {stderr}");
    assert_empty(out.path());
}

#[test]
fn http_proxy_from_the_environment_carries_mirror_requests_unless_no_proxy_says_otherwise() {
    let data = random_bytes(MIB + 99, 74);
    let root = site("p.bin", &data);
    let mirror = Nginx::start(NginxConfig {
        root: root.path().into(),
        ..Default::default()
    });
    // nginx as a forward proxy for plain http: it takes absolute-URI requests and passes them on.
    let empty = tempfile::tempdir().unwrap();
    let proxy = Nginx::start(NginxConfig {
        root: empty.path().into(),
        server: "location / { proxy_pass http://$http_host; proxy_set_header Host $http_host; proxy_buffering off; }".into(),
        ..Default::default()
    });
    let url = format!("{}/p.bin", mirror.url());
    let proxy_url = proxy.url();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("p.bin");
    let env = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("http_proxy", proxy_url.as_str()),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
    ];
    let (status, _, stderr) = get(&[&url], &target, &env);
    assert!(status.success(), "{stderr}");
    assert_eq!(std::fs::read(&target).unwrap(), data);

    let bypass = out.path().join("direct.bin");
    let env = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("http_proxy", proxy_url.as_str()),
        ("NO_PROXY", "127.0.0.1"),
        ("no_proxy", "127.0.0.1"),
    ];
    let (status, _, stderr) = get(&[&url], &bypass, &env);
    assert!(status.success(), "{stderr}");
    assert_eq!(std::fs::read(&bypass).unwrap(), data);

    let proxied = proxy.stop();
    let through = proxied.lines().filter(|l| l.ends_with("/p.bin")).count();
    let direct = mirror.stop();
    let total = direct.lines().filter(|l| l.ends_with("/p.bin")).count();
    assert!(
        through >= 2,
        "the first download went through the proxy (a check and a range at least): {proxied}"
    );
    assert!(total > through, "the second download went straight to the mirror: {direct}");
}

#[test]
fn a_node_started_with_ca_cert_downloads_https_mirrors_handed_to_it() {
    let data = random_bytes(MIB + 5, 75);
    let root = site("n.bin", &data);
    let pki = Pki::new("shoal");
    let nginx = Nginx::start(NginxConfig {
        root: root.path().into(),
        tls: Some(pki.server.clone()),
        ..Default::default()
    });
    let url = format!("{}/n.bin", nginx.localhost_url());
    let home = tempfile::tempdir().unwrap();
    let (share, state) = (home.path().join("share"), home.path().join("state"));
    std::fs::create_dir_all(&share).unwrap();
    let ca = path(&pki.ca_cert);
    let node = support::Serve::start(&share, &state, &["--secret", "x", "--ca-cert", &ca]);
    let target = share.join("n.bin");
    let (status, _, stderr) = Proc::shoal_env(
        &["get", &url, "-o", &path(&target), "--state", &path(&state)],
        &[("SHOAL_SECRET", "x")],
    )
    .finish(RUN_LIMIT);
    assert!(status.success(), "{stderr}");
    assert_eq!(std::fs::read(&target).unwrap(), data);
    // --ca-cert given to `get` cannot be handed to the node: a clear refusal.
    let (status, _, stderr) = Proc::shoal_env(
        &[
            "get",
            &url,
            "-o",
            &path(&share.join("m.bin")),
            "--state",
            &path(&state),
            "--ca-cert",
            &ca,
        ],
        &[("SHOAL_SECRET", "x")],
    )
    .finish(RUN_LIMIT);
    assert!(!status.success() && stderr.contains("cannot be handed"), "{stderr}");
    drop(node);
}

#[test]
fn a_mirror_that_refuses_head_is_sized_by_a_one_byte_range() {
    let data = random_bytes(2 * MIB + 77, 76);
    let root = site("s.bin", &data);
    // Like a presigned URL that is valid for GET only.
    let nginx = Nginx::start(NginxConfig {
        root: root.path().into(),
        server: "if ($request_method = HEAD) { return 403; }".into(),
        ..Default::default()
    });
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("s.bin");
    let (status, _, stderr) = get(&[&format!("{}/s.bin", nginx.url())], &target, &[]);
    assert!(status.success(), "{stderr}");
    assert_eq!(std::fs::read(&target).unwrap(), data);
    let log = nginx.stop();
    assert!(log.contains(" 206 GET \"bytes=0-0\" "), "{log}");
}
