//! Saga and projection scenarios: plain `#[test]`s, no runtime, no store.

use std::time::Duration;

use interlock::CommandError;
use interlock::prelude::*;
use interlock::scenario::{ProjectionScenario, SagaScenario};
use transfer_example::accounts::*;
use transfer_example::balances::{Balances, GetBalance, TransferCounts};
use transfer_example::transfer::*;

fn requested(transfer_id: Ulid, from: Ulid, to: Ulid) -> TransferRequested {
    TransferRequested {
        transfer_id,
        from,
        to,
        amount: 30,
    }
}

#[test]
fn the_start_step_debits_and_schedules_the_timeout() {
    let (t, from, to) = (Ulid::new(), Ulid::new(), Ulid::new());
    let outcome = SagaScenario::<MoneyTransfer>::new()
        .service(TransferTimeout(Duration::from_secs(5)))
        .when(requested(t, from, to))
        .then_ok()
        .then_dispatches(DebitForTransfer {
            account: from,
            transfer_id: t,
            amount: 30,
        })
        .then_dispatch_count(1)
        .then_schedules(TransferTimedOut { transfer_id: t })
        .then_state(|s| assert!(s.debited && s.to == Some(to)));
    assert_eq!(outcome.scheduled().len(), 1);
}

#[test]
fn a_refused_debit_fails_the_transfer_and_ends_the_saga() {
    let (t, from, to) = (Ulid::new(), Ulid::new(), Ulid::new());
    SagaScenario::<MoneyTransfer>::new()
        .respond::<DebitForTransfer>(|_| {
            Err(CommandError::Domain(AccountError::InsufficientFunds {
                balance: 1,
                requested: 30,
            }))
        })
        .when(requested(t, from, to))
        .then_ok()
        .then_dispatch_count(2)
        .then_ended();
}

#[test]
fn a_refused_credit_is_compensated() {
    let (t, from, to) = (Ulid::new(), Ulid::new(), Ulid::new());
    SagaScenario::<MoneyTransfer>::new()
        .respond::<CreditFromTransfer>(|_| Err(CommandError::Domain(AccountError::Closed)))
        .given(requested(t, from, to))
        .when(TransferDebited {
            transfer_id: t,
            account: from,
            amount: 30,
        })
        .then_ok()
        .then_dispatches(CreditFromTransfer {
            account: to,
            transfer_id: t,
            amount: 30,
        })
        .then_dispatches(RefundTransfer {
            account: from,
            transfer_id: t,
            amount: 30,
        })
        .then_ended();
}

#[test]
fn the_timeout_refunds_and_ends() {
    let (t, from, to) = (Ulid::new(), Ulid::new(), Ulid::new());
    SagaScenario::<MoneyTransfer>::new()
        .given(requested(t, from, to))
        .when_deadline(TransferTimedOut { transfer_id: t })
        .then_ok()
        .then_dispatches(RefundTransfer {
            account: from,
            transfer_id: t,
            amount: 30,
        })
        .then_ended();
}

#[test]
fn events_without_an_instance_are_ignored() {
    SagaScenario::<MoneyTransfer>::new()
        .when(TransferCredited {
            transfer_id: Ulid::new(),
            account: Ulid::new(),
            amount: 1,
        })
        .then_ok()
        .then_dispatch_count(0);
}

#[test]
fn the_balances_projection_answers_queries() {
    let (a, b) = (Ulid::new(), Ulid::new());
    ProjectionScenario::new(Balances::default())
        .given(MoneyDeposited {
            account: a,
            amount: 100,
        })
        .given(TransferDebited {
            transfer_id: Ulid::new(),
            account: a,
            amount: 40,
        })
        .given(TransferCredited {
            transfer_id: Ulid::new(),
            account: b,
            amount: 40,
        })
        .given(TransferCompleted {
            transfer_id: Ulid::new(),
        })
        .then_query(GetBalance { account: a }, Some(60))
        .then_query(GetBalance { account: b }, Some(40))
        .then_query(GetBalance { account: Ulid::new() }, None)
        .then_query(TransferCounts, (1, 0));
}
