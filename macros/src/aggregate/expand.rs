//! The code `#[aggregate]` generates: the event set, the apply dispatch, the
//! return-type conversions and one `HandledCommand` impl per handler.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::check::{HandlerParam, Model};
use crate::util::type_text;

pub(crate) fn expand(model: &Model) -> TokenStream {
    let krate = &model.krate;
    let p = quote!(#krate::__private);
    let agg = &model.self_ty;
    let name = &model.name;
    let state_version = model.state_version;
    let events = format_ident!("__InterlockEvents");

    let event_types: Vec<&syn::Type> = model.appliers.iter().map(|a| &a.event).collect();
    let appliers = model.appliers.iter().map(|a| &a.method);
    let (event_set, variants) =
        crate::event_set::expand(&p, &events, &event_types, &format!("aggregate `{}`", type_text(agg)));

    let conversions = event_types.iter().zip(&variants).map(|(ty, variant)| {
        quote! {
            #[automatically_derived]
            impl #p::IntoEvents<#agg> for #ty {
                fn push_into(self, out: &mut #p::Emitted<#agg>) {
                    out.push(#events::#variant(self));
                }
            }
            #[automatically_derived]
            impl #p::HandlerReturn<#agg> for #ty {
                type Output = ();
                type Error = #p::Infallible;
                fn into_decision(self) -> #p::Result<#p::Decision<#agg, ()>, #p::Infallible> {
                    #p::Ok(#p::single_event::<#agg>(#events::#variant(self)))
                }
            }
        }
    });

    let all_services: Vec<&syn::Type> = model.handlers.iter().flat_map(|h| &h.services).collect();
    let handlers = model.handlers.iter().map(|h| {
        let command = &h.command;
        let ret = &h.ret;
        let method = &h.method;
        let service_idents: Vec<syn::Ident> = (0..h.services.len()).map(|i| format_ident!("__service{}", i)).collect();
        let service_types = &h.services;
        let service_asserts = service_types.iter().map(|ty| {
            quote_spanned! {ty.span()=> const _: () = #p::assert_service::<#ty>(); }
        });
        let mut next_service = service_idents.iter();
        let args = h.params.iter().map(|param| match param {
            HandlerParam::Service => {
                let ident = next_service.next();
                quote!(#ident)
            }
            HandlerParam::View => quote!(view),
            HandlerParam::Peer => quote!(peer),
        });
        let call = quote!(#agg::#method(aggregate, command #(, #args)*));
        let take_peer = h.peer.as_ref().map(|_| {
            quote! {
                let peer = match peer {
                    #p::Some(peer) => peer,
                    #p::None => return #p::Err(#p::HandlerError::NoPeer),
                };
            }
        });
        // A handler that reads a peer needs a command that names one.
        let peer_assert = h.peer.as_ref().map(|ty| {
            quote_spanned! {ty.span()=>
                const _: () = #p::assert_peer::<#command>();
            }
        });
        let consistency = &h.consistency;
        let view_ty = match &h.view {
            Some(ty) => quote!(#ty),
            None => quote!(()),
        };

        let call = if h.is_async { quote!(#call.await) } else { call };
        // Spanned on the user's return type: an event the aggregate does not
        // apply is reported there.
        let output = quote_spanned!(ret.span()=> <#ret as #p::HandlerReturn<#agg>>::Output);
        let error = quote_spanned!(ret.span()=> <#ret as #p::HandlerReturn<#agg>>::Error);
        let decision = quote_spanned! {ret.span()=>
            #p::Result<#p::Decision<#agg, #output>, #p::HandlerError<#error>>
        };
        // The handler's signature and body carry the return type's span, so a
        // return type that is not events of this aggregate is reported once,
        // on it.
        let handle = quote_spanned! {ret.span()=>
            #[allow(clippy::manual_async_fn)]
            fn handle<'a>(
                aggregate: &'a #agg,
                command: Self,
                services: &'a #p::Services,
                view: &'a #view_ty,
                peer: #p::Option<&'a #agg>,
            ) -> impl #p::Future<Output = #decision> + ::core::marker::Send + 'a {
                async move {
                    #take_peer
                    #(let #service_idents = services.get::<#service_types>()?;)*
                    let returned: #ret = #call;
                    <#ret as #p::HandlerReturn<#agg>>::into_decision(returned).map_err(#p::HandlerError::Domain)
                }
            }
        };
        // The impl carries the command's span: a command handled by two
        // aggregates is reported on the second handler's command type.
        quote_spanned! {command.span()=>
            #(#service_asserts)*
            #peer_assert
            #[automatically_derived]
            impl #p::HandledCommand for #command {
                type Aggregate = #agg;
                type Output = #output;
                type Error = #error;
                const CONSISTENCY: #krate::Consistency = #krate::Consistency::#consistency;
                type View = #view_ty;

                #handle

                fn required_services() -> #p::Vec<#p::ServiceKey> {
                    #p::Vec::from([#(#p::ServiceKey::of::<#service_types>()),*])
                }
            }
        }
    });

    quote! {
        const _: () = {
            #event_set

            #[automatically_derived]
            impl #p::Aggregate for #agg {
                const NAME: &'static str = #name;
                const STATE_VERSION: u32 = #state_version;
                type Event = #events;

                fn apply(&mut self, event: &#events) {
                    match *event {
                        #(#events::#variants(ref event) => #agg::#appliers(self, event),)*
                    }
                }

                fn required_services() -> #p::Vec<#p::ServiceKey> {
                    #p::Vec::from([#(#p::ServiceKey::of::<#all_services>()),*])
                }
            }

            #(#conversions)*
            #(#handlers)*
        };
    }
}
