//! Methods marked with a role attribute inside an impl-block macro
//! (`#[handles_command]`, `#[handles_event]`, `#[saga_step]` ...), and the
//! checks every impl-block macro shares.

use quote::ToTokens;

use crate::util::type_text;

use crate::ctxt::Ctxt;

/// The receiver of a method, as written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receiver {
    None,
    Ref,
    RefMut,
    Value,
}

/// A method marked with one of the macro's role attributes.
pub(crate) struct Method {
    /// The role attribute's name.
    pub(crate) role: &'static str,
    /// The role attribute (for its arguments and span).
    pub(crate) attr: syn::Attribute,
    pub(crate) sig: syn::Signature,
    pub(crate) receiver: Receiver,
    /// The typed parameters after the receiver.
    pub(crate) params: Vec<syn::PatType>,
}

/// Removes the `roles` attributes from the impl block's methods and returns
/// the marked methods. Two roles on one method is an error.
pub(crate) fn take_marked(cx: &mut Ctxt, item: &mut syn::ItemImpl, roles: &[&'static str]) -> Vec<Method> {
    let mut marked = Vec::new();
    for impl_item in &mut item.items {
        let syn::ImplItem::Fn(method) = impl_item else { continue };
        let mut found: Option<(&'static str, syn::Attribute)> = None;
        let mut duplicate = None;
        method.attrs.retain(|attr| {
            let Some(last) = attr.path().segments.last() else {
                return true;
            };
            let Some(role) = roles.iter().copied().find(|r| last.ident == r) else {
                return true;
            };
            if found.is_some() {
                duplicate = Some(attr.clone());
            } else {
                found = Some((role, attr.clone()));
            }
            false
        });
        if let Some(attr) = duplicate {
            let list = roles.iter().map(|r| format!("`#[{r}]`")).collect::<Vec<_>>().join(", ");
            cx.error_spanned(attr, format_args!("a method takes one of {list}, not two"));
        }
        if let Some((role, attr)) = found {
            let (receiver, params) = split_inputs(&method.sig);
            marked.push(Method {
                role,
                attr,
                sig: method.sig.clone(),
                receiver,
                params,
            });
        }
    }
    marked
}

/// Reports arguments on a role attribute that takes none.
pub(crate) fn no_arguments(cx: &mut Ctxt, method: &Method) {
    if !matches!(method.attr.meta, syn::Meta::Path(_)) {
        cx.error_spanned(&method.attr, format_args!("`#[{}]` takes no arguments", method.role));
    }
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

/// The tokens of the receiver, or the method name when there is none.
pub(crate) fn receiver_tokens(sig: &syn::Signature) -> proc_macro2::TokenStream {
    match sig.inputs.first() {
        Some(syn::FnArg::Receiver(r)) => r.to_token_stream(),
        _ => sig.ident.to_token_stream(),
    }
}

/// Checks the method has the receiver `want`; `what` names the method's role
/// ("command handler"), `signature` is a correct one (`NAME` stands for the
/// method's name), `why` explains the receiver.
pub(crate) fn expect_receiver(
    cx: &mut Ctxt,
    method: &Method,
    want: Receiver,
    what: &str,
    signature: &str,
    why: &str,
) -> bool {
    if method.receiver == want {
        return true;
    }
    let ident = &method.sig.ident;
    let wanted = if want == Receiver::RefMut { "&mut self" } else { "&self" };
    match method.receiver {
        Receiver::None => {
            let signature = signature.replace("NAME", &ident.to_string());
            cx.error_spanned(ident, format_args!("{what} `{ident}` needs a receiver: `{signature}`"));
        }
        Receiver::Ref | Receiver::RefMut | Receiver::Value => {
            let written = match method.receiver {
                Receiver::Ref => "&self",
                Receiver::RefMut => "&mut self",
                _ => "self",
            };
            cx.error_spanned(
                receiver_tokens(&method.sig),
                format_args!("{what} `{ident}` takes `{wanted}`, not `{written}`: {why}"),
            );
        }
    }
    false
}

/// Rejects generic methods.
pub(crate) fn not_generic(cx: &mut Ctxt, method: &Method, what: &str) -> bool {
    if method.sig.generics.params.is_empty() {
        return true;
    }
    cx.error_spanned(&method.sig.generics, format_args!("a {what} cannot be generic"));
    false
}

/// The checks every impl-block macro makes on the block itself.
pub(crate) fn check_impl_block(cx: &mut Ctxt, item: &syn::ItemImpl, attribute: &str, what: &str) {
    if let Some((_, path, _)) = &item.trait_ {
        cx.error_spanned(
            path,
            format_args!(
                "`#[{attribute}]` goes on an inherent impl block (`impl MyType {{ ... }}`), not on a trait impl"
            ),
        );
    }
    if !item.generics.params.is_empty() {
        cx.error_spanned(&item.generics, format_args!("{what} cannot be generic"));
    }
}

/// `&T` → `T`; anything else → `None`.
pub(crate) fn shared_ref_target(ty: &syn::Type) -> Option<&syn::Type> {
    match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => Some(&r.elem),
        _ => None,
    }
}

/// Whether a type mentions `impl Trait`.
pub(crate) fn contains_impl_trait(ty: &syn::Type) -> bool {
    fn walk(tokens: proc_macro2::TokenStream) -> bool {
        tokens.into_iter().any(|t| match t {
            proc_macro2::TokenTree::Ident(i) => i == "impl",
            proc_macro2::TokenTree::Group(g) => walk(g.stream()),
            _ => false,
        })
    }
    walk(ty.to_token_stream())
}

/// The `&Event` first parameter of an applier or event handler, with at
/// most `max` parameters in all.
pub(crate) fn event_param(
    cx: &mut Ctxt,
    params: &[syn::PatType],
    ident: &syn::Ident,
    what: &str,
    example: &str,
    max: usize,
) -> Option<syn::Type> {
    let example = example.replace("NAME", &ident.to_string());
    let Some(first) = params.first() else {
        cx.error_spanned(
            ident,
            format_args!("{what} `{ident}` takes the event after the receiver: `{example}`"),
        );
        return None;
    };
    for extra in params.iter().skip(max) {
        cx.error_spanned(
            extra,
            format_args!("{what} `{ident}` takes no more parameters; remove this one: `{example}`"),
        );
    }
    match shared_ref_target(&first.ty) {
        Some(target) if params.len() <= max => Some(target.clone()),
        Some(_) => None,
        None => {
            let written = match &*first.ty {
                syn::Type::Reference(r) => &*r.elem,
                other => other,
            };
            cx.error_spanned(
                &first.ty,
                format_args!(
                    "{what} `{ident}` takes the event by reference: `{}: &{}`",
                    first.pat.to_token_stream(),
                    type_text(written)
                ),
            );
            None
        }
    }
}
