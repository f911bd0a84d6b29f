//! The one boxed-future alias, for traits used as trait objects.

use std::future::Future;
use std::pin::Pin;

/// The boxed future every seam trait returns, so stores can be used as
/// trait objects (`Arc<dyn EventStore>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
