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
    #[saga_step(start, key = transfer_id)]
    async fn requested(&mut self, e: &TransferRequested, _ctx: &mut SagaContext) -> SagaResult {
        self.amount = e.amount;
        Ok(())
    }

    #[saga_step(end, key = transfer)]
    async fn settled(&mut self, _e: &TransferSettled, _ctx: &mut SagaContext) -> SagaResult {
        Ok(())
    }
}

fn main() {}
