//! Reads and validates the `#[cached_model(..)]` and `#[cached(..)]` attributes.

use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Fields, LitStr, Result, Type};

/// A plain (non-cached) field.
pub(crate) struct Plain {
    pub(crate) ident: syn::Ident,
    pub(crate) ty: Type,
    pub(crate) skip: bool,
}

/// A cached field.
pub(crate) struct CachedField {
    pub(crate) ident: syn::Ident,
    pub(crate) value_ty: Type,
    pub(crate) calculate: Option<syn::Path>,
    pub(crate) calculate_many: Option<syn::Path>,
    pub(crate) after: Option<syn::Path>,
    pub(crate) temporal: bool,
    pub(crate) cached_column: Option<LitStr>,
    pub(crate) needed_column: Option<LitStr>,
    pub(crate) expires_column: Option<LitStr>,
    pub(crate) depends_on: Vec<LitStr>,
    pub(crate) timeout_ms: Option<syn::LitInt>,
    /// `lazy` (Some(true)) or `eager` (Some(false)).
    pub(crate) lazy: Option<bool>,
}

/// The parsed model.
pub(crate) struct ModelAttrs {
    pub(crate) table: LitStr,
    pub(crate) primary_key: syn::Ident,
    pub(crate) primary_key_ty: Type,
    pub(crate) plain: Vec<Plain>,
    pub(crate) cached: Vec<CachedField>,
}

fn check_ident(lit: &LitStr) -> Result<()> {
    let s = lit.value();
    if cached_fields_ident::is_plain(&s) {
        Ok(())
    } else {
        Err(Error::new(
            lit.span(),
            format!(
                "invalid SQL identifier {s:?}: {}",
                cached_fields_ident::RULE
            ),
        ))
    }
}

/// `Cached<T>` → `T`.
fn cached_inner(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "Cached" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(t) if args.args.len() == 1 => Some(t.clone()),
        _ => None,
    }
}

pub(crate) fn parse(input: &DeriveInput) -> Result<ModelAttrs> {
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            "CachedModel cannot be derived for a generic struct",
        ));
    }
    let Data::Struct(data) = &input.data else {
        return Err(Error::new(
            input.ident.span(),
            "CachedModel can only be derived for a struct",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(Error::new(
            input.ident.span(),
            "CachedModel needs a struct with named fields",
        ));
    };

    let mut table = None;
    for a in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cached_model"))
    {
        a.parse_nested_meta(|meta| {
            if meta.path.is_ident("table") {
                let lit: LitStr = meta.value()?.parse()?;
                check_ident(&lit)?;
                table = Some(lit);
                Ok(())
            } else {
                Err(meta.error("expected `table = \"...\"`"))
            }
        })?;
    }
    let table = table.ok_or_else(|| {
        Error::new(
            input.ident.span(),
            "missing #[cached_model(table = \"...\")] on the struct",
        )
    })?;

    let mut primary_key = None;
    let mut plain = Vec::new();
    let mut cached = Vec::new();
    for f in &fields.named {
        let ident = f
            .ident
            .clone()
            .ok_or_else(|| Error::new(f.span(), "unnamed field"))?;
        let mut is_pk = false;
        let mut skip = false;
        for a in f.attrs.iter().filter(|a| a.path().is_ident("cached_model")) {
            a.parse_nested_meta(|meta| {
                if meta.path.is_ident("primary_key") {
                    is_pk = true;
                    Ok(())
                } else if meta.path.is_ident("skip") {
                    skip = true;
                    Ok(())
                } else {
                    Err(meta.error("expected `primary_key` or `skip`"))
                }
            })?;
        }
        if is_pk {
            if primary_key.is_some() {
                return Err(Error::new(
                    f.span(),
                    "only one field can be the primary_key",
                ));
            }
            primary_key = Some(ident.clone());
        }
        let cached_attr = f.attrs.iter().find(|a| a.path().is_ident("cached"));
        let inner = cached_inner(&f.ty);
        match (cached_attr, inner) {
            (None, None) => plain.push(Plain {
                ident,
                ty: f.ty.clone(),
                skip,
            }),
            (_, Some(value_ty)) => {
                let mut c = CachedField {
                    ident,
                    value_ty,
                    calculate: None,
                    calculate_many: None,
                    after: None,
                    temporal: false,
                    cached_column: None,
                    needed_column: None,
                    expires_column: None,
                    depends_on: Vec::new(),
                    timeout_ms: None,
                    lazy: None,
                };
                // A bare `#[cached]` (no arguments) declares the defaults.
                if let Some(a) = cached_attr.filter(|a| !matches!(a.meta, syn::Meta::Path(_))) {
                    a.parse_nested_meta(|meta| {
                        let p = &meta.path;
                        if p.is_ident("calculate") {
                            c.calculate = Some(meta.value()?.parse()?);
                        } else if p.is_ident("calculate_many") {
                            c.calculate_many = Some(meta.value()?.parse()?);
                        } else if p.is_ident("after_recalculate") {
                            c.after = Some(meta.value()?.parse()?);
                        } else if p.is_ident("temporal_triggers") {
                            c.temporal = true;
                        } else if p.is_ident("lazy") || p.is_ident("eager") {
                            if c.lazy.is_some() {
                                return Err(meta.error("declare `lazy` or `eager` once"));
                            }
                            c.lazy = Some(p.is_ident("lazy"));
                        } else if p.is_ident("timeout_ms") {
                            let l: syn::LitInt = meta.value()?.parse()?;
                            if l.base10_parse::<u64>()? == 0 {
                                return Err(Error::new(l.span(), "timeout_ms must be at least 1"));
                            }
                            c.timeout_ms = Some(l);
                        } else if p.is_ident("cached_column") {
                            let l: LitStr = meta.value()?.parse()?;
                            check_ident(&l)?;
                            c.cached_column = Some(l);
                        } else if p.is_ident("recalculation_needed_column") {
                            let l: LitStr = meta.value()?.parse()?;
                            check_ident(&l)?;
                            c.needed_column = Some(l);
                        } else if p.is_ident("expires_after_column") {
                            let l: LitStr = meta.value()?.parse()?;
                            check_ident(&l)?;
                            c.expires_column = Some(l);
                        } else if p.is_ident("depends_on") {
                            let content;
                            syn::parenthesized!(content in meta.input);
                            let lits = content.parse_terminated(
                                <LitStr as syn::parse::Parse>::parse,
                                syn::Token![,],
                            )?;
                            c.depends_on.extend(lits);
                        } else {
                            return Err(meta.error(
                                "expected one of: calculate, calculate_many, after_recalculate, temporal_triggers, \
                                 lazy, eager, timeout_ms, cached_column, recalculation_needed_column, expires_after_column, \
                                 depends_on(...)",
                            ));
                        }
                        Ok(())
                    })?;
                }
                cached.push(c);
            }
            (Some(a), None) => {
                return Err(Error::new(
                    a.span(),
                    "#[cached] needs a field of type Cached<T>",
                ));
            }
        }
    }
    let primary_key = match primary_key {
        Some(pk) => pk,
        None => plain
            .iter()
            .find(|p| p.ident == "id")
            .map(|p| p.ident.clone())
            .ok_or_else(|| {
                Error::new(
                    input.ident.span(),
                    "no primary key: mark a field #[cached_model(primary_key)] or name it `id`",
                )
            })?,
    };
    let primary_key_ty = plain
        .iter()
        .find(|p| p.ident == primary_key)
        .map(|p| p.ty.clone())
        .ok_or_else(|| {
            Error::new(
                primary_key.span(),
                "the primary key cannot be a cached field",
            )
        })?;
    Ok(ModelAttrs {
        table,
        primary_key,
        primary_key_ty,
        plain,
        cached,
    })
}
