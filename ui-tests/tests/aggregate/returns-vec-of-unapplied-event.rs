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
#[event(name = "bank.audited")]
struct Audited;

#[aggregate(name = "bank.account")]
impl Account {
    #[handles_command]
    fn deposit(&self, _cmd: Deposit) -> Vec<Audited> {
        vec![Audited]
    }

    #[applies_event]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

fn main() {}
