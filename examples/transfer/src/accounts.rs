//! Bank accounts: open, deposit, and the debits and credits of transfers.

use interlock::prelude::*;

/// Why an account refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The account was never opened.
    #[error("account is not open")]
    NotOpen,
    /// The account is closed: it takes no credit.
    #[error("account is closed")]
    Closed,
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
#[event(name = "accounts.opened")]
pub struct AccountOpened {
    /// The account.
    pub account: Ulid,
    /// Its owner.
    pub owner: String,
}

/// Money was deposited.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "accounts.deposited")]
pub struct MoneyDeposited {
    /// The account.
    pub account: Ulid,
    /// The amount.
    pub amount: u64,
}

/// An account was closed.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "accounts.closed")]
pub struct AccountClosed {
    /// The account.
    pub account: Ulid,
}

/// Money left an account for a transfer.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "accounts.transfer_debited")]
pub struct TransferDebited {
    /// The transfer.
    pub transfer_id: Ulid,
    /// The account debited.
    pub account: Ulid,
    /// The amount.
    pub amount: u64,
}

/// Money arrived in an account from a transfer.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "accounts.transfer_credited")]
pub struct TransferCredited {
    /// The transfer.
    pub transfer_id: Ulid,
    /// The account credited.
    pub account: Ulid,
    /// The amount.
    pub amount: u64,
}

/// A debit was given back after a failed transfer (the compensation).
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "accounts.transfer_refunded")]
pub struct TransferRefunded {
    /// The transfer.
    pub transfer_id: Ulid,
    /// The account refunded.
    pub account: Ulid,
    /// The amount.
    pub amount: u64,
}

/// Open an account.
#[derive(Command, Clone, Debug, PartialEq)]
pub struct OpenAccount {
    /// The account.
    #[aggregate_id]
    pub account: Ulid,
    /// Its owner.
    pub owner: String,
}

/// Deposit money.
#[derive(Command, Clone, Debug, PartialEq)]
pub struct Deposit {
    /// The account.
    #[aggregate_id]
    pub account: Ulid,
    /// The amount.
    pub amount: u64,
}

/// Close an account.
#[derive(Command, Clone, Debug, PartialEq)]
pub struct CloseAccount {
    /// The account.
    #[aggregate_id]
    pub account: Ulid,
}

/// Take money out for a transfer.
#[derive(Command, Clone, Debug, PartialEq)]
pub struct DebitForTransfer {
    /// The account.
    #[aggregate_id]
    pub account: Ulid,
    /// The transfer.
    pub transfer_id: Ulid,
    /// The amount.
    pub amount: u64,
}

/// Put money in from a transfer.
#[derive(Command, Clone, Debug, PartialEq)]
pub struct CreditFromTransfer {
    /// The account.
    #[aggregate_id]
    pub account: Ulid,
    /// The transfer.
    pub transfer_id: Ulid,
    /// The amount.
    pub amount: u64,
}

/// Give a transfer's debit back.
#[derive(Command, Clone, Debug, PartialEq)]
pub struct RefundTransfer {
    /// The account.
    #[aggregate_id]
    pub account: Ulid,
    /// The transfer.
    pub transfer_id: Ulid,
    /// The amount.
    pub amount: u64,
}

/// An account's state.
#[derive(Default, Debug, Serialize, Deserialize)]
pub struct Account {
    id: Option<Ulid>,
    open: bool,
    closed: bool,
    balance: u64,
}

impl Account {
    /// The balance.
    #[must_use]
    pub fn balance(&self) -> u64 {
        self.balance
    }
}

impl Account {
    fn usable(&self) -> Result<Ulid, AccountError> {
        match self.id {
            Some(id) if self.open => Ok(id),
            _ => Err(AccountError::NotOpen),
        }
    }
}

#[aggregate(name = "accounts.account")]
impl Account {
    #[handles_command]
    fn open(&self, cmd: OpenAccount) -> Option<AccountOpened> {
        // Opening twice is a no-op, not an error.
        (!self.open).then_some(AccountOpened {
            account: cmd.account,
            owner: cmd.owner,
        })
    }

    #[handles_command]
    fn deposit(&self, cmd: Deposit) -> Result<MoneyDeposited, AccountError> {
        let account = self.usable()?;
        Ok(MoneyDeposited {
            account,
            amount: cmd.amount,
        })
    }

    #[handles_command]
    fn close(&self, _cmd: CloseAccount) -> Result<Option<AccountClosed>, AccountError> {
        let account = self.usable()?;
        Ok((!self.closed).then_some(AccountClosed { account }))
    }

    #[handles_command]
    fn debit(&self, cmd: DebitForTransfer) -> Result<TransferDebited, AccountError> {
        let account = self.usable()?;
        if cmd.amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                requested: cmd.amount,
            });
        }
        Ok(TransferDebited {
            transfer_id: cmd.transfer_id,
            account,
            amount: cmd.amount,
        })
    }

    #[handles_command]
    fn credit(&self, cmd: CreditFromTransfer) -> Result<TransferCredited, AccountError> {
        let account = self.usable()?;
        if self.closed {
            return Err(AccountError::Closed);
        }
        Ok(TransferCredited {
            transfer_id: cmd.transfer_id,
            account,
            amount: cmd.amount,
        })
    }

    #[handles_command]
    fn refund(&self, cmd: RefundTransfer) -> Result<TransferRefunded, AccountError> {
        let account = self.usable()?;
        Ok(TransferRefunded {
            transfer_id: cmd.transfer_id,
            account,
            amount: cmd.amount,
        })
    }

    #[applies_event]
    fn opened(&mut self, e: &AccountOpened) {
        self.id = Some(e.account);
        self.open = true;
    }

    #[applies_event]
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.balance += e.amount;
    }

    #[applies_event]
    fn closed(&mut self, _e: &AccountClosed) {
        self.closed = true;
    }

    #[applies_event]
    fn debited(&mut self, e: &TransferDebited) {
        self.balance = self.balance.saturating_sub(e.amount);
    }

    #[applies_event]
    fn credited(&mut self, e: &TransferCredited) {
        self.balance += e.amount;
    }

    #[applies_event]
    fn refunded(&mut self, e: &TransferRefunded) {
        self.balance += e.amount;
    }
}
