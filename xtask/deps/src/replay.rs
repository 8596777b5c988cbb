//! A warm run without the work: the output of the last plain analysis is kept in
//! `<target>/xtask/deps-replay-<hash>.txt` with the signature of every input it read
//! ([`inputs`]), and a run whose inputs all still have those signatures prints it again.
//! What makes that safe:
//!
//! - the analysis is a function of the files it reads, the arguments and the two target
//!   directory variables, all of which are in the key or the signatures;
//! - a run that used anything else (a `cargo` process) is not kept;
//! - the binary is part of the key (its path and signature), so a rebuilt xtask analyses
//!   again;
//! - a run is kept only when every input had settled before it began
//!   ([`inputs::SETTLE`]), so no change can hide inside one timestamp tick.

use std::path::{Path, PathBuf};

use crate::inputs::{self, Inputs, Signature};
use crate::meta;

/// What a plain run printed, in both formats, and whether it failed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub failing: bool,
    pub text: String,
    pub json: String,
}

/// The replay file of one workspace and binary, and the key a stored run must carry.
pub struct Replay {
    path: PathBuf,
    key: String,
}

impl Replay {
    /// `None` when there is no place to keep it (no workspace root to find a target
    /// directory from, or a binary whose path cannot be told).
    pub fn new(manifest: &Path, offline: bool) -> Option<Replay> {
        let exe = std::env::current_exe().ok()?;
        let scratch = meta::scratch_dir(manifest.parent()?)?;
        let exe_signature = inputs::signature(&exe).ok()?.encode();
        let key = format!(
            "xtask-deps replay {} exe={}:{exe_signature} manifest={} offline={offline} \
             scratch={} CARGO_TARGET_DIR={:?} CARGO_BUILD_TARGET_DIR={:?}",
            env!("CARGO_PKG_VERSION"),
            exe.display(),
            manifest.display(),
            scratch.display(),
            std::env::var_os("CARGO_TARGET_DIR"),
            std::env::var_os("CARGO_BUILD_TARGET_DIR"),
        );
        if key.contains('\n') {
            return None;
        }
        let name = format!("deps-replay-{}.txt", meta::short_hash((manifest, &exe)));
        Some(Replay { path: scratch.join(name), key })
    }

    /// Where the output is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The inputs of the stored run (none when nothing is stored).
    pub fn stored_inputs(&self) -> Vec<PathBuf> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        parse(&text)
            .map(|s| s.inputs.iter().map(|(p, _)| PathBuf::from(p)).collect())
            .unwrap_or_default()
    }

    /// The stored output, when it carries this key and every input still has its
    /// signature.
    pub fn lookup(&self) -> Option<Output> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let stored = parse(&text)?;
        if stored.key != self.key {
            return None;
        }
        let unchanged = stored.inputs.iter().all(|(path, signature)| {
            inputs::signature(Path::new(path)).is_ok_and(|now| now.encode() == *signature)
        });
        unchanged.then_some(stored.output)
    }

    /// Keeps `output` for the next run with these inputs. A path that a line cannot hold
    /// (a tab or a newline, not UTF-8) keeps nothing; a failed write only costs time.
    pub fn store(&self, inputs: &Inputs, output: &Output) {
        let mut text = format!("{}\n{}\n", self.key, inputs.0.len());
        for (path, signature) in &inputs.0 {
            let Some(path) = path.to_str().filter(|p| !p.contains(['\t', '\n'])) else {
                return;
            };
            text.push_str(&format!("{}\t{path}\n", signature.encode()));
        }
        text.push_str(if output.failing { "failing\n" } else { "passing\n" });
        for block in [&output.text, &output.json] {
            text.push_str(&format!("{}\n{block}", block.len()));
        }
        let _ = xtask_sys::fs::write_atomic(&self.path, text);
    }
}

struct Stored<'t> {
    key: &'t str,
    inputs: Vec<(&'t str, &'t str)>,
    output: Output,
}

/// Reads what [`Replay::store`] wrote; `None` for anything else.
fn parse(text: &str) -> Option<Stored<'_>> {
    let (key, rest) = text.split_once('\n')?;
    let (count, mut rest) = rest.split_once('\n')?;
    let count: usize = count.parse().ok()?;
    let mut inputs = Vec::with_capacity(count);
    for _ in 0..count {
        let (line, tail) = rest.split_once('\n')?;
        let (signature, path) = line.split_once('\t')?;
        Signature::decode(signature)?;
        inputs.push((path, signature));
        rest = tail;
    }
    let (verdict, mut rest) = rest.split_once('\n')?;
    let failing = match verdict {
        "failing" => true,
        "passing" => false,
        _ => return None,
    };
    let mut block = || -> Option<String> {
        let (len, tail) = rest.split_once('\n')?;
        let len: usize = len.parse().ok()?;
        let body = tail.get(..len)?;
        rest = &tail[len..];
        Some(body.to_string())
    };
    let (text, json) = (block()?, block()?);
    rest.is_empty().then_some(Stored { key, inputs, output: Output { failing, text, json } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_stored_run_is_read_back_whole_and_anything_else_is_refused() {
        let dir = crate::test_dir("replay");
        let input = dir.join("lib.rs");
        std::fs::write(&input, "use a;").unwrap();
        let replay = Replay { path: dir.join("replay.txt"), key: "k".into() };
        let output = Output {
            failing: true,
            text: "a line\nand \"one\"\twith a tab\n".into(),
            json: "{\"x\": 1}\n".into(),
        };
        let inputs = Inputs(vec![
            (input.clone(), inputs::signature(&input).unwrap()),
            (dir.join("absent.rs"), Signature::Absent),
        ]);
        replay.store(&inputs, &output);
        assert_eq!(replay.lookup(), Some(output.clone()));

        // Another key (another binary, other arguments): not this run.
        assert_eq!(Replay { path: replay.path.clone(), key: "other".into() }.lookup(), None);
        // A file that appears where there was none, and one that changes.
        std::fs::write(dir.join("absent.rs"), "").unwrap();
        assert_eq!(replay.lookup(), None);
        std::fs::remove_file(dir.join("absent.rs")).unwrap();
        assert_eq!(replay.lookup(), Some(output.clone()));
        let later = SystemTime::now() + Duration::from_secs(1);
        std::fs::File::options().write(true).open(&input).unwrap().set_modified(later).unwrap();
        assert_eq!(replay.lookup(), None);

        // A truncated or foreign file is no replay.
        let whole = std::fs::read_to_string(&replay.path).unwrap();
        for cut in [1, whole.len() / 2, whole.len() - 1] {
            assert!(parse(&whole[..cut]).is_none(), "cut at {cut}");
        }
        assert!(parse("k\n1\nnot a signature\t/x\npassing\n0\n0\n").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
