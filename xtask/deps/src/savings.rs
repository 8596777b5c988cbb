//! What a removal saves: the crate and every transitive dependency that nothing else in
//! the workspace still needs (reachability over `cargo metadata`'s resolve graph from
//! the members, with and without the member's edge to it), timed with cargo's own
//! `--timings` report when one exists. Pure: [`seconds`], [`attach`].
//! Effects: [`measure`]. The graph itself, and its cache, are `graph`'s.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::analyze::{Analysis, Class, Saving};
use super::graph::Graph;
use super::load::Workspace;

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
    .filter_map(|p| Some((crate::inputs::modified(&p)?, p)))
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
    let graph = ws.graph_cache.get(&ws.root_manifest, offline)?;
    // The cache sits in `<target>/xtask/`.
    let target = ws.graph_cache.path.parent().and_then(Path::parent).unwrap_or(&ws.root);
    let report = timing_report(target);
    let times = report
        .as_ref()
        .and_then(|p| crate::inputs::read_to_string(p).ok())
        .and_then(|html| crate::cargo_timings::units(&html).ok())
        .map(|units| seconds(&units));
    attach(analysis, &graph, times.as_ref());
    Ok(report.filter(|_| times.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::Table;
    use crate::graph::Cache;

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
        let cache = |key: &str| Cache { path: path.clone(), key: key.into(), built: None };
        cache("k1").write(&g);
        let back = cache("k1").read().expect("current");
        assert_eq!(exclusive(&back, &cut("x")), exclusive(&g, &cut("x")));
        assert_eq!(back.edge_of("app", "d", Table::Dev, &None), Some(("app".into(), "d".into())));
        assert!(cache("k2").read().is_none(), "another key is stale");
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
