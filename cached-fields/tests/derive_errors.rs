//! Issue #10: each mistake in a derive gives one error that says what is
//! wrong; the messages are pinned in `tests/ui/*.stderr`.
#![allow(missing_docs)]

#[test]
fn derive_mistakes_give_one_clear_error_each() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
