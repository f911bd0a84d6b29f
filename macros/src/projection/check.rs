//! What `#[projection]` rejects, and the checked model.

use std::collections::HashMap;

use quote::ToTokens;

use super::ast::ProjectionInput;
use crate::ctxt::Ctxt;
use crate::method::{self, Receiver};
use crate::util::{replace_self, type_text};

pub(crate) struct CheckedEventHandler {
    pub(crate) method: syn::Ident,
    pub(crate) is_async: bool,
    pub(crate) event: syn::Type,
    /// Whether it takes `&EventMeta` after the event.
    pub(crate) takes_meta: bool,
    /// The `T` of a last `tx: &mut T` parameter: the read model's
    /// transaction (`ProjectionConfig::transactions`).
    pub(crate) tx: Option<syn::Type>,
    /// The return type, `()` when none is written.
    pub(crate) ret: syn::Type,
}

pub(crate) struct CheckedQuery {
    pub(crate) method: syn::Ident,
    pub(crate) is_async: bool,
    pub(crate) query: syn::Type,
    pub(crate) output: syn::Type,
}

pub(crate) struct Model {
    pub(crate) krate: syn::Path,
    pub(crate) self_ty: syn::Type,
    pub(crate) name: String,
    /// `Memory` or `Durable`: the variant of `ModelStorage`.
    pub(crate) model: syn::Ident,
    pub(crate) handlers: Vec<CheckedEventHandler>,
    pub(crate) queries: Vec<CheckedQuery>,
}

pub(crate) fn check(cx: &mut Ctxt, input: &ProjectionInput) -> Option<Model> {
    let name = input.args.name_or_type(cx, &input.self_ty);
    let ty = type_text(&input.self_ty);
    let model = match &input.args.model {
        Some(m) if m == "memory" => Some(syn::Ident::new("Memory", m.span())),
        Some(m) if m == "durable" => Some(syn::Ident::new("Durable", m.span())),
        Some(m) => {
            cx.error_spanned(
                m,
                format_args!("unknown read model `{m}`; expected `memory` or `durable`"),
            );
            None
        }
        // After another error of the attribute (an unknown argument stops
        // its parsing), this one would only be a follow-on.
        None if cx.has_errors() => None,
        None => {
            cx.error_spanned(
                &input.self_ty,
                format_args!(
                    "projection `{ty}` does not say where its read model lives: add `model = memory` to `#[projection(...)]` for a model held in the value itself (rebuilt from the start of the log at every start), or `model = durable` for one written to a database (resumed from its saved checkpoint)"
                ),
            );
            None
        }
    };
    let mut handlers = Vec::new();
    let mut seen: HashMap<String, syn::Ident> = HashMap::new();
    for m in &input.handlers {
        method::no_arguments(cx, m);
        let ident = &m.sig.ident;
        let mut ok = method::expect_receiver(
            cx,
            m,
            Receiver::RefMut,
            "event handler",
            "fn NAME(&mut self, event: &MyEvent)",
            "it updates the read model",
        );
        ok &= method::not_generic(cx, m, "event handler");
        // A last `&mut T` parameter is the read model's transaction.
        let tx = match m.params.last().map(|p| &*p.ty) {
            Some(syn::Type::Reference(r)) if r.mutability.is_some() && m.params.len() > 1 => Some((*r.elem).clone()),
            _ => None,
        };
        let Some(mut event) = method::event_param(
            cx,
            &m.params,
            ident,
            "event handler",
            "fn NAME(&mut self, event: &MyEvent, meta: &EventMeta)",
            if tx.is_some() { 3 } else { 2 },
        ) else {
            continue;
        };
        replace_self(&mut event, &input.self_ty);
        let takes_meta = m.params.len() == 2 + usize::from(tx.is_some());
        if takes_meta
            && let Some(meta) = m.params.get(1)
            && method::shared_ref_target(&meta.ty).is_none()
        {
            cx.error_spanned(
                &meta.ty,
                "the second parameter of an event handler is the event's metadata: `meta: &EventMeta`",
            );
            ok = false;
        }
        let key = type_text(&event);
        if let Some(first) = seen.get(&key) {
            cx.error_spanned(
                &event,
                format_args!("event `{key}` is already handled by `{first}` in this projection"),
            );
            continue;
        }
        seen.insert(key, ident.clone());
        let ret = match &m.sig.output {
            syn::ReturnType::Default => syn::parse_quote!(()),
            syn::ReturnType::Type(_, ty) => (**ty).clone(),
        };
        if ok {
            handlers.push(CheckedEventHandler {
                method: ident.clone(),
                is_async: m.sig.asyncness.is_some(),
                event,
                takes_meta,
                tx,
                ret,
            });
        }
    }
    let mut queries = Vec::new();
    let mut seen: HashMap<String, syn::Ident> = HashMap::new();
    for m in &input.queries {
        method::no_arguments(cx, m);
        let ident = &m.sig.ident;
        let mut ok = method::expect_receiver(
            cx,
            m,
            Receiver::Ref,
            "query handler",
            "fn NAME(&self, query: MyQuery) -> Answer",
            "queries read the model, they do not change it",
        );
        ok &= method::not_generic(cx, m, "query handler");
        let query = match m.params.as_slice() {
            [q] if matches!(*q.ty, syn::Type::Reference(_)) => {
                let inner = match &*q.ty {
                    syn::Type::Reference(r) => type_text(&r.elem),
                    other => type_text(other),
                };
                cx.error_spanned(
                    &q.ty,
                    format_args!("take the query by value: `{}: {inner}`", q.pat.to_token_stream()),
                );
                continue;
            }
            [q] => (*q.ty).clone(),
            [] => {
                cx.error_spanned(
                    ident,
                    format_args!("query handler `{ident}` takes the query after `&self`: `fn {ident}(&self, query: MyQuery) -> Answer`"),
                );
                continue;
            }
            [_, rest @ ..] => {
                for extra in rest {
                    cx.error_spanned(
                        extra,
                        format_args!("query handler `{ident}` takes exactly one query; remove this parameter"),
                    );
                }
                continue;
            }
        };
        let output = match &m.sig.output {
            syn::ReturnType::Default => {
                let ident = &m.sig.ident;
                cx.error_spanned(
                    ident,
                    format_args!(
                        "query handler `{ident}` returns nothing; a query handler returns its answer: `fn {ident}(&self, query: MyQuery) -> Answer`"
                    ),
                );
                ok = false;
                continue;
            }
            syn::ReturnType::Type(_, ty) if matches!(&**ty, syn::Type::Tuple(t) if t.elems.is_empty()) => {
                cx.error_spanned(
                    ty,
                    "a query handler returns its answer, not `()`: `fn name(&self, query: MyQuery) -> Answer`",
                );
                ok = false;
                continue;
            }
            syn::ReturnType::Type(_, ty) => {
                if method::contains_impl_trait(ty) {
                    cx.error_spanned(ty, "a query handler names its answer type");
                    ok = false;
                }
                let mut ty = (**ty).clone();
                replace_self(&mut ty, &input.self_ty);
                ty
            }
        };
        let key = type_text(&query);
        if let Some(first) = seen.get(&key) {
            cx.error_spanned(
                &query,
                format_args!("query `{key}` is already answered by `{first}`; each query has exactly one handler"),
            );
            continue;
        }
        seen.insert(key, ident.clone());
        if ok {
            queries.push(CheckedQuery {
                method: ident.clone(),
                is_async: m.sig.asyncness.is_some(),
                query,
                output,
            });
        }
    }
    Some(Model {
        krate: input.args.krate.clone(),
        self_ty: input.self_ty.clone(),
        name,
        model: model?,
        handlers,
        queries,
    })
}
