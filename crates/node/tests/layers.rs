//! The dependency rule of ARCHITECTURE.md, checked on the source: each layer of the node
//! imports only the layers below it (`proto` < `net` < `engine` < `discovery` < `options` <
//! `service` < `http` < the wiring in `node` and `tasks`). The engine imports neither the
//! service nor discovery; nothing imports upward.

use std::path::Path;

/// The layers, lowest first, with the files or directories that make each.
const LAYERS: &[(&str, &[&str])] = &[
    ("proto", &["proto"]),
    ("net", &["net"]),
    ("engine", &["engine"]),
    ("discovery", &["discovery"]),
    ("options", &["options.rs", "state.rs"]),
    ("service", &["service"]),
    ("http", &["http"]),
    ("node", &["node.rs", "tasks.rs", "lib.rs"]),
];

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|(name, _)| *name == layer)
}

fn sources(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read a source directory") {
            sources(&entry.expect("a directory entry").path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Every `crate::<module>` a file names, with the line it is on.
fn imports(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let module: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            found.push((module, number + 1));
        }
    }
    found
}

#[test]
fn no_layer_imports_upward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut checked = 0;
    for (layer, parts) in LAYERS {
        let own = rank(layer).expect("a listed layer");
        let mut files = Vec::new();
        for part in *parts {
            sources(&src.join(part), &mut files);
        }
        assert!(!files.is_empty(), "the layer {layer} has no sources");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            for (module, line) in imports(&text) {
                checked += 1;
                let Some(target) = rank(&module) else { continue };
                if target > own {
                    violations.push(format!("{}:{line}: {layer} imports {module}", file.display()));
                }
            }
        }
    }
    assert!(checked > 50, "the check saw the imports ({checked})");
    assert!(violations.is_empty(), "imports against the layering:\n{}", violations.join("\n"));
}

#[test]
fn the_check_sees_an_upward_import() {
    let found = imports("use crate::service::Api;\nlet x = crate::proto::limits::MAX_SIZE;");
    assert_eq!(found, vec![("service".to_string(), 1), ("proto".to_string(), 2)]);
    assert!(rank("service") > rank("engine"));
}

/// What the binary crate may name of the node: the service layer's public API (the facade, the
/// fetcher, the session, the remote node), the node's start and stop and its state directory,
/// and its options. Never the layers below the service.
const BINARY_MAY_USE: &[&str] = &["service", "node", "options", "state", "Node", "NodeOptions", "Api", "ApiError"];

/// Every `shoal_node::<item>` a file names (in paths and in `use shoal_node::{...}` lists),
/// with the line it is on.
fn node_items(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("shoal_node::") {
            rest = &rest[at + "shoal_node::".len()..];
            if let Some(list) = rest.strip_prefix('{') {
                let inner = list.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    let item: String = item.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if !item.is_empty() {
                        found.push((item, number + 1));
                    }
                }
                continue;
            }
            let item: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            found.push((item, number + 1));
        }
    }
    found
}

#[test]
fn the_binary_reaches_the_node_only_through_the_service_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shoal/src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(!files.is_empty(), "the binary's sources are at {}", src.display());
    let (mut checked, mut violations) = (0, Vec::new());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for (item, line) in node_items(&text) {
            checked += 1;
            if !BINARY_MAY_USE.contains(&item.as_str()) {
                violations.push(format!("{}:{line}: shoal_node::{item}", file.display()));
            }
        }
    }
    assert!(checked > 20, "the check saw the binary's uses of the node ({checked})");
    assert!(
        violations.is_empty(),
        "the binary reaches below the service layer:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_binary_check_sees_paths_and_lists() {
    let found = node_items("use shoal_node::{Node, engine::Job};\nlet x = shoal_node::net::Client::new();");
    let items: Vec<&str> = found.iter().map(|(item, _)| item.as_str()).collect();
    assert_eq!(items, ["Node", "engine", "net"]);
}
