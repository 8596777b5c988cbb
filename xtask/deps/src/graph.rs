//! The resolve graph: every package id of the full `cargo metadata` (`--all-features`),
//! its edges with their kinds, and the members. `load` builds it when it runs the full
//! resolve anyway and caches it beside the resolve facts, under the same key; `savings`
//! walks it (reading the cache, or resolving when the cache is stale).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::analyze::Table;
use super::meta::{self, Metadata, NodeDep};

/// One edge of the resolve graph: (dependency id, extern name, kinds).
type Edge = (String, String, Vec<(Table, Option<String>)>);

/// The resolve graph: package id -> its edges.
pub struct Graph {
    pub edges: HashMap<String, Vec<Edge>>,
    pub roots: Vec<String>,
    /// Package id -> `name vX.Y.Z`.
    pub labels: HashMap<String, String>,
    /// Member name -> package id.
    pub members: HashMap<String, String>,
}

impl Graph {
    pub fn from_metadata(meta: &Metadata) -> Graph {
        let kinds = |d: &NodeDep| {
            d.dep_kinds.iter().map(|k| (meta::table(k.kind), meta::target(&k.target))).collect()
        };
        let edges = meta::edges(meta)
            .into_iter()
            .map(|(id, deps)| {
                let out = deps.iter().map(|d| (d.pkg.repr.clone(), d.name.clone(), kinds(d)));
                (id.repr.clone(), out.collect())
            })
            .collect();
        let labels = meta
            .packages
            .iter()
            .map(|p| (p.id.repr.clone(), format!("{} v{}", p.name, p.version)))
            .collect();
        let members = meta
            .workspace_packages()
            .iter()
            .map(|p| (p.name.to_string(), p.id.repr.clone()))
            .collect();
        let roots = meta.workspace_members.iter().map(|id| id.repr.clone()).collect();
        Graph { edges, roots, labels, members }
    }

    /// The edge a declaration makes, if removing the declaration removes the edge (the
    /// member does not depend on the same package through another table or target).
    pub(crate) fn edge_of(
        &self,
        member: &str,
        crate_name: &str,
        table: Table,
        target: &Option<String>,
    ) -> Option<(String, String)> {
        let from = self.members.get(member)?;
        let (to, _, kinds) = self.edges.get(from)?.iter().find(|(_, name, kinds)| {
            name == crate_name && kinds.iter().any(|(k, t)| *k == table && t == target)
        })?;
        kinds.iter().all(|(k, t)| *k == table && t == target).then(|| (from.clone(), to.clone()))
    }
}

fn table_name(t: Table) -> &'static str {
    match t {
        Table::Normal => "normal",
        Table::Dev => "dev",
        Table::Build => "build",
    }
}

/// Where the graph of a workspace is cached (`<target>/xtask/deps-graph-<hash>.tsv`), and
/// the key it must carry to be current: the resolve facts' (`load`), so that both are
/// stale together.
#[derive(Clone)]
pub struct Cache {
    pub path: PathBuf,
    pub key: String,
    /// The graph itself, when this run built it (no need to read it back).
    pub built: Option<Arc<Graph>>,
}

impl Cache {
    pub fn new(meta: &Metadata, key: String) -> Cache {
        let root = meta.workspace_root.as_std_path();
        let name = format!("deps-graph-{}.tsv", meta::short_hash(root));
        let path = meta.target_directory.as_std_path().join("xtask").join(name);
        Cache { path, key, built: None }
    }

    /// The graph this run built, the cached one, or when the cache is stale the full
    /// `cargo metadata`'s (which is then cached).
    pub fn get(&self, manifest: &Path, offline: bool) -> anyhow::Result<Arc<Graph>> {
        if let Some(graph) = &self.built {
            return Ok(graph.clone());
        }
        if let Some(graph) = self.read() {
            return Ok(Arc::new(graph));
        }
        let graph = Graph::from_metadata(&meta::run(manifest, offline, false)?);
        self.write(&graph);
        Ok(Arc::new(graph))
    }

    /// Writes the graph as tab-separated lines under the key (first line). Ids, names and
    /// `cfg(..)` targets hold no tabs or newlines; a graph that would is not cached.
    pub fn write(&self, g: &Graph) {
        let (path, key) = (&self.path, &self.key);
        let mut text = format!("{key}\n");
        for root in &g.roots {
            text.push_str(&format!("R\t{root}\n"));
        }
        // In a fixed order, so that the same graph makes the same file (an unchanged file
        // keeps its signature for `replay`).
        fn sorted(map: &HashMap<String, String>) -> Vec<(&String, &String)> {
            let mut pairs: Vec<_> = map.iter().collect();
            pairs.sort();
            pairs
        }
        for (name, id) in sorted(&g.members) {
            text.push_str(&format!("M\t{name}\t{id}\n"));
        }
        for (id, label) in sorted(&g.labels) {
            text.push_str(&format!("L\t{id}\t{label}\n"));
        }
        let mut nodes: Vec<_> = g.edges.iter().collect();
        nodes.sort_by(|a, b| a.0.cmp(b.0));
        for (from, edges) in nodes {
            text.push_str(&format!("N\t{from}\n"));
            for (to, name, kinds) in edges {
                let kinds: Vec<String> = kinds
                    .iter()
                    .map(|(t, target)| {
                        format!("{}={}", table_name(*t), target.as_deref().unwrap_or(""))
                    })
                    .collect();
                text.push_str(&format!("E\t{from}\t{to}\t{name}\t{}\n", kinds.join("|")));
            }
        }
        if text.lines().skip(1).any(|l| l.split('\t').count() > 5) {
            return;
        }
        // A cache that cannot be written only costs time on the next run.
        let _ = xtask_sys::fs::write_if_changed(path, text);
    }

    /// Reads a graph written by [`Cache::write`] if it carries the key.
    pub fn read(&self) -> Option<Graph> {
        let (path, key) = (&self.path, &self.key);
        let text = crate::inputs::read_to_string(path).ok()?;
        let mut lines = text.lines();
        if lines.next()? != key {
            return None;
        }
        let mut g = Graph {
            edges: HashMap::new(),
            roots: Vec::new(),
            labels: HashMap::new(),
            members: HashMap::new(),
        };
        for line in lines {
            let f: Vec<&str> = line.split('\t').collect();
            match f[..] {
                ["R", id] => g.roots.push(id.into()),
                ["M", name, id] => {
                    g.members.insert(name.into(), id.into());
                }
                ["L", id, label] => {
                    g.labels.insert(id.into(), label.into());
                }
                ["N", id] => {
                    g.edges.entry(id.into()).or_default();
                }
                ["E", from, to, name, kinds] => {
                    let kinds = kinds
                        .split('|')
                        .filter_map(|k| {
                            let (t, target) = k.split_once('=')?;
                            let t = match t {
                                "dev" => Table::Dev,
                                "build" => Table::Build,
                                _ => Table::Normal,
                            };
                            Some((t, (!target.is_empty()).then(|| target.to_string())))
                        })
                        .collect();
                    g.edges.entry(from.into()).or_default().push((to.into(), name.into(), kinds));
                }
                _ => return None,
            }
        }
        Some(g)
    }
}
