//! The code `#[derive(Command)]` generates.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::ast::CommandInput;

pub(crate) fn expand(input: &CommandInput<'_>) -> TokenStream {
    let krate = &input.krate;
    let p = quote!(#krate::__private);
    let ident = &input.input.ident;
    let (impl_generics, ty_generics, where_clause) = input.input.generics.split_for_impl();
    let name = input
        .name
        .as_ref()
        .map_or_else(|| ident.to_string(), syn::LitStr::value);
    let Some(id) = input.aggregate_ids.first() else {
        return TokenStream::new();
    };
    let id_member = &id.member;
    let id_ty = id.ty;
    let id_type = quote_spanned!(id_ty.span()=> #id_ty);
    let command_id = input.command_ids.first().map(|field| {
        let member = &field.member;
        let call = quote_spanned!(field.ty.span()=> #p::command_id_of(&self.#member));
        quote! {
            fn command_id(&self) -> #p::Option<#p::CommandId> {
                #call
            }
        }
    });
    let peer = input.peer_ids.first().map(|field| {
        let member = &field.member;
        // Spanned at the field's type: a peer id of another type than the
        // aggregate id is reported there.
        let value = quote_spanned!(field.ty.span()=> &self.#member);
        quote! {
            const HAS_PEER: bool = true;

            fn peer_id(&self) -> #p::Option<&Self::Id> {
                #p::Some(#value)
            }
        }
    });
    let names_peer = (!input.peer_ids.is_empty()).then(|| {
        quote! {
            #[automatically_derived]
            impl #impl_generics #p::NamesPeer for #ident #ty_generics #where_clause {}
        }
    });
    let fields = input.fingerprinted.iter().map(|field| {
        let member = &field.member;
        let name = &field.name;
        // Spanned at the field's type: a type that can be neither
        // serialized nor hashed is reported there.
        let span = field.ty.span();
        let p = crate::util::respan(p.clone(), span);
        let call = quote_spanned!(span=>
            (&&&#p::FingerprintField(&self.#member)).fingerprint_field(fp)
        );
        quote! {
            fp.str(#name);
            #call;
        }
    });
    let fingerprint = quote! {
        fn fingerprint(&self, fp: &mut #p::Fingerprinter) {
            #[allow(unused_imports)]
            use #p::{FingerprintByHash as _, FingerprintBySerialize as _, FingerprintNeither as _};
            #(#fields)*
        }
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics #p::Command for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
            type Id = #id_type;

            fn aggregate_id(&self) -> &Self::Id {
                &self.#id_member
            }

            fn stream_key(&self) -> #p::SmolStr {
                #[allow(unused_imports)]
                use #p::{KeyByDisplay as _, KeyDirect as _};
                (&#p::Key(self, &self.#id_member)).stream_key()
            }

            #command_id

            #peer

            #fingerprint
        }

        #names_peer
    }
}
