use interlock::prelude::*;

#[derive(Command, Clone)]
struct Deposit {
    #[aggregate_id]
    account: Ulid,
    #[command_id]
    request: String,
}

fn main() {}
