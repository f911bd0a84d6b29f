//! Compile-fail tests of the macros: every mistake of DESIGN §4 has a case
//! here with its reviewed `.stderr`. Regenerate with `TRYBUILD=overwrite`
//! and review the diff like code.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
    t.compile_fail("tests/event/*.rs");
    t.compile_fail("tests/command/*.rs");
    t.compile_fail("tests/aggregate/*.rs");
    t.compile_fail("tests/dispatch/*.rs");
    t.compile_fail("tests/projection/*.rs");
    t.compile_fail("tests/saga/*.rs");
    t.compile_fail("tests/consistency/*.rs");
    t.compile_fail("tests/peer/*.rs");
}
