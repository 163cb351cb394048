//! `#[derive(State)]`: checks the input, reads the attributes, and hands a [`StateDef`] to
//! [`codegen`].

mod attr;
mod codegen;

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::quote;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Fields, Path, Type, Visibility};

use attr::{Reducer, StructAttrs};

/// Expands `#[derive(State)]` on `input`.
pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let fields = named_fields(&input)?;
    if !input.generics.params.is_empty() {
        errors.push(Error::new_spanned(
            &input.generics,
            "`#[derive(State)]` does not support generic structs: a graph state is one concrete \
             type; use concrete field types, or a type alias per instantiation",
        ));
    } else if let Some(where_clause) = &input.generics.where_clause {
        errors.push(Error::new_spanned(
            where_clause,
            "`#[derive(State)]` does not support `where` clauses",
        ));
    }
    let attrs = StructAttrs::parse(&input.attrs, &mut errors);

    let name = &input.ident;
    let update = attrs
        .update
        .unwrap_or_else(|| Ident::new(&format!("{}Update", name.unraw()), name.span()));
    let mut state_fields = Vec::with_capacity(fields.named.len());
    for field in &fields.named {
        let ident = field.ident.clone().expect("named fields have names");
        let ty = replace_self(&field.ty, name);
        let reducer = Reducer::parse(&field.attrs, field.ty.span(), &mut errors);
        let default = field
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("serde"))
            .find_map(attr::serde_default);
        for generated in ["new", "is_empty"] {
            if ident.unraw() == generated {
                errors.push(Error::new(
                    ident.span(),
                    format!(
                        "a field named `{generated}` clashes with the generated \
                         `{update}::{generated}`; rename the field"
                    ),
                ));
            }
        }
        state_fields.push(StateField {
            ident,
            ty,
            reducer,
            default,
        });
    }
    errors.finish()?;

    let def = StateDef {
        vis: &input.vis,
        name,
        update,
        root: attrs
            .krate
            .unwrap_or_else(|| syn::parse_quote!(::agentgraph)),
        fields: state_fields,
        version: attrs.version,
        serde_default: attrs.serde_default,
    };
    Ok(codegen::generate(&def))
}

/// A checked `#[derive(State)]` input.
struct StateDef<'a> {
    vis: &'a Visibility,
    name: &'a Ident,
    /// The name of the generated update type.
    update: Ident,
    /// The crate whose `__private` module generated code names.
    root: Path,
    fields: Vec<StateField>,
    /// `#[state(version = N)]`.
    version: Option<syn::LitInt>,
    /// `#[serde(default)]` on the struct.
    serde_default: bool,
}

struct StateField {
    ident: Ident,
    /// The field's type with `Self` replaced by the state's name, so that it means the same in
    /// the update type.
    ty: TokenStream,
    reducer: Reducer,
    /// `#[serde(default)]` or `#[serde(default = "path")]` on the field.
    default: Option<attr::SerdeDefault>,
}

/// The fields of a struct with named fields, or an error pointing at what else it is.
fn named_fields(input: &DeriveInput) -> syn::Result<&syn::FieldsNamed> {
    const NEED: &str = "`#[derive(State)]` needs a struct with named fields, each with its own \
                        reducer";
    let name = &input.ident;
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => Ok(fields),
            Fields::Unnamed(fields) => Err(Error::new_spanned(
                fields,
                format!("{NEED}; name the fields of this tuple struct: `struct {name} {{ .. }}`"),
            )),
            Fields::Unit => Err(Error::new_spanned(
                {
                    let semi = &data.semi_token;
                    quote!(#name #semi)
                },
                format!(
                    "{NEED}; `{name}` is a unit struct: write `struct {name} {{}}` for a state \
                     without fields"
                ),
            )),
        },
        Data::Enum(data) => Err(Error::new_spanned(
            {
                let token = &data.enum_token;
                quote!(#token #name)
            },
            format!("{NEED}; enums are not supported"),
        )),
        Data::Union(data) => Err(Error::new_spanned(
            {
                let token = &data.union_token;
                quote!(#token #name)
            },
            format!("{NEED}; unions are not supported"),
        )),
    }
}

/// `ty` with every `Self` replaced by `name`.
fn replace_self(ty: &Type, name: &Ident) -> TokenStream {
    fn walk(tokens: TokenStream, name: &Ident) -> TokenStream {
        tokens
            .into_iter()
            .map(|tt| match tt {
                TokenTree::Ident(ident) if ident == "Self" => {
                    TokenTree::Ident(Ident::new(&name.to_string(), ident.span()))
                }
                TokenTree::Group(group) => {
                    let mut new =
                        proc_macro2::Group::new(group.delimiter(), walk(group.stream(), name));
                    new.set_span(group.span());
                    TokenTree::Group(new)
                }
                other => other,
            })
            .collect()
    }
    walk(quote!(#ty), name)
}

/// Tokens as written, without the spaces that printing puts between punctuation:
/// `::agentgraph`, `my::fold::<u32>`, `<T as Trait>::f`.
fn tokens_text(tokens: TokenStream) -> String {
    let printed = tokens.to_string();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let chars: Vec<char> = printed.chars().collect();
    let mut out = String::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        let between_words =
            out.chars().last().is_some_and(word) && chars.get(i + 1).is_some_and(|&n| word(n));
        if c != ' ' || between_words {
            out.push(c);
        }
    }
    out
}

/// Errors gathered while reading the input, so that all of them are reported at once.
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_text_drops_spaces_between_punctuation_only() {
        let cases = [
            (quote!(::agentgraph), "::agentgraph"),
            (quote!(my::fold), "my::fold"),
            (quote!(my::fold::<Vec<u8>, u32>), "my::fold::<Vec<u8>,u32>"),
            (quote!(<T as Trait>::f), "<T as Trait>::f"),
        ];
        for (tokens, text) in cases {
            assert_eq!(tokens_text(tokens), text);
        }
    }

    #[test]
    fn replace_self_reaches_into_groups() {
        let ty: Type = syn::parse_quote!(Vec<(Self, Option<Box<Self>>)>);
        let name = Ident::new("Foo", proc_macro2::Span::call_site());
        assert_eq!(
            tokens_text(replace_self(&ty, &name)),
            "Vec<(Foo,Option<Box<Foo>>)>"
        );
    }

    #[test]
    fn errors_are_gathered() {
        let input: DeriveInput = syn::parse_quote! {
            struct S<T> {
                #[reducer(sum)]
                a: T,
                #[reducer(add)]
                #[reducer(add)]
                b: u8,
            }
        };
        let error = expand(input).unwrap_err();
        assert_eq!(error.into_iter().count(), 3);
    }
}
