//! A feeder that dispatches generated steps through the bridge without any queue or
//! database, so the FFI hand-over can be soaked and measured on its own
//! (`workers/ruby/bench/soak.rb`).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::bridge::Bridge;

/// `tasker_ruby_start_synthetic`'s argument, e.g.
/// `{"handlers":["ruby_linear_step_1"],"count":10000,"context":{"even_number":6}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub handlers: Vec<String>,
    pub count: u64,
    #[serde(default)]
    pub context: Value,
}

impl Spec {
    pub fn parse(text: &str) -> Result<Self, String> {
        let spec: Spec = serde_json::from_str(text).map_err(|err| {
            format!(
                "invalid synthetic spec ({err}): expected {{\"handlers\":[...],\"count\":N,\"context\":{{...}}}}"
            )
        })?;
        if spec.handlers.is_empty() {
            return Err("invalid synthetic spec: `handlers` is empty".to_owned());
        }
        Ok(spec)
    }
}

/// Dispatches `count` steps one after the other, cycling through the handlers. The payload
/// has the shape the real worker gives handlers, with empty dependency results.
pub async fn feed(bridge: &Bridge, spec: Spec) {
    for sequence in 0..spec.count {
        let handler = &spec.handlers[(sequence % spec.handlers.len() as u64) as usize];
        let payload = json!({
            "step_name": handler,
            "sequence": sequence,
            "context": spec.context,
            "dependency_results": {},
        });
        let _ = bridge.dispatch(handler, payload).await;
    }
}
