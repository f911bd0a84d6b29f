//! `#[saga]` on an impl block, with `#[saga_step(start | end, key = field)]`
//! and `#[saga_deadline]` methods.

mod ast;
mod check;
mod expand;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ctxt::Ctxt;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::new();
    let args = crate::util::NameArgs::parse(&mut cx, args, "saga");
    let item = match crate::util::parse_impl_block(&mut cx, item, "saga", "#[saga] impl MyProcess { ... }") {
        Ok(item) => item,
        Err(tokens) => return tokens,
    };
    let (parsed, mut stripped) = ast::SagaInput::from_syn(&mut cx, args, item);
    typed_contexts(&mut stripped);
    let model = check::check(&mut cx, &parsed);
    let Some(model) = model.filter(|_| !cx.has_errors()) else {
        let errors = cx.into_compile_errors();
        return quote!(#errors #stripped);
    };
    let generated = expand::expand(&model);
    quote!(#stripped #generated)
}

/// `SagaContext` without generics in the signature of a method of the
/// saga becomes `SagaContext<Self>`: the context knows its saga, so that
/// scheduling a deadline the saga does not handle fails to compile.
fn typed_contexts(item: &mut syn::ItemImpl) {
    for member in &mut item.items {
        let syn::ImplItem::Fn(method) = member else { continue };
        for input in &mut method.sig.inputs {
            if let syn::FnArg::Typed(arg) = input {
                type_context(&mut arg.ty);
            }
        }
    }
}

fn type_context(ty: &mut syn::Type) {
    match ty {
        syn::Type::Reference(r) => type_context(&mut r.elem),
        syn::Type::Path(p) if p.qself.is_none() => {
            if let Some(last) = p.path.segments.last_mut()
                && last.ident == "SagaContext"
                && last.arguments.is_none()
            {
                let span = last.ident.span();
                last.arguments = syn::PathArguments::AngleBracketed(syn::parse_quote_spanned!(span=> <Self>));
            }
        }
        _ => {}
    }
}
