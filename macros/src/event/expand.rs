//! The code `#[derive(Event)]` generates.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::ast::EventInput;
use crate::util::type_text;

pub(crate) fn expand(input: &EventInput<'_>) -> TokenStream {
    let krate = &input.krate;
    let p = quote!(#krate::__private);
    let ident = input.ident;
    let name = input.name.as_ref().map(syn::LitStr::value).unwrap_or_default();
    let version = input.version.map_or(1, |(v, _)| v);

    let chain_root = input.upcast_from.as_ref().map(|old| {
        quote! {
            fn chain_root() -> ::core::any::TypeId {
                <#old as #p::Event>::chain_root()
            }
        }
    });
    let (oldest, decode, chain_check) = match &input.upcast_from {
        None => (
            quote!(#p::SchemaVersion(#version)),
            quote!(#p::decode_exact::<Self>(version, payload, <Self as #p::Event>::OLDEST)),
            TokenStream::new(),
        ),
        Some(old) => {
            let old_text = type_text(old);
            let previous = version - 1;
            let name_message = format!(
                "`upcast_from = {old_text}`: `{old_text}` must have the same event name as `{ident}`, \"{name}\""
            );
            let version_message = format!(
                "`upcast_from = {old_text}`: `{old_text}` must have `version = {previous}`, one less than `{ident}`"
            );
            // Spanned on the user's `upcast_from` type, so a broken chain or
            // a missing `From` impl points there.
            let decode = quote_spanned! {old.span()=>
                #p::decode_upcast::<Self, #old>(version, payload, <Self as #p::Event>::OLDEST)
            };
            let check = quote_spanned! {old.span()=>
                const _: () = {
                    if !#p::const_str_eq(<#old as #p::Event>::NAME, #name) {
                        ::core::panic!(#name_message)
                    }
                    if <#old as #p::Event>::VERSION.0 != #previous {
                        ::core::panic!(#version_message)
                    }
                };
            };
            (quote!(<#old as #p::Event>::OLDEST), decode, check)
        }
    };

    quote! {
        #[automatically_derived]
        impl #p::Event for #ident {
            const NAME: &'static str = #name;
            const VERSION: #p::SchemaVersion = #p::SchemaVersion(#version);
            const OLDEST: #p::SchemaVersion = #oldest;

            fn decode_payload(
                version: #p::SchemaVersion,
                payload: &[u8],
            ) -> #p::Result<Self, #p::EventDecodeError> {
                #decode
            }

            #chain_root
        }
        #chain_check
    }
}
