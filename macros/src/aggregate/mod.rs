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
    let item = match crate::util::parse_impl_block(
        &mut cx,
        item,
        "aggregate",
        "#[aggregate(name = \"...\")] impl MyAggregate { ... }",
    ) {
        Ok(item) => item,
        Err(tokens) => return tokens,
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
