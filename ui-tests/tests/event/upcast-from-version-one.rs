use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited_old")]
struct Old {
    amount: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited", upcast_from = Old)]
struct Deposited {
    amount: u64,
}

fn main() {}
