//! A small unified line diff for `--check` (config files are a few hundred lines at most,
//! so a quadratic longest-common-subsequence is plenty and saves a dependency).

const CONTEXT: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Same,
    Removed,
    Added,
}

/// `diff -u` style text turning `old` into `new`; empty when they are equal.
pub fn unified(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = edit_script(&a, &b);
    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    if ops.iter().all(|(op, _)| *op == Op::Same) {
        if old == new {
            return String::new();
        }
        // Same lines, other bytes: `\r\n` endings or the final newline.
        out.push_str("(the lines are equal; the line endings or the final newline differ)\n");
        return out;
    }

    let changed: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].0 != Op::Same).collect();
    // Group changes whose context windows touch into one hunk each.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &i in &changed {
        let start = i.saturating_sub(CONTEXT);
        let end = (i + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    for (start, end) in hunks {
        let hunk = &ops[start..end];
        // Line numbers (1-based) where the hunk starts in each file.
        let old_before = ops[..start].iter().filter(|(op, _)| *op != Op::Added).count();
        let new_before = ops[..start].iter().filter(|(op, _)| *op != Op::Removed).count();
        let old_len = hunk.iter().filter(|(op, _)| *op != Op::Added).count();
        let new_len = hunk.iter().filter(|(op, _)| *op != Op::Removed).count();
        let first = |before: usize, len: usize| if len == 0 { before } else { before + 1 };
        out.push_str(&format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            first(old_before, old_len),
            first(new_before, new_len)
        ));
        for (op, line) in hunk {
            let sign = match op {
                Op::Same => ' ',
                Op::Removed => '-',
                Op::Added => '+',
            };
            out.push(sign);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn edit_script<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(Op, &'a str)> {
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] =
                if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(a.len() + b.len());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((Op::Same, a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push((Op::Added, b[j]));
            j += 1;
        } else {
            ops.push((Op::Removed, a[i]));
            i += 1;
        }
    }
    // Show removals before additions within a change, as `diff -u` does.
    let mut k = 0;
    while k < ops.len() {
        let run_end = (k..ops.len()).find(|&x| ops[x].0 == Op::Same).unwrap_or(ops.len());
        ops[k..run_end].sort_by_key(|(op, _)| *op == Op::Added);
        k = run_end + 1;
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "old", "new"), "");
    }

    #[test]
    fn texts_differing_only_in_line_endings_still_have_a_diff() {
        for (old, new) in [("a\nb", "a\nb\n"), ("a\r\nb\r\n", "a\nb\n")] {
            let diff = unified(old, new, "old", "new");
            assert!(diff.starts_with("--- old\n+++ new\n"), "{diff}");
            assert!(diff.contains("the line endings or the final newline differ"), "{diff}");
        }
    }

    #[test]
    fn a_changed_line_shows_with_context_and_line_numbers() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        let new = "1\n2\n3\n4\n5\nsix\n7\n8\n9\n10\n";
        let expected = "--- old\n+++ new\n@@ -3,7 +3,7 @@\n 3\n 4\n 5\n-6\n+six\n 7\n 8\n 9\n";
        assert_eq!(unified(old, new, "old", "new"), expected);
    }

    #[test]
    fn distant_changes_make_separate_hunks() {
        let old: String = (1..=20).map(|n| format!("{n}\n")).collect();
        let new: String = (1..=20)
            .filter(|&n| n != 19)
            .map(|n| if n == 2 { "two\n".to_owned() } else { format!("{n}\n") })
            .collect();
        let diff = unified(&old, &new, "old", "new");
        assert_eq!(diff.matches("@@ -").count(), 2, "{diff}");
        assert!(diff.contains("-2\n+two\n"), "{diff}");
        assert!(diff.contains("@@ -1,5 +1,5 @@\n 1\n-2\n+two\n"), "{diff}");
        assert!(diff.contains("@@ -16,5 +16,4 @@\n 16\n 17\n 18\n-19\n 20\n"), "{diff}");
    }

    #[test]
    fn a_removed_line_and_a_replaced_block_read_as_removals_then_additions() {
        // What `deps --verified-only --dry-run` prints for a manifest.
        let old = "[dependencies]\nfoo = \"1\"\nbar = \"1\"\nbaz = \"1\"\n\n[features]\na = [\"dep:foo\", \"bar/x\"]\nb = [\"bar/y\"]\n";
        let new = "[dependencies]\nfoo = \"1\"\nbaz = \"1\"\n\n[features]\na = [\"dep:foo\"]\n";
        assert_eq!(
            unified(old, new, "a/Cargo.toml", "b/Cargo.toml"),
            "--- a/Cargo.toml\n+++ b/Cargo.toml\n@@ -1,8 +1,6 @@\n [dependencies]\n foo = \"1\"\n-bar = \"1\"\n baz = \"1\"\n \n [features]\n-a = [\"dep:foo\", \"bar/x\"]\n-b = [\"bar/y\"]\n+a = [\"dep:foo\"]\n"
        );
    }

    #[test]
    fn diff_against_an_empty_file() {
        assert_eq!(unified("", "a\n", "old", "new"), "--- old\n+++ new\n@@ -0,0 +1,1 @@\n+a\n");
    }
}
