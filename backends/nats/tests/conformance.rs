//! The exported transport conformance suite against the machine's NATS
//! (`INTERLOCK_NATS_URL`), each test on a JetStream stream of its own
//! (`ITEST_<ulid>` on subjects `itest.<ulid>.>`), with a 1 s ack wait. A
//! suite takes its transports by value, so a test cannot delete its
//! stream; each one deletes the test streams made over ten minutes ago.

// A required server that cannot be opened fails the test loudly.
#![allow(clippy::panic, clippy::expect_used)]

use std::time::Duration;

use futures_util::StreamExt;
use interlock_nats::{NatsConfig, NatsTransport};

/// Two transports (two connections) on a fresh stream, or `None` without
/// a URL (a loud skip, or a failure under `INTERLOCK_REQUIRE_SERVICES=1`).
async fn nats() -> Option<(NatsTransport, NatsTransport)> {
    let Some(url) = std::env::var(NatsConfig::URL_VAR).ok().filter(|u| !u.is_empty()) else {
        interlock::testing::skip_or_fail("NATS (set INTERLOCK_NATS_URL, e.g. nats://127.0.0.1:4222)");
        return None;
    };
    let id = ulid::Ulid::new();
    let config = NatsConfig::new(url)
        .stream(format!("ITEST_{id}"))
        .subject_root(format!("itest.{id}"))
        .ack_wait(Duration::from_secs(1));
    match NatsTransport::open(config.clone()).await {
        Ok(first) => {
            sweep(&first).await;
            let second = NatsTransport::open(config).await.expect("a second connection");
            Some((first, second))
        }
        Err(e) => {
            if interlock::testing::services_required() {
                panic!("NATS is required but cannot be opened: {e}");
            }
            eprintln!("!!!!!!!! NATS not reachable: {e}");
            None
        }
    }
}

interlock::transport_conformance!(nats_transport, nats);

/// Deletes the test streams made over ten minutes ago.
async fn sweep(transport: &NatsTransport) {
    let Ok(client) = async_nats::connect(transport.config().redacted_url()).await else {
        return;
    };
    let jetstream = async_nats::jetstream::new(client);
    let cutoff = ulid::Ulid::from_datetime(std::time::SystemTime::now() - Duration::from_secs(600));
    let mut names = jetstream.stream_names();
    let mut stale = Vec::new();
    while let Some(Ok(name)) = names.next().await {
        if let Some(id) = name
            .strip_prefix("ITEST_")
            .and_then(|id| ulid::Ulid::from_string(id).ok())
            && id < cutoff
        {
            stale.push(name);
        }
    }
    for name in stale {
        let _ = jetstream.delete_stream(&name).await;
    }
}
