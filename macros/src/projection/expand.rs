//! The code `#[projection]` generates: the event set, the `Projection`
//! impl dispatching to the handlers, one `HandledQuery` impl per query.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::check::Model;
use crate::util::type_text;

pub(crate) fn expand(model: &Model) -> TokenStream {
    let krate = &model.krate;
    let p = quote!(#krate::__private);
    let ty = &model.self_ty;
    let name = &model.name;
    let model_storage = &model.model;
    let events = format_ident!("__InterlockProjectionEvents");
    let event_types: Vec<&syn::Type> = model.handlers.iter().map(|h| &h.event).collect();
    let (event_set, variants) =
        crate::event_set::expand(&p, &events, &event_types, &format!("projection `{}`", type_text(ty)));

    let transactional = model.handlers.iter().any(|h| h.tx.is_some());
    let arms = model.handlers.iter().zip(&variants).map(|(h, variant)| {
        let method = &h.method;
        let meta = h.takes_meta.then(|| quote!(, meta));
        let (tx_arg, take_tx) = match &h.tx {
            Some(tx_ty) => (
                Some(quote!(, tx)),
                Some(quote_spanned!(tx_ty.span()=> let tx = #p::transaction_of::<#tx_ty>(tx)?;)),
            ),
            None => (None, None),
        };
        let call = quote!(#ty::#method(self, &event #meta #tx_arg));
        let call = if h.is_async { quote!(#call.await) } else { call };
        let ret = &h.ret;
        let result = quote_spanned!(ret.span()=> <#ret as #p::EventHandlerResult>::into_result(#call));
        quote!(#events::#variant(event) => { #take_tx #result })
    });

    // A projection whose handlers are plain, infallible and take no
    // transaction can also be a command handler's view (folded in place).
    let view = model
        .handlers
        .iter()
        .all(|h| !h.is_async && h.tx.is_none() && type_text(&h.ret) == "()")
        .then(|| {
            let arms = model.handlers.iter().zip(&variants).map(|(h, variant)| {
                let method = &h.method;
                let meta = h.takes_meta.then(|| quote!(, meta));
                quote!(#events::#variant(event) => #ty::#method(self, &event #meta),)
            });
            quote! {
                #[automatically_derived]
                impl #krate::View for #ty {
                    type Event = #events;

                    #[allow(unused_variables)]
                    fn fold(&mut self, event: #events, meta: &#p::EventMeta) {
                        match event {
                            #(#arms)*
                        }
                    }
                }
            }
        });

    let queries = model.queries.iter().map(|q| {
        let query = &q.query;
        let output = &q.output;
        let method = &q.method;
        let call = quote!(#ty::#method(projection, query));
        let call = if q.is_async { quote!(#call.await) } else { call };
        let handle = quote_spanned! {output.span()=>
            #[allow(clippy::manual_async_fn)]
            fn handle(
                projection: &#ty,
                query: Self,
            ) -> impl #p::Future<Output = #output> + ::core::marker::Send + '_ {
                async move { #call }
            }
        };
        quote_spanned! {query.span()=>
            #[automatically_derived]
            impl #p::HandledQuery for #query {
                type Projection = #ty;
                type Output = #output;
                #handle
            }
        }
    });

    quote! {
        const _: () = {
            #event_set

            #[automatically_derived]
            impl #p::Projection for #ty {
                const NAME: &'static str = #name;
                const MODEL: #p::ModelStorage = #p::ModelStorage::#model_storage;
                const TRANSACTIONAL: bool = #transactional;
                type Event = #events;

                #[allow(clippy::manual_async_fn, unused_variables)]
                fn handle<'a>(
                    &'a mut self,
                    event: #events,
                    meta: &'a #p::EventMeta,
                    tx: #p::Option<&'a mut (dyn ::core::any::Any + ::core::marker::Send)>,
                ) -> impl #p::Future<Output = #p::Result<(), #p::HandlerFailure>> + ::core::marker::Send + 'a {
                    async move {
                        match event {
                            #(#arms)*
                        }
                    }
                }
            }

            #view
            #(#queries)*
        };
    }
}
