use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited", version = 1)]
struct DepositedV1 {
    amount: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited", version = 3, upcast_from = DepositedV1)]
struct Deposited {
    amount: u64,
}

impl From<DepositedV1> for Deposited {
    fn from(old: DepositedV1) -> Self {
        Deposited { amount: old.amount }
    }
}

fn main() {}
