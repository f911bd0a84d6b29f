//! The `Balances` read model: every account's balance, by query.

use std::collections::HashMap;

use interlock::prelude::*;

use crate::accounts::{MoneyDeposited, TransferCredited, TransferDebited, TransferRefunded};
use crate::transfer::{TransferCompleted, TransferFailed};

/// Ask for one account's balance.
#[derive(Debug, Clone)]
pub struct GetBalance {
    /// The account.
    pub account: Ulid,
}

/// Ask how many transfers completed and failed.
#[derive(Debug, Clone)]
pub struct TransferCounts;

/// Balances and transfer outcomes, folded from account and transfer events.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Balances {
    balances: HashMap<Ulid, u64>,
    completed: u64,
    failed: u64,
}

#[projection(name = "transfers.balances", model = memory)]
impl Balances {
    #[handles_event]
    fn deposited(&mut self, e: &MoneyDeposited) {
        *self.balances.entry(e.account).or_default() += e.amount;
    }

    #[handles_event]
    fn debited(&mut self, e: &TransferDebited) {
        let balance = self.balances.entry(e.account).or_default();
        *balance = balance.saturating_sub(e.amount);
    }

    #[handles_event]
    fn credited(&mut self, e: &TransferCredited) {
        *self.balances.entry(e.account).or_default() += e.amount;
    }

    #[handles_event]
    fn refunded(&mut self, e: &TransferRefunded) {
        *self.balances.entry(e.account).or_default() += e.amount;
    }

    #[handles_event]
    fn completed(&mut self, _e: &TransferCompleted, _meta: &EventMeta) {
        self.completed += 1;
    }

    #[handles_event]
    fn failed(&mut self, _e: &TransferFailed) {
        self.failed += 1;
    }

    #[handles_query]
    fn balance(&self, q: GetBalance) -> Option<u64> {
        self.balances.get(&q.account).copied()
    }

    #[handles_query]
    fn counts(&self, _q: TransferCounts) -> (u64, u64) {
        (self.completed, self.failed)
    }
}
