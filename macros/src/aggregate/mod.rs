//! `#[aggregate]` on an impl block, with `#[handles_command]` and
//! `#[applies_event]` methods.

mod ast;
mod check;
mod expand;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ctxt::Ctxt;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::new();
    let args = ast::AggregateArgs::parse(&mut cx, args);
    let item = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Impl(item)) => item,
        Ok(other) => {
            cx.error_spanned(
                item_head(&other),
                "`#[aggregate]` goes on an impl block of the state type: `#[aggregate(name = \"...\")] impl MyAggregate { ... }`",
            );
            let errors = cx.into_compile_errors();
            return quote!(#errors #other);
        }
        Err(e) => {
            let error = e.to_compile_error();
            return quote!(#error #item);
        }
    };
    let (parsed, stripped) = ast::AggregateInput::from_syn(&mut cx, args, item);
    let model = check::check(&mut cx, &parsed);
    let Some(model) = model.filter(|_| !cx.has_errors()) else {
        // Recovery: keep the user's methods so the rest of the crate still
        // type-checks, and report every mistake at once.
        let errors = cx.into_compile_errors();
        return quote!(#errors #stripped);
    };
    let generated = expand::expand(&model);
    quote!(#stripped #generated)
}

/// The tokens naming an item, without its body.
fn item_head(item: &syn::Item) -> TokenStream {
    match item {
        syn::Item::Struct(s) => {
            let (token, ident) = (&s.struct_token, &s.ident);
            quote!(#token #ident)
        }
        syn::Item::Enum(e) => {
            let (token, ident) = (&e.enum_token, &e.ident);
            quote!(#token #ident)
        }
        syn::Item::Fn(f) => {
            let sig = &f.sig;
            let (token, ident) = (&sig.fn_token, &sig.ident);
            quote!(#token #ident)
        }
        syn::Item::Trait(t) => {
            let (token, ident) = (&t.trait_token, &t.ident);
            quote!(#token #ident)
        }
        syn::Item::Mod(m) => {
            let (token, ident) = (&m.mod_token, &m.ident);
            quote!(#token #ident)
        }
        other => quote!(#other),
    }
}
