//! The fuzz target `load_graph_file`'s checks over its seed corpus
//! (`fuzz/seeds/load_graph_file/`, the files of these tests and the `new` templates; `fuzz/corpus` is the fuzzer's own, not kept in git), without nightly: no panic, and
//! what loads writes canonical JSON that reads back the same. Also text that is not a graph at
//! all, and a deeply nested document.

use agentgraph_spec::{GraphSpec, NodeRegistry};

fn check(text: &str) {
    let Ok(spec) = GraphSpec::from_yaml_str("fuzz.yaml", text) else {
        return;
    };
    let _ = spec.compile(&NodeRegistry::builtin());
    let json = spec.to_json();
    let again = GraphSpec::from_yaml_str("fuzz.json", &json).expect("canonical JSON reads back");
    assert_eq!(again.to_json(), json);
}

#[test]
fn the_seed_corpus_loads_without_panics() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/load_graph_file");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        check(&text);
        n += 1;
    }
    assert!(n >= 10, "the corpus has the tests' files");
}

#[test]
fn odd_inputs_are_errors() {
    for text in [
        "",
        "\u{0}",
        "[1, 2",
        "version: 1\nnodes: *x\n",
        "version: 1\nnodes:\n  - &a { name: a, kind: set }\n  - *a\n",
        &"[".repeat(10_000),
        &format!("version: 1\nname: {}\n", "{a: ".repeat(5_000)),
    ] {
        check(text);
    }
}
