//! The layered merge, a pure function over parsed TOML documents.
//!
//! Rules: tables (`[a]` or inline `{ .. }`) merge recursively and keep the form the
//! earlier layer gave them; scalars and arrays (including `[[arrays of tables]]`) are
//! replaced whole; keys only in a later layer are added with their comments. Values are
//! never rewritten, so `${VAR}` / `${VAR:-default}` placeholders pass through verbatim.
//!
//! A later layer may not change a key's type (table vs array vs integer, ...), because a
//! service would only notice at start-up. The one exception: a string holding a
//! placeholder may stand in for any scalar, since the service substitutes it before
//! parsing the value (`port = "${PORT:-8080}"` over `port = 8080`).

use std::collections::BTreeMap;
use std::fmt;

use toml_edit::{DocumentMut, Item, Key, Table, Value};

/// One parsed source file; `name` is how messages refer to it.
pub struct Layer {
    pub name: String,
    pub doc: DocumentMut,
}

/// A later layer gives a key another type than an earlier one.
#[derive(Debug, PartialEq, Eq)]
pub struct TypeConflict {
    pub key: String,
    pub earlier_kind: Kind,
    pub earlier_file: String,
    pub later_kind: Kind,
    pub later_file: String,
}

impl fmt::Display for TypeConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type conflict at `{}`: {} in {} but {} in {}; give both the same type",
            self.key,
            self.earlier_kind.with_article(),
            self.earlier_file,
            self.later_kind.with_article(),
            self.later_file,
        )
    }
}

/// What a key holds, as far as merging is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Table,
    Array,
    String,
    Integer,
    Float,
    Boolean,
    Datetime,
}

impl Kind {
    fn of(item: &Item) -> Option<Kind> {
        Some(match item {
            Item::None => return None,
            Item::Table(_) => Kind::Table,
            Item::ArrayOfTables(_) => Kind::Array,
            Item::Value(value) => match value {
                Value::InlineTable(_) => Kind::Table,
                Value::Array(_) => Kind::Array,
                Value::String(_) => Kind::String,
                Value::Integer(_) => Kind::Integer,
                Value::Float(_) => Kind::Float,
                Value::Boolean(_) => Kind::Boolean,
                Value::Datetime(_) => Kind::Datetime,
            },
        })
    }

    fn is_scalar(self) -> bool {
        !matches!(self, Kind::Table | Kind::Array)
    }

    fn with_article(self) -> &'static str {
        match self {
            Kind::Table => "a table",
            Kind::Array => "an array",
            Kind::String => "a string",
            Kind::Integer => "an integer",
            Kind::Float => "a float",
            Kind::Boolean => "a boolean",
            Kind::Datetime => "a datetime",
        }
    }
}

fn is_placeholder(item: &Item) -> bool {
    item.as_str().is_some_and(|s| s.contains("${"))
}

/// May `later` replace `earlier`? (Both are non-tables here.)
fn replaceable(earlier: (Kind, &Item), later: (Kind, &Item)) -> bool {
    earlier.0 == later.0
        || (earlier.0.is_scalar()
            && later.0.is_scalar()
            && (is_placeholder(earlier.1) || is_placeholder(later.1)))
}

/// Merges `layers` in order into one document.
pub fn merge(layers: &[Layer]) -> Result<DocumentMut, TypeConflict> {
    let mut merged = DocumentMut::new();
    let mut origins = Origins::default();
    for (index, layer) in layers.iter().enumerate() {
        let mut path = Vec::new();
        merge_table(
            merged.as_item_mut(),
            layer.doc.as_table(),
            &mut path,
            &mut Merging { layers, index, origins: &mut origins },
        )?;
    }
    Ok(merged)
}

/// Which layer last set each key (or the subtree under it), to name both files in a
/// type conflict.
#[derive(Default)]
struct Origins(BTreeMap<Vec<String>, usize>);

impl Origins {
    fn set(&mut self, path: &[String], layer: usize) {
        // A replaced subtree forgets where its old children came from.
        self.0.retain(|key, _| !key.starts_with(path));
        self.0.insert(path.to_vec(), layer);
    }

    fn of(&self, path: &[String]) -> usize {
        (0..=path.len()).rev().find_map(|len| self.0.get(&path[..len]).copied()).unwrap_or(0)
    }
}

struct Merging<'a> {
    layers: &'a [Layer],
    index: usize,
    origins: &'a mut Origins,
}

/// `base` is table-like (a `Table` item or an inline table value).
fn merge_table(
    base: &mut Item,
    overlay: &dyn toml_edit::TableLike,
    path: &mut Vec<String>,
    m: &mut Merging<'_>,
) -> Result<(), TypeConflict> {
    let base_is_inline = base.is_inline_table();
    for (key, later) in overlay.iter() {
        let Some(later_kind) = Kind::of(later) else {
            continue;
        };
        path.push(key.to_owned());
        let base_table = base.as_table_like_mut().expect("merge_table is given tables");
        match base_table.get_mut(key) {
            None => {
                let formatted_key = overlay.key(key).cloned().unwrap_or_else(|| Key::new(key));
                insert(base, &formatted_key, placed(later.clone(), m.index));
                m.origins.set(path, m.index);
            }
            Some(earlier) => {
                let earlier_kind = Kind::of(earlier).expect("stored items are never None");
                if earlier_kind == Kind::Table && later_kind == Kind::Table {
                    let later_table = later.as_table_like().expect("kind is table");
                    merge_table(earlier, later_table, path, m)?;
                } else if earlier_kind != Kind::Table
                    && later_kind != Kind::Table
                    && replaceable((earlier_kind, earlier), (later_kind, later))
                {
                    replace(earlier, placed(later.clone(), m.index), base_is_inline);
                    append_key_comment(base, key, overlay.key(key));
                    m.origins.set(path, m.index);
                } else {
                    return Err(TypeConflict {
                        key: path.join("."),
                        earlier_kind,
                        earlier_file: m.layers[m.origins.of(path)].name.clone(),
                        later_kind,
                        later_file: m.layers[m.index].name.clone(),
                    });
                }
            }
        }
        path.pop();
    }
    Ok(())
}

/// Adds a key the base does not have, keeping the overlay's key formatting (and so the
/// comment lines above it).
fn insert(base: &mut Item, key: &Key, item: Item) {
    if let Some(table) = base.as_table_mut() {
        table.insert_formatted(key, item);
    } else if let Some(inline) = base.as_inline_table_mut() {
        // Inline tables hold values only: a `[table]` becomes `{ .. }` there.
        let value = item.into_value().expect("Item::None is skipped");
        inline.insert_formatted(key, value);
    }
}

/// A replaced key keeps the comment lines above it and gains the overlay's (which
/// explain the override) below them.
fn append_key_comment(base: &mut Item, key: &str, overlay_key: Option<&Key>) {
    let Some(added) = overlay_key
        .and_then(|k| k.leaf_decor().prefix())
        .and_then(|raw| raw.as_str())
        .filter(|prefix| prefix.contains('#'))
    else {
        return;
    };
    let Some(mut slot) = base.as_table_like_mut().and_then(|t| t.key_mut(key)) else {
        return;
    };
    let kept = slot.leaf_decor().prefix().and_then(|raw| raw.as_str()).unwrap_or("").to_owned();
    slot.leaf_decor_mut().set_prefix(format!("{kept}{}", added.trim_start_matches('\n')));
}

/// Replaces a scalar or array. The overlay's trailing comment wins when it has one (it
/// explains the override), otherwise the base's comment stays.
fn replace(slot: &mut Item, mut item: Item, in_inline_table: bool) {
    if in_inline_table && !item.is_value() {
        item = Item::Value(item.into_value().expect("Item::None is skipped"));
    }
    if let (Some(old), Some(new)) = (slot.as_value(), item.as_value_mut()) {
        let new_has_comment =
            new.decor().suffix().and_then(|raw| raw.as_str()).is_some_and(|s| s.contains('#'));
        if !new_has_comment {
            *new.decor_mut() = old.decor().clone();
        }
    }
    *slot = item;
}

/// Prepares tables copied from layer `index` for the merged document. Their positions
/// (the order of `[headers]` in their file) are moved past every earlier layer's, so the
/// output reads like the sources one after another; and a file's first header, which
/// has no blank line above it in its file, gets one.
fn placed(mut item: Item, index: usize) -> Item {
    fn visit(table: &mut Table, offset: isize) {
        if let Some(position) = table.position() {
            table.set_position(Some(position + offset));
        }
        let decor = table.decor_mut();
        if let Some(prefix) = decor.prefix().and_then(|raw| raw.as_str())
            && !prefix.starts_with('\n')
        {
            decor.set_prefix(format!("\n{prefix}"));
        }
        for (_, item) in table.iter_mut() {
            match item {
                Item::Table(sub) => visit(sub, offset),
                Item::ArrayOfTables(array) => array.iter_mut().for_each(|t| visit(t, offset)),
                _ => {}
            }
        }
    }
    let offset = isize::try_from(index).unwrap_or(isize::MAX / LAYER_SPAN) * LAYER_SPAN;
    match &mut item {
        Item::Table(table) => visit(table, offset),
        Item::ArrayOfTables(array) => array.iter_mut().for_each(|t| visit(t, offset)),
        _ => {}
    }
    item
}

/// More headers than any one config file has.
const LAYER_SPAN: isize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, text: &str) -> Layer {
        Layer { name: name.to_owned(), doc: text.parse().unwrap() }
    }

    fn merged(layers: &[(&str, &str)]) -> String {
        let layers: Vec<Layer> = layers.iter().map(|(n, t)| layer(n, t)).collect();
        merge(&layers).unwrap().to_string()
    }

    fn value_at(text: &str, path: &str) -> String {
        let doc: DocumentMut = text.parse().unwrap();
        let mut item = doc.as_item();
        for key in path.split('.') {
            item = &item[key];
        }
        item.as_value().unwrap_or_else(|| panic!("no value at {path} in:\n{text}")).to_string()
    }

    #[test]
    fn nested_tables_merge_key_by_key() {
        let out = merged(&[
            ("base", "[database.pool]\nmax = 10\nmin = 1\n\n[queues]\nbatch = 10\n"),
            ("env", "[database.pool]\nmax = 5\n[database.extra]\nnew = true\n"),
        ]);
        assert_eq!(value_at(&out, "database.pool.max").trim(), "5");
        assert_eq!(value_at(&out, "database.pool.min").trim(), "1");
        assert_eq!(value_at(&out, "database.extra.new").trim(), "true");
        assert_eq!(value_at(&out, "queues.batch").trim(), "10");
        // Tables a later layer adds follow the earlier layers' tables.
        let extra = out.find("[database.extra]").unwrap();
        assert!(extra > out.find("[queues]").unwrap(), "{out}");
    }

    #[test]
    fn inline_and_header_tables_merge_into_each_other() {
        let out = merged(&[
            ("base", "[web]\nlimits = { a = 1, b = 2 }\n"),
            ("env", "web = { port = 1 }\n"),
            ("local", "[web.limits]\nb = 3\nc = 4\n"),
        ]);
        assert_eq!(value_at(&out, "web.port").trim(), "1");
        assert_eq!(value_at(&out, "web.limits.a").trim(), "1");
        assert_eq!(value_at(&out, "web.limits.b").trim(), "3");
        assert_eq!(value_at(&out, "web.limits.c").trim(), "4");
        assert!(out.contains("limits = {"), "base kept its inline form:\n{out}");
    }

    #[test]
    fn arrays_are_replaced_not_concatenated() {
        let out = merged(&[
            ("base", "queues = [\"a\", \"b\", \"c\"]\n[[hosts]]\nname = \"x\"\n"),
            ("env", "queues = [\"z\"]\n[[hosts]]\nname = \"y\"\n"),
        ]);
        assert_eq!(value_at(&out, "queues").trim(), "[\"z\"]");
        let doc: DocumentMut = out.parse().unwrap();
        let hosts = doc["hosts"].as_array_of_tables().unwrap();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts.get(0).unwrap()["name"].as_str(), Some("y"));
    }

    #[test]
    fn placeholders_are_kept_verbatim() {
        let out = merged(&[
            ("base", "[database]\nurl = \"${DATABASE_URL}\"\nport = 5432\n"),
            ("env", "[database]\nport = \"${PGPORT:-5433}\"\nenv = '${TASKER_ENV:-test}'\n"),
        ]);
        assert!(out.contains("url = \"${DATABASE_URL}\""), "{out}");
        assert!(out.contains("port = \"${PGPORT:-5433}\""), "{out}");
        assert!(out.contains("env = '${TASKER_ENV:-test}'"), "{out}");
    }

    #[test]
    fn keys_only_in_the_override_are_added_with_their_comments() {
        let out = merged(&[
            ("base", "[queues]\nbatch = 10\n"),
            ("env", "[queues]\n# Why 7: see the runbook.\nretries = 7\n[metrics]\nport = 9\n"),
        ]);
        assert_eq!(value_at(&out, "queues.batch").trim(), "10");
        assert_eq!(value_at(&out, "queues.retries").trim(), "7");
        assert_eq!(value_at(&out, "metrics.port").trim(), "9");
        assert!(out.contains("# Why 7: see the runbook.\nretries = 7"), "{out}");
    }

    #[test]
    fn comments_survive_replacement() {
        let out = merged(&[
            ("base", "[a]\n# Explains x.\nx = 1 # base note\ny = 1\n"),
            ("env", "[a]\nx = 2\ny = 2 # env note\n"),
        ]);
        assert!(out.contains("# Explains x.\nx = 2 # base note\n"), "{out}");
        assert!(out.contains("y = 2 # env note\n"), "{out}");
    }

    #[test]
    fn the_comment_above_an_override_joins_the_base_comment() {
        let out = merged(&[
            ("base", "[a]\n# Explains x.\nx = 1\ny = 1\n"),
            ("env", "[a]\n\n# Tests need 2.\nx = 2\ny = 2\n"),
        ]);
        assert!(out.contains("# Explains x.\n# Tests need 2.\nx = 2\ny = 2\n"), "{out}");
    }

    #[test]
    fn a_table_overridden_by_a_scalar_is_a_conflict_naming_both_files() {
        let layers = [
            layer("base/common.toml", "[database.pool]\nmax = 1\n"),
            layer("env/test/common.toml", "[database.pool]\nmax = 5\n"),
            layer("base/worker.toml", "[database]\npool = 3\n"),
        ];
        let err = merge(&layers).unwrap_err();
        assert_eq!(
            err,
            TypeConflict {
                key: "database.pool".into(),
                earlier_kind: Kind::Table,
                earlier_file: "base/common.toml".into(),
                later_kind: Kind::Integer,
                later_file: "base/worker.toml".into(),
            }
        );
        let message = err.to_string();
        assert!(message.contains("`database.pool`"), "{message}");
        assert!(message.contains("base/common.toml") && message.contains("base/worker.toml"));
    }

    #[test]
    fn scalar_type_changes_are_conflicts_naming_the_last_writer() {
        let layers = [
            layer("a.toml", "[q]\nsize = 1\n"),
            layer("b.toml", "[q]\nsize = 2\n"),
            layer("c.toml", "[q]\nsize = \"big\"\n"),
        ];
        let err = merge(&layers).unwrap_err();
        assert_eq!((err.key.as_str(), err.earlier_file.as_str()), ("q.size", "b.toml"));
        assert_eq!((err.earlier_kind, err.later_kind), (Kind::Integer, Kind::String));
    }

    #[test]
    fn output_is_deterministic() {
        let layers = [("a", "[x]\nb = 1\n[y]\nc = 2\n"), ("b", "[z]\nd = 3\n[x]\ne = 4\n")];
        assert_eq!(merged(&layers), merged(&layers));
    }
}
