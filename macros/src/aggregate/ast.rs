//! The typed form of an `#[aggregate]` impl block.

use proc_macro2::{Span, TokenStream};

use crate::ctxt::Ctxt;
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
                let value = lit.base10_parse::<u32>().map_err(|_| {
                    syn::Error::new_spanned(&lit, "the state version is a whole number from 1")
                })?;
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

/// The receiver of a method, as written.
pub(crate) enum Receiver {
    None,
    Ref,
    RefMut,
    Value,
}

/// A method marked `#[handles_command]`.
pub(crate) struct Handler {
    pub(crate) sig: syn::Signature,
    pub(crate) receiver: Receiver,
    /// The typed parameters after the receiver.
    pub(crate) params: Vec<syn::PatType>,
}

/// A method marked `#[applies_event]`.
pub(crate) struct Applier {
    pub(crate) sig: syn::Signature,
    pub(crate) receiver: Receiver,
    pub(crate) params: Vec<syn::PatType>,
}

pub(crate) struct AggregateInput {
    pub(crate) args: AggregateArgs,
    pub(crate) item_span: Span,
    pub(crate) self_ty: syn::Type,
    pub(crate) generics: syn::Generics,
    pub(crate) trait_: Option<syn::Path>,
    pub(crate) handlers: Vec<Handler>,
    pub(crate) appliers: Vec<Applier>,
}

enum Role {
    Handler,
    Applier,
}

fn role_of(cx: &mut Ctxt, attrs: &mut Vec<syn::Attribute>) -> Option<Role> {
    let mut role = None;
    attrs.retain(|attr| {
        let Some(last) = attr.path().segments.last() else {
            return true;
        };
        let found = if last.ident == "handles_command" {
            Role::Handler
        } else if last.ident == "applies_event" {
            Role::Applier
        } else {
            return true;
        };
        if !matches!(attr.meta, syn::Meta::Path(_)) {
            cx.error_spanned(attr, format_args!("`#[{}]` takes no arguments", last.ident));
        }
        if role.is_some() {
            cx.error_spanned(
                attr,
                "a method is either a `#[handles_command]` or an `#[applies_event]`, not both",
            );
        } else {
            role = Some(found);
        }
        false
    });
    role
}

fn split_inputs(sig: &syn::Signature) -> (Receiver, Vec<syn::PatType>) {
    let mut receiver = Receiver::None;
    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            syn::FnArg::Receiver(r) => {
                receiver = match (&r.reference, &r.mutability) {
                    (Some(_), None) => Receiver::Ref,
                    (Some(_), Some(_)) => Receiver::RefMut,
                    (None, _) => match &*r.ty {
                        syn::Type::Reference(t) if t.mutability.is_some() => Receiver::RefMut,
                        syn::Type::Reference(_) => Receiver::Ref,
                        _ => Receiver::Value,
                    },
                };
            }
            syn::FnArg::Typed(t) => params.push(t.clone()),
        }
    }
    (receiver, params)
}

impl AggregateInput {
    /// Parses the impl block; returns it too, without the helper attributes.
    pub(crate) fn from_syn(
        cx: &mut Ctxt,
        args: AggregateArgs,
        mut item: syn::ItemImpl,
    ) -> (Self, syn::ItemImpl) {
        let mut handlers = Vec::new();
        let mut appliers = Vec::new();
        for impl_item in &mut item.items {
            let syn::ImplItem::Fn(method) = impl_item else {
                continue;
            };
            match role_of(cx, &mut method.attrs) {
                None => {}
                Some(Role::Handler) => {
                    let (receiver, params) = split_inputs(&method.sig);
                    handlers.push(Handler {
                        sig: method.sig.clone(),
                        receiver,
                        params,
                    });
                }
                Some(Role::Applier) => {
                    let (receiver, params) = split_inputs(&method.sig);
                    appliers.push(Applier {
                        sig: method.sig.clone(),
                        receiver,
                        params,
                    });
                }
            }
        }
        let parsed = AggregateInput {
            args,
            item_span: item.impl_token.span,
            self_ty: (*item.self_ty).clone(),
            generics: item.generics.clone(),
            trait_: item.trait_.as_ref().map(|(_, path, _)| path.clone()),
            handlers,
            appliers,
        };
        (parsed, item)
    }
}
