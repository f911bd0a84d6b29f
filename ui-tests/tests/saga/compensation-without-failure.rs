use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "transfer.requested")]
struct TransferRequested {
    transfer_id: Ulid,
}

#[derive(Default, Serialize, Deserialize)]
struct Transfer {
    started: bool,
}

#[saga]
impl Transfer {
    #[saga_step(start, key = transfer_id)]
    async fn requested(&mut self, _e: &TransferRequested) -> SagaResult {
        self.started = true;
        Ok(())
    }

    #[saga_compensation]
    async fn undo(&mut self, e: &TransferRequested, _ctx: &mut SagaContext) -> SagaResult {
        let _ = e;
        Ok(())
    }
}

fn main() {}
