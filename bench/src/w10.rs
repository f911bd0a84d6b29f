//! W10, transports (`--backend nats`, `INTERLOCK_NATS_URL`, default
//! `nats://127.0.0.1:4222`, on fresh streams deleted afterwards; `--backend
//! kafka`, `INTERLOCK_KAFKA_BROKERS`, default `127.0.0.1:9092`, on fresh
//! topics of one partition, left to the broker's retention: the test
//! broker cannot delete records):
//! deposits dispatched in a producing application whose log is relayed
//! to the broker, handled by a projection of a consuming application in
//! the same process (its own connection). Figures: events/s from the
//! first dispatch to the last event handled, and each event's latency
//! from its commit (the recorded-at time) to its handling. Baseline: the
//! raw client's produce + consume loop of the same run (NATS: publishes
//! pipelined 256 at a time with their acks awaited, a durable pull
//! consumer fetching 256 at a time and acknowledging each message; Kafka:
//! rdkafka's idempotent producer sending 256 at a time and awaiting their
//! reports, a consumer group storing each offset). Both
//! producers go 256 events ahead of the broker's acknowledgements at
//! most, so the latencies compare.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use interlock::Timestamp;
use interlock::kafka::{KafkaConfig, KafkaTransport};
use interlock::nats::{NatsConfig, NatsTransport};
use interlock::prelude::*;
use interlock::store::{EventTransport, MemoryEventStore};
use parking_lot::Mutex;

use crate::Options;
use crate::domain::{Account, Deposit, MoneyDeposited};
use crate::report::Line;
use crate::workloads::{Error, open_accounts};

/// Commit-to-handled latencies, and how many were handled.
#[derive(Default)]
struct Arrivals {
    latencies: Arc<Mutex<Vec<Duration>>>,
    handled: Arc<AtomicU64>,
}

#[projection(name = "bench.arrivals", model = memory)]
impl Arrivals {
    #[handles_event]
    fn deposited(&mut self, _e: &MoneyDeposited, meta: &EventMeta) {
        if let Some(at) = meta.metadata.timestamp {
            let micros = Timestamp::now().as_micros().saturating_sub(at.as_micros());
            self.latencies
                .lock()
                .push(Duration::from_micros(u64::try_from(micros).unwrap_or(0)));
        }
        self.handled.fetch_add(1, Ordering::Release);
    }
}

fn url() -> String {
    std::env::var(NatsConfig::URL_VAR).unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

async fn until(done: impl Fn() -> bool, what: &str) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not finish within 300 s").into());
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(())
}

pub(crate) async fn w10(options: &Options, kafka: bool) -> Result<(), Error> {
    let id = ulid::Ulid::new();
    if kafka {
        // The test broker (Tansu, a debug build on SQLite) takes a few
        // hundred events a second: a tenth of NATS's run.
        let events = options.ops(if options.quick { 200 } else { 2_000 });
        let config = KafkaConfig::new(brokers()).topic(format!("bench-{id}"));
        let (secs, latencies) = framework(
            KafkaTransport::open(config.clone()).await?,
            KafkaTransport::open(config).await?,
            events,
        )
        .await?;
        let (baseline, raw_latencies) = raw_kafka(events).await?;
        return report("kafka", "raw-rdkafka", events, secs, latencies, baseline, raw_latencies);
    }
    let events = options.ops(if options.quick { 2_000 } else { 20_000 });
    let config = NatsConfig::new(url())
        .stream(format!("BENCH_{id}"))
        .subject_root(format!("bench.{id}"));
    let (secs, latencies) = framework(
        NatsTransport::open(config.clone()).await?,
        NatsTransport::open(config).await?,
        events,
    )
    .await?;
    let (baseline, raw_latencies) = raw(events).await?;
    let client = async_nats::connect(url()).await?;
    let jetstream = async_nats::jetstream::new(client);
    jetstream.delete_stream(format!("BENCH_{id}")).await?;
    report(
        "nats",
        "raw-jetstream",
        events,
        secs,
        latencies,
        baseline,
        raw_latencies,
    )
}

fn report(
    backend: &'static str,
    baseline_name: &'static str,
    events: u64,
    secs: f64,
    latencies: Vec<Duration>,
    baseline: f64,
    mut raw_latencies: Vec<Duration>,
) -> Result<(), Error> {
    Line {
        workload: "W10",
        backend,
        ops: events,
        secs,
        latencies,
        baseline: baseline_name,
        baseline_ops_per_sec: baseline,
        extra: vec![
            (
                "baseline_p50_us",
                crate::report::percentile_us(&mut raw_latencies, 0.50).to_string(),
            ),
            (
                "baseline_p99_us",
                crate::report::percentile_us(&mut raw_latencies, 0.99).to_string(),
            ),
        ],
    }
    .print();
    Ok(())
}

/// The framework's run: seconds from the first dispatch to the last
/// event handled, and each event's latency from its commit.
async fn framework(
    producer_transport: impl EventTransport,
    consumer_transport: impl EventTransport,
    events: u64,
) -> Result<(f64, Vec<Duration>), Error> {
    let arrivals = Arrivals::default();
    let (latencies, handled) = (Arc::clone(&arrivals.latencies), Arc::clone(&arrivals.handled));
    let consumer = Application::builder()
        .projection(arrivals)
        .consume_from("bench", consumer_transport)
        .build()
        .await?;
    let producer = Application::builder()
        .aggregate::<Account>()
        .event_store(MemoryEventStore::new())
        .publish_to("broker", producer_transport)
        .build()
        .await?;
    open_accounts(&producer, 100).await?;
    let began = Instant::now();
    for i in 0..events {
        producer
            .dispatch(Deposit {
                account: i % 100,
                amount: 1,
            })
            .await?;
        // Paced as the raw producer is: 256 at a time, then the broker's
        // acknowledgements (the relay caught up), so the latencies are not
        // of a backlog the producer ran ahead into.
        if i % 256 == 255 {
            producer.publish_pending().await?;
        }
    }
    until(
        || handled.load(Ordering::Acquire) >= events,
        "the framework's relay and consumer",
    )
    .await?;
    let secs = began.elapsed().as_secs_f64();
    producer.shutdown();
    consumer.shutdown();
    if handled.load(Ordering::Acquire) != events {
        return Err(format!("{} events handled of {events}", handled.load(Ordering::Acquire)).into());
    }
    let latencies = std::mem::take(&mut *latencies.lock());
    Ok((secs, latencies))
}

fn brokers() -> String {
    std::env::var(KafkaConfig::BROKERS_VAR).unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// The send time a raw message carries at the end of its payload.
fn sent_at(payload: &[u8]) -> Result<Duration, Error> {
    let sent: i64 = std::str::from_utf8(payload)?
        .rsplit_once(':')
        .and_then(|(_, t)| t.trim_end_matches('}').parse().ok())
        .ok_or("a raw message without its send time")?;
    let micros = Timestamp::now().as_micros().saturating_sub(sent);
    Ok(Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
}

/// rdkafka's own loop on a fresh topic: an idempotent producer with
/// `acks=all` sending 256 at a time and awaiting their reports, and a
/// consumer group storing each offset: events/s and latencies.
async fn raw_kafka(events: u64) -> Result<(f64, Vec<Duration>), Error> {
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    use rdkafka::message::Message as _;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let topic = format!("bench-raw-{}", ulid::Ulid::new());
    // The topic, made as the transport makes its own.
    drop(KafkaTransport::open(KafkaConfig::new(brokers()).topic(topic.clone())).await?);
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()?;
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("{topic}-raw"))
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "200")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let began = Instant::now();
    let consume = async {
        let mut latencies = Vec::with_capacity(usize::try_from(events).unwrap_or(0));
        while (latencies.len() as u64) < events {
            let message = consumer.recv().await?;
            latencies.push(sent_at(message.payload().unwrap_or_default())?);
            consumer.store_offset(&topic, message.partition(), message.offset())?;
        }
        Ok::<_, Error>(latencies)
    };
    let produce = async {
        for chunk in 0..events.div_ceil(256) {
            let mut reports = Vec::new();
            for i in chunk * 256..((chunk + 1) * 256).min(events) {
                let key = format!("account-{}", i % 100);
                let payload = format!(r#"{{"amount":1,"i":{i},"sent":{}}}"#, Timestamp::now().as_micros());
                let record = FutureRecord::to(&topic).key(&key).payload(&payload);
                reports.push(producer.send_result(record).map_err(|(e, _)| e)?);
            }
            for report in reports {
                report.await?.map_err(|(e, _)| e)?;
            }
        }
        Ok::<_, Error>(())
    };
    let (consumed, produced) = tokio::join!(consume, produce);
    let latencies = consumed?;
    produced?;
    Ok((events as f64 / began.elapsed().as_secs_f64(), latencies))
}

/// The raw client's loop: events/s, and each message's latency from its
/// publish to its receipt.
async fn raw(events: u64) -> Result<(f64, Vec<Duration>), Error> {
    use async_nats::jetstream::{consumer, stream};
    let id = ulid::Ulid::new();
    let client = async_nats::connect(url()).await?;
    let jetstream = async_nats::jetstream::new(client);
    let created = jetstream
        .create_stream(stream::Config {
            name: format!("RAW_{id}"),
            subjects: vec![format!("raw.{id}.>")],
            ..stream::Config::default()
        })
        .await?;
    let pull: consumer::PullConsumer = created
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..consumer::pull::Config::default()
        })
        .await?;
    let began = Instant::now();
    let consume = async {
        let mut latencies = Vec::with_capacity(usize::try_from(events).unwrap_or(0));
        let mut received = 0u64;
        while received < events {
            let mut batch = pull
                .batch()
                .max_messages(256)
                .expires(Duration::from_millis(200))
                .messages()
                .await?;
            while let Some(message) = batch.next().await {
                let message = message?;
                latencies.push(sent_at(&message.payload)?);
                message.ack().await?;
                received += 1;
            }
        }
        Ok::<_, Error>(latencies)
    };
    let produce = async {
        for chunk in 0..events.div_ceil(256) {
            let mut acks = Vec::new();
            for i in chunk * 256..((chunk + 1) * 256).min(events) {
                let publish = async_nats::jetstream::message::PublishMessage::build()
                    .payload(format!(r#"{{"amount":1,"i":{i},"sent":{}}}"#, Timestamp::now().as_micros()).into())
                    .message_id(ulid::Ulid::new().to_string());
                acks.push(
                    jetstream
                        .send_publish(format!("raw.{id}.account.{}", i % 100), publish)
                        .await?,
                );
            }
            for ack in acks {
                ack.await?;
            }
        }
        Ok::<_, Error>(())
    };
    let (consumed, produced) = tokio::join!(consume, produce);
    let latencies = consumed?;
    produced?;
    let rate = events as f64 / began.elapsed().as_secs_f64();
    jetstream.delete_stream(format!("RAW_{id}")).await?;
    Ok((rate, latencies))
}
