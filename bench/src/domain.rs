//! The benchmark domain of BENCHMARKS.md: a bank account.

use interlock::prelude::*;

/// Refusals. (`Withdraw` completes the domain of BENCHMARKS.md; the
/// current workloads dispatch deposits only.)
#[allow(dead_code)]
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BankError {
    /// Not enough money.
    #[error("insufficient funds")]
    InsufficientFunds,
}

/// Opened.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "bench.account_opened")]
pub(crate) struct AccountOpened {
    pub(crate) owner: u64,
}

/// Deposited.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "bench.money_deposited")]
pub(crate) struct MoneyDeposited {
    pub(crate) amount: u64,
}

/// Withdrawn.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "bench.money_withdrawn")]
pub(crate) struct MoneyWithdrawn {
    pub(crate) amount: u64,
}

/// Open.
#[derive(Command, Clone)]
pub(crate) struct OpenAccount {
    #[aggregate_id]
    pub(crate) account: u64,
}

/// Deposit.
#[derive(Command, Clone)]
pub(crate) struct Deposit {
    #[aggregate_id]
    pub(crate) account: u64,
    pub(crate) amount: u64,
}

/// Withdraw.
#[allow(dead_code)]
#[derive(Command, Clone)]
pub(crate) struct Withdraw {
    #[aggregate_id]
    pub(crate) account: u64,
    pub(crate) amount: u64,
}

/// State.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct Account {
    pub(crate) balance: u64,
}

#[allow(dead_code)]
#[aggregate(name = "bench.account")]
impl Account {
    #[handles_command]
    fn open(&self, cmd: OpenAccount) -> AccountOpened {
        AccountOpened { owner: cmd.account }
    }

    #[handles_command]
    fn deposit(&self, cmd: Deposit) -> MoneyDeposited {
        MoneyDeposited { amount: cmd.amount }
    }

    #[handles_command]
    fn withdraw(&self, cmd: Withdraw) -> Result<MoneyWithdrawn, BankError> {
        if cmd.amount > self.balance {
            return Err(BankError::InsufficientFunds);
        }
        Ok(MoneyWithdrawn { amount: cmd.amount })
    }

    #[applies_event]
    fn opened(&mut self, _e: &AccountOpened) {}

    #[applies_event]
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.balance += e.amount;
    }

    #[applies_event]
    fn withdrawn(&mut self, e: &MoneyWithdrawn) {
        self.balance -= e.amount;
    }
}

/// A counting projection for W7.
#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) deposits: u64,
    pub(crate) sum: u64,
}

/// The total deposited.
pub(crate) struct Total;

#[projection(name = "bench.totals", model = memory)]
impl Totals {
    #[handles_event]
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.deposits += 1;
        self.sum += e.amount;
    }

    #[handles_query]
    fn total(&self, _q: Total) -> (u64, u64) {
        (self.deposits, self.sum)
    }
}
