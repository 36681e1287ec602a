//! Every metric family tierd exports is set somewhere in the daemon's code: a family that is
//! registered and never updated would show a dashboard a flat zero that means nothing (the
//! fate of the removed `tierd_tracker_coverage_ppm`).
//!
//! The check reads the crate's source. For each public field of `Metrics` it looks for an
//! update (`.inc`, `.inc_by`, `.set`, `.observe`, through `get_or_create` or not) outside
//! tests and outside `Metrics::new`. An update inside a `Metrics` method counts when that
//! method is called from another file of the crate, outside its tests.

use std::path::Path;

fn source(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file)).unwrap()
}

/// The code that ships: the text before the file's `#[cfg(test)] mod`, without `//`
/// comments (a commented-out update sets nothing).
fn shipped(text: &str) -> String {
    let code = text.find("#[cfg(test)]\nmod ").map_or(text, |at| &text[..at]);
    code.lines().map(|l| l.find("//").map_or(l, |c| &l[..c])).collect::<Vec<_>>().join("\n")
}

/// The public fields of `pub struct Metrics`.
fn fields(metrics_rs: &str) -> Vec<String> {
    let start = metrics_rs.find("pub struct Metrics {").expect("the struct");
    let body = &metrics_rs[start..start + metrics_rs[start..].find("\n}").unwrap()];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_string()))
        .collect()
}

/// The `.rs` files under `dir`, subdirectories included, as paths relative to it.
fn rust_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.is_dir() {
            out.extend(rust_files(&path).into_iter().map(|f| format!("{name}/{f}")));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(name);
        }
    }
    out
}

const UPDATES: [&str; 4] = [".inc(", ".inc_by(", ".set(", ".observe("];

/// Where `text` names `.field` (not a longer name such as `.demoted_pages_x`).
fn references(text: &str, field: &str) -> Vec<usize> {
    let needle = format!(".{field}");
    text.match_indices(&needle)
        .map(|(i, _)| i)
        .filter(|i| {
            !text[i + needle.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        })
        .collect()
}

/// Where `text` updates `.field`: the field, then within the same statement an update call.
fn updates(text: &str, field: &str) -> Vec<usize> {
    references(text, field)
        .into_iter()
        .filter(|&i| {
            let after = &text[i..];
            let statement = &after[..after.find(';').unwrap_or(after.len())];
            UPDATES.iter().any(|u| statement.contains(u))
        })
        .collect()
}

/// The name and body of the `fn` that holds byte `at` of `text` (the body up to the next
/// `fn` at any depth: enough for the short methods of `Metrics`).
fn enclosing_fn(text: &str, at: usize) -> (String, &str) {
    let start = text[..at].rfind("fn ").expect("inside a function") + 3;
    let name = text[start..].split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap();
    let end = text[at..].find("fn ").map_or(text.len(), |e| at + e);
    (name.to_string(), &text[start..end])
}

#[test]
fn every_exported_metric_is_set_by_the_daemon() {
    let metrics_rs = source("metrics.rs");
    let fields = fields(&metrics_rs);
    assert!(fields.len() >= 10, "fields of Metrics: {fields:?}");
    let others: Vec<(String, String)> =
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
            .into_iter()
            .filter(|f| f != "metrics.rs")
            .map(|f| {
                let text = source(&f);
                (f, shipped(&text))
            })
            .collect();
    let called_elsewhere =
        |method: &str| others.iter().any(|(_, t)| t.contains(&format!(".{method}(")));
    let mut unset = Vec::new();
    for field in &fields {
        let elsewhere = others.iter().any(|(_, t)| !updates(t, field).is_empty());
        let shipped_metrics = &shipped(&metrics_rs);
        // A method of `Metrics` that names the field and updates something (the field, or a
        // binding to it: `record_move` picks its families by the move's kind).
        let through_method = references(shipped_metrics, field)
            .into_iter()
            .map(|at| enclosing_fn(shipped_metrics, at))
            .any(|(method, body)| {
                method != "new"
                    && UPDATES.iter().any(|u| body.contains(u))
                    && called_elsewhere(&method)
            });
        if !elsewhere && !through_method {
            unset.push(field.clone());
        }
    }
    assert!(unset.is_empty(), "exported but never set by the daemon: {unset:?}");
}
