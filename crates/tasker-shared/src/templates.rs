//! Task templates: `<dir>/<namespace>/<name>/<version>.toml`, each a list of steps with a
//! handler name, dependencies (a DAG) and an attempt limit. The path names the template;
//! the file holds the steps. Templates are checked when loaded (unknown dependency,
//! cycle, duplicate step), so a broken template stops the service at startup.
//!
//! ```toml
//! description = "Two chained steps"
//! [[steps]]
//! name = "first"
//! handler = "square"
//! [[steps]]
//! name = "second"
//! handler = "square"
//! depends_on = ["first"]
//! max_attempts = 3
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub file: PathBuf,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task template {}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for TemplateError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTemplate {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub steps: Vec<StepTemplate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTemplate {
    pub name: String,
    pub handler: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Attempts before the step (and its task) is in error; 1 means no retry.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_max_attempts() -> u32 {
    3
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    description: Option<String>,
    steps: Vec<StepTemplate>,
}

impl TaskTemplate {
    /// Parses and validates one template's text.
    pub fn parse(namespace: &str, name: &str, version: &str, text: &str) -> Result<Self, String> {
        let file: TemplateFile = toml::from_str(text).map_err(|err| err.to_string())?;
        let template = TaskTemplate {
            namespace: namespace.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            description: file.description,
            steps: file.steps,
        };
        template.validate()?;
        Ok(template)
    }

    pub fn step(&self, name: &str) -> Option<&StepTemplate> {
        self.steps.iter().find(|step| step.name == name)
    }

    fn validate(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("a template needs at least one step".into());
        }
        let mut names = BTreeSet::new();
        for step in &self.steps {
            if step.name.is_empty() || step.handler.is_empty() {
                return Err("every step needs a non-empty `name` and `handler`".into());
            }
            if !names.insert(step.name.as_str()) {
                return Err(format!("duplicate step `{}`", step.name));
            }
            if step.max_attempts == 0 {
                return Err(format!("step `{}`: max_attempts must be at least 1", step.name));
            }
        }
        for step in &self.steps {
            for dependency in &step.depends_on {
                if !names.contains(dependency.as_str()) {
                    return Err(format!(
                        "step `{}` depends on unknown step `{dependency}`",
                        step.name
                    ));
                }
            }
        }
        // Kahn's algorithm: whatever cannot be ordered sits on a cycle.
        let mut remaining: BTreeMap<&str, BTreeSet<&str>> = self
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.depends_on.iter().map(String::as_str).collect()))
            .collect();
        loop {
            let ready: Vec<&str> = remaining
                .iter()
                .filter(|(_, deps)| deps.is_empty())
                .map(|(name, _)| *name)
                .collect();
            if ready.is_empty() {
                break;
            }
            for name in ready {
                remaining.remove(name);
                for deps in remaining.values_mut() {
                    deps.remove(name);
                }
            }
        }
        if !remaining.is_empty() {
            let cycle: Vec<&str> = remaining.keys().copied().collect();
            return Err(format!("dependency cycle among steps: {}", cycle.join(", ")));
        }
        Ok(())
    }
}

/// Every template under one directory.
#[derive(Debug, Clone, Default)]
pub struct TemplateRegistry {
    templates: BTreeMap<(String, String, String), TaskTemplate>,
}

impl TemplateRegistry {
    /// Loads `<dir>/<namespace>/<name>/<version>.toml`; the first invalid file fails it all.
    pub fn load_dir(dir: &Path) -> Result<Self, TemplateError> {
        let error =
            |file: &Path, message: String| TemplateError { file: file.to_path_buf(), message };
        let mut registry = TemplateRegistry::default();
        let namespaces = sorted_entries(dir).map_err(|err| {
            error(
                dir,
                format!("cannot read the template directory: {err} (set TASKER_TEMPLATE_PATH)"),
            )
        })?;
        for namespace_dir in namespaces.into_iter().filter(|p| p.is_dir()) {
            let names =
                sorted_entries(&namespace_dir).map_err(|e| error(&namespace_dir, e.to_string()))?;
            for name_dir in names.into_iter().filter(|p| p.is_dir()) {
                let files =
                    sorted_entries(&name_dir).map_err(|e| error(&name_dir, e.to_string()))?;
                for file in files {
                    if file.extension().is_none_or(|ext| ext != "toml") {
                        continue;
                    }
                    let text = std::fs::read_to_string(&file)
                        .map_err(|err| error(&file, format!("cannot read: {err}")))?;
                    let namespace = file_name(&namespace_dir);
                    let name = file_name(&name_dir);
                    let version = file
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let template = TaskTemplate::parse(&namespace, &name, &version, &text)
                        .map_err(|message| error(&file, message))?;
                    registry.insert(template);
                }
            }
        }
        Ok(registry)
    }

    pub fn insert(&mut self, template: TaskTemplate) {
        let key = (template.namespace.clone(), template.name.clone(), template.version.clone());
        self.templates.insert(key, template);
    }

    pub fn get(&self, namespace: &str, name: &str, version: &str) -> Option<&TaskTemplate> {
        self.templates.get(&(namespace.to_string(), name.to_string(), version.to_string()))
    }

    pub fn namespaces(&self) -> BTreeSet<String> {
        self.templates.keys().map(|(ns, _, _)| ns.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &TaskTemplate> {
        self.templates.values()
    }
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TaskTemplate, String> {
        TaskTemplate::parse("ns", "t", "1.0.0", text)
    }

    #[test]
    fn parses_steps_with_defaults() {
        let template = parse(
            r#"
            [[steps]]
            name = "a"
            handler = "h"
            [[steps]]
            name = "b"
            handler = "h"
            depends_on = ["a"]
            max_attempts = 1
            "#,
        )
        .unwrap();
        assert_eq!(template.steps.len(), 2);
        assert_eq!(template.step("a").unwrap().max_attempts, 3);
        assert_eq!(template.step("b").unwrap().depends_on, vec!["a".to_string()]);
    }

    #[test]
    fn rejects_unknown_dependency() {
        let err =
            parse("[[steps]]\nname = \"a\"\nhandler = \"h\"\ndepends_on = [\"zz\"]\n").unwrap_err();
        assert_eq!(err, "step `a` depends on unknown step `zz`");
    }

    #[test]
    fn rejects_duplicate_step() {
        let err = parse(
            "[[steps]]\nname = \"a\"\nhandler = \"h\"\n[[steps]]\nname = \"a\"\nhandler = \"h\"\n",
        )
        .unwrap_err();
        assert_eq!(err, "duplicate step `a`");
    }

    #[test]
    fn rejects_cycle() {
        let err = parse(
            r#"
            [[steps]]
            name = "root"
            handler = "h"
            [[steps]]
            name = "a"
            handler = "h"
            depends_on = ["root", "b"]
            [[steps]]
            name = "b"
            handler = "h"
            depends_on = ["a"]
            "#,
        )
        .unwrap_err();
        assert_eq!(err, "dependency cycle among steps: a, b");
    }

    #[test]
    fn repository_templates_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tasks");
        let registry = TemplateRegistry::load_dir(&dir).unwrap();
        assert!(registry.get("rust", "linear_workflow", "1.0.0").is_some());
        assert!(registry.namespaces().contains("rust"));
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("tasker-templates-{}", std::process::id()));
        let file = dir.join("ns/broken/1.0.0.toml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "[[steps]]\nname = \"a\"\nhandler = \"h\"\ndepends_on = [\"a\"]\n")
            .unwrap();
        let err = TemplateRegistry::load_dir(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(err.file, file);
        assert!(err.message.contains("cycle"), "{err}");
    }
}
