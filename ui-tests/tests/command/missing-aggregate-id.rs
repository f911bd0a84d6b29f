use interlock::prelude::*;

#[derive(Command, Clone)]
struct Deposit {
    account: Ulid,
    amount: u64,
}

fn main() {}
