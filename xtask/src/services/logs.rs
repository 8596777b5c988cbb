//! Service logs: `<state>/logs/<name>.log`, one file per service (natively written as it
//! runs; saved from the container by the Docker backend), their tails for error
//! messages, printing them (`services logs`) and copying them for CI artifacts.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sys::paths;

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else { return String::new() };
    tail_of(&String::from_utf8_lossy(&bytes), n)
}

/// The last `n` lines of `text`, with URL passwords redacted: tails are printed, and a
/// service may have logged its database URL.
pub fn tail_of(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    crate::sys::secrets::redact_text(&lines[lines.len().saturating_sub(n)..].join("\n"))
}

/// Copies every log of `from` to `to` (emptied first) for the workflow to upload;
/// returns how many.
pub fn collect(from: &Path, to: &Path) -> usize {
    let _ = std::fs::remove_dir_all(to);
    let _ = std::fs::create_dir_all(to);
    let mut copied = 0;
    for entry in std::fs::read_dir(from).into_iter().flatten().flatten() {
        if entry.path().is_file() && std::fs::copy(entry.path(), to.join(entry.file_name())).is_ok()
        {
            copied += 1;
        }
    }
    copied
}

/// Prints the log of `name` (every log without a name) from `dir`; with `follow`, keeps
/// printing as they grow. Several logs get a `name | ` prefix per line.
pub fn print(dir: &Path, name: Option<&str>, follow: bool) -> anyhow::Result<()> {
    match print_files(dir, name, follow) {
        // `logs | head` closing the pipe is how a reader says "enough".
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn print_files(dir: &Path, name: Option<&str>, follow: bool) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = match name {
        Some(name) => {
            let path = dir.join(format!("{name}.log"));
            if !path.exists() {
                let known: Vec<String> = std::fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| {
                        e.ok()?.file_name().to_str()?.strip_suffix(".log").map(str::to_string)
                    })
                    .collect();
                crate::user_error!(
                    "no log for `{name}` in {} (have: {})",
                    paths::display_path(dir),
                    known.join(", ")
                );
            }
            vec![path]
        }
        None => std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| Some(e.ok()?.path()))
            .collect(),
    };
    files.sort();
    let prefix = files.len() > 1;
    let mut offsets = vec![0u64; files.len()];
    let mut out = std::io::stdout().lock();
    loop {
        for (path, offset) in files.iter().zip(offsets.iter_mut()) {
            let Ok(mut file) = std::fs::File::open(path) else { continue };
            let len = file.metadata()?.len();
            if len < *offset {
                *offset = 0; // truncated by a new `up`
            }
            file.seek(SeekFrom::Start(*offset))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            // While following, only whole lines, so a prefix never lands mid-line; a last
            // line without its newline is printed once the rest of it arrives.
            let whole = match follow {
                true => bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1),
                false => bytes.len(),
            };
            // A service may log bytes that are not UTF-8; show them rather than stop.
            let text = String::from_utf8_lossy(&bytes[..whole]);
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            for line in text.lines() {
                if prefix {
                    writeln!(out, "{name:>14} | {line}")?;
                } else {
                    writeln!(out, "{line}")?;
                }
            }
            *offset += whole as u64;
        }
        out.flush()?;
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_and_hides_passwords() {
        let path = std::env::temp_dir().join(format!("xtask-tail-{}", std::process::id()));
        std::fs::write(&path, "a\nb\nc postgres://u:pw@h/db\n").unwrap();
        assert_eq!(tail(&path, 2), "b\nc postgres://u:***@h/db");
        std::fs::remove_file(path).unwrap();
    }
}
