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
    /// The `#[peer_id]` fields: another instance of the aggregate the
    /// command also changes, atomically.
    pub(crate) peer_ids: Vec<MarkedField<'a>>,
    /// Every field but the `#[command_id]`, the `#[aggregate_id]` and those marked
    /// `#[command(skip_fingerprint)]`: what the fingerprint covers.
    pub(crate) fingerprinted: Vec<FingerprintedField<'a>>,
}

/// A field whose value counts toward the command's fingerprint.
pub(crate) struct FingerprintedField<'a> {
    /// `self.<member>`.
    pub(crate) member: TokenStream,
    /// The field's name (its index for a tuple struct).
    pub(crate) name: String,
    pub(crate) ty: &'a syn::Type,
}

const ARGUMENTS: &[&str] = &["name", "crate"];
const FIELD_ARGUMENTS: &[&str] = &["skip_fingerprint"];

impl<'a> CommandInput<'a> {
    pub(crate) fn from_syn(cx: &mut Ctxt, input: &'a syn::DeriveInput) -> Self {
        let mut parsed = CommandInput {
            input,
            name: None,
            krate: util::default_crate(),
            aggregate_ids: Vec::new(),
            command_ids: Vec::new(),
            peer_ids: Vec::new(),
            fingerprinted: Vec::new(),
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
                let mut skip_fingerprint = false;
                let mut is_command_id = false;
                let mut is_aggregate_id = false;
                for attr in field.attrs.iter().filter(|a| a.path().is_ident("command")) {
                    let result = attr.parse_nested_meta(|meta| {
                        if meta.path.is_ident("skip_fingerprint") {
                            skip_fingerprint = true;
                            Ok(())
                        } else {
                            Err(util::unknown_argument(&meta, "command", FIELD_ARGUMENTS))
                        }
                    });
                    if let Err(e) = result {
                        cx.syn_error(e);
                    }
                }
                for attr in &field.attrs {
                    is_command_id |= attr.path().is_ident("command_id");
                    is_aggregate_id |= attr.path().is_ident("aggregate_id");
                    let list = if attr.path().is_ident("aggregate_id") {
                        &mut parsed.aggregate_ids
                    } else if attr.path().is_ident("command_id") {
                        &mut parsed.command_ids
                    } else if attr.path().is_ident("peer_id") {
                        &mut parsed.peer_ids
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
                // The aggregate id counts through its stream key.
                if !skip_fingerprint && !is_command_id && !is_aggregate_id {
                    parsed.fingerprinted.push(FingerprintedField {
                        name: field
                            .ident
                            .as_ref()
                            .map_or_else(|| index.to_string(), ToString::to_string),
                        member,
                        ty: &field.ty,
                    });
                }
            }
        }
        parsed
    }
}
