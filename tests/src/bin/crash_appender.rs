//! A child process for the crash tests: appends batches of three events to
//! fresh streams in a loop and prints `ack <aggregate id> <version>` after
//! each commit, until it is killed. Every other append is an atomic append
//! of three events to each of two fresh streams, `pair-<id>-a` and
//! `pair-<id>-b`, which must be found both whole or not at all.
//!
//! `crash_appender sqlite <path>`, `crash_appender postgres <url> <schema>`
//! or `crash_appender mongodb <uri> <database>`.

use std::io::Write;

use interlock::store::EventStore;
use interlock::store::{AtomicAppend, EventMetadata, ExpectedVersion, NewEvent};
use interlock::{EventId, SchemaVersion, StreamId};
use interlock_sql::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore};

fn batch() -> Vec<NewEvent> {
    (0..3)
        .map(|i| NewEvent {
            event_id: EventId::new(),
            name: "crash.appended".into(),
            schema_version: SchemaVersion(1),
            payload: format!(r#"{{"i":{i}}}"#).into_bytes().into(),
            metadata: EventMetadata::default(),
        })
        .collect()
}

async fn run(store: impl EventStore) -> Result<(), Box<dyn std::error::Error>> {
    let stdout = std::io::stdout();
    for n in 0u64.. {
        let id = ulid::Ulid::new();
        let committed = if n % 2 == 0 {
            let stream = StreamId::new("crash.stream", id.to_string());
            vec![
                store
                    .append(&stream, ExpectedVersion::Exact(interlock::Version(0)), batch())
                    .await?,
            ]
        } else {
            let fresh = ExpectedVersion::Exact(interlock::Version(0));
            let append = AtomicAppend::new()
                .stream(StreamId::new("crash.stream", format!("pair-{id}-a")), fresh, batch())
                .stream(StreamId::new("crash.stream", format!("pair-{id}-b")), fresh, batch());
            store.append_atomic(append).await?
        };
        let mut out = stdout.lock();
        for done in committed {
            writeln!(out, "ack {} {}", done.stream.aggregate_id(), done.version)?;
        }
        out.flush()?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sqlite") => {
            let path = args.get(2).ok_or("missing path")?;
            run(SqliteStore::open(SqliteConfig::file(path)).await?).await
        }
        Some("postgres") => {
            let (url, schema) = (args.get(2).ok_or("missing url")?, args.get(3).ok_or("missing schema")?);
            run(PostgresStore::open(PostgresConfig::new(url.as_str()).schema(schema.as_str())).await?).await
        }
        Some("mongodb") => {
            let (uri, database) = (
                args.get(2).ok_or("missing uri")?,
                args.get(3).ok_or("missing database")?,
            );
            let config = interlock::mongodb::MongoConfig::new(uri.as_str()).database(database.as_str());
            run(interlock::mongodb::MongoStore::open(config).await?).await
        }
        _ => Err("usage: crash_appender sqlite <path> | postgres <url> <schema> | mongodb <uri> <database>".into()),
    }
}
