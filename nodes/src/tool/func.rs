//! Tools made from async functions with a typed argument struct.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use agentgraph_engine::BoxError;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    ArgumentError, ArgumentsValidator, Tool, ToolContext, ToolError, ToolFuture, ToolOutput,
};
use crate::message::Content;

type Handler = dyn Fn(Value, ToolContext) -> ToolFuture<'static> + Send + Sync;

/// A tool made from an async function by [`tool_fn`] or [`tool_fn_with_context`].
///
/// Its schema is derived from the argument type with schemars; each call checks the
/// arguments against it (every failure listed in [`ToolError::InvalidArguments`]), then
/// deserializes them into the argument type, then runs the function. Its result is
/// serialized to JSON: a string becomes a text result, anything else a JSON result.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::{Tool, tool_fn};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Echo {
///     /// What to say back.
///     text: String,
/// }
///
/// let echo = tool_fn("echo", "Says it back.", |args: Echo| async move {
///     Ok::<_, std::io::Error>(args.text)
/// });
/// assert_eq!(echo.name(), "echo");
/// assert_eq!(echo.parameters()["properties"]["text"]["description"], "What to say back.");
/// ```
pub struct FnTool {
    name: String,
    description: String,
    schema: Value,
    validator: Result<ArgumentsValidator, String>,
    handler: Arc<Handler>,
}

impl fmt::Debug for FnTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTool")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// A tool from an async function of its arguments: `Args` gives the schema (schemars) and is
/// what the function gets (serde), after the arguments have been checked against the schema.
///
/// `Args` should be a struct (an object schema, as models expect); a tool without arguments
/// takes an empty struct. Doc comments on its fields become the schema's descriptions, which
/// the model reads. The function's error becomes [`ToolError::Failed`].
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::{Tool, ToolContext, ToolError, tool_fn};
/// use serde_json::json;
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Divide {
///     dividend: f64,
///     divisor: f64,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let divide = tool_fn("divide", "Divides two numbers.", |args: Divide| async move {
///     if args.divisor == 0.0 {
///         return Err("division by zero");
///     }
///     Ok(json!({ "quotient": args.dividend / args.divisor }))
/// });
///
/// let ctx = ToolContext::new("k");
/// let out = divide.call(json!({ "dividend": 1, "divisor": 4 }), ctx.clone()).await.unwrap();
/// assert_eq!(out.content, json!({ "quotient": 0.25 }).into());
///
/// let e = divide.call(json!({ "dividend": 1, "divisor": 0 }), ctx.clone()).await.unwrap_err();
/// assert_eq!(e.to_string(), "tool `divide` failed: division by zero");
///
/// let e = divide.call(json!({ "dividend": "one" }), ctx).await.unwrap_err();
/// let ToolError::InvalidArguments { errors, .. } = e else { panic!() };
/// assert_eq!(errors.len(), 2); // a string where a number goes, and no divisor
/// # }
/// ```
pub fn tool_fn<Args, T, E, F, Fut>(
    name: impl Into<String>,
    description: impl Into<String>,
    f: F,
) -> FnTool
where
    Args: JsonSchema + DeserializeOwned + Send + 'static,
    T: Serialize + 'static,
    E: Into<BoxError> + 'static,
    F: Fn(Args) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    tool_fn_with_context(name, description, move |args: Args, _ctx: ToolContext| {
        f(args)
    })
}

/// [`tool_fn`] for a function that also takes the call's [`ToolContext`] (its idempotency
/// key, to dedupe side effects).
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::tool::{Tool, ToolContext, tool_fn_with_context};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Pay {
///     cents: u64,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pay = tool_fn_with_context("pay", "Pays.", |args: Pay, ctx: ToolContext| async move {
///     // A payment API would get the key, and refuse to pay twice for it.
///     Ok::<_, std::io::Error>(format!("paid {} with key {}", args.cents, ctx.idempotency_key()))
/// });
///
/// let out = pay.call(serde_json::json!({ "cents": 250 }), ToolContext::new("t1")).await.unwrap();
/// assert_eq!(out.content.as_text(), Some("paid 250 with key t1"));
/// # }
/// ```
pub fn tool_fn_with_context<Args, T, E, F, Fut>(
    name: impl Into<String>,
    description: impl Into<String>,
    f: F,
) -> FnTool
where
    Args: JsonSchema + DeserializeOwned + Send + 'static,
    T: Serialize + 'static,
    E: Into<BoxError> + 'static,
    F: Fn(Args, ToolContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    let name = name.into();
    let schema = schemars::schema_for!(Args).to_value();
    let validator = ArgumentsValidator::new(&schema);
    let tool = name.clone();
    let handler = move |args: Value, ctx: ToolContext| -> ToolFuture<'static> {
        let args = match serde_json::from_value::<Args>(args) {
            Ok(args) => args,
            Err(e) => {
                let error = ToolError::InvalidArguments {
                    tool: tool.clone(),
                    errors: vec![ArgumentError {
                        pointer: String::new(),
                        keyword: "deserialize".to_owned(),
                        message: e.to_string(),
                    }],
                };
                return Box::pin(std::future::ready(Err(error)));
            }
        };
        let fut = f(args, ctx);
        let tool = tool.clone();
        Box::pin(async move {
            let value = fut.await.map_err(|e| ToolError::failed(&*tool, e))?;
            let value = serde_json::to_value(value).map_err(|e| ToolError::failed(&*tool, e))?;
            Ok(ToolOutput::new(match value {
                Value::String(text) => Content::Text(text),
                other => Content::Json(other),
            }))
        })
    };
    FnTool {
        name,
        description: description.into(),
        schema,
        validator,
        handler: Arc::new(handler),
    }
}

impl Tool for FnTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> &Value {
        &self.schema
    }

    fn call(&self, args: Value, ctx: ToolContext) -> ToolFuture<'_> {
        let validator = match &self.validator {
            Ok(validator) => validator,
            Err(reason) => {
                return Box::pin(std::future::ready(Err(ToolError::InvalidSchema {
                    tool: self.name.clone(),
                    reason: reason.clone(),
                })));
            }
        };
        if let Err(errors) = validator.check(&args) {
            return Box::pin(std::future::ready(Err(ToolError::InvalidArguments {
                tool: self.name.clone(),
                errors,
            })));
        }
        (self.handler)(args, ctx)
    }
}
