//! Services: values registered on the application and passed to handlers.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The type of one service, as required by a handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    type_id: TypeId,
    type_name: &'static str,
}

impl ServiceKey {
    /// The key of service type `T`.
    #[must_use]
    pub fn of<T: Any>() -> Self {
        Self {
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
        }
    }

    /// The Rust type name of the service.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name)
    }
}

/// A handler asked for a service that was not registered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("service `{service}` is not registered; add `.service(...)` to the application builder")]
pub struct MissingService {
    /// The missing service type.
    pub service: ServiceKey,
}

/// The registry of services, one value per type.
#[derive(Clone, Default)]
pub struct Services {
    map: HashMap<TypeId, (ServiceKey, Arc<dyn Any + Send + Sync>)>,
}

impl Services {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `value`, replacing any earlier value of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.map
            .insert(TypeId::of::<T>(), (ServiceKey::of::<T>(), Arc::new(value)));
    }

    /// The service of type `T`.
    ///
    /// # Errors
    ///
    /// [`MissingService`] when none is registered.
    pub fn get<T: Any>(&self) -> Result<&T, MissingService> {
        self.map
            .get(&TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_ref::<T>())
            .ok_or(MissingService {
                service: ServiceKey::of::<T>(),
            })
    }

    /// Whether a service with this key is registered.
    #[must_use]
    pub fn contains(&self, key: &ServiceKey) -> bool {
        self.map.contains_key(&key.type_id)
    }
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.map.values().map(|(k, _)| k.type_name))
            .finish()
    }
}
