//! `#[derive(Event)]`.

mod ast;
mod check;
mod expand;

use proc_macro2::TokenStream;

use crate::ctxt::Ctxt;

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<syn::DeriveInput>(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    let mut cx = Ctxt::new();
    let parsed = ast::EventInput::from_syn(&mut cx, &input);
    if let Some(parsed) = &parsed {
        check::check(&mut cx, parsed);
    }
    match parsed {
        Some(parsed) if !cx.has_errors() => expand::expand(&parsed),
        _ => cx.into_compile_errors(),
    }
}
