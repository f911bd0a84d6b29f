//! Under `INTERLOCK_REQUIRE_SERVICES=1` a missing service fails the test
//! instead of skipping it: checked in a child process with the PostgreSQL
//! URL removed, so the environment of the other tests is untouched.

use std::process::Command;

/// Run only by the parent test below, in a child process.
#[tokio::test]
#[ignore = "run by `a_missing_postgres_fails_when_services_are_required` in a child process"]
async fn child_asks_for_postgres() {
    let store = interlock_tests::services::postgres().await;
    assert!(store.is_none(), "no URL, so no store");
}

fn run_child(require: bool) -> std::process::Output {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe);
    child
        .args(["--exact", "child_asks_for_postgres", "--ignored", "--nocapture"])
        .env_remove("INTERLOCK_POSTGRES_URL");
    if require {
        child.env("INTERLOCK_REQUIRE_SERVICES", "1");
    } else {
        child.env_remove("INTERLOCK_REQUIRE_SERVICES");
    }
    child.output().expect("run the child")
}

#[test]
fn a_missing_postgres_fails_when_services_are_required() {
    let required = run_child(true);
    let text = String::from_utf8_lossy(&required.stdout).into_owned() + &String::from_utf8_lossy(&required.stderr);
    assert!(
        !required.status.success(),
        "the child passed without PostgreSQL:\n{text}"
    );
    assert!(text.contains("INTERLOCK_REQUIRE_SERVICES=1"), "{text}");

    let optional = run_child(false);
    let text = String::from_utf8_lossy(&optional.stdout).into_owned() + &String::from_utf8_lossy(&optional.stderr);
    assert!(optional.status.success(), "{text}");
    assert!(text.contains("SKIPPED"), "the skip is not visible:\n{text}");
}
