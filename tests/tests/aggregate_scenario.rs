//! Given/when/then scenarios: plain `#[test]`s, no runtime, no store.

use interlock::prelude::*;
use interlock_tests::bank::*;

fn account() -> Ulid {
    Ulid::new()
}

#[test]
fn deposit_on_open_account_emits_the_event() {
    AggregateScenario::<BankAccount>::new()
        .given(AccountOpened { owner: "ada".into() })
        .when(Deposit {
            account: account(),
            amount: 10,
            id: None,
        })
        .then_emits(MoneyDeposited {
            amount: 10,
            currency: "EUR".into(),
        })
        .then_state(|s| assert_eq!(s.balance, 10));
}

#[test]
fn withdraw_replies_with_the_new_balance() {
    AggregateScenario::<BankAccount>::new()
        .given((
            AccountOpened { owner: "ada".into() },
            MoneyDeposited {
                amount: 50,
                currency: "EUR".into(),
            },
        ))
        .when(Withdraw {
            account: account(),
            amount: 20,
        })
        .then_emits(MoneyWithdrawn { amount: 20 })
        .then_output(30);
}

#[test]
fn overdraft_is_rejected() {
    AggregateScenario::<BankAccount>::new()
        .given(AccountOpened { owner: "ada".into() })
        .when(Withdraw {
            account: account(),
            amount: 1,
        })
        .then_error(BankError::InsufficientFunds {
            balance: 0,
            requested: 1,
        });
}

#[test]
fn rejection_can_be_matched() {
    AggregateScenario::<BankAccount>::new()
        .when(Deposit {
            account: account(),
            amount: 1,
            id: None,
        })
        .then_error_matches(|e| matches!(e, BankError::NotOpen));
}

#[test]
fn async_handlers_with_services_run_without_a_runtime() {
    AggregateScenario::<BankAccount>::new()
        .service(FeePolicy { fee: 2 })
        .given(vec![AccountOpened { owner: "a".into() }])
        .given(MoneyDeposited {
            amount: 10,
            currency: "EUR".into(),
        })
        .when(WithdrawWithFee {
            account: account(),
            amount: 5,
        })
        .then_emits(vec![MoneyWithdrawn { amount: 5 }, MoneyWithdrawn { amount: 2 }])
        .then_state(|s| assert_eq!(s.balance, 3));
}

#[test]
#[should_panic(expected = "emitted events differ")]
fn a_wrong_expectation_fails_the_test() {
    AggregateScenario::<BankAccount>::new()
        .given(AccountOpened { owner: "a".into() })
        .when(Deposit {
            account: account(),
            amount: 1,
            id: None,
        })
        .then_emits(MoneyDeposited {
            amount: 2,
            currency: "EUR".into(),
        });
}

#[test]
#[should_panic(expected = "FeePolicy")]
fn a_missing_service_names_the_service() {
    let _ = AggregateScenario::<BankAccount>::new()
        .given(AccountOpened { owner: "a".into() })
        .when(WithdrawWithFee {
            account: account(),
            amount: 1,
        })
        .then_emits_nothing();
}

#[test]
fn upcaster_chain_decodes_old_payloads() {
    let e =
        <MoneyDeposited as interlock::Event>::decode_payload(SchemaVersion(1), br#"{"amount":3}"#).expect("v1 upcasts");
    assert_eq!(
        e,
        MoneyDeposited {
            amount: 3,
            currency: "EUR".into()
        }
    );
    let err = <MoneyDeposited as interlock::Event>::decode_payload(SchemaVersion(5), b"{}").expect_err("too new");
    assert!(err.to_string().contains("v1 to v2"), "{err}");
}
