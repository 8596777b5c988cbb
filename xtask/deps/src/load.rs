//! The effects side of the analysis: runs `cargo metadata`, reads manifests, follows
//! each target's modules from its root file and scans them, and builds the pure
//! [`Member`] model that `analyze` classifies.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::analyze::{Context, Decl, DepFacts, Location, Member, Table};
use super::graph;
use super::inputs;
use super::meta::{self, Dependency, Metadata, Package, Target, is_lib};
use super::scan::{self, FileScan, scan};
use cargo_metadata::DependencyKind;

/// Everything the analysis needs about a workspace.
pub struct Workspace {
    pub root: PathBuf,
    pub root_manifest: PathBuf,
    pub members: Vec<Member>,
    /// Keys of the root's `[workspace.dependencies]`.
    pub workspace_entries: Vec<String>,
    pub workspace_ignore: Vec<(String, String)>,
    /// Manifest path of each member, by member name.
    pub manifests: BTreeMap<String, PathBuf>,
    /// Where the resolve graph is cached, and the key it must carry to be current.
    pub graph_cache: graph::Cache,
    /// How many source files of registry and git dependencies this load opened (none
    /// when what they teach is cached).
    pub dependency_files_read: usize,
}

/// Identifies one declaration across metadata runs: (member, table, target, key).
type DeclId = (String, Table, Option<String>, String);

/// What the resolve graph says about a declaration: the crate name code uses, and facts.
type Resolved = HashMap<DeclId, (String, DepFacts)>;

fn decl_id(member: &str, dep: &Dependency) -> DeclId {
    let key = dep.rename.clone().unwrap_or_else(|| dep.name.clone());
    (member.to_string(), meta::table(dep.kind), meta::target(&dep.target), key)
}

/// Resolves every member declaration against the full graph (`--all-features`): the
/// graph edge with the declaration's package, table and target, and the same name
/// (renamed declarations) or a name no rename of the member claims (the others; two
/// versions of one package need different keys, so at most one is not renamed).
fn resolve_decls(meta: &Metadata) -> Resolved {
    let packages: HashMap<_, _> = meta.packages.iter().map(|p| (&p.id, p)).collect();
    let resolve = meta::edges(meta);
    let requests = feature_requests(meta);
    let reach = Reach::new(meta, &requests);
    let mut out = Resolved::new();
    for pkg in meta.workspace_packages() {
        let edges = resolve.get(&pkg.id).copied().unwrap_or_default();
        let renames: Vec<String> = pkg
            .dependencies
            .iter()
            .filter_map(|d| d.rename.as_ref())
            .map(|r| r.replace('-', "_"))
            .collect();
        for dep in &pkg.dependencies {
            let (table, target) = (meta::table(dep.kind), meta::target(&dep.target));
            let resolved = edges
                .iter()
                .filter(|e| {
                    packages.get(&e.pkg).is_some_and(|p| p.name == dep.name)
                        && e.dep_kinds.iter().any(|k| {
                            meta::table(k.kind) == table && meta::target(&k.target) == target
                        })
                        && match &dep.rename {
                            Some(r) => e.name == r.replace('-', "_"),
                            None => !renames.contains(&e.name),
                        }
                })
                .filter_map(|e| packages.get(&e.pkg).copied())
                .max_by_key(|p| dep.path.as_deref() == p.manifest_path.parent());
            // Cargo drops a dependency without a library target from the graph entirely.
            let mut facts = resolved.map(facts_of).unwrap_or_default();
            if let Some(p) = resolved {
                facts.shared = reach.shared(&pkg.id, &p.id);
                facts.enables = enabled_only_by(&pkg.id, p, &packages, &requests, &reach);
            }
            let lib_name =
                resolved.and_then(|p| p.targets.iter().find(|t| is_lib(t)).map(|t| t.name.clone()));
            let crate_name = match (&dep.rename, lib_name) {
                (Some(rename), _) => rename.replace('-', "_"),
                (None, Some(lib)) => lib.replace('-', "_"),
                (None, None) => dep.name.replace('-', "_"),
            };
            out.insert(decl_id(&pkg.name, dep), (crate_name, facts));
        }
    }
    out
}

/// The resolve graph for reachability walks from the members. The questions asked once
/// per declaration are answered from what is computed once per run or once per package
/// (a walk of the whole graph per declaration made a 1,000-declaration workspace's
/// uncached run five times slower).
struct Reach<'m> {
    roots: Vec<&'m meta::PackageId>,
    edges: HashMap<&'m meta::PackageId, &'m [meta::NodeDep]>,
    /// For each package the members reach, the packages the members reach that depend
    /// on it.
    dependents: HashMap<&'m meta::PackageId, Vec<&'m meta::PackageId>>,
    /// Every package that asks another for a feature ([`feature_requests`]).
    requesters: HashSet<&'m meta::PackageId>,
    /// What each package reaches, itself included, once asked.
    below:
        std::cell::RefCell<HashMap<&'m meta::PackageId, std::rc::Rc<HashSet<&'m meta::PackageId>>>>,
}

impl<'m> Reach<'m> {
    fn new(meta: &'m Metadata, requests: &FeatureRequests<'m>) -> Self {
        let mut reach = Reach {
            roots: meta.workspace_members.iter().collect(),
            edges: meta::edges(meta),
            dependents: HashMap::new(),
            requesters: requests.values().flatten().copied().collect(),
            below: Default::default(),
        };
        let all = reach.reachable(&reach.roots, None, None);
        let mut dependents: HashMap<_, Vec<_>> = HashMap::new();
        for &id in &all {
            for d in reach.edges.get(id).copied().unwrap_or_default() {
                dependents.entry(&d.pkg).or_default().push(id);
            }
        }
        reach.dependents = dependents;
        reach
    }

    /// What `id` reaches, itself included.
    fn below(&self, id: &'m meta::PackageId) -> std::rc::Rc<HashSet<&'m meta::PackageId>> {
        if let Some(found) = self.below.borrow().get(id) {
            return found.clone();
        }
        let found = std::rc::Rc::new(self.reachable(&[id], None, None));
        self.below.borrow_mut().insert(id, found.clone());
        found
    }

    /// Whether the members reach `p` without the edge `member -> p`. They do when `p` is
    /// a member, or when a package they reach that is not below `p` depends on it: a
    /// path to such a package cannot pass through `p`, so it does not use the edge. Only
    /// a dependent below `p` (a cycle, which dev-dependencies allow) needs the walk.
    fn shared(&self, member: &'m meta::PackageId, p: &'m meta::PackageId) -> bool {
        if self.roots.contains(&p) {
            return true;
        }
        let others: Vec<_> = self
            .dependents
            .get(p)
            .into_iter()
            .flatten()
            .copied()
            .filter(|q| *q != member)
            .collect();
        if others.is_empty() {
            return false;
        }
        let below = self.below(p);
        others.iter().any(|q| !below.contains(q))
            || self.reachable(&self.roots, Some((member, p)), None).contains(p)
    }

    /// The packages reachable from `from` without the edge `cut_edge` and without the
    /// package `cut_node`.
    fn reachable(
        &self,
        from: &[&'m meta::PackageId],
        cut_edge: Option<(&meta::PackageId, &meta::PackageId)>,
        cut_node: Option<&meta::PackageId>,
    ) -> HashSet<&'m meta::PackageId> {
        let mut seen = HashSet::new();
        let mut stack: Vec<&meta::PackageId> =
            from.iter().copied().filter(|r| Some(*r) != cut_node).collect();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            for d in self.edges.get(id).copied().unwrap_or_default() {
                if Some(&d.pkg) == cut_node || cut_edge == Some((id, &d.pkg)) {
                    continue;
                }
                stack.push(&d.pkg);
            }
        }
        seen
    }
}

type FeatureRequests<'m> = HashMap<(String, String), HashSet<&'m meta::PackageId>>;

/// Who asks for each feature of each package by name: `(package name, feature)` -> the
/// ids of the packages whose declarations (`features = [..]`) or enabled features
/// (`dep/feature`, `dep?/feature`) ask for it.
fn feature_requests(meta: &Metadata) -> FeatureRequests<'_> {
    let enabled: HashMap<&meta::PackageId, Vec<String>> = meta
        .resolve
        .iter()
        .flat_map(|r| &r.nodes)
        .map(|n| (&n.id, n.features.iter().map(|f| f.to_string()).collect()))
        .collect();
    let mut out: HashMap<(String, String), HashSet<&meta::PackageId>> = HashMap::new();
    for p in &meta.packages {
        let Some(features) = enabled.get(&p.id) else { continue };
        for dep in p.dependencies.iter().filter(|d| d.kind != DependencyKind::Development) {
            for f in &dep.features {
                out.entry((dep.name.clone(), f.clone())).or_default().insert(&p.id);
            }
        }
        for value in features.iter().filter_map(|f| p.features.get(f)).flatten() {
            let Some((key, f)) = value.split_once('/') else { continue };
            let key = key.trim_end_matches('?');
            let name = p
                .dependencies
                .iter()
                .find(|d| d.rename.as_deref().unwrap_or(&d.name) == key)
                .map_or(key, |d| d.name.as_str());
            out.entry((name.to_string(), f.to_string())).or_default().insert(&p.id);
        }
    }
    out
}

/// The features (`name/feature`) of other packages that `p` switches on for `member`,
/// itself or through the packages only it brings in, that nothing else the member
/// depends on asks for, on packages the member reaches without `p`: removing `p`
/// changes what the member compiles.
fn enabled_only_by<'m>(
    member: &'m meta::PackageId,
    p: &'m Package,
    packages: &HashMap<&meta::PackageId, &Package>,
    requests: &FeatureRequests<'m>,
    reach: &Reach<'m>,
) -> Vec<String> {
    let below = reach.below(&p.id);
    // Nothing below `p` asks for a feature: it switches none on (the usual case, and no
    // walk from the member needed).
    if !below.iter().any(|id| reach.requesters.contains(id)) {
        return Vec::new();
    }
    let without = reach.reachable(&[member], None, Some(&p.id));
    let only_through: HashSet<&meta::PackageId> =
        below.iter().copied().filter(|id| !without.contains(id)).collect();
    let reached_names: HashSet<&str> =
        without.iter().filter_map(|id| packages.get(id)).map(|q| q.name.as_str()).collect();
    let mut out: Vec<String> = requests
        .iter()
        .filter(|((name, _), by)| {
            reached_names.contains(name.as_str())
                && by.iter().any(|q| only_through.contains(q))
                && !by.iter().any(|q| without.contains(q))
        })
        .map(|((name, feature), _)| format!("{name}/{feature}"))
        .collect();
    out.sort();
    out
}

/// The cache files a workspace root manifest gets (where cargo's default target
/// directory is): for cleaning up after fixtures.
pub fn cache_files(manifest: &Path) -> Vec<PathBuf> {
    let root = manifest.parent().unwrap_or(Path::new("")).to_path_buf();
    let Some(scratch) = meta::scratch_dir(&root) else { return Vec::new() };
    let resolve = scratch.join(format!("deps-resolve-{}.tsv", meta::short_hash(&root)));
    let graph = scratch.join(format!("deps-graph-{}.tsv", meta::short_hash(&root)));
    let expansions = scratch.join(format!("deps-expansions-{}.tsv", meta::short_hash(&root)));
    meta::metadata_cache_path(manifest).into_iter().chain([resolve, graph, expansions]).collect()
}

/// The resolve results are cached (in `<target>/xtask/deps-resolve-<hash>.tsv`) under a
/// hash of everything they depend on ([`cache_key`]): `Cargo.lock`, every member manifest
/// and the manifests of path dependencies. A hit saves the full `cargo metadata` resolve,
/// most of the run time.
fn resolve_cache_path(meta: &Metadata) -> PathBuf {
    let root = meta.workspace_root.as_std_path();
    let name = format!("deps-resolve-{}.tsv", meta::short_hash(root));
    meta.target_directory.as_std_path().join("xtask").join(name)
}

fn cache_key(meta: &Metadata) -> String {
    let root = meta.workspace_root.as_std_path();
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    inputs::read(&root.join("Cargo.lock")).ok().hash(&mut h);
    let mut manifests: Vec<PathBuf> = Vec::new();
    for p in meta.workspace_packages() {
        manifests.push(p.manifest_path.clone().into());
        for d in &p.dependencies {
            if let Some(path) = &d.path {
                manifests.push(path.join("Cargo.toml").into());
            }
        }
    }
    manifests.push(root.join("Cargo.toml"));
    manifests.sort();
    manifests.dedup();
    for m in manifests {
        m.hash(&mut h);
        inputs::read(&m).ok().hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// The cache is tab-separated lines (a first line with the key), cheap to read back.
fn read_cache(path: &Path, key: &str) -> Option<Resolved> {
    let text = inputs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    if lines.next()? != key {
        return None;
    }
    let mut out = Resolved::new();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let [
            member,
            table,
            target,
            dep,
            krate,
            proc_macro,
            links,
            has_lib,
            lib_src,
            id,
            shared,
            enables,
        ] = f[..]
        else {
            return None;
        };
        let table = match table {
            "dev" => Table::Dev,
            "build" => Table::Build,
            _ => Table::Normal,
        };
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let facts = DepFacts {
            proc_macro: proc_macro == "1",
            links: opt(links),
            has_lib: has_lib == "1",
            lib_src: opt(lib_src).map(PathBuf::from),
            immutable_id: opt(id),
            shared: shared == "1",
            enables: enables.split(' ').filter(|e| !e.is_empty()).map(str::to_string).collect(),
        };
        out.insert((member.into(), table, opt(target), dep.into()), (krate.into(), facts));
    }
    Some(out)
}

fn write_cache(path: &Path, key: &str, resolved: &Resolved) {
    let mut lines = Vec::with_capacity(resolved.len());
    for ((member, table, target, dep), (krate, facts)) in resolved {
        let table = match table {
            Table::Dev => "dev",
            Table::Build => "build",
            Table::Normal => "normal",
        };
        let lib_src = facts.lib_src.as_deref().and_then(Path::to_str);
        if facts.lib_src.is_some() && lib_src.is_none() {
            return; // not representable: run without a cache
        }
        let enables = facts.enables.join(" ");
        let fields = [
            member.as_str(),
            table,
            target.as_deref().unwrap_or(""),
            dep,
            krate,
            if facts.proc_macro { "1" } else { "0" },
            facts.links.as_deref().unwrap_or(""),
            if facts.has_lib { "1" } else { "0" },
            lib_src.unwrap_or(""),
            facts.immutable_id.as_deref().unwrap_or(""),
            if facts.shared { "1" } else { "0" },
            &enables,
        ];
        if fields.iter().any(|f| f.contains(['\t', '\n'])) {
            return; // not representable: run without a cache
        }
        lines.push(fields.join("\t"));
    }
    // Sorted, so that the same facts make the same file (an unchanged file keeps its
    // signature for `replay`).
    lines.sort();
    let text = format!("{key}\n{}", lines.iter().map(|l| format!("{l}\n")).collect::<String>());
    // A cache that cannot be written only costs time on the next run.
    let _ = xtask_sys::fs::write_if_changed(path, text);
}

/// Loads the workspace; `use_cache: false` ignores (but refreshes) the caches.
pub fn load(manifest: &Path, offline: bool, use_cache: bool) -> anyhow::Result<Workspace> {
    let cached = if use_cache { meta::cached_no_deps(manifest) } else { None };
    let (meta, full_output, prefetched) = match cached {
        Some((meta, true)) => (meta, None, HashMap::new()),
        stale => {
            // The manifests or the layout changed (or this is a first run). If the old
            // layout says the resolve cache is stale too, the full resolve runs at once,
            // and serves as the layout as well: one cargo run, not two.
            let resolve_stale = stale.as_ref().is_none_or(|(old, _)| {
                !use_cache || read_cache(&resolve_cache_path(old), &cache_key(old)).is_none()
            });
            if resolve_stale {
                std::thread::scope(|s| -> anyhow::Result<_> {
                    let full = s.spawn(|| meta::run_with_output(manifest, offline, false));
                    // While cargo resolves: what the last layout says the members are
                    // (`--no-cache` too: it is only a hint of what to read early).
                    let hint = stale
                        .map(|(old, _)| old)
                        .or_else(|| meta::cached_no_deps(manifest).map(|(old, _)| old));
                    let prefetched = hint.as_ref().map(prefetch).unwrap_or_default();
                    let (meta, raw) = full
                        .join()
                        .map_err(|_| anyhow::anyhow!("cargo metadata thread panicked"))??;
                    Ok((meta, Some(raw), prefetched))
                })?
            } else {
                (meta::fresh_no_deps(manifest, offline)?, None, HashMap::new())
            }
        }
    };
    let root: PathBuf = meta.workspace_root.clone().into();
    let cache = resolve_cache_path(&meta);
    let mut key = cache_key(&meta);
    let cached = if use_cache { read_cache(&cache, &key) } else { None };
    let ran = match (&cached, &full_output) {
        (None, None) => Some(meta::run(manifest, offline, false)?),
        _ => None,
    };
    if ran.is_some() {
        // Keyed after the full run, which may have written Cargo.lock.
        key = cache_key(&meta);
    }
    // The caches are written in the background of the rest of the load.
    std::thread::scope(|bg| -> anyhow::Result<Workspace> {
        // The layout ran with the full resolve: kept even when the resolve cache turns
        // out current (else every later run would run cargo again).
        if let Some(raw) = &full_output {
            bg.spawn(|| meta::store_no_deps(manifest, &meta, raw));
        }
        let (resolved, graph_built) = match cached {
            Some(resolved) => (resolved, None),
            None => {
                let full = ran.as_ref().unwrap_or(&meta);
                let mut graph_cache = graph::Cache::new(&meta, key.clone());
                let graph = bg.spawn(move || {
                    let graph = graph::Graph::from_metadata(full);
                    graph_cache.write(&graph);
                    graph_cache.built = Some(std::sync::Arc::new(graph));
                    graph_cache
                });
                let resolved = resolve_decls(full);
                write_cache(&cache, &key, &resolved);
                (resolved, Some(graph))
            }
        };
        let root_manifest = root.join("Cargo.toml");
        let root_doc = read_manifest(&root_manifest)?;
        let workspace_entries = root_doc
            .get("workspace")
            .and_then(|w| w.get("dependencies"))
            .and_then(|d| d.as_table_like())
            .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
            .unwrap_or_default();
        let workspace_ignore = ignore_lists(&meta.workspace_metadata, "workspace.metadata");
        let workspace_hack = hakari_package(&root);
        let target_dir: PathBuf = meta.target_directory.clone().into();
        let expansions_cache = expansions_cache_path(&meta);
        let learned_before =
            if use_cache { read_expansions(&expansions_cache) } else { HashMap::new() };

        let prefetched = std::sync::Mutex::new(prefetched);
        let build = |pkg: &Package, scans: &mut Scans| -> anyhow::Result<Member> {
            let manifest_path = pkg.manifest_path.as_std_path();
            let early = prefetched.lock().unwrap_or_else(|e| e.into_inner()).remove(manifest_path);
            let early = early.unwrap_or_default();
            scans.files.extend(early.files);
            let doc = if manifest_path == root_manifest {
                root_doc.clone()
            } else if let Some(doc) = early.manifest {
                doc
            } else {
                read_manifest(manifest_path)?
            };
            let inherited = inherited_keys(doc.as_table());
            let mut member = Member {
                name: pkg.name.to_string(),
                manifest: relative(&root, manifest_path),
                ignore: ignore_lists(&pkg.metadata, "package.metadata"),
                features: pkg.features.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                workspace_hack: pkg.name.as_str() == workspace_hack,
                ..Default::default()
            };
            for dep in &pkg.dependencies {
                let id = decl_id(&pkg.name, dep);
                let (crate_name, facts) = resolved.get(&id).cloned().unwrap_or_else(|| {
                    (
                        dep.rename.as_deref().unwrap_or(&dep.name).replace('-', "_"),
                        DepFacts::default(),
                    )
                });
                let (_, table, target, key) = id;
                member.decls.push(Decl {
                    inherited: inherited.contains(&(table, target.clone(), key.clone())),
                    key,
                    package: dep.name.clone(),
                    crate_name,
                    table,
                    target,
                    optional: dep.optional,
                    facts,
                    features: dep.features.clone(),
                    workspace_hack: dep.name == workspace_hack,
                });
            }
            scan_targets(&root, pkg, &mut member, &mut scans.files);
            if member.includes_generated {
                read_generated_code(&root, &target_dir, pkg, &mut member);
            }
            learn_expansions(&mut member, scans, &learned_before);
            Ok(member)
        };
        // Members are independent: two threads parse manifests and scan sources.
        // In the members' order: the full resolve lists packages by id, the cached
        // `--no-deps` view in the members' order, and what is printed (the committed
        // report among it) must not depend on which of the two this run read.
        let mut packages = meta.workspace_packages();
        packages.sort_by_key(|p| meta.workspace_members.iter().position(|id| *id == p.id));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<anyhow::Result<Member>>>> =
            packages.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let (mut learned, mut dependency_files_read) = (HashMap::new(), 0);
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut scans = Scans::default();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(pkg) = packages.get(i) else { break };
                            let member = build(pkg, &mut scans);
                            *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(member);
                        }
                        (scans.learned, scans.dependency_files_read)
                    })
                })
                .collect();
            for t in threads {
                if let Ok((l, n)) = t.join() {
                    learned.extend(l);
                    dependency_files_read += n;
                }
            }
        });
        if !learned.is_empty() {
            let mut all = learned_before.clone();
            all.extend(learned);
            write_expansions(&expansions_cache, &all);
        }
        let mut members = Vec::new();
        let mut manifests = BTreeMap::new();
        for (pkg, slot) in packages.iter().zip(slots) {
            let member = slot
                .into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .context("a member was not analyzed")??;
            manifests.insert(member.name.clone(), pkg.manifest_path.clone().into());
            members.push(member);
        }
        let graph_cache = graph_built
            .and_then(|graph| graph.join().ok())
            .unwrap_or_else(|| graph::Cache::new(&meta, key.clone()));
        Ok(Workspace {
            root,
            root_manifest,
            members,
            workspace_entries,
            workspace_ignore,
            manifests,
            graph_cache,
            dependency_files_read,
        })
    })
}

/// The name of cargo-hakari's workspace-hack package: `hakari-package` in
/// `.config/hakari.toml`, else the conventional `workspace-hack`.
fn hakari_package(root: &Path) -> String {
    inputs::read_to_string(&root.join(".config/hakari.toml"))
        .ok()
        .and_then(|text| text.parse::<toml_edit::DocumentMut>().ok())
        .and_then(|doc| doc.get("hakari-package").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_else(|| "workspace-hack".into())
}

/// Reads the code the build script generated (`<target>/<profile>/build/<pkg>-<hash>/out`)
/// for a package that `include!`s it, recording its references as normal code. Without
/// any output (never built) the package stays marked, and its dependencies cautious.
fn read_generated_code(root: &Path, target_dir: &Path, pkg: &Package, member: &mut Member) {
    let mut files = Vec::new();
    for profile in ["debug", "release"] {
        let build = target_dir.join(profile).join("build");
        for (name, _) in inputs::list_dir(&build) {
            let ours =
                name.strip_prefix(pkg.name.as_str()).and_then(|r| r.strip_prefix('-')).is_some_and(
                    |hash| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                );
            if !ours {
                continue;
            }
            files.extend(inputs::files_below(&build.join(name).join("out"), "rs"));
        }
    }
    if files.is_empty() {
        return;
    }
    files.sort();
    for file in files {
        let Ok(src) = inputs::read_to_string(&file) else { return };
        let rel = relative(root, &file);
        for r in scan(&src).crate_refs() {
            member.record_use(
                &r.name,
                Context::Normal,
                Location { file: rel.clone(), line: r.line },
            );
        }
    }
    member.includes_generated = false;
}

/// What one thread has read, shared by the members it analyzes.
#[derive(Default)]
struct Scans {
    files: HashMap<PathBuf, FileScan>,
    /// Crates the macros of a library expand to, by its cache key ([`library_key`]),
    /// learned by this thread in this run.
    learned: HashMap<String, Vec<String>>,
    /// Each library's cache key, computed once per run.
    keys: HashMap<PathBuf, String>,
    /// Source files of registry and git packages opened.
    dependency_files_read: usize,
}

/// Learns what the macros of the member's named dependencies expand to, from their
/// sources; only when something is left to explain (a declaration named nowhere, or a
/// normal one named only in tests), so a clean workspace reads no dependency sources.
/// What an earlier run learned (`cached`) is not learned again.
fn learn_expansions(member: &mut Member, scans: &mut Scans, cached: &HashMap<String, Vec<String>>) {
    let unexplained = member.decls.iter().any(|d| match member.uses.get(&d.crate_name) {
        None => true,
        Some(uses) => d.table == Table::Normal && !uses.contains_key(&Context::Normal),
    });
    if !unexplained {
        return;
    }
    for decl in &member.decls {
        if !member.uses.contains_key(&decl.crate_name) && decl.table != Table::Build {
            continue;
        }
        let Some(lib) = &decl.facts.lib_src else { continue };
        if member.expansions.contains_key(&decl.crate_name) {
            continue;
        }
        let key = scans
            .keys
            .entry(lib.clone())
            .or_insert_with(|| library_key(lib, decl.facts.immutable_id.as_deref()))
            .clone();
        let roots = match cached.get(&key).or_else(|| scans.learned.get(&key)) {
            Some(roots) => roots.clone(),
            None => {
                let mut roots = std::collections::BTreeSet::new();
                let files = module_files(lib, &mut scans.files);
                if decl.facts.immutable_id.is_some() {
                    scans.dependency_files_read += files.len();
                }
                for (file, _) in files {
                    if let Ok(src) = inputs::read_to_string(&file) {
                        roots.extend(scan::macro_expansion_roots(&src));
                    }
                }
                let roots: Vec<String> = roots.into_iter().collect();
                scans.learned.insert(key, roots.clone());
                roots
            }
        };
        member.expansions.insert(decl.crate_name.clone(), roots);
    }
}

/// What identifies a library's sources for the cache of what they teach: the package
/// id of a registry or git package (its sources never change), else a hash of every
/// `.rs` file below the library's root directory (paths and contents: a path package
/// can change at any time).
fn library_key(lib: &Path, immutable_id: Option<&str>) -> String {
    if let Some(id) = immutable_id {
        return format!("id {id}");
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    lib.hash(&mut h);
    let dir = lib.parent().unwrap_or(Path::new(""));
    for file in inputs::files_below(dir, "rs") {
        file.hash(&mut h);
        inputs::read(&file).ok().hash(&mut h);
    }
    format!("content {:016x}", h.finish())
}

/// `<target>/xtask/deps-expansions-<hash>.tsv`: what the macros of each library expand
/// to, by [`library_key`], one library a line.
fn expansions_cache_path(meta: &Metadata) -> PathBuf {
    let root = meta.workspace_root.as_std_path();
    let name = format!("deps-expansions-{}.tsv", meta::short_hash(root));
    meta.target_directory.as_std_path().join("xtask").join(name)
}

/// The first line names the format (with the crate's version: another version of the
/// scan may learn differently).
fn expansions_header() -> String {
    format!("xtask-deps expansions {}", env!("CARGO_PKG_VERSION"))
}

fn read_expansions(path: &Path) -> HashMap<String, Vec<String>> {
    let Ok(text) = inputs::read_to_string(path) else { return HashMap::new() };
    let mut lines = text.lines();
    if lines.next() != Some(expansions_header().as_str()) {
        return HashMap::new();
    }
    lines
        .filter_map(|line| {
            let (key, roots) = line.split_once('\t')?;
            Some((
                key.to_string(),
                roots.split(' ').filter(|r| !r.is_empty()).map(str::to_string).collect(),
            ))
        })
        .collect()
}

fn write_expansions(path: &Path, learned: &HashMap<String, Vec<String>>) {
    let mut lines: Vec<String> = learned
        .iter()
        .filter(|(key, _)| !key.contains(['\t', '\n']))
        .map(|(key, roots)| format!("{key}\t{}", roots.join(" ")))
        .collect();
    lines.sort();
    let text = format!("{}\n{}\n", expansions_header(), lines.join("\n"));
    // A cache that cannot be written only costs time on the next run.
    let _ = xtask_sys::fs::write_if_changed(path, text);
}

/// Parses a manifest for reading only (cheaper than an editable `DocumentMut`).
fn read_manifest(path: &Path) -> anyhow::Result<toml_edit::Document<String>> {
    let text =
        inputs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml_edit::Document::parse(text).with_context(|| format!("parsing {}", path.display()))
}

/// `a/b/../c` -> `a/c` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

fn facts_of(p: &Package) -> DepFacts {
    DepFacts {
        proc_macro: p.targets.iter().any(Target::is_proc_macro),
        links: p.links.clone(),
        has_lib: p.targets.iter().any(is_lib),
        lib_src: p.targets.iter().find(|t| is_lib(t)).map(|t| t.src_path.clone().into()),
        immutable_id: p.source.is_some().then(|| p.id.repr.clone()),
        shared: false,
        enables: Vec::new(),
    }
}

/// `(table, target, key)` of every declaration written `workspace = true`.
pub fn inherited_keys(doc: &toml_edit::Table) -> HashSet<(Table, Option<String>, String)> {
    let mut out = HashSet::new();
    let mut collect = |tables: &dyn toml_edit::TableLike, target: Option<String>| {
        for (name, table) in [
            ("dependencies", Table::Normal),
            ("dev-dependencies", Table::Dev),
            ("dev_dependencies", Table::Dev),
            ("build-dependencies", Table::Build),
            ("build_dependencies", Table::Build),
        ] {
            let Some(deps) = tables.get(name).and_then(|d| d.as_table_like()) else {
                continue;
            };
            for (key, item) in deps.iter() {
                let inherits = item
                    .as_table_like()
                    .and_then(|t| t.get("workspace"))
                    .and_then(|w| w.as_bool())
                    .unwrap_or(false);
                if inherits {
                    out.insert((table, target.clone(), key.to_string()));
                }
            }
        }
    };
    collect(doc, None);
    if let Some(targets) = doc.get("target").and_then(|t| t.as_table_like()) {
        for (cfg, tables) in targets.iter() {
            if let Some(tables) = tables.as_table_like() {
                collect(tables, Some(cfg.to_string()));
            }
        }
    }
    out
}

/// Ignore entries from `<prefix>.xtask-deps.ignore`, `.cargo-machete.ignored` and
/// `.cargo-shear.ignored`, each with the list it came from.
fn ignore_lists(metadata: &serde_json::Value, prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (tool, field) in
        [("xtask-deps", "ignore"), ("cargo-machete", "ignored"), ("cargo-shear", "ignored")]
    {
        let names = metadata.get(tool).and_then(|t| t.get(field)).and_then(|v| v.as_array());
        for name in names.into_iter().flatten().filter_map(|v| v.as_str()) {
            out.push((name.to_string(), format!("{prefix}.{tool}")));
        }
    }
    out
}

/// Scans every target of `pkg`, following modules from each root file, and records
/// each crate reference in `member` with the context it is used in.
fn scan_targets(
    root: &Path,
    pkg: &Package,
    member: &mut Member,
    scans: &mut HashMap<PathBuf, FileScan>,
) {
    let mut targets: Vec<_> = pkg.targets.iter().collect();
    // Lib and bins first, so the first recorded use is the most telling one.
    targets.sort_by_key(|t| target_context(t));
    let mut reached = HashSet::new();
    for target in targets {
        let context = target_context(target);
        let files = module_files(target.src_path.as_std_path(), scans);
        reached.extend(files.iter().map(|(f, _)| f.clone()));
        for (file, test_file) in files {
            let Some(scan) = scans.get(&file) else {
                continue;
            };
            if context == Context::Normal && !test_file && scan.includes_generated {
                member.includes_generated = true;
            }
            let rel = relative(root, &file);
            for inc in &scan.doc_includes {
                let md = normalize(&file.parent().unwrap_or(Path::new("")).join(inc));
                let Ok(text) = inputs::read_to_string(&md) else {
                    continue;
                };
                let md_rel = relative(root, &md);
                for r in scan::scan_markdown(&text) {
                    member.record_use(
                        &r.name,
                        Context::Dev,
                        Location { file: md_rel.clone(), line: r.line },
                    );
                }
            }
            for r in scan.crate_refs() {
                let ctx = if context == Context::Normal && (r.test || test_file) {
                    Context::Dev
                } else {
                    context
                };
                member.record_use(&r.name, ctx, Location { file: rel.clone(), line: r.line });
            }
        }
    }
    scan_unreached(root, pkg, &reached, member);
}

/// What is read of a member before the resolve arrives: its manifest, parsed (`None`
/// when it does not parse: read again, for the error), and its targets' module files,
/// scanned.
#[derive(Default)]
struct Prefetched {
    manifest: Option<toml_edit::Document<String>>,
    files: HashMap<PathBuf, FileScan>,
}

/// [`Prefetched`] for each member of `layout`, by manifest path. Read now, like any
/// other read; only which files to read comes from the (possibly stale) layout, and a
/// member the current layout lacks is never asked for.
fn prefetch(layout: &Metadata) -> HashMap<PathBuf, Prefetched> {
    layout
        .workspace_packages()
        .into_iter()
        .map(|pkg| {
            let mut files = HashMap::new();
            for target in &pkg.targets {
                module_files(target.src_path.as_std_path(), &mut files);
            }
            let path = pkg.manifest_path.as_std_path();
            (path.to_path_buf(), Prefetched { manifest: read_manifest(path).ok(), files })
        })
        .collect()
}

/// Scans the `.rs` files of the lib's and bins' source directories that no `mod` or
/// `include!` reaches: a macro may declare the module (`mod_path!`-style generators,
/// `#[path]` built by a macro), so what they name counts as a use of lib code, never
/// as nothing.
fn scan_unreached(root: &Path, pkg: &Package, reached: &HashSet<PathBuf>, member: &mut Member) {
    let package_dir = pkg.manifest_path.parent().map(|d| d.as_std_path()).unwrap_or(Path::new(""));
    let mut dirs: Vec<PathBuf> = pkg
        .targets
        .iter()
        .filter(|t| target_context(t) == Context::Normal)
        .filter_map(|t| t.src_path.as_std_path().parent().map(Path::to_path_buf))
        // A root file beside the manifest would make the whole package (tests, target
        // directories) its source tree: only a directory of its own counts.
        .filter(|d| d != package_dir && d.starts_with(package_dir))
        .collect();
    dirs.sort();
    dirs.dedup_by(|b, a| b.starts_with(&**a));
    for dir in dirs {
        for file in inputs::files_below(&dir, "rs") {
            if reached.contains(&file) {
                continue;
            }
            let Ok(src) = inputs::read_to_string(&file) else { continue };
            let scan = scan(&src);
            let rel = relative(root, &file);
            for r in scan.crate_refs() {
                let ctx = if r.test { Context::Dev } else { Context::Normal };
                member.record_use(&r.name, ctx, Location { file: rel.clone(), line: r.line });
            }
        }
    }
}

fn target_context(t: &Target) -> Context {
    if t.is_custom_build() {
        Context::Build
    } else if t.is_test() || t.is_bench() || t.is_example() {
        Context::Dev
    } else {
        Context::Normal
    }
}

/// Where the module tree rooted at `root_file` holds test-only code (`#[cfg(test)]`,
/// `#[test]`, `#[tokio::test]`, `#![cfg(test)]`): each file, and the line the code starts
/// on. A file reached only through `#[cfg(test)] mod x;` shows as that line of its parent.
pub fn test_code(root_file: &Path) -> Vec<(PathBuf, u32)> {
    let mut scans = HashMap::new();
    let files = module_files(root_file, &mut scans);
    let mut found = Vec::new();
    for (file, _) in files {
        found.extend(scans[&file].test_code.iter().map(|&line| (file.clone(), line)));
    }
    found
}

/// The files of the module tree rooted at `root_file` (each scanned into `scans`), with
/// whether the file is test-only (reached through a `#[cfg(test)] mod x;`).
fn module_files(root_file: &Path, scans: &mut HashMap<PathBuf, FileScan>) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    // (file, directory its child modules live in, test-only)
    let mut queue = std::collections::VecDeque::from([(
        root_file.to_path_buf(),
        root_file.parent().map(Path::to_path_buf).unwrap_or_default(),
        false,
    )]);
    while let Some((file, child_dir, test)) = queue.pop_front() {
        if !seen.insert(file.clone()) {
            continue;
        }
        if !scans.contains_key(&file) {
            let Ok(src) = inputs::read_to_string(&file) else {
                continue;
            };
            scans.insert(file.clone(), scan(&src));
        }
        let scan = &scans[&file];
        let file_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        for m in &scan.mods {
            let mut dir = child_dir.clone();
            for parent in &m.inline_parents {
                dir.push(parent);
            }
            let test = test || m.test;
            if let Some(path) = &m.path {
                let base = if m.inline_parents.is_empty() { &file_dir } else { &dir };
                let target = normalize(&base.join(path));
                let target_dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
                queue.push_back((target, target_dir, test));
                continue;
            }
            let flat = dir.join(format!("{}.rs", m.name));
            let nested = dir.join(&m.name).join("mod.rs");
            if inputs::is_file(&flat) {
                queue.push_back((flat, dir.join(&m.name), test));
            } else if inputs::is_file(&nested) {
                queue.push_back((nested, dir.join(&m.name), test));
            }
        }
        for inc in &scan.includes {
            let target = file_dir.join(inc);
            if target.extension().is_some_and(|e| e == "rs") {
                queue.push_back((target, child_dir.clone(), test));
            }
        }
        out.push((file, test));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Reach::shared` answers from the dependents and what lies below a package; a walk
    /// of the whole graph without the edge is the definition. Both agree for every
    /// dependency edge of this workspace's members (dev-dependency cycles included).
    #[test]
    fn shared_agrees_with_a_walk_of_the_whole_graph() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let meta = meta::run(&manifest, false, false).unwrap();
        let requests = feature_requests(&meta);
        let reach = Reach::new(&meta, &requests);
        let mut seen = (0, 0);
        for &member in &reach.roots {
            for d in reach.edges.get(member).copied().unwrap_or_default() {
                let walked = reach.reachable(&reach.roots, Some((member, &d.pkg)), None);
                let expected = walked.contains(&d.pkg);
                assert_eq!(reach.shared(member, &d.pkg), expected, "{member} -> {}", d.pkg);
                if expected { seen.0 += 1 } else { seen.1 += 1 }
            }
        }
        assert!(seen.0 > 0 && seen.1 > 0, "both answers exercised: {seen:?}");
    }
}
