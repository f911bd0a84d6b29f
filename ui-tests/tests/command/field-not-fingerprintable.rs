use interlock::prelude::*;

#[derive(Clone)]
struct Opaque(u8);

#[derive(Command, Clone)]
struct Deposit {
    #[aggregate_id]
    account: Ulid,
    note: Opaque,
}

// Skipped fields need neither trait.
#[derive(Command, Clone)]
struct Withdraw {
    #[aggregate_id]
    account: Ulid,
    #[command(skip_fingerprint)]
    note: Opaque,
}

fn main() {}
