//! Manifest edits with `toml_edit`, keeping formatting and comments: removing a
//! declaration with the feature values that name it, removing a
//! `[workspace.dependencies]` entry, moving a declaration to `[dev-dependencies]`,
//! turning on the `unused_crate_dependencies` lint for the compiler tier.
//! Pure: documents in, documents out.

use toml_edit::{DocumentMut, Entry, Item, Key, Table as TomlTable, TableLike};

use super::analyze::{Table, names_dep};

fn table_names(table: Table) -> [&'static str; 2] {
    match table {
        Table::Normal => ["dependencies", "dependencies"],
        Table::Dev => ["dev-dependencies", "dev_dependencies"],
        Table::Build => ["build-dependencies", "build_dependencies"],
    }
}

/// The dependency table `table` (under `[target.'target']` when given), if present.
fn deps_table<'d>(
    doc: &'d mut DocumentMut,
    table: Table,
    target: Option<&str>,
) -> Option<&'d mut dyn TableLike> {
    let parent: &mut dyn TableLike = match target {
        None => doc.as_table_mut(),
        Some(t) => doc.get_mut("target")?.as_table_like_mut()?.get_mut(t)?.as_table_like_mut()?,
    };
    let name = table_names(table).into_iter().find(|n| parent.contains_key(n))?;
    parent.get_mut(name)?.as_table_like_mut()
}

/// Removes declaration `key` from `table`; true when it was there.
pub fn remove_dep(doc: &mut DocumentMut, key: &str, table: Table, target: Option<&str>) -> bool {
    deps_table(doc, table, target).and_then(|t| t.remove(key)).is_some()
}

/// Whether any dependency table of the manifest still declares `key`.
fn still_declared(doc: &DocumentMut, key: &str) -> bool {
    let has = |parent: &dyn TableLike| {
        [
            "dependencies",
            "dev-dependencies",
            "dev_dependencies",
            "build-dependencies",
            "build_dependencies",
        ]
        .iter()
        .any(|n| parent.get(n).and_then(Item::as_table_like).is_some_and(|t| t.contains_key(key)))
    };
    has(doc.as_table())
        || doc
            .get("target")
            .and_then(Item::as_table_like)
            .is_some_and(|ts| ts.iter().any(|(_, t)| t.as_table_like().is_some_and(has)))
}

/// After `key` was removed from every table that could enable features with it, drops
/// the feature values naming it (`dep:key`, `key/f`, `key?/f`, and the implicit feature
/// `key` of an optional dependency), then features that became empty and references
/// to them. `default` is kept even when empty. Returns the removed feature names.
pub fn cleanup_features(doc: &mut DocumentMut, key: &str) -> Vec<String> {
    if still_declared(doc, key) {
        return Vec::new();
    }
    let Some(features) = doc.get_mut("features").and_then(Item::as_table_like_mut) else {
        return Vec::new();
    };
    let explicit_feature = features.contains_key(key);
    let mut gone: Vec<String> = Vec::new();
    let mut names: Vec<String> = vec![key.to_string()];
    let mut first = true;
    while let Some(name) = names.pop() {
        let mut emptied = Vec::new();
        for (feature, item) in features.iter_mut() {
            let Some(values) = item.as_array_mut() else {
                continue;
            };
            let before = values.len();
            let first_prefix = values.get(0).and_then(|v| v.decor().prefix().cloned());
            values.retain(|v| {
                let Some(s) = v.as_str() else { return true };
                let names_removed = if first {
                    // `key` alone is the implicit feature unless a real feature has that name.
                    (s != key || !explicit_feature) && names_dep(s, key)
                } else {
                    s == name
                };
                !names_removed
            });
            if values.len() != before {
                if let (Some(prefix), Some(v)) = (first_prefix, values.get_mut(0)) {
                    v.decor_mut().set_prefix(prefix);
                }
                if values.is_empty() && feature.get() != "default" {
                    emptied.push(feature.get().to_string());
                }
            }
        }
        first = false;
        for f in emptied {
            features.remove(&f);
            names.push(f.clone());
            gone.push(f);
        }
    }
    gone
}

/// Removes `key` from the root's `[workspace.dependencies]`; true when it was there.
pub fn remove_workspace_dep(doc: &mut DocumentMut, key: &str) -> bool {
    doc.get_mut("workspace")
        .and_then(Item::as_table_like_mut)
        .and_then(|w| w.get_mut("dependencies"))
        .and_then(Item::as_table_like_mut)
        .and_then(|d| d.remove(key))
        .is_some()
}

/// Moves `key` from `[dependencies]` to `[dev-dependencies]` (of the same target).
/// Refuses when the feature table names it (dev-dependencies cannot be enabled by
/// features) or when it is optional.
pub fn move_to_dev(doc: &mut DocumentMut, key: &str, target: Option<&str>) -> Result<(), String> {
    let named_by_feature = doc.get("features").and_then(Item::as_table_like).and_then(|f| {
        f.iter()
            .find(|(_, v)| {
                v.as_array().is_some_and(|a| {
                    a.iter().any(|x| x.as_str().is_some_and(|s| names_dep(s, key)))
                })
            })
            .map(|(name, _)| name.to_string())
    });
    if let Some(feature) = named_by_feature {
        return Err(format!(
            "feature `{feature}` names it; dev-dependencies cannot be enabled by features"
        ));
    }
    let deps = deps_table(doc, Table::Normal, target).ok_or("its table is missing")?;
    let (k, item) = take(deps, key).ok_or("it is not declared")?;
    let optional =
        item.as_table_like().and_then(|t| t.get("optional")).and_then(Item::as_bool) == Some(true);
    if optional {
        put(deps, &k, item);
        return Err("it is optional; dev-dependencies cannot be optional".into());
    }
    let already = deps_table(doc, Table::Dev, target).is_some_and(|dev| dev.contains_key(key));
    if already {
        return Ok(()); // the dev table already declares it: dropping the normal one is the move
    }
    if deps_table(doc, Table::Dev, target).is_none() {
        let parent: &mut dyn TableLike = match target {
            None => doc.as_table_mut(),
            Some(t) => doc
                .get_mut("target")
                .and_then(Item::as_table_like_mut)
                .and_then(|ts| ts.get_mut(t))
                .and_then(Item::as_table_like_mut)
                .ok_or("its target table is missing")?,
        };
        parent.insert("dev-dependencies", Item::Table(TomlTable::new()));
    }
    let dev = deps_table(doc, Table::Dev, target).ok_or("could not create [dev-dependencies]")?;
    put(dev, &k, item);
    Ok(())
}

/// Removes `key` with its formatted key (comments above it travel along).
fn take(t: &mut dyn TableLike, key: &str) -> Option<(Key, Item)> {
    let k = t.key(key)?.clone();
    Some((k, t.remove(key)?))
}

fn put(t: &mut dyn TableLike, key: &Key, item: Item) {
    match t.entry_format(key) {
        Entry::Vacant(v) => {
            v.insert(item);
        }
        Entry::Occupied(mut o) => {
            o.insert(item);
        }
    }
}

/// The lint the compiler tier reads.
pub const UNUSED_CRATE_DEPS: &str = "unused_crate_dependencies";

/// Sets `unused_crate_dependencies = "warn"` in a member's `[lints.rust]`. Returns false
/// (changing nothing) when the member inherits its lints (`[lints] workspace = true`):
/// then the root's `[workspace.lints.rust]` gets it, see [`warn_unused_crates_workspace`].
pub fn warn_unused_crates(doc: &mut DocumentMut) -> bool {
    let inherits =
        doc.get("lints").and_then(|l| l.get("workspace")).and_then(Item::as_bool).unwrap_or(false);
    if inherits {
        return false;
    }
    set_warn(doc.as_table_mut(), &["lints", "rust"]);
    true
}

/// Sets `unused_crate_dependencies = "warn"` in the root's `[workspace.lints.rust]`.
pub fn warn_unused_crates_workspace(doc: &mut DocumentMut) {
    set_warn(doc.as_table_mut(), &["workspace", "lints", "rust"]);
}

fn set_warn(root: &mut TomlTable, path: &[&str]) {
    let mut table: &mut dyn TableLike = root;
    for name in path {
        if !table.get(name).is_some_and(Item::is_table_like) {
            let mut t = TomlTable::new();
            t.set_implicit(true);
            table.insert(name, Item::Table(t));
        }
        table = table.get_mut(name).and_then(Item::as_table_like_mut).expect("just inserted");
    }
    // A `{ level = .., priority = .. }` form or `deny` would also do, but `warn` never
    // stops the build.
    table.insert(UNUSED_CRATE_DEPS, toml_edit::value("warn"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(s: &str) -> DocumentMut {
        s.parse().unwrap()
    }

    #[test]
    fn removal_keeps_formatting_and_other_comments() {
        let mut d = doc(
            "[dependencies]\n# keep me\nserde = { workspace = true }   # trailing\nfoo = \"1\" # foo's\nbar = { version = \"2\", features = [\"x\"] }\n",
        );
        assert!(remove_dep(&mut d, "foo", Table::Normal, None));
        assert!(!remove_dep(&mut d, "foo", Table::Normal, None));
        assert_eq!(
            d.to_string(),
            "[dependencies]\n# keep me\nserde = { workspace = true }   # trailing\nbar = { version = \"2\", features = [\"x\"] }\n"
        );
    }

    #[test]
    fn removal_from_dotted_subtables_target_tables_and_legacy_names() {
        let mut d = doc(
            "[dependencies.foo]\nversion = \"1\"\n\n[dev_dependencies]\nbar = \"1\"\n\n[target.'cfg(unix)'.dependencies]\nnix = \"1\"\nlibc = \"1\"\n",
        );
        assert!(remove_dep(&mut d, "foo", Table::Normal, None));
        assert!(remove_dep(&mut d, "bar", Table::Dev, None));
        assert!(remove_dep(&mut d, "nix", Table::Normal, Some("cfg(unix)")));
        let s = d.to_string();
        assert!(!s.contains("foo") && !s.contains("bar") && !s.contains("nix ="), "{s}");
        assert!(s.contains("libc = \"1\""));
    }

    #[test]
    fn feature_cleanup() {
        let text = "[dependencies]\nfoo = { version = \"1\", optional = true }\nbar = \"1\"\n\n[features]\ndefault = [\"with-foo\"]\nwith-foo = [\"dep:foo\"]\ntuned = [\"bar/fast\", \"foo?/fast\"]\nall = [\"with-foo\", \"tuned\"]\nfoo-serde = [\"foo/serde\"]\n";
        let mut d = doc(text);
        remove_dep(&mut d, "foo", Table::Normal, None);
        let gone = cleanup_features(&mut d, "foo");
        assert_eq!(gone, ["with-foo", "foo-serde"]);
        assert_eq!(
            d.to_string(),
            "[dependencies]\nbar = \"1\"\n\n[features]\ndefault = []\ntuned = [\"bar/fast\"]\nall = [\"tuned\"]\n"
        );
    }

    #[test]
    fn implicit_feature_of_an_optional_dependency_is_removed_but_a_real_feature_is_not_confused() {
        let mut d = doc(
            "[dependencies]\nfoo = { version = \"1\", optional = true }\n[features]\nx = [\"foo\", \"y\"]\ny = []\n",
        );
        remove_dep(&mut d, "foo", Table::Normal, None);
        cleanup_features(&mut d, "foo");
        assert!(d.to_string().contains("x = [\"y\"]"), "{d}");
        assert!(d.to_string().contains("y = []"), "originally empty features stay");
    }

    #[test]
    fn features_stay_when_another_table_still_declares_the_key() {
        let mut d = doc(
            "[dependencies]\nfoo = \"1\"\n[build-dependencies]\nfoo = \"1\"\n[features]\nx = [\"foo/a\"]\n",
        );
        remove_dep(&mut d, "foo", Table::Build, None);
        assert!(cleanup_features(&mut d, "foo").is_empty());
        assert!(d.to_string().contains("x = [\"foo/a\"]"));
    }

    #[test]
    fn workspace_entry_removal() {
        let mut d = doc(
            "[workspace]\nmembers = []\n\n[workspace.dependencies]\na = \"1\"\n# b's comment\nb = \"2\"\nc = \"3\"\n",
        );
        assert!(remove_workspace_dep(&mut d, "b"));
        assert_eq!(
            d.to_string(),
            "[workspace]\nmembers = []\n\n[workspace.dependencies]\na = \"1\"\nc = \"3\"\n"
        );
    }

    #[test]
    fn move_to_dev_creates_or_reuses_the_table() {
        let mut d = doc(
            "[package]\nname = \"x\"\n\n[dependencies]\n# used in tests\nfoo = \"1\"\nbar = \"1\"\n",
        );
        move_to_dev(&mut d, "foo", None).unwrap();
        let s = d.to_string();
        assert!(s.contains("[dev-dependencies]\n# used in tests\nfoo = \"1\"\n"), "{s}");
        assert!(!s.split("[dev-dependencies]").next().unwrap().contains("foo"));
        let mut d = doc(
            "[dependencies]\nfoo = \"1\"\n[dev-dependencies]\nfoo = { version = \"1\", features = [\"t\"] }\n",
        );
        move_to_dev(&mut d, "foo", None).unwrap();
        assert_eq!(
            d.to_string(),
            "[dependencies]\n[dev-dependencies]\nfoo = { version = \"1\", features = [\"t\"] }\n"
        );
    }

    #[test]
    fn move_to_dev_refuses_feature_named_and_optional() {
        let mut d = doc("[dependencies]\nfoo = \"1\"\n[features]\nf = [\"foo/x\"]\n");
        assert!(move_to_dev(&mut d, "foo", None).unwrap_err().contains("feature `f`"));
        let mut d = doc("[dependencies]\nfoo = { version = \"1\", optional = true }\n");
        let before = d.to_string();
        assert!(move_to_dev(&mut d, "foo", None).unwrap_err().contains("optional"));
        assert_eq!(d.to_string(), before);
    }

    #[test]
    fn the_unused_crates_lint_goes_to_the_member_or_the_workspace_table() {
        let mut plain: DocumentMut = "[package]\nname = \"a\"\n".parse().unwrap();
        assert!(warn_unused_crates(&mut plain));
        assert_eq!(
            plain.to_string(),
            "[package]\nname = \"a\"\n\n[lints.rust]\nunused_crate_dependencies = \"warn\"\n"
        );
        let mut existing: DocumentMut =
            "[lints.rust]\nunused_crate_dependencies = \"deny\"\nunsafe_code = \"forbid\"\n"
                .parse()
                .unwrap();
        assert!(warn_unused_crates(&mut existing));
        assert_eq!(
            existing.to_string(),
            "[lints.rust]\nunused_crate_dependencies = \"warn\"\nunsafe_code = \"forbid\"\n"
        );
        let mut inherits: DocumentMut = "[lints]\nworkspace = true\n".parse().unwrap();
        assert!(!warn_unused_crates(&mut inherits));
        assert_eq!(inherits.to_string(), "[lints]\nworkspace = true\n");
        let mut root: DocumentMut = "[workspace]\nmembers = []\n".parse().unwrap();
        warn_unused_crates_workspace(&mut root);
        assert!(
            root.to_string()
                .ends_with("[workspace.lints.rust]\nunused_crate_dependencies = \"warn\"\n"),
            "{root}"
        );
    }
}
