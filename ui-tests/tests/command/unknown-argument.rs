use interlock::prelude::*;

#[derive(Command, Clone)]
#[command(nmae = "bank.deposit")]
struct Deposit {
    #[aggregate_id]
    account: Ulid,
}

fn main() {}
