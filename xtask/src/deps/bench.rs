//! `cargo xtask deps bench`: times `cargo xtask deps`, cargo-machete and cargo-shear in
//! one run, on this workspace and on a generated large workspace with planted unused
//! dependencies, and scores each tool's findings against what was planted.
//!
//! The generated workspace needs no network: its "external" crates are tiny path
//! crates beside it. Nothing is compiled.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::project;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Runs per tool and workspace (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Members of the generated workspace.
    #[arg(long, default_value_t = 50)]
    members: usize,
    /// Where to generate the large workspace (default: target/xtask/deps-bench).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Number of distinct "external" crates; each member uses 20 of them.
const EXT: usize = 40;

/// (member, key) pairs; workspace entries use member `[workspace]`.
type Findings = BTreeSet<(String, String)>;

/// Writes the generated workspace under `dir` (`dir/ws`, `dir/ext`) and returns the
/// planted unused declarations.
pub fn generate(dir: &Path, members: usize) -> anyhow::Result<Findings> {
    let _ = std::fs::remove_dir_all(dir);
    let write = |rel: String, text: String| -> anyhow::Result<()> {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    let lib = "pub fn f() {}\n#[macro_export]\nmacro_rules! make { () => {} }\n";
    // One more than the members use: `ext-40` is a plain unused workspace entry.
    for k in 0..=EXT {
        write(
            format!("ext/ext-{k:02}/Cargo.toml"),
            format!(
                "[package]\nname = \"ext-{k:02}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n"
            ),
        )?;
        write(format!("ext/ext-{k:02}/src/lib.rs"), lib.into())?;
    }
    write(
        "ext/odd-pkg/Cargo.toml".into(),
        "[package]\nname = \"odd-pkg\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\nname = \"oddlib\"\n\n[workspace]\n".into(),
    )?;
    write("ext/odd-pkg/src/lib.rs".into(), lib.into())?;
    // A derive crate and the runtime crate its expansion names (`::pm::...`): the
    // runtime crate is needed although no source names it.
    write(
        "ext/pm-derive/Cargo.toml".into(),
        "[package]\nname = \"pm-derive\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\nproc-macro = true\n\n[workspace]\n".into(),
    )?;
    write("ext/pm-derive/src/lib.rs".into(), String::new())?;
    write(
        "ext/pm/Cargo.toml".into(),
        "[package]\nname = \"pm\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n".into(),
    )?;
    write("ext/pm/src/lib.rs".into(), lib.into())?;

    let mut planted = Findings::new();
    let mut root = String::from(
        "[workspace]\nmembers = [\"crates/*\"]\nresolver = \"2\"\n\n[workspace.dependencies]\n",
    );
    for k in 0..EXT {
        let _ = writeln!(root, "ext-{k:02} = {{ path = \"../ext/ext-{k:02}\" }}");
    }
    root.push_str("odd-pkg = { path = \"../ext/odd-pkg\" }\n");
    root.push_str("pm = { path = \"../ext/pm\" }\npm-derive = { path = \"../ext/pm-derive\" }\n");
    let _ = writeln!(root, "ext-{EXT:02} = {{ path = \"../ext/ext-{EXT:02}\" }}");
    planted.insert(("[workspace]".into(), format!("ext-{EXT:02}")));
    for n in 0..3 {
        let _ = writeln!(
            root,
            "orphan-{n} = {{ package = \"ext-{n:02}\", path = \"../ext/ext-{n:02}\" }}"
        );
        planted.insert(("[workspace]".into(), format!("orphan-{n}")));
    }
    write("ws/Cargo.toml".into(), root)?;

    for i in 0..members {
        let name = format!("m{i:02}");
        let k: Vec<usize> = (0..20).map(|j| (i * 7 + j) % EXT).collect();
        let key = |j: usize| format!("ext-{:02}", k[j]);
        let krate = |j: usize| format!("ext_{:02}", k[j]);
        let ws = |j: usize| format!("{} = {{ workspace = true }}\n", key(j));
        let mut normal = String::new();
        for j in [0, 1, 2, 4, 11, 12, 13, 14, 15, 16, 17] {
            normal.push_str(&ws(j));
        }
        let _ = writeln!(
            normal,
            "r{:02} = {{ package = \"{}\", path = \"../../../ext/{}\" }}",
            k[3],
            key(3),
            key(3)
        );
        normal.push_str("odd-pkg = { workspace = true }\n");
        let derive = i % 5 == 0;
        if derive {
            normal.push_str("pm = { workspace = true }\npm-derive = { workspace = true }\n");
        }
        let manifest = format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{normal}\n\
             [dev-dependencies]\n{}{}{}{}\n[build-dependencies]\n{}\n\
             [target.'cfg(unix)'.dependencies]\n{}{}",
            ws(6),
            ws(9),
            ws(10),
            ws(18),
            ws(7),
            ws(8),
            ws(19)
        );
        for j in [14, 15, 16, 17, 18, 19] {
            planted.insert((name.clone(), key(j)));
        }
        let lib = format!(
            r#"//! Member {i}.
//!
//! ```
//! {k6}::f();
//! ```
extern crate {k11};
use {k0}::f as f0;
mod {k17};
mod my_{k16}_thing {{
    pub fn f() {{}}
}}

#[derive(Clone, {k13}::Thing)]
pub struct S {{
    #[serde(with = "{k12}::m")]
    pub x: u8,
}}

pub fn run() {{
    f0();
    {k1}::f();
    {k2}::make!();
    r{r3:02}::f();
    {k4}::f();
    oddlib::f();
    #[cfg(unix)]
    {k8}::f();
    // {k14}::f() is only mentioned in a comment
    let _s = "{k15}::f()";
    my_{k16}_thing::f();
    {k17}::f();
}}

#[cfg(test)]
mod tests {{
    #[test]
    fn t() {{
        {k10}::f();
    }}
}}
"#,
            k0 = krate(0),
            k1 = krate(1),
            k2 = krate(2),
            r3 = k[3],
            k4 = krate(4),
            k6 = krate(6),
            k8 = krate(8),
            k10 = krate(10),
            k11 = krate(11),
            k12 = krate(12),
            k13 = krate(13),
            k14 = krate(14),
            k15 = krate(15),
            k16 = krate(16),
            k17 = krate(17),
        );
        let lib = if derive {
            format!("{lib}\n#[derive(pm_derive::Thing)]\npub struct P;\n")
        } else {
            lib
        };
        let base = format!("ws/crates/{name}");
        write(format!("{base}/Cargo.toml"), manifest)?;
        write(format!("{base}/src/lib.rs"), lib)?;
        write(format!("{base}/src/{}.rs", krate(17)), "pub fn f() {}\n".into())?;
        write(format!("{base}/build.rs"), format!("fn main() {{\n    {}::f();\n}}\n", krate(7)))?;
        write(
            format!("{base}/tests/it.rs"),
            format!("#[test]\nfn t() {{\n    {}::f();\n}}\n", krate(9)),
        )?;
    }
    Ok(planted)
}

struct Tool {
    name: &'static str,
    install: &'static str,
}

const TOOLS: &[Tool] = &[
    Tool { name: "cargo xtask deps", install: "" },
    Tool { name: "cargo xtask deps --no-cache", install: "" },
    Tool { name: "cargo-machete", install: "cargo install --locked cargo-machete" },
    Tool { name: "cargo-shear", install: "cargo install --locked cargo-shear@1.13.2" },
];

fn command(tool: &str, ws: &Path) -> anyhow::Result<Command> {
    let mut cmd = match tool {
        "cargo xtask deps" | "cargo xtask deps --no-cache" => {
            let mut c = Command::new(std::env::current_exe().context("finding the xtask binary")?);
            c.arg("deps")
                .arg("--format")
                .arg("json")
                .arg("--manifest-path")
                .arg(ws.join("Cargo.toml"));
            if tool.ends_with("--no-cache") {
                c.arg("--no-cache");
            }
            c
        }
        "cargo-machete" => {
            // Its binary takes the paths directly (`cargo machete` strips the subcommand).
            let mut c = Command::new("cargo-machete");
            c.arg(ws);
            c
        }
        _ => {
            let mut c = Command::new("cargo-shear");
            c.arg("shear").arg("--format").arg("json").arg(ws);
            c
        }
    };
    cmd.current_dir(ws).stdin(Stdio::null());
    Ok(cmd)
}

fn installed(tool: &str) -> bool {
    tool.starts_with("cargo xtask deps")
        || Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
}

/// Runs `tool` once: its time and its findings (parsed from its output).
fn run_once(tool: &str, ws: &Path) -> anyhow::Result<(Duration, Findings)> {
    let mut cmd = command(tool, ws)?;
    let start = Instant::now();
    let out = cmd.output().with_context(|| format!("running {tool}"))?;
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let findings = match tool {
        "cargo xtask deps" | "cargo xtask deps --no-cache" => parse_ours(&stdout, ws)?,
        "cargo-machete" => parse_machete(&stdout, ws),
        _ => parse_shear(&stdout, ws)?,
    };
    Ok((elapsed, findings))
}

fn parse_ours(stdout: &str, ws: &Path) -> anyhow::Result<Findings> {
    let v: serde_json::Value = serde_json::from_str(stdout)
        .with_context(|| format!("parsing cargo xtask deps output for {}", ws.display()))?;
    let mut out = Findings::new();
    for m in v["members"].as_array().into_iter().flatten() {
        for d in m["dependencies"].as_array().into_iter().flatten() {
            let key = d["key"].as_str().unwrap_or("");
            let key = match d["class"].as_str() {
                Some("verified-unused") => key.to_string(),
                // Reported apart (not scored as unused): see `investigated`.
                Some("needs-investigation") => format!("?{key}"),
                _ => continue,
            };
            out.insert((m["name"].as_str().unwrap_or("").into(), key));
        }
    }
    for w in v["workspace_dependencies"].as_array().into_iter().flatten() {
        if w["class"] == "verified-unused" {
            out.insert(("[workspace]".into(), w["key"].as_str().unwrap_or("").into()));
        }
    }
    Ok(out)
}

/// cargo-machete prints `<package> -- <manifest>:` followed by one indented name per line.
fn parse_machete(stdout: &str, _ws: &Path) -> Findings {
    let mut out = Findings::new();
    let mut member: Option<String> = None;
    for line in stdout.lines() {
        if let Some((pkg, _)) = line.split_once(" -- ") {
            member = Some(pkg.trim().to_string());
        } else if line.starts_with(['\t', ' ']) && !line.trim().is_empty() {
            if let Some(m) = &member {
                out.insert((m.clone(), line.trim().to_string()));
            }
        } else {
            member = None;
        }
    }
    out
}

/// cargo-shear `--format json`.
fn parse_shear(stdout: &str, ws: &Path) -> anyhow::Result<Findings> {
    let mut out = Findings::new();
    let v: serde_json::Value = match serde_json::from_str(stdout.trim()) {
        Ok(v) => v,
        Err(_) => return Ok(out),
    };
    collect_shear(&v, ws, &mut out);
    Ok(out)
}

fn collect_shear(v: &serde_json::Value, ws: &Path, out: &mut Findings) {
    for f in v["findings"].as_array().into_iter().flatten() {
        let code = f["code"].as_str().unwrap_or("");
        if !code.contains("unused") {
            continue;
        }
        let message = f["message"].as_str().unwrap_or("");
        let Some(key) = message.split('`').nth(1) else {
            continue;
        };
        let file = f["file"].as_str().unwrap_or("Cargo.toml");
        let member = if file == "Cargo.toml" && code.contains("workspace") {
            "[workspace]".to_string()
        } else {
            package_name(&ws.join(file)).unwrap_or_else(|| file.to_string())
        };
        out.insert((member, key.to_string()));
    }
}

fn package_name(manifest: &Path) -> Option<String> {
    let doc: toml_edit::DocumentMut = std::fs::read_to_string(manifest).ok()?.parse().ok()?;
    doc.get("package")?.get("name")?.as_str().map(str::to_string)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(|| project::xtask_dir().join("deps-bench"));
    let planted = generate(&dir, args.members)?;
    let generated = dir.join("ws");
    let this = project::root();
    let mut table = String::from(
        "| workspace | tool | median time | reported unused | true positives | false positives | missed | needs investigation |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (label, ws, truth) in
        [("this repository", &this, None), ("generated", &generated, Some(&planted))]
    {
        let tools: Vec<&Tool> = TOOLS
            .iter()
            .filter(|tool| {
                let ok = installed(tool.name);
                if !ok {
                    println!(
                        "skipping {}: not installed (install with `{}`)",
                        tool.name, tool.install
                    );
                }
                ok
            })
            .collect();
        for tool in &tools {
            run_once(tool.name, ws)?; // warm-up: creates Cargo.lock, fills caches
        }
        // Round-robin, so a busy moment on the machine hits every tool alike.
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); tools.len()];
        let mut found: Vec<Findings> = vec![Findings::new(); tools.len()];
        for _ in 0..args.runs.max(1) {
            for (i, tool) in tools.iter().enumerate() {
                let (t, f) = run_once(tool.name, ws)?;
                times[i].push(t);
                found[i] = f;
            }
        }
        let mut per_tool = Vec::new();
        for ((tool, times), all) in tools.iter().zip(times).zip(found) {
            let med = median(times);
            let (investigate, findings): (Findings, Findings) =
                all.into_iter().partition(|(_, k)| k.starts_with('?'));
            let investigate = if tool.name.starts_with("cargo xtask deps") {
                investigate.len().to_string()
            } else {
                "-".into()
            };
            let (tp, fp, missed) = match truth {
                Some(truth) => (
                    findings.intersection(truth).count().to_string(),
                    findings.difference(truth).count().to_string(),
                    truth.difference(&findings).count().to_string(),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                table,
                "| {label} | {} | {:.1} ms | {} | {tp} | {fp} | {missed} | {investigate} |",
                tool.name,
                med.as_secs_f64() * 1000.0,
                findings.len()
            );
            per_tool.push((tool.name, findings));
        }
        if let Some(truth) = truth {
            for (name, findings) in &per_tool {
                let fp: Vec<_> = findings.difference(truth).take(5).collect();
                let missed: Vec<_> = truth.difference(findings).take(5).collect();
                if !fp.is_empty() || !missed.is_empty() {
                    println!(
                        "{label}: {name}: false positives e.g. {fp:?}; missed e.g. {missed:?}"
                    );
                }
            }
        } else {
            for (name, findings) in &per_tool {
                println!("{label}: {name} reports {findings:?}");
            }
        }
    }
    println!(
        "\n{} members x 20 dependencies, {} planted unused declarations (incl. 4 workspace entries), median of {} runs:\n",
        args.members,
        planted.len(),
        args.runs
    );
    print!("{table}");
    Ok(())
}
