//! `#[derive(CachedModel)]` for `cached-fields`; use it through the
//! `cached-fields` crate, which re-exports it.

use proc_macro::TokenStream;

mod attr;
mod expand;

/// Declares a model with cached fields. See the `cached-fields` crate docs.
#[proc_macro_derive(CachedModel, attributes(cached_model, cached))]
pub fn derive_cached_model(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    // Parse and validate the attributes, then expand; on a mistake, its one
    // error and impls that keep the rest of the crate from erroring too.
    match attr::parse(&input) {
        Ok(m) => expand::expand(&input, &m).into(),
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(expand::fallback(&input));
            out.into()
        }
    }
}
