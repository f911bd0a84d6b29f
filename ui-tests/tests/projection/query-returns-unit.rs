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

#[projection(model = memory)]
impl Totals {
    #[handles_query]
    fn total(&self, _q: GetTotal) -> () {
        let _ = self.total;
    }
}

fn main() {}
