//! The attribute's compile errors, and the forms it accepts
//! (`TRYBUILD=overwrite` regenerates the expected `.stderr` files).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
