//! The base image, when no registry can be reached: built locally from this machine's own
//! package sources (`mmdebstrap ... | docker import`), the same OS release as the host so
//! host-built binaries run inside. Tagged with a hash of what went into it and skipped
//! when present. The OS release and the apt sources are parsed by pure functions.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::generate::IMAGE_LABEL;
use crate::sys::command::Run as _;
use crate::sys::{paths, process};

/// Bumped when the recipe below changes, so an image made the old way is not reused.
const RECIPE: &str = "r1";
/// What the services and the database need: the base image carries it all, so the
/// Dockerfiles install nothing (they would need a network to).
const PACKAGES: &[&str] = &["ca-certificates", "curl", "postgresql", "ruby"];

/// The fields of `/etc/os-release` that pick a base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
    pub codename: String,
}

pub fn parse_os_release(text: &str) -> OsRelease {
    let field = |key: &str| {
        text.lines()
            .filter_map(|line| line.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().trim_matches('"').trim_matches('\'').to_string())
            .unwrap_or_default()
    };
    let codename = match field("VERSION_CODENAME") {
        name if name.is_empty() => field("UBUNTU_CODENAME"),
        name => name,
    };
    OsRelease { id: field("ID"), version_id: field("VERSION_ID"), codename }
}

pub fn os_release() -> anyhow::Result<OsRelease> {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .context("reading /etc/os-release (the base image matches this machine's OS release)")?;
    Ok(parse_os_release(&text))
}

/// The public image of the same release, where there is one.
pub fn public_base(os: &OsRelease) -> Option<String> {
    match os.id.as_str() {
        "debian" if !os.codename.is_empty() => Some(format!("debian:{}-slim", os.codename)),
        "ubuntu" if !os.version_id.is_empty() => Some(format!("ubuntu:{}", os.version_id)),
        _ => None,
    }
}

/// The tag of the locally built base: the release and a hash of the recipe.
pub fn local_tag(os: &OsRelease) -> String {
    let inputs = format!("{}|{}|{}|{}", os.id, os.codename, PACKAGES.join(","), RECIPE);
    format!("tasker-ci-base:{}-{}-{}", os.id, os.codename, paths::short_hash(&inputs))
}

/// The package sources of this machine for the release `codename`, as one-line `deb`
/// entries for mmdebstrap: from deb822 `.sources` files and one-line `.list` files.
/// Entries of other suites (third-party repositories) are left out.
pub fn mirror_lines(files: &[(String, String)], codename: &str) -> Vec<String> {
    let ours = |suite: &str| suite == codename || suite.starts_with(&format!("{codename}-"));
    let mut lines = Vec::new();
    for (name, text) in files {
        if name.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let field = |key: &str| -> Option<String> {
                    let mut value: Option<String> = None;
                    for line in stanza.lines().filter(|l| !l.starts_with('#')) {
                        if let Some((k, v)) = line.split_once(':')
                            && !line.starts_with(char::is_whitespace)
                        {
                            value =
                                k.trim().eq_ignore_ascii_case(key).then(|| v.trim().to_string());
                            if value.is_some() {
                                break;
                            }
                        }
                    }
                    value
                };
                if field("Enabled").is_some_and(|v| v.eq_ignore_ascii_case("no"))
                    || !field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
                {
                    continue;
                }
                let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else { continue };
                let components = field("Components").unwrap_or_default();
                // A key given inline (a multi-line value) cannot travel as an option.
                let options = match field("Signed-By") {
                    Some(key) if key.starts_with('/') => format!("[signed-by={key}] "),
                    _ => String::new(),
                };
                for uri in uris.split_whitespace() {
                    for suite in suites.split_whitespace().filter(|s| ours(s)) {
                        lines.push(
                            format!("deb {options}{uri} {suite} {components}")
                                .trim_end()
                                .to_string(),
                        );
                    }
                }
            }
        } else if name.ends_with(".list") || name == "sources.list" {
            for line in text.lines().map(str::trim) {
                let Some(rest) = line.strip_prefix("deb ") else { continue };
                let rest = rest.trim();
                let (options, rest) = match rest.strip_prefix('[') {
                    Some(after) => match after.split_once(']') {
                        Some((opts, rest)) => (format!("[{opts}] "), rest.trim()),
                        None => continue,
                    },
                    None => (String::new(), rest),
                };
                let mut words = rest.split_whitespace();
                let (Some(uri), Some(suite)) = (words.next(), words.next()) else { continue };
                if ours(suite) {
                    let components: Vec<&str> = words.collect();
                    lines.push(
                        format!("deb {options}{uri} {suite} {}", components.join(" "))
                            .trim_end()
                            .to_string(),
                    );
                }
            }
        }
    }
    lines
}

/// This machine's apt source files, name and text.
fn apt_source_files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        files.push(("sources.list".to_string(), text));
    }
    let mut entries: Vec<_> =
        std::fs::read_dir("/etc/apt/sources.list.d").into_iter().flatten().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Ok(text) = std::fs::read_to_string(entry.path()) {
            files.push((name, text));
        }
    }
    files
}

pub fn image_exists(image: &str) -> bool {
    Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", image]).succeeds()
}

/// The local base image for this machine, built when missing (or with `force`).
pub fn ensure(os: &OsRelease, force: bool) -> anyhow::Result<String> {
    let tag = local_tag(os);
    if !force && image_exists(&tag) {
        return Ok(tag);
    }
    // Runs side by side that all find it missing (the Docker backend's tests) build it
    // once: the others wait for the first, then find it.
    let _building = crate::sys::fs::lock_exclusive(
        &crate::sys::paths::xtask_dir().join("docker-base-image.lock"),
        "xtask: waiting for another run that builds the base image",
    )?;
    if !force && image_exists(&tag) {
        return Ok(tag);
    }
    if os.codename.is_empty() || !matches!(os.id.as_str(), "debian" | "ubuntu") {
        crate::user_error!(
            "cannot build a base image for `{}` {} here (Debian and Ubuntu only): pass --base-image with an image of this OS release",
            os.id,
            os.version_id
        );
    }
    let mirrors = mirror_lines(&apt_source_files(), &os.codename);
    if mirrors.is_empty() {
        crate::user_error!(
            "no apt source for `{}` in /etc/apt/sources.list or /etc/apt/sources.list.d: the base image is built from this machine's package sources",
            os.codename
        );
    }
    ensure_mmdebstrap()?;
    eprintln!(
        "xtask: building the base image {tag} from this machine's apt sources ({} {}, packages: {}); about a minute, once",
        os.id,
        os.codename,
        PACKAGES.join(" ")
    );
    let started = std::time::Instant::now();
    let mut debootstrap = Command::new("mmdebstrap");
    debootstrap
        .args(["--variant=minbase", "--quiet"])
        .arg(format!("--include={}", PACKAGES.join(",")))
        // Documentation is never read in a test image; a smaller tar imports faster.
        .args([
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
        ])
        .arg(&os.codename)
        .arg("-")
        .args(&mirrors)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut producer = debootstrap.spawn().context("running mmdebstrap")?;
    let tar = producer.stdout.take().expect("piped");
    let imported = Command::new("docker")
        .args(["import", "-c", "CMD [\"/bin/bash\"]", "-c"])
        .arg(format!("LABEL {IMAGE_LABEL}=base"))
        .arg("-")
        .arg(&tag)
        .stdin(Stdio::from(tar))
        .stdout(Stdio::null())
        .status()
        .context("running docker import");
    let produced = producer.wait().context("waiting for mmdebstrap")?;
    if !produced.success() {
        Command::new("docker").args(["image", "rm", "-f", &tag]).succeeds();
        bail!("mmdebstrap failed ({produced}); its messages are above");
    }
    if !imported?.success() {
        bail!("`docker import` of the base image failed; its message is above");
    }
    eprintln!("xtask: built {tag} in {:.0}s", started.elapsed().as_secs_f64());
    Ok(tag)
}

/// mmdebstrap, installed with apt-get where we may (Debian/Ubuntu, root).
fn ensure_mmdebstrap() -> anyhow::Result<()> {
    if crate::sys::host::which("mmdebstrap").is_some() {
        return Ok(());
    }
    let root = crate::sys::host::is_root();
    if !(root && Path::new("/etc/debian_version").exists()) {
        crate::user_error!(
            "mmdebstrap is not installed; it builds the base image offline: run `sudo apt-get install -y mmdebstrap` (or pass --base-image)"
        );
    }
    eprintln!("xtask: installing mmdebstrap with apt-get (it builds the base image offline)");
    let apt_get = |args: &[&str]| {
        let mut command = Command::new("apt-get");
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        process::run_owned(&mut command, Duration::from_secs(10)).is_ok_and(|s| s.success())
    };
    let install = || apt_get(&["install", "-y", "-q", "--no-install-recommends", "mmdebstrap"]);
    if !install() {
        apt_get(&["update", "-q"]);
        if !install() {
            bail!("`apt-get install -y mmdebstrap` failed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";
    const UBUNTU: &str =
        "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=noble\n";

    #[test]
    fn the_base_matches_the_hosts_release() {
        let debian = parse_os_release(DEBIAN);
        assert_eq!(
            debian,
            OsRelease { id: "debian".into(), version_id: "12".into(), codename: "bookworm".into() }
        );
        assert_eq!(public_base(&debian).as_deref(), Some("debian:bookworm-slim"));
        let ubuntu = parse_os_release(UBUNTU);
        assert_eq!(ubuntu.codename, "noble");
        assert_eq!(public_base(&ubuntu).as_deref(), Some("ubuntu:24.04"));
        assert_eq!(public_base(&parse_os_release("ID=fedora\nVERSION_ID=40\n")), None);
        let tag = local_tag(&debian);
        assert!(tag.starts_with("tasker-ci-base:debian-bookworm-"), "{tag}");
        assert_ne!(tag, local_tag(&ubuntu));
    }

    #[test]
    fn mirrors_come_from_both_source_formats_and_skip_other_suites() {
        let deb822 = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main contrib\n\n\
                      Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n\n\
                      Types: deb\nURIs: https://third.party/node\nSuites: nodistro\nComponents: main\n\n\
                      Enabled: no\nTypes: deb\nURIs: http://off.example\nSuites: bookworm\n";
        let list = "# comment\ndeb [arch=amd64] http://ports.example/debian bookworm main\ndeb https://packages.example/apt cloud-sdk main\n";
        let files = vec![
            ("debian.sources".to_string(), deb822.to_string()),
            ("extra.list".to_string(), list.to_string()),
            ("notes.txt".to_string(), "deb http://ignored bookworm main".to_string()),
        ];
        assert_eq!(
            mirror_lines(&files, "bookworm"),
            vec![
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian bookworm main",
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian bookworm-updates main",
                "deb http://mirror.example/debian-security bookworm-security main contrib",
                "deb [arch=amd64] http://ports.example/debian bookworm main",
            ]
        );
    }
}
