//! The scriptable subcommands that talk to a running node: `search`, `ls`, `peers`,
//! `downloads`, `status`; and `config`, `completions`, `man`. Tables for people, `--json` for
//! scripts.

use clap::CommandFactory;

use crate::cli::{Cli, ConfigArgs, RemoteArgs, SearchArgs};
use crate::config::{Layers, Setting};
use crate::output::{printable, size, table};
use crate::remote::Remote;

fn remote(args: &RemoteArgs) -> anyhow::Result<Remote> {
    Remote::find(args.node.as_deref(), args.state.as_deref(), &args.net, &args.secret)
}

/// Rows of matches: name, size, holders, id.
pub fn matches_table(found: &[shoal_node::service::Match], with_holders: bool) -> String {
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|m| {
            let mut row = vec![m.name.clone(), size(m.size)];
            if with_holders {
                row.push(match m.partial.len() {
                    0 => m.urls.len().to_string(),
                    k => format!("{} ({k} partial)", m.urls.len()),
                });
            } else {
                // This node's own downloads in progress are listed with the share, marked.
                let pieces = m.size.div_ceil(1 << 20).max(1);
                row.push(match m.partial.first() {
                    Some((_, held)) => format!("partial {held}/{pieces}"),
                    None => "whole".into(),
                });
            }
            row.push(m.id.to_string());
            row
        })
        .collect();
    if with_holders {
        table(&["NAME", "SIZE", "NODES", "CONTENT ID"], &rows)
    } else {
        table(&["NAME", "SIZE", "HELD", "CONTENT ID"], &rows)
    }
}

pub async fn search(args: SearchArgs) -> anyhow::Result<()> {
    let node = remote(&args.remote)?;
    let found = node.search(&args.pattern).await?;
    if args.remote.json {
        println!("{}", serde_json::to_string_pretty(&matches_json(&found))?);
    } else if found.is_empty() {
        println!("nothing matches {:?}", args.pattern);
    } else {
        print!("{}", matches_table(&found, true));
    }
    Ok(())
}

pub async fn ls(args: RemoteArgs) -> anyhow::Result<()> {
    let node = remote(&args)?;
    let files = node.files().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&matches_json(&files))?);
    } else if files.is_empty() {
        println!("the share is empty");
    } else {
        print!("{}", matches_table(&files, false));
    }
    Ok(())
}

pub fn peers_table(rows: &serde_json::Value) -> String {
    let rows: Vec<Vec<String>> = rows
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|p| {
                    let state = if p["backing_off"].as_bool() == Some(true) {
                        "backing off"
                    } else {
                        "ok"
                    };
                    let mut via = p["path"].as_str().unwrap_or_default().to_string();
                    if p["local"].as_bool() == Some(true) {
                        via = if via.is_empty() { "local".into() } else { format!("local, {via}") };
                    }
                    vec![
                        p["url"].as_str().unwrap_or_default().to_string(),
                        p["kind"].as_str().unwrap_or_default().to_string(),
                        state.to_string(),
                        p["failures"].to_string(),
                        via,
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["URL", "KIND", "STATE", "FAILURES", "VIA"], &rows)
}

pub async fn peers(args: RemoteArgs) -> anyhow::Result<()> {
    let node = remote(&args)?;
    let rows = node.peer_table().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.as_array().is_none_or(|r| r.is_empty()) {
        println!("no peers known");
    } else {
        print!("{}", peers_table(&rows));
    }
    Ok(())
}

pub fn downloads_table(rows: &serde_json::Value) -> String {
    let rows: Vec<Vec<String>> = rows
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|d| {
                    let total = d["size"].as_u64().unwrap_or(0);
                    let done = d["done"].as_u64().unwrap_or(0);
                    let percent = if total == 0 { 0.0 } else { done as f64 * 100.0 / total as f64 };
                    let state = d["status"]["state"].as_str().unwrap_or("?").to_string();
                    let detail = d["status"]["detail"].as_str().map(|s| format!(": {s}")).unwrap_or_default();
                    // Sources that hold part of the file (other downloaders of a swarm), and
                    // what this node sent of it to them.
                    let sources = d["sources"].as_array().map(Vec::as_slice).unwrap_or_default();
                    let partial = sources.iter().filter(|s| s["pieces"].is_u64()).count();
                    let live = if partial > 0 {
                        format!("{} ({partial} partial)", d["live_sources"])
                    } else {
                        d["live_sources"].to_string()
                    };
                    let uploaded: u64 = d["uploads"]
                        .as_array()
                        .map(|u| u.iter().filter_map(|u| u["bytes"].as_u64()).sum())
                        .unwrap_or(0);
                    vec![
                        d["name"].as_str().unwrap_or_default().to_string(),
                        format!("{percent:5.1}%"),
                        format!("{} / {}", size(done), size(total)),
                        live,
                        size(uploaded),
                        format!("{state}{detail}"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["NAME", "DONE", "BYTES", "SOURCES", "UPLOADED", "STATE"], &rows)
}

pub async fn downloads(args: RemoteArgs) -> anyhow::Result<()> {
    let node = remote(&args)?;
    let rows = node.downloads().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.as_array().is_none_or(|r| r.is_empty()) {
        println!("no downloads");
    } else {
        print!("{}", downloads_table(&rows));
    }
    Ok(())
}

pub async fn status(args: RemoteArgs) -> anyhow::Result<()> {
    let node = remote(&args)?;
    let stats = match node.stats_checked().await? {
        Some(stats) => stats,
        None => {
            // A node that answers, but not with its figures (an older or a foreign node): say
            // what is known, as the report commands do with what they can read.
            eprintln!(
                "the node at {} answered shoal.stats with something else; its figures are unknown",
                printable(&node.url)
            );
            if args.json {
                println!("{}", serde_json::json!({"url": node.url}));
            } else {
                println!("node      {}", printable(&node.url));
            }
            return Ok(());
        }
    };
    let dht = node.dht().await.unwrap_or(None);
    if args.json {
        let mut json = crate::remote::to_json(&stats.to_value());
        if let (Some(dht), Some(fields)) = (&dht, json.as_object_mut()) {
            fields.insert("dht".into(), serde_json::to_value(dht)?);
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("node      {}", stats.url);
        println!("files     {}", stats.files);
        println!("peers     {}", stats.peers);
        println!("messages  {} sent", stats.messages_sent);
        if let Some(dht) = &dht {
            println!("dht       {}", dht_summary(dht));
        }
    }
    Ok(())
}

/// One line about the node on the DHT.
fn dht_summary(dht: &shoal_node::service::remote::DhtState) -> String {
    if !dht.running {
        return "off".to_string();
    }
    format!(
        "{} nodes, {}, {} ids announced",
        dht.nodes,
        match (dht.reachable, dht.serving) {
            (true, _) => "reachable",
            (false, true) => "serving, not known to be reachable yet",
            (false, false) => "not reachable (client mode)",
        },
        dht.announced
    )
}

/// `shoal dht`: the node on the Mainline DHT.
pub async fn dht(args: RemoteArgs) -> anyhow::Result<()> {
    let node = remote(&args)?;
    let Some(dht) = node.dht().await? else {
        anyhow::bail!(
            "the node at {} does not say how it is on the DHT (an older or a foreign node)",
            printable(&node.url)
        );
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&dht)?);
        return Ok(());
    }
    println!("dht        {}", dht_summary(&dht));
    if !dht.running {
        return Ok(());
    }
    println!("size       about {} nodes in the DHT", dht.size_estimate);
    if dht.published {
        println!("by id      this node's addresses are on the DHT: its node id alone leads to it");
    }
    if let Some(local) = &dht.local {
        let public = dht.public.as_ref().map(|p| format!(" (others see {p})")).unwrap_or_default();
        println!("address    udp {local}{public}");
    }
    if dht.lookups.is_empty() {
        println!("lookups    none yet");
        return Ok(());
    }
    println!("lookups    newest first");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows: Vec<Vec<String>> = dht
        .lookups
        .iter()
        .map(|l| {
            vec![
                format!("{} s ago", now.saturating_sub(l.at)),
                format!("{} ms", l.ms),
                l.found.to_string(),
                l.id.clone(),
            ]
        })
        .collect();
    print!("{}", crate::output::table(&["WHEN", "TOOK", "FOUND", "CONTENT ID"], &rows));
    Ok(())
}

/// Every setting in force, for `shoal config`.
pub fn settings(layers: &Layers, node: &crate::cli::NodeArgs) -> Vec<Setting> {
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    vec![
        layers.state_setting(),
        layers.get("dir", path(&node.dir)),
        layers.get("listen", node.listen.clone()),
        layers.get("url", node.url.clone()),
        layers.list("peers", &node.peers).1,
        layers.get("peers_file", path(&node.peers_file)),
        {
            let mut secret = layers.get("secret", None);
            secret.value = secret.value.map(|_| "(set, hidden)".to_string());
            secret
        },
        layers.get("max_upload_rate", None),
        layers.get("max_download_rate", None),
        layers.get("node", None),
    ]
}

pub fn config(args: ConfigArgs) -> anyhow::Result<()> {
    let layers = Layers::load(args.node.state.as_deref())?;
    let settings = settings(&layers, &args.node);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&settings)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = settings
        .iter()
        .map(|s| {
            let origin = match &s.from {
                Some(from) => format!("{} ({from})", s.origin),
                None => s.origin.to_string(),
            };
            vec![s.key.to_string(), s.value.clone().unwrap_or_else(|| "(none)".into()), origin]
        })
        .collect();
    print!("{}", table(&["KEY", "VALUE", "FROM"], &rows));
    Ok(())
}

pub fn completions(shell: clap_complete::Shell) {
    clap_complete::generate(shell, &mut Cli::command(), "shoal", &mut std::io::stdout());
}

pub fn man() -> anyhow::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
    Ok(())
}

/// Matches as `--json` prints them.
fn matches_json(found: &[shoal_node::service::Match]) -> serde_json::Value {
    found
        .iter()
        .map(|m| {
            let mut row = serde_json::json!({"name": m.name, "size": m.size, "id": m.id.to_string(), "urls": m.urls});
            if !m.partial.is_empty() {
                let partial: Vec<_> = m
                    .partial
                    .iter()
                    .map(|(url, held)| serde_json::json!({"url": url, "held": held}))
                    .collect();
                row["partial"] = serde_json::Value::Array(partial);
            }
            row
        })
        .collect()
}

/// `shoal id`: the state directory's node id and ticket, and the id its CLI dials with.
pub async fn id(args: crate::cli::IdArgs) -> anyhow::Result<()> {
    let layers = crate::config::Layers::load(args.state.as_deref())?;
    shoal_node::state::prepare_state_dir(&layers.state)
        .map_err(|e| anyhow::anyhow!("creating the state directory {}: {e}", layers.state.display()))?;
    let key = shoal_node::state::node_key(&layers.state)?;
    let client = shoal_node::state::client_key(&layers.state)?;
    let id = key.public().to_string();
    // A node running on this state directory knows its relay and addresses.
    let running = match Remote::find(
        None,
        Some(&layers.state),
        &crate::cli::NetArgs {
            no_iroh: true,
            ..Default::default()
        },
        &crate::cli::SecretArgs::default(),
    ) {
        Ok(node) => node.stats().await.ok(),
        Err(_) => None,
    };
    let ticket = running
        .as_ref()
        .and_then(|stats| stats.iroh.as_ref())
        .filter(|iroh| iroh.id == id)
        .map(|iroh| iroh.ticket.clone())
        .unwrap_or_else(|| {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(key.public().as_bytes());
            shoal_node::options::bare_ticket(bytes)
        });
    println!("node id {id}");
    println!("ticket {ticket}");
    println!("owner id {}", client.public());
    if running.is_none() {
        eprintln!(
            "no node runs on {}: the ticket holds the id alone (start `shoal serve` for one with addresses)",
            layers.state.display()
        );
    }
    Ok(())
}
