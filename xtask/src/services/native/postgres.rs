//! The native backend's database: a throwaway PostgreSQL cluster (a given
//! `DATABASE_URL` is only checked, with `pg_probe`).
//!
//! The embedded cluster copies a pristine data directory (initialised once per server
//! version and cached under the target dir) and runs `postgres` directly on 127.0.0.1, a
//! free port and a private socket directory, with durability off. As root, PostgreSQL
//! refuses to run, so initdb and the server drop privileges to the `postgres` user.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::requirements;
use crate::services::logs;
use crate::services::pg_probe::{self, Handshake};
use crate::services::state::{Embedded, STATE_DIR_MARKER};
use crate::sys::command::Run as _;
use crate::sys::error::UserError;
use crate::sys::interrupts::wait_until;
use crate::sys::process::Identity;
use crate::sys::{host, paths, process};

/// Where the server binaries live and which version they are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub bindir: PathBuf,
    pub version: String,
}

/// Bumped whenever `template()` makes the data directory differently.
const TEMPLATE_FORMAT: &str = "f3";

/// The user the server runs as when we are root.
const SERVER_USER: &str = "postgres";

/// Finds the binaries, installing them where xtask may ([`crate::requirements`]), else
/// fails with the command to run.
pub fn ensure_binaries() -> anyhow::Result<Binaries> {
    let bindir = match requirements::postgres_bindir() {
        Some(dir) => dir,
        None => {
            requirements::ensure(&[requirements::Requirement::Postgres]).map_err(|err| {
                match err.downcast::<crate::sys::error::UserError>() {
                    Ok(UserError(why)) => UserError(format!(
                        "{why}; or export DATABASE_URL to use an existing server"
                    ))
                    .into(),
                    Err(err) => err,
                }
            })?;
            requirements::postgres_bindir()
                .context("PostgreSQL was installed but no server binaries were found")?
        }
    };
    // "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
    let text = Command::new(bindir.join("postgres"))
        .arg("--version")
        .read()
        .with_context(|| format!("running {}/postgres --version", bindir.display()))?;
    let version = text
        .split_whitespace()
        .nth(2)
        .filter(|v| v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
        .with_context(|| format!("unexpected `postgres --version` output: {text}"))?
        .to_string();
    Ok(Binaries { bindir, version })
}

/// uid and gid of the unprivileged server user, when we run as root.
fn server_user() -> anyhow::Result<Option<(libc::uid_t, libc::gid_t)>> {
    if !host::is_root() {
        return Ok(None);
    }
    let name = std::ffi::CString::new(SERVER_USER).unwrap();
    // SAFETY: getpwnam returns a pointer to static storage or null; read immediately.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        crate::user_error!(
            "running as root, PostgreSQL needs an unprivileged user to run as: create `{SERVER_USER}` (`useradd --system {SERVER_USER}`) or run as a normal user"
        );
    }
    // SAFETY: non-null result of getpwnam.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}

/// Runs the command as `user` (when set): the child drops privileges itself between
/// fork and exec, so the pid we get is the program's own.
fn run_as(cmd: &mut Command, user: Option<(libc::uid_t, libc::gid_t)>) {
    if let Some((uid, gid)) = user {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

fn chown(path: &Path, user: Option<(libc::uid_t, libc::gid_t)>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// The cached pristine data directory for this server version and database name,
/// created (initdb + CREATE DATABASE) on first use. Concurrent first uses each build
/// their own and the first rename wins.
fn template(
    bins: &Binaries,
    database: &str,
    user: Option<(libc::uid_t, libc::gid_t)>,
) -> anyhow::Result<PathBuf> {
    let cache = reachable_by_server(&paths::xtask_dir(), user, "xtask-pg-cache");
    // The name changes with the way the template is made, so an old cache is not reused.
    let dir = cache.join(format!("pg-template-{}-{database}-{TEMPLATE_FORMAT}", bins.version));
    if dir.join("PG_VERSION").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&cache)?;
    let tmp = cache.join(format!(".pg-template-tmp-{}-{}", std::process::id(), unique()));
    std::fs::create_dir(&tmp)?;
    chown(&tmp, user)?;
    let result = (|| -> anyhow::Result<()> {
        let mut initdb = Command::new(bins.bindir.join("initdb"));
        initdb.arg("-D").arg(&tmp).args([
            "-U",
            "postgres",
            // TCP needs a password (set per session, never in the template); the
            // socket, in a directory only the server's account can enter, is trusted.
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            // 1 MB WAL segments instead of 16: a third less to copy per run.
            "--wal-segsize=1",
            "--locale=C",
            "--encoding=UTF8",
            "--no-instructions",
        ]);
        run_as(&mut initdb, user);
        if let Err(failure) = initdb.capture() {
            bail!("initdb failed: {failure}");
        }
        // Single-user mode creates the database without starting a server.
        let mut single = Command::new(bins.bindir.join("postgres"));
        single.args(["--single", "-D"]).arg(&tmp).args(["-c", "fsync=off", "postgres"]);
        run_as(&mut single, user);
        let created = single.feed(format!("CREATE DATABASE {database};\n").as_bytes());
        let stderr = match &created {
            Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
            Err(failure) => failure.stderr.clone(),
        };
        if created.is_err() || stderr.contains("ERROR") {
            bail!("creating database {database} in the template failed: {}", stderr.trim());
        }
        Ok(())
    })();
    if let Err(err) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(err);
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Someone else finished first; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(dir)
}

/// How many migrated templates a cache keeps per server version and database (a new
/// one is made per build of the migrate step; debug and release builds alternate).
const MIGRATED_KEPT: usize = 4;

/// The cached data directory with the migrate step's result, for `key` (which names
/// everything the result depends on: see the native backend's `migrate_cache_key`).
/// On a miss it is made once: a copy of the pristine template, a private server, then
/// `migrate(url)` against it, the role's password cleared (each session sets its own) and
/// a clean shutdown, renamed into place only when all of that succeeded. A failed or
/// interrupted build leaves no server and no directory. Returns the directory and whether
/// it was built now.
pub fn migrated_template(
    bins: &Binaries,
    state_dir: &Path,
    database: &str,
    key: &str,
    timeout: Duration,
    migrate: &mut dyn FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<(PathBuf, bool)> {
    let user = server_user()?;
    let cache = reachable_by_server(&paths::xtask_dir(), user, "xtask-pg-cache");
    let prefix = format!("pg-migrated-{}-{database}-{TEMPLATE_FORMAT}-", bins.version);
    let dir = cache.join(format!("{prefix}{key}"));
    if dir.join("PG_VERSION").exists() {
        return Ok((dir, false));
    }
    let base = template(bins, database, user)?;
    remove_abandoned_builds(&cache);
    let tmp = cache.join(format!(".pg-migrated-tmp-{}-{}", std::process::id(), unique()));
    let socket_dir = new_socket_dir_path();
    let log = state_dir.join("logs").join("postgres.log");
    let result = (|| {
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(&base).arg(&tmp).run()?;
        create_socket_dir(&socket_dir, user)?;
        std::fs::create_dir_all(log.parent().unwrap())?;
        let dirs = ServerDirs { data_dir: &tmp, socket_dir: &socket_dir, log: &log };
        // Owned: the build's server dies with this process, whatever ends it.
        let server = run_server(bins, database, user, &dirs, timeout, true)?;
        let migrated = migrate(&server.url).and_then(|()| {
            let sql = format!("ALTER ROLE {SERVER_USER} PASSWORD NULL");
            run_on_socket(&socket_dir, server.port, database, &sql)
        });
        shut_down(&server);
        migrated
    })();
    if let Err(err) = result {
        remove_dirs(&tmp, &socket_dir);
        return Err(err);
    }
    let _ = std::fs::remove_dir_all(&socket_dir);
    if std::fs::rename(&tmp, &dir).is_err() {
        // Someone else finished first; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    prune_migrated(&cache, &prefix, &dir);
    Ok((dir, true))
}

/// Removes the half-made templates of builds whose process is gone (killed outright; a
/// build's server dies with it).
fn remove_abandoned_builds(cache: &Path) {
    for entry in std::fs::read_dir(cache).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let pid = name.strip_prefix(".pg-migrated-tmp-").and_then(|rest| rest.split('-').next());
        let Some(pid) = pid.and_then(|pid| pid.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Keeps the newest [`MIGRATED_KEPT`] migrated templates of `prefix` (and `current`).
fn prune_migrated(cache: &Path, prefix: &str, current: &Path) {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix) && e.path() != current)
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    let extra = found.len().saturating_sub(MIGRATED_KEPT - 1);
    for (_, old) in found.into_iter().take(extra) {
        let _ = std::fs::remove_dir_all(old);
    }
}

/// Where the data directories of `state_dir`'s sessions go: in memory (`/dev/shm`) where
/// there is room, since a session copies the whole template (35 MB) there and a shared
/// disk took 0.5 to 1.3 s for that copy where memory takes 0.1 s
/// (docs/analysis/native-start.md); else under the state dir. The same answer for a
/// state dir every time, so the sweep of a killed session's files looks where it wrote.
/// `create`: make the memory directory if it is missing (a session about to copy its
/// data there), else only name it.
fn data_base(state_dir: &Path, user: Option<(libc::uid_t, libc::gid_t)>, create: bool) -> PathBuf {
    in_memory_base(Path::new("/dev/shm"), state_dir, IN_MEMORY_ROOM, create)
        .unwrap_or_else(|| on_disk_base(state_dir, user))
}

/// The data directories' place under the state dir (where memory is not used).
fn on_disk_base(state_dir: &Path, user: Option<(libc::uid_t, libc::gid_t)>) -> PathBuf {
    reachable_by_server(&state_dir.join("postgres"), user, "xtask-pg-data")
}

/// Room a memory file system must have left for a session's data directory there: the
/// template and what the tests write, many times over (a container's /dev/shm is 64 MB).
const IN_MEMORY_ROOM: u64 = 1 << 30;

/// Where the data directories of `state_dir`'s sessions go (see [`data_base`]).
pub fn data_dirs_of(state_dir: &Path) -> PathBuf {
    data_base(state_dir, server_user().ok().flatten(), false)
}

/// `shm/xtask-pg-data-<uid>-<hash of the state dir>`, created if missing and `create`
/// (else named where it would be), when `shm` is a directory with `room` bytes free.
/// Everyone may create names there, so a directory that already exists counts only if
/// it is a real directory (not a link) that we own and nobody else may write to;
/// anything else falls back to the state dir.
fn in_memory_base(shm: &Path, state_dir: &Path, room: u64, create: bool) -> Option<PathBuf> {
    let path = std::ffi::CString::new(shm.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a valid C string and a zeroed out-parameter that statvfs fills.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0
        || (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64) < room
    {
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let state = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let dir = shm
        .join(format!("xtask-pg-data-{uid}-{}", paths::short_hash(&state.display().to_string())));
    match std::fs::symlink_metadata(&dir) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !create => return Some(dir),
        // 755: the server's account (when we are root) must pass through; each data
        // directory inside is its own and 700. Losing a race to another creator fails.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().mode(0o755).create(&dir).ok()?
        }
        Err(_) => return None,
        Ok(_) => {}
    }
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    (meta.is_dir() && crate::sys::fs::is_ours_alone(&meta)).then_some(dir)
}

/// `preferred`, unless the server user (when we are root) cannot reach it: a checkout
/// under a private home directory (e.g. /root, mode 700) is closed to `postgres`. Then a
/// directory of the same purpose under the temp dir, which everyone can traverse.
fn reachable_by_server(
    preferred: &Path,
    user: Option<(libc::uid_t, libc::gid_t)>,
    fallback: &str,
) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    if user.is_none() {
        return preferred.to_path_buf();
    }
    let closed = preferred.ancestors().skip(1).any(|dir| {
        // Directories that do not exist yet are created by us with mode 755.
        std::fs::metadata(dir).is_ok_and(|m| m.mode() & 0o001 == 0)
    });
    if !closed {
        return preferred.to_path_buf();
    }
    // Keyed by the preferred path, so each checkout and state dir keeps its own.
    let key = paths::short_hash(&preferred.display().to_string());
    std::env::temp_dir().join(format!("{fallback}-{key}"))
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A port nobody listens on right now (the kernel's choice).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Starts a throwaway cluster whose files live under `state_dir/postgres`; returns once
/// it accepts connections. `timeout` bounds the wait for readiness. On any failure the
/// copied data directory and the socket directory are removed again.
pub fn start(
    bins: &Binaries,
    state_dir: &Path,
    database: &str,
    timeout: Duration,
    owned: bool,
    migrated: Option<&Path>,
) -> anyhow::Result<Embedded> {
    let user = server_user()?;
    let template = match migrated {
        Some(dir) => dir.to_path_buf(),
        None => template(bins, database, user)?,
    };
    let base = data_base(state_dir, user, true);
    let data_dir = base.join(format!("data-{}", unique()));
    let socket_dir = new_socket_dir_path();
    let log = state_dir.join("logs").join("postgres.log");
    let result = (|| {
        std::fs::create_dir_all(&base)?;
        let mut cp = Command::new("cp");
        if cfg!(target_os = "linux") {
            cp.arg("--reflink=auto");
        }
        cp.arg("-a").arg(&template).arg(&data_dir).run().with_context(|| {
            format!("copying {} to {} failed", template.display(), data_dir.display())
        })?;
        create_socket_dir(&socket_dir, user)?;
        std::fs::create_dir_all(log.parent().unwrap())?;
        let dirs = ServerDirs { data_dir: &data_dir, socket_dir: &socket_dir, log: &log };
        run_server(bins, database, user, &dirs, timeout, owned)
    })();
    if result.is_err() {
        remove_dirs(&data_dir, &socket_dir);
    }
    result
}

/// A new socket directory's path: in the temp dir, since Unix socket paths are limited
/// to ~100 bytes; named by our pid, which the sweep of leftovers reads.
fn new_socket_dir_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "xtask-pg-{}-{}",
        std::process::id(),
        unique() % 1_000_000_000
    ))
}

/// Creates the socket directory so that only the server's account may enter: the socket
/// trusts whoever reaches it.
fn create_socket_dir(dir: &Path, user: Option<(libc::uid_t, libc::gid_t)>) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    chown(dir, user)
}

/// Where a server's files are.
#[derive(Clone, Copy)]
struct ServerDirs<'a> {
    data_dir: &'a Path,
    socket_dir: &'a Path,
    log: &'a Path,
}

/// Runs `postgres` on the prepared data directory until it accepts connections.
fn run_server(
    bins: &Binaries,
    database: &str,
    user: Option<(libc::uid_t, libc::gid_t)>,
    dirs: &ServerDirs,
    timeout: Duration,
    owned: bool,
) -> anyhow::Result<Embedded> {
    let ServerDirs { data_dir, socket_dir, log } = *dirs;
    // The session's password: from the OS's random source, only ever in the URL.
    let password = crate::sys::secrets::random_token(16)?;
    // A free port can be taken between our check and the server's bind: try a few.
    let mut last_error = None;
    for _ in 0..3 {
        let port = free_port()?;
        let mut cmd = Command::new(bins.bindir.join("postgres"));
        cmd.arg("-D")
            .arg(data_dir)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", socket_dir.display()))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            // Shared memory segments in the data directory, not in /dev/shm: a killed
            // server's go with its data directory instead of staying behind.
            .args(["-c", "dynamic_shared_memory_type=mmap"])
            // Several services with their pools plus parallel tests share this server.
            .args(["-c", "max_connections=200"]);
        process::own_group_logging_to(&mut cmd, log)?;
        if let Some(state_dir) = log.parent().and_then(Path::parent) {
            process::mark(&mut cmd, STATE_DIR_MARKER, state_dir);
        }
        run_as(&mut cmd, user);
        if owned {
            // After run_as: a change of user clears the setting.
            crate::sys::process::die_with_owner(&mut cmd, libc::SIGKILL);
        }
        let mut child = cmd.spawn().context("starting postgres")?;
        let pid = child.id();
        let embedded = Embedded {
            process: Identity::of_group_leader(pid).unwrap_or(Identity {
                pid,
                pgid: pid,
                start_time: 0,
            }),
            port,
            data_dir: data_dir.to_path_buf(),
            socket_dir: socket_dir.to_path_buf(),
            log: log.to_path_buf(),
            url: format!("postgres://{SERVER_USER}:{password}@127.0.0.1:{port}/{database}"),
        };
        let deadline = Instant::now() + timeout;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = logs::tail(log, 30);
                if tail.contains("Address already in use") || tail.contains("could not bind") {
                    last_error = Some(format!("port {port} was taken"));
                    break;
                }
                bail!(
                    "postgres exited during startup ({status}); last lines of {}:\n{tail}",
                    log.display()
                );
            }
            // Up once a TCP login gets as far as the password request.
            if let Ok(Handshake::Ready | Handshake::NeedsPassword) =
                pg_probe::handshake(addr, SERVER_USER, database, Duration::from_millis(200))
            {
                if let Err(err) = set_password(socket_dir, port, database, &password) {
                    stop(&embedded);
                    return Err(err);
                }
                return Ok(embedded);
            }
            if Instant::now() >= deadline {
                stop(&embedded);
                bail!(
                    "postgres did not accept connections within {timeout:?}; see {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    bail!("could not start postgres: {}", last_error.unwrap_or_default())
}

/// Stops the cluster (SIGINT: fast shutdown, then SIGQUIT, then SIGKILL to its group)
/// and removes its data and socket directories. Safe to call twice.
pub fn stop(db: &Embedded) {
    shut_down(db);
    remove_dirs(&db.data_dir, &db.socket_dir);
}

/// Stops the server and waits until no process of it is left; its files stay.
fn shut_down(db: &Embedded) {
    let id = &db.process;
    // After a signal the whole stop fits its share of the shutdown budget.
    let (fast, quit) = match crate::sys::interrupts::interrupted() {
        Some(_) => (Duration::from_millis(800), Duration::from_millis(300)),
        None => (Duration::from_secs(2), Duration::from_secs(1)),
    };
    if process::signal_process(id, libc::SIGINT)
        && !wait_until(fast, || !id.is_ours_and_alive())
        && process::signal_process(id, libc::SIGQUIT)
        && !wait_until(quit, || !id.is_ours_and_alive())
    {
        process::signal_group(id, libc::SIGKILL);
        wait_until(Duration::from_secs(1), || !process::group_is_ours_and_alive(id));
    }
    // Backends can outlive the postmaster by a moment.
    wait_until(Duration::from_secs(1), || process::group_members(id.pgid).is_empty());
}

/// Removes what killed sessions of `state_dir` left: every data directory of it (call
/// only when no session of it runs), and socket directories in the temp dir whose
/// creating xtask is gone and which no running server uses (a detached server outlives
/// its creator: its own lock file says so).
pub fn remove_leftovers(state_dir: &Path) {
    let user = server_user().ok().flatten();
    // Both places: a killed session may have written under the state dir (no room in
    // memory then, or an xtask from before data went to memory).
    let mut bases = vec![data_base(state_dir, user, false), on_disk_base(state_dir, user)];
    bases.dedup();
    for base in bases {
        for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("data-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let _ = std::fs::remove_dir(&base);
    }
    for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let creator = name.strip_prefix("xtask-pg-").and_then(|rest| rest.split('-').next());
        // Not a socket directory (the template cache, a data fallback) has no pid here.
        let Some(creator) = creator.and_then(|pid| pid.parse::<u32>().ok()) else { continue };
        // A live creator may be about to start its server in it; a gone one may have left a
        // detached server running there: both must hold for it to go.
        let creator_gone = !Path::new(&format!("/proc/{creator}")).exists();
        if creator_gone && socket_dir_unused(&entry.path()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// True when no running postmaster holds a socket in `dir` (its `.s.PGSQL.<port>.lock`
/// names the postmaster's pid on the first line). A directory we cannot read is not ours
/// to judge.
fn socket_dir_unused(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !(name.starts_with(".s.PGSQL.") && name.ends_with(".lock")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else { return false };
        let pid = text.lines().next().and_then(|l| l.trim().parse::<u32>().ok());
        if pid.is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
            return false;
        }
    }
    true
}

fn remove_dirs(data_dir: &Path, socket_dir: &Path) {
    let _ = std::fs::remove_dir_all(data_dir);
    let _ = std::fs::remove_dir_all(socket_dir);
    // The directory holding data dirs goes too once empty (remove_dir keeps it otherwise).
    if let Some(parent) = data_dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}

/// Sets the superuser's password of a fresh cluster through its private socket (trusted
/// there; TCP needs the password). Until this returns, no TCP login is possible at all:
/// the role has no password.
fn set_password(
    socket_dir: &Path,
    port: u16,
    database: &str,
    password: &str,
) -> anyhow::Result<()> {
    // Stored as a SCRAM secret of one iteration instead of PostgreSQL's 4096: the
    // iterations slow down guessing a password from its secret, and this one is 128
    // random bits, out of reach at any count. Every login's client hashes as many rounds:
    // 4096 cost about 35 ms of CPU per login in a debug build, and the tests make
    // hundreds of connections (docs/ci.md). Base64 and `$:`: nothing to quote.
    let salt = crate::sys::secrets::random_bytes(16)?;
    let secret = crate::sys::secrets::scram_sha256_secret(password, &salt, 1);
    run_on_socket(
        socket_dir,
        port,
        database,
        &format!("ALTER ROLE {SERVER_USER} PASSWORD '{secret}'"),
    )
    .context("setting the session's database password failed")
}

/// Runs one statement as the superuser through the server's private socket.
fn run_on_socket(socket_dir: &Path, port: u16, database: &str, sql: &str) -> anyhow::Result<()> {
    let path = socket_dir.join(format!(".s.PGSQL.{port}"));
    let mut stream = std::os::unix::net::UnixStream::connect(&path)
        .with_context(|| format!("connecting to {}", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    match pg_probe::startup(&mut stream, SERVER_USER, database)? {
        Handshake::Ready => {}
        other => bail!("the server's own socket did not accept us: {other:?}"),
    }
    let answer = pg_probe::query(&mut stream, sql)?;
    pg_probe::terminate(&mut stream);
    match answer {
        Err(message) => bail!("{message}"),
        Ok(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data directories go to memory only into a directory that is ours alone: a
    /// name someone else placed there first (a link, a directory others may write to)
    /// sends them back under the state dir, as does a memory file system without room.
    #[test]
    fn data_directories_go_to_memory_only_into_a_directory_of_our_own() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let shm = std::env::temp_dir().join(format!("xtask-shm-test-{}", std::process::id()));
        let state = shm.join("state");
        std::fs::create_dir_all(&state).unwrap();

        let named = in_memory_base(&shm, &state, 0, false).expect("a name when missing");
        assert!(!named.exists(), "looking must not create it");
        let made = in_memory_base(&shm, &state, 0, true).expect("created when missing");
        assert_eq!(made, named, "one place per state dir");
        let meta = std::fs::symlink_metadata(&made).unwrap();
        assert!(meta.is_dir() && meta.mode() & 0o022 == 0, "others may not write");
        assert_eq!(in_memory_base(&shm, &state, 0, true), Some(made.clone()), "ours: reused");
        assert_eq!(in_memory_base(&shm, &state, u64::MAX, true), None, "no room: not used");

        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(in_memory_base(&shm, &state, 0, true), None, "writable by others");
        std::fs::remove_dir(&made).unwrap();
        std::os::unix::fs::symlink(&state, &made).unwrap();
        assert_eq!(in_memory_base(&shm, &state, 0, true), None, "a link placed there");
        std::fs::remove_dir_all(&shm).unwrap();
    }

    /// Real server, real protocol: start, check, stop, nothing left.
    #[test]
    fn embedded_cluster_starts_answers_and_leaves_nothing() {
        let Ok(bins) = ensure_binaries() else {
            panic!("PostgreSQL server binaries are required for this test")
        };
        let state = std::env::temp_dir().join(format!("xtask-pg-test-{}", std::process::id()));
        let db = start(&bins, &state, "tasker_test", Duration::from_secs(30), true, None).unwrap();
        pg_probe::check_reachable(&db.url).unwrap();
        // TCP needs the session's password; the URL carries one, the template none.
        let password = crate::sys::secrets::password_of(&db.url).expect("a password in the URL");
        assert_eq!(password.len(), 32);
        let addr: SocketAddr = ([127, 0, 0, 1], db.port).into();
        assert!(matches!(
            pg_probe::handshake(addr, "postgres", "tasker_test", Duration::from_secs(5)),
            Ok(Handshake::NeedsPassword)
        ));
        // Kept as a SCRAM secret of one iteration (`set_password`), not PostgreSQL's 4096.
        let stored = format!(
            "DO $$ BEGIN IF (SELECT rolpassword FROM pg_authid WHERE rolname = '{SERVER_USER}') \
             NOT LIKE 'SCRAM-SHA-256$1:%' THEN RAISE EXCEPTION 'not one iteration'; END IF; END $$"
        );
        run_on_socket(&db.socket_dir, db.port, "tasker_test", &stored).unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&db.socket_dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "the socket directory is open to others");
        }
        assert!(db.process.is_ours_and_alive());
        stop(&db);
        assert!(!process::group_is_ours_and_alive(&db.process));
        assert!(!db.data_dir.exists() && !db.socket_dir.exists());
        // A running server's socket directory is never taken for a leftover.
        let again =
            start(&bins, &state, "tasker_test", Duration::from_secs(30), true, None).unwrap();
        assert!(!socket_dir_unused(&again.socket_dir));
        remove_leftovers(Path::new("/nonexistent-state-dir"));
        assert!(again.socket_dir.exists(), "a live server's socket directory was removed");
        stop(&again);
        assert!(std::net::TcpStream::connect(("127.0.0.1", db.port)).is_err());
        std::fs::remove_dir_all(state).unwrap();
    }
}
