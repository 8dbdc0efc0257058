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
