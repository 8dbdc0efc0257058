//! The kit's servers work as the other tests assume: curl (a client someone else wrote) fetches
//! over http at once, and over https only when it trusts the kit's CA.

use std::process::Command;

use shoal_testkit::{Nginx, NginxConfig, Pki};

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn nginx_serves_http_on_its_inherited_port_and_logs_each_response() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), "alpha").unwrap();
    let nginx = Nginx::start(NginxConfig {
        root: root.path().into(),
        ..Default::default()
    });
    let (ok, body) = curl(&[&format!("{}/a.txt", nginx.url())]);
    assert!(ok && body == "alpha", "{body}");
    drop(curl(&["-r", "1-2", &format!("{}/a.txt", nginx.url())]));
    let log = nginx.stop();
    assert!(log.contains(" 206 GET \"bytes=1-2\" "), "{log}");
}

#[test]
fn https_is_trusted_only_with_the_kits_ca() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), "alpha").unwrap();
    let pki = Pki::new("kit");
    let nginx = Nginx::start(NginxConfig {
        root: root.path().into(),
        tls: Some(pki.server.clone()),
        ..Default::default()
    });
    let url = format!("{}/a.txt", nginx.url());
    let (ok, body) = curl(&["--cacert", pki.ca_cert.to_str().unwrap(), &url]);
    assert!(ok && body == "alpha", "{body}");
    let (ok, body) = curl(&["--cacert", Pki::new("other").ca_cert.to_str().unwrap(), &url]);
    assert!(!ok, "a certificate from another CA was accepted: {body}");
}
