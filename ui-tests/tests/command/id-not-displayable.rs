use interlock::prelude::*;

#[derive(Clone)]
struct AccountKey(u64);

#[derive(Command, Clone)]
struct Deposit {
    #[aggregate_id]
    account: AccountKey,
}

fn main() {}
