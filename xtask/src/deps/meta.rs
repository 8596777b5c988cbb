//! `cargo metadata`, read with `serde_json::Value`: only the fields the analysis needs.
//! (The `cargo_metadata` crate would bring serde's derive macros, thiserror, semver and
//! camino into every CI build of xtask for these few lines.)

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use serde_json::Value;

use super::analyze::Table;

#[derive(Debug, Clone)]
pub struct Metadata {
    pub packages: Vec<Package>,
    /// Package ids of the members.
    pub workspace_members: Vec<String>,
    /// Package id -> its resolved dependencies (absent with `--no-deps`).
    pub resolve: HashMap<String, Vec<NodeDep>>,
    pub workspace_root: PathBuf,
    pub target_directory: PathBuf,
    /// `[workspace.metadata]`.
    pub workspace_metadata: Value,
}

#[derive(Debug, Clone)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub manifest_path: PathBuf,
    pub targets: Vec<Target>,
    pub dependencies: Vec<Dependency>,
    pub features: BTreeMap<String, Vec<String>>,
    /// `[package.metadata]`.
    pub metadata: Value,
    pub links: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub kind: Vec<String>,
    pub src_path: PathBuf,
}

impl Target {
    pub fn is_kind(&self, kind: &str) -> bool {
        self.kind.iter().any(|k| k == kind)
    }

    pub fn is_lib(&self) -> bool {
        self.kind.iter().any(|k| {
            matches!(k.as_str(), "lib" | "rlib" | "dylib" | "cdylib" | "staticlib" | "proc-macro")
        })
    }
}

#[derive(Debug, Clone)]
pub struct Dependency {
    /// The package name.
    pub name: String,
    pub rename: Option<String>,
    pub kind: Table,
    pub target: Option<String>,
    pub optional: bool,
    pub path: Option<PathBuf>,
}

/// One edge of the resolve graph.
#[derive(Debug, Clone)]
pub struct NodeDep {
    /// The name the dependent's code uses (rename or library name, with `_`).
    pub name: String,
    pub pkg: String,
    pub dep_kinds: Vec<(Table, Option<String>)>,
}

impl Metadata {
    pub fn workspace_packages(&self) -> Vec<&Package> {
        self.packages.iter().filter(|p| self.workspace_members.contains(&p.id)).collect()
    }
}

/// Runs `cargo metadata` (`--no-deps`, or the full resolve with `--all-features`).
pub fn run(manifest: &Path, offline: bool, no_deps: bool) -> anyhow::Result<Metadata> {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["metadata", "--format-version", "1"]);
    cmd.arg(if no_deps { "--no-deps" } else { "--all-features" });
    if offline {
        cmd.arg("--offline");
    }
    cmd.arg("--manifest-path").arg(manifest);
    let out = cmd.output().context("running `cargo metadata`")?;
    if !out.status.success() {
        // The workspace does not load: a mistake in its manifests, reported in one line.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines().find_map(|l| l.strip_prefix("error: ")).unwrap_or("failed");
        let cause = lines().next_back().unwrap_or("");
        crate::user_error!(
            "cargo metadata for {}: {first} ({cause}); fix the manifest and run again",
            manifest.display()
        );
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).context("parsing `cargo metadata` output")?;
    parse(&v).context("unexpected `cargo metadata` output")
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn table(kind: &Value) -> Table {
    match kind.as_str() {
        Some("dev") => Table::Dev,
        Some("build") => Table::Build,
        _ => Table::Normal,
    }
}

fn array(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

pub fn parse(v: &Value) -> Option<Metadata> {
    let mut packages = Vec::new();
    for p in array(&v["packages"]) {
        let targets = array(&p["targets"])
            .map(|t| {
                Some(Target {
                    name: s(&t["name"])?,
                    kind: array(&t["kind"]).filter_map(s).collect(),
                    src_path: PathBuf::from(t["src_path"].as_str()?),
                })
            })
            .collect::<Option<_>>()?;
        let dependencies = array(&p["dependencies"])
            .map(|d| {
                Some(Dependency {
                    name: s(&d["name"])?,
                    rename: s(&d["rename"]),
                    kind: table(&d["kind"]),
                    target: s(&d["target"]),
                    optional: d["optional"].as_bool().unwrap_or(false),
                    path: d["path"].as_str().map(PathBuf::from),
                })
            })
            .collect::<Option<_>>()?;
        let features = p["features"]
            .as_object()
            .map(|f| {
                f.iter().map(|(k, vs)| (k.clone(), array(vs).filter_map(s).collect())).collect()
            })
            .unwrap_or_default();
        packages.push(Package {
            id: s(&p["id"])?,
            name: s(&p["name"])?,
            manifest_path: PathBuf::from(p["manifest_path"].as_str()?),
            targets,
            dependencies,
            features,
            metadata: p["metadata"].clone(),
            links: s(&p["links"]),
        });
    }
    let mut resolve = HashMap::new();
    for node in array(&v["resolve"]["nodes"]) {
        let deps = array(&node["deps"])
            .map(|d| {
                Some(NodeDep {
                    name: s(&d["name"])?,
                    pkg: s(&d["pkg"])?,
                    dep_kinds: array(&d["dep_kinds"])
                        .map(|k| (table(&k["kind"]), s(&k["target"])))
                        .collect(),
                })
            })
            .collect::<Option<_>>()?;
        resolve.insert(s(&node["id"])?, deps);
    }
    Some(Metadata {
        packages,
        workspace_members: array(&v["workspace_members"]).filter_map(s).collect(),
        resolve,
        workspace_root: PathBuf::from(v["workspace_root"].as_str()?),
        target_directory: PathBuf::from(v["target_directory"].as_str()?),
        workspace_metadata: v["metadata"].clone(),
    })
}
