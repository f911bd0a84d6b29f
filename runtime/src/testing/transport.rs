//! The [`EventTransport`] conformance suite. The factory returns two
//! transports on the same broker, topic or stream and consumer names, as
//! two processes would open them (for the in-memory transport: one
//! shared instance twice), or `None` when the broker is not reachable.
//! Each case names its consumers afresh; a broker's factory gives each
//! case a topic or stream of its own, and an acknowledgement wait short
//! enough (about a second) for the redelivery case, which waits up to 30 s.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::domain::ids::{
    CausationId, CommandId, CorrelationId, EventId, Position, SchemaVersion, StreamId, TenantId, Timestamp, Version,
};
use crate::store::{Delivery, EventMetadata, EventTransport, RecordedEvent};

/// How long a case waits for what it published to arrive.
const PATIENCE: Duration = Duration::from_secs(30);

fn consumer(case: &str) -> String {
    format!("conformance-{case}-{}", ulid::Ulid::new())
}

/// A producer's log: `per_stream` events of each of `streams` streams,
/// interleaved, at positions from `first`.
fn log(streams: &[StreamId], per_stream: u64, first: u64) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    for v in 1..=per_stream {
        for stream in streams {
            let position = first + events.len() as u64;
            events.push(RecordedEvent {
                event_id: EventId::new(),
                stream: stream.clone(),
                version: Version(v),
                position: Position(position),
                name: Cow::Borrowed("conformance.counted"),
                schema_version: SchemaVersion(1),
                payload: Bytes::from(format!(r#"{{"n":{position}}}"#)),
                metadata: EventMetadata {
                    timestamp: Some(Timestamp::now()),
                    ..EventMetadata::default()
                },
            });
        }
    }
    events
}

fn streams(n: usize) -> Vec<StreamId> {
    (0..n)
        .map(|_| StreamId::new("conformance.transport", ulid::Ulid::new().to_string()))
        .collect()
}

/// Receives (acknowledging when `ack`) until `want` distinct events came
/// or the patience ran out; every delivery, in order.
async fn receive_until<T: EventTransport>(transport: &T, consumer: &str, want: usize, ack: bool) -> Vec<Delivery> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    while seen.len() < want && Instant::now() < deadline {
        let batch = transport
            .receive(consumer, 64, Duration::from_millis(500))
            .await
            .expect("receive");
        for delivery in batch {
            if ack {
                transport.ack(consumer, delivery.receipt).await.expect("ack");
            }
            seen.insert(delivery.event.event_id);
            all.push(delivery);
        }
    }
    assert_eq!(seen.len(), want, "every published event arrives within {PATIENCE:?}");
    all
}

/// Events of several streams, published in batches, arrive each once and
/// in order within each stream (one aggregate's events stay in order).
pub async fn publish_order_per_stream<T: EventTransport>((transport, _): (T, T)) {
    let streams = streams(3);
    let events = log(&streams, 10, 1);
    for batch in events.chunks(7) {
        transport.publish(batch).await.expect("publish");
    }
    let consumer = consumer("order");
    let got = receive_until(&transport, &consumer, events.len(), true).await;
    assert_eq!(got.len(), events.len(), "a publish acknowledged once is delivered once");
    for stream in &streams {
        let versions: Vec<u64> = got
            .iter()
            .filter(|d| &d.event.stream == stream)
            .map(|d| d.event.version.0)
            .collect();
        assert_eq!(versions, (1..=10).collect::<Vec<_>>(), "stream {stream} in order");
    }
    assert!(got.iter().all(|d| d.attempt == 1), "first deliveries are attempt 1");
}

/// What a consumer receives is the recorded event as published: ids,
/// stream (with its tenant and hostile characters), version, position,
/// name, schema version, metadata and user headers, and the payload's
/// bytes unchanged.
pub async fn envelope_round_trips<T: EventTransport>((transport, _): (T, T)) {
    let mut headers = crate::store::Headers::new();
    headers.insert("user.id".into(), "zoë \r\n%41".into());
    headers.insert("Trace-Id".into(), "00-4bf92f3577b34da6".into());
    let event = RecordedEvent {
        event_id: EventId::new(),
        stream: StreamId::new("conformance.envelope", "id with spaces/../\u{7f}ü*>.")
            .in_tenant(Some(TenantId::new("tenant-1").expect("a tenant"))),
        version: Version(7),
        position: Position(1234),
        name: Cow::Borrowed("conformance.enveloped"),
        schema_version: SchemaVersion(3),
        // Not JSON, not UTF-8: whatever the store held travels as is.
        payload: Bytes::from_static(b"\x00\xffpayload\r\n"),
        metadata: EventMetadata {
            timestamp: Some(Timestamp(1_780_000_000_123_456)),
            correlation_id: Some(CorrelationId::new()),
            causation_id: Some(CausationId::Command(CommandId::new())),
            command_id: Some(CommandId::new()),
            headers,
        },
    };
    transport.publish(std::slice::from_ref(&event)).await.expect("publish");
    let got = receive_until(&transport, &consumer("envelope"), 1, true).await;
    assert_eq!(got[0].event, event);
}

/// A delivery not acknowledged comes again, first; once acknowledged it
/// does not.
pub async fn unacknowledged_deliveries_come_again<T: EventTransport>((transport, _): (T, T)) {
    let events = log(&streams(1), 4, 1);
    transport.publish(&events).await.expect("publish");
    let consumer = consumer("again");
    let first = receive_until(&transport, &consumer, 4, false).await;
    let again = transport
        .receive(&consumer, 64, Duration::from_millis(500))
        .await
        .expect("receive");
    let ids = |d: &[Delivery]| d.iter().map(|d| d.event.event_id).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first), "not acknowledged: delivered again, in order");
    // A broker counts what it delivered again; handing a held delivery
    // out again within one instance need not count (an outage of the
    // consumer's stores is not the event's fault).
    assert!(
        again
            .iter()
            .zip(&first)
            .all(|(a, f)| a.attempt >= f.attempt && f.attempt >= 1),
        "attempts never go down: {again:?}"
    );
    for delivery in &again {
        transport.ack(&consumer, delivery.receipt).await.expect("ack");
    }
    let after = transport
        .receive(&consumer, 64, Duration::from_millis(500))
        .await
        .expect("receive");
    assert!(after.is_empty(), "acknowledged deliveries do not come again: {after:?}");
}

/// Each consumer has its own cursor: one acknowledging everything leaves
/// another's deliveries untouched.
pub async fn consumers_have_their_own_cursors<T: EventTransport>((transport, _): (T, T)) {
    let events = log(&streams(2), 3, 1);
    transport.publish(&events).await.expect("publish");
    let (a, b) = (consumer("a"), consumer("b"));
    assert_eq!(receive_until(&transport, &a, 6, true).await.len(), 6);
    assert_eq!(receive_until(&transport, &b, 6, true).await.len(), 6);
}

/// What a consumer received and never acknowledged before its process
/// went away is delivered to the next instance of that consumer.
pub async fn redelivered_after_a_crash<T: EventTransport>((first, second): (T, T)) {
    let events = log(&streams(1), 3, 1);
    first.publish(&events).await.expect("publish");
    let consumer = consumer("crash");
    let got = receive_until(&first, &consumer, 3, false).await;
    assert_eq!(got.len(), 3);
    drop(first); // the process dies before acknowledging
    let redelivered = receive_until(&second, &consumer, 3, true).await;
    let ids: HashSet<EventId> = redelivered.iter().map(|d| d.event.event_id).collect();
    assert_eq!(ids, events.iter().map(|e| e.event_id).collect());
}

/// A receive that finds nothing waits for a publish made meanwhile.
pub async fn receive_waits_for_a_publish<T: EventTransport>((transport, publisher): (T, T)) {
    let consumer = consumer("wait");
    // The consumer exists (and has nothing) before the publish.
    let none = transport
        .receive(&consumer, 8, Duration::from_millis(200))
        .await
        .expect("receive");
    assert!(none.is_empty());
    let events = log(&streams(1), 1, 1);
    let publish = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        publisher.publish(&events).await.expect("publish");
    };
    let (got, ()) = tokio::join!(transport.receive(&consumer, 8, Duration::from_secs(20)), publish);
    let got = got.expect("receive");
    assert_eq!(got.len(), 1, "the event published during the wait");
    assert_eq!(got[0].event.event_id, events[0].event_id);
}

/// The handled ids of [`Counted`].
type Handled = Arc<Mutex<Vec<(EventId, u64)>>>;

/// The event of [`republished_events_are_handled_once`].
#[derive(crate::Event, Serialize, Deserialize)]
#[event(name = "conformance.counted", crate = "crate")]
pub struct Counted {
    n: u64,
}

/// Records every event it handles.
#[derive(Default)]
pub struct Counter {
    handled: Handled,
}

#[crate::projection(name = "conformance.transport_counter", model = memory, crate = "crate")]
impl Counter {
    #[handles_event]
    fn counted(&mut self, e: &Counted, meta: &crate::EventMeta) {
        self.handled.lock().push((meta.event_id, e.n));
    }
}

/// At least once becomes effectively once: events published twice (a
/// relay that restarted before marking its progress) and delivered again
/// are handled once each, in the producer's order, by a consuming
/// application.
pub async fn republished_events_are_handled_once<T: EventTransport>((transport, again): (T, T)) {
    let events = log(&streams(2), 5, 1);
    transport.publish(&events[..6]).await.expect("publish");
    // The relay restarts from before its last batch and publishes it all.
    again.publish(&events[3..]).await.expect("publish again");
    again.publish(&events).await.expect("and again");
    let counter = Counter::default();
    let handled = Arc::clone(&counter.handled);
    let app = crate::Application::builder()
        .projection(counter)
        .consume_from(consumer("once"), transport)
        .background(false)
        .build()
        .await
        .expect("build");
    let deadline = Instant::now() + PATIENCE;
    while handled.lock().len() < events.len() && Instant::now() < deadline {
        app.consume_transport(64, Duration::from_millis(500))
            .await
            .expect("consume");
    }
    // Whatever else is in flight comes and is skipped.
    for _ in 0..3 {
        app.consume_transport(64, Duration::from_millis(300))
            .await
            .expect("consume");
    }
    let handled = handled.lock().clone();
    let expected: Vec<(EventId, u64)> = events.iter().map(|e| (e.event_id, e.position.0)).collect();
    assert_eq!(handled, expected, "each event handled once, in order");
    let mut by_id: HashMap<EventId, usize> = HashMap::new();
    for (id, _) in &handled {
        *by_id.entry(*id).or_default() += 1;
    }
    assert!(by_id.values().all(|n| *n == 1));
}
