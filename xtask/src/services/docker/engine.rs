//! The Docker engine's client: is an engine there, which containers a project has and
//! where they publish their ports, starting and removing containers, their logs. Each
//! is one `docker` command line ([`Run`]); the session lifecycle in `mod.rs` uses them.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use anyhow::Context as _;

use crate::sys::command::Run as _;

/// One line when no Docker engine answers: the Docker backend needs one, native none.
pub fn ensure_engine() -> anyhow::Result<String> {
    let version =
        Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).read();
    match version {
        Ok(version) => Ok(version.trim().to_string()),
        Err(failure) if failure.status.is_some() => {
            let why =
                failure.stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no answer").trim();
            crate::user_error!(
                "no Docker engine is reachable ({why}); the Docker backend needs one, `cargo xtask ci-native` needs none"
            )
        }
        Err(_) => crate::user_error!(
            "`docker` is not installed; the Docker backend needs a Docker engine, `cargo xtask ci-native` needs none"
        ),
    }
}

/// `docker start` of created containers.
pub fn start(ids: &[String]) -> anyhow::Result<()> {
    Command::new("docker")
        .arg("start")
        .args(ids)
        .stdout(Stdio::null())
        .run()
        .context("starting containers")?;
    Ok(())
}

/// A container of a project, as `docker ps` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub service: String,
    pub project: String,
    /// `created`, `running`, `restarting`, `exited`, ...
    pub state: String,
    /// Docker's status line: `Up 2 seconds`, `Exited (1) 3 seconds ago`.
    pub status: String,
    /// `127.0.0.1:49153->8080/tcp, ...`
    pub ports: String,
}

impl Container {
    pub fn exit_code(&self) -> Option<i32> {
        if self.state != "exited" && self.state != "dead" {
            return None;
        }
        let inside = self.status.split_once('(')?.1.split_once(')')?.0;
        inside.trim().parse().ok()
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "restarting" | "created" | "paused")
    }

    /// The host address that container port `port` is published on.
    pub fn published(&self, port: u16) -> Option<SocketAddr> {
        self.ports.split(',').map(str::trim).find_map(|mapping| {
            let (host, inside) = mapping.split_once("->")?;
            (inside == format!("{port}/tcp")).then(|| host.parse().ok())?
        })
    }
}

/// What `docker ps` prints per container: named fields only. (`{{json .}}` would include
/// the size, which the engine computes per container: seconds on some storage drivers.)
const PS_FORMAT: &str = concat!(
    r#"{"ID":{{json .ID}},"State":{{json .State}},"Status":{{json .Status}},"#,
    r#""Ports":{{json .Ports}},"Service":{{json (.Label "com.docker.compose.service")}},"#,
    r#""Project":{{json (.Label "com.docker.compose.project")}}}"#
);

/// Parses `docker ps --format PS_FORMAT` lines.
pub fn parse_ps(text: &str) -> Vec<Container> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|v| {
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
            Container {
                id: field("ID"),
                service: field("Service"),
                project: field("Project"),
                state: field("State"),
                status: field("Status"),
                ports: field("Ports"),
            }
        })
        .collect()
}

/// The containers `docker ps --filter <filter>` lists, stopped ones too.
pub fn ps(filter: &str) -> anyhow::Result<Vec<Container>> {
    let out = Command::new("docker")
        .args(["ps", "--all", "--no-trunc", "--filter", filter, "--format", PS_FORMAT])
        .read()
        .context("listing containers")?;
    Ok(parse_ps(&out))
}

/// The containers of a Compose project.
pub fn containers(project: &str) -> anyhow::Result<Vec<Container>> {
    ps(&format!("label=com.docker.compose.project={project}"))
}

/// The host address of `service`'s published container port.
pub fn published(project: &str, service: &str, port: u16) -> anyhow::Result<SocketAddr> {
    containers(project)?
        .iter()
        .find(|c| c.service == service)
        .and_then(|c| c.published(port))
        .with_context(|| format!("`{service}` publishes no port {port} on 127.0.0.1"))
}

/// What a container printed (its standard output, then its standard error), if `docker
/// logs` runs.
pub fn container_log(id: &str) -> Option<String> {
    let (stdout, stderr) = match Command::new("docker").args(["logs", id]).capture() {
        Ok(output) => (output.stdout, output.stderr),
        Err(failure) if failure.status.is_some() => {
            (failure.stdout.into_bytes(), failure.stderr.into_bytes())
        }
        Err(_) => return None,
    };
    let mut text = String::from_utf8_lossy(&stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&stderr));
    Some(text)
}

/// Removes containers and networks carrying `label`, without Compose.
pub fn remove_by_label(label: &str) {
    let filter = format!("label={label}");
    let ids: Vec<String> = ps(&filter).unwrap_or_default().into_iter().map(|c| c.id).collect();
    if !ids.is_empty() {
        Command::new("docker").args(["rm", "--force", "--volumes"]).args(&ids).succeeds();
    }
    if let Ok(out) =
        Command::new("docker").args(["network", "ls", "--quiet", "--filter", &filter]).read()
    {
        let networks: Vec<String> = out.lines().map(str::to_string).collect();
        if !networks.is_empty() {
            Command::new("docker").args(["network", "rm"]).args(&networks).succeeds();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_lines_give_service_state_exit_code_and_ports() {
        let text = r#"{"ID":"abc123","State":"running","Status":"Up 2 seconds","Ports":"127.0.0.1:49153->8080/tcp","Service":"orchestration","Project":"tasker-1"}
{"ID":"def456","State":"exited","Status":"Exited (0) 1 second ago","Ports":"","Service":"migrate","Project":"tasker-1"}
{"ID":"0a1","State":"exited","Status":"Exited (101) 1 second ago","Ports":"","Service":"rust-worker","Project":"tasker-1"}"#;
        let containers = parse_ps(text);
        assert_eq!(containers.len(), 3);
        assert_eq!(containers[0].service, "orchestration");
        assert_eq!(containers[0].project, "tasker-1");
        assert!(containers[0].is_running());
        assert_eq!(containers[0].exit_code(), None);
        assert_eq!(containers[0].published(8080), Some("127.0.0.1:49153".parse().unwrap()));
        assert_eq!(containers[0].published(8081), None);
        assert_eq!(containers[1].exit_code(), Some(0));
        assert_eq!(containers[2].exit_code(), Some(101));
        assert!(!containers[2].is_running());
    }
}
