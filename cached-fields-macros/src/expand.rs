//! Generates the `CachedModel` and `FromRow` impls and the per-field methods
//! with the seed's names, all in terms of the library's builder API.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::DeriveInput;

use crate::attr::ModelAttrs;

/// After an error: the traits implemented with bodies that never run, so
/// the one error is not followed by one per use of the model.
pub(crate) fn fallback(input: &DeriveInput) -> TokenStream {
    if !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let name = &input.ident;
    let krate = quote!(::cached_fields);
    let p = quote!(#krate::__private);
    quote! {
        const _: () = {
            impl #krate::CachedModel for #name {
                type Key = i64;
                fn model() -> #krate::Result<&'static #krate::model::Model<Self>> {
                    ::core::unreachable!("the CachedModel derive failed to compile")
                }
                fn primary_key(&self) -> #krate::Key {
                    ::core::unreachable!("the CachedModel derive failed to compile")
                }
            }
            impl<'r, R: #p::sqlx::Row> #p::sqlx::FromRow<'r, R> for #name {
                fn from_row(_: &'r R) -> ::core::result::Result<Self, #p::sqlx::Error> {
                    ::core::unreachable!("the CachedModel derive failed to compile")
                }
            }
        };
    }
}

pub(crate) fn expand(input: &DeriveInput, m: &ModelAttrs) -> TokenStream {
    let name = &input.ident;
    let vis = &input.vis;
    let krate = quote!(::cached_fields);
    let p = quote!(#krate::__private);
    let table = &m.table;
    let pk = &m.primary_key;
    let pk_ty = &m.primary_key_ty;
    let pk_str = pk.to_string();
    let plain_cols: Vec<String> = m
        .plain
        .iter()
        .filter(|p| !p.skip)
        .map(|p| p.ident.to_string())
        .collect();

    let mut calc_fns = Vec::new();
    let mut field_decls = Vec::new();
    let mut methods = Vec::new();
    for c in &m.cached {
        let f = &c.ident;
        let f_str = f.to_string();
        let ty = &c.value_ty;
        let calc_path = if let Some(path) = &c.calculate {
            quote!(#path)
        } else {
            let default = format_ident!("calculate_{}", f);
            quote!(#name::#default)
        };
        let calc_fn = format_ident!("__cached_fields_calculate_{}", f);
        calc_fns.push(quote! {
            fn #calc_fn<'a, 'c>(
                m: &'a #name,
                ctx: &'a mut #krate::Ctx<'c>,
            ) -> #p::BoxFuture<'a, ::core::result::Result<#ty, #krate::BoxError>> {
                ::std::boxed::Box::pin(async move {
                    let conn = #p::from_ctx(ctx).await?;
                    #calc_path(m, conn)
                        .await
                        .map_err(|e| -> #krate::BoxError { ::core::convert::Into::into(e) })
                })
            }
        });
        let mut decl = quote! {
            #krate::model::Field::builder::<#ty>(#f_str, |m: &#name| &m.#f, #calc_fn)
                .temporal_triggers(false)
        };
        if c.temporal {
            decl = quote!(#decl.temporal_triggers(true));
        }
        if let Some(col) = &c.cached_column {
            decl = quote!(#decl.cached_column(#col));
        }
        if let Some(col) = &c.needed_column {
            decl = quote!(#decl.recalculation_needed_column(#col));
        }
        if let Some(col) = &c.expires_column {
            decl = quote!(#decl.expires_after_column(#col));
        }
        if let Some(many) = &c.calculate_many {
            let many_fn = format_ident!("__cached_fields_calculate_many_{}", f);
            calc_fns.push(quote! {
                fn #many_fn<'a, 'c>(
                    rows: &'a [&'a #name],
                    ctx: &'a mut #krate::Ctx<'c>,
                ) -> #p::BoxFuture<'a, ::core::result::Result<::std::vec::Vec<#ty>, #krate::BoxError>> {
                    ::std::boxed::Box::pin(async move {
                        let conn = #p::from_ctx(ctx).await?;
                        #many(rows, conn)
                            .await
                            .map_err(|e| -> #krate::BoxError { ::core::convert::Into::into(e) })
                    })
                }
            });
            decl = quote!(#decl.calculate_many::<#ty>(#many_fn));
        }
        if let Some(hook) = &c.after {
            let hook_fn = format_ident!("__cached_fields_after_{}", f);
            calc_fns.push(quote! {
                fn #hook_fn<'a, 'c>(
                    m: &'a #name,
                    ctx: &'a mut #krate::Ctx<'c>,
                ) -> #p::BoxFuture<'a, ::core::result::Result<(), #krate::BoxError>> {
                    ::std::boxed::Box::pin(async move {
                        let conn = #p::from_ctx(ctx).await?;
                        #hook(m, conn)
                            .await
                            .map_err(|e| -> #krate::BoxError { ::core::convert::Into::into(e) })
                    })
                }
            });
            decl = quote!(#decl.after_recalculate(#hook_fn));
        }
        if let Some(lazy) = c.lazy {
            let mode = if lazy {
                quote!(#krate::Recalculate::Lazily)
            } else {
                quote!(#krate::Recalculate::Eagerly)
            };
            decl = quote!(#decl.recalculate(#mode));
        }
        if let Some(ms) = &c.timeout_ms {
            decl = quote!(#decl.timeout(::std::time::Duration::from_millis(#ms)));
        }
        let deps = &c.depends_on;
        if !deps.is_empty() {
            decl = quote!(#decl.depends_on([#(#deps),*]));
        }
        field_decls.push(decl);

        let flag = format_ident!("flag_{}_as_stale", f);
        let flag_with = format_ident!("flag_{}_as_stale_and_recalculate", f);
        let recalc = format_ident!("recalculate_{}", f);
        let doc_read = format!(
            "Reads `{f_str}`: the stored value if fresh, else recalculated now and stored."
        );
        let doc_flag = format!("Flags `{f_str}` as stale; eager or lazy per the global switch.");
        let doc_flag_with = format!(
            "Flags `{f_str}` as stale; `and_recalculate` chooses eager (worker) or lazy (next read)."
        );
        let doc_recalc = format!("Reloads the row and recalculates `{f_str}` now.");
        methods.push(quote! {
            #[doc = #doc_read]
            #vis fn #f<'a, 'c: 'a>(
                &'a self,
                db: impl #krate::Target<'c> + 'a,
            ) -> #krate::Read<'a, #ty> {
                #p::read_field(self, #f_str, &self.#f, db)
            }
            #[doc = #doc_flag]
            #vis async fn #flag<'c>(&self, db: impl #krate::Target<'c>) -> #krate::Result<()> {
                #p::flag::<Self>(
                    #krate::CachedModel::primary_key(self), #f_str, ::core::option::Option::None, db,
                ).await?;
                self.#f.mark_stale();
                ::core::result::Result::Ok(())
            }
            #[doc = #doc_flag_with]
            #vis async fn #flag_with<'c>(
                &self,
                db: impl #krate::Target<'c>,
                and_recalculate: impl ::core::convert::Into<#krate::Recalculate>,
            ) -> #krate::Result<()> {
                #p::flag::<Self>(
                    #krate::CachedModel::primary_key(self), #f_str, ::core::option::Option::Some(and_recalculate.into()), db,
                ).await?;
                self.#f.mark_stale();
                ::core::result::Result::Ok(())
            }
            #[doc = #doc_recalc]
            #vis async fn #recalc<'c>(&self, db: impl #krate::Target<'c>) -> #krate::Result<#ty> {
                let fresh = #p::recalculate::<Self>(
                    #krate::CachedModel::primary_key(self), #f_str, db,
                ).await?;
                self.#f.replace_with(&fresh.#f);
                fresh.#f.stored().ok_or_else(|| #krate::Error::RowNotFound {
                    table: #table.to_owned(),
                    key: #krate::CachedModel::primary_key(self),
                })
            }
        });
        if c.temporal {
            let expire = format_ident!("expire_{}_after", f);
            let doc = format!(
                "Makes `{f_str}` stale at `when` (a date means midnight UTC); the worker recalculates it then."
            );
            methods.push(quote! {
                #[doc = #doc]
                #vis async fn #expire<'c>(
                    &self,
                    db: impl #krate::Target<'c>,
                    when: impl ::core::convert::Into<#krate::Expiry>,
                ) -> #krate::Result<()> {
                    #p::expire_after(self, #f_str, when, db).await
                }
            });
        }
    }

    let plain_inits = m.plain.iter().map(|f| {
        let id = &f.ident;
        let col = id.to_string();
        if f.skip {
            quote!(#id: ::core::default::Default::default())
        } else {
            quote!(#id: #p::sqlx::Row::try_get(row, #col)?)
        }
    });
    let plain_bounds = m.plain.iter().filter(|f| !f.skip).map(|f| {
        let ty = &f.ty;
        quote!(#ty: #p::sqlx::Decode<'r, R::Database> + #p::sqlx::Type<R::Database>)
    });
    let cached_inits = m.cached.iter().enumerate().map(|(i, c)| {
        let id = &c.ident;
        quote!(#id: #krate::Cached::decode(row, __model.fields()[#i].columns())?)
    });

    quote! {
        const _: () = {
            #(#calc_fns)*

            impl #krate::CachedModel for #name {
                fn model() -> #krate::Result<&'static #krate::model::Model<Self>> {
                    static MODEL: ::std::sync::OnceLock<
                        #krate::Result<#krate::model::Model<#name>>,
                    > = ::std::sync::OnceLock::new();
                    MODEL
                        .get_or_init(|| {
                            #krate::model::Model::<#name>::builder(#table)
                                .primary_key(#pk_str)
                                .key_of_model()
                                .rows(#krate::model::Decoders::all())
                                .columns([#(#plain_cols),*])
                                #(.field(#field_decls))*
                                .build()
                        })
                        .as_ref()
                        .map_err(::core::clone::Clone::clone)
                }
                type Key = #pk_ty;
                fn primary_key(&self) -> #krate::Key {
                    #p::key_of::<Self>(&self.#pk)
                }
            }

            impl<'r, R> #p::sqlx::FromRow<'r, R> for #name
            where
                R: #krate::CachedRow,
                for<'a> &'a str: #p::sqlx::ColumnIndex<R>,
                #(#plain_bounds,)*
            {
                fn from_row(row: &'r R) -> ::core::result::Result<Self, #p::sqlx::Error> {
                    let __model = <#name as #krate::CachedModel>::model()
                        .map_err(|e| #p::sqlx::Error::Decode(::std::boxed::Box::new(e)))?;
                    ::core::result::Result::Ok(#name {
                        #(#plain_inits,)*
                        #(#cached_inits,)*
                    })
                }
            }

            impl #name {
                #(#methods)*
            }
        };
    }
}
