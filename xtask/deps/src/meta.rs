//! `cargo metadata`, read into the `cargo_metadata` crate's model (cached for
//! `--no-deps`), and the few readings of that model the analysis makes: a declaration's
//! table and target, what counts as a library, each package's resolved edges.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cargo_metadata::{CargoOpt, DependencyKind, MetadataCommand, TargetKind};
pub use cargo_metadata::{Dependency, Metadata, NodeDep, Package, PackageId, Target};

use super::analyze::Table;
use super::inputs;

/// The table a dependency of this kind is declared in.
pub fn table(kind: DependencyKind) -> Table {
    match kind {
        DependencyKind::Development => Table::Dev,
        DependencyKind::Build => Table::Build,
        _ => Table::Normal,
    }
}

/// The `[target.X]` a declaration or an edge is for, as cargo prints it (`cfg(unix)`, a
/// target triple).
pub fn target(platform: &Option<cargo_metadata::cargo_platform::Platform>) -> Option<String> {
    platform.as_ref().map(ToString::to_string)
}

/// A target that dependents link as a library (any crate type but a binary).
pub fn is_lib(target: &Target) -> bool {
    target.kind.iter().any(|k| {
        matches!(
            k,
            TargetKind::Lib
                | TargetKind::RLib
                | TargetKind::DyLib
                | TargetKind::CDyLib
                | TargetKind::StaticLib
                | TargetKind::ProcMacro
        )
    })
}

/// Each package's edges in the resolve graph (none without a resolve: `--no-deps`).
pub fn edges(meta: &Metadata) -> HashMap<&PackageId, &[NodeDep]> {
    let nodes = meta.resolve.iter().flat_map(|r| &r.nodes);
    nodes.map(|n| (&n.id, n.deps.as_slice())).collect()
}

/// Runs `cargo metadata` (`--no-deps`, or the full resolve with `--all-features`).
pub fn run(manifest: &Path, offline: bool, no_deps: bool) -> anyhow::Result<Metadata> {
    Ok(run_with_output(manifest, offline, no_deps)?.0)
}

/// [`run`], with cargo's output for [`store_no_deps`].
pub fn run_with_output(
    manifest: &Path,
    offline: bool,
    no_deps: bool,
) -> anyhow::Result<(Metadata, Vec<u8>)> {
    let raw = run_raw(manifest, offline, no_deps)?;
    Ok((parse_bytes(&raw)?, raw))
}

fn parse_bytes(raw: &[u8]) -> anyhow::Result<Metadata> {
    let text = std::str::from_utf8(raw).context("`cargo metadata` output is not UTF-8")?;
    MetadataCommand::parse(text).context("parsing `cargo metadata` output")
}

/// The cached `cargo metadata --no-deps` output, and whether it is current. Its output
/// depends only on the manifests, the files and directories cargo discovers targets and
/// members from, and a few settings; when none of those changed since it was stored
/// (see [`layout_key`]), cargo need not run. The cache lives in `<target>/xtask/` and is
/// used only when `manifest` is a workspace root, so its default target directory is known.
pub fn cached_no_deps(manifest: &Path) -> Option<(Metadata, bool)> {
    let bytes = inputs::read(&metadata_cache_path(manifest)?).ok()?;
    let pos = bytes.iter().position(|&b| b == b'\n')?;
    let meta = parse_bytes(&bytes[pos + 1..]).ok()?;
    let current = layout_key(&meta, manifest).as_bytes() == &bytes[..pos];
    Some((meta, current))
}

/// Runs `cargo metadata --no-deps` and stores its output for [`cached_no_deps`].
pub fn fresh_no_deps(manifest: &Path, offline: bool) -> anyhow::Result<Metadata> {
    let (meta, raw) = run_with_output(manifest, offline, true)?;
    store_no_deps(manifest, &meta, &raw);
    Ok(meta)
}

/// Keeps `raw` (a `--no-deps` or full output) for [`cached_no_deps`] under the layout's
/// key, taken after the run (a full one may have written `Cargo.lock`). What the
/// analysis reads of the `--no-deps` view (the workspace's packages, root, target
/// directory and metadata) is the same in the full output, so one cargo run serves both;
/// only the packages' order differs (by id in the full output, the members' order in
/// `--no-deps`), and `load` puts the members in the workspace's order either way.
pub fn store_no_deps(manifest: &Path, meta: &Metadata, raw: &[u8]) {
    let Some(cache) = metadata_cache_path(manifest) else { return };
    // The cache's directory may be new, and in a directory the layout lists (the target
    // directory beside a member): made before the key is taken, the next run agrees.
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut contents = format!("{}\n", layout_key(meta, manifest)).into_bytes();
    contents.extend_from_slice(raw);
    // A cache that cannot be written only costs time on the next run.
    let _ = xtask_sys::fs::write_if_changed(&cache, contents);
}

/// A short hash, to name per-workspace cache files.
pub fn short_hash(value: impl std::hash::Hash) -> String {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    format!("{:016x}", h.finish())
}

pub fn metadata_cache_path(manifest: &Path) -> Option<PathBuf> {
    let text = inputs::read_to_string(manifest).ok()?;
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
        inputs::read(p).ok().hash(h);
    };
    // Hashes a directory listing; returns its subdirectories.
    let list = |dir: &Path, h: &mut DefaultHasher| -> Vec<PathBuf> {
        let entries = inputs::list_dir(dir);
        dir.hash(h);
        entries.hash(h);
        entries.into_iter().filter(|(_, d)| *d).map(|(n, _)| dir.join(n)).collect()
    };
    let root = meta.workspace_root.as_std_path();
    read(manifest, &mut h);
    read(&root.join("Cargo.toml"), &mut h);
    read(&root.join(".cargo/config.toml"), &mut h);
    read(&root.join(".cargo/config"), &mut h);
    for p in meta.workspace_packages() {
        let manifest_path = p.manifest_path.as_std_path();
        read(manifest_path, &mut h);
        let Some(dir) = manifest_path.parent() else { continue };
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
    inputs::outside();
    let mut command = MetadataCommand::new();
    command.manifest_path(manifest);
    if no_deps {
        command.no_deps();
    } else {
        command.features(CargoOpt::AllFeatures);
    }
    if offline {
        command.other_options(["--offline".to_string()]);
    }
    // Run here rather than by `exec`, to keep the raw output for the cache and cargo's
    // own error for the one-line message.
    let out = command.cargo_command().output().context("running `cargo metadata`")?;
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
