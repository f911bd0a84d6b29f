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

#[aggregate(name = "bank.account", cache = true)]
impl Account {
    #[handles_command]
    fn deposit(&mut self, cmd: Deposit) -> Deposited {
        Deposited { amount: cmd.amount }
    }

    #[handles_command]
    fn deposit_twice(&self, cmd: Deposit) -> Deposited {
        Deposited { amount: cmd.amount }
    }

    #[applies_event]
    fn deposited(&self, e: Deposited) {
        let _ = e;
    }
}

fn main() {}
