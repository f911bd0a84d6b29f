//! The application's copies of the views its command handlers decide on:
//! one per view type and scope, folded from the scope's events and brought
//! up to its last event before each command that reads it (only the events
//! after those folded before are read).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use super::error::LoadError;
use crate::domain::event::{EventDecodeError, EventSet};
use crate::domain::ids::{Position, StreamId};
use crate::domain::meta::EventMeta;
use crate::domain::unwind::catch_panic_sync;
use crate::domain::view::View;
use crate::store::{EventStore, Scan, ScanPages, Scope};

/// A slot of some view type, by its type id and scope.
type Slots = HashMap<(TypeId, Scope), Arc<dyn Any + Send + Sync>, foldhash::fast::RandomState>;

/// Every view of the application, by type and scope.
#[derive(Default)]
pub(crate) struct Views {
    slots: parking_lot::Mutex<Slots>,
}

/// One view, locked while a command decides on it and appends.
pub(crate) struct Slot<V> {
    state: tokio::sync::Mutex<Caught<V>>,
}

/// A view and how far into its scope it has folded.
pub(crate) struct Caught<V> {
    /// The state.
    pub(crate) view: V,
    /// The position of the scope's last event read (folded or skipped):
    /// the decision's "unchanged since".
    pub(crate) position: Position,
}

impl<V: Default> Default for Caught<V> {
    fn default() -> Self {
        Self {
            view: V::default(),
            position: Position::START,
        }
    }
}

impl Views {
    /// The slot of view `V` over `scope`, made on first use.
    pub(crate) fn slot<V: View + Default>(&self, scope: &Scope) -> Arc<Slot<V>> {
        let key = (TypeId::of::<V>(), scope.clone());
        let mut slots = self.slots.lock();
        let any = slots.entry(key).or_insert_with(|| {
            Arc::new(Slot::<V> {
                state: tokio::sync::Mutex::new(Caught::default()),
            })
        });
        // The key holds `V`'s type id: the downcast cannot fail, but a
        // slot of another type would be replaced rather than trusted.
        match Arc::clone(any).downcast::<Slot<V>>() {
            Ok(slot) => slot,
            Err(_) => {
                let slot = Arc::new(Slot::<V> {
                    state: tokio::sync::Mutex::new(Caught::default()),
                });
                *any = Arc::clone(&slot) as Arc<dyn Any + Send + Sync>;
                slot
            }
        }
    }
}

impl Views {
    /// Forgets every view that folded `stream`'s events (of its category,
    /// and of the log), after one of them was rewritten: the next command
    /// rebuilds them from the start of their scope.
    pub(crate) fn forget(&self, stream: &StreamId) {
        self.slots.lock().retain(|(_, scope), _| !scope.contains(stream));
    }
}

impl<V: View + Default> Slot<V> {
    /// Locks the view and folds the events of `scope` written since it
    /// last did. Events the view does not handle are skipped.
    ///
    /// # Errors
    ///
    /// The store's, or a stored event the view cannot decode or whose
    /// handler panics: the view then starts again from nothing next time
    /// (a half-folded view is never decided on).
    pub(crate) async fn catch_up(
        &self,
        store: &dyn EventStore,
        scope: &Scope,
    ) -> Result<tokio::sync::MutexGuard<'_, Caught<V>>, LoadError> {
        let mut caught = self.state.lock().await;
        let scan = Scan::of(scope.clone()).between(Bound::Excluded(caught.position), Bound::Unbounded);
        let mut pages = ScanPages::new(store, scan);
        loop {
            let page = match pages.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                // What was folded so far is whole: keep it.
                Err(e) => return Err(e.into()),
            };
            for event in page {
                let decoded = match V::Event::decode(&event.name, event.schema_version, &event.payload) {
                    Ok(decoded) => decoded,
                    Err(EventDecodeError::UnknownEvent { .. }) => {
                        caught.position = event.position;
                        continue;
                    }
                    Err(source) => {
                        *caught = Caught::default();
                        return Err(LoadError::ViewDecode {
                            view: std::any::type_name::<V>(),
                            event: event.name.to_string(),
                            position: event.position,
                            source,
                        });
                    }
                };
                let meta = EventMeta::of(&event);
                let view = &mut caught.view;
                if let Err(message) = catch_panic_sync(|| view.fold(decoded, &meta)) {
                    *caught = Caught::default();
                    return Err(LoadError::ViewPanicked {
                        view: std::any::type_name::<V>(),
                        event: event.name.to_string(),
                        position: event.position,
                        message,
                    });
                }
                caught.position = event.position;
            }
        }
        Ok(caught)
    }
}
