//! The runtime of Interlock: traits, the application, dispatch, the
//! subscriber engine, in-memory backends and test scenarios. Use it through
//! the `interlock` crate, which re-exports all of it and adds the backends
//! its features select.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The layers, bottom up: future, domain, seams, pipeline, processes, then
// scenario and application side by side. Imports only go down; the test
// `tests/tests/architecture_layers.rs` checks it.
mod application;
mod domain;
mod future;
mod pipeline;
mod processes;
pub mod scenario;
mod seams;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

#[doc(inline)]
pub use crate::application::{
    Application, ApplicationBuilder, BuildError, CommandLayer, ProjectionConfig, QueryError, SubscriberHandle,
    TenantHandle,
};
#[doc(inline)]
pub use crate::domain::aggregate::{Aggregate, Loaded};
#[doc(inline)]
pub use crate::domain::backoff::Backoff;
#[doc(inline)]
pub use crate::domain::command::{Command, HandledCommand, Peer, Reply};
#[doc(inline)]
pub use crate::domain::event::{Event, EventDecodeError};
#[doc(inline)]
pub use crate::domain::fingerprint::{CommandFingerprint, Fingerprinter};
#[doc(inline)]
pub use crate::domain::ids::{
    AggregateId, CausationId, CommandId, CorrelationId, EventId, InvalidTenantId, Position, SchemaVersion, StreamId,
    TenantId, Timestamp, TimestampParseError, Version,
};
#[doc(inline)]
pub use crate::domain::view::{Consistency, View};
#[doc(inline)]
pub use crate::pipeline::config::AggregateConfig;
#[doc(inline)]
pub use crate::pipeline::error::{CommandError, LoadError};
#[doc(inline)]
pub use crate::pipeline::options::{AsOf, DispatchOptions, Dispatched};
#[doc(inline)]
pub use crate::processes::projection::{EventMeta, HandledQuery, ModelStorage, Projection};
#[doc(inline)]
pub use crate::processes::saga::{Saga, SagaContext, SagaResult};
#[doc(inline)]
pub use crate::processes::subscriber::{
    FailurePolicy, HandlerFailure, SubscriberConfig, SubscriberStatus, SubscriptionError,
};
/// Re-exported for users' domain types.
pub use ulid::Ulid;

/// The seams every backend implements: the storage traits with their
/// in-memory implementations, the batch-append primitive and group
/// committer, and the event transport.
pub mod store {
    #[doc(inline)]
    pub use crate::seams::*;
}

/// Middleware on tower: the request and services of the dispatch stack,
/// the built-in layers, and typed interceptors' types.
pub mod middleware {
    #[doc(inline)]
    pub use crate::application::{QueryContext, Rejection};
    #[doc(inline)]
    pub use crate::pipeline::middleware::*;
}

/// Derives [`Event`](trait@Event) for a serde type.
///
/// `#[event(name = "...", version = N, upcast_from = Older)]`: `name` is
/// required and stable across renames of the Rust type; `version` defaults
/// to 1; `upcast_from` names the type of version `N - 1`, which must have the
/// same name and convert with `From`. Checked at compile time.
#[doc(inline)]
pub use interlock_macros::Event;

/// Derives [`Command`](trait@Command).
///
/// Mark the field naming the target aggregate instance with
/// `#[aggregate_id]`, and optionally a `CommandId` (or `Option<CommandId>`)
/// field with `#[command_id]` to make dispatch idempotent.
/// `#[command(name = "...")]` overrides the name used in traces.
#[doc(inline)]
pub use interlock_macros::Command;

/// Turns an impl block into an aggregate: `#[handles_command]` methods route
/// commands, `#[applies_event]` methods fold events into the state.
///
/// `#[aggregate(name = "...", state_version = N)]`: `name` is the stable
/// aggregate type stored in stream ids; `state_version` (default 1) is the
/// schema version of snapshots of the state.
#[doc(inline)]
pub use interlock_macros::aggregate;

/// Marks a command handler inside an `#[aggregate]` impl block:
/// `fn name(&self, command: C, service: &S, ...) -> R`, sync or `async`.
#[doc(inline)]
pub use interlock_macros::handles_command;

/// Turns an impl block into a projection: `#[handles_event]` methods
/// (`&mut self, &Event`, optionally `&EventMeta`; sync or `async`; returning
/// `()` or `Result<(), E>`) fold events into a read model, `#[handles_query]`
/// methods (`&self, Query`) answer typed queries.
///
/// `#[projection(name = "...", model = memory | durable)]`: the stable name
/// of its checkpoint (the type's name by default), and where its read
/// model lives (required; see [`ModelStorage`]): `memory` for a model in
/// the value itself, rebuilt from the start of the log at every start;
/// `durable` for one its handlers write to a database, resumed from its
/// saved checkpoint.
#[doc(inline)]
pub use interlock_macros::projection;

/// Marks an event handler inside a `#[projection]` impl block.
#[doc(inline)]
pub use interlock_macros::handles_event;

/// Marks a query handler inside a `#[projection]` impl block.
#[doc(inline)]
pub use interlock_macros::handles_query;

/// Turns an impl block over a serde state type into a saga:
/// `#[saga_step(start | end, key = field)]` methods
/// (`&mut self, &Event, &mut SagaContext`) react to events of the instance
/// named by the event's `field`; `#[saga_deadline]` (or
/// `#[saga_deadline(end)]`) methods run when a scheduled deadline fires.
///
/// `#[saga(name = "...")]`: the stable name of its state and checkpoint
/// (the type's name by default).
#[doc(inline)]
pub use interlock_macros::saga;

/// Marks a step inside a `#[saga]` impl block.
#[doc(inline)]
pub use interlock_macros::saga_step;

/// Marks a deadline handler inside a `#[saga]` impl block.
#[doc(inline)]
pub use interlock_macros::saga_deadline;

/// Marks the compensation of a `#[saga]`:
/// `async fn undo(&mut self, failure: &SagaFailure, ctx: &mut SagaContext) -> SagaResult`.
/// The runtime runs it when a command a step dispatched is refused by its
/// aggregate (at once), or when a step or deadline still fails after its
/// retries; the failure is recorded with the instance first, so a crash in
/// between still compensates; the saga ends after it.
#[doc(inline)]
pub use interlock_macros::saga_compensation;

/// Marks an event applier inside an `#[aggregate]` impl block:
/// `fn name(&mut self, event: &E)`.
#[doc(inline)]
pub use interlock_macros::applies_event;

/// What ordinary applications write: the macros, the traits they name, the
/// application and its errors, ids, and the scenarios.
pub mod prelude {
    #[doc(no_inline)]
    pub use crate::scenario::{AggregateScenario, ProjectionScenario, SagaScenario};
    #[doc(no_inline)]
    pub use crate::store::{ExpectedVersion, SagaFailure};
    #[doc(no_inline)]
    pub use crate::{
        Aggregate, Application, ApplicationBuilder, Command, CommandError, CommandId, CorrelationId, Event, EventId,
        EventMeta, HandledCommand, HandledQuery, Peer, Position, Projection, Reply, Saga, SagaContext, SagaResult,
        SchemaVersion, StreamId, SubscriberConfig, Timestamp, Version, aggregate, applies_event, handles_command,
        handles_event, handles_query, projection, saga, saga_compensation, saga_deadline, saga_step,
    };
    #[doc(no_inline)]
    pub use serde::{Deserialize, Serialize};
    #[doc(no_inline)]
    pub use ulid::Ulid;
}

/// Guides beyond the API reference.
pub mod docs {
    /// Debugging macro and type errors: what each message means and what to
    /// write instead.
    #[doc = include_str!("../docs/compile-errors.md")]
    pub mod compile_errors {}
}

/// What generated code reaches through absolute paths. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::domain::aggregate::Aggregate;
    pub use crate::domain::command::{
        Command, Decision, Emitted, HandledCommand, HandlerError, HandlerReturn, IntoEvents, single_event,
    };
    pub use crate::domain::event::{
        EncodedEvent, Event, EventDecodeError, EventSet, EventType, UpcastFrom, const_str_eq, decode_exact,
        decode_upcast,
    };
    pub use crate::domain::fingerprint::Fingerprinter;
    pub use crate::domain::fingerprint::probe::{
        ByHash as FingerprintByHash, BySerialize as FingerprintBySerialize, Field as FingerprintField,
        Neither as FingerprintNeither,
    };
    pub use crate::domain::ids::{AggregateId, CommandId, SchemaVersion};
    pub use crate::domain::key::{Key, KeyByDisplay, KeyDirect};
    pub use crate::processes::projection::{EventMeta, HandledQuery, ModelStorage, Projection};
    pub use crate::processes::saga::{DeadlineOf, Saga, SagaContext, SagaResult, SagaRoute, StepKind};
    pub use crate::processes::subscriber::{EventHandlerResult, HandlerFailure};
    pub use crate::store::SagaFailure;
    pub use smol_str::SmolStr;

    /// The transaction a transactional projection's handler takes, as its
    /// type.
    ///
    /// # Errors
    ///
    /// When the projection runs without one (a scenario), or it is of
    /// another type.
    pub fn transaction_of<T: ::core::any::Any>(
        tx: Option<&mut (dyn ::core::any::Any + Send)>,
    ) -> Result<&mut T, HandlerFailure> {
        let Some(tx) = tx else {
            return Err(HandlerFailure::msg(
                "this handler takes a transaction: run the projection with `ProjectionConfig::transactions(store)`",
            ));
        };
        tx.downcast_mut::<T>().ok_or_else(|| {
            HandlerFailure::msg(format!(
                "the handler takes a `{}`, but the projection's store opens another kind of transaction",
                ::core::any::type_name::<T>()
            ))
        })
    }

    /// The key of a saga instance, from the event's key field.
    pub fn saga_key<K: AggregateId + ?Sized>(key: &K) -> ::std::string::String {
        key.to_stream_key()
    }

    /// What a saga step may return: `()` or a `SagaResult`.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be returned by a saga step",
        note = "a saga step returns nothing or `SagaResult` (`Result<(), SagaError>`; `?` converts any error)"
    )]
    pub trait IntoSagaResult {
        /// The result.
        ///
        /// # Errors
        ///
        /// The step's error.
        fn into_saga_result(self) -> SagaResult;
    }
    impl IntoSagaResult for () {
        fn into_saga_result(self) -> SagaResult {
            Ok(())
        }
    }
    impl IntoSagaResult for SagaResult {
        fn into_saga_result(self) -> SagaResult {
            self
        }
    }
    pub use crate::domain::services::{MissingService, ServiceKey, Services};
    pub use bytes::Bytes;
    pub use core::convert::Infallible;
    pub use core::future::Future;
    pub use core::option::Option::{self, None, Some};
    pub use core::result::Result::{self, Err, Ok};
    pub use serde_json;
    pub use std::boxed::Box;
    pub use std::vec::Vec;

    /// Encodes an event's payload as JSON into this thread's arena: payloads
    /// are cut from shared 8 KiB chunks (`BytesMut::split`), so encoding
    /// one allocates nothing (a chunk is freed when its last payload is;
    /// a payload kept alone keeps its chunk). Measured in W1 with callgrind:
    /// an allocation and a copy per payload were about 200 instructions.
    ///
    /// # Errors
    ///
    /// What serde_json says.
    pub fn encode_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Bytes, serde_json::Error> {
        use bytes::BufMut as _;
        const CHUNK: usize = 8 * 1024;
        const ROOM: usize = 256;
        thread_local! {
            static ARENA: ::core::cell::RefCell<bytes::BytesMut> = ::core::cell::RefCell::new(bytes::BytesMut::new());
        }
        ARENA.with(|arena| match arena.try_borrow_mut() {
            Ok(mut arena) => {
                if arena.capacity() < ROOM {
                    *arena = bytes::BytesMut::with_capacity(CHUNK);
                }
                match serde_json::to_writer((&mut *arena).writer(), value) {
                    Ok(()) => Ok(arena.split().freeze()),
                    Err(e) => {
                        arena.clear();
                        Err(e)
                    }
                }
            }
            // A payload whose `Serialize` encodes another event.
            Err(_) => serde_json::to_vec(value).map(Bytes::from),
        })
    }

    /// A command with a `#[peer_id]` field (implemented by the derive).
    #[diagnostic::on_unimplemented(
        message = "command `{Self}` names no peer",
        label = "this handler takes a `#[peer]`",
        note = "mark the field of `{Self}` naming the other instance with `#[peer_id]`"
    )]
    pub trait NamesPeer: Command {}
    /// Asserts at compile time that a command whose handler takes a
    /// `#[peer]` names one.
    pub const fn assert_peer<C: NamesPeer>() {}
    /// Asserts at compile time that a service parameter's type can be shared.
    pub const fn assert_service<T: core::any::Any + Send + Sync>() {}
    /// Asserts at compile time that a command's id can be converted.
    pub fn command_id_of<T: IntoCommandId>(value: &T) -> Option<CommandId> {
        value.to_command_id()
    }

    /// Field types usable as `#[command_id]`.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be a command id",
        note = "a `#[command_id]` field must be `CommandId` or `Option<CommandId>`"
    )]
    pub trait IntoCommandId {
        /// The id.
        fn to_command_id(&self) -> Option<CommandId>;
    }
    impl IntoCommandId for CommandId {
        fn to_command_id(&self) -> Option<CommandId> {
            Some(*self)
        }
    }
    impl IntoCommandId for Option<CommandId> {
        fn to_command_id(&self) -> Option<CommandId> {
            *self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::__private::encode_json;

    /// A value that fails to encode after writing part of itself.
    struct HalfWay;

    impl serde::Serialize for HalfWay {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{Error, SerializeSeq};
            let mut seq = serializer.serialize_seq(None)?;
            seq.serialize_element("written")?;
            Err(S::Error::custom("refused half way"))
        }
    }

    /// Payloads cut from one chunk are each their own JSON, a failed
    /// encoding leaves nothing behind, and payloads larger than a chunk
    /// come out whole.
    #[test]
    fn payloads_from_the_arena_are_whole_and_apart() {
        let first = encode_json(&serde_json::json!({"a": 1})).unwrap_or_default();
        assert!(encode_json(&HalfWay).is_err());
        let second = encode_json(&[1, 2, 3]).unwrap_or_default();
        let big = "x".repeat(20_000);
        let third = encode_json(&big).unwrap_or_default();
        let many: Vec<bytes::Bytes> = (0..200).map(|i| encode_json(&i).unwrap_or_default()).collect();
        assert_eq!(&first[..], br#"{"a":1}"#);
        assert_eq!(&second[..], b"[1,2,3]");
        assert_eq!(third.len(), 20_002);
        for (i, payload) in many.iter().enumerate() {
            assert_eq!(payload[..], *i.to_string().as_bytes());
        }
    }
}
