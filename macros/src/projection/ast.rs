//! The typed form of a `#[projection]` impl block.

use crate::ctxt::Ctxt;
use crate::method::{self, Method};
use crate::util::NameArgs;

pub(crate) struct ProjectionInput {
    pub(crate) args: NameArgs,
    pub(crate) self_ty: syn::Type,
    pub(crate) handlers: Vec<Method>,
    pub(crate) queries: Vec<Method>,
}

impl ProjectionInput {
    pub(crate) fn from_syn(cx: &mut Ctxt, args: NameArgs, mut item: syn::ItemImpl) -> (Self, syn::ItemImpl) {
        method::check_impl_block(cx, &item, "projection", "a projection");
        let marked = method::take_marked(cx, &mut item, &["handles_event", "handles_query"]);
        let (handlers, queries) = marked.into_iter().partition(|m| m.role == "handles_event");
        (
            ProjectionInput {
                args,
                self_ty: (*item.self_ty).clone(),
                handlers,
                queries,
            },
            item,
        )
    }
}
