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
    fn deposit(&self, cmd: Deposit) -> Reply<u64, Deposited> {
        Reply::new(self.balance + cmd.amount, Deposited { amount: cmd.amount })
    }

    #[applies_event]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }
}

async fn run(app: Application) {
    let balance: String = app.dispatch(Deposit { account: Ulid::new(), amount: 1 }).await.unwrap();
    let _ = balance;
}

fn main() {
    let _ = run;
}
