//! The fleet packaging stays true to the daemon: the Kubernetes DaemonSet grants exactly
//! the capabilities the systemd unit grants and runs the example configuration, and the
//! Grafana dashboard queries only metrics tierd exports (read from the daemon's own
//! registry, so a renamed metric breaks this test, not the dashboard in production).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `CapabilityBoundingSet=` of the systemd unit, as Kubernetes names them (no `CAP_`).
fn unit_capabilities() -> BTreeSet<String> {
    let unit = read("packaging/tierd.service");
    let caps: BTreeSet<String> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("CapabilityBoundingSet="))
        .flat_map(str::split_whitespace)
        .map(|c| c.strip_prefix("CAP_").unwrap_or_else(|| panic!("{c}: not CAP_*")).to_string())
        .collect();
    assert!(!caps.is_empty(), "the unit names its capabilities");
    caps
}

fn manifest() -> Vec<Yaml> {
    let text = read("packaging/kubernetes/tierd-daemonset.yaml");
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("the manifest is not YAML: {e}"))
}

fn kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let mut found = docs.iter().filter(|d| d["kind"].as_str() == Some(kind));
    let doc = found.next().unwrap_or_else(|| panic!("no {kind} in the manifest"));
    assert!(found.next().is_none(), "one {kind}");
    doc
}

fn strings(list: &Yaml) -> Vec<&str> {
    list.as_vec()
        .map(|v| v.iter().map(|s| s.as_str().expect("a string")).collect())
        .unwrap_or_default()
}

/// The daemon's container: the DaemonSet's only one.
fn container(docs: &[Yaml]) -> &Yaml {
    let spec = &kind(docs, "DaemonSet")["spec"]["template"]["spec"];
    let containers = spec["containers"].as_vec().expect("containers");
    assert_eq!(containers.len(), 1);
    &containers[0]
}

#[test]
fn the_daemonset_grants_what_the_unit_grants_and_nothing_more() {
    let docs = manifest();
    let c = container(&docs);
    let sc = &c["securityContext"];
    let added: BTreeSet<String> =
        strings(&sc["capabilities"]["add"]).into_iter().map(String::from).collect();
    assert_eq!(added, unit_capabilities(), "the capabilities the unit's bounding set names");
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "every other one dropped");
    assert_eq!(sc["privileged"].as_bool(), Some(false), "not privileged");
    // NoNewPrivileges=yes; ProtectSystem=strict.
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    let pod = &kind(&docs, "DaemonSet")["spec"]["template"]["spec"];
    // Other processes' PIDs for move_pages(2) and /proc/PID/pagemap; not the host's network
    // or IPC, which the unit does not share either.
    assert_eq!(pod["hostPID"].as_bool(), Some(true));
    for shared in ["hostNetwork", "hostIPC"] {
        assert_ne!(pod[shared].as_bool(), Some(true), "{shared}");
    }
    // Every host path is one the unit leaves writable or owns: /sys, /proc and the state.
    let host: BTreeSet<&str> = pod["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    assert_eq!(host, BTreeSet::from(["/proc", "/sys", "/var/lib/tierd"]));
}

#[test]
fn the_daemonset_runs_the_example_config_and_exposes_its_metrics_port() {
    let docs = manifest();
    let c = container(&docs);
    let command = strings(&c["command"]);
    let config_at = command.iter().position(|a| *a == "--config").expect("--config") + 1;
    let config_path = Path::new(command[config_at]);
    assert_eq!(&command[1..2], ["run"]);
    // The ConfigMap is mounted where --config points.
    let mounts = c["volumeMounts"].as_vec().expect("volumeMounts");
    let config_mount = mounts
        .iter()
        .find(|m| m["name"].as_str() == Some("config"))
        .and_then(|m| m["mountPath"].as_str())
        .expect("the config volume is mounted");
    assert_eq!(config_path.parent(), Some(Path::new(config_mount)));
    let file = config_path.file_name().and_then(|f| f.to_str()).unwrap();
    let text = kind(&docs, "ConfigMap")["data"][file].as_str().expect("the config file");
    // tierd.example.toml, but for the endpoint's address (the pod's, not loopback).
    let example = read("tierd.example.toml");
    let differ: Vec<(&str, &str)> =
        example.lines().zip(text.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(
        differ,
        [(r#"metrics_addr = "127.0.0.1:9877""#, r#"metrics_addr = "0.0.0.0:9877""#)]
    );
    assert_eq!(example.lines().count(), text.lines().count());
    let config = tierd::config::Config::parse(text).expect("the daemon accepts it");
    let port: u16 = config.daemon.metrics_addr.rsplit(':').next().unwrap().parse().unwrap();
    let ports = c["ports"].as_vec().expect("ports");
    assert!(
        ports.iter().any(|p| p["containerPort"].as_i64() == Some(i64::from(port))
            && p["name"].as_str() == Some("metrics")),
        "the metrics port {port} is declared"
    );
    let annotations = &kind(&docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some(port.to_string().as_str()));
}

/// Every series name a Prometheus scrape of tierd can hold, from the daemon's registry.
fn exported_series() -> BTreeSet<String> {
    let names: BTreeSet<String> = tierd::metrics::Metrics::new().series().iter().cloned().collect();
    assert!(names.len() > 10, "the registry names its series: {names:?}");
    names
}

/// Every PromQL string of the dashboard: panel targets (`expr`) and variable queries.
fn queries(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(q)) => {
                        out.push((k.clone(), q.clone()));
                    }
                    _ => queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_queries_only_metrics_tierd_exports() {
    let text = read("packaging/grafana/tierd-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let exported = exported_series();
    let mut found = Vec::new();
    queries(&dashboard, &mut found);
    let name = regex::Regex::new(r"\btierd_[A-Za-z0-9_]+").unwrap();
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    let mut exprs = 0;
    for (key, q) in &found {
        let names: Vec<&str> = name.find_iter(q).map(|m| m.as_str()).collect();
        if key == "expr" {
            exprs += 1;
            assert!(!names.is_empty(), "a panel query names no tierd metric: {q}");
        }
        for n in names {
            if exported.contains(n) {
                used.insert(n.to_string());
            } else {
                unknown.push(format!("{n} (in {q})"));
            }
        }
    }
    assert!(unknown.is_empty(), "not exported by tierd: {unknown:#?}\nexported: {exported:?}");
    assert!(exprs >= 10 && used.len() >= 10, "{exprs} panel queries over {used:?}");
}
