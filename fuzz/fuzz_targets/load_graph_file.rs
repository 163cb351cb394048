//! Arbitrary text through the graph-file loader and its checks: errors with positions, never
//! a panic. What loads is compiled with the built-in registry, and its canonical JSON reads
//! back to the same file.
#![no_main]

use agentgraph_spec::{GraphSpec, NodeRegistry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = GraphSpec::from_yaml_str("fuzz.yaml", text) else {
        return;
    };
    let _ = spec.compile(&NodeRegistry::builtin());
    let json = spec.to_json();
    let again = GraphSpec::from_yaml_str("fuzz.json", &json).expect("canonical JSON reads back");
    assert_eq!(again.to_json(), json);
});
