//! Parsing of the `#[state(...)]` struct attribute and the `#[reducer(...)]` field attribute.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, Error, ExprPath, Ident, LitStr, Meta, Path, Token};

use super::Errors;

/// The reducers named by a bare word, in the order the error messages list them.
const BUILTIN_NAMES: &str = "`overwrite`, `append`, `add`, `min`, `max`, `merge`, `union`";

/// The settings of `#[state(...)]` on the struct.
#[derive(Default)]
pub(crate) struct StructAttrs {
    /// `update = Name`: the name of the generated update type.
    pub(crate) update: Option<Ident>,
    /// `crate = path`: the crate that generated code names instead of `::agentgraph`.
    pub(crate) krate: Option<Path>,
    /// `version = N`: the state type's version (`State::VERSION`).
    pub(crate) version: Option<syn::LitInt>,
    /// `#[serde(default)]` on the struct: every field has a default, from the struct's.
    pub(crate) serde_default: bool,
}

impl StructAttrs {
    /// Reads every `#[state(...)]` attribute of the struct, and rejects `#[reducer]` there.
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut out = StructAttrs::default();
        for attr in attrs {
            if attr.path().is_ident("reducer") {
                errors.push(Error::new_spanned(
                    attr,
                    "`#[reducer(...)]` goes on a field, not on the struct",
                ));
                continue;
            }
            if attr.path().is_ident("serde") {
                if matches!(serde_default(attr), Some(SerdeDefault::Default)) {
                    out.serde_default = true;
                }
                continue;
            }
            if !attr.path().is_ident("state") {
                continue;
            }
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("update") {
                    if out.update.is_some() {
                        return Err(meta.error("duplicate `update` in `#[state(...)]`"));
                    }
                    out.update = Some(ident_or_str(meta.value()?)?);
                    Ok(())
                } else if meta.path.is_ident("crate") {
                    if out.krate.is_some() {
                        return Err(meta.error("duplicate `crate` in `#[state(...)]`"));
                    }
                    out.krate = Some(path_or_str(meta.value()?)?);
                    Ok(())
                } else if meta.path.is_ident("version") {
                    if out.version.is_some() {
                        return Err(meta.error("duplicate `version` in `#[state(...)]`"));
                    }
                    let lit: syn::LitInt = meta.value()?.parse().map_err(|e| {
                        Error::new(e.span(), "expected a version number, like `version = 2`")
                    })?;
                    match lit.base10_parse::<u32>() {
                        Ok(0) | Err(_) => {
                            return Err(Error::new(
                                lit.span(),
                                "a state's version is a number from 1 (a `u32`)",
                            ));
                        }
                        Ok(_) => {}
                    }
                    out.version = Some(lit);
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown setting in `#[state(...)]`; expected `update = Name`, \
                         `crate = path` or `version = N`",
                    ))
                }
            });
            if let Err(e) = result {
                errors.push(e);
            }
        }
        out
    }
}

/// `Name` or `"Name"`.
fn ident_or_str(input: ParseStream<'_>) -> syn::Result<Ident> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return lit.parse::<Ident>().map_err(|_| {
            Error::new(
                lit.span(),
                "expected the name of a type, like `update = CounterUpdate`",
            )
        });
    }
    input.parse::<Ident>().map_err(|e| {
        Error::new(
            e.span(),
            "expected the name of a type, like `update = CounterUpdate`",
        )
    })
}

/// `some::path` or `"some::path"`.
fn path_or_str(input: ParseStream<'_>) -> syn::Result<Path> {
    const MSG: &str = "expected the path of the `agentgraph` crate, like `crate = ::agentgraph`";
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return lit
            .parse_with(Path::parse_mod_style)
            .map_err(|_| Error::new(lit.span(), MSG));
    }
    Path::parse_mod_style(input).map_err(|e| Error::new(e.span(), MSG))
}

/// A reducer named by a bare word in `#[reducer(...)]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    Overwrite,
    Append,
    Add,
    Min,
    Max,
    Merge,
    Union,
}

impl Builtin {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "overwrite" => Builtin::Overwrite,
            "append" => Builtin::Append,
            "add" => Builtin::Add,
            "min" => Builtin::Min,
            "max" => Builtin::Max,
            "merge" => Builtin::Merge,
            "union" => Builtin::Union,
            _ => return None,
        })
    }

    /// The name in the attribute, which is also the function in `reducer` and, capitalised,
    /// the `ReducerKind` variant.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Builtin::Overwrite => "overwrite",
            Builtin::Append => "append",
            Builtin::Add => "add",
            Builtin::Min => "min",
            Builtin::Max => "max",
            Builtin::Merge => "merge",
            Builtin::Union => "union",
        }
    }

    pub(crate) fn variant(self) -> &'static str {
        match self {
            Builtin::Overwrite => "Overwrite",
            Builtin::Append => "Append",
            Builtin::Add => "Add",
            Builtin::Min => "Min",
            Builtin::Max => "Max",
            Builtin::Merge => "Merge",
            Builtin::Union => "Union",
        }
    }
}

/// The reducer of one field.
pub(crate) enum Reducer {
    /// A reducer of `agentgraph::reducer`; the span is the attribute's name, or the field's type
    /// for the default.
    Builtin(Builtin, Span),
    /// `with = path`: a user function `fn(&mut T, T)`.
    With(ExprPath),
}

impl Reducer {
    /// Reads the field's `#[reducer(...)]` attribute; `overwrite` when there is none.
    pub(crate) fn parse(attrs: &[Attribute], default_span: Span, errors: &mut Errors) -> Self {
        let mut found: Option<Reducer> = None;
        let mut seen = false;
        for attr in attrs {
            if attr.path().is_ident("state") {
                errors.push(Error::new_spanned(
                    attr,
                    "`#[state(...)]` goes on the struct; a field takes `#[reducer(...)]`",
                ));
                continue;
            }
            if !attr.path().is_ident("reducer") {
                continue;
            }
            if seen {
                errors.push(Error::new_spanned(
                    attr,
                    "duplicate `#[reducer]` attribute: a field has exactly one reducer",
                ));
                continue;
            }
            seen = true;
            match parse_reducer_attr(attr) {
                Ok(reducer) => found = Some(reducer),
                Err(e) => errors.push(e),
            }
        }
        found.unwrap_or(Reducer::Builtin(Builtin::Overwrite, default_span))
    }
}

fn parse_reducer_attr(attr: &Attribute) -> syn::Result<Reducer> {
    let missing = || {
        Error::new_spanned(
            attr,
            format!(
                "`#[reducer]` needs a reducer, like `#[reducer(append)]`; expected one of \
                 {BUILTIN_NAMES}, or `with = path::to::function`"
            ),
        )
    };
    match &attr.meta {
        Meta::List(list) if list.tokens.is_empty() => Err(missing()),
        Meta::List(list) => reducer_args.parse2(list.tokens.clone()),
        Meta::Path(_) => Err(missing()),
        Meta::NameValue(nv) => Err(Error::new_spanned(
            nv,
            "expected `#[reducer(name)]`, like `#[reducer(append)]`, not `#[reducer = ...]`",
        )),
    }
}

/// The inside of `#[reducer(...)]`: `name` or `with = path`.
fn reducer_args(input: ParseStream<'_>) -> syn::Result<Reducer> {
    let name = Ident::parse_any(input).map_err(|e| {
        Error::new(
            e.span(),
            format!(
                "expected the name of a reducer: one of {BUILTIN_NAMES}, or \
                 `with = path::to::function`"
            ),
        )
    })?;
    let name_str = name.unraw().to_string();
    let reducer = if let Some(builtin) = Builtin::from_name(&name_str) {
        Reducer::Builtin(builtin, name.span())
    } else if name_str == "with" {
        Reducer::With(with_path(&name, input)?)
    } else {
        return Err(Error::new(
            name.span(),
            format!(
                "unknown reducer `{name_str}`; expected one of {BUILTIN_NAMES}, or \
                 `with = path::to::function` for your own `fn(&mut T, T)`"
            ),
        ));
    };
    // One trailing comma is fine; anything else is a mistake.
    if input.peek(Token![,]) && input.peek2(syn::parse::End) {
        input.parse::<Token![,]>()?;
    }
    if input.is_empty() {
        return Ok(reducer);
    }
    let takes_value = input.peek(Token![=]) && matches!(reducer, Reducer::Builtin(..));
    let rest: TokenStream = input.parse()?;
    let message = if takes_value {
        format!(
            "`{name_str}` takes no value: write `#[reducer({name_str})]`, or \
             `#[reducer(with = path::to::function)]` for a function of your own"
        )
    } else {
        "unexpected tokens after the reducer: a field takes exactly one reducer, like \
         `#[reducer(append)]`"
            .to_owned()
    };
    Err(Error::new_spanned(rest, message))
}

/// The `= path` after `with`.
fn with_path(with: &Ident, input: ParseStream<'_>) -> syn::Result<ExprPath> {
    const EXAMPLE: &str = "like `#[reducer(with = my::fold)]`, where `fold` is a `fn(&mut T, T)`";
    if !input.peek(Token![=]) {
        return Err(Error::new(
            with.span(),
            format!("`with` needs the path of a function, {EXAMPLE}"),
        ));
    }
    let eq: Token![=] = input.parse()?;
    if input.is_empty() {
        return Err(Error::new(
            eq.span,
            format!("expected the path of a function after `with =`, {EXAMPLE}"),
        ));
    }
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(Error::new(
            lit.span(),
            format!(
                "expected a path, not a string: write `with = {}` without quotes",
                lit.value()
            ),
        ));
    }
    let path: ExprPath = input.parse().map_err(|e| {
        Error::new(
            e.span(),
            format!("expected the path of a function after `with =`, {EXAMPLE}"),
        )
    })?;
    if let Some(attr) = path.attrs.first() {
        return Err(Error::new_spanned(
            attr,
            "unexpected attribute in `with = ...`",
        ));
    }
    Ok(path)
}

/// A `default` in a `#[serde(...)]` attribute.
pub(crate) enum SerdeDefault {
    /// `default`: the type's `Default`.
    Default,
    /// `default = "path"`: a function.
    Path(ExprPath),
}

/// The `default` setting of a `#[serde(...)]` attribute, if it has one (serde checks the rest).
pub(crate) fn serde_default(attr: &Attribute) -> Option<SerdeDefault> {
    let Meta::List(list) = &attr.meta else {
        return None;
    };
    let tokens: Vec<proc_macro2::TokenTree> = list.tokens.clone().into_iter().collect();
    for item in
        tokens.split(|t| matches!(t, proc_macro2::TokenTree::Punct(p) if p.as_char() == ','))
    {
        match item {
            [proc_macro2::TokenTree::Ident(i)] if i == "default" => {
                return Some(SerdeDefault::Default);
            }
            [
                proc_macro2::TokenTree::Ident(i),
                proc_macro2::TokenTree::Punct(eq),
                proc_macro2::TokenTree::Literal(lit),
            ] if i == "default" && eq.as_char() == '=' => {
                let lit: LitStr =
                    syn::parse2(proc_macro2::TokenTree::Literal(lit.clone()).into()).ok()?;
                return lit.parse::<ExprPath>().ok().map(SerdeDefault::Path);
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use quote::ToTokens;
    use syn::parse_quote;

    use super::*;

    fn reducer(attrs: &[Attribute]) -> syn::Result<Reducer> {
        let mut errors = Errors::default();
        let reducer = Reducer::parse(attrs, Span::call_site(), &mut errors);
        errors.finish().map(|()| reducer)
    }

    fn builtin(attrs: &[Attribute]) -> Builtin {
        match reducer(attrs) {
            Ok(Reducer::Builtin(builtin, _)) => builtin,
            _ => panic!("expected a builtin reducer"),
        }
    }

    #[test]
    fn builtin_names() {
        assert!(matches!(builtin(&[]), Builtin::Overwrite));
        for name in ["overwrite", "append", "add", "min", "max", "merge", "union"] {
            let ident = Ident::new(name, Span::call_site());
            let attr: Attribute = parse_quote!(#[reducer(#ident)]);
            assert_eq!(builtin(&[attr]).name(), name);
        }
        assert!(matches!(
            builtin(&[parse_quote!(#[reducer(add,)])]),
            Builtin::Add
        ));
    }

    #[test]
    fn with_path() {
        let attr: Attribute = parse_quote!(#[reducer(with = a::b::<u8>)]);
        match reducer(&[attr]) {
            Ok(Reducer::With(path)) => {
                assert_eq!(
                    super::super::tokens_text(path.to_token_stream()),
                    "a::b::<u8>"
                );
            }
            _ => panic!("expected `with`"),
        }
    }

    #[test]
    fn mistakes() {
        let cases: [(Attribute, &str); 7] = [
            (parse_quote!(#[reducer(sum)]), "unknown reducer `sum`"),
            (parse_quote!(#[reducer]), "needs a reducer"),
            (parse_quote!(#[reducer()]), "needs a reducer"),
            (parse_quote!(#[reducer(with)]), "`with` needs the path"),
            (
                parse_quote!(#[reducer(with =)]),
                "expected the path of a function",
            ),
            (parse_quote!(#[reducer(add, max)]), "exactly one reducer"),
            (parse_quote!(#[reducer(add = 1)]), "`add` takes no value"),
        ];
        for (attr, message) in cases {
            let error = reducer(&[attr]).err().expect("an error");
            assert!(error.to_string().contains(message), "{error}");
        }
    }
}
