//! The Docker backend's files, generated from the manifest: the Compose file and the
//! Dockerfiles of the two images (`app`: every service and the migrate step; `postgres`:
//! the database with its data directory made at build time). Pure: text in, text out.
//!
//! The manifest's placeholders get their container values here: `{bind_host}` is
//! 0.0.0.0, `{port}` the service's port inside its container (`fixed_port`, else 8080),
//! paths live under `/app` (cargo outputs under `/app/bin`), `{url:NAME}` is the service's
//! name on the Compose network. Values that differ per run (instance ids, published
//! ports, image tags, the database password) are Compose variables with defaults, so the
//! committed file also runs by hand.

use std::collections::BTreeMap;
use std::path::Path;

use super::super::manifest::Manifest;
use super::super::plan::{self, Plan, Process, Vars};

/// Where the workspace lives inside the app image.
pub const APP_ROOT: &str = "/app";
/// Where cargo's outputs (binaries, the FFI library) live inside the app image.
pub const APP_BIN: &str = "/app/bin";
/// The port a service listens on inside its container when the manifest names none.
pub const DEFAULT_PORT: u16 = 8080;
/// The database service's name on the Compose network (reserved in the manifest).
pub const DATABASE_SERVICE: &str = "postgres";
pub const MIGRATE_SERVICE: &str = "migrate";
/// The label that ties containers and networks to the state directory of the run that
/// made them, so what a killed run left is found without its state file.
pub const STATE_DIR_LABEL: &str = "org.tasker.xtask.state-dir";
/// The label of images xtask builds (old builds are pruned by it).
pub const IMAGE_LABEL: &str = "org.tasker.xtask.image";

pub const COMPOSE_FILE: &str = "docker-compose.test.yml";
pub const APP_DOCKERFILE: &str = "app.Dockerfile";
pub const POSTGRES_DOCKERFILE: &str = "postgres.Dockerfile";
pub const POSTGRES_ENTRYPOINT: &str = "postgres-entrypoint.sh";

/// The Compose variables a run sets (defaults in the file are for runs by hand).
pub mod vars {
    pub const CONTEXT: &str = "TASKER_DOCKER_CONTEXT";
    pub const BASE_IMAGE: &str = "TASKER_BASE_IMAGE";
    pub const APP_IMAGE: &str = "TASKER_APP_IMAGE";
    pub const POSTGRES_IMAGE: &str = "TASKER_POSTGRES_IMAGE";
    pub const DB_PASSWORD: &str = "TASKER_DB_PASSWORD";
    pub const STATE_DIR: &str = "TASKER_XTASK_STATE_DIR";

    /// `TASKER_<SERVICE>_HOST_PORT`: the published port (empty: Docker picks one).
    pub fn host_port(service: &str) -> String {
        format!("TASKER_{}_HOST_PORT", super::env_name(service))
    }

    /// `TASKER_INSTANCE_ID_<SERVICE>`: the id its health answer must carry.
    pub fn instance_id(service: &str) -> String {
        format!("TASKER_INSTANCE_ID_{}", super::env_name(service))
    }
}

/// Default image tags, used by runs by hand (xtask passes per-run tags).
pub const DEFAULT_BASE_IMAGE: &str = "tasker-ci-base:local";
const DEFAULT_APP_IMAGE: &str = "tasker-ci-app:local";
const DEFAULT_POSTGRES_IMAGE: &str = "tasker-ci-postgres:local";

/// `rust-worker` -> `RUST_WORKER`.
pub fn env_name(service: &str) -> String {
    service.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }).collect()
}

/// One generated file: its name in the docker directory and its text.
pub struct File {
    pub name: &'static str,
    pub text: String,
    pub executable: bool,
}

/// Every generated file for `manifest`, whose path (as the user named it, relative to the
/// root when inside it) goes into the headers. Host paths under `root` and the cargo
/// target directory become paths in the image.
pub fn files(manifest: &Manifest, source: &str, host: &Host) -> Result<Vec<File>, String> {
    let plan = container_plan(manifest, host)?;
    Ok(vec![
        File {
            name: COMPOSE_FILE,
            text: compose(manifest, &plan, source, host),
            executable: false,
        },
        File { name: APP_DOCKERFILE, text: app_dockerfile(source), executable: false },
        File {
            name: POSTGRES_DOCKERFILE,
            text: postgres_dockerfile(&manifest.database_name, source),
            executable: false,
        },
        File { name: POSTGRES_ENTRYPOINT, text: postgres_entrypoint(), executable: true },
    ])
}

/// Everything exists in a container: the image is built to provide it.
struct Container;

impl plan::World for Container {
    fn on_path(&self, _program: &str) -> bool {
        true
    }
    fn exists(&self, _path: &Path) -> bool {
        true
    }
}

/// Where the host keeps the workspace and cargo's outputs.
pub struct Host<'a> {
    pub root: &'a Path,
    pub target_dir: &'a Path,
}

/// The plan of every service, with the host's paths.
fn container_plan(manifest: &Manifest, host: &Host) -> Result<Plan, String> {
    let options = plan::Options {
        only: &[],
        without: &[],
        release: false,
        fixed_ports: false,
        root: host.root,
        target_dir: host.target_dir,
    };
    plan::plan(manifest, &options, &Container)
}

/// A host path as it is in the image: cargo outputs (of either profile) under `/app/bin`,
/// workspace files under `/app`; anything else (a program on PATH) as it is.
fn in_image(host: &Host, path: &Path) -> String {
    for profile in ["debug", "release"] {
        if let Ok(rest) = path.strip_prefix(host.target_dir.join(profile)) {
            return Path::new(APP_BIN).join(rest).display().to_string();
        }
    }
    match path.strip_prefix(host.root) {
        Ok(rest) if rest.as_os_str().is_empty() => APP_ROOT.to_string(),
        Ok(rest) => Path::new(APP_ROOT).join(rest).display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

fn port_of(fixed: Option<u16>) -> u16 {
    fixed.unwrap_or(DEFAULT_PORT)
}

/// `$` is Compose's interpolation character: a literal one is written `$$`.
fn escape(text: &str) -> String {
    text.replace('$', "$$")
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

fn header(source: &str, comment: &str) -> String {
    format!(
        "{comment} Generated by `cargo xtask docker generate` from {source}: do not edit.\n\
         {comment} `cargo xtask docker generate --check` (part of `cargo xtask test`) fails when it is stale.\n"
    )
}

/// The environment and command of one process inside its container.
struct Rendered {
    command: Vec<String>,
    workdir: String,
    env: Vec<(String, String)>,
}

fn render(
    host: &Host,
    process: &Process,
    port: Option<u16>,
    database_url: &str,
    urls: &BTreeMap<String, String>,
) -> Rendered {
    let instance_id = format!("${{{}:-{}}}", vars::instance_id(&process.name), process.name);
    let config = process.config.as_ref().map(|c| in_image(host, c));
    let vars = Vars {
        port,
        bind_host: "0.0.0.0",
        database_url,
        root: APP_ROOT,
        instance_id: &instance_id,
        config: config.as_deref(),
        target_dir: APP_BIN,
        urls,
    };
    // Manifest text is escaped for Compose first; then the placeholders bring in the
    // Compose variables, which must stay live.
    let fill = |template: &str| plan::render(&escape(template), &vars);
    let mut command = vec![in_image(host, &process.program)];
    command.extend(process.args.iter().map(|a| fill(a)));
    Rendered {
        command,
        workdir: in_image(host, &process.workdir),
        env: process.env.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
    }
}

fn compose(manifest: &Manifest, plan: &Plan, source: &str, host: &Host) -> String {
    let database = &manifest.database_name;
    let password = format!("${{{}:-tasker}}", vars::DB_PASSWORD);
    let database_url = format!("postgres://postgres:{password}@{DATABASE_SERVICE}:5432/{database}");
    let urls: BTreeMap<String, String> = plan
        .services()
        .map(|s| {
            (s.process.name.clone(), format!("http://{}:{}", s.process.name, port_of(s.fixed_port)))
        })
        .collect();
    let context = format!("${{{}:-../target/xtask/docker-context}}", vars::CONTEXT);
    let label =
        format!("{STATE_DIR_LABEL}: {}", quote(&format!("${{{}:-by-hand}}", vars::STATE_DIR)));
    let app_image = format!("${{{}:-{DEFAULT_APP_IMAGE}}}", vars::APP_IMAGE);
    let base_image = format!("${{{}:-{DEFAULT_BASE_IMAGE}}}", vars::BASE_IMAGE);

    let mut out = header(source, "#");
    out.push_str(
        "#\n\
         # `cargo xtask ci-docker` and `cargo xtask services up --backend docker` build the images\n\
         # and run this file with per-run values for the ${...} variables. By hand, after one such\n\
         # run (it prepares the build context and the base image):\n\
         #   docker compose -f docker/docker-compose.test.yml up --build\n\
         # Published ports bind to 127.0.0.1 only; `docker compose port SERVICE PORT` shows them.\n\
         # Compose orders the services by the healthchecks when run by hand (1 s interval;\n\
         # Compose's default is 30 s); xtask starts them in the same order with its own\n\
         # probes. `init: true` makes a stop take milliseconds instead of Docker's 10 s timeout.\n\nservices:\n",
    );
    let healthcheck = |test: Vec<String>| {
        let test: Vec<String> = ["CMD".to_string()].iter().chain(&test).map(|t| quote(t)).collect();
        format!(
            "    healthcheck:\n      test: [{}]\n      interval: 1s\n      timeout: 2s\n      retries: 60\n",
            test.join(", ")
        )
    };
    let image = |name: &str, build: Option<(&str, &str)>| {
        let mut text = format!("    image: {}\n", quote(name));
        if let Some((dir, dockerfile)) = build {
            text.push_str(&format!(
                "    build:\n      context: {}\n      dockerfile: {dockerfile}\n      args:\n        BASE_IMAGE: {}\n",
                quote(&format!("{context}/{dir}")),
                quote(&base_image)
            ));
        }
        text
    };
    let common = format!("    init: true\n    labels:\n      {label}\n");

    // The database.
    out.push_str(&format!("  {DATABASE_SERVICE}:\n"));
    out.push_str(&image(
        &format!("${{{}:-{DEFAULT_POSTGRES_IMAGE}}}", vars::POSTGRES_IMAGE),
        Some(("postgres", POSTGRES_DOCKERFILE)),
    ));
    out.push_str(&common);
    out.push_str(&format!("    environment:\n      {}: {}\n", vars::DB_PASSWORD, quote(&password)));
    out.push_str(&format!(
        "    ports:\n      - {}\n",
        quote(&format!("127.0.0.1:${{{}:-}}:5432", vars::host_port(DATABASE_SERVICE)))
    ));
    out.push_str(&healthcheck(
        ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", database]
            .map(String::from)
            .to_vec(),
    ));

    // The app image is built once, by the first service that uses it.
    let mut app_built = false;
    let mut app_image_of = || {
        let build = (!app_built).then_some(("app", APP_DOCKERFILE));
        app_built = true;
        image(&app_image, build)
    };
    let process_lines = |rendered: &Rendered| {
        let command: Vec<String> = rendered.command.iter().map(|c| quote(c)).collect();
        let mut text = format!(
            "    command: [{}]\n    working_dir: {}\n    environment:\n",
            command.join(", "),
            quote(&rendered.workdir)
        );
        for (key, value) in &rendered.env {
            text.push_str(&format!("      {key}: {}\n", quote(value)));
        }
        text
    };

    if let Some(migrate) = &plan.migrate {
        let rendered = render(host, migrate, None, &database_url, &BTreeMap::new());
        out.push_str(&format!("  {MIGRATE_SERVICE}:\n"));
        out.push_str(&app_image_of());
        out.push_str(&common);
        out.push_str(&process_lines(&rendered));
        out.push_str(&format!(
            "    depends_on:\n      {DATABASE_SERVICE}:\n        condition: service_healthy\n"
        ));
    }
    for service in plan.services() {
        let name = &service.process.name;
        let port = port_of(service.fixed_port);
        let rendered = render(host, &service.process, Some(port), &database_url, &urls);
        out.push_str(&format!("  {name}:\n"));
        out.push_str(&app_image_of());
        out.push_str(&common);
        out.push_str(&process_lines(&rendered));
        out.push_str(&format!(
            "    ports:\n      - {}\n",
            quote(&format!("127.0.0.1:${{{}:-}}:{port}", vars::host_port(name)))
        ));
        out.push_str(&healthcheck(
            [
                "curl",
                "-fsS",
                "-o",
                "/dev/null",
                &format!("http://127.0.0.1:{port}{}", service.health_path),
            ]
            .map(String::from)
            .to_vec(),
        ));
        // Ordering is Compose's: the database healthy, migrations done, dependencies healthy.
        let declared = manifest
            .services
            .iter()
            .find(|s| &s.name == name)
            .map(|s| s.depends_on.clone())
            .unwrap_or_default();
        out.push_str("    depends_on:\n");
        let mut conditions = vec![(DATABASE_SERVICE.to_string(), "service_healthy")];
        if plan.migrate.is_some() {
            conditions.push((MIGRATE_SERVICE.to_string(), "service_completed_successfully"));
        }
        conditions.extend(declared.into_iter().map(|d| (d, "service_healthy")));
        for (dependency, condition) in conditions {
            out.push_str(&format!("      {dependency}:\n        condition: {condition}\n"));
        }
    }
    out.push_str(&format!("\nnetworks:\n  default:\n    labels:\n      {label}\n"));
    out
}

/// Programs the app image needs: those the services run or require, and curl for the
/// healthchecks. A base image that lacks them (a bare public OS image) gets them from
/// its package manager at build time; the locally bootstrapped base has them already.
const APP_PACKAGES: &[&str] = &["ruby", "curl", "ca-certificates"];

fn app_dockerfile(source: &str) -> String {
    let packages = APP_PACKAGES.join(" ");
    format!(
        "{header}\n\
         # Every service of the manifest and its migrate step: the binaries and the FFI library\n\
         # built on the host (files/bin), the files the services read (configs, task templates,\n\
         # the Ruby worker). The base matches the host's OS release, so host binaries run here.\n\
         ARG BASE_IMAGE={DEFAULT_BASE_IMAGE}\n\
         FROM ${{BASE_IMAGE}}\n\
         RUN if ! command -v ruby >/dev/null || ! command -v curl >/dev/null; then \\\n\
         \x20     apt-get update && apt-get install -y --no-install-recommends {packages} \\\n\
         \x20     && rm -rf /var/lib/apt/lists/*; \\\n\
         \x20   fi \\\n\
         \x20&& useradd --system --uid 10001 --no-create-home --home-dir {APP_ROOT} tasker\n\
         COPY files/ {APP_ROOT}/\n\
         USER tasker\n\
         WORKDIR {APP_ROOT}\n\
         LABEL {IMAGE_LABEL}=\"app\"\n",
        header = header(source, "#"),
    )
}

fn postgres_dockerfile(database: &str, source: &str) -> String {
    format!(
        "{header}\n\
         # PostgreSQL with its data directory made here, at build time: initdb takes seconds,\n\
         # starting from an existing data directory a fraction of one. TCP connections need\n\
         # the password set at each start (postgres-entrypoint.sh); the socket is private.\n\
         ARG BASE_IMAGE={DEFAULT_BASE_IMAGE}\n\
         FROM ${{BASE_IMAGE}}\n\
         RUN if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \\\n\
         \x20     apt-get update && apt-get install -y --no-install-recommends postgresql \\\n\
         \x20     && rm -rf /var/lib/apt/lists/*; \\\n\
         \x20   fi \\\n\
         \x20&& ln -s /usr/lib/postgresql/*/bin /usr/local/lib/pgbin \\\n\
         \x20&& install -d -o postgres -g postgres -m 700 /var/lib/tasker-pg /var/lib/tasker-pg/run\n\
         ENV PATH=/usr/local/lib/pgbin:$PATH PGDATA=/var/lib/tasker-pg/data\n\
         USER postgres\n\
         RUN initdb -D \"$PGDATA\" -U postgres --auth-local=trust --auth-host=scram-sha-256 \\\n\
         \x20     --no-sync --locale=C --encoding=UTF8 --wal-segsize=1 --no-instructions >/dev/null \\\n\
         \x20&& echo \"host all all all scram-sha-256\" >> \"$PGDATA/pg_hba.conf\" \\\n\
         \x20&& echo \"CREATE DATABASE {database};\" | postgres --single -D \"$PGDATA\" -c fsync=off postgres >/dev/null\n\
         COPY {POSTGRES_ENTRYPOINT} /usr/local/bin/tasker-postgres\n\
         EXPOSE 5432\n\
         CMD [\"tasker-postgres\"]\n\
         LABEL {IMAGE_LABEL}=\"postgres\"\n",
        header = header(source, "#"),
    )
}

/// Copied into the postgres image, so its text names no manifest: with the same bytes for
/// every manifest, every run and every test's manifest reuse the image's layers. A new top
/// layer costs an export, several seconds of CPU where the storage driver diffs naively
/// (fuse-overlayfs: docs/analysis/ci-speed.md).
fn postgres_entrypoint() -> String {
    format!(
        "#!/bin/sh\n{header}\n\
         # Sets this run's password (single-user mode: no server yet, nothing listens), then\n\
         # becomes the server. Durability is off: the database lives as long as the container.\n\
         set -eu\n\
         case \"${{{pw}:?}}\" in *[!A-Za-z0-9]*) echo \"{pw} must be letters and digits\" >&2; exit 2;; esac\n\
         echo \"ALTER ROLE postgres PASSWORD '${pw}';\" | postgres --single -D \"$PGDATA\" -c fsync=off postgres >/dev/null\n\
         exec postgres -D \"$PGDATA\" -c listen_addresses='*' -c unix_socket_directories=/var/lib/tasker-pg/run \\\n\
         \x20 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200\n",
        header = header("the services manifest", "#"),
        pw = vars::DB_PASSWORD,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::manifest;

    fn committed_manifest() -> Manifest {
        manifest::load(&manifest::default_path()).unwrap()
    }

    fn compose_of(manifest: &Manifest) -> String {
        let host = Host { root: Path::new("/r"), target_dir: Path::new("/r/target") };
        compose(manifest, &container_plan(manifest, &host).unwrap(), "m", &host)
    }

    #[test]
    fn services_get_container_values_for_every_placeholder() {
        let text = compose_of(&committed_manifest());
        assert!(text.contains("      TASKER_WEB_BIND_ADDRESS: \"0.0.0.0:8080\"\n"), "{text}");
        assert!(text.contains(
            "      DATABASE_URL: \"postgres://postgres:${TASKER_DB_PASSWORD:-tasker}@postgres:5432/tasker_test\"\n"
        ));
        assert!(text.contains(
            "      TASKER_CONFIG_PATH: \"/app/config/tasker/generated/orchestration-test.toml\"\n"
        ));
        assert!(text.contains(
            "      TASKER_INSTANCE_ID: \"${TASKER_INSTANCE_ID_RUST_WORKER:-rust-worker}\"\n"
        ));
        assert!(
            text.contains(
                "      TASKER_RUBY_EXT_PATH: \"/app/bin/libtasker_worker_ruby_ext.so\"\n"
            )
        );
        assert!(text.contains("    command: [\"/app/bin/tasker-server\", \"migrate\"]\n"));
        assert!(text.contains(
            "    command: [\"ruby\", \"bin/server.rb\"]\n    working_dir: \"/app/workers/ruby\"\n"
        ));
        assert!(text.contains("      - \"127.0.0.1:${TASKER_RUST_WORKER_HOST_PORT:-}:8081\"\n"));
        // The app image is built by one service only; the others use it.
        assert_eq!(text.matches("dockerfile: app.Dockerfile").count(), 1);
        assert!(!text.contains("127.0.0.1:{"), "an unfilled placeholder: {text}");
    }

    #[test]
    fn dependents_wait_for_migrations_and_healthy_dependencies() {
        let depends_of = |text: &str| {
            let worker = &text[text.find("  rust-worker:\n").unwrap()..];
            let depends = &worker[worker.find("    depends_on:\n").unwrap()..];
            // The block: its first line and the deeper-indented ones below it.
            let mut lines = depends.lines();
            let first = lines.next().unwrap_or_default();
            std::iter::once(first)
                .chain(lines.take_while(|l| l.starts_with("      ")))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        };
        let database_and_migrations = "    depends_on:\n      postgres:\n        condition: service_healthy\n      migrate:\n        condition: service_completed_successfully\n";
        // The committed workers start beside orchestration: they wait for nothing else.
        let committed = committed_manifest();
        assert_eq!(depends_of(&compose_of(&committed)), database_and_migrations);
        let mut waiting = committed;
        let worker = waiting.services.iter_mut().find(|s| s.name == "rust-worker").unwrap();
        worker.depends_on = vec!["orchestration".into()];
        assert_eq!(
            depends_of(&compose_of(&waiting)),
            format!(
                "{database_and_migrations}      orchestration:\n        condition: service_healthy\n"
            )
        );
    }

    #[test]
    fn a_literal_dollar_in_the_manifest_is_escaped_for_compose() {
        let text = r#"
[services.one]
binary = "one"
env = { A = "{bind_host}:{port}", PRICE = "$5 {instance_id}" }
health = { path = "/health", service = "one" }
"#;
        let manifest = manifest::parse(Path::new("services.toml"), text).unwrap();
        let out = compose_of(&manifest);
        assert!(out.contains("      PRICE: \"$$5 ${TASKER_INSTANCE_ID_ONE:-one}\"\n"), "{out}");
    }

    #[test]
    fn the_file_copied_into_an_image_is_the_same_wherever_the_manifest_is() {
        let manifest = committed_manifest();
        let host = Host { root: Path::new("/r"), target_dir: Path::new("/r/target") };
        let text = |source: &str| -> Vec<(&'static str, String)> {
            files(&manifest, source, &host).unwrap().into_iter().map(|f| (f.name, f.text)).collect()
        };
        let (here, elsewhere) = (text("config/services.toml"), text("/tmp/t-1234/services.toml"));
        for ((name, a), (_, b)) in here.iter().zip(&elsewhere) {
            // A test's manifest in a temporary directory must not make a new image layer.
            if *name == POSTGRES_ENTRYPOINT {
                assert_eq!(a, b, "{name} names its manifest");
            } else {
                assert_ne!(a, b, "{name}'s header no longer names its manifest");
            }
        }
    }

    #[test]
    fn the_build_context_holds_what_the_services_name() {
        let manifest = committed_manifest();
        let root = Path::new("/r");
        let target = root.join("target");
        let options = plan::Options {
            only: &[],
            without: &[],
            release: true,
            fixed_ports: false,
            root,
            target_dir: &target,
        };
        let plan = plan::plan(&manifest, &options, &Container).unwrap();
        let copies: Vec<String> = plan::context_copies(&plan, root)
            .iter()
            .map(|c| format!("{} -> {}", c.from.display(), c.to.display()))
            .collect();
        for expected in [
            "/r/target/release/tasker-server -> bin/tasker-server",
            "/r/config/tasker/generated/orchestration-test.toml -> config/tasker/generated/orchestration-test.toml",
            "/r/config/tasks -> config/tasks",
            "/r/target/release/rust-worker -> bin/rust-worker",
            "/r/workers/ruby -> workers/ruby",
            "/r/target/release/libtasker_worker_ruby_ext.so -> bin/libtasker_worker_ruby_ext.so",
        ] {
            assert!(copies.contains(&expected.to_string()), "{expected} missing from {copies:#?}");
        }
        assert_eq!(copies.iter().filter(|c| c.ends_with("-> bin/tasker-server")).count(), 1);
    }
}
