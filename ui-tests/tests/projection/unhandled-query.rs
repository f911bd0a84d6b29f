use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited")]
struct Deposited {
    account: Ulid,
    amount: u64,
}

struct GetTotal;

#[derive(Default)]
struct Totals {
    total: u64,
}

struct GetCount;

#[projection(model = memory)]
impl Totals {
    #[handles_event]
    fn deposited(&mut self, e: &Deposited) {
        self.total += e.amount;
    }

    #[handles_query]
    fn total(&self, _q: GetTotal) -> u64 {
        self.total
    }
}

async fn run(app: Application) {
    let _ = app.query(GetCount).await;
}

fn main() {
    let _ = run;
}
