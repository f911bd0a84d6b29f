use interlock::prelude::*;

#[projection]
struct Totals {
    total: u64,
}

fn main() {}
