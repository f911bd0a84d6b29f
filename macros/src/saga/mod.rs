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
    let (parsed, stripped) = ast::SagaInput::from_syn(&mut cx, args, item);
    let model = check::check(&mut cx, &parsed);
    let Some(model) = model.filter(|_| !cx.has_errors()) else {
        let errors = cx.into_compile_errors();
        return quote!(#errors #stripped);
    };
    let generated = expand::expand(&model);
    quote!(#stripped #generated)
}
