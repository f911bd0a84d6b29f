//! The head of the log, followed live: a change stream on the position
//! counter wakes catch-up subscribers as soon as an append commits, in
//! this process or another. The stream resumes from its last token after
//! a lost connection; where the server has no change streams, the head is
//! polled instead.

use std::time::Duration;

use futures_util::StreamExt;
use interlock::Position;
use mongodb::bson::doc;
use mongodb::change_stream::event::ResumeToken;

use crate::driver::as_u64;
use crate::store::{MongoStore, POSITION_COUNTER, WeakStore};
use interlock::store::EventStore;

/// How often the head is read when it cannot be watched.
const POLL: Duration = Duration::from_millis(200);

/// Starts following the head of `store`'s log until the store is dropped.
pub(crate) fn follow_head(store: &MongoStore) {
    let weak = store.downgrade();
    let alive = store.inner.head.subscribe();
    tokio::spawn(follow(weak, alive));
}

async fn follow(weak: WeakStore, mut alive: tokio::sync::watch::Receiver<Position>) {
    let mut token: Option<ResumeToken> = None;
    let mut failures = 0u32;
    loop {
        let Some(store) = weak.upgrade() else { return };
        // Catch up on what committed while not watching.
        if let Ok(head) = store.head().await {
            store.publish_head(head);
        }
        let opened = store
            .collections()
            .counters
            .watch()
            .pipeline([doc! { "$match": { "documentKey._id": POSITION_COUNTER } }])
            .resume_after(token.clone())
            .await;
        drop(store);
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "no change stream on the position counter; polling the head");
                }
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    closed = alive.changed() => if closed.is_err() { return },
                }
                continue;
            }
        };
        failures = 0;
        loop {
            tokio::select! {
                next = stream.next() => match next {
                    Some(Ok(change)) => {
                        token = stream.resume_token();
                        // An update carries the new value (no lookup of the
                        // document); the insert of the counter carries it.
                        let last = change
                            .update_description
                            .as_ref()
                            .and_then(|u| u.updated_fields.get("last"))
                            .or_else(|| change.full_document.as_ref().and_then(|d| d.get("last")))
                            .and_then(as_u64);
                        match (weak.upgrade(), last) {
                            (None, _) => return,
                            (Some(store), Some(last)) => store.publish_head(Position(last)),
                            (Some(_), None) => {}
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "the change stream broke; resuming");
                        tokio::time::sleep(POLL).await;
                        break;
                    }
                    None => break,
                },
                closed = alive.changed() => if closed.is_err() { return },
            }
        }
    }
}
