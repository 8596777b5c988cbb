//! What a removal saves: the crate and every transitive dependency that nothing else in
//! the workspace still needs (reachability over `cargo metadata`'s resolve graph from
//! the members, with and without the member's edge to it), timed with cargo's own
//! `--timings` report when one exists. Pure: [`seconds`], [`attach`].
//! Effects: [`measure`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::analyze::{Analysis, Class, Saving, Table};
use super::load::Workspace;
use super::meta::Metadata;

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
        let edges = meta
            .resolve
            .iter()
            .map(|(id, deps)| {
                let out = deps
                    .iter()
                    .map(|d| (d.pkg.clone(), d.name.clone(), d.dep_kinds.clone()))
                    .collect();
                (id.clone(), out)
            })
            .collect();
        let labels = meta
            .packages
            .iter()
            .map(|p| (p.id.clone(), format!("{} v{}", p.name, p.version)))
            .collect();
        let members =
            meta.workspace_packages().iter().map(|p| (p.name.clone(), p.id.clone())).collect();
        Graph { edges, roots: meta.workspace_members.clone(), labels, members }
    }

    /// The edge a declaration makes, if removing the declaration removes the edge (the
    /// member does not depend on the same package through another table or target).
    fn edge_of(
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

/// Writes the graph as tab-separated lines under `key` (first line). Ids, names and
/// `cfg(..)` targets hold no tabs or newlines; a graph that would is not cached.
pub fn write_graph(path: &Path, key: &str, g: &Graph) {
    let mut text = format!("{key}\n");
    for root in &g.roots {
        text.push_str(&format!("R\t{root}\n"));
    }
    for (name, id) in &g.members {
        text.push_str(&format!("M\t{name}\t{id}\n"));
    }
    for (id, label) in &g.labels {
        text.push_str(&format!("L\t{id}\t{label}\n"));
    }
    for (from, edges) in &g.edges {
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
    let _ = xtask_sys::fs::write_atomic(path, text);
}

/// Reads a graph written by [`write_graph`] if it carries `key`.
pub fn read_graph(path: &Path, key: &str) -> Option<Graph> {
    let text = std::fs::read_to_string(path).ok()?;
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

/// The graph with packages numbered, for the many reachability walks of one run.
struct Indexed<'g> {
    ids: HashMap<&'g str, usize>,
    names: Vec<&'g str>,
    adjacency: Vec<Vec<usize>>,
    roots: Vec<usize>,
}

impl<'g> Indexed<'g> {
    fn new(g: &'g Graph) -> Self {
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut names: Vec<&str> = Vec::new();
        let mut number = |id: &'g str| {
            *ids.entry(id).or_insert_with(|| {
                names.push(id);
                names.len() - 1
            })
        };
        let mut pairs = Vec::new();
        for (from, edges) in &g.edges {
            let f = number(from);
            for (to, _, _) in edges {
                pairs.push((f, number(to)));
            }
        }
        let roots: Vec<usize> = g.roots.iter().map(|r| number(r)).collect();
        let mut adjacency = vec![Vec::new(); names.len()];
        for (f, t) in pairs {
            adjacency[f].push(t);
        }
        Indexed { ids, names, adjacency, roots }
    }

    /// Package numbers reachable from the members without the `cut` edges (sorted),
    /// in order.
    fn reachable(&self, cut: &[(usize, usize)]) -> Vec<usize> {
        let mut seen = vec![false; self.names.len()];
        let mut stack = self.roots.clone();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            for &t in &self.adjacency[i] {
                if cut.binary_search(&(i, t)).is_err() {
                    stack.push(t);
                }
            }
        }
        (0..seen.len()).filter(|i| seen[*i]).collect()
    }

    /// Labels of the packages reachable (`before`) but not without the `cut` edges.
    fn exclusive(
        &self,
        g: &Graph,
        before: &[usize],
        cut: &BTreeSet<(String, String)>,
    ) -> Vec<String> {
        let mut cut: Vec<(usize, usize)> = cut
            .iter()
            .filter_map(|(a, b)| Some((*self.ids.get(a.as_str())?, *self.ids.get(b.as_str())?)))
            .collect();
        cut.sort();
        let after = self.reachable(&cut);
        let mut out: Vec<String> = before
            .iter()
            .filter(|i| after.binary_search(i).is_err())
            .filter_map(|i| g.labels.get(self.names[*i]).cloned())
            .collect();
        out.sort();
        out
    }
}

/// The packages only the `cut` edges keep in the build, as labels.
#[cfg(test)]
pub fn exclusive(graph: &Graph, cut: &BTreeSet<(String, String)>) -> Vec<String> {
    let index = Indexed::new(graph);
    let before = index.reachable(&[]);
    index.exclusive(graph, &before, cut)
}

/// Compile seconds per `name vX.Y.Z` from cargo's timing units (all units of a package:
/// library, build script compile and run).
pub fn seconds(units: &[crate::cargo_timings::Unit]) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for u in units {
        *out.entry(format!("{} v{}", u.name, u.version)).or_insert(0.0) += u.duration;
    }
    out
}

fn saving(crates: Vec<String>, times: Option<&HashMap<String, f64>>) -> Saving {
    let seconds = times.map(|t| crates.iter().filter_map(|c| t.get(c)).sum());
    Saving { crates, seconds }
}

/// Attaches each not-used finding's saving, and the total of removing every verified-
/// unused declaration together.
pub fn attach(analysis: &mut Analysis, graph: &Graph, times: Option<&HashMap<String, f64>>) {
    let index = Indexed::new(graph);
    let before = index.reachable(&[]);
    let exclusive = |cut: &BTreeSet<(String, String)>| index.exclusive(graph, &before, cut);
    // Members are always built: a package another member depends on directly stays,
    // and so does everything below it (no walk needed, the common case).
    let mut member_parents: HashMap<usize, Vec<usize>> = HashMap::new();
    for &root in &index.roots {
        for &child in &index.adjacency[root] {
            member_parents.entry(child).or_default().push(root);
        }
    }
    let kept_by_another_member = |(from, to): &(String, String)| {
        let (Some(f), Some(t)) = (index.ids.get(from.as_str()), index.ids.get(to.as_str())) else {
            return false;
        };
        member_parents.get(t).is_some_and(|parents| parents.iter().any(|p| p != f))
    };
    let mut all_cuts = BTreeSet::new();
    for m in &mut analysis.members {
        for f in m.findings.iter_mut().filter(|f| f.class != Class::Used) {
            let crate_name = f.crate_name.clone();
            let Some(edge) = graph.edge_of(&m.name, &crate_name, f.table, &f.target) else {
                f.saving = Some(Saving::default());
                continue;
            };
            if f.class == Class::VerifiedUnused {
                all_cuts.insert(edge.clone());
            }
            f.saving = Some(if kept_by_another_member(&edge) {
                Saving { crates: Vec::new(), seconds: times.map(|_| 0.0) }
            } else {
                saving(exclusive(&BTreeSet::from([edge])), times)
            });
        }
    }
    analysis.total_saving = Some(saving(exclusive(&all_cuts), times));
}

/// The newest cargo timing report of the workspace: `<target>/cargo-timings/` (from any
/// `cargo build --timings`) or the one `cargo xtask build-timings` leaves.
fn timing_report(target: &Path) -> Option<PathBuf> {
    [
        target.join("cargo-timings/cargo-timing.html"),
        target.join("xtask/build-timings/target/cargo-timings/cargo-timing.html"),
    ]
    .into_iter()
    .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
    .max()
    .map(|(_, p)| p)
}

/// Measures the savings of the findings that are not used (runs the full `cargo
/// metadata` only when there is one); returns the timing report used, if any.
pub fn measure(
    ws: &Workspace,
    analysis: &mut Analysis,
    offline: bool,
) -> anyhow::Result<Option<PathBuf>> {
    let any = analysis.members.iter().flat_map(|m| &m.findings).any(|f| f.class != Class::Used);
    if !any {
        return Ok(None);
    }
    let (cache, key) = &ws.graph_cache;
    let graph = match read_graph(cache, key) {
        Some(graph) => graph,
        None => {
            let meta = super::meta::run(&ws.root_manifest, offline, false)?;
            let graph = Graph::from_metadata(&meta);
            write_graph(cache, key, &graph);
            graph
        }
    };
    // The cache sits in `<target>/xtask/`.
    let target = cache.parent().and_then(Path::parent).unwrap_or(&ws.root);
    let report = timing_report(target);
    let times = report
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|html| crate::cargo_timings::units(&html).ok())
        .map(|units| seconds(&units));
    attach(analysis, &graph, times.as_ref());
    Ok(report.filter(|_| times.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> Graph {
        let e = |to: &str, name: &str, table: Table| {
            (to.to_string(), name.to_string(), vec![(table, None)])
        };
        let edges = HashMap::from([
            (
                "app".to_string(),
                vec![
                    e("x", "x", Table::Normal),
                    e("z", "z", Table::Normal),
                    e("d", "d", Table::Dev),
                ],
            ),
            (
                "x".to_string(),
                vec![e("y", "y", Table::Normal), e("only_x", "only_x", Table::Normal)],
            ),
            ("z".to_string(), vec![e("y", "y", Table::Normal)]),
            ("d".to_string(), vec![]),
        ]);
        let labels =
            ["app", "x", "y", "z", "d", "only_x"].map(|n| (n.to_string(), format!("{n} v1.0.0")));
        Graph {
            edges,
            roots: vec!["app".into()],
            labels: labels.into_iter().collect(),
            members: HashMap::from([("app".to_string(), "app".to_string())]),
        }
    }

    #[test]
    fn a_removal_saves_what_nothing_else_needs() {
        let g = graph();
        let cut = |to: &str| BTreeSet::from([("app".to_string(), to.to_string())]);
        assert_eq!(
            exclusive(&g, &cut("x")),
            ["only_x v1.0.0", "x v1.0.0"],
            "y is still needed by z"
        );
        assert_eq!(exclusive(&g, &cut("z")), ["z v1.0.0"]);
        let both: BTreeSet<_> = cut("x").union(&cut("z")).cloned().collect();
        assert_eq!(exclusive(&g, &both), ["only_x v1.0.0", "x v1.0.0", "y v1.0.0", "z v1.0.0"]);
        assert_eq!(g.edge_of("app", "d", Table::Dev, &None), Some(("app".into(), "d".into())));
        assert_eq!(g.edge_of("app", "d", Table::Normal, &None), None);
        let units = crate::cargo_timings::units(
            r#"const UNIT_DATA = [
{"i": 0, "name": "x", "version": "1.0.0", "mode": "todo", "target": "", "start": 0.0, "duration": 2.5},
{"i": 1, "name": "x", "version": "1.0.0", "mode": "run-custom-build", "target": " build-script", "start": 0.0, "duration": 0.5},
{"i": 2, "name": "only_x", "version": "1.0.0", "mode": "todo", "target": "", "start": 0.0, "duration": 1.0}
];"#,
        )
        .unwrap();
        let times = seconds(&units);
        assert_eq!(saving(exclusive(&g, &cut("x")), Some(&times)).seconds, Some(4.0));
        assert_eq!(saving(exclusive(&g, &cut("z")), Some(&times)).seconds, Some(0.0));
        assert_eq!(saving(vec![], None).seconds, None);
        let path =
            std::env::temp_dir().join(format!("xtask-deps-graph-{}.tsv", std::process::id()));
        write_graph(&path, "k1", &g);
        let back = read_graph(&path, "k1").expect("current");
        assert_eq!(exclusive(&back, &cut("x")), exclusive(&g, &cut("x")));
        assert_eq!(back.edge_of("app", "d", Table::Dev, &None), Some(("app".into(), "d".into())));
        assert!(read_graph(&path, "k2").is_none(), "another key is stale");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_package_another_member_depends_on_saves_nothing() {
        use crate::analyze::{Finding, MemberReport};
        let mut g = graph();
        g.roots.push("b".into());
        g.members.insert("b".into(), "b".into());
        g.labels.insert("b".into(), "b v1.0.0".into());
        g.edges.insert("b".into(), vec![("x".into(), "x".into(), vec![(Table::Normal, None)])]);
        let finding = |key: &str, class: Class| Finding {
            key: key.into(),
            package: key.into(),
            crate_name: key.into(),
            table: Table::Normal,
            target: None,
            class,
            evidence: String::new(),
            location: None,
            ignored_by: None,
            optional: false,
            compiler: None,
            saving: None,
        };
        let mut a = Analysis {
            members: vec![MemberReport {
                name: "app".into(),
                manifest: "app/Cargo.toml".into(),
                findings: vec![
                    finding("x", Class::VerifiedUnused),
                    finding("z", Class::VerifiedUnused),
                ],
            }],
            ..Default::default()
        };
        attach(&mut a, &g, None);
        let saved = |i: usize| a.members[0].findings[i].saving.clone().unwrap().crates;
        assert!(saved(0).is_empty(), "member b still needs x: {:?}", saved(0));
        assert_eq!(saved(1), ["z v1.0.0"], "y is still needed through x");
        assert_eq!(a.total_saving.unwrap().crates, ["z v1.0.0"]);
    }
}
