use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited", versoin = 2)]
struct Deposited {
    amount: u64,
}

fn main() {}
