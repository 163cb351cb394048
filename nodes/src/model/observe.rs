//! How a model call is observed: a `tracing` span with OpenTelemetry's GenAI attributes, and
//! the token counter `agentgraph_model_tokens_total{model, kind}` (feature `metrics`).

use tracing::Span;
use tracing::field::Empty;

use crate::model::{ChatResponse, Price};

/// A model call being observed: its span, recorded into when the call ends. Made by
/// [`observe_call`].
///
/// # Examples
///
/// See [`observe_call`].
#[derive(Debug)]
pub struct ObservedCall {
    span: Span,
    model: String,
    price: Option<Price>,
}

/// Opens the span of a model call (`chat`, at `INFO`), with the attributes of OpenTelemetry's
/// GenAI conventions: `gen_ai.operation.name = "chat"`, `gen_ai.provider.name`,
/// `gen_ai.request.model`, and, once [`finish`](ObservedCall::finish)ed,
/// `gen_ai.response.model`, `gen_ai.response.finish_reasons`, `gen_ai.usage.input_tokens` and
/// `gen_ai.usage.output_tokens`. `otel.name` is `chat {model}`, the span name the conventions
/// ask for.
///
/// Finishing also counts the tokens, with the `metrics` feature, as
/// `agentgraph_model_tokens_total{model, kind}` (`kind` is `prompt` or `completion`). A call
/// with a [`Price`] ([`priced`](ObservedCall::priced)) records its cost too: the span's
/// `agentgraph.usage.cost_usd` (the GenAI conventions have no cost attribute) and the
/// histogram `agentgraph_model_call_cost_usd{model}`.
///
/// # Examples
///
/// ```
/// use agentgraph_nodes::Message;
/// use agentgraph_nodes::model::{ChatResponse, Usage, observe_call};
///
/// let call = observe_call("openai", "gpt-4o-mini");
/// let response = ChatResponse::new(Message::assistant("hi")).with_usage(Usage::new(9, 1));
/// call.finish(&response);
/// # let _ = call.span();
/// ```
pub fn observe_call(provider: &str, model: &str) -> ObservedCall {
    let span = tracing::info_span!(
        "chat",
        otel.name = %format_args!("chat {model}"),
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = provider,
        gen_ai.request.model = model,
        gen_ai.response.model = Empty,
        gen_ai.response.finish_reasons = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        agentgraph.usage.cost_usd = Empty,
    );
    ObservedCall {
        span,
        model: model.to_owned(),
        price: None,
    }
}

impl ObservedCall {
    /// The call's span: run the call in it (`Instrument::instrument`).
    ///
    /// # Examples
    ///
    /// ```
    /// let call = agentgraph_nodes::model::observe_call("openai", "m");
    /// let _entered = call.span().enter();
    /// ```
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Prices the call: finishing records its cost from its usage.
    ///
    /// # Examples
    ///
    /// ```
    /// use agentgraph_nodes::Message;
    /// use agentgraph_nodes::model::{ChatResponse, Price, Usage, observe_call};
    ///
    /// let call = observe_call("openai", "gpt-4o-mini").priced(Price::per_million_tokens(0.15, 0.6));
    /// call.finish(&ChatResponse::new(Message::assistant("hi")).with_usage(Usage::new(9, 1)));
    /// ```
    #[must_use]
    pub fn priced(mut self, price: Price) -> Self {
        self.price = Some(price);
        self
    }

    /// Records the response: its model, finish reason and usage on the span, and the tokens
    /// in the metrics (and its cost, when the call is [`priced`](ObservedCall::priced)).
    ///
    /// # Examples
    ///
    /// See [`observe_call`].
    pub fn finish(&self, response: &ChatResponse) {
        if let Some(model) = &response.model {
            self.span.record("gen_ai.response.model", model.as_str());
        }
        if let Some(reason) = &response.finish_reason {
            self.span
                .record("gen_ai.response.finish_reasons", reason.as_str());
        }
        if let Some(usage) = response.usage {
            self.span
                .record("gen_ai.usage.input_tokens", usage.input_tokens);
            self.span
                .record("gen_ai.usage.output_tokens", usage.output_tokens);
            count_tokens(&self.model, usage.input_tokens, usage.output_tokens);
            if let Some(price) = self.price {
                let cost = price.cost(usage);
                self.span.record("agentgraph.usage.cost_usd", cost);
                record_cost(&self.model, cost);
            }
        }
    }
}

#[cfg(feature = "metrics")]
fn count_tokens(model: &str, prompt: u64, completion: u64) {
    let model = model.to_owned();
    metrics::counter!("agentgraph_model_tokens_total", "model" => model.clone(), "kind" => "prompt")
        .increment(prompt);
    metrics::counter!("agentgraph_model_tokens_total", "model" => model, "kind" => "completion")
        .increment(completion);
}

#[cfg(not(feature = "metrics"))]
fn count_tokens(_model: &str, _prompt: u64, _completion: u64) {}

#[cfg(feature = "metrics")]
fn record_cost(model: &str, cost: f64) {
    metrics::histogram!("agentgraph_model_call_cost_usd", "model" => model.to_owned()).record(cost);
}

#[cfg(not(feature = "metrics"))]
fn record_cost(_model: &str, _cost: f64) {}
