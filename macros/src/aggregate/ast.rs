//! The typed form of an `#[aggregate]` impl block.

use proc_macro2::{Span, TokenStream};

use crate::ctxt::Ctxt;
use crate::method::{self, Method};
use crate::util;

pub(crate) struct AggregateArgs {
    pub(crate) name: Option<syn::LitStr>,
    pub(crate) state_version: Option<(u32, Span)>,
    pub(crate) krate: syn::Path,
}

const ARGUMENTS: &[&str] = &["name", "state_version", "crate"];

impl AggregateArgs {
    pub(crate) fn parse(cx: &mut Ctxt, args: TokenStream) -> Self {
        let mut parsed = AggregateArgs {
            name: None,
            state_version: None,
            krate: util::default_crate(),
        };
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                if parsed.name.is_some() {
                    return Err(util::duplicate(&meta, "name"));
                }
                parsed.name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("state_version") {
                if parsed.state_version.is_some() {
                    return Err(util::duplicate(&meta, "state_version"));
                }
                let lit: syn::LitInt = meta.value()?.parse()?;
                let value = lit
                    .base10_parse::<u32>()
                    .map_err(|_| syn::Error::new_spanned(&lit, "the state version is a whole number from 1"))?;
                parsed.state_version = Some((value, lit.span()));
            } else if meta.path.is_ident("crate") {
                parsed.krate = util::parse_crate_path(&meta)?;
            } else {
                return Err(util::unknown_argument(&meta, "aggregate", ARGUMENTS));
            }
            Ok(())
        });
        if let Err(e) = syn::parse::Parser::parse2(parser, args) {
            cx.syn_error(e);
        }
        parsed
    }
}

pub(crate) struct AggregateInput {
    pub(crate) args: AggregateArgs,
    pub(crate) item_span: Span,
    pub(crate) self_ty: syn::Type,
    pub(crate) handlers: Vec<Method>,
    pub(crate) appliers: Vec<Method>,
}

impl AggregateInput {
    /// Parses the impl block; returns it too, without the helper attributes.
    pub(crate) fn from_syn(cx: &mut Ctxt, args: AggregateArgs, mut item: syn::ItemImpl) -> (Self, syn::ItemImpl) {
        method::check_impl_block(cx, &item, "aggregate", "an aggregate");
        let marked = method::take_marked(cx, &mut item, &["handles_command", "applies_event"]);
        let (handlers, appliers) = marked.into_iter().partition(|m| m.role == "handles_command");
        // `#[view]` on a handler's parameter is read from the marked
        // methods; the emitted impl block must not keep it.
        for impl_item in &mut item.items {
            if let syn::ImplItem::Fn(method) = impl_item {
                for input in &mut method.sig.inputs {
                    if let syn::FnArg::Typed(param) = input {
                        param
                            .attrs
                            .retain(|a| !a.path().is_ident("view") && !a.path().is_ident("peer"));
                    }
                }
            }
        }
        let parsed = AggregateInput {
            args,
            item_span: item.impl_token.span,
            self_ty: (*item.self_ty).clone(),
            handlers,
            appliers,
        };
        (parsed, item)
    }
}
