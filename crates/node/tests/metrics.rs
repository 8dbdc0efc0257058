//! `/metrics` over real HTTP: Prometheus's own checker (`promtool check metrics`, Debian's
//! prometheus package) accepts it, and its figures follow what the node did.

#[path = "it/util.rs"]
mod util;

use std::io::Write;
use std::process::{Command, Stdio};

use util::TestNode;

async fn scrape(node: &TestNode) -> String {
    let client = reqwest::Client::new();
    let url = format!("{}/metrics", node.url);
    // The owner's only: refused without the secret.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let response = client.get(&url).bearer_auth(util::SECRET).send().await.expect("the node answers");
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of the series whose line starts with `series ` (exactly that name and labels).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_what_happened() {
    let holder = TestNode::start().await;
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    holder.add("m.bin", &data).await;
    let node = TestNode::start().await;
    node.knows(&[&holder]).await;
    assert_eq!(
        node.call(
            "fetch",
            vec![
                shoal_xmlrpc::Value::String("m.bin".into()),
                shoal_xmlrpc::Value::String(util::SECRET.into())
            ]
        )
        .await,
        Ok(shoal_xmlrpc::Value::Integer(0))
    );

    let mine = scrape(&node).await;
    let (ok, report) = promtool(&mine);
    assert!(ok, "promtool refused the metrics: {report}\n{mine}");
    assert_eq!(value(&mine, "shoal_files_indexed"), 1.0);
    assert_eq!(
        value(&mine, "shoal_hashing_backlog_bytes"),
        0.0,
        "nothing waits once the share is hashed"
    );
    assert_eq!(value(&mine, "shoal_downloads{state=\"done\"}"), 1.0);
    assert!(value(&mine, "shoal_searches_sent_total") >= 1.0);
    assert_eq!(value(&mine, "shoal_rpc_calls_total{method=\"fetch\"}"), 1.0);
    assert!(value(&mine, "shoal_request_duration_seconds_count{route=\"rpc_or_page\"}") >= 2.0);
    // The engine's counters: three verified 1 MiB pieces from a peer, none rejected.
    assert_eq!(value(&mine, "shoal_pieces_verified_total"), 3.0);
    assert_eq!(value(&mine, "shoal_pieces_rejected_total"), 0.0);
    assert_eq!(value(&mine, "shoal_bytes_downloaded_total{kind=\"peer\"}"), data.len() as f64);

    let theirs = scrape(&holder).await;
    let (ok, report) = promtool(&theirs);
    assert!(ok, "promtool refused the metrics: {report}");
    assert!(value(&theirs, "shoal_bytes_uploaded_total") >= data.len() as f64, "{theirs}");
}
