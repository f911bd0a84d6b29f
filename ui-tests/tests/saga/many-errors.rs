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

#[saga(name = "transfers", version = 2)]
impl Transfer {
    #[saga_step(start)]
    async fn requested(&self, e: TransferRequested) -> SagaResult {
        let _ = e;
        Ok(())
    }

    #[saga_step(key = transfer_id)]
    async fn settled(&mut self, _e: &TransferSettled, _ctx: SagaContext) -> SagaResult {
        Ok(())
    }
}

fn main() {}
