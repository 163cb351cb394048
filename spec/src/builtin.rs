//! The node kinds of [`NodeRegistry::builtin`](crate::NodeRegistry::builtin).

use std::sync::Arc;

use agentgraph_engine::{Context, DynState, DynUpdate, JsonType, async_node};
use serde_json::Value;

use crate::library::{keys, known_keys};
use crate::registry::{FileNode, NodeParams, packet_item};

/// `set`: writes fixed values.
pub(crate) fn set(p: &NodeParams<'_>) -> Result<FileNode, String> {
    let values = match p.with {
        Value::Object(values) => values.clone(),
        Value::Null => serde_json::Map::new(),
        _ => return Err("`set` takes an object of fields and their values".to_owned()),
    };
    // Checked once, now: the update is made again, the same, on every call.
    let values = Value::Object(values);
    DynUpdate::from_json(p.schema, values.clone()).map_err(|e| e.to_string())?;
    let node = async_node(move |s: Arc<DynState>, _: Context| {
        let values = values.clone();
        async move { Ok(DynUpdate::from_json(s.schema(), values)?) }
    });
    Ok(Arc::new(node))
}

/// The list-or-any field `key` names, checked against the schema.
fn field_param<'a>(p: &'a NodeParams<'_>, key: &str, list: bool) -> Result<&'a str, String> {
    let field = p
        .param(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{key}` (a field's name) is required"))?;
    let Some(i) = p.schema.index_of(field) else {
        let names = p.schema.fields().iter().map(|f| f.name);
        let hint = crate::did_you_mean(field, names)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(format!("`{key}`: the state has no field `{field}`{hint}"));
    };
    let ty = p.schema.ty(i);
    if list && !matches!(ty, JsonType::List | JsonType::Messages | JsonType::Any) {
        return Err(format!("`{key}`: field `{field}` is {ty}, not a list"));
    }
    Ok(field)
}

/// `interrupt`: asks `question`, writes the answer to `field`.
pub(crate) fn interrupt(p: &NodeParams<'_>) -> Result<FileNode, String> {
    known_keys(p.with, "interrupt", keys::INTERRUPT)?;
    let field = field_param(p, "field", false)?.to_owned();
    let question = p.param("question").cloned().unwrap_or(Value::Null);
    let node = async_node(move |s: Arc<DynState>, ctx: Context| {
        let (field, question) = (field.clone(), question.clone());
        async move {
            let answer: Value = ctx.interrupt(&question)?;
            Ok(s.update().set(&field, answer)?)
        }
    });
    Ok(Arc::new(node))
}

/// `collect`: appends the packet's item to a list field.
pub(crate) fn collect(p: &NodeParams<'_>) -> Result<FileNode, String> {
    known_keys(p.with, "collect", keys::COLLECT)?;
    let field = field_param(p, "field", true)?.to_owned();
    let node = async_node(move |s: Arc<DynState>, ctx: Context| {
        let field = field.clone();
        async move {
            let item = packet_item(&ctx)?;
            Ok(s.update().set(&field, Value::Array(vec![item]))?)
        }
    });
    Ok(Arc::new(node))
}
