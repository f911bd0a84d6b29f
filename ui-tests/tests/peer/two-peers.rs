use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "ledger.moved")]
struct Moved {
    amount: u64,
}

#[derive(Command, Clone)]
struct Transfer {
    #[aggregate_id]
    from: Ulid,
    #[peer_id]
    to: Ulid,
    amount: u64,
}

#[derive(Default)]
struct Ledger;

#[aggregate(name = "ledger.account")]
impl Ledger {
    #[handles_command]
    fn transfer(&self, cmd: Transfer, #[peer] to: &Self, #[peer] again: &Self) -> (Moved, Peer<Moved>) {
        let _ = (to, again);
        (Moved { amount: cmd.amount }, Peer(Moved { amount: cmd.amount }))
    }

    #[applies_event]
    fn moved(&mut self, _: &Moved) {}
}

fn main() {}

