use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bank.deposited")]
struct Deposited {
    amount: u64,
}

#[derive(Default)]
struct Totals {
    total: u64,
}

#[projection(name = "totals")]
impl Totals {
    #[handles_event]
    fn deposited(&mut self, e: &Deposited) {
        self.total += e.amount;
    }
}

fn main() {}
