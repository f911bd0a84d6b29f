use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited")]
struct Deposited {
    amount: u64,
}

#[derive(Command, Clone)]
struct Deposit {
    #[aggregate_id]
    account: Ulid,
    amount: u64,
}

#[derive(Default)]
struct Account {
    balance: u64,
}

#[aggregate(name = "bank.account")]
impl Account {
    #[applies_event]
    fn deposited(&self, e: &Deposited) {
        let _ = e.amount + self.balance;
    }
}

fn main() {}
