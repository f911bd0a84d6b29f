//! Following `NOTIFY` on the store's channel: each commit of an append
//! (by any process) moves the head watch live subscribers wait on.

use std::time::Duration;

use interlock::Position;
use sqlx::postgres::PgListener;

use super::PostgresStore;

/// Starts the listener task; it ends once the store is dropped. Without a
/// `LISTEN` connection, subscribers poll.
pub(super) async fn start(store: &PostgresStore) {
    let mut listener = match PgListener::connect_with(store.pool()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "no LISTEN connection; subscribers will poll");
            return;
        }
    };
    if let Err(e) = listener.listen(&store.state().channel).await {
        tracing::warn!(error = %e, "LISTEN failed; subscribers will poll");
        return;
    }
    let weak = store.downgrade();
    tokio::spawn(async move {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await;
            let Some(store) = weak.upgrade() else { return };
            match next {
                Ok(Ok(Some(notification))) => {
                    if let Ok(p) = notification.payload().parse::<u64>() {
                        store.advance_head(Position(p));
                    }
                }
                Ok(Ok(None)) => {} // the connection was lost and is re-established
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(_) => {} // quiet second: check the store is still alive
            }
        }
    });
}
