use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.credited", version = 1)]
struct CreditedV1 {
    amount: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited", version = 2, upcast_from = CreditedV1)]
struct Deposited {
    amount: u64,
}

impl From<CreditedV1> for Deposited {
    fn from(old: CreditedV1) -> Self {
        Deposited { amount: old.amount }
    }
}

fn main() {}
