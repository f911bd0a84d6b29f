//! Typed interceptors: checks and changes of one command (or query) type
//! before it enters the stack. Stored per type; users see only their own
//! types.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::command::HandledCommand;
use crate::pipeline::middleware::CommandContext;
use crate::processes::projection::HandledQuery;

/// Why an interceptor refused a command or a query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

impl Rejection {
    /// A rejection with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// A query on its way to its projection, as interceptors see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryContext {
    /// The query's Rust type name.
    pub query: &'static str,
    /// The projection that answers it.
    pub projection: &'static str,
}

type CommandInterceptor<C> = Arc<dyn Fn(&mut C, &mut CommandContext) -> Result<(), Rejection> + Send + Sync>;
type QueryInterceptor<Q> = Arc<dyn Fn(&Q, &QueryContext) -> Result<(), Rejection> + Send + Sync>;
type AnyQueryInterceptor = Arc<dyn Fn(&QueryContext) -> Result<(), Rejection> + Send + Sync>;

/// The command interceptors, per command type (each entry holds a
/// `Vec<CommandInterceptor<C>>` for its `C`).
#[derive(Default)]
pub(crate) struct CommandInterceptors {
    by_type: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl CommandInterceptors {
    pub(crate) fn add<C: HandledCommand>(
        &mut self,
        interceptor: impl Fn(&mut C, &mut CommandContext) -> Result<(), Rejection> + Send + Sync + 'static,
    ) {
        let list = self
            .by_type
            .entry(TypeId::of::<C>())
            .or_insert_with(|| Box::new(Vec::<CommandInterceptor<C>>::new()));
        if let Some(list) = list.downcast_mut::<Vec<CommandInterceptor<C>>>() {
            list.push(Arc::new(interceptor));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// Runs the interceptors of `C`, in the order they were added.
    pub(crate) fn run<C: HandledCommand>(&self, command: &mut C, ctx: &mut CommandContext) -> Result<(), Rejection> {
        let Some(list) = self
            .by_type
            .get(&TypeId::of::<C>())
            .and_then(|l| l.downcast_ref::<Vec<CommandInterceptor<C>>>())
        else {
            return Ok(());
        };
        list.iter().try_for_each(|interceptor| interceptor(command, ctx))
    }
}

enum QueryEntry {
    /// A `QueryInterceptor<Q>` for the query type.
    Typed(TypeId, Box<dyn Any + Send + Sync>),
    All(AnyQueryInterceptor),
}

/// The query interceptors, in the order they were added.
#[derive(Default)]
pub(crate) struct QueryInterceptors {
    entries: Vec<QueryEntry>,
}

impl QueryInterceptors {
    pub(crate) fn add<Q: HandledQuery>(
        &mut self,
        interceptor: impl Fn(&Q, &QueryContext) -> Result<(), Rejection> + Send + Sync + 'static,
    ) {
        let typed: QueryInterceptor<Q> = Arc::new(interceptor);
        self.entries.push(QueryEntry::Typed(TypeId::of::<Q>(), Box::new(typed)));
    }

    pub(crate) fn add_all(
        &mut self,
        interceptor: impl Fn(&QueryContext) -> Result<(), Rejection> + Send + Sync + 'static,
    ) {
        self.entries.push(QueryEntry::All(Arc::new(interceptor)));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs every interceptor that applies to `Q`.
    pub(crate) fn run<Q: HandledQuery>(&self, query: &Q, ctx: &QueryContext) -> Result<(), Rejection> {
        for entry in &self.entries {
            match entry {
                QueryEntry::All(interceptor) => interceptor(ctx)?,
                QueryEntry::Typed(id, interceptor) if *id == TypeId::of::<Q>() => {
                    if let Some(interceptor) = interceptor.downcast_ref::<QueryInterceptor<Q>>() {
                        interceptor(query, ctx)?;
                    }
                }
                QueryEntry::Typed(..) => {}
            }
        }
        Ok(())
    }
}
