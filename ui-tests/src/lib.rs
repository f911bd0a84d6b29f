//! Compile-fail tests live in `tests/`; run them with `cargo test -p interlock-ui-tests`.
