//! What `#[aggregate]` rejects, and the checked model expand works from.

use std::collections::HashMap;

use quote::ToTokens;

use super::ast::AggregateInput;
use crate::ctxt::Ctxt;
use crate::method::{self, Method, Receiver};
use crate::util::{replace_self, type_text};

/// A parameter of a command handler after the command.
pub(crate) enum HandlerParam {
    /// `name: &T`, a registered service.
    Service,
    /// `#[view] name: &T`, the view of the handler's consistency scope.
    View,
    /// `#[peer] name: &Self`, the state of the command's peer.
    Peer,
}

pub(crate) struct CheckedHandler {
    pub(crate) method: syn::Ident,
    pub(crate) is_async: bool,
    pub(crate) command: syn::Type,
    /// Types `T` of the `&T` service parameters.
    pub(crate) services: Vec<syn::Type>,
    /// The parameters after the command, in order.
    pub(crate) params: Vec<HandlerParam>,
    /// `Stream`, `Category` or `Log`: the variant of `Consistency`.
    pub(crate) consistency: syn::Ident,
    /// The view's type, if the handler takes one.
    pub(crate) view: Option<syn::Type>,
    /// The `#[peer]` parameter's type, if the handler takes one.
    pub(crate) peer: Option<syn::Type>,
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
        let Some(checked) = check_handler(cx, handler, &input.self_ty) else {
            continue;
        };
        let key = type_text(&checked.command);
        if let Some(first) = commands.get(&key) {
            cx.error_spanned(
                &checked.command,
                format_args!("command `{key}` is already handled by `{first}`; each command has exactly one handler"),
            );
        } else {
            commands.insert(key, checked.method.clone());
            handlers.push(checked);
        }
    }
    let mut appliers = Vec::new();
    let mut events: HashMap<String, syn::Ident> = HashMap::new();
    for applier in &input.appliers {
        let Some(checked) = check_applier(cx, applier, &input.self_ty) else {
            continue;
        };
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
    Some(Model {
        krate: input.args.krate.clone(),
        self_ty: input.self_ty.clone(),
        name,
        state_version,
        handlers,
        appliers,
    })
}

/// `#[handles_command]` or `#[handles_command(consistency = stream | category | log)]`:
/// the variant of `Consistency`, `None` after an error.
fn consistency(cx: &mut Ctxt, handler: &Method) -> Option<syn::Ident> {
    let default = syn::Ident::new("Stream", handler.sig.ident.span());
    let syn::Meta::List(list) = &handler.attr.meta else {
        if let syn::Meta::NameValue(nv) = &handler.attr.meta {
            cx.error_spanned(nv, "write `#[handles_command(consistency = category)]`");
            return None;
        }
        return Some(default);
    };
    let mut found: Option<syn::Ident> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("consistency") {
            if found.is_some() {
                return Err(crate::util::duplicate(&meta, "consistency"));
            }
            let value: syn::Ident = meta.value()?.parse()?;
            let variant = match value.to_string().as_str() {
                "stream" => "Stream",
                "category" => "Category",
                "log" => "Log",
                other => {
                    return Err(syn::Error::new(
                        value.span(),
                        format!("unknown consistency `{other}`; expected `stream` (the default), `category` or `log`"),
                    ));
                }
            };
            found = Some(syn::Ident::new(variant, value.span()));
            Ok(())
        } else {
            Err(crate::util::unknown_argument(
                &meta,
                "handles_command",
                &["consistency"],
            ))
        }
    });
    match syn::parse::Parser::parse2(parser, list.tokens.clone()) {
        Ok(()) => Some(found.unwrap_or(default)),
        Err(e) => {
            cx.syn_error(e);
            None
        }
    }
}

/// Whether a parameter is marked `#[view]`.
pub(crate) fn is_view(param: &syn::PatType) -> bool {
    param.attrs.iter().any(|a| a.path().is_ident("view"))
}

/// Whether a parameter is marked `#[peer]`.
pub(crate) fn is_peer(param: &syn::PatType) -> bool {
    param.attrs.iter().any(|a| a.path().is_ident("peer"))
}

fn check_handler(cx: &mut Ctxt, handler: &Method, self_ty: &syn::Type) -> Option<CheckedHandler> {
    let consistency = consistency(cx, handler);
    let sig = &handler.sig;
    let ident = &sig.ident;
    let mut ok = method::expect_receiver(
        cx,
        handler,
        Receiver::Ref,
        "command handler",
        "fn NAME(&self, command: MyCommand)",
        "handlers decide, `#[applies_event]` methods change the state",
    );
    ok &= method::not_generic(cx, handler, "command handler");
    let mut params = handler.params.iter();
    let command = match params.next() {
        None => {
            cx.error_spanned(
                &sig.inputs,
                format_args!(
                    "command handler `{ident}` takes the command after `&self`: `fn {ident}(&self, command: MyCommand)`"
                ),
            );
            None
        }
        Some(p) => match &*p.ty {
            syn::Type::Reference(r) => {
                cx.error_spanned(
                    &p.ty,
                    format_args!(
                        "take the command by value: `{}: {}`",
                        p.pat.to_token_stream(),
                        type_text(&r.elem)
                    ),
                );
                None
            }
            syn::Type::ImplTrait(_) => {
                cx.error_spanned(&p.ty, "the command parameter needs a concrete command type");
                None
            }
            ty => Some(ty.clone()),
        },
    };
    let mut services = Vec::new();
    let mut all = Vec::new();
    let mut view: Option<syn::Type> = None;
    let mut marked_view = false;
    let mut peer: Option<syn::Type> = None;
    for p in params {
        if is_peer(p) {
            if method::shared_ref_target(&p.ty).is_none() {
                cx.error_spanned(
                    &p.ty,
                    format_args!(
                        "take the peer's state by shared reference: `{}: &Self`",
                        p.pat.to_token_stream()
                    ),
                );
                ok = false;
                continue;
            }
            if peer.is_some() {
                cx.error_spanned(
                    p,
                    "a command has at most one peer (its `#[peer_id]` field); remove this parameter",
                );
                ok = false;
                continue;
            }
            peer = Some((*p.ty).clone());
            all.push(HandlerParam::Peer);
            continue;
        }
        if is_view(p) {
            marked_view = true;
            let Some(target) = method::shared_ref_target(&p.ty) else {
                cx.error_spanned(
                    &p.ty,
                    format_args!(
                        "take the view by shared reference: `{}: &{}`",
                        p.pat.to_token_stream(),
                        type_text(&p.ty)
                    ),
                );
                ok = false;
                continue;
            };
            if view.is_some() {
                cx.error_spanned(
                    p,
                    "a handler reads one view: fold everything the decision needs into one `#[projection]`",
                );
                ok = false;
                continue;
            }
            let mut ty = target.clone();
            replace_self(&mut ty, self_ty);
            view = Some(ty);
            all.push(HandlerParam::View);
            continue;
        }
        match method::shared_ref_target(&p.ty) {
            Some(target) => {
                let mut ty = target.clone();
                replace_self(&mut ty, self_ty);
                services.push(ty);
                all.push(HandlerParam::Service);
            }
            None => {
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
            if method::contains_impl_trait(ty) {
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
    let command = command?;
    let consistency = consistency?;
    let scoped = consistency != "Stream";
    match (&view, scoped) {
        (None, true) if !marked_view => {
            let scope = if consistency == "Log" { "log" } else { "category" };
            cx.error_spanned(
                &handler.attr,
                format_args!(
                    "`consistency = {scope}` decides on a view of the {scope}: add a parameter `#[view] name: &MyView`, a `#[projection]` folded from its events"
                ),
            );
            ok = false;
        }
        (Some(ty), false) => {
            cx.error_spanned(
                ty,
                "a view is read under a wider consistency: write `#[handles_command(consistency = category)]` (the view folds every stream of this aggregate type) or `consistency = log` (every event)",
            );
            ok = false;
        }
        _ => {}
    }
    ok.then(|| CheckedHandler {
        method: ident.clone(),
        is_async: sig.asyncness.is_some(),
        command,
        services,
        params: all,
        consistency,
        view,
        peer,
        ret,
    })
}

fn check_applier(cx: &mut Ctxt, applier: &Method, self_ty: &syn::Type) -> Option<CheckedApplier> {
    method::no_arguments(cx, applier);
    let sig = &applier.sig;
    let ident = &sig.ident;
    let mut ok = method::expect_receiver(
        cx,
        applier,
        Receiver::RefMut,
        "event applier",
        "fn NAME(&mut self, event: &MyEvent)",
        "it folds the event into the state",
    );
    ok &= method::not_generic(cx, applier, "event applier");
    if let Some(asyncness) = &sig.asyncness {
        cx.error_spanned(
            asyncness,
            "an event applier cannot be `async`: applying an event only changes the state",
        );
        ok = false;
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        cx.error_spanned(
            ty,
            "an event applier returns nothing; it cannot fail, so validate in the command handler",
        );
        ok = false;
    }
    let event = method::event_param(
        cx,
        &applier.params,
        ident,
        "event applier",
        "fn NAME(&mut self, event: &MyEvent)",
        1,
    )?;
    let mut event = event;
    replace_self(&mut event, self_ty);
    ok.then(|| CheckedApplier {
        method: ident.clone(),
        event,
    })
}
