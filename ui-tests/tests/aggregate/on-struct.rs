use interlock::prelude::*;

#[aggregate(name = "bank.account")]
struct Account {
    balance: u64,
}

fn main() {}
