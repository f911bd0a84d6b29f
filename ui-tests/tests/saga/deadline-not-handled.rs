use std::time::Duration;

use interlock::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "transfer.requested")]
struct TransferRequested {
    transfer_id: Ulid,
    amount: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct Transfer {
    amount: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "transfer.timed_out")]
struct TimedOut {
    transfer_id: Ulid,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "transfer.reminder")]
struct Reminder {
    transfer_id: Ulid,
}

#[saga]
impl Transfer {
    #[saga_step(start, key = transfer_id)]
    async fn requested(&mut self, e: &TransferRequested, ctx: &mut SagaContext) -> SagaResult {
        self.amount = e.amount;
        // Handled below: compiles.
        ctx.schedule_after(Duration::from_secs(60), TimedOut { transfer_id: e.transfer_id });
        // No `#[saga_deadline]` takes a `Reminder`: it would never fire.
        ctx.schedule_after(Duration::from_secs(30), Reminder { transfer_id: e.transfer_id });
        Ok(())
    }

    #[saga_deadline(end)]
    async fn timed_out(&mut self, _d: &TimedOut) -> SagaResult {
        Ok(())
    }
}

fn main() {}
