//! The application as one tenant sees it.

use std::sync::Arc;

use super::{Application, CommandLayer};
use crate::domain::aggregate::{Aggregate, Loaded};
use crate::domain::command::HandledCommand;
use crate::domain::ids::{AggregateId, TenantId};
use crate::pipeline::error::{CommandError, LoadError};
use crate::pipeline::options::{AsOf, DispatchOptions, Dispatched};
use crate::store::TenantStore;

/// One tenant's handle on a shared application, from
/// [`Application::tenant`]: its commands target the tenant's instances
/// (their streams carry the tenant), its loads and reads see the tenant's
/// streams only. Commands with a category or log consistency decide on the
/// tenant's category or log; a peer is the tenant's too.
///
/// Projections see every tenant unless configured for one
/// (`SubscriberConfig::tenant`); sagas keep one instance per tenant and
/// key, and dispatch into the tenant of the event that started them.
#[derive(Clone)]
pub struct TenantHandle<'a, L> {
    app: &'a Application<L>,
    tenant: TenantId,
}

impl<L> std::fmt::Debug for TenantHandle<'_, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantHandle")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl<L: 'static> Application<L> {
    /// The application as `tenant` sees it.
    #[must_use]
    pub fn tenant(&self, tenant: TenantId) -> TenantHandle<'_, L> {
        TenantHandle { app: self, tenant }
    }
}

impl<L: 'static> TenantHandle<'_, L> {
    /// The tenant.
    #[must_use]
    pub fn id(&self) -> &TenantId {
        &self.tenant
    }

    /// [`Application::dispatch`] to the tenant's instance.
    ///
    /// # Errors
    ///
    /// As [`Application::dispatch`].
    pub async fn dispatch<C>(&self, command: C) -> Result<C::Output, CommandError<C::Error>>
    where
        C: HandledCommand,
        L: CommandLayer<C>,
    {
        self.dispatch_with(command, DispatchOptions::new())
            .await
            .map(|d| d.output)
    }

    /// [`Application::dispatch_with`] to the tenant's instance (the
    /// options' tenant is this one, whatever they said).
    ///
    /// # Errors
    ///
    /// As [`Application::dispatch`].
    pub async fn dispatch_with<C>(
        &self,
        command: C,
        options: DispatchOptions,
    ) -> Result<Dispatched<C::Output>, CommandError<C::Error>>
    where
        C: HandledCommand,
        L: CommandLayer<C>,
    {
        self.app
            .dispatch_with(command, options.tenant(self.tenant.clone()))
            .await
    }

    /// [`Application::load`] of the tenant's instance.
    ///
    /// # Errors
    ///
    /// As [`Application::load`].
    pub async fn load<A: Aggregate>(&self, id: &(impl AggregateId + ?Sized)) -> Result<Loaded<A>, LoadError> {
        self.app.load_in::<A>(Some(&self.tenant), id).await
    }

    /// [`Application::load_as_of`] of the tenant's instance.
    ///
    /// # Errors
    ///
    /// As [`Application::load`].
    pub async fn load_as_of<A: Aggregate>(
        &self,
        id: &(impl AggregateId + ?Sized),
        as_of: impl Into<AsOf>,
    ) -> Result<Loaded<A>, LoadError> {
        self.app.load_as_of_in::<A>(Some(&self.tenant), id, as_of.into()).await
    }

    /// The event store as the tenant sees it: its streams, categories and
    /// log only (see [`TenantStore`]); rewrites go through the
    /// application's store view.
    #[must_use]
    pub fn event_store(&self) -> TenantStore {
        TenantStore::new(Arc::clone(self.app.event_store()), self.tenant.clone())
    }
}
