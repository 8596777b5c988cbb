//! From a manifest and the command's flags to a plan: which services, in which waves,
//! with which programs, env and health checks. Pure: the outside world (PATH lookups,
//! file existence) comes in through [`World`], so every decision is unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::manifest::{Launch, Manifest, Service, Step, waves};

pub struct Options<'a> {
    /// Services asked for by name (`--only`); empty means all.
    pub only: &'a [String],
    /// Services left out on purpose (`--without`), with their tests.
    pub without: &'a [String],
    pub release: bool,
    pub fixed_ports: bool,
    pub root: &'a Path,
    pub target_dir: &'a Path,
}

/// What the plan needs to know about the machine.
pub trait World {
    fn on_path(&self, program: &str) -> bool;
    fn exists(&self, path: &Path) -> bool;
}

/// A machine whose files are checked but whose programs are not: what an image or
/// another runner provides (the Docker backend, an archive built for another machine).
pub struct FilesHere;

impl World for FilesHere {
    fn on_path(&self, _program: &str) -> bool {
        true
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// `target/<profile>`: where cargo binaries come from; `{target_dir}` in templates.
    pub profile_dir: PathBuf,
    pub migrate: Option<Process>,
    /// The migrate step's result may come from the migrated-template cache
    /// (`[migrate] cached = true`).
    pub migrate_cached: bool,
    /// Services in start order: a wave starts when the previous one is ready; the
    /// services of one wave start in parallel.
    pub waves: Vec<Vec<PlannedService>>,
    pub skipped: Vec<Skipped>,
    /// nextest filters of skipped services' tests.
    pub excluded_tests: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Process {
    pub name: String,
    pub program: PathBuf,
    /// Templates: placeholders are filled by [`render`] once ports are known.
    pub args: Vec<String>,
    pub workdir: PathBuf,
    pub env: Vec<(String, String)>,
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct PlannedService {
    pub process: Process,
    pub health_path: String,
    pub identity: String,
    pub export: Option<String>,
    pub fixed_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

impl Plan {
    pub fn services(&self) -> impl Iterator<Item = &PlannedService> {
        self.waves.iter().flatten()
    }
}

/// The selected services: `--only` names plus everything they depend on, in manifest order.
pub fn select<'m>(manifest: &'m Manifest, only: &[String]) -> Result<Vec<&'m Service>, String> {
    let by_name: BTreeMap<&str, &Service> =
        manifest.services.iter().map(|s| (s.name.as_str(), s)).collect();
    if only.is_empty() {
        return Ok(manifest.services.iter().collect());
    }
    let mut wanted = BTreeSet::new();
    let mut stack: Vec<&str> = Vec::new();
    for name in only {
        if !by_name.contains_key(name.as_str()) {
            let known: Vec<&str> = by_name.keys().copied().collect();
            return Err(format!(
                "unknown service `{name}` in --only ({} defines: {})",
                crate::sys::paths::display_path(&manifest.path),
                known.join(", ")
            ));
        }
        stack.push(name);
    }
    while let Some(name) = stack.pop() {
        if wanted.insert(name) {
            stack.extend(by_name[name].depends_on.iter().map(String::as_str));
        }
    }
    Ok(manifest.services.iter().filter(|s| wanted.contains(s.name.as_str())).collect())
}

pub fn plan(manifest: &Manifest, options: &Options, world: &dyn World) -> Result<Plan, String> {
    let selected = select(manifest, options.only)?;
    let explicitly_asked: BTreeSet<&str> = options.only.iter().map(String::as_str).collect();

    let mut skipped: Vec<Skipped> = Vec::new();
    for name in options.without {
        let Some(service) = manifest.services.iter().find(|s| &s.name == name) else {
            let known: Vec<&str> = manifest.services.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "unknown service `{name}` in --without ({} defines: {})",
                crate::sys::paths::display_path(&manifest.path),
                known.join(", ")
            ));
        };
        if service.tests.is_none() {
            return Err(format!(
                "service `{name}` has no `tests` filter in {}, so its tests cannot be left out with it: add one or drop --without {name}",
                crate::sys::paths::display_path(&manifest.path)
            ));
        }
        skipped.push(Skipped { name: name.clone(), reason: "is left out (--without)".into() });
    }
    let mut kept: Vec<&Service> = Vec::new();
    for service in topological(&selected) {
        if options.without.contains(&service.name) {
            continue;
        }
        let missing = missing_programs(&service.step, world);
        let skipped_dep = service.depends_on.iter().find(|d| skipped.iter().any(|s| &s.name == *d));
        let reason = match (missing.first(), skipped_dep) {
            (Some(program), _) => Some(format!("requires `{program}` on PATH")),
            (None, Some(dep)) => Some(format!("depends on skipped service `{dep}`")),
            (None, None) => None,
        };
        match reason {
            Some(reason)
                if service.optional && !explicitly_asked.contains(service.name.as_str()) =>
            {
                skipped.push(Skipped { name: service.name.clone(), reason })
            }
            Some(reason) => {
                let hint = match missing.first() {
                    Some(program) => {
                        format!(": install `{program}` (or leave the service out with --only)")
                    }
                    None => String::new(),
                };
                return Err(format!("service `{}` {reason}{hint}", service.name));
            }
            None => kept.push(service),
        }
    }

    let migrate = match &manifest.migrate {
        Some(step) => {
            if let Some(program) = missing_programs(step, world).first() {
                return Err(format!("the migrate step requires `{program}` on PATH: install it"));
            }
            Some(process("migrate", step, manifest, options, world)?)
        }
        None => None,
    };

    let mut planned: BTreeMap<&str, PlannedService> = BTreeMap::new();
    for service in &kept {
        if options.fixed_ports && service.fixed_port.is_none() {
            return Err(format!(
                "service `{}` has no fixed_port in {}: add one or drop --fixed-ports",
                service.name,
                crate::sys::paths::display_path(&manifest.path)
            ));
        }
        let process = process(&service.name, &service.step, manifest, options, world)?;
        planned.insert(
            &service.name,
            PlannedService {
                process,
                health_path: service.health_path.clone(),
                identity: service.identity.clone(),
                export: service.export.clone(),
                fixed_port: service.fixed_port,
            },
        );
    }
    let waves = waves(&kept)
        .into_iter()
        .map(|wave| wave.into_iter().map(|name| planned.remove(name).expect("planned")).collect())
        .collect();
    let excluded_tests = manifest
        .services
        .iter()
        .filter(|s| skipped.iter().any(|k| k.name == s.name))
        .filter_map(|s| s.tests.clone())
        .collect();
    Ok(Plan {
        profile_dir: profile_dir(options),
        migrate,
        migrate_cached: manifest.migrate_cached,
        waves,
        skipped,
        excluded_tests,
    })
}

fn missing_programs(step: &Step, world: &dyn World) -> Vec<String> {
    let mut programs: Vec<&str> = step.requires.iter().map(String::as_str).collect();
    if let Launch::Command { program, .. } = &step.launch
        && !program.contains('/')
    {
        programs.push(program);
    }
    programs.into_iter().filter(|p| !world.on_path(p)).map(str::to_string).collect()
}

/// `target/debug` or `target/release`, per `--release`.
fn profile_dir(options: &Options) -> PathBuf {
    options.target_dir.join(if options.release { "release" } else { "debug" })
}

/// The process of a step, with absolute paths and the manifest's shared `[env]` under its own.
fn process(
    name: &str,
    step: &Step,
    manifest: &Manifest,
    options: &Options,
    world: &dyn World,
) -> Result<Process, String> {
    let program = match &step.launch {
        Launch::Binary { name: binary, package } => {
            let path = profile_dir(options).join(binary);
            if !world.exists(&path) {
                let release = if options.release { " --release" } else { "" };
                let package = package
                    .as_ref()
                    .map(|p| format!(" -p {p}"))
                    .unwrap_or_else(|| " --workspace".into());
                return Err(format!(
                    "binary `{binary}` for `{name}` not found at {}: build it with `cargo build{release}{package} --bin {binary}`",
                    crate::sys::paths::display_path(&path)
                ));
            }
            path
        }
        Launch::Command { program, .. } if program.contains('/') => {
            let path = options.root.join(program);
            if !world.exists(&path) {
                return Err(format!("`{name}` runs `{program}`, which does not exist"));
            }
            path
        }
        Launch::Command { program, .. } => PathBuf::from(program),
    };
    let config = step.config.as_ref().map(|c| options.root.join(c));
    if let Some(config) = &config
        && !world.exists(config)
    {
        return Err(format!(
            "config file {} for `{name}` does not exist: generate it with `cargo xtask config --all`",
            crate::sys::paths::display_path(config)
        ));
    }
    let workdir = match &step.workdir {
        Some(dir) => options.root.join(dir),
        None => options.root.to_path_buf(),
    };
    // Shared env first so the step's own entries override it.
    let mut env: Vec<(String, String)> = manifest
        .env
        .iter()
        .filter(|(key, _)| !step.env.iter().any(|(own, _)| own == key))
        .cloned()
        .collect();
    env.extend(step.env.iter().cloned());
    Ok(Process { name: name.to_string(), program, args: step.args.clone(), workdir, env, config })
}

/// Dependencies before dependents, manifest order otherwise.
fn topological<'m>(services: &[&'m Service]) -> Vec<&'m Service> {
    waves(services)
        .into_iter()
        .flatten()
        .map(|name| *services.iter().find(|s| s.name == name).expect("selected"))
        .collect()
}

/// Values for the placeholders of one process, as the backend that runs it sees them
/// (paths inside a container differ from the host's).
pub struct Vars<'a> {
    pub port: Option<u16>,
    /// The address a service binds: loopback natively, every interface in a container.
    pub bind_host: &'a str,
    pub database_url: &'a str,
    pub root: &'a str,
    pub instance_id: &'a str,
    pub config: Option<&'a str>,
    pub target_dir: &'a str,
    /// Base URLs of the services started so far.
    pub urls: &'a BTreeMap<String, String>,
}

/// Fills the placeholders of a template (validated by the manifest already).
pub fn render(template: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match name {
            "port" => out.push_str(&vars.port.map(|p| p.to_string()).unwrap_or_default()),
            "bind_host" => out.push_str(vars.bind_host),
            "database_url" => out.push_str(vars.database_url),
            "root" => out.push_str(vars.root),
            "instance_id" => out.push_str(vars.instance_id),
            "target_dir" => out.push_str(vars.target_dir),
            "config" => out.push_str(vars.config.unwrap_or_default()),
            _ => match name.strip_prefix("url:").and_then(|s| vars.urls.get(s)) {
                Some(url) => out.push_str(url),
                None => out.push_str(&rest[open..open + close + 2]),
            },
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The cargo build that makes every binary and library a plan runs from
/// `target/<profile>/`. It selects the whole workspace, so cargo unifies features as for
/// `cargo xtask test`'s unit tests and rebuilds nothing they built (a `-p` selection
/// would build the shared crates again with other features).
pub fn build_args(release: bool) -> Vec<String> {
    let mut args: Vec<String> =
        ["build", "--workspace", "--bins", "--lib"].map(String::from).to_vec();
    if release {
        args.push("--release".into());
    }
    args
}

/// The files a plan's processes use, to be copied elsewhere (the Docker backend's build
/// context, the CI archive): each program and config file, each working directory, and
/// every `{root}/...` and `{target_dir}/...` path the env and arguments name. `to` is
/// relative to the copy's root (`/app` in an image): cargo outputs go to `bin/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub from: PathBuf,
    pub to: PathBuf,
}

pub fn context_copies(plan: &Plan, root: &Path) -> Vec<Copy> {
    let mut copies: Vec<Copy> = Vec::new();
    let mut add = |from: PathBuf| {
        let to = match from.strip_prefix(&plan.profile_dir) {
            Ok(rest) => Path::new("bin").join(rest),
            Err(_) => match from.strip_prefix(root) {
                Ok(rest) if !rest.as_os_str().is_empty() => rest.to_path_buf(),
                _ => return,
            },
        };
        if !copies.iter().any(|c| c.to == to) {
            copies.push(Copy { from, to });
        }
    };
    let processes = plan.migrate.iter().chain(plan.services().map(|s| &s.process));
    for process in processes {
        if process.program.is_absolute() {
            add(process.program.clone());
        }
        if let Some(config) = &process.config {
            add(config.clone());
        }
        add(process.workdir.clone());
        let templates = process.args.iter().chain(process.env.iter().map(|(_, v)| v));
        for template in templates {
            for (placeholder, base) in
                [("{root}/", root), ("{target_dir}/", plan.profile_dir.as_path())]
            {
                for rest in template.split(placeholder).skip(1) {
                    let end = rest
                        .find(|c: char| c.is_whitespace() || matches!(c, ':' | ';' | ',' | '{'));
                    let path = &rest[..end.unwrap_or(rest.len())];
                    if !path.is_empty() {
                        add(base.join(path));
                    }
                }
            }
        }
    }
    copies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::manifest;

    const MANIFEST: &str = r#"
[env]
DATABASE_URL = "{database_url}"
TASKER_CONFIG_PATH = "{config}"
RUST_LOG = "info"

[migrate]
binary = "tasker-server"
args = ["migrate"]
config = "config/orch.toml"

[services.orchestration]
binary = "tasker-server"
package = "tasker-orchestration"
config = "config/orch.toml"
env = { TASKER_WEB_BIND_ADDRESS = "{bind_host}:{port}", RUST_LOG = "debug" }
health = { path = "/health", service = "tasker-orchestration" }
export = "TASKER_TEST_ORCHESTRATION_URL"
fixed_port = 8080

[services.rust-worker]
binary = "rust-worker"
config = "config/worker.toml"
env = { TASKER_WEB_BIND_ADDRESS = "127.0.0.1:{port}" }
depends_on = ["orchestration"]
health = { path = "/health", service = "tasker-worker" }
export = "TASKER_TEST_WORKER_URL"

[services.ruby-worker]
command = ["bundle"]
args = ["exec", "bin/server.rb"]
workdir = "workers/ruby"
env = { TASKER_WEB_BIND_ADDRESS = "127.0.0.1:{port}", ORCH = "{url:orchestration}" }
requires = ["ruby"]
optional = true
tests = "binary(ruby_worker)"
depends_on = ["orchestration"]
health = { path = "/health", service = "tasker-worker" }
export = "TASKER_TEST_RUBY_WORKER_URL"
"#;

    struct FakeWorld {
        programs: Vec<&'static str>,
        missing_files: Vec<&'static str>,
    }

    impl World for FakeWorld {
        fn on_path(&self, program: &str) -> bool {
            self.programs.contains(&program)
        }
        fn exists(&self, path: &Path) -> bool {
            !self.missing_files.iter().any(|m| path.ends_with(m))
        }
    }

    fn everything() -> FakeWorld {
        FakeWorld { programs: vec!["ruby", "bundle"], missing_files: vec![] }
    }

    fn manifest() -> Manifest {
        manifest::parse(Path::new("/r/config/services.toml"), MANIFEST).unwrap()
    }

    fn run(only: &[&str], world: &FakeWorld) -> Result<Plan, String> {
        let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
        let options = Options {
            only: &only,
            without: &[],
            release: false,
            fixed_ports: false,
            root: Path::new("/r"),
            target_dir: Path::new("/r/target"),
        };
        plan(&manifest(), &options, world)
    }

    fn wave_names(plan: &Plan) -> Vec<Vec<&str>> {
        plan.waves.iter().map(|w| w.iter().map(|s| s.process.name.as_str()).collect()).collect()
    }

    #[test]
    fn dependents_wait_for_their_dependencies_and_siblings_start_together() {
        let plan = run(&[], &everything()).unwrap();
        assert_eq!(
            wave_names(&plan),
            vec![vec!["orchestration"], vec!["rust-worker", "ruby-worker"]]
        );
        assert!(plan.skipped.is_empty());
    }

    #[test]
    fn only_pulls_in_dependencies() {
        let plan = run(&["rust-worker"], &everything()).unwrap();
        assert_eq!(wave_names(&plan), vec![vec!["orchestration"], vec!["rust-worker"]]);
        let plan = run(&["orchestration"], &everything()).unwrap();
        assert_eq!(wave_names(&plan), vec![vec!["orchestration"]]);
    }

    #[test]
    fn unknown_only_names_the_known_services() {
        let err = run(&["rust_worker"], &everything()).unwrap_err();
        assert_eq!(
            err,
            "unknown service `rust_worker` in --only (config/services.toml defines: orchestration, ruby-worker, rust-worker)"
                .replace("config/services.toml", "/r/config/services.toml")
        );
    }

    #[test]
    fn missing_optional_requirement_skips_and_excludes_its_tests() {
        let world = FakeWorld { programs: vec!["bundle"], missing_files: vec![] };
        let plan = run(&[], &world).unwrap();
        assert_eq!(wave_names(&plan), vec![vec!["orchestration"], vec!["rust-worker"]]);
        assert_eq!(
            plan.skipped,
            vec![Skipped { name: "ruby-worker".into(), reason: "requires `ruby` on PATH".into() }]
        );
        assert_eq!(plan.excluded_tests, vec!["binary(ruby_worker)"]);
    }

    #[test]
    fn asking_for_an_optional_service_makes_it_required() {
        let world = FakeWorld { programs: vec!["ruby"], missing_files: vec![] };
        let err = run(&["ruby-worker"], &world).unwrap_err();
        assert!(
            err.starts_with("service `ruby-worker` requires `bundle` on PATH: install `bundle`"),
            "{err}"
        );
    }

    fn plan_without(names: &[&str]) -> Result<Plan, String> {
        let without: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let options = Options {
            only: &[],
            without: &without,
            release: false,
            fixed_ports: false,
            root: Path::new("/r"),
            target_dir: Path::new("/r/target"),
        };
        plan(&manifest(), &options, &everything())
    }

    #[test]
    fn without_leaves_a_service_and_its_tests_out() {
        let plan = plan_without(&["ruby-worker"]).unwrap();
        assert_eq!(wave_names(&plan), vec![vec!["orchestration"], vec!["rust-worker"]]);
        assert_eq!(plan.excluded_tests, vec!["binary(ruby_worker)"]);
        assert_eq!(plan.skipped[0].reason, "is left out (--without)");
        let err = plan_without(&["rust-worker"]).unwrap_err();
        assert!(err.contains("has no `tests` filter"), "{err}");
        let err = plan_without(&["rubyworker"]).unwrap_err();
        assert!(err.starts_with("unknown service `rubyworker` in --without"), "{err}");
    }

    #[test]
    fn missing_binary_says_how_to_build_it() {
        let world = FakeWorld { programs: vec![], missing_files: vec!["debug/rust-worker"] };
        let err = run(&[], &world).unwrap_err();
        assert_eq!(
            err,
            "binary `rust-worker` for `rust-worker` not found at /r/target/debug/rust-worker: build it with `cargo build --workspace --bin rust-worker`"
        );
    }

    #[test]
    fn missing_config_says_how_to_generate_it() {
        let world = FakeWorld { programs: vec![], missing_files: vec!["config/worker.toml"] };
        let err = run(&["rust-worker"], &world).unwrap_err();
        assert!(err.contains("generate it with `cargo xtask config --all`"), "{err}");
    }

    #[test]
    fn paths_are_absolute_and_service_env_overrides_shared_env() {
        let plan = run(&[], &everything()).unwrap();
        let orch = &plan.waves[0][0].process;
        assert_eq!(orch.program, Path::new("/r/target/debug/tasker-server"));
        assert_eq!(orch.config.as_deref(), Some(Path::new("/r/config/orch.toml")));
        assert_eq!(orch.workdir, Path::new("/r"));
        let rust_log: Vec<_> = orch.env.iter().filter(|(k, _)| k == "RUST_LOG").collect();
        assert_eq!(rust_log, vec![&("RUST_LOG".to_string(), "debug".to_string())]);
        let ruby = &plan.waves[1][1].process;
        assert_eq!(ruby.workdir, Path::new("/r/workers/ruby"));
        assert_eq!(ruby.program, Path::new("bundle"));
        let migrate = plan.migrate.unwrap();
        assert!(migrate.env.iter().any(|(k, v)| k == "DATABASE_URL" && v == "{database_url}"));
    }

    #[test]
    fn fixed_ports_need_a_port_for_every_service() {
        let only = vec!["rust-worker".to_string()];
        let options = Options {
            only: &only,
            without: &[],
            release: true,
            fixed_ports: true,
            root: Path::new("/r"),
            target_dir: Path::new("/r/target"),
        };
        let err = plan(&manifest(), &options, &everything()).unwrap_err();
        assert!(err.starts_with("service `rust-worker` has no fixed_port"), "{err}");
    }

    #[test]
    fn render_fills_every_placeholder() {
        let urls =
            BTreeMap::from([("orchestration".to_string(), "http://127.0.0.1:9".to_string())]);
        let vars = Vars {
            port: Some(4242),
            bind_host: "127.0.0.1",
            database_url: "postgres://u@h/db",
            root: "/r",
            instance_id: "id-1",
            config: Some("/r/c.toml"),
            target_dir: "/r/target/debug",
            urls: &urls,
        };
        assert_eq!(
            render(
                "{bind_host}:{port} {database_url} {root}/x {instance_id} {config} {url:orchestration} {target_dir}/lib.so",
                &vars
            ),
            "127.0.0.1:4242 postgres://u@h/db /r/x id-1 /r/c.toml http://127.0.0.1:9 /r/target/debug/lib.so"
        );
        assert_eq!(render("no placeholders", &vars), "no placeholders");
    }
}
