//! The services manifest (`config/services.toml`): the one description of the services
//! that every backend starts. Parsing and validation only; no effects besides reading the
//! file. Every error names the file and line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use toml_edit::{Document, Item, Table, Value};

use crate::sys::{error, paths};

/// The manifest, validated: names are unique, dependencies exist and have no cycle,
/// placeholders are known.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// The database created in the throwaway cluster.
    pub database_name: String,
    /// Environment shared by the migrate step and every service (services override).
    pub env: Vec<(String, String)>,
    /// The one-off step run against the database before any service starts.
    pub migrate: Option<Step>,
    /// `[migrate] cached = true`: the step's result depends only on its program's bytes,
    /// its args, env and config file, so a throwaway cluster it migrated before may be
    /// copied instead of running it again (the native backend's migrated template).
    pub migrate_cached: bool,
    /// In manifest order.
    pub services: Vec<Service>,
}

/// How a process starts: a cargo binary of the workspace or an arbitrary command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// Looked up in the target dir of the selected profile.
    Binary { name: String, package: Option<String> },
    /// `program` is found on PATH (or is a path relative to the workspace root);
    /// `package` is a workspace package it needs built (e.g. a library it loads).
    Command { program: String, package: Option<String> },
}

/// A process to run: the migrate step or the start of a service.
#[derive(Debug, Clone)]
pub struct Step {
    pub launch: Launch,
    pub args: Vec<String>,
    /// Working directory relative to the workspace root (default: the root).
    pub workdir: Option<String>,
    /// Config file relative to the workspace root, available as `{config}`.
    pub config: Option<String>,
    pub env: Vec<(String, String)>,
    /// Programs that must be on PATH.
    pub requires: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub step: Step,
    pub depends_on: Vec<String>,
    pub health_path: String,
    /// The `service` field the health body must carry.
    pub identity: String,
    /// The test variable that receives the service's base URL.
    pub export: Option<String>,
    /// A missing requirement skips the service (with a warning) instead of failing.
    pub optional: bool,
    /// A nextest filter selecting the service's tests, excluded when it is skipped.
    pub tests: Option<String>,
    /// The port used with `--fixed-ports`.
    pub fixed_port: Option<u16>,
    /// 1-based line of the service's table, for messages.
    pub line: usize,
}

/// Placeholders a value may contain. `{url:NAME}` is checked separately.
pub const PLACEHOLDERS: &[&str] =
    &["port", "bind_host", "database_url", "root", "instance_id", "config", "target_dir"];

pub fn default_path() -> PathBuf {
    paths::root().join("config/services.toml")
}

/// Reads and validates the manifest at `path`.
pub fn load(path: &Path) -> anyhow::Result<Manifest> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            crate::user_error!("cannot read services manifest {}: {err}", path.display())
        }
    };
    parse(path, &text).map_err(|e| anyhow::Error::new(error::UserError(e)))
}

/// Parses manifest text; the error is one line, `file:line: message`.
pub fn parse(path: &Path, text: &str) -> Result<Manifest, String> {
    let file = paths::display_path(path);
    let at = |span: Option<std::ops::Range<usize>>| -> String {
        let line = span.map(|s| line_of(text, s.start)).unwrap_or(1);
        format!("{file}:{line}")
    };
    let doc = Document::parse(text).map_err(|e| {
        let message = e.message().trim().to_string();
        format!("{}: malformed TOML: {message}", at(e.span()))
    })?;
    let root = doc.as_table();
    let ctx = Ctx { at: &at };
    ctx.known_keys(root, &["database", "env", "migrate", "services"], "the top level")?;

    let mut database_name = "tasker_test".to_string();
    if let Some(item) = root.get("database") {
        let table = ctx.table(item, "[database]")?;
        ctx.known_keys(table, &["name"], "[database]")?;
        if let Some(item) = table.get("name") {
            database_name = ctx.string(item, "database.name")?;
            if database_name.is_empty()
                || !database_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!(
                    "{}: database.name must be letters, digits and `_`, got `{database_name}`",
                    at(item.span())
                ));
            }
        }
    }
    let env = match root.get("env") {
        Some(item) => ctx.env(item, "[env]", false)?,
        None => Vec::new(),
    };
    let mut migrate_cached = false;
    let migrate = match root.get("migrate") {
        Some(item) => {
            let table = ctx.table(item, "[migrate]")?;
            let mut keys = STEP_KEYS.to_vec();
            keys.push("cached");
            ctx.known_keys(table, &keys, "[migrate]")?;
            if let Some(item) = table.get("cached") {
                migrate_cached = item.as_bool().ok_or_else(|| {
                    format!("{}: [migrate] cached must be true or false", at(item.span()))
                })?;
            }
            Some(ctx.step(table, "[migrate]", false)?)
        }
        None => None,
    };

    let mut services = Vec::new();
    if let Some(item) = root.get("services") {
        let table = ctx.table(item, "[services]")?;
        for (name, item) in table.iter() {
            let section = format!("[services.{name}]");
            let service = ctx.table(item, &section)?;
            if name.is_empty()
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "{}: service name `{name}` must be letters, digits, `-` and `_`",
                    at(service.span())
                ));
            }
            if RESERVED.contains(&name) {
                return Err(format!(
                    "{}: service name `{name}` is reserved (the database and the migrate step use it); pick another",
                    at(service.span())
                ));
            }
            let mut keys = STEP_KEYS.to_vec();
            keys.extend(["depends_on", "health", "export", "optional", "tests", "fixed_port"]);
            ctx.known_keys(service, &keys, &section)?;
            let step = ctx.step(service, &section, true)?;
            let depends_on = match service.get("depends_on") {
                Some(item) => ctx.strings(item, &format!("{section} depends_on"))?,
                None => Vec::new(),
            };
            let health = service.get("health").ok_or_else(|| {
                format!(
                    "{}: {section} needs `health = {{ path = \"/health\", service = \"...\" }}`",
                    at(service.span())
                )
            })?;
            let health_table = ctx.table_like(health, &format!("{section} health"))?;
            let mut health_path = None;
            let mut identity = None;
            for (key, value) in health_table {
                match key {
                    "path" => health_path = Some(ctx.string(&value, "health.path")?),
                    "service" => identity = Some(ctx.string(&value, "health.service")?),
                    other => {
                        return Err(format!(
                            "{}: unknown key `{other}` in {section} health (expected path, service)",
                            at(value.span())
                        ));
                    }
                }
            }
            let health_path = health_path
                .ok_or_else(|| format!("{}: {section} health needs `path`", at(health.span())))?;
            if !health_path.starts_with('/') {
                return Err(format!(
                    "{}: {section} health.path must start with `/`, got `{health_path}`",
                    at(health.span())
                ));
            }
            let identity = identity.ok_or_else(|| {
                format!(
                    "{}: {section} health needs `service` (the identity its health body reports)",
                    at(health.span())
                )
            })?;
            let export = match service.get("export") {
                Some(item) => {
                    let var = ctx.string(item, &format!("{section} export"))?;
                    if var.is_empty()
                        || !var
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    {
                        return Err(format!(
                            "{}: {section} export must be an environment variable name, got `{var}`",
                            at(item.span())
                        ));
                    }
                    Some(var)
                }
                None => None,
            };
            let optional = match service.get("optional") {
                Some(item) => item.as_bool().ok_or_else(|| {
                    format!("{}: {section} optional must be true or false", at(item.span()))
                })?,
                None => false,
            };
            let tests = match service.get("tests") {
                Some(item) => Some(ctx.string(item, &format!("{section} tests"))?),
                None => None,
            };
            let fixed_port = match service.get("fixed_port") {
                Some(item) => Some(
                    item.as_integer()
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|p| *p > 0)
                        .ok_or_else(|| {
                            format!(
                                "{}: {section} fixed_port must be a port number (1-65535)",
                                at(item.span())
                            )
                        })?,
                ),
                None => None,
            };
            let mentions_port = step
                .args
                .iter()
                .chain(step.env.iter().map(|(_, v)| v))
                .any(|v| v.contains("{port}"));
            if !mentions_port {
                return Err(format!(
                    "{}: {section} never receives its port: use `{{port}}` in its env (e.g. TASKER_WEB_BIND_ADDRESS = \"{{bind_host}}:{{port}}\") or args",
                    at(service.span())
                ));
            }
            services.push(Service {
                name: name.to_string(),
                step,
                depends_on,
                health_path,
                identity,
                export,
                optional,
                tests,
                fixed_port,
                line: line_of(text, service.span().map(|s| s.start).unwrap_or(0)),
            });
        }
    }

    let manifest = Manifest {
        path: path.to_path_buf(),
        database_name,
        env,
        migrate,
        migrate_cached,
        services,
    };
    validate_graph(&manifest, &file)?;
    Ok(manifest)
}

/// Names the backends give the database and the migrate step (log files, containers).
const RESERVED: &[&str] = &["postgres", "migrate"];

const STEP_KEYS: &[&str] =
    &["binary", "package", "command", "args", "workdir", "config", "env", "requires"];

struct Ctx<'a> {
    at: &'a dyn Fn(Option<std::ops::Range<usize>>) -> String,
}

impl Ctx<'_> {
    fn table<'t>(&self, item: &'t Item, what: &str) -> Result<&'t Table, String> {
        item.as_table().ok_or_else(|| format!("{}: {what} must be a table", (self.at)(item.span())))
    }

    /// A table or an inline table, as (key, item-or-value) pairs with spans.
    fn table_like<'t>(&self, item: &'t Item, what: &str) -> Result<Vec<(&'t str, Item)>, String> {
        if let Some(table) = item.as_table() {
            return Ok(table.iter().map(|(k, v)| (k, v.clone())).collect());
        }
        if let Some(inline) = item.as_inline_table() {
            return Ok(inline.iter().map(|(k, v)| (k, Item::Value(v.clone()))).collect());
        }
        Err(format!("{}: {what} must be a table", (self.at)(item.span())))
    }

    fn known_keys(&self, table: &Table, known: &[&str], what: &str) -> Result<(), String> {
        for (key, item) in table.iter() {
            if !known.contains(&key) {
                let span = table.key(key).and_then(|k| k.span()).or_else(|| item.span());
                return Err(format!(
                    "{}: unknown key `{key}` in {what} (expected one of: {})",
                    (self.at)(span),
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }

    fn string(&self, item: &Item, what: &str) -> Result<String, String> {
        item.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{}: {what} must be a string", (self.at)(item.span())))
    }

    fn strings(&self, item: &Item, what: &str) -> Result<Vec<String>, String> {
        let array = item.as_array().ok_or_else(|| {
            format!("{}: {what} must be an array of strings", (self.at)(item.span()))
        })?;
        array
            .iter()
            .map(|v: &Value| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    format!("{}: {what} must be an array of strings", (self.at)(v.span()))
                })
            })
            .collect()
    }

    fn env(
        &self,
        item: &Item,
        what: &str,
        allow_port: bool,
    ) -> Result<Vec<(String, String)>, String> {
        let mut env = Vec::new();
        for (key, value) in self.table_like(item, what)? {
            let text = self.string(&value, &format!("{what} {key}"))?;
            check_placeholders(&text, allow_port)
                .map_err(|m| format!("{}: {what} {key}: {m}", (self.at)(value.span())))?;
            check_not_relative_path(&text)
                .map_err(|m| format!("{}: {what} {key}: {m}", (self.at)(value.span())))?;
            env.push((key.to_string(), text));
        }
        Ok(env)
    }

    fn step(&self, table: &Table, section: &str, is_service: bool) -> Result<Step, String> {
        let span = (self.at)(table.span());
        let launch = match (table.get("binary"), table.get("command")) {
            (Some(binary), None) => Launch::Binary {
                name: self.string(binary, &format!("{section} binary"))?,
                package: match table.get("package") {
                    Some(item) => Some(self.string(item, &format!("{section} package"))?),
                    None => None,
                },
            },
            (None, Some(command)) => {
                let mut argv = self.strings(command, &format!("{section} command"))?;
                if argv.is_empty() {
                    return Err(format!(
                        "{}: {section} command must not be empty",
                        (self.at)(command.span())
                    ));
                }
                let program = argv.remove(0);
                if !argv.is_empty() {
                    return Err(format!(
                        "{}: {section} command names the program only; put its arguments in `args`",
                        (self.at)(command.span())
                    ));
                }
                let package = match table.get("package") {
                    Some(item) => Some(self.string(item, &format!("{section} package"))?),
                    None => None,
                };
                Launch::Command { program, package }
            }
            (Some(_), Some(_)) => {
                return Err(format!("{span}: {section} has both `binary` and `command`; keep one"));
            }
            (None, None) => {
                return Err(format!(
                    "{span}: {section} needs `binary` (a cargo binary) or `command`"
                ));
            }
        };
        let args = match table.get("args") {
            Some(item) => {
                let args = self.strings(item, &format!("{section} args"))?;
                for arg in &args {
                    check_placeholders(arg, is_service)
                        .map_err(|m| format!("{}: {section} args: {m}", (self.at)(item.span())))?;
                }
                args
            }
            None => Vec::new(),
        };
        let workdir = match table.get("workdir") {
            Some(item) => Some(self.relative_path(item, &format!("{section} workdir"))?),
            None => None,
        };
        let config = match table.get("config") {
            Some(item) => Some(self.relative_path(item, &format!("{section} config"))?),
            None => None,
        };
        let env = match table.get("env") {
            Some(item) => self.env(item, &format!("{section} env"), is_service)?,
            None => Vec::new(),
        };
        let requires = match table.get("requires") {
            Some(item) => self.strings(item, &format!("{section} requires"))?,
            None => Vec::new(),
        };
        Ok(Step { launch, args, workdir, config, env, requires })
    }

    /// Paths in the manifest are relative to the workspace root; the plan makes them absolute.
    fn relative_path(&self, item: &Item, what: &str) -> Result<String, String> {
        let path = self.string(item, what)?;
        if path.is_empty() || Path::new(&path).is_absolute() || path.split('/').any(|c| c == "..") {
            return Err(format!(
                "{}: {what} must be a path inside the workspace, relative to its root, got `{path}`",
                (self.at)(item.span())
            ));
        }
        Ok(path)
    }
}

/// Every `{...}` in `text` must be a known placeholder (`{port}` only where a port exists).
pub fn check_placeholders(text: &str, allow_port: bool) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("unclosed `{{` in `{text}`"))?;
        let name = &after[..close];
        let known = PLACEHOLDERS.contains(&name)
            || name.strip_prefix("url:").is_some_and(|s| !s.is_empty());
        if !known {
            return Err(format!(
                "unknown placeholder `{{{name}}}` (known: {{port}}, {{bind_host}}, {{database_url}}, {{root}}, {{instance_id}}, {{config}}, {{target_dir}}, {{url:SERVICE}})"
            ));
        }
        if name == "port" && !allow_port {
            return Err("`{port}` is only available in a service's own env and args".to_string());
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Services may run from another directory, so a path handed to them must be absolute:
/// `{root}/...` rather than `config/...` or `./...`.
fn check_not_relative_path(text: &str) -> Result<(), String> {
    let looks_relative = text.starts_with("./")
        || text.starts_with("../")
        || (text.contains('/')
            && !text.starts_with('/')
            && !text.starts_with('{')
            && !text.contains("://"));
    if looks_relative {
        return Err(format!(
            "`{text}` looks like a relative path; write `{{root}}/{}`",
            text.trim_start_matches("./")
        ));
    }
    Ok(())
}

fn validate_graph(manifest: &Manifest, file: &str) -> Result<(), String> {
    let names: BTreeSet<&str> = manifest.services.iter().map(|s| s.name.as_str()).collect();
    let mut exports = BTreeSet::new();
    let mut fixed_ports = BTreeSet::new();
    for service in &manifest.services {
        let at = format!("{file}:{}", service.line);
        for dep in &service.depends_on {
            if !names.contains(dep.as_str()) {
                return Err(format!(
                    "{at}: service `{}` depends on unknown service `{dep}`",
                    service.name
                ));
            }
            if dep == &service.name {
                return Err(format!("{at}: service `{}` depends on itself", service.name));
            }
        }
        let placeholders = service.step.args.iter().chain(service.step.env.iter().map(|(_, v)| v));
        for value in placeholders {
            for target in url_placeholders(value) {
                if !service.depends_on.iter().any(|d| d == target) {
                    return Err(format!(
                        "{at}: service `{}` uses `{{url:{target}}}` but does not list `{target}` in depends_on",
                        service.name
                    ));
                }
            }
        }
        if let Some(var) = &service.export
            && !exports.insert(var.as_str())
        {
            return Err(format!("{at}: `{var}` is exported by two services"));
        }
        if let Some(port) = service.fixed_port
            && !fixed_ports.insert(port)
        {
            return Err(format!("{at}: fixed_port {port} is used by two services"));
        }
    }
    for (_, value) in manifest.env.iter().chain(manifest.migrate.iter().flat_map(|m| m.env.iter()))
    {
        if let Some(target) = url_placeholders(value).next() {
            return Err(format!(
                "{file}: `{{url:{target}}}` is only available in a service's own env"
            ));
        }
    }
    // A cycle leaves services that never become startable.
    let all: Vec<&Service> = manifest.services.iter().collect();
    let placed: BTreeSet<&str> = waves(&all).into_iter().flatten().collect();
    if let Some(stuck) = manifest.services.iter().find(|s| !placed.contains(s.name.as_str())) {
        return Err(format!(
            "{file}:{}: dependency cycle through service `{}`",
            stuck.line, stuck.name
        ));
    }
    Ok(())
}

/// Groups services into start waves: each wave depends only on earlier waves. A
/// dependency outside `services` (skipped) holds nothing up; services in a cycle are
/// left out.
pub fn waves<'m>(services: &[&'m Service]) -> Vec<Vec<&'m str>> {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut waves = Vec::new();
    loop {
        let wave: Vec<&str> = services
            .iter()
            .filter(|s| !done.contains(s.name.as_str()))
            .filter(|s| {
                s.depends_on
                    .iter()
                    .all(|d| done.contains(d.as_str()) || !names.contains(d.as_str()))
            })
            .map(|s| s.name.as_str())
            .collect();
        if wave.is_empty() {
            return waves;
        }
        done.extend(wave.iter().copied());
        waves.push(wave);
    }
}

/// The service names in `{url:NAME}` placeholders of `text`.
pub fn url_placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.split("{url:").skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[database]
name = "tasker_test"

[env]
DATABASE_URL = "{database_url}"
TASKER_CONFIG_PATH = "{config}"

[migrate]
binary = "tasker-server"
args = ["migrate"]
config = "config/a.toml"

[services.orchestration]
binary = "tasker-server"
package = "tasker-orchestration"
config = "config/a.toml"
env = { TASKER_WEB_BIND_ADDRESS = "{bind_host}:{port}" }
health = { path = "/health", service = "tasker-orchestration" }
export = "TASKER_TEST_ORCHESTRATION_URL"

[services.worker]
command = ["ruby"]
args = ["bin/server.rb", "--port", "{port}"]
workdir = "workers/ruby"
env = { ORCH = "{url:orchestration}" }
requires = ["ruby"]
optional = true
depends_on = ["orchestration"]
health = { path = "/health", service = "tasker-worker" }
"#;

    fn parse_str(text: &str) -> Result<Manifest, String> {
        parse(Path::new("/nowhere/services.toml"), text)
    }

    #[test]
    fn parses_binaries_commands_and_dependencies() {
        let m = parse_str(GOOD).unwrap();
        assert_eq!(m.database_name, "tasker_test");
        assert_eq!(m.services.len(), 2);
        let orch = &m.services[0];
        assert_eq!(
            orch.step.launch,
            Launch::Binary {
                name: "tasker-server".into(),
                package: Some("tasker-orchestration".into())
            }
        );
        assert_eq!(orch.identity, "tasker-orchestration");
        assert_eq!(orch.line, 14);
        let worker = &m.services[1];
        assert_eq!(worker.step.launch, Launch::Command { program: "ruby".into(), package: None });
        assert_eq!(worker.depends_on, vec!["orchestration"]);
        assert!(worker.optional);
        assert_eq!(m.migrate.unwrap().args, vec!["migrate"]);
    }

    fn error_of(text: &str) -> String {
        parse_str(text).unwrap_err()
    }

    #[test]
    fn malformed_toml_names_file_and_line() {
        let err = error_of("[services.a]\nbinary = \"x\"\nhealth = {\n");
        assert!(err.starts_with("/nowhere/services.toml:3: malformed TOML"), "{err}");
    }

    #[test]
    fn unknown_key_is_reported_at_its_line() {
        let text = GOOD.replace("optional = true", "optional = true\nport = 8081");
        let err = error_of(&text);
        assert!(err.contains("services.toml:29: unknown key `port` in [services.worker]"), "{err}");
    }

    #[test]
    fn unknown_dependency_and_cycles_are_rejected() {
        let text = GOOD.replace("depends_on = [\"orchestration\"]", "depends_on = [\"nope\"]");
        assert!(error_of(&text).contains("depends on unknown service `nope`"));
        let text = GOOD.replace(
            "export = \"TASKER_TEST_ORCHESTRATION_URL\"",
            "export = \"TASKER_TEST_ORCHESTRATION_URL\"\ndepends_on = [\"worker\"]",
        );
        assert!(error_of(&text).contains("dependency cycle"), "{}", error_of(&text));
    }

    #[test]
    fn placeholders_are_checked() {
        let text = GOOD.replace("{database_url}", "{db_url}");
        assert!(error_of(&text).contains("unknown placeholder `{db_url}`"));
        let text = GOOD.replace("TASKER_CONFIG_PATH = \"{config}\"", "X = \"{port}\"");
        assert!(error_of(&text).contains("`{port}` is only available"), "{}", error_of(&text));
        let text = GOOD.replace("depends_on = [\"orchestration\"]\n", "");
        assert!(error_of(&text).contains("does not list `orchestration` in depends_on"));
    }

    #[test]
    fn relative_paths_in_env_are_rejected() {
        let text = GOOD.replace("ORCH = \"{url:orchestration}\"", "T = \"config/tasks\"");
        let err = error_of(&text);
        assert!(err.contains("write `{root}/config/tasks`"), "{err}");
        let text = GOOD.replace("workdir = \"workers/ruby\"", "workdir = \"/abs\"");
        assert!(error_of(&text).contains("workdir must be a path inside the workspace"));
    }

    #[test]
    fn a_service_must_receive_its_port_and_identity() {
        let text = GOOD.replace("\"--port\", \"{port}\"", "\"--quiet\"");
        assert!(error_of(&text).contains("never receives its port"));
        let text = GOOD.replace(", service = \"tasker-worker\"", "");
        assert!(error_of(&text).contains("health needs `service`"));
    }

    #[test]
    fn fixed_ports_must_differ() {
        let text = GOOD.replace("optional = true", "optional = true\nfixed_port = 8080").replace(
            "export = \"TASKER_TEST_ORCHESTRATION_URL\"",
            "export = \"TASKER_TEST_ORCHESTRATION_URL\"\nfixed_port = 8080",
        );
        assert!(
            error_of(&text).contains("fixed_port 8080 is used by two services"),
            "{}",
            error_of(&text)
        );
    }

    #[test]
    fn binary_xor_command() {
        let text = GOOD.replace("command = [\"ruby\"]", "command = [\"ruby\"]\nbinary = \"x\"");
        assert!(error_of(&text).contains("both `binary` and `command`"));
    }

    #[test]
    fn the_database_and_migrate_names_are_reserved() {
        let text = GOOD.replace("[services.worker]", "[services.postgres]");
        assert!(
            error_of(&text).contains("service name `postgres` is reserved"),
            "{}",
            error_of(&text)
        );
    }
}
