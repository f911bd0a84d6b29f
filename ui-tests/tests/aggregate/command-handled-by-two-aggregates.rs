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
    #[handles_command]
    fn deposit(&self, cmd: Deposit) -> Deposited {
        Deposited { amount: cmd.amount }
    }

    #[applies_event]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

#[derive(Default)]
struct Ledger;

#[aggregate(name = "bank.ledger")]
impl Ledger {
    #[handles_command]
    fn record(&self, cmd: Deposit) -> Deposited {
        Deposited { amount: cmd.amount }
    }

    #[applies_event]
    fn deposited(&mut self, _e: &Deposited) {}
}

fn main() {}
