//! `#[projection]` on an impl block, with `#[handles_event]` and
//! `#[handles_query]` methods.

mod ast;
mod check;
mod expand;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ctxt::Ctxt;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::new();
    let args = crate::util::NameArgs::parse(&mut cx, args, "projection");
    let item =
        match crate::util::parse_impl_block(&mut cx, item, "projection", "#[projection] impl MyReadModel { ... }") {
            Ok(item) => item,
            Err(tokens) => return tokens,
        };
    let (parsed, stripped) = ast::ProjectionInput::from_syn(&mut cx, args, item);
    let model = check::check(&mut cx, &parsed);
    let Some(model) = model.filter(|_| !cx.has_errors()) else {
        let errors = cx.into_compile_errors();
        return quote!(#errors #stripped);
    };
    let generated = expand::expand(&model);
    quote!(#stripped #generated)
}
