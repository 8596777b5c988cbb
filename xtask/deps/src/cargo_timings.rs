//! cargo's `--timings` report (`cargo-timing.html`): the `UNIT_DATA` array it embeds,
//! one entry per compiled unit. Read here for the savings and by xtask's
//! `build-timings`, each into the fields it needs.

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The units of a `cargo-timing.html`, each read as a `T`.
pub fn units<T: DeserializeOwned>(html: &str) -> Result<Vec<T>, String> {
    let marker = "const UNIT_DATA = ";
    let start = html.find(marker).ok_or("no UNIT_DATA: not a cargo timing report")? + marker.len();
    let end = html[start..].find("];").ok_or("UNIT_DATA is not closed")? + start + 1;
    serde_json::from_str(&html[start..end]).map_err(|e| format!("UNIT_DATA does not parse: {e}"))
}

/// What a removal's saving needs of a unit: whose it is and how long it took.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Unit {
    pub name: String,
    pub version: String,
    pub duration: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_without_unit_data_or_with_broken_data_says_which() {
        assert!(units::<Unit>("<html></html>").unwrap_err().contains("not a cargo timing report"));
        assert!(
            units::<Unit>("const UNIT_DATA = [{\"i\": ];").unwrap_err().contains("does not parse")
        );
        assert!(units::<Unit>("const UNIT_DATA = [").unwrap_err().contains("not closed"));
        let html = r#"x const UNIT_DATA = [{"name": "a", "version": "1.0.0", "duration": 0.5, "i": 0}]; y"#;
        assert_eq!(
            units::<Unit>(html).unwrap(),
            [Unit { name: "a".into(), version: "1.0.0".into(), duration: 0.5 }]
        );
    }
}
