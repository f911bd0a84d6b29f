//! Transfers: the request and its outcome, and the `MoneyTransfer` saga
//! that moves the money between the two accounts.

use std::time::Duration;

use interlock::HandlerFailure;
use interlock::prelude::*;

use crate::accounts::{CreditFromTransfer, DebitForTransfer, RefundTransfer, TransferCredited, TransferDebited};

/// Why a transfer refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The transfer was already requested.
    #[error("transfer already requested")]
    AlreadyRequested,
    /// The transfer is not pending any more.
    #[error("transfer is not pending")]
    NotPending,
}

/// A transfer was requested.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "transfers.requested")]
pub struct TransferRequested {
    /// The transfer.
    pub transfer_id: Ulid,
    /// From this account.
    pub from: Ulid,
    /// To this account.
    pub to: Ulid,
    /// The amount.
    pub amount: u64,
}

/// A transfer completed.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "transfers.completed")]
pub struct TransferCompleted {
    /// The transfer.
    pub transfer_id: Ulid,
}

/// A transfer failed; any debit was refunded.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "transfers.failed")]
pub struct TransferFailed {
    /// The transfer.
    pub transfer_id: Ulid,
    /// Why.
    pub reason: String,
}

/// Request a transfer.
#[derive(Command, Clone, Debug, PartialEq)]
pub struct RequestTransfer {
    /// The transfer.
    #[aggregate_id]
    pub transfer_id: Ulid,
    /// From this account.
    pub from: Ulid,
    /// To this account.
    pub to: Ulid,
    /// The amount.
    pub amount: u64,
}

/// Mark a transfer completed.
#[derive(Command, Clone, Debug, PartialEq)]
pub struct CompleteTransfer {
    /// The transfer.
    #[aggregate_id]
    pub transfer_id: Ulid,
}

/// Mark a transfer failed.
#[derive(Command, Clone, Debug, PartialEq)]
pub struct FailTransfer {
    /// The transfer.
    #[aggregate_id]
    pub transfer_id: Ulid,
    /// Why.
    pub reason: String,
}

/// Where a transfer stands.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferStatus {
    /// Not requested.
    #[default]
    None,
    /// Requested, not finished.
    Pending,
    /// Done.
    Completed,
    /// Failed or timed out.
    Failed,
}

/// A transfer's state.
#[derive(Default, Debug)]
pub struct Transfer {
    /// Where it stands.
    pub status: TransferStatus,
    /// Why it failed.
    pub reason: Option<String>,
}

#[aggregate(name = "transfers.transfer")]
impl Transfer {
    #[handles_command]
    fn request(&self, cmd: RequestTransfer) -> Result<TransferRequested, TransferError> {
        if self.status != TransferStatus::None {
            return Err(TransferError::AlreadyRequested);
        }
        Ok(TransferRequested {
            transfer_id: cmd.transfer_id,
            from: cmd.from,
            to: cmd.to,
            amount: cmd.amount,
        })
    }

    #[handles_command]
    fn complete(&self, cmd: CompleteTransfer) -> Result<TransferCompleted, TransferError> {
        if self.status != TransferStatus::Pending {
            return Err(TransferError::NotPending);
        }
        Ok(TransferCompleted {
            transfer_id: cmd.transfer_id,
        })
    }

    #[handles_command]
    fn fail(&self, cmd: FailTransfer) -> Result<TransferFailed, TransferError> {
        if self.status != TransferStatus::Pending {
            return Err(TransferError::NotPending);
        }
        Ok(TransferFailed {
            transfer_id: cmd.transfer_id,
            reason: cmd.reason,
        })
    }

    #[applies_event]
    fn requested(&mut self, _e: &TransferRequested) {
        self.status = TransferStatus::Pending;
    }

    #[applies_event]
    fn completed(&mut self, _e: &TransferCompleted) {
        self.status = TransferStatus::Completed;
    }

    #[applies_event]
    fn failed(&mut self, e: &TransferFailed) {
        self.status = TransferStatus::Failed;
        self.reason = Some(e.reason.clone());
    }
}

/// Fired when a transfer is still pending after its timeout.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "transfers.timed_out")]
pub struct TransferTimedOut {
    /// The transfer.
    pub transfer_id: Ulid,
}

/// How long a transfer may stay pending (a service of the application).
#[derive(Clone, Copy, Debug)]
pub struct TransferTimeout(pub Duration);

/// The process that moves the money: debit the source, credit the target,
/// and on a failed credit refund the source (compensation). A deadline
/// fails a transfer left pending.
#[derive(Default, Debug, Serialize, Deserialize, PartialEq)]
pub struct MoneyTransfer {
    /// The transfer.
    pub transfer_id: Option<Ulid>,
    /// From this account.
    pub from: Option<Ulid>,
    /// To this account.
    pub to: Option<Ulid>,
    /// The amount.
    pub amount: u64,
    /// Whether the source was debited.
    pub debited: bool,
    /// The timeout deadline's id.
    pub timeout: Option<Ulid>,
}

/// How long transfers wait before the deadline fails them, unless the
/// application registers a [`TransferTimeout`] service.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[saga(name = "transfers.money_transfer")]
impl MoneyTransfer {
    #[saga_step(start, key = transfer_id)]
    async fn requested(&mut self, e: &TransferRequested, ctx: &mut SagaContext) -> SagaResult {
        self.transfer_id = Some(e.transfer_id);
        self.from = Some(e.from);
        self.to = Some(e.to);
        self.amount = e.amount;
        let debit = DebitForTransfer {
            account: e.from,
            transfer_id: e.transfer_id,
            amount: e.amount,
        };
        // A refused debit fails the step: the runtime compensates (below).
        ctx.dispatch(debit).await?;
        self.debited = true;
        let timeout = ctx.service::<TransferTimeout>().map_or(DEFAULT_TIMEOUT, |t| t.0);
        self.timeout = Some(ctx.schedule_after(
            timeout,
            TransferTimedOut {
                transfer_id: e.transfer_id,
            },
        ));
        Ok(())
    }

    #[saga_step(key = transfer_id)]
    async fn debited(&mut self, e: &TransferDebited, ctx: &mut SagaContext) -> SagaResult {
        let Some(to) = self.to else {
            return Err(HandlerFailure::msg("transfer state has no target account"));
        };
        let credit = CreditFromTransfer {
            account: to,
            transfer_id: e.transfer_id,
            amount: e.amount,
        };
        // A refused credit fails the step: the runtime compensates (below).
        ctx.dispatch(credit).await?;
        Ok(())
    }

    /// Run by the runtime when a command above is refused (or a step keeps
    /// failing): give back what was debited, then fail the transfer. The
    /// failure is recorded first, so a crash in between still refunds.
    #[saga_compensation]
    async fn undo(&mut self, failure: &SagaFailure, ctx: &mut SagaContext) -> SagaResult {
        let Some(transfer_id) = self.transfer_id else {
            return Err(HandlerFailure::msg("transfer state has no id"));
        };
        if self.debited
            && let Some(from) = self.from
        {
            ctx.dispatch(RefundTransfer {
                account: from,
                transfer_id,
                amount: self.amount,
            })
            .await?;
        }
        let reason = format!("{}: {}", failure.during, failure.error);
        match ctx.dispatch(FailTransfer { transfer_id, reason }).await {
            Ok(()) | Err(interlock::CommandError::Domain(TransferError::NotPending)) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    #[saga_step(end, key = transfer_id)]
    async fn credited(&mut self, e: &TransferCredited, ctx: &mut SagaContext) -> SagaResult {
        ctx.dispatch(CompleteTransfer {
            transfer_id: e.transfer_id,
        })
        .await?;
        Ok(())
    }

    #[saga_deadline(end)]
    async fn timed_out(&mut self, d: &TransferTimedOut, ctx: &mut SagaContext) -> SagaResult {
        if self.debited
            && let Some(from) = self.from
        {
            ctx.dispatch(RefundTransfer {
                account: from,
                transfer_id: d.transfer_id,
                amount: self.amount,
            })
            .await?;
        }
        let reason = "timed out".to_owned();
        match ctx
            .dispatch(FailTransfer {
                transfer_id: d.transfer_id,
                reason,
            })
            .await
        {
            Ok(()) | Err(interlock::CommandError::Domain(TransferError::NotPending)) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}
