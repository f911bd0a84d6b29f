use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited", version = 1)]
struct DepositedV1 {
    amount: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited", version = 2, upcast_from = DepositedV1)]
struct Deposited {
    amount: u64,
    currency: String,
}

fn main() {}
