//! The exported transport conformance suite against the Kafka-wire test
//! broker (`INTERLOCK_KAFKA_BROKERS`; `scripts/kafka.sh start` builds
//! once and starts Tansu and prints the address), each test on a topic
//! of its own (`itest-<ulid>`, one partition) and fresh consumer groups.

// A required broker that cannot be opened fails the test loudly.
#![allow(clippy::panic, clippy::expect_used)]

use std::time::Duration;

use interlock_kafka::{KafkaConfig, KafkaTransport};

/// Two transports (two clients) on a fresh topic, or `None` without
/// brokers (a loud skip, or a failure under `INTERLOCK_REQUIRE_SERVICES=1`).
async fn kafka() -> Option<(KafkaTransport, KafkaTransport)> {
    let Some(brokers) = std::env::var(KafkaConfig::BROKERS_VAR).ok().filter(|u| !u.is_empty()) else {
        interlock::testing::skip_or_fail(
            "Kafka (set INTERLOCK_KAFKA_BROKERS, e.g. the address scripts/kafka.sh start prints)",
        );
        return None;
    };
    let config = KafkaConfig::new(brokers)
        .topic(format!("itest-{}", ulid::Ulid::new()))
        .session_timeout(Duration::from_secs(6))
        .request_timeout(Duration::from_secs(10));
    match KafkaTransport::open(config.clone()).await {
        Ok(first) => {
            let second = KafkaTransport::open(config).await.expect("a second client");
            Some((first, second))
        }
        Err(e) => {
            if interlock::testing::services_required() {
                panic!("Kafka is required but cannot be opened: {e}");
            }
            eprintln!("!!!!!!!! Kafka not reachable: {e}");
            None
        }
    }
}

interlock::transport_conformance!(kafka_transport, kafka);
