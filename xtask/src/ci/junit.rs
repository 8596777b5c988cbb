//! Reading the JUnit XML nextest writes: each test case, its outcome, its duration, and
//! whether it needed a retry (`<flakyFailure>`: failed, then passed; `<rerunFailure>`:
//! failed every attempt). A small purpose-built scanner: the reports are our own
//! tool's, and no XML crate is worth its build time for them.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One test case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// `classname::name` (nextest's classname is `package::binary`).
    pub name: String,
    pub outcome: Outcome,
    pub seconds: f64,
    /// Failed at first, passed on a retry.
    pub flaky: bool,
    /// Ran more than once (flaky, or failed on every retry).
    pub retried: bool,
}

pub fn parse(xml: &str) -> Result<Vec<Case>, String> {
    if !xml.contains("<testsuite") {
        return Err("no <testsuite> element: not a JUnit report".into());
    }
    let mut cases = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<testcase") {
        let after = &rest[start + "<testcase".len()..];
        let end = after.find('>').ok_or("a <testcase> tag is not closed")?;
        let tag = &after[..end];
        let self_closing = tag.ends_with('/');
        let name = attribute(tag, "name").ok_or("a <testcase> has no name")?;
        let class = attribute(tag, "classname").unwrap_or_default();
        let seconds = attribute(tag, "time").and_then(|t| t.parse().ok()).unwrap_or(0.0);
        let (body, next) = if self_closing {
            ("", &after[end + 1..])
        } else {
            let body = &after[end + 1..];
            let close = body.find("</testcase>").ok_or("a <testcase> has no </testcase>")?;
            (&body[..close], &body[close + "</testcase>".len()..])
        };
        let outcome = if body.contains("<failure") || body.contains("<error") {
            Outcome::Failed
        } else if body.contains("<skipped") {
            Outcome::Skipped
        } else {
            Outcome::Passed
        };
        let flaky = outcome == Outcome::Passed && body.contains("<flakyFailure");
        let retried = flaky || body.contains("<rerunFailure") || body.contains("<rerunError");
        let name = if class.is_empty() { name } else { format!("{class}::{name}") };
        cases.push(Case { name, outcome, seconds, flaky, retried });
        rest = next;
    }
    Ok(cases)
}

/// The value of `key="..."` (or `'...'`) in a tag's attributes, entities decoded.
fn attribute(tag: &str, key: &str) -> Option<String> {
    let mut search = tag;
    loop {
        let at = search.find(key)?;
        let before = search[..at].chars().last();
        let after = &search[at + key.len()..];
        let after_eq = after.trim_start().strip_prefix('=');
        if before.is_some_and(char::is_whitespace)
            && let Some(value) = after_eq.map(str::trim_start)
        {
            let quote = value.chars().next()?;
            if quote == '"' || quote == '\'' {
                let value = &value[1..];
                let close = value.find(quote)?;
                return Some(decode(&value[..close]));
            }
        }
        search = &search[at + key.len()..];
    }
}

fn decode(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape nextest writes with retries.
    const RETRIES: &str = r#"<testsuites name="nextest-run" tests="3" failures="1">
    <testsuite name="flaky" tests="3">
        <testcase name="passes" classname="flaky" timestamp="t" time="0.010"/>
        <testcase name="sometimes" classname="flaky" timestamp="t" time="0.016">
            <flakyFailure timestamp="t" time="0.162" message="m" type="test failure">first attempt fails</flakyFailure>
        </testcase>
        <testcase name="always_fails" classname="flaky" time="0.2">
            <failure message="m" type="test failure">no</failure>
            <rerunFailure time="0.1" message="m">no</rerunFailure>
        </testcase>
    </testsuite>
</testsuites>"#;

    #[test]
    fn durations_and_retries_are_read() {
        let cases = parse(RETRIES).unwrap();
        let by = |name: &str| cases.iter().find(|c| c.name == name).unwrap().clone();
        assert_eq!(
            by("flaky::passes"),
            Case {
                name: "flaky::passes".into(),
                outcome: Outcome::Passed,
                seconds: 0.01,
                flaky: false,
                retried: false
            }
        );
        let sometimes = by("flaky::sometimes");
        assert!(sometimes.flaky && sometimes.retried && sometimes.outcome == Outcome::Passed);
        let always = by("flaky::always_fails");
        assert!(!always.flaky && always.retried && always.outcome == Outcome::Failed);
        assert_eq!(always.seconds, 0.2);
    }
}
