//! The transport: an idempotent producer awaiting `acks=all`, and a
//! consumer group per consumer name whose offsets are stored only after
//! the application handled the event.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use interlock::store::{BoxFuture, Delivery, Envelope, EventTransport, Receipt, RecordedEvent, StoreError};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::config::KafkaConfig;

/// The backend's name in errors and metrics.
pub(crate) const BACKEND: &str = "kafka";

/// Why a transport cannot be opened, or its topic used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::KafkaConfigError),
    /// No broker answered.
    #[error("Kafka at {brokers} is unreachable: {reason}")]
    Unreachable {
        /// The bootstrap brokers.
        brokers: String,
        /// Why.
        reason: String,
    },
    /// The topic does not exist and provisioning is off.
    #[error(
        "the Kafka topic `{0}` does not exist and provisioning is off: create it (one partition) or allow provisioning (INTERLOCK_KAFKA_PROVISION=true)"
    )]
    MissingTopic(String),
    /// The topic has more than one partition: a consumer's checkpoints
    /// are positions in the producer's log, an order partitions do not keep.
    #[error(
        "the Kafka topic `{topic}` has {partitions} partitions: consumers read a topic of one partition (their checkpoints are positions in the producer's log, an order only one partition keeps); publish to a topic of one partition"
    )]
    Partitioned {
        /// The topic.
        topic: String,
        /// Its partitions.
        partitions: usize,
    },
    /// The client or a broker refused a request.
    #[error("Kafka refused {what}: {reason}")]
    Refused {
        /// The request.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

impl From<KafkaError> for StoreError {
    fn from(e: KafkaError) -> Self {
        match e {
            KafkaError::Unreachable { .. } => StoreError::Unavailable {
                backend: BACKEND,
                source: Box::new(e),
            },
            other => StoreError::Backend {
                backend: BACKEND,
                source: Box::new(other),
            },
        }
    }
}

/// Committed events on a Kafka topic.
///
/// Publishing sends each event keyed by its stream id (one aggregate's
/// events go to one partition, in order) with an idempotent producer and
/// `acks=all`, and waits for every delivery report. Consuming uses a
/// consumer group per consumer name (`<group prefix><name>`): offsets are
/// stored after the application handled an event and committed every
/// `commit_interval`, so a consumer that dies, or a partition moved to
/// another member by a rebalance, resumes after the last handled event
/// and what came again is skipped by the subscribers' checkpoints.
///
/// Cheap to clone: clones share the producer and the consumers.
#[derive(Clone)]
pub struct KafkaTransport {
    shared: Arc<Shared>,
}

struct Shared {
    config: KafkaConfig,
    /// Replaced when librdkafka reports a fatal error (an idempotent
    /// producer whose sequence the brokers lost, after a restart of theirs).
    producer: parking_lot::RwLock<FutureProducer>,
    /// Whether the topic was found or created (checked again after a
    /// failed publish: a broker replaced, an operator who deleted it).
    topic: tokio::sync::Mutex<bool>,
    consumers: tokio::sync::Mutex<HashMap<String, Arc<Consumer>>>,
}

/// One group member, and what this instance received and did not see
/// acknowledged, by partition and offset.
struct Consumer {
    stream: StreamConsumer,
    held: tokio::sync::Mutex<BTreeMap<(i32, i64), Delivery>>,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unavailable(config: &KafkaConfig, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        source: config.scrub(&e.to_string()).into(),
    }
}

/// An idempotent producer waiting for every in-sync replica.
fn producer_of(config: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    client_config(config)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("message.timeout.ms", config.request_timeout.as_millis().to_string())
        .create()
        .map_err(|e| KafkaError::Refused {
            what: "creating the producer",
            reason: config.scrub(&e.to_string()),
        })
}

/// The client settings every client of `config` shares.
fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set("socket.timeout.ms", config.request_timeout.as_millis().to_string())
        .set("log_level", "3");
    if let Some((user, password)) = &config.credentials {
        client
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanisms", "PLAIN")
            .set("sasl.username", user)
            .set("sasl.password", password);
    }
    client
}

impl KafkaTransport {
    /// Creates the producer, finds the topic (creating it when allowed and
    /// missing).
    ///
    /// # Errors
    ///
    /// An invalid configuration, unreachable brokers, a missing topic
    /// that may not be created.
    pub async fn open(config: KafkaConfig) -> Result<Self, KafkaError> {
        config.validate()?;
        let producer = producer_of(&config)?;
        let transport = Self {
            shared: Arc::new(Shared {
                config,
                producer: parking_lot::RwLock::new(producer),
                topic: tokio::sync::Mutex::new(false),
                consumers: tokio::sync::Mutex::new(HashMap::new()),
            }),
        };
        if !transport.shared.config.connect_in_background {
            transport.topic().await?;
        }
        Ok(transport)
    }

    /// Its configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.shared.config
    }

    /// The topic's partitions, `None` when it does not exist (a blocking
    /// metadata request, run off the runtime's threads).
    pub(crate) async fn partitions(&self) -> Result<Option<usize>, KafkaError> {
        let producer = self.shared.producer.read().clone();
        let config = self.shared.config.clone();
        let answer = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&config.topic), config.request_timeout)
                .map(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .find(|t| t.name() == config.topic)
                        .and_then(|t| {
                            // A missing topic comes back with an error and no partitions.
                            (t.error().is_none() && !t.partitions().is_empty()).then(|| t.partitions().len())
                        })
                })
        })
        .await;
        match answer {
            Ok(Ok(partitions)) => Ok(partitions),
            Ok(Err(e)) => Err(KafkaError::Unreachable {
                brokers: self.shared.config.brokers.clone(),
                reason: self.shared.config.scrub(&e.to_string()),
            }),
            Err(e) => Err(KafkaError::Refused {
                what: "a metadata request",
                reason: e.to_string(),
            }),
        }
    }

    /// The topic, found or created (once, and again after a failure).
    async fn topic(&self) -> Result<(), KafkaError> {
        let mut known = self.shared.topic.lock().await;
        if !*known {
            self.ensure_topic().await?;
            *known = true;
        }
        Ok(())
    }

    async fn ensure_topic(&self) -> Result<(), KafkaError> {
        let config = &self.shared.config;
        if self.partitions().await?.is_some() {
            return Ok(());
        }
        if !config.provision {
            return Err(KafkaError::MissingTopic(config.topic.clone()));
        }
        let admin: AdminClient<DefaultClientContext> =
            client_config(config).create().map_err(|e| KafkaError::Refused {
                what: "creating the admin client",
                reason: config.scrub(&e.to_string()),
            })?;
        let topic = NewTopic::new(
            &config.topic,
            config.partitions,
            TopicReplication::Fixed(config.replication),
        );
        let options = AdminOptions::new().operation_timeout(Some(config.request_timeout));
        let results = admin
            .create_topics([&topic], &options)
            .await
            .map_err(|e| KafkaError::Refused {
                what: "creating the topic",
                reason: config.scrub(&e.to_string()),
            })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(KafkaError::Refused {
                        what: "creating the topic",
                        reason: code.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    async fn publish_all(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let config = &self.shared.config;
        self.topic().await?;
        // Enqueued together, then every delivery report awaited: the
        // idempotent producer keeps them in order per partition, retries
        // included.
        let producer = self.shared.producer.read().clone();
        if let Err(e) = self.send_all(&producer, events).await {
            // After a failure the producer is replaced: an idempotent
            // producer whose sequence the brokers lost (they restarted) is
            // refused, or times out, for good (seen with librdkafka 2.12
            // and Tansu), while a new one, with a new producer id, works.
            // The relay's retry publishes the page whole again, and the
            // topic is looked up again (a broker replaced, a topic deleted).
            *self.shared.topic.lock().await = false;
            tracing::warn!(error = %e, fatal = ?producer.client().fatal_error(), "publishing to Kafka failed; replacing the producer");
            *self.shared.producer.write() = producer_of(config)?;
            return Err(e);
        }
        metrics::counter!("interlock_transport_published_total", "transport" => BACKEND).increment(events.len() as u64);
        Ok(())
    }

    /// Sends every event and awaits every report.
    async fn send_all(&self, producer: &FutureProducer, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let config = &self.shared.config;
        let mut reports = Vec::with_capacity(events.len());
        for event in events {
            let key = event.stream.to_string();
            let mut headers = OwnedHeaders::new_with_capacity(12 + event.metadata.headers.len());
            for (name, value) in Envelope::of(event).headers {
                headers = headers.insert(Header {
                    key: name.as_ref(),
                    value: Some(value.as_bytes()),
                });
            }
            let record = FutureRecord::to(&config.topic)
                .key(key.as_bytes())
                .payload(event.payload.as_ref())
                .headers(headers);
            match producer.send_result(record) {
                Ok(report) => reports.push(report),
                Err((e, _)) => return Err(unavailable(config, &e)),
            }
        }
        for report in reports {
            match report.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(unavailable(config, &e)),
                Err(_) => return Err(unavailable(config, "the producer went away before its delivery report")),
            }
        }
        Ok(())
    }

    /// The group member for `consumer`, joined on first use.
    async fn consumer(&self, consumer: &str) -> Result<Arc<Consumer>, StoreError> {
        let config = &self.shared.config;
        let mut consumers = self.shared.consumers.lock().await;
        if let Some(found) = consumers.get(consumer) {
            return Ok(Arc::clone(found));
        }
        self.topic().await?;
        match self.partitions().await? {
            None => return Err(KafkaError::MissingTopic(config.topic.clone()).into()),
            Some(1) => {}
            Some(partitions) => {
                return Err(KafkaError::Partitioned {
                    topic: config.topic.clone(),
                    partitions,
                }
                .into());
            }
        }
        let stream: StreamConsumer = client_config(config)
            .set("group.id", format!("{}{consumer}", config.group_prefix))
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                config.commit_interval.as_millis().to_string(),
            )
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout.as_millis().to_string())
            .set(
                "heartbeat.interval.ms",
                (config.session_timeout.as_millis() / 4).max(100).to_string(),
            )
            .set("enable.partition.eof", "false")
            // A topic made again (after a broker was replaced) is found soon.
            .set("topic.metadata.refresh.interval.ms", "2000")
            .create()
            .map_err(|e: RdKafkaError| unavailable(config, e))?;
        stream.subscribe(&[&config.topic]).map_err(|e| unavailable(config, e))?;
        let member = Arc::new(Consumer {
            stream,
            held: tokio::sync::Mutex::new(BTreeMap::new()),
        });
        consumers.insert(consumer.to_owned(), Arc::clone(&member));
        Ok(member)
    }

    async fn receive_for(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, StoreError> {
        let config = &self.shared.config;
        let member = self.consumer(consumer).await?;
        let mut held = member.held.lock().await;
        // What this instance received and was not acknowledged comes
        // first, unless a rebalance gave its partition to another member.
        if !held.is_empty() {
            if let Ok(assignment) = member.stream.assignment() {
                let assigned: Vec<i32> = assignment.elements().iter().map(|e| e.partition()).collect();
                held.retain(|(partition, _), _| assigned.contains(partition));
            }
            if !held.is_empty() {
                return Ok(held.values().take(max).cloned().collect());
            }
        }
        let mut deliveries = Vec::new();
        let mut limit = wait.max(Duration::from_millis(1));
        while deliveries.len() < max.max(1) {
            let message = match tokio::time::timeout(limit, member.stream.recv()).await {
                Err(_) => break,
                Ok(Err(e)) if deliveries.is_empty() => return Err(unavailable(config, e)),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "a receive failed part-way; handing out what arrived");
                    break;
                }
                Ok(Ok(message)) => message,
            };
            // After the first, take only what is there already.
            limit = Duration::from_millis(1);
            let (partition, offset) = (message.partition(), message.offset());
            let headers: Vec<(&str, &str)> = message
                .headers()
                .map(|h| {
                    h.iter()
                        .filter_map(|h| Some((h.key, std::str::from_utf8(h.value?).ok()?)))
                        .collect()
                })
                .unwrap_or_default();
            let payload = bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default());
            match Envelope::open(headers, payload) {
                Ok(event) => {
                    let delivery = Delivery {
                        event,
                        receipt: Receipt {
                            partition: u32::try_from(partition).unwrap_or(0),
                            offset: u64::try_from(offset).unwrap_or(0),
                        },
                        // Kafka counts no deliveries.
                        attempt: 1,
                    };
                    held.insert((partition, offset), delivery.clone());
                    deliveries.push(delivery);
                }
                Err(e) => {
                    // Not an Interlock event: skipped for this group (it
                    // stays in the topic).
                    tracing::error!(error = %e, partition, offset, "a message on the topic is not an Interlock event; skipped for this consumer (it stays in the topic)");
                    metrics::counter!("interlock_transport_rejected_total", "transport" => BACKEND).increment(1);
                    member
                        .stream
                        .store_offset(&config.topic, partition, offset)
                        .map_err(|e| unavailable(config, e))?;
                }
            }
        }
        Ok(deliveries)
    }

    async fn ack_for(&self, consumer: &str, receipt: Receipt) -> Result<(), StoreError> {
        let config = &self.shared.config;
        // Only a member this instance joined has something to acknowledge.
        let Some(member) = self.shared.consumers.lock().await.get(consumer).cloned() else {
            return Ok(());
        };
        let mut held = member.held.lock().await;
        let (Ok(partition), Ok(offset)) = (i32::try_from(receipt.partition), i64::try_from(receipt.offset)) else {
            return Ok(());
        };
        if held.remove(&(partition, offset)).is_none() {
            // Not received by this instance, or acknowledged already.
            return Ok(());
        }
        // Committed with the next auto-commit: everything up to it is done.
        member
            .stream
            .store_offset(&config.topic, partition, offset)
            .map_err(|e| unavailable(config, e))
    }
}

impl EventTransport for KafkaTransport {
    fn publish<'a>(&'a self, events: &'a [RecordedEvent]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.publish_all(events))
    }

    fn receive<'a>(
        &'a self,
        consumer: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, StoreError>> {
        Box::pin(self.receive_for(consumer, max, wait))
    }

    fn ack<'a>(&'a self, consumer: &'a str, receipt: Receipt) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.ack_for(consumer, receipt))
    }
}
