//! The transport: connecting, provisioning the stream, publishing with
//! acknowledgement, and durable pull consumers with explicit acks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, AckKind, ErrorCode, stream};
use futures_util::StreamExt;
use interlock::store::{BoxFuture, Delivery, Envelope, EventTransport, Receipt, RecordedEvent, StoreError};

use crate::config::{NatsConfig, scrub};
use crate::subjects;

/// The backend's name in errors and metrics.
pub(crate) const BACKEND: &str = "nats";

/// Why a transport cannot be opened, or its stream used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::NatsConfigError),
    /// No server answered (the URL shown without credentials).
    #[error("NATS at {url} is unreachable: {reason}")]
    Unreachable {
        /// The server(s), redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// The stream does not exist and provisioning is off.
    #[error(
        "the JetStream stream `{stream}` does not exist and provisioning is off: create it (subjects `{subjects}`) or allow provisioning (INTERLOCK_NATS_PROVISION=true)"
    )]
    MissingStream {
        /// The stream's name.
        stream: String,
        /// The subjects it must take.
        subjects: String,
    },
    /// A durable consumer does not exist and provisioning is off.
    #[error("the JetStream consumer `{consumer}` of stream `{stream}` does not exist and provisioning is off")]
    MissingConsumer {
        /// The stream's name.
        stream: String,
        /// The consumer's durable name.
        consumer: String,
    },
    /// The stream exists but does not take the configured subjects.
    #[error(
        "the JetStream stream `{stream}` takes subjects {found:?}, not `{expected}`: another application's stream?"
    )]
    StreamMismatch {
        /// The stream's name.
        stream: String,
        /// The subjects it takes.
        found: Vec<String>,
        /// The subjects the configuration publishes to.
        expected: String,
    },
    /// The server refused a request.
    #[error("NATS refused {what}: {reason}")]
    Refused {
        /// The request.
        what: &'static str,
        /// The server's answer.
        reason: String,
    },
}

impl From<NatsError> for StoreError {
    fn from(e: NatsError) -> Self {
        match e {
            NatsError::Unreachable { .. } => StoreError::Unavailable {
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

/// Committed events on NATS JetStream.
///
/// Publishing sends each event to `<root>.<aggregate type>.<id>` with the
/// event id as `Nats-Msg-Id` and waits for every publish acknowledgement;
/// the server drops a republished event within its duplicate window.
/// Consuming uses a durable pull consumer per consumer name, with
/// explicit acknowledgement, redelivery after the ack wait (or the
/// configured backoff), and never drops an event itself: the consuming
/// application parks one delivered past [`NatsConfig::max_deliveries`].
/// A message without the envelope (another producer's, on these
/// subjects) is terminated for this consumer and stays in the stream.
///
/// Cheap to clone: clones share the connection and the consumers.
#[derive(Clone)]
pub struct NatsTransport {
    shared: Arc<Shared>,
}

struct Shared {
    config: NatsConfig,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// The stream, once found or created.
    stream: tokio::sync::OnceCell<stream::Stream>,
    /// Each consumer apart: one waiting for deliveries does not hold up
    /// another's receive or acknowledgements.
    consumers: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Consumer>>>>,
}

/// One durable consumer, and what this instance received of it and did
/// not see acknowledged yet, by stream sequence.
struct Consumer {
    pull: PullConsumer,
    held: BTreeMap<u64, (jetstream::Message, Delivery)>,
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

fn unavailable(config: &NatsConfig, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        source: scrub(&e.to_string(), config).into(),
    }
}

impl NatsTransport {
    /// Connects and finds (or, when allowed, creates) the stream; with
    /// [`NatsConfig::connect_in_background`], returns at once and does
    /// both on first use.
    ///
    /// # Errors
    ///
    /// An invalid configuration, an unreachable server, a missing stream
    /// that may not be created, a stream of other subjects.
    pub async fn open(config: NatsConfig) -> Result<Self, NatsError> {
        config.validate()?;
        let mut options = async_nats::ConnectOptions::new()
            .name(&config.client_name)
            .connection_timeout(config.connect_timeout)
            .request_timeout(Some(config.request_timeout));
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if config.connect_in_background {
            options = options.retry_on_initial_connect();
        }
        let servers: Vec<async_nats::ServerAddr> = config
            .url
            .split(',')
            .map(|s| s.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<_, std::io::Error>>()
            .map_err(|e| NatsError::Unreachable {
                url: config.redacted_url(),
                reason: scrub(&e.to_string(), &config),
            })?;
        let connect = options.connect(servers);
        let client = match tokio::time::timeout(config.connect_timeout + Duration::from_secs(1), connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(NatsError::Unreachable {
                    url: config.redacted_url(),
                    reason: scrub(&e.to_string(), &config),
                });
            }
            Err(_) => {
                return Err(NatsError::Unreachable {
                    url: config.redacted_url(),
                    reason: format!("no answer within {:?}", config.connect_timeout),
                });
            }
        };
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(config.request_timeout);
        let transport = Self {
            shared: Arc::new(Shared {
                config,
                client,
                jetstream,
                stream: tokio::sync::OnceCell::new(),
                consumers: tokio::sync::Mutex::new(HashMap::new()),
            }),
        };
        if !transport.shared.config.connect_in_background {
            transport.stream().await?;
        }
        Ok(transport)
    }

    /// Its configuration.
    pub fn config(&self) -> &NatsConfig {
        &self.shared.config
    }

    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.shared.client
    }

    /// The stream, found or created once.
    pub(crate) async fn stream(&self) -> Result<&stream::Stream, NatsError> {
        self.shared
            .stream
            .get_or_try_init(|| self.find_or_create_stream())
            .await
    }

    async fn find_or_create_stream(&self) -> Result<stream::Stream, NatsError> {
        let config = &self.shared.config;
        let subjects = subjects::all(&config.subject_root);
        let unreachable = |e: &dyn std::fmt::Display| NatsError::Unreachable {
            url: config.redacted_url(),
            reason: scrub(&e.to_string(), config),
        };
        match self.shared.jetstream.get_stream(&config.stream).await {
            Ok(stream) => {
                let found = &stream.cached_info().config.subjects;
                if found.iter().any(|s| s == &subjects || s == ">") {
                    Ok(stream)
                } else {
                    Err(NatsError::StreamMismatch {
                        stream: config.stream.clone(),
                        found: found.clone(),
                        expected: subjects,
                    })
                }
            }
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    if !config.provision {
                        return Err(NatsError::MissingStream {
                            stream: config.stream.clone(),
                            subjects,
                        });
                    }
                    let created = self
                        .shared
                        .jetstream
                        .get_or_create_stream(stream::Config {
                            name: config.stream.clone(),
                            subjects: vec![subjects],
                            duplicate_window: config.duplicate_window,
                            max_age: config.max_age.unwrap_or_default(),
                            num_replicas: config.replicas,
                            storage: stream::StorageType::File,
                            retention: stream::RetentionPolicy::Limits,
                            ..stream::Config::default()
                        })
                        .await;
                    created.map_err(|e| NatsError::Refused {
                        what: "creating the stream",
                        reason: scrub(&e.to_string(), config),
                    })
                }
                jetstream::context::GetStreamErrorKind::JetStream(js) => Err(NatsError::Refused {
                    what: "looking the stream up",
                    reason: js.to_string(),
                }),
                _ => Err(unreachable(&e)),
            },
        }
    }

    /// The durable consumer `name`, found or (when allowed) created.
    async fn consumer(&self, durable: &str) -> Result<PullConsumer, StoreError> {
        let config = &self.shared.config;
        let stream = self.stream().await?;
        let wanted = PullConfig {
            durable_name: Some(durable.to_owned()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            // The server never drops an event it could not deliver; the
            // consuming application parks it (`max_deliveries`).
            max_deliver: -1,
            backoff: config.redelivery_backoff.clone(),
            filter_subject: subjects::all(&config.subject_root),
            max_ack_pending: 20_000,
            ..PullConfig::default()
        };
        if !config.provision {
            // Found by its info: a missing one is a 404 in the answer.
            return match stream.consumer_info(durable).await {
                Ok(_) => stream.get_consumer(durable).await.map_err(|e| unavailable(config, e)),
                Err(e) if e.to_string().contains("consumer not found") => Err(NatsError::MissingConsumer {
                    stream: config.stream.clone(),
                    consumer: durable.to_owned(),
                }
                .into()),
                Err(e) => Err(unavailable(config, e)),
            };
        }
        let found = stream.get_or_create_consumer(durable, wanted).await;
        found.map_err(|e| match e.kind() {
            jetstream::stream::ConsumerErrorKind::JetStream(js) if js.error_code() == ErrorCode::CONSUMER_NOT_FOUND => {
                NatsError::MissingConsumer {
                    stream: config.stream.clone(),
                    consumer: durable.to_owned(),
                }
                .into()
            }
            jetstream::stream::ConsumerErrorKind::JetStream(js) => NatsError::Refused {
                what: "creating the consumer",
                reason: js.to_string(),
            }
            .into(),
            _ => unavailable(config, &e),
        })
    }

    /// How many events `consumer` has still to receive (the server's
    /// count of messages pending for it), `None` before it first received.
    ///
    /// # Errors
    ///
    /// When the server does not answer.
    pub async fn pending(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        let stream = self.stream().await?;
        match stream.consumer_info(subjects::durable(consumer)).await {
            Ok(info) => Ok(Some(info.num_pending + info.num_ack_pending as u64)),
            Err(e) if e.to_string().contains("consumer not found") => Ok(None),
            Err(e) => Err(unavailable(&self.shared.config, e)),
        }
    }

    async fn publish_all(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let config = &self.shared.config;
        self.stream().await?;
        // Pipelined: every publish is sent, then every acknowledgement
        // awaited. One connection keeps them in order on the server; a
        // failure part-way leaves a prefix stored, and the relay's retry
        // republishes all of them (the server drops the duplicates).
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = async_nats::HeaderMap::new();
            for (name, value) in Envelope::of(event).headers {
                headers.insert(name.as_ref(), value.as_str());
            }
            let publish = PublishMessage::build()
                .payload(event.payload.clone())
                .headers(headers)
                .message_id(event.event_id.to_string());
            let subject = subjects::of_stream(&config.subject_root, &event.stream);
            let sent = self.shared.jetstream.send_publish(subject, publish).await;
            acks.push(sent.map_err(|e| unavailable(config, e))?);
        }
        let mut duplicates = 0u64;
        for ack in acks {
            let ack = ack.await.map_err(|e| unavailable(config, e))?;
            if ack.duplicate {
                duplicates += 1;
            }
        }
        metrics::counter!("interlock_transport_published_total", "transport" => BACKEND).increment(events.len() as u64);
        if duplicates > 0 {
            tracing::debug!(duplicates, "NATS dropped republished events");
        }
        Ok(())
    }

    async fn receive_for(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, StoreError> {
        let config = &self.shared.config;
        let durable = subjects::durable(consumer);
        let mut consumers = self.shared.consumers.lock().await;
        if !consumers.contains_key(&durable) {
            let mut pull = self.consumer(&durable).await?;
            // Deliveries another instance took and did not acknowledge (it
            // died) come again only after their ack wait; the server then
            // sends them before anything newer. Handing out newer events
            // first would move the subscribers' checkpoints past them, and
            // they would be skipped as handled: wait for them instead.
            let unacknowledged = pull.info().await.map_err(|e| unavailable(config, e))?.num_ack_pending;
            if unacknowledged > 0 {
                let redelivery = config.redelivery_backoff.first().copied().unwrap_or(config.ack_wait);
                tracing::info!(consumer, unacknowledged, wait = ?redelivery, "waiting for another instance's unacknowledged deliveries to come again");
                tokio::time::sleep(redelivery + redelivery / 10 + Duration::from_millis(100)).await;
            }
            consumers.insert(
                durable.clone(),
                Arc::new(tokio::sync::Mutex::new(Consumer {
                    pull,
                    held: BTreeMap::new(),
                })),
            );
        }
        let Some(member) = consumers.get(&durable).cloned() else {
            return Ok(Vec::new());
        };
        drop(consumers);
        let mut state = member.lock().await;
        // What this instance handed out and was not acknowledged comes first.
        if !state.held.is_empty() {
            return Ok(state.held.values().take(max).map(|(_, d)| d.clone()).collect());
        }
        let max = max.max(1);
        let mut messages = Vec::new();
        let answer = config.request_timeout;
        let fetched = state.pull.fetch().max_messages(max).messages();
        collect(fetched, &mut messages, config, answer).await?;
        if messages.is_empty() && !wait.is_zero() {
            // Nothing now: wait for the first, then take what came with it.
            let wait = wait.max(Duration::from_millis(10));
            let first = state.pull.batch().max_messages(1).expires(wait).messages();
            collect(first, &mut messages, config, wait + answer).await?;
            if !messages.is_empty() && max > 1 {
                let rest = state.pull.fetch().max_messages(max - 1).messages();
                collect(rest, &mut messages, config, answer).await?;
            }
        }
        let mut deliveries = Vec::with_capacity(messages.len());
        for message in messages {
            let info = match message.info() {
                Ok(info) => (info.stream_sequence, info.delivered),
                Err(e) => {
                    tracing::error!(error = %e, subject = %message.subject, "a JetStream message without its delivery info; skipped");
                    continue;
                }
            };
            let (sequence, delivered) = info;
            let headers = message
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .filter_map(|(name, values)| Some((name.as_ref(), values.first()?.as_str())));
            match Envelope::open(headers, message.payload.clone()) {
                Ok(event) => {
                    let delivery = Delivery {
                        event,
                        receipt: Receipt {
                            partition: 0,
                            offset: sequence,
                        },
                        attempt: u32::try_from(delivered.max(1)).unwrap_or(u32::MAX),
                    };
                    deliveries.push(delivery.clone());
                    state.held.insert(sequence, (message, delivery));
                }
                Err(e) => {
                    // Not an Interlock event: never handed on, kept in the
                    // stream, not delivered to this consumer again.
                    tracing::error!(error = %e, subject = %message.subject, sequence, "a message on the event subjects is not an Interlock event; terminated for this consumer (it stays in the stream)");
                    metrics::counter!("interlock_transport_rejected_total", "transport" => BACKEND).increment(1);
                    message
                        .ack_with(AckKind::Term)
                        .await
                        .map_err(|e| unavailable(config, e))?;
                }
            }
        }
        deliveries.sort_by_key(|d| d.receipt.offset);
        Ok(deliveries)
    }

    async fn ack_for(&self, consumer: &str, receipt: Receipt) -> Result<(), StoreError> {
        let durable = subjects::durable(consumer);
        let Some(member) = self.shared.consumers.lock().await.get(&durable).cloned() else {
            return Ok(());
        };
        let mut state = member.lock().await;
        let Some((message, _)) = state.held.get(&receipt.offset) else {
            // Not handed out by this instance, or acknowledged already.
            return Ok(());
        };
        // On failure it stays held, and comes again.
        message.ack().await.map_err(|e| unavailable(&self.shared.config, e))?;
        state.held.remove(&receipt.offset);
        Ok(())
    }
}

/// Collects a pull's messages into `into`, for at most `limit`: a server
/// that went away never ends a pull. What arrived before the limit is
/// kept (it was delivered to this instance, and is handed out in order);
/// nothing at all is [`StoreError::Unavailable`].
async fn collect<E: std::fmt::Display>(
    batch: impl std::future::Future<Output = Result<jetstream::consumer::pull::Batch, E>>,
    into: &mut Vec<jetstream::Message>,
    config: &NatsConfig,
    limit: Duration,
) -> Result<(), StoreError> {
    let before = into.len();
    let pull = async {
        let mut batch = batch.await.map_err(|e| unavailable(config, e))?;
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => into.push(message),
                Err(e) => return Err(unavailable(config, e)),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(limit, pull).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if into.len() == before => Err(e),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a pull ended early; handing out what arrived");
            Ok(())
        }
        Err(_) if into.len() == before => Err(unavailable(config, format!("no answer to a pull within {limit:?}"))),
        Err(_) => Ok(()),
    }
}

impl EventTransport for NatsTransport {
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

    fn max_deliveries(&self) -> Option<u32> {
        self.shared.config.max_deliveries
    }
}
