//! Routers without code: a conditional edge's `route`, a small expression over the state
//! (Rhai's expression mode, sandboxed), that returns a target's name or a list of them.
//!
//! The sandbox: no statements (no loops, no `let`), no closures or functions, no modules, no
//! clock, no `eval`, no printing, nothing that reads or writes outside the expression; so its
//! time is bounded by its length and the sizes below. The text at most
//! [`MAX_EXPR_BYTES`] long, its nesting at most [`MAX_EXPR_DEPTH`] deep (checked while
//! parsing, so a deep expression is refused before it can exhaust the stack), and each
//! evaluation at most [`MAX_EXPR_OPERATIONS`] operations, strings of [`MAX_EXPR_STRING`]
//! bytes and arrays and maps of [`MAX_EXPR_ITEMS`] items.

use std::sync::{Arc, OnceLock};

use agentgraph_engine::{DynSchema, DynState, END, Route};
use rhai::packages::{Package, StandardPackage};
use rhai::{AST, Dynamic, Engine, EvalAltResult, Map, ParseError, Scope};
use serde_json::Value;

/// The longest expression read, in bytes.
///
/// # Examples
///
/// ```
/// use agentgraph_spec::{GraphSpec, NodeRegistry, MAX_EXPR_BYTES};
/// let route = format!("'{}\"b\"'", "1 + ".repeat(MAX_EXPR_BYTES));
/// let text = format!("version: 1\nnodes:\n  - {{ name: a, kind: set }}\n  - {{ name: b, kind: set }}\nedges:\n  - {{ from: START, to: a }}\n  - {{ from: a, route: {route}, targets: [b] }}\n  - {{ from: b, to: END }}\n");
/// let errors = GraphSpec::from_yaml_str("g.yaml", &text)?.compile(&NodeRegistry::builtin()).unwrap_err();
/// assert!(errors.to_string().contains("the most is 4096"), "{errors}");
/// # Ok::<(), agentgraph_spec::SpecErrors>(())
/// ```
pub const MAX_EXPR_BYTES: usize = 4096;

/// How deep an expression may nest (parentheses, calls, indexing, operators).
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_spec::MAX_EXPR_DEPTH, 32);
/// ```
pub const MAX_EXPR_DEPTH: usize = 32;

/// The operations one evaluation may take (every operator, call and variable read counts).
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_spec::MAX_EXPR_OPERATIONS, 100_000);
/// ```
pub const MAX_EXPR_OPERATIONS: u64 = 100_000;

/// The longest string an evaluation may make, in bytes.
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_spec::MAX_EXPR_STRING, 65_536);
/// ```
pub const MAX_EXPR_STRING: usize = 64 << 10;

/// The most items an array or map made by an evaluation may hold.
///
/// # Examples
///
/// ```
/// assert_eq!(agentgraph_spec::MAX_EXPR_ITEMS, 10_000);
/// ```
pub const MAX_EXPR_ITEMS: usize = 10_000;

/// The one engine every expression runs on: the standard package (arithmetic, logic,
/// strings, arrays, maps; no clock, no modules), `eval` disabled, printing ignored.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut engine = Engine::new_raw();
        engine.register_global_module(StandardPackage::new().as_shared_module());
        engine.disable_symbol("eval");
        engine.on_print(|_| {});
        engine.on_debug(|_, _, _| {});
        engine.set_strict_variables(true);
        // No evaluation while compiling: everything an expression does runs counted, under
        // the limits below.
        engine.set_optimization_level(rhai::OptimizationLevel::None);
        engine.set_max_expr_depths(MAX_EXPR_DEPTH, MAX_EXPR_DEPTH / 2);
        engine.set_max_call_levels(MAX_EXPR_DEPTH / 2);
        engine.set_max_operations(MAX_EXPR_OPERATIONS);
        engine.set_max_string_size(MAX_EXPR_STRING);
        engine.set_max_array_size(MAX_EXPR_ITEMS);
        engine.set_max_map_size(MAX_EXPR_ITEMS);
        // No closures: Rhai counts the operations of a closure called by `map` or `filter`
        // apart from its caller's, so nested ones would multiply past the limit.
        engine.set_max_functions(0);
        engine
    })
}

/// A compiled `route` expression: the state's fields it names, and the targets it may choose.
#[derive(Clone)]
pub(crate) struct RouteExpr {
    ast: Arc<AST>,
    /// The fields it reads as variables: (index in the schema, name).
    fields: Arc<[(usize, String)]>,
    /// Whether it reads `state` (every field, as a map).
    whole_state: bool,
    /// The declared targets, as the file names them.
    targets: Arc<[String]>,
    /// The edge, for errors: `edge 3 (line 12, column 14)`.
    edge: Arc<str>,
}

/// Why an expression is refused, with the position inside it (line and column from 1) when
/// the parser gives one.
#[derive(Debug)]
pub(crate) struct ExprError {
    pub(crate) message: String,
    pub(crate) at: Option<(usize, usize)>,
}

/// Whether `name` can be written as a variable in an expression.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name != "state"
        && !is_keyword(name)
}

fn is_keyword(name: &str) -> bool {
    matches!(
        name,
        "true"
            | "false"
            | "let"
            | "const"
            | "if"
            | "else"
            | "switch"
            | "do"
            | "while"
            | "until"
            | "loop"
            | "for"
            | "in"
            | "continue"
            | "break"
            | "return"
            | "throw"
            | "try"
            | "catch"
            | "fn"
            | "private"
            | "import"
            | "export"
            | "as"
            | "global"
            | "this"
            | "is"
            | "Fn"
            | "call"
            | "curry"
            | "is_def_var"
            | "is_def_fn"
            | "is_shared"
            | "type_of"
            | "print"
            | "debug"
            | "eval"
    )
}

impl RouteExpr {
    /// Compiles `text` over the fields of `schema`: its length, nesting and syntax, and every
    /// variable it reads (a field, or `state`).
    pub(crate) fn compile(
        text: &str,
        schema: &DynSchema,
        targets: Vec<String>,
        edge: String,
    ) -> Result<Self, ExprError> {
        if text.len() > MAX_EXPR_BYTES {
            return Err(ExprError {
                message: format!(
                    "the expression is {} bytes long; the most is {MAX_EXPR_BYTES}",
                    text.len()
                ),
                at: None,
            });
        }
        if text.trim().is_empty() {
            return Err(ExprError {
                message: "the expression is empty".to_owned(),
                at: None,
            });
        }
        // The variables it may read, for the strict check: their values do not matter here.
        let mut scope = Scope::new();
        let mut fields = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if is_identifier(field.name) {
                // Variables, not constants: constants would be folded into the expression.
                scope.push(field.name, Dynamic::UNIT);
                fields.push((i, field.name.to_owned()));
            }
        }
        scope.push("state", Dynamic::UNIT);
        let ast = engine()
            .compile_expression_with_scope(&scope, text)
            .map_err(|e| parse_error(&e, schema))?;
        // Only the fields it names are handed to it on each call.
        let named = identifiers(text);
        fields.retain(|(_, name)| named.iter().any(|n| n == name));
        let whole_state = named.contains(&"state");
        Ok(RouteExpr {
            ast: Arc::new(ast),
            fields: fields.into(),
            whole_state,
            targets: targets.into(),
            edge: edge.into(),
        })
    }

    /// Evaluates it on `state`: the value it returns, or what went wrong.
    fn eval(&self, state: &DynState) -> Result<Dynamic, Box<EvalAltResult>> {
        let mut scope = Scope::new();
        let values = state.values();
        for (i, name) in self.fields.iter() {
            scope.push_constant(name.as_str(), to_dynamic(&values[*i]));
        }
        if self.whole_state {
            let map: Map = state
                .schema()
                .fields()
                .iter()
                .zip(values)
                .map(|(f, v)| (f.name.into(), to_dynamic(v)))
                .collect();
            scope.push_constant("state", Dynamic::from_map(map));
        }
        engine().eval_ast_with_scope::<Dynamic>(&mut scope, &self.ast)
    }

    /// Where the edge goes on `state`: the target (or targets) the expression chose, or a
    /// route that fails the run with an error naming the edge.
    pub(crate) fn route(&self, state: &DynState) -> Route {
        match self
            .eval(state)
            .map_err(|e| eval_message(&e))
            .and_then(|v| self.choice(v))
        {
            Ok(route) => route,
            Err(message) => Route::fail(format!("{}: {message}", self.edge)),
        }
    }

    /// Checks the expression on `state` for its limits only (the operations, sizes and depth
    /// it takes): what it returns, or a failure of another kind, is left to the run.
    pub(crate) fn check_limits(&self, state: &DynState) -> Result<(), String> {
        match self.eval(state) {
            Err(e) if is_limit(&e) => Err(eval_message(&e)),
            _ => Ok(()),
        }
    }

    /// The route a returned value means.
    fn choice(&self, value: Dynamic) -> Result<Route, String> {
        if value.is_string() {
            let name = value.into_string().unwrap_or_default();
            return self.target(&name).map(|t| Route::to([t]));
        }
        if value.is_array() {
            let items = value.into_array().unwrap_or_default();
            let mut chosen = Vec::with_capacity(items.len());
            for item in items {
                let Ok(name) = item.clone().into_string() else {
                    return Err(format!(
                        "the expression returned a list with {} `{item}`, not a target's name",
                        article(item.type_name())
                    ));
                };
                chosen.push(self.target(&name)?);
            }
            return Ok(Route::to(chosen));
        }
        if value.is_unit() {
            return Err(
                "the expression returned nothing (an `if` without `else`?), not a target's name"
                    .to_owned(),
            );
        }
        Err(format!(
            "the expression returned {} `{value}`, not a target's name or a list of them",
            article(value.type_name())
        ))
    }

    /// The engine's name of a declared target.
    fn target(&self, name: &str) -> Result<String, String> {
        if self.targets.iter().any(|t| t == name) {
            return Ok(if name == "END" {
                END.to_owned()
            } else {
                name.to_owned()
            });
        }
        let hint = crate::did_you_mean(name, self.targets.iter().map(String::as_str))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        Err(format!(
            "the expression chose `{name}`, which is not one of the edge's targets ({}){hint}",
            self.targets.join(", ")
        ))
    }
}

fn article(type_name: &str) -> String {
    let short = type_name.rsplit("::").next().unwrap_or(type_name);
    let an = short.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {short}", if an { "an" } else { "a" })
}

/// The identifiers in `text`, outside string literals (a superset of the variables it reads).
fn identifiers(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' || c == b'`' || c == b'\'' {
            i += 1;
            while i < bytes.len() && bytes[i] != c {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(&text[start..i]);
        } else {
            i += 1;
        }
    }
    out
}

/// A JSON value as Rhai sees it: numbers as integers where they are whole, objects as maps.
fn to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Object(map) => Dynamic::from_map(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
                .collect(),
        ),
    }
}

fn parse_error(e: &ParseError, schema: &DynSchema) -> ExprError {
    use rhai::ParseErrorType as P;
    let message = match &*e.0 {
        P::TooManyFunctions => {
            "closures (`|x| ...`) are not allowed in an expression: it has no loops and no functions of its own".to_owned()
        }
        P::ExprTooDeep => {
            format!("the expression nests more than {MAX_EXPR_DEPTH} levels deep")
        }
        P::VariableUndefined(name) => {
            let known = schema
                .fields()
                .iter()
                .map(|f| f.name)
                .filter(|n| is_identifier(n))
                .chain(["state"]);
            let hint = crate::did_you_mean(name, known)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            format!(
                "the expression reads `{name}`, which is not a field of the state{hint}; a field whose name is not an identifier is `state[\"name\"]`"
            )
        }
        other => format!("the expression does not parse: {other}"),
    };
    let at = e.1.line().map(|line| (line, e.1.position().unwrap_or(1)));
    ExprError { message, at }
}

/// Whether an evaluation failed on one of the sandbox's limits.
fn is_limit(e: &EvalAltResult) -> bool {
    matches!(
        e,
        EvalAltResult::ErrorTooManyOperations(..)
            | EvalAltResult::ErrorDataTooLarge(..)
            | EvalAltResult::ErrorStackOverflow(..)
            | EvalAltResult::ErrorTooManyVariables(..)
    ) || matches!(e, EvalAltResult::ErrorInFunctionCall(_, _, inner, _) if is_limit(inner))
}

fn eval_message(e: &EvalAltResult) -> String {
    match e {
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "the expression took more than {MAX_EXPR_OPERATIONS} operations (the most one evaluation may take)"
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => format!(
            "the expression made a value larger than the sandbox allows ({what}; at most {MAX_EXPR_STRING} bytes for a string, {MAX_EXPR_ITEMS} items for an array or map)"
        ),
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) if is_limit(inner) => {
            eval_message(inner)
        }
        other => {
            let text = other.to_string();
            match text.rfind(" (line ") {
                Some(at) => text[..at].to_owned(),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_skip_strings() {
        assert_eq!(
            identifiers(r#"if score > 0.5 { "good" } else { state["x y"] }"#),
            ["if", "score", "else", "state"]
        );
    }
}
