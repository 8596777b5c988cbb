//! `cargo metadata`, read with `serde_json::Value`: only the fields the analysis needs.
//! (The `cargo_metadata` crate would bring thiserror, semver, cargo-platform and camino
//! into every CI build of xtask for these few lines; measured against the 20 s budget in
//! docs/xtask.md.)

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
    pub version: String,
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
    /// `features = [...]` of the declaration (with the inherited workspace entry's).
    pub features: Vec<String>,
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
    let raw = run_raw(manifest, offline, no_deps)?;
    parse_bytes(&raw)
}

fn parse_bytes(raw: &[u8]) -> anyhow::Result<Metadata> {
    let v: Value = serde_json::from_slice(raw).context("parsing `cargo metadata` output")?;
    parse(&v).context("unexpected `cargo metadata` output")
}

/// The cached `cargo metadata --no-deps` output, and whether it is current. Its output
/// depends only on the manifests, the files and directories cargo discovers targets and
/// members from, and a few settings; when none of those changed since it was stored
/// (see [`layout_key`]), cargo need not run. The cache lives in `<target>/xtask/` and is
/// used only when `manifest` is a workspace root, so its default target directory is known.
pub fn cached_no_deps(manifest: &Path) -> Option<(Metadata, bool)> {
    let bytes = std::fs::read(metadata_cache_path(manifest)?).ok()?;
    let pos = bytes.iter().position(|&b| b == b'\n')?;
    let meta = parse_bytes(&bytes[pos + 1..]).ok()?;
    let current = layout_key(&meta, manifest).as_bytes() == &bytes[..pos];
    Some((meta, current))
}

/// Runs `cargo metadata --no-deps` and stores its output for [`cached_no_deps`].
pub fn fresh_no_deps(manifest: &Path, offline: bool) -> anyhow::Result<Metadata> {
    let raw = run_raw(manifest, offline, true)?;
    let meta = parse_bytes(&raw)?;
    if let Some(cache) = metadata_cache_path(manifest) {
        let mut contents = format!("{}\n", layout_key(&meta, manifest)).into_bytes();
        contents.extend_from_slice(&raw);
        // A cache that cannot be written only costs time on the next run.
        let _ = xtask_sys::fs::write_atomic(&cache, contents);
    }
    Ok(meta)
}

/// A short hash, to name per-workspace cache files.
pub fn short_hash(value: impl std::hash::Hash) -> String {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    format!("{:016x}", h.finish())
}

pub fn metadata_cache_path(manifest: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(manifest).ok()?;
    if !text.lines().any(|l| l.trim() == "[workspace]") {
        return None;
    }
    let scratch = scratch_dir(manifest.parent()?)?;
    Some(scratch.join(format!("deps-metadata-{}.json", short_hash(manifest))))
}

/// `<target>/xtask` of the workspace whose root directory is `root`, where the caches
/// and the benchmark's workspaces live: the target directory is `CARGO_TARGET_DIR`
/// (relative to the current directory, as cargo reads it) or `<root>/target`.
pub fn scratch_dir(root: &Path) -> Option<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::env::current_dir().ok()?.join(dir),
        None => root.join("target"),
    };
    Some(target.join("xtask"))
}

/// Everything `cargo metadata --no-deps` reads: every member manifest and the root's,
/// cargo configuration in the root, the directories target auto-discovery lists (the
/// member directory, `src`, `src/bin`, `tests`, `examples`, `benches` and their
/// subdirectories) and each member's parent directory (where member globs look).
fn layout_key(meta: &Metadata, manifest: &Path) -> String {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    let mut h = DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    manifest.hash(&mut h);
    for var in ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"] {
        std::env::var_os(var).hash(&mut h);
    }
    let read = |p: &Path, h: &mut DefaultHasher| {
        p.hash(h);
        std::fs::read(p).ok().hash(h);
    };
    // Hashes a directory listing; returns its subdirectories.
    let list = |dir: &Path, h: &mut DefaultHasher| -> Vec<PathBuf> {
        let mut entries: Vec<(String, bool)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.file_type().is_ok_and(|t| t.is_dir()),
                )
            })
            .collect();
        entries.sort();
        dir.hash(h);
        entries.hash(h);
        entries.into_iter().filter(|(_, d)| *d).map(|(n, _)| dir.join(n)).collect()
    };
    read(manifest, &mut h);
    read(&meta.workspace_root.join("Cargo.toml"), &mut h);
    read(&meta.workspace_root.join(".cargo/config.toml"), &mut h);
    read(&meta.workspace_root.join(".cargo/config"), &mut h);
    for p in meta.workspace_packages() {
        read(&p.manifest_path, &mut h);
        let Some(dir) = p.manifest_path.parent() else { continue };
        if let Some(parent) = dir.parent() {
            list(parent, &mut h);
        }
        list(dir, &mut h);
        list(&dir.join("src"), &mut h);
        for sub in ["src/bin", "tests", "examples", "benches"] {
            for subdir in list(&dir.join(sub), &mut h) {
                list(&subdir, &mut h);
            }
        }
    }
    format!("{:016x}", h.finish())
}

fn run_raw(manifest: &Path, offline: bool, no_deps: bool) -> anyhow::Result<Vec<u8>> {
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
        xtask_sys::user_error!(
            "cargo metadata for {}: {}; fix the manifest and run again",
            manifest.display(),
            one_line_error(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(out.stdout)
}

/// Cargo's error in one line: with cargo's own `file:line:col` when it points into a
/// manifest (`--> app/Cargo.toml:6:17`), else the first error with its last cause.
pub fn one_line_error(stderr: &str) -> String {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines().find_map(|l| l.strip_prefix("error: ")).unwrap_or("failed");
    if let Some(location) = lines().find_map(|l| l.strip_prefix("--> ")) {
        return format!("{location}: {first}");
    }
    let cause = lines().next_back().unwrap_or("");
    if cause.strip_prefix("error: ") == Some(first) {
        return first.to_string();
    }
    format!("{first} ({cause})")
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
                    features: array(&d["features"]).filter_map(s).collect(),
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
            version: s(&p["version"]).unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_malformed_manifest_keeps_cargos_location() {
        let syntax = "error: unclosed inline table, expected `}`\n --> app/Cargo.toml:6:17\n  |\n6 | foo = { path = \n  |                ^\nerror: failed to load manifest for workspace member `/ws/app`\nreferenced by workspace at `/ws/Cargo.toml`\n";
        assert_eq!(
            super::one_line_error(syntax),
            "app/Cargo.toml:6:17: unclosed inline table, expected `}`"
        );
        let missing = "error: failed to load manifest for workspace member `/ws/app`\nreferenced by workspace at `/ws/Cargo.toml`\n\nCaused by:\n  failed to read `/ws/nowhere/Cargo.toml`\n\nCaused by:\n  No such file or directory (os error 2)\n";
        assert_eq!(
            super::one_line_error(missing),
            "failed to load manifest for workspace member `/ws/app` (No such file or directory (os error 2))"
        );
    }
}
