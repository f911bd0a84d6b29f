//! The typed form of a `#[derive(Command)]` input.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

use crate::ctxt::Ctxt;
use crate::util;

/// A field marked with `#[aggregate_id]` or `#[command_id]`.
pub(crate) struct MarkedField<'a> {
    /// `self.<member>`.
    pub(crate) member: TokenStream,
    pub(crate) ty: &'a syn::Type,
    /// The attribute, for spans.
    pub(crate) attr: &'a syn::Attribute,
}

pub(crate) struct CommandInput<'a> {
    pub(crate) input: &'a syn::DeriveInput,
    pub(crate) name: Option<syn::LitStr>,
    pub(crate) krate: syn::Path,
    pub(crate) aggregate_ids: Vec<MarkedField<'a>>,
    pub(crate) command_ids: Vec<MarkedField<'a>>,
}

const ARGUMENTS: &[&str] = &["name", "crate"];

impl<'a> CommandInput<'a> {
    pub(crate) fn from_syn(cx: &mut Ctxt, input: &'a syn::DeriveInput) -> Self {
        let mut parsed = CommandInput {
            input,
            name: None,
            krate: util::default_crate(),
            aggregate_ids: Vec::new(),
            command_ids: Vec::new(),
        };
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("command")) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    if parsed.name.is_some() {
                        return Err(util::duplicate(&meta, "name"));
                    }
                    parsed.name = Some(meta.value()?.parse()?);
                } else if meta.path.is_ident("crate") {
                    parsed.krate = util::parse_crate_path(&meta)?;
                } else {
                    return Err(util::unknown_argument(&meta, "command", ARGUMENTS));
                }
                Ok(())
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
        if let syn::Data::Struct(data) = &input.data {
            for (index, field) in data.fields.iter().enumerate() {
                let member = match &field.ident {
                    Some(ident) => ident.to_token_stream(),
                    None => {
                        let index = syn::Index::from(index);
                        quote!(#index)
                    }
                };
                for attr in &field.attrs {
                    let list = if attr.path().is_ident("aggregate_id") {
                        &mut parsed.aggregate_ids
                    } else if attr.path().is_ident("command_id") {
                        &mut parsed.command_ids
                    } else {
                        continue;
                    };
                    if !matches!(attr.meta, syn::Meta::Path(_)) {
                        cx.error_spanned(attr, "this attribute takes no arguments");
                    }
                    list.push(MarkedField {
                        member: member.clone(),
                        ty: &field.ty,
                        attr,
                    });
                }
            }
        }
        parsed
    }
}
