use interlock::prelude::*;

#[derive(Command, Clone)]
struct Deposit {
    #[aggregate_id]
    account: Ulid,
    #[command(skip)]
    amount: u64,
}

fn main() {}
