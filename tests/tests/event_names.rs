//! Two event types stored under one name are refused by `build()` when
//! the macros cannot see both (different aggregates, or an aggregate and a
//! projection); one upcaster chain under one name is accepted.

use interlock::BuildError;
use interlock::prelude::*;
use interlock_tests::bank::*;

/// A second aggregate whose event reuses the bank's stored name.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bank.money_deposited", version = 2)]
pub struct LoyaltyPointsDeposited {
    points: u64,
}

#[derive(Command, Clone)]
pub struct AddPoints {
    #[aggregate_id]
    card: Ulid,
    points: u64,
}

#[derive(Default)]
pub struct LoyaltyCard {
    points: u64,
}

#[aggregate(name = "tests.loyalty_card")]
impl LoyaltyCard {
    #[handles_command]
    fn add(&self, c: AddPoints) -> LoyaltyPointsDeposited {
        LoyaltyPointsDeposited { points: c.points }
    }

    #[applies_event]
    fn added(&mut self, e: &LoyaltyPointsDeposited) {
        self.points += e.points;
    }
}

/// A projection of the clashing type.
#[derive(Default)]
pub struct PointsLedger;

#[projection(name = "tests.points_ledger", model = memory)]
impl PointsLedger {
    #[handles_event]
    fn added(&mut self, _: &LoyaltyPointsDeposited) {}
}

/// A projection of the bank's own event, and of its old version: one chain.
#[derive(Default)]
pub struct DepositCounter(u64);

#[projection(name = "tests.deposit_counter", model = memory)]
impl DepositCounter {
    #[handles_event]
    fn deposited(&mut self, _: &MoneyDeposited) {
        self.0 += 1;
    }
}

#[derive(Default)]
pub struct OldDepositCounter(u64);

#[projection(name = "tests.old_deposit_counter", model = memory)]
impl OldDepositCounter {
    #[handles_event]
    fn deposited(&mut self, _: &MoneyDepositedV1) {
        self.0 += 1;
    }
}

fn assert_clash(result: Result<Application, BuildError>, owner: &str) {
    match result {
        Err(BuildError::EventNameClash {
            name,
            first,
            second,
            second_owner,
            ..
        }) => {
            assert_eq!(name, "bank.money_deposited");
            assert!(first.ends_with("MoneyDeposited"), "{first}");
            assert!(second.ends_with("LoyaltyPointsDeposited"), "{second}");
            assert!(second_owner.contains(owner), "{second_owner}");
        }
        Err(other) => panic!("expected EventNameClash, got {other}"),
        Ok(_) => panic!("expected EventNameClash, the application was built"),
    }
}

#[tokio::test]
async fn one_name_for_two_aggregates_events_is_refused_naming_both() {
    assert_clash(
        bank_builder().aggregate::<LoyaltyCard>().build().await,
        "tests.loyalty_card",
    );
}

#[tokio::test]
async fn a_projection_of_another_type_under_a_taken_name_is_refused() {
    assert_clash(
        bank_builder().projection(PointsLedger).build().await,
        "tests.points_ledger",
    );
}

#[tokio::test]
async fn one_upcaster_chain_under_one_name_is_accepted() {
    let app = bank_builder()
        .projection(DepositCounter::default())
        .projection(OldDepositCounter::default())
        .build()
        .await;
    assert!(app.is_ok(), "{:?}", app.err());
}
