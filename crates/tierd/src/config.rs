//! The daemon's configuration (`/etc/tierd/tierd.toml`): strict TOML, every field documented
//! with its default, unknown fields rejected with their line. `tierd.example.toml` at the
//! repository root lists every field at its default; a test parses it and checks that it
//! equals [`Config::default`], so the example can't drift from the code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tierd_core::NodeId;

/// The default config file.
pub const DEFAULT_CONFIG: &str = "/etc/tierd/tierd.toml";

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where migration paths come from.
    pub paths: PathsConfig,
    /// How much of each node to keep free.
    pub headroom: HeadroomConfig,
    /// Which processes' pages tierd moves.
    pub scope: ScopeConfig,
    /// How page heat is measured.
    pub tracker: TrackerConfig,
    /// Bounds on page moves.
    pub mover: MoverConfig,
    /// Bringing hot pages back up.
    pub promotion: PromotionConfig,
    /// The daemon itself.
    pub daemon: DaemonConfig,
}

/// `[paths]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// `"auto"`: derive the kernel's default at start when the state file has no table yet;
    /// `"state"`: use the state file as it is (all terminal when absent); or the path of a
    /// graph file (`tierd path apply` format) applied at every start and reload. Default
    /// `"auto"`.
    pub source: PathsSource,
    /// The state file that keeps the table. Default `/var/lib/tierd/paths.toml`.
    pub state: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig { source: PathsSource::Auto, state: PathBuf::from(crate::state::DEFAULT_STATE) }
    }
}

/// `[paths] source`, written in the config as `"auto"`, `"state"` or a file's path.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub enum PathsSource {
    /// The kernel's default when the state file has no table yet.
    Auto,
    /// The state file as it is.
    State,
    /// A graph file applied at every start and reload.
    File(PathBuf),
}

impl From<String> for PathsSource {
    fn from(s: String) -> PathsSource {
        match s.as_str() {
            "auto" => PathsSource::Auto,
            "state" => PathsSource::State,
            _ => PathsSource::File(PathBuf::from(s)),
        }
    }
}

impl From<PathsSource> for String {
    fn from(s: PathsSource) -> String {
        match s {
            PathsSource::Auto => "auto".into(),
            PathsSource::State => "state".into(),
            PathsSource::File(p) => p.display().to_string(),
        }
    }
}

/// `[headroom]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadroomConfig {
    /// Percent of every node with a migration target to keep free. Default 5.
    pub default_pct: f64,
    /// Per-node overrides, `0 = 10`.
    #[serde(with = "tierd_core::node::keys")]
    pub node: BTreeMap<NodeId, f64>,
}

impl Default for HeadroomConfig {
    fn default() -> Self {
        HeadroomConfig { default_pct: 5.0, node: BTreeMap::new() }
    }
}

/// `[scope]`: at most one of `cgroup`, `pids`, `comm`; none = every user process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScopeConfig {
    /// A cgroup v2 path as `/proc/PID/cgroup` prints it (`/system.slice/app.service`).
    pub cgroup: Option<PathBuf>,
    /// A list of pids.
    pub pids: Option<Vec<u32>>,
    /// A regular expression over the process name (`comm`).
    pub comm: Option<String>,
}

/// `[tracker]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// `"auto"` (DAMON, else idle page tracking, else soft-dirty), `"damon"`, `"idle"` or
    /// `"softdirty"`. Default `"auto"`.
    pub kind: TrackerChoice,
    /// DAMON sampling interval, microseconds. Default 5000.
    pub sample_us: u64,
    /// DAMON aggregation window, milliseconds: the window page heat is counted over.
    /// Default 100.
    pub aggregate_ms: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig { kind: TrackerChoice::Auto, sample_us: 5000, aggregate_ms: 100 }
    }
}

/// `[tracker] kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerChoice {
    /// DAMON, else idle page tracking, else soft-dirty.
    Auto,
    /// DAMON.
    Damon,
    /// Idle page tracking.
    Idle,
    /// Soft-dirty bits.
    Softdirty,
}

impl From<TrackerChoice> for tierd_linux::tracker::TrackerKind {
    fn from(c: TrackerChoice) -> Self {
        use tierd_linux::tracker::TrackerKind;
        match c {
            TrackerChoice::Auto => TrackerKind::Auto,
            TrackerChoice::Damon => TrackerKind::Damon,
            TrackerChoice::Idle => TrackerKind::Idle,
            TrackerChoice::Softdirty => TrackerKind::SoftDirty,
        }
    }
}

/// `[mover]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoverConfig {
    /// Demotion traffic cap, MiB/s; 0 = no cap. Default 256.
    pub max_mib_per_s: u64,
    /// Most pages per `move_pages` call. Default 4096.
    pub pages_per_call: usize,
    /// A call slower than this halves the next batch, milliseconds. Default 20.
    pub max_call_ms: u64,
    /// Also move pages shared with other processes (`MPOL_MF_MOVE_ALL`). Default false.
    pub move_shared: bool,
}

impl Default for MoverConfig {
    fn default() -> Self {
        MoverConfig {
            max_mib_per_s: 256,
            pages_per_call: 4096,
            max_call_ms: 20,
            move_shared: false,
        }
    }
}

/// `[promotion]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromotionConfig {
    /// Bring hot pages of lower tiers up. Default true.
    pub enabled: bool,
    /// Accesses per tracker window that make a page hot. Default 2.
    pub min_heat: u32,
    /// Promotion traffic cap, MiB/s. Default 64.
    pub max_mib_per_s: u64,
    /// A page that moved may not move again for this long, milliseconds (the ping-pong
    /// guard). Default 10000.
    pub min_residence_ms: u64,
}

impl Default for PromotionConfig {
    fn default() -> Self {
        PromotionConfig { enabled: true, min_heat: 2, max_mib_per_s: 64, min_residence_ms: 10_000 }
    }
}

/// `[daemon]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// One loop every this many milliseconds. Default 1000.
    pub interval_ms: u64,
    /// OpenMetrics address; keep it on loopback. Default `127.0.0.1:9877`; `""` = off.
    pub metrics_addr: String,
    /// The control socket. Default `/run/tierd/control.sock`.
    pub socket: PathBuf,
    /// Serve the sysfs-compatible tree here too (`tierd mount`). Default: none.
    pub mount: Option<PathBuf>,
    /// Switch the kernel's tiering promotion (`numa_balancing` bit 2) off while running, and
    /// the kernel's demotion too when `backstop` is `"off"`; restored on exit. Default false
    /// (warn only).
    pub take_over: bool,
    /// What keeps reclaim from swapping when tierd's loop falls behind. Default
    /// `"kernel-demotion"`.
    pub backstop: Backstop,
    /// The nice value `tierd run` sets for itself at start (-20 to 19; `setpriority(2)`, needs
    /// CAP_SYS_NICE below 0), so that the loop keeps ahead of allocations on a busy host.
    /// Default -10.
    pub nice: i32,
    /// Lock tierd's own memory (`mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`), so that
    /// the daemon that keeps pages from being swapped is never swapped itself. Default true.
    pub lock_memory: bool,
    /// `/proc/self/oom_score_adj` set at start (-1000 to 1000; below 0 needs
    /// CAP_SYS_RESOURCE, or set `OOMScoreAdjust=` in the unit). Default -900.
    pub oom_score_adj: i32,
}

/// `[daemon] backstop`: the mechanism inside reclaim that keeps the no-swap promise while
/// tierd's userspace loop is starved of CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backstop {
    /// The kernel's own demotion (`demotion_enabled=true`, switched on while tierd runs and
    /// restored on exit); pages it puts off the migration paths are moved on by tierd.
    #[default]
    KernelDemotion,
    /// None: reclaim swaps when tierd falls behind.
    Off,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            interval_ms: 1000,
            metrics_addr: crate::metrics::DEFAULT_ADDR.into(),
            socket: PathBuf::from("/run/tierd/control.sock"),
            mount: None,
            take_over: false,
            backstop: Backstop::KernelDemotion,
            nice: -10,
            lock_memory: true,
            oom_score_adj: -900,
        }
    }
}

/// A config problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Missing, not a regular file, too large, not UTF-8, or writable by others.
    #[error("config {0}")]
    Unusable(crate::input::InputError),
    /// Not valid (syntax, unknown field, wrong type: the message has the line).
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
}

/// When a change to a config field takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    /// At the next reload (SIGHUP).
    Reload,
    /// Only when tierd restarts: a reload says it did not apply it.
    Restart,
}

impl Config {
    /// Reads and validates `path`.
    /// The file must be a regular file of at most [`crate::input::MAX_TEXT_BYTES`], owned
    /// by root (or the running user) and not writable by group or others: it decides which
    /// processes' pages a root daemon moves.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            crate::input::read_private_text(path, crate::input::MAX_TEXT_BYTES, "a config file")
                .map_err(ConfigError::Unusable)?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: tierd_core::quote::bound_lines(&message),
        })
    }

    /// Every field, as `section.field` (a map such as `headroom.node` is one field), with
    /// when a change to it takes effect. The host loop (`tierd run`) sets up once at start,
    /// and cannot change while it runs, the state file and its lock, the tracker, the mover's
    /// limits, the listeners, the FUSE mount and the kernel take-over.
    pub const FIELDS: &'static [(&'static str, Applies)] = &[
        ("paths.source", Applies::Reload),
        ("paths.state", Applies::Restart),
        ("headroom.default_pct", Applies::Reload),
        ("headroom.node", Applies::Reload),
        ("scope.cgroup", Applies::Reload),
        ("scope.pids", Applies::Reload),
        ("scope.comm", Applies::Reload),
        ("tracker.kind", Applies::Restart),
        ("tracker.sample_us", Applies::Restart),
        ("tracker.aggregate_ms", Applies::Restart),
        ("mover.max_mib_per_s", Applies::Restart),
        ("mover.pages_per_call", Applies::Restart),
        ("mover.max_call_ms", Applies::Restart),
        ("mover.move_shared", Applies::Restart),
        ("promotion.enabled", Applies::Reload),
        ("promotion.min_heat", Applies::Reload),
        ("promotion.max_mib_per_s", Applies::Reload),
        ("promotion.min_residence_ms", Applies::Reload),
        ("daemon.interval_ms", Applies::Reload),
        ("daemon.metrics_addr", Applies::Restart),
        ("daemon.socket", Applies::Restart),
        ("daemon.mount", Applies::Restart),
        ("daemon.take_over", Applies::Restart),
        ("daemon.backstop", Applies::Restart),
        ("daemon.nice", Applies::Restart),
        ("daemon.lock_memory", Applies::Restart),
        ("daemon.oom_score_adj", Applies::Restart),
    ];

    /// The fields a reload cannot apply ([`Applies::Restart`]).
    pub fn restart_fields() -> impl Iterator<Item = &'static str> {
        Config::FIELDS.iter().filter(|(_, a)| *a == Applies::Restart).map(|(f, _)| *f)
    }

    /// The fields whose values differ between `old` and `new`, in [`Config::FIELDS`] order.
    pub fn changed_fields(old: &Config, new: &Config) -> Vec<&'static str> {
        let (a, b) = (old.field_values(), new.field_values());
        Config::FIELDS.iter().map(|(f, _)| *f).filter(|f| a.get(*f) != b.get(*f)).collect()
    }

    /// What a reload from `old` to `new` cannot apply: the changed fields that need a
    /// restart ([`Applies::Restart`]). A reload applies the others and says these.
    pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
        Config::changed_fields(old, new)
            .into_iter()
            .filter(|f| Config::restart_fields().any(|r| r == *f))
            .collect()
    }

    /// `section.field` -> value, from the serialised form (absent options are absent).
    fn field_values(&self) -> BTreeMap<String, toml::Value> {
        let mut out = BTreeMap::new();
        if let Ok(toml::Value::Table(sections)) = toml::Value::try_from(self) {
            for (section, fields) in sections {
                if let toml::Value::Table(fields) = fields {
                    for (field, v) in fields {
                        out.insert(format!("{section}.{field}"), v);
                    }
                }
            }
        }
        out
    }

    /// Parses and validates the text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        tierd_core::policy::check_headroom(
            "headroom.default_pct",
            self.headroom.default_pct,
            "headroom.node",
            &self.headroom.node,
        )?;
        let chosen =
            [self.scope.cgroup.is_some(), self.scope.pids.is_some(), self.scope.comm.is_some()];
        if chosen.iter().filter(|c| **c).count() > 1 {
            return Err("scope: pick at most one of cgroup, pids, comm".into());
        }
        if let Some(re) = &self.scope.comm {
            regex::Regex::new(re).map_err(|e| format!("scope.comm: {e}"))?;
        }
        if self.mover.pages_per_call == 0 || self.mover.max_call_ms == 0 {
            return Err("mover.pages_per_call and mover.max_call_ms must be above 0".into());
        }
        if self.daemon.interval_ms == 0 {
            return Err("daemon.interval_ms must be above 0".into());
        }
        if !(-20..=19).contains(&self.daemon.nice) {
            return Err(format!("daemon.nice = {}: a nice value from -20 to 19", self.daemon.nice));
        }
        if !(-1000..=1000).contains(&self.daemon.oom_score_adj) {
            return Err(format!(
                "daemon.oom_score_adj = {}: from -1000 to 1000",
                self.daemon.oom_score_adj
            ));
        }
        Ok(())
    }

    /// The headroom of `node`, percent.
    pub fn headroom_pct(&self, node: NodeId) -> f64 {
        self.headroom.node.get(&node).copied().unwrap_or(self.headroom.default_pct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../tierd.example.toml");

    #[test]
    fn the_example_lists_every_default() {
        assert_eq!(Config::parse(EXAMPLE).unwrap(), Config::default());
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn every_field_of_the_defaults_is_in_the_example() {
        // Serialising the defaults names every field; each must appear in the example.
        let text = toml::to_string(&Config::default()).unwrap();
        for line in text.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            assert!(
                EXAMPLE
                    .lines()
                    .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} ="))),
                "{key} is not documented in tierd.example.toml"
            );
        }
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_line() {
        let err = Config::parse("[mover]\npages_per_call = 10\nspeed = 3\n").unwrap_err();
        assert!(err.contains("unknown field `speed`") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_values_say_what_is_allowed() {
        for (text, want) in [
            ("[headroom]\ndefault_pct = 120\n", "percentage"),
            ("[headroom.node]\nx = 5\n", "[headroom.node]\n  | ^^^^^^^^^^^^^^^\nnode key \"x\""),
            ("[headroom.node]\n\"+0\" = 5\n", "write the node id as \"0\""),
            ("[headroom.node]\n\" 1\" = 5\n", "node key \" 1\": write the node id as \"1\""),
            ("[headroom.node]\n\"01\" = 5\n", "write the node id as \"1\""),
            ("[scope]\npids = [1]\ncomm = \"a\"\n", "at most one"),
            ("[scope]\ncomm = \"(\"\n", "scope.comm"),
            ("[tracker]\nkind = \"perf\"\n", "one of"),
            ("[daemon]\ninterval_ms = 0\n", "interval_ms"),
            ("[daemon]\nnice = -21\n", "-20 to 19"),
            ("[daemon]\noom_score_adj = 1001\n", "-1000 to 1000"),
            ("[daemon]\nbackstop = \"swap\"\n", "kernel-demotion"),
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn every_field_is_listed_for_reloads() {
        let mut full = Config::default();
        full.scope.comm = Some("x".into());
        full.scope.cgroup = Some("/sys/fs/cgroup/db".into());
        full.scope.pids = Some(vec![1]);
        full.headroom.node.insert(NodeId::new(1).unwrap(), 5.0);
        full.daemon.mount = Some("/mnt".into());
        let named: Vec<String> = full.field_values().into_keys().collect();
        for f in &named {
            assert!(
                Config::FIELDS.iter().any(|(name, _)| name == f),
                "{f} is missing from Config::FIELDS"
            );
        }
        for (f, _) in Config::FIELDS {
            assert!(named.iter().any(|n| n == f), "{f} in Config::FIELDS is not a field");
        }
    }

    #[test]
    fn a_reload_says_which_changes_need_a_restart() {
        let old = Config::default();
        let new = Config::parse(
            "[daemon]\nsocket = \"/run/x.sock\"\nmetrics_addr = \"\"\ninterval_ms = 50\nmount = \"/m\"\n\
             [headroom]\ndefault_pct = 7\n",
        )
        .unwrap();
        assert_eq!(
            Config::changed_fields(&old, &new),
            [
                "headroom.default_pct",
                "daemon.interval_ms",
                "daemon.metrics_addr",
                "daemon.socket",
                "daemon.mount"
            ]
        );
        assert_eq!(
            Config::restart_needed(&old, &new),
            ["daemon.metrics_addr", "daemon.socket", "daemon.mount"]
        );
        assert!(Config::restart_needed(&old, &old.clone()).is_empty());
    }

    #[test]
    fn per_node_headroom_overrides_the_default() {
        let c = Config::parse("[headroom]\ndefault_pct = 3\n[headroom.node]\n0 = 10\n").unwrap();
        assert!((c.headroom_pct(NodeId::new(0).unwrap()) - 10.0).abs() < f64::EPSILON);
        assert!((c.headroom_pct(NodeId::new(1).unwrap()) - 3.0).abs() < f64::EPSILON);
    }
}
