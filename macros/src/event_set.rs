//! The hidden enum of the events an aggregate, projection or saga takes,
//! and its `EventSet` impl: names, encode, decode through upcaster chains.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::util::type_text;

/// The enum `name` with one variant per type, its `EventSet` impl, and a
/// compile-time check that no two types share an event name. `owner`
/// names the aggregate, projection or saga in messages. Returns the
/// tokens and the variant names.
pub(crate) fn expand(
    p: &TokenStream,
    name: &syn::Ident,
    types: &[&syn::Type],
    owner: &str,
) -> (TokenStream, Vec<syn::Ident>) {
    let variants: Vec<syn::Ident> = (0..types.len()).map(|i| format_ident!("__E{}", i)).collect();
    let mut name_checks = Vec::new();
    for (i, a) in types.iter().enumerate() {
        for b in types.iter().skip(i + 1) {
            let message = format!(
                "events `{}` and `{}` of {owner} have the same event name; only the newest version of an event is listed (older versions reach it through `upcast_from`), and names must be unique",
                type_text(a),
                type_text(b),
            );
            name_checks.push(quote_spanned! {b.span()=>
                if #p::const_str_eq(<#a as #p::Event>::NAME, <#b as #p::Event>::NAME) {
                    ::core::panic!(#message)
                }
            });
        }
    }
    let tokens = quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        pub enum #name {
            #(#variants(#types),)*
        }

        const _: () = {
            #(#name_checks)*
        };

        #[automatically_derived]
        impl #p::EventSet for #name {
            const NAMES: &'static [&'static str] = &[#(<#types as #p::Event>::NAME),*];

            fn name(&self) -> &'static str {
                match *self {
                    #(#name::#variants(_) => <#types as #p::Event>::NAME,)*
                }
            }

            fn encode(&self) -> #p::Result<#p::EncodedEvent, #p::serde_json::Error> {
                match *self {
                    #(#name::#variants(ref event) => #p::Ok(#p::EncodedEvent {
                        name: <#types as #p::Event>::NAME,
                        version: <#types as #p::Event>::VERSION,
                        payload: #p::encode_json(event)?,
                    }),)*
                }
            }

            fn decode(
                name: &str,
                version: #p::SchemaVersion,
                payload: &[u8],
            ) -> #p::Result<Self, #p::EventDecodeError> {
                #(
                    if name == <#types as #p::Event>::NAME {
                        return <#types as #p::Event>::decode_payload(version, payload).map(#name::#variants);
                    }
                )*
                #p::Err(#p::EventDecodeError::UnknownEvent { name: name.into() })
            }

            fn event_types() -> #p::Vec<#p::EventType> {
                // Spelled like the other uses of each type (not through a
                // generic function), so a type that is not an event is
                // reported once.
                #p::Vec::from([#(#p::EventType {
                    name: <#types as #p::Event>::NAME,
                    version: <#types as #p::Event>::VERSION,
                    type_name: ::core::any::type_name::<#types>(),
                    type_id: ::core::any::TypeId::of::<#types>(),
                    chain_root: <#types as #p::Event>::chain_root(),
                }),*])
            }
        }
    };
    (tokens, variants)
}
