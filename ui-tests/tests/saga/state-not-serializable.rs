use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "transfer.requested")]
struct TransferRequested {
    transfer_id: Ulid,
}

#[derive(Default)]
struct Transfer;

#[saga]
impl Transfer {
    #[saga_step(start, key = transfer_id)]
    fn requested(&mut self, _e: &TransferRequested) {}
}

fn main() {}
