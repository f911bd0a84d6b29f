use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(version = 1)]
struct Deposited {
    amount: u64,
}

fn main() {}
