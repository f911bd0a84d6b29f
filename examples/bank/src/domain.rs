//! The bank domain: plain types with attributes. No trait impls, enums or
//! `match` are written by hand.

use interlock::prelude::*;

/// Why the bank refuses a command.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// The account does not exist yet.
    #[error("account is not open")]
    NotOpen,
    /// The account exists already.
    #[error("account is already open")]
    AlreadyOpen,
    /// Not enough money.
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds {
        /// The balance.
        balance: u64,
        /// The amount asked for.
        requested: u64,
    },
}

/// An account was opened.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "bank.account_opened")]
pub struct AccountOpened {
    /// Who owns it.
    pub owner: String,
}

/// The first schema of a deposit, still in old stores: no currency.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "bank.money_deposited", version = 1)]
pub struct MoneyDepositedV1 {
    /// The amount.
    pub amount: u64,
}

/// Money was deposited. Version 2 added the currency; stored version-1
/// events are upcast through `From<MoneyDepositedV1>` when read.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "bank.money_deposited", version = 2, upcast_from = MoneyDepositedV1)]
pub struct MoneyDeposited {
    /// The amount.
    pub amount: u64,
    /// The currency.
    pub currency: String,
}

impl From<MoneyDepositedV1> for MoneyDeposited {
    fn from(old: MoneyDepositedV1) -> Self {
        // Before version 2 every account was in euros.
        MoneyDeposited {
            amount: old.amount,
            currency: "EUR".into(),
        }
    }
}

/// Money was withdrawn.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "bank.money_withdrawn")]
pub struct MoneyWithdrawn {
    /// The amount.
    pub amount: u64,
}

/// Open an account.
#[derive(Command, Clone, Debug)]
pub struct OpenAccount {
    /// The new account's id.
    #[aggregate_id]
    pub account: Ulid,
    /// Its owner.
    pub owner: String,
}

/// Deposit money; with a `request` id the deposit is applied at most once.
#[derive(Command, Clone, Debug)]
pub struct Deposit {
    /// The account.
    #[aggregate_id]
    pub account: Ulid,
    /// The amount.
    pub amount: u64,
    /// The client's request id, for safe retries.
    #[command_id]
    pub request: Option<CommandId>,
}

/// Withdraw money; replies with the balance left.
#[derive(Command, Clone, Debug)]
pub struct Withdraw {
    /// The account.
    #[aggregate_id]
    pub account: Ulid,
    /// The amount.
    pub amount: u64,
}

/// A bank account's state, folded from its events.
#[derive(Default, Debug, Serialize, Deserialize)]
pub struct BankAccount {
    /// Whether the account is open.
    pub open: bool,
    /// Its owner.
    pub owner: String,
    /// The balance.
    pub balance: u64,
}

#[aggregate(name = "bank.account")]
impl BankAccount {
    #[handles_command]
    fn open(&self, cmd: OpenAccount) -> Result<AccountOpened, BankError> {
        if self.open {
            return Err(BankError::AlreadyOpen);
        }
        Ok(AccountOpened { owner: cmd.owner })
    }

    #[handles_command]
    fn deposit(&self, cmd: Deposit) -> Result<MoneyDeposited, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        Ok(MoneyDeposited {
            amount: cmd.amount,
            currency: "EUR".into(),
        })
    }

    #[handles_command]
    fn withdraw(&self, cmd: Withdraw) -> Result<Reply<u64, MoneyWithdrawn>, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        let Some(left) = self.balance.checked_sub(cmd.amount) else {
            return Err(BankError::InsufficientFunds {
                balance: self.balance,
                requested: cmd.amount,
            });
        };
        Ok(Reply::new(left, MoneyWithdrawn { amount: cmd.amount }))
    }

    #[applies_event]
    fn opened(&mut self, e: &AccountOpened) {
        self.open = true;
        self.owner.clone_from(&e.owner);
    }

    #[applies_event]
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.balance += e.amount;
    }

    #[applies_event]
    fn withdrawn(&mut self, e: &MoneyWithdrawn) {
        self.balance = self.balance.saturating_sub(e.amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withdrawing_more_than_the_balance_is_refused() {
        AggregateScenario::<BankAccount>::new()
            .given((
                AccountOpened { owner: "ada".into() },
                MoneyDeposited {
                    amount: 5,
                    currency: "EUR".into(),
                },
            ))
            .when(Withdraw {
                account: Ulid::new(),
                amount: 6,
            })
            .then_error(BankError::InsufficientFunds {
                balance: 5,
                requested: 6,
            });
    }
}
