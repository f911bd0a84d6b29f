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

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited", version = 2)]
struct DepositedAgain {
    amount: u64,
}

#[aggregate(name = "bank.account")]
impl Account {
    #[applies_event]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }

    #[applies_event]
    fn deposited_again(&mut self, e: &DepositedAgain) {
        self.balance += e.amount;
    }
}

fn main() {}
