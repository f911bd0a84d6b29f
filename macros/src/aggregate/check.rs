//! What `#[aggregate]` rejects, and the checked model expand works from.

use std::collections::HashMap;

use quote::ToTokens;

use super::ast::{AggregateInput, Applier, Handler, Receiver};
use crate::ctxt::Ctxt;
use crate::util::{replace_self, type_text};

pub(crate) struct CheckedHandler {
    pub(crate) method: syn::Ident,
    pub(crate) is_async: bool,
    pub(crate) command: syn::Type,
    /// Types `T` of the `&T` service parameters.
    pub(crate) services: Vec<syn::Type>,
    /// The return type (`()` when none is written), `Self` replaced.
    pub(crate) ret: syn::Type,
}

pub(crate) struct CheckedApplier {
    pub(crate) method: syn::Ident,
    pub(crate) event: syn::Type,
}

pub(crate) struct Model {
    pub(crate) krate: syn::Path,
    pub(crate) self_ty: syn::Type,
    pub(crate) name: String,
    pub(crate) state_version: u32,
    pub(crate) handlers: Vec<CheckedHandler>,
    pub(crate) appliers: Vec<CheckedApplier>,
}

pub(crate) fn check(cx: &mut Ctxt, input: &AggregateInput) -> Option<Model> {
    if let Some(path) = &input.trait_ {
        cx.error_spanned(
            path,
            "`#[aggregate]` goes on an inherent impl block (`impl MyAggregate { ... }`), not on a trait impl",
        );
    }
    if !input.generics.params.is_empty() {
        cx.error_spanned(
            &input.generics,
            "an aggregate cannot be generic: its streams are stored under one name",
        );
    }
    let name = match &input.args.name {
        None => {
            cx.error_at(
                input.item_span,
                "missing aggregate name; write `#[aggregate(name = \"...\")]` with a name that stays stable when the type is renamed",
            );
            String::new()
        }
        Some(lit) if lit.value().trim().is_empty() => {
            cx.error_spanned(lit, "the aggregate name cannot be empty");
            String::new()
        }
        Some(lit) => lit.value(),
    };
    let state_version = match input.args.state_version {
        Some((0, span)) => {
            cx.error_at(span, "state versions start at 1");
            1
        }
        Some((v, _)) => v,
        None => 1,
    };

    let mut handlers = Vec::new();
    let mut commands: HashMap<String, syn::Ident> = HashMap::new();
    for handler in &input.handlers {
        if let Some(checked) = check_handler(cx, handler, &input.self_ty) {
            let key = type_text(&checked.command);
            if let Some(first) = commands.get(&key) {
                cx.error_spanned(
                    &checked.command,
                    format_args!(
                        "command `{key}` is already handled by `{first}`; each command has exactly one handler"
                    ),
                );
            } else {
                commands.insert(key, checked.method.clone());
                handlers.push(checked);
            }
        }
    }
    let mut appliers = Vec::new();
    let mut events: HashMap<String, syn::Ident> = HashMap::new();
    for applier in &input.appliers {
        if let Some(checked) = check_applier(cx, applier, &input.self_ty) {
            let key = type_text(&checked.event);
            if let Some(first) = events.get(&key) {
                cx.error_spanned(
                    &checked.event,
                    format_args!("event `{key}` is already applied by `{first}`; each event has exactly one applier"),
                );
            } else {
                events.insert(key, checked.method.clone());
                appliers.push(checked);
            }
        }
    }
    Some(Model {
        krate: input.args.krate.clone(),
        self_ty: input.self_ty.clone(),
        name,
        state_version,
        handlers,
        appliers,
    })
}

fn check_handler(cx: &mut Ctxt, handler: &Handler, self_ty: &syn::Type) -> Option<CheckedHandler> {
    let sig = &handler.sig;
    let ident = &sig.ident;
    let mut ok = true;
    match handler.receiver {
        Receiver::Ref => {}
        Receiver::RefMut => {
            cx.error_spanned(
                receiver_tokens(sig),
                format_args!(
                    "command handler `{ident}` takes `&self`, not `&mut self`: handlers decide, `#[applies_event]` methods change the state"
                ),
            );
            ok = false;
        }
        Receiver::Value => {
            cx.error_spanned(
                receiver_tokens(sig),
                format_args!("command handler `{ident}` takes `&self`, not `self`"),
            );
            ok = false;
        }
        Receiver::None => {
            cx.error_spanned(
                ident,
                format_args!("command handler `{ident}` needs a receiver: `fn {ident}(&self, command: MyCommand)`"),
            );
            ok = false;
        }
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned(&sig.generics, "a command handler cannot be generic");
        ok = false;
    }
    let mut params = handler.params.iter();
    let command = match params.next() {
        None => {
            cx.error_spanned(
                &sig.inputs,
                format_args!(
                    "command handler `{ident}` takes the command after `&self`: `fn {ident}(&self, command: MyCommand)`"
                ),
            );
            ok = false;
            None
        }
        Some(p) => match &*p.ty {
            syn::Type::Reference(r) => {
                let inner = &r.elem;
                cx.error_spanned(
                    &p.ty,
                    format_args!(
                        "take the command by value: `{}: {}`",
                        p.pat.to_token_stream(),
                        type_text(inner)
                    ),
                );
                ok = false;
                None
            }
            syn::Type::ImplTrait(_) => {
                cx.error_spanned(&p.ty, "the command parameter needs a concrete command type");
                ok = false;
                None
            }
            ty => Some(ty.clone()),
        },
    };
    let mut services = Vec::new();
    for p in params {
        match &*p.ty {
            syn::Type::Reference(r) if r.mutability.is_none() => {
                let mut ty = (*r.elem).clone();
                replace_self(&mut ty, self_ty);
                services.push(ty);
            }
            _ => {
                cx.error_spanned(
                    &p.ty,
                    "parameters after the command are services and are taken by shared reference, such as `clock: &Clock`",
                );
                ok = false;
            }
        }
    }
    let ret = match &sig.output {
        syn::ReturnType::Default => syn::parse_quote!(()),
        syn::ReturnType::Type(_, ty) => {
            if contains_impl_trait(ty) {
                cx.error_spanned(
                    ty,
                    "a command handler names its return type: an event, a tuple or `Vec` of events, `Reply<T, E>`, or a `Result` of these",
                );
                ok = false;
            }
            let mut ty = (**ty).clone();
            replace_self(&mut ty, self_ty);
            ty
        }
    };
    ok.then(|| CheckedHandler {
        method: ident.clone(),
        is_async: sig.asyncness.is_some(),
        command: command.unwrap_or_else(|| syn::parse_quote!(())),
        services,
        ret,
    })
}

fn check_applier(cx: &mut Ctxt, applier: &Applier, self_ty: &syn::Type) -> Option<CheckedApplier> {
    let sig = &applier.sig;
    let ident = &sig.ident;
    let mut ok = true;
    match applier.receiver {
        Receiver::RefMut => {}
        Receiver::Ref | Receiver::Value => {
            cx.error_spanned(
                receiver_tokens(sig),
                format_args!(
                    "event applier `{ident}` takes `&mut self`: it folds the event into the state"
                ),
            );
            ok = false;
        }
        Receiver::None => {
            cx.error_spanned(
                ident,
                format_args!("event applier `{ident}` needs a receiver: `fn {ident}(&mut self, event: &MyEvent)`"),
            );
            ok = false;
        }
    }
    if let Some(asyncness) = &sig.asyncness {
        cx.error_spanned(
            asyncness,
            "an event applier cannot be `async`: applying an event only changes the state",
        );
        ok = false;
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned(&sig.generics, "an event applier cannot be generic");
        ok = false;
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        cx.error_spanned(
            ty,
            "an event applier returns nothing; it cannot fail, so validate in the command handler",
        );
        ok = false;
    }
    let event = match applier.params.as_slice() {
        [p] => match &*p.ty {
            syn::Type::Reference(r) if r.mutability.is_none() => {
                let mut ty = (*r.elem).clone();
                replace_self(&mut ty, self_ty);
                Some(ty)
            }
            other => {
                cx.error_spanned(
                    other,
                    format_args!(
                        "event applier `{ident}` takes the event by reference: `{}: &{}`",
                        p.pat.to_token_stream(),
                        type_text(strip_ref(other))
                    ),
                );
                None
            }
        },
        [] => {
            cx.error_spanned(
                &sig.inputs,
                format_args!(
                    "event applier `{ident}` takes one event after `&mut self`: `fn {ident}(&mut self, event: &MyEvent)`"
                ),
            );
            None
        }
        [_, rest @ ..] => {
            for p in rest {
                cx.error_spanned(
                    p,
                    format_args!(
                        "event applier `{ident}` takes exactly one event; remove this parameter"
                    ),
                );
            }
            None
        }
    };
    match event {
        Some(event) if ok => Some(CheckedApplier {
            method: ident.clone(),
            event,
        }),
        _ => None,
    }
}

fn strip_ref(ty: &syn::Type) -> &syn::Type {
    match ty {
        syn::Type::Reference(r) => &r.elem,
        other => other,
    }
}

fn receiver_tokens(sig: &syn::Signature) -> proc_macro2::TokenStream {
    match sig.inputs.first() {
        Some(syn::FnArg::Receiver(r)) => r.to_token_stream(),
        _ => sig.ident.to_token_stream(),
    }
}

fn contains_impl_trait(ty: &syn::Type) -> bool {
    let mut found = false;
    ty.to_token_stream().into_iter().for_each(|t| {
        if let proc_macro2::TokenTree::Ident(i) = &t
            && i == "impl"
        {
            found = true;
        }
    });
    found || matches!(ty, syn::Type::ImplTrait(_))
}
