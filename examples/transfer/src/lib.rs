//! The transfer example's domain: accounts, transfers, the `MoneyTransfer`
//! saga and the `Balances` projection. Shared by the binary and the tests.

pub mod accounts;
pub mod balances;
pub mod transfer;
