use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "transfer.requested")]
struct TransferRequested {
    transfer_id: Ulid,
    amount: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "transfer.settled")]
struct TransferSettled {
    transfer_id: Ulid,
}

#[derive(Default, Serialize, Deserialize)]
struct Transfer {
    amount: u64,
}

#[saga]
impl Transfer {
    #[saga_step(start)]
    async fn requested(&mut self, e: &TransferRequested, _ctx: &mut SagaContext) -> SagaResult {
        self.amount = e.amount;
        Ok(())
    }
}

fn main() {}
