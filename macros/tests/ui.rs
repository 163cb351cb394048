//! Compile tests of `#[derive(State)]`: what must not compile fails with a helpful message at the
//! right place (`tests/fail`), and generated code passes strict lints (`tests/pass`).
//!
//! After changing a message, regenerate the expected output with `TRYBUILD=overwrite` and read
//! the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/fail/*.rs");
    t.pass("tests/pass/*.rs");
}
